//! Next-hop MAC resolution from the kernel's routing and neighbour tables.
//!
//! The XDP data plane forwards a packet by rewriting its destination MAC and
//! transmitting it back out of the interface it came in on. In `dsr` mode the
//! backend must be on-link and the MAC is the backend's own; in `ipip` mode it
//! is the MAC of the next hop towards the backend: the backend itself when it
//! is on-link, else the gateway the kernel's route names. [`resolve`] finds
//! both the same way `ip route get` and `ip neigh get` would:
//!
//! 1. `RTM_GETROUTE` for the destination (a lookup, not a dump) gives the
//!    output interface and the gateway, if any;
//! 2. `RTM_GETNEIGH` for (interface, gateway or destination) gives the MAC,
//!    if the entry is in a state that holds a valid one (`REACHABLE`,
//!    `STALE`, `DELAY`, `PROBE` or `PERMANENT`);
//! 3. otherwise a probe (an empty UDP datagram to the discard port, from a
//!    socket bound to the interface) makes the kernel send ARP or NDP, and
//!    the table is polled until the entry becomes usable or time runs out.
//!
//! MACs therefore always come from the kernel, never from configuration.
//!
//! The answer is a snapshot. Traffic forwarded by XDP bypasses the kernel's
//! neighbour machinery, so the entry is never confirmed by it and eventually
//! goes `STALE` and may be garbage-collected; a caller that keeps forwarding
//! should call [`resolve`] again from time to time (it probes when needed).

use std::{
    ffi::CStr,
    io,
    net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6},
    time::Duration,
};

use futures::StreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia},
    },
};
use tokio::time::Instant;

/// UDP discard port (RFC 863): where the probe datagram goes. Anything
/// listening there drops it; anything else answers at most with an ICMP
/// port-unreachable, which nobody reads.
const DISCARD_PORT: u16 = 9;

/// Minimum time between two probes for the same address. An unanswered
/// probe leaves the entry `INCOMPLETE` while the kernel retransmits (3
/// solicitations, 1 s apart, by default), then `FAILED`; only then does
/// another probe make sense.
const REPROBE_AFTER: Duration = Duration::from_secs(1);

/// First pause between two neighbour-table polls; doubled up to
/// [`MAX_POLL`]. On a LAN the answer usually arrives within a millisecond.
const FIRST_POLL: Duration = Duration::from_millis(5);
/// Longest pause between two neighbour-table polls.
const MAX_POLL: Duration = Duration::from_millis(200);

/// Where to send a packet so that it reaches a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Interface the kernel routes the destination out of; the XDP program
    /// can only use this next hop for packets received on it.
    pub ifindex: u32,
    /// The gateway of the route, or `None` when the destination is on-link
    /// (then `mac` is the destination's own MAC, as `dsr` mode requires).
    pub gateway: Option<IpAddr>,
    /// MAC address of the gateway, or of the destination when on-link.
    pub mac: [u8; 6],
    /// The source address the kernel would send from (the route's
    /// preferred source): `fullnat`'s default SNAT address.
    pub src: Option<IpAddr>,
}

