//! The VRRP socket layer: raw IP protocol 112 on one interface.
//!
//! Two sockets per instance, as keepalived does:
//! - the receive socket is bound to the interface (`SO_BINDTODEVICE`) and
//!   joined to 224.0.0.18 / ff02::12 there; it sees every advert on the
//!   link, whatever its destination (multicast, or our address in unicast
//!   mode);
//! - the send socket is bound to the instance's primary address (so the
//!   kernel sources adverts from it, matching the checksum's
//!   pseudo-header) and the interface, sends with TTL / hop limit 255, and
//!   does not loop multicast back to us.
//!
//! Received datagrams are checked here before the state machine sees them:
//! the TTL / hop limit must be 255 (RFC 5798 §5.1.1.3), the payload must
//! parse and its checksum verify. What fails is reported as a
//! [`Dropped`] cause for the driver to count and log.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd as _;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::wire::{self, Repr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;
/// The IPv4 multicast group of VRRP.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit VRRP sends and requires.
pub const VRRP_TTL: u8 = 255;

/// Where an instance's adverts go and come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Our address on the interface: the advert source (IPv6: link-local).
    pub primary: IpAddr,
    /// Unicast peers; empty = multicast.
    pub peers: Vec<IpAddr>,
}

/// Why a received datagram was not handed to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// TTL / hop limit other than 255.
    BadTtl(u8),
    /// The VRRP checksum does not verify.
    BadChecksum,
    /// Too short, bad version or type, or an inconsistent length.
    Malformed,
}

impl Dropped {
    /// Stable name for logs and metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Dropped::BadTtl(_) => "bad_ttl",
            Dropped::BadChecksum => "bad_checksum",
            Dropped::Malformed => "malformed",
        }
    }
}

/// A received datagram, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A valid advert.
    Advert {
        /// IP source.
        source: IpAddr,
        /// The advert.
        advert: Repr,
    },
    /// Dropped before the state machine, and why.
    Dropped {
        /// IP source.
        source: IpAddr,
        /// Why.
        cause: Dropped,
    },
}

/// The two sockets of one instance.
pub struct VrrpSocket {
    recv: AsyncFd<Socket>,
    send: Socket,
    endpoint: Endpoint,
}

impl VrrpSocket {
    /// Open both sockets for `endpoint`.
    ///
    /// # Errors
    /// Socket errors (`EPERM` without `CAP_NET_RAW`, `EADDRNOTAVAIL` when the
    /// primary address is not on the interface, `ENODEV`).
    pub fn open(endpoint: Endpoint) -> io::Result<Self> {
        let v6 = endpoint.primary.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let proto = Some(Protocol::from(IPPROTO_VRRP));

        let recv = Socket::new(domain, Type::RAW, proto)?;
        recv.bind_device(Some(endpoint.iface.as_bytes()))?;
        if v6 {
            setsockopt_int(&recv, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            setsockopt_int(&recv, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            recv.join_multicast_v6(&GROUP_V6, endpoint.ifindex)?;
        } else {
            recv.join_multicast_v4_n(
                &GROUP_V4,
                &socket2::InterfaceIndexOrAddress::Index(endpoint.ifindex),
            )?;
        }
        recv.set_nonblocking(true)?;

        let send = Socket::new(domain, Type::RAW, proto)?;
        send.bind_device(Some(endpoint.iface.as_bytes()))?;
        match endpoint.primary {
            IpAddr::V4(a) => {
                send.bind(&SockAddr::from(SocketAddrV4::new(a, 0)))?;
                // By address: the primary address is on the interface.
                send.set_multicast_if_v4(&a)?;
                send.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
                send.set_ttl(u32::from(VRRP_TTL))?;
                send.set_multicast_loop_v4(false)?;
                // keepalived's precedence: network control.
                send.set_tos(0xc0)?;
            }
            IpAddr::V6(a) => {
                send.bind(&SockAddr::from(SocketAddrV6::new(
                    a,
                    0,
                    0,
                    endpoint.ifindex,
                )))?;
                send.set_multicast_if_v6(endpoint.ifindex)?;
                send.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
                send.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
                send.set_multicast_loop_v6(false)?;
            }
        }
        // SAFETY: the Socket owns its fd, which stays open and the same
        // until the AsyncFd (and with it the Socket) is dropped.
        let recv = unsafe { AsyncFd::register(recv) }.map_err(io::Error::from)?;
        Ok(Self {
            recv,
            send,
            endpoint,
        })
    }

    /// The endpoint this socket serves.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Send `advert` to the group, or to each unicast peer. The checksum's
    /// pseudo-header carries each real destination.
    ///
    /// # Errors
    /// The advert cannot be encoded, or the send fails.
    pub fn send(&self, advert: &Repr) -> io::Result<()> {
        let group = match self.endpoint.primary {
            IpAddr::V4(_) => IpAddr::V4(GROUP_V4),
            IpAddr::V6(_) => IpAddr::V6(GROUP_V6),
        };
        let dests: Vec<IpAddr> = if self.endpoint.peers.is_empty() {
            vec![group]
        } else {
            self.endpoint.peers.clone()
        };
        for dst in dests {
            let bytes = advert
                .to_bytes(self.endpoint.primary, dst)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let to = match dst {
                IpAddr::V4(a) => SockAddr::from(SocketAddrV4::new(a, 0)),
                IpAddr::V6(a) => SockAddr::from(SocketAddrV6::new(
                    a,
                    0,
                    0,
                    if a.is_unicast_link_local() || a.is_multicast() {
                        self.endpoint.ifindex
                    } else {
                        0
                    },
                )),
            };
            self.send.send_to(&bytes, &to)?;
        }
        Ok(())
    }

    /// Wait for the next datagram and check it.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.recv.readable().await?;
            let result = guard.try_io(|fd| {
                if self.endpoint.primary.is_ipv6() {
                    recv_v6(fd.get_ref())
                } else {
                    recv_v4(fd.get_ref())
                }
            });
            match result {
                Ok(Ok(Some(received))) => return Ok(received),
                // Not for us (another family's noise, an unparseable IP
                // header): keep reading.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

fn setsockopt_int(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid fd, a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Check a VRRP payload that arrived from `source` to `dest` with `ttl`.
fn check(payload: &[u8], source: IpAddr, dest: IpAddr, ttl: u8) -> Received {
    if ttl != VRRP_TTL {
        return Received::Dropped {
            source,
            cause: Dropped::BadTtl(ttl),
        };
    }
    match wire::parse(payload, source, dest) {
        Ok(advert) => Received::Advert { source, advert },
        Err(wire::Error::BadChecksum { .. }) => Received::Dropped {
            source,
            cause: Dropped::BadChecksum,
        },
        Err(_) => Received::Dropped {
            source,
            cause: Dropped::Malformed,
        },
    }
}

/// One IPv4 datagram: a raw IPv4 socket hands us the IP header too.
fn recv_v4(sock: &Socket) -> io::Result<Option<Received>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let n = sock.recv(&mut buf)?;
    // SAFETY: recv initialised the first n bytes.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
    Ok(parse_ipv4(bytes))
}

/// Split an IPv4 datagram into its VRRP payload and check it; `None` when
/// the IP header itself is unreadable or not VRRP.
fn parse_ipv4(bytes: &[u8]) -> Option<Received> {
    let first = *bytes.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || bytes.len() < ihl {
        return None;
    }
    if i32::from(bytes[9]) != IPPROTO_VRRP {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let end = total.clamp(ihl, bytes.len());
    let ttl = bytes[8];
    let source = IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]));
    let dest = IpAddr::V4(Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]));
    Some(check(&bytes[ihl..end], source, dest, ttl))
}