/// Why a next hop could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    /// The kernel has no route to the destination.
    #[error("no route to {dest}; check `ip route get {dest}` and the interface addresses")]
    NoRoute {
        /// The destination looked up.
        dest: IpAddr,
    },
    /// The route is not a unicast route: the destination is one of our own
    /// addresses, a broadcast or multicast address, or similar.
    #[error(
        "{dest} is routed as {kind:?}, not unicast; a backend must be another host, \
         not a local, broadcast or multicast address"
    )]
    NotUnicast {
        /// The destination looked up.
        dest: IpAddr,
        /// The route type the kernel reported.
        kind: RouteType,
    },
    /// The route leaves through another interface than the ones the
    /// caller allows (XDP sends out of the interfaces it runs on).
    #[error(
        "the route to {dest} leaves through ifindex {got}, not {want:?} where the \
         load balancer runs (a backend behind another interface needs it as \
         [dataplane] backend_interface)"
    )]
    WrongInterface {
        /// The destination looked up.
        dest: IpAddr,
        /// The interfaces the caller allows.
        want: Vec<u32>,
        /// The interface the kernel's route uses.
        got: u32,
    },
    /// The neighbour entry holds a link-layer address that is not a MAC, so
    /// the interface is not Ethernet and the MAC rewrite cannot work.
    #[error(
        "neighbour {addr} on ifindex {ifindex} has a {len}-byte link-layer address; \
         only Ethernet interfaces (6-byte MACs) are supported"
    )]
    NotEthernet {
        /// The next-hop address.
        addr: IpAddr,
        /// The interface.
        ifindex: u32,
        /// Length of the link-layer address the kernel reported.
        len: usize,
    },
    /// No usable neighbour entry appeared before the timeout.
    #[error(
        "no ARP/NDP answer from {addr} on ifindex {ifindex} within {timeout:?}; \
         is the backend up and on this segment?"
    )]
    Unresolved {
        /// The next-hop address (the gateway when there is one).
        addr: IpAddr,
        /// The interface the kernel asked on.
        ifindex: u32,
        /// How long we waited.
        timeout: Duration,
    },
    /// A netlink request failed.
    #[error("netlink request to the kernel failed")]
    Netlink {
        /// Why.
        #[source]
        source: rtnetlink::Error,
    },
    /// A socket (the netlink connection or the probe) could not be opened or
    /// used.
    #[error("cannot open or use the netlink or probe socket")]
    Socket {
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Find the interface, gateway and MAC that packets to `dest` must use.
///
/// If `oif` is given, the route must leave through one of those
/// interfaces (zeros in it stand for none). The
/// neighbour table is consulted first; when the entry is missing or failed,
/// a probe makes the kernel resolve it, and the table is polled for up to
/// `timeout`. Runs in the network namespace of the calling thread.
///
/// # Errors
/// - [`NeighError::NoRoute`] / [`NeighError::NotUnicast`] when the kernel
///   has no usable route to `dest`;
/// - [`NeighError::WrongInterface`] when the route leaves through none of
///   `oif`;
/// - [`NeighError::Unresolved`] when no usable neighbour entry appears
///   within `timeout`;
/// - [`NeighError::NotEthernet`] when the interface is not Ethernet;
/// - [`NeighError::Netlink`] / [`NeighError::Socket`] for kernel and socket
///   failures.
pub async fn resolve(
    dest: IpAddr,
    oif: Option<&[u32]>,
    timeout: Duration,
) -> Result<NextHop, NeighError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|source| NeighError::Socket { source })?;
    let conn = tokio::spawn(conn);
    let result = resolve_with(&handle, dest, oif, timeout).await;
    conn.abort();
    result
}

async fn resolve_with(
    handle: &Handle,
    dest: IpAddr,
    oif: Option<&[u32]>,
    timeout: Duration,
) -> Result<NextHop, NeighError> {
    let route = lookup_route(handle, dest).await?;
    if let Some(want) = oif
        && !want.contains(&route.ifindex)
    {
        return Err(NeighError::WrongInterface {
            dest,
            want: want.iter().copied().filter(|&i| i != 0).collect(),
            got: route.ifindex,
        });
    }
    let hop = route.gateway.unwrap_or(dest);
    let mac = wait_for_mac(handle, hop, route.ifindex, timeout).await?;
    Ok(NextHop {
        ifindex: route.ifindex,
        gateway: route.gateway,
        mac,
        src: route.src,
    })
}

/// The part of a route lookup's answer we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    ifindex: u32,
    gateway: Option<IpAddr>,
    src: Option<IpAddr>,
}

/// `ip route get DEST`. A request with a destination and without
/// `NLM_F_DUMP` (rtnetlink sets that only when there is no destination) is
/// a FIB lookup answered with the one route the kernel would use.
async fn lookup_route(handle: &Handle, dest: IpAddr) -> Result<Route, NeighError> {
    let message = match dest {
        IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(a, 32)
            .build(),
        IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(a, 128)
            .build(),
    };
    let mut replies = handle.route().get(message).execute();
    let mut found = None;
    while let Some(reply) = replies.next().await {
        let msg = reply.map_err(|e| route_error(dest, e))?;
        found.get_or_insert(msg);
    }
    parse_route(dest, &found.ok_or(NeighError::NoRoute { dest })?)
}

/// Map a failed route lookup: "network/host unreachable" is the kernel's
/// way of saying there is no route (also for `unreachable` routes).
fn route_error(dest: IpAddr, err: rtnetlink::Error) -> NeighError {
    if let rtnetlink::Error::NetlinkError(msg) = &err
        && msg
            .code
            .is_some_and(|c| matches!(-c.get(), libc::ENETUNREACH | libc::EHOSTUNREACH))
    {
        NeighError::NoRoute { dest }
    } else {
        NeighError::Netlink { source: err }
    }
}

fn parse_route(dest: IpAddr, msg: &RouteMessage) -> Result<Route, NeighError> {
    if msg.header.kind != RouteType::Unicast {
        return Err(NeighError::NotUnicast {
            dest,
            kind: msg.header.kind,
        });
    }
    let mut ifindex = None;
    let mut gateway = None;
    let mut src = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => ifindex = Some(*i),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => src = Some(IpAddr::V4(*a)),
            RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => src = Some(IpAddr::V6(*a)),
            // A Via is a gateway of the other family (RFC 5549).
            RouteAttribute::Gateway(RouteAddress::Inet(a))
            | RouteAttribute::Via(RouteVia::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Gateway(RouteAddress::Inet6(a))
            | RouteAttribute::Via(RouteVia::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
            _ => {}
        }
    }
    Ok(Route {
        ifindex: ifindex.ok_or(NeighError::NoRoute { dest })?,
        gateway,
        src,
    })
}

/// A neighbour entry, as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Holds a MAC we may use.
    Ready([u8; 6]),
    /// The kernel is resolving it (`INCOMPLETE`): wait, do not probe.
    Resolving,
    /// Missing, `FAILED`, or otherwise without a usable address: probe.
    Absent,
    /// Usable state, but the link-layer address is not 6 bytes long.
    NotEthernet(usize),
}

fn classify(msg: Option<&NeighbourMessage>) -> Entry {
    let Some(msg) = msg else {
        return Entry::Absent;
    };
    let lladdr = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => Some(l.as_slice()),
        _ => None,
    });
    classify_parts(msg.header.state, lladdr)
}

fn classify_parts(state: NeighbourState, lladdr: Option<&[u8]>) -> Entry {
    match state {
        NeighbourState::Reachable
        | NeighbourState::Stale
        | NeighbourState::Delay
        | NeighbourState::Probe
        | NeighbourState::Permanent => match lladdr {
            Some(l) => <[u8; 6]>::try_from(l).map_or(Entry::NotEthernet(l.len()), Entry::Ready),
            None => Entry::Absent,
        },
        NeighbourState::Incomplete => Entry::Resolving,
        _ => Entry::Absent,
    }
}