/// One IPv6 datagram: the payload only; hop limit and destination come as
/// control messages.
fn recv_v6(sock: &Socket) -> io::Result<Option<Received>> {
    let mut buf = [0u8; 2048];
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; fields set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>();
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, 0) };
    let Ok(n) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    let source = IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr));
    let mut hop_limit = None;
    let mut dest = None;
    // SAFETY: walking the control buffer recvmsg filled, with the libc
    // CMSG macros, which stay inside msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let v = std::ptr::read_unaligned(data.cast::<i32>());
                    hop_limit = u8::try_from(v).ok();
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    dest = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    let (Some(ttl), Some(dest)) = (hop_limit, dest) else {
        return Ok(None);
    };
    Ok(Some(check(&buf[..n.min(buf.len())], source, dest, ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::wire::{Family, Kind};

    fn advert() -> Repr {
        Repr {
            family: Family::Ipv4,
            vrid: 50,
            priority: 150,
            kind: Kind::V3 {
                max_advert_interval_cs: 100,
            },
            addresses: vec!["198.18.0.100".parse().unwrap()],
        }
    }

    fn datagram(ttl: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![
            0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, 112, 0, 0, 198, 18, 0, 1, 224, 0, 0, 18,
        ];
        let total = u16::try_from(ip.len() + payload.len()).unwrap();
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn ipv4_datagram_checked_for_ttl_checksum_and_form() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: IpAddr = GROUP_V4.into();
        let payload = advert().to_bytes(src, dst).unwrap();
        assert_eq!(
            parse_ipv4(&datagram(255, &payload)),
            Some(Received::Advert {
                source: src,
                advert: advert()
            })
        );
        assert_eq!(
            parse_ipv4(&datagram(64, &payload)),
            Some(Received::Dropped {
                source: src,
                cause: Dropped::BadTtl(64)
            })
        );
        let mut bad = payload.clone();
        bad[6] ^= 0xff;
        assert_eq!(
            parse_ipv4(&datagram(255, &bad)),
            Some(Received::Dropped {
                source: src,
                cause: Dropped::BadChecksum
            })
        );
        assert_eq!(
            parse_ipv4(&datagram(255, &payload[..4])),
            Some(Received::Dropped {
                source: src,
                cause: Dropped::Malformed
            })
        );
        // Not IPv4, truncated header, another protocol: not ours at all.
        assert_eq!(parse_ipv4(&[0x60; 40]), None);
        assert_eq!(parse_ipv4(&[0x45, 0, 0]), None);
        let mut udp = datagram(255, &payload);
        udp[9] = 17;
        assert_eq!(parse_ipv4(&udp), None);
    }

    #[test]
    fn ipv4_total_length_is_not_trusted() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let payload = advert().to_bytes(src, GROUP_V4.into()).unwrap();
        let mut d = datagram(255, &payload);
        d[2..4].copy_from_slice(&u16::MAX.to_be_bytes()); // longer than received
        assert!(matches!(parse_ipv4(&d), Some(Received::Advert { .. })));
        d[2..4].copy_from_slice(&3u16.to_be_bytes()); // shorter than the header
        assert_eq!(
            parse_ipv4(&d),
            Some(Received::Dropped {
                source: src,
                cause: Dropped::Malformed
            })
        );
    }
}