/// Poll the neighbour table for `addr` on `ifindex`, probing when the entry
/// is absent, until it holds a MAC or `timeout` passes. The table is read
/// at least once, even with a zero timeout.
async fn wait_for_mac(
    handle: &Handle,
    addr: IpAddr,
    ifindex: u32,
    timeout: Duration,
) -> Result<[u8; 6], NeighError> {
    let deadline = Instant::now() + timeout;
    let mut last_probe: Option<Instant> = None;
    let mut pause = FIRST_POLL;
    loop {
        let entry = get_neighbour(handle, addr, ifindex)
            .await
            .map_err(|source| NeighError::Netlink { source })?;
        match classify(entry.as_ref()) {
            Entry::Ready(mac) => return Ok(mac),
            Entry::NotEthernet(len) => {
                return Err(NeighError::NotEthernet { addr, ifindex, len });
            }
            Entry::Resolving => {}
            Entry::Absent => {
                if last_probe.is_none_or(|t| t.elapsed() >= REPROBE_AFTER) {
                    tracing::debug!(%addr, ifindex, "no usable neighbour entry; probing");
                    probe(addr, ifindex).map_err(|source| NeighError::Socket { source })?;
                    last_probe = Some(Instant::now());
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(NeighError::Unresolved {
                addr,
                ifindex,
                timeout,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// `ip neigh get ADDR dev IFINDEX`: a targeted `RTM_GETNEIGH` (no dump,
/// Linux 4.20+). `Ok(None)` when there is no entry (`ENOENT`).
async fn get_neighbour(
    handle: &Handle,
    addr: IpAddr,
    ifindex: u32,
) -> Result<Option<NeighbourMessage>, rtnetlink::Error> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = ifindex;
    msg.attributes
        .push(NeighbourAttribute::Destination(addr.into()));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(msg));
    req.header.flags = NLM_F_REQUEST;
    let mut replies = handle.clone().request(req)?;
    let mut found = None;
    while let Some(reply) = replies.next().await {
        let (header, payload) = reply.into_parts();
        match payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => found = Some(m),
            NetlinkPayload::Error(e) if e.code.is_some_and(|c| -c.get() == libc::ENOENT) => {
                return Ok(None);
            }
            NetlinkPayload::Error(e) => return Err(rtnetlink::Error::NetlinkError(e)),
            other => {
                return Err(rtnetlink::Error::UnexpectedMessage(NetlinkMessage::new(
                    header, other,
                )));
            }
        }
    }
    Ok(found)
}

/// Make the kernel resolve `addr` on `ifindex`: send it an empty UDP
/// datagram on the discard port from a socket bound to the interface. The
/// kernel queues the datagram on a new `INCOMPLETE` entry and sends ARP or
/// NDP; the datagram itself goes out only if someone answers.
fn probe(addr: IpAddr, ifindex: u32) -> io::Result<()> {
    let to = match addr {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, DISCARD_PORT)),
        // The scope id matters for link-local gateways (fe80::/10) only.
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, DISCARD_PORT, 0, ifindex)),
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    sock.set_nonblocking(true)?;
    sock.bind_device(Some(&ifname(ifindex)?))?;
    match sock.send_to(&[], &to.into()) {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        // A full socket buffer still means a datagram is queued.
        _ => Ok(()),
    }
}

/// Name of interface `ifindex` in the calling thread's network namespace.
fn ifname(ifindex: u32) -> io::Result<Vec<u8>> {
    let mut buf: [libc::c_char; libc::IF_NAMESIZE] = [0; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname(3) writes at most.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        num::NonZeroI32,
    };

    use rtnetlink::packet_core::ErrorMessage;

    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
    const DEST: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 5));

    #[test]
    fn usable_states_yield_the_mac() {
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
        ] {
            assert_eq!(
                classify_parts(state, Some(&MAC)),
                Entry::Ready(MAC),
                "{state}"
            );
            assert_eq!(
                classify_parts(state, None),
                Entry::Absent,
                "{state} without lladdr"
            );
        }
    }

    #[test]
    fn incomplete_waits_and_the_rest_probes() {
        assert_eq!(
            classify_parts(NeighbourState::Incomplete, None),
            Entry::Resolving
        );
        for state in [
            NeighbourState::Failed,
            NeighbourState::None,
            NeighbourState::Noarp,
            NeighbourState::Other(0x42),
        ] {
            assert_eq!(classify_parts(state, Some(&MAC)), Entry::Absent, "{state}");
        }
        assert_eq!(classify(None), Entry::Absent);
    }

    #[test]
    fn non_ethernet_lladdr_is_refused() {
        let infiniband = [0u8; 20];
        assert_eq!(
            classify_parts(NeighbourState::Reachable, Some(&infiniband)),
            Entry::NotEthernet(20)
        );
    }

    #[test]
    fn classify_reads_state_and_lladdr_from_the_message() {
        let mut msg = NeighbourMessage::default();
        msg.header.state = NeighbourState::Stale;
        msg.attributes = vec![
            NeighbourAttribute::Destination(DEST.into()),
            NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
        ];
        assert_eq!(classify(Some(&msg)), Entry::Ready(MAC));
    }

    fn route(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.kind = kind;
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn on_link_route_has_no_gateway() {
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(198, 18, 0, 11))),
                RouteAttribute::Oif(3),
            ],
        );
        assert_eq!(
            parse_route(DEST, &msg).unwrap(),
            Route {
                ifindex: 3,
                gateway: None,
                src: None
            }
        );
    }

    #[test]
    fn gateway_and_via_are_taken() {
        let gw = Ipv4Addr::new(198, 18, 0, 1);
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(2),
                RouteAttribute::Gateway(RouteAddress::Inet(gw)),
            ],
        );
        assert_eq!(parse_route(DEST, &msg).unwrap().gateway, Some(gw.into()));

        let dest6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 5));
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(2),
                RouteAttribute::Via(RouteVia::Inet(gw)),
            ],
        );
        assert_eq!(parse_route(dest6, &msg).unwrap().gateway, Some(gw.into()));
    }

    #[test]
    fn local_and_oif_less_routes_are_refused() {
        let msg = route(RouteType::Local, vec![RouteAttribute::Oif(1)]);
        assert!(matches!(
            parse_route(DEST, &msg),
            Err(NeighError::NotUnicast {
                kind: RouteType::Local,
                ..
            })
        ));
        let msg = route(RouteType::Unicast, vec![]);
        assert!(matches!(
            parse_route(DEST, &msg),
            Err(NeighError::NoRoute { .. })
        ));
    }

    fn nack(errno: i32) -> rtnetlink::Error {
        let mut msg = ErrorMessage::default();
        msg.code = NonZeroI32::new(-errno);
        rtnetlink::Error::NetlinkError(msg)
    }

    #[test]
    fn unreachable_means_no_route() {
        for errno in [libc::ENETUNREACH, libc::EHOSTUNREACH] {
            assert!(matches!(
                route_error(DEST, nack(errno)),
                NeighError::NoRoute { dest } if dest == DEST
            ));
        }
        assert!(matches!(
            route_error(DEST, nack(libc::EINVAL)),
            NeighError::Netlink { .. }
        ));
    }

    #[test]
    fn unresolved_tells_the_operator_what_to_check() {
        let err = NeighError::Unresolved {
            addr: DEST,
            ifindex: 4,
            timeout: Duration::from_millis(300),
        };
        assert_eq!(
            err.to_string(),
            "no ARP/NDP answer from 198.18.9.5 on ifindex 4 within 300ms; \
             is the backend up and on this segment?"
        );
    }
}
