//! Announcing the VIPs after a takeover: gratuitous ARP (IPv4) and
//! unsolicited Neighbor Advertisements (IPv6), a raw sender for them, and
//! keepalived's timing of when to send them.
//!
//! - [`gratuitous_arp`] and [`unsolicited_na`] build whole Ethernet frames,
//!   byte for byte what keepalived 2.x sends (see each function for the
//!   fields);
//! - [`FrameSender`] writes such frames to one interface through an
//!   `AF_PACKET` socket (needs `CAP_NET_RAW`);
//! - [`GarpSchedule`] is the pure timer: `start` on becoming master, `poll`
//!   with the current [`Instant`] to learn how many announcement rounds are
//!   due, `next_deadline` to know when to poll again. No sleeping, no
//!   runtime: the caller owns the clock.
//!
//! # Panic contract
//!
//! Nothing here panics. The frame builders write into buffers whose sizes
//! are constants ([`GARP_FRAME_LEN`], [`NA_FRAME_LEN`]); the `expect`s on
//! the `pnet_packet` views only restate that, and the tests build every
//! frame. [`GarpSchedule`] uses checked time arithmetic: a deadline that
//! would overflow [`Instant`] is treated as never.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use pnet_base::MacAddr;
use pnet_packet::{
    MutablePacket as _,
    arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket},
    ethernet::{EtherType, EtherTypes, MutableEthernetPacket},
    icmpv6::{
        self, Icmpv6Code, Icmpv6Packet, Icmpv6Types,
        ndp::{MutableNeighborAdvertPacket, NdpOptionTypes, NeighborAdvertFlags},
    },
    ip::IpNextHeaderProtocols,
    ipv6::MutableIpv6Packet,
};
use socket2::{Domain, SockAddr, Socket, Type};

/// Length of an Ethernet header without VLAN tag.
const ETHERNET_LEN: usize = 14;
/// Length of an Ethernet/IPv4 ARP message.
const ARP_LEN: usize = 28;
/// Length of the fixed IPv6 header.
const IPV6_LEN: usize = 40;
/// Neighbor Advertisement header (type .. target address).
const NA_LEN: usize = 24;
/// Target Link-Layer Address option for Ethernet: type, length, 6 bytes.
const TLLA_OPTION_LEN: usize = 8;
/// ICMPv6 part of the unsolicited NA: header plus the one option.
const NA_ICMPV6_LEN: usize = NA_LEN + TLLA_OPTION_LEN;
/// [`NA_ICMPV6_LEN`] as the IPv6 payload length field holds it.
const NA_PAYLOAD_LEN: u16 = 32;
const _: () = assert!(NA_PAYLOAD_LEN as usize == NA_ICMPV6_LEN);

/// Size of a frame built by [`gratuitous_arp`] (no padding to the 60-byte
/// Ethernet minimum: the NIC pads, as for keepalived's frames).
pub const GARP_FRAME_LEN: usize = ETHERNET_LEN + ARP_LEN;

/// Size of a frame built by [`unsolicited_na`].
pub const NA_FRAME_LEN: usize = ETHERNET_LEN + IPV6_LEN + NA_ICMPV6_LEN;

/// Destination MAC of unsolicited NAs: the Ethernet mapping of `ff02::1`
/// (RFC 2464 §7).
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];

/// All-nodes multicast address, destination of unsolicited NAs (RFC 4861 §7.2.6).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Hop limit of every Neighbor Discovery message; receivers drop others
/// (RFC 4861 §7.1.2).
pub const ND_HOP_LIMIT: u8 = 255;

/// Value of the "length" field of an Ethernet Target Link-Layer Address
/// option, in units of 8 bytes.
const TLLA_OPTION_UNITS: u8 = 1;

/// Writes the Ethernet header of `frame` and returns the rest of it.
fn ethernet(frame: &mut [u8], dst: [u8; 6], src: [u8; 6], ether_type: EtherType) -> &mut [u8] {
    let mut eth = MutableEthernetPacket::new(&mut frame[..]).expect("frame has an Ethernet header");
    eth.set_destination(MacAddr::from(dst));
    eth.set_source(MacAddr::from(src));
    eth.set_ethertype(ether_type);
    &mut frame[ETHERNET_LEN..]
}

/// A gratuitous ARP announcing that `vip` is at `src_mac`, as keepalived 2.x
/// builds it (`vrrp_arp.c`): a broadcast ARP *request* whose sender and
/// target protocol addresses are both `vip`.
///
/// Fields: Ethernet `ff:ff:ff:ff:ff:ff` ← `src_mac`, type `0x0806`; ARP
/// htype 1, ptype `0x0800`, hlen 6, plen 4, opcode 1 (request), sender
/// `src_mac`/`vip`, target `ff:ff:ff:ff:ff:ff`/`vip`. keepalived fills the
/// target hardware address with `ff` bytes (RFC 5227 would have zeros;
/// receivers ignore the field in a request), and we copy keepalived so that
/// captures of both look the same. [`GARP_FRAME_LEN`] bytes.
///
/// # Panics
/// Never: the frame's size is a constant (see the module's panic contract).
#[must_use]
pub fn gratuitous_arp(src_mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0u8; GARP_FRAME_LEN];
    let rest = ethernet(&mut frame, [0xff; 6], src_mac, EtherTypes::Arp);
    let mut arp = MutableArpPacket::new(rest).expect("frame sized for ARP");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(MacAddr::from(src_mac));
    arp.set_sender_proto_addr(vip);
    arp.set_target_hw_addr(MacAddr::broadcast());
    arp.set_target_proto_addr(vip);
    frame
}

/// An unsolicited Neighbor Advertisement announcing that `vip` is at
/// `src_mac` (RFC 4861 §7.2.6), sent from `src_ip`, the link-local address
/// of the interface.
///
/// Fields: Ethernet `33:33:00:00:00:01` ← `src_mac`, type `0x86dd`; IPv6
/// `src_ip` → `ff02::1`, hop limit 255, next header 58, payload 32 bytes;
/// ICMPv6 type 136, code 0, flags Override only (not Router: keepalived sets
/// Router only when the interface forwards IPv6, and a load balancer's VIP
/// is a host address; not Solicited: nobody asked), target `vip`, one
/// Target Link-Layer Address option (type 2, length 1, `src_mac`), and the
/// checksum over the IPv6 pseudo-header. [`NA_FRAME_LEN`] bytes.
///
/// # Panics
/// Never: the frame's size is a constant (see the module's panic contract).
#[must_use]
pub fn unsolicited_na(src_mac: [u8; 6], src_ip: Ipv6Addr, vip: Ipv6Addr) -> Vec<u8> {
    let mut frame = vec![0u8; NA_FRAME_LEN];
    let rest = ethernet(&mut frame, ALL_NODES_MAC, src_mac, EtherTypes::Ipv6);

    let mut ip = MutableIpv6Packet::new(rest).expect("frame sized for IPv6");
    ip.set_version(6);
    ip.set_payload_length(NA_PAYLOAD_LEN);
    ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
    ip.set_hop_limit(ND_HOP_LIMIT);
    ip.set_source(src_ip);
    ip.set_destination(ALL_NODES);

    let icmp = ip.payload_mut();
    let mut na = MutableNeighborAdvertPacket::new(&mut icmp[..]).expect("frame sized for an NA");
    na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
    na.set_icmpv6_code(Icmpv6Code(0));
    na.set_flags(NeighborAdvertFlags::Override);
    na.set_target_addr(vip);
    // The option is written by hand: pnet's `set_options` takes a `Vec`
    // per option, and this one is a fixed 8 bytes.
    let option = &mut icmp[NA_LEN..];
    option[0] = NdpOptionTypes::TargetLLAddr.0;
    option[1] = TLLA_OPTION_UNITS;
    option[2..8].copy_from_slice(&src_mac);

    let sum = icmpv6::checksum(
        &Icmpv6Packet::new(icmp).expect("frame sized for ICMPv6"),
        &src_ip,
        &ALL_NODES,
    );
    MutableNeighborAdvertPacket::new(icmp)
        .expect("frame sized for an NA")
        .set_checksum(sum);
    frame
}

/// Sends whole Ethernet frames out of one interface through an `AF_PACKET`,
/// `SOCK_RAW` socket, the way keepalived sends its gratuitous ARPs.
///
/// Opening needs `CAP_NET_RAW` (in the network namespace the socket is
/// created in). The socket is bound with protocol 0, so the kernel never
/// queues received frames on it: it only sends. Sends block; the frames
/// are tiny and a packet socket only blocks when the device queue is full.
#[derive(Debug)]
pub struct FrameSender {
    socket: Socket,
    ifindex: u32,
}

impl FrameSender {
    /// Opens a packet socket bound to interface `ifindex`.
    ///
    /// # Errors
    /// `InvalidInput` for index 0 (that would mean "every interface") or an
    /// index above `i32::MAX`; `PermissionDenied` (`EPERM`) without
    /// `CAP_NET_RAW`; `ENODEV` when no interface has that index; any other
    /// error of `socket(2)` or `bind(2)`.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let index = i32::try_from(ifindex)
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("interface index {ifindex} is not a valid interface"),
                )
            })?;
        // Protocol 0 (`None`): bound sockets with protocol 0 receive nothing.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.bind(&packet_addr(index))?;
        Ok(Self { socket, ifindex })
    }

    /// The interface this sender writes to.
    #[must_use]
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends `frame`, which must start with its Ethernet header (as built by
    /// [`gratuitous_arp`] or [`unsolicited_na`]).
    ///
    /// # Errors
    /// Any error of `send(2)` (e.g. `ENETDOWN` when the interface is down,
    /// `EMSGSIZE` for a frame over the MTU), or `WriteZero` if the kernel
    /// took only part of the frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(frame)?;
        if sent == frame.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "sent {sent} of {} bytes on interface {}",
                    frame.len(),
                    self.ifindex
                ),
            ))
        }
    }
}

/// `sockaddr_ll` naming interface `ifindex` (any protocol, no address).
// AF_PACKET (17) fits a sa_family_t and sizeof(sockaddr_ll) (20) a socklen_t.
#[allow(clippy::cast_possible_truncation)]
fn packet_addr(ifindex: i32) -> SockAddr {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`, which is large
    // and aligned enough for a `sockaddr_ll` written through the cast.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let ll = (&raw mut storage).cast::<libc::sockaddr_ll>();
    // SAFETY: `ll` points into `storage` (see above).
    unsafe {
        (*ll).sll_family = libc::AF_PACKET as libc::sa_family_t;
        (*ll).sll_ifindex = ifindex;
    }
    let len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `storage` holds an initialised `sockaddr_ll` of `len` bytes.
    unsafe { SockAddr::new(storage, len) }
}

/// keepalived's gratuitous ARP / unsolicited NA timing for one instance.
///
/// A *round* is one frame per VIP. Names and defaults are keepalived's
/// (`vrrp_garp_master_*`, `garp_interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GarpConfig {
    /// `garp_master_delay`: the second burst comes this long after the
    /// transition to master, for switches that missed the first one while
    /// the link came up. Zero: no second burst. Default 5 s.
    pub master_delay: Duration,
    /// `garp_master_repeat`: rounds in each of the two bursts. Default 5.
    pub master_repeat: u32,
    /// `garp_master_refresh`: while master, re-announce every this long
    /// (measured from the transition), so caches that expired learn the
    /// VIPs again. Zero: no refresh. Default 0.
    pub master_refresh: Duration,
    /// `garp_master_refresh_repeat`: rounds per refresh. Default 1.
    pub master_refresh_repeat: u32,
    /// `garp_interval`: spacing between the rounds of a burst, for switches
    /// that rate-limit ARP. Zero: a whole burst is due at once. Default 0.
    /// keepalived spaces single frames on an interface; spacing rounds is
    /// the same when the instance has one VIP and the sender is free to
    /// pace the frames of a round itself.
    pub interval: Duration,
}

impl Default for GarpConfig {
    fn default() -> Self {
        Self {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: Duration::ZERO,
            master_refresh_repeat: 1,
            interval: Duration::ZERO,
        }
    }
}

/// Rounds due from `start` on, one every `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Burst {
    /// When the first round is due.
    start: Instant,
    /// Rounds in this burst.
    rounds: u32,
    /// Rounds already reported by [`GarpSchedule::poll`].
    reported: u32,
}

impl Burst {
    /// Rounds of this burst due by `now`, reported or not.
    fn due_by(&self, now: Instant, interval: Duration) -> u32 {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return 0;
        };
        if interval.is_zero() {
            return self.rounds;
        }
        // Round k is due at start + k * interval.
        let steps = elapsed.as_nanos() / interval.as_nanos();
        u32::try_from(steps.saturating_add(1))
            .unwrap_or(u32::MAX)
            .min(self.rounds)
    }

    /// When the next unreported round is due; `None` when all are reported
    /// (or the time is past what an [`Instant`] can hold).
    fn next_due(&self, interval: Duration) -> Option<Instant> {
        if self.reported >= self.rounds {
            return None;
        }
        self.start.checked_add(interval.checked_mul(self.reported)?)
    }
}

/// The schedule while master.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Active {
    /// The transition to master; the second burst and refreshes count from it.
    since: Instant,
    /// Bursts with rounds not yet reported. At most the two master bursts
    /// and the refreshes whose spacing outlasts `master_refresh`.
    bursts: Vec<Burst>,
    /// Start of the next refresh, if refreshing.
    next_refresh: Option<Instant>,
}

/// When to announce the VIPs, as keepalived does: see [`GarpConfig`].
///
/// Idle until [`start`](Self::start); then [`poll`](Self::poll) reports the
/// rounds due and [`next_deadline`](Self::next_deadline) says when the next
/// one will be.
///
/// Missed refreshes collapse: a poll that comes several refresh periods
/// late reports one refresh burst, not one per missed period (keepalived
/// also sends one refresh and reschedules), so a stalled process does not
/// flood the segment when it wakes. The two master bursts are reported in
/// full however late the poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarpSchedule {
    config: GarpConfig,
    active: Option<Active>,
}

impl GarpSchedule {
    /// An idle schedule: nothing is due until [`start`](Self::start).
    #[must_use]
    pub fn new(config: GarpConfig) -> Self {
        Self {
            config,
            active: None,
        }
    }

    /// The configuration this schedule follows.
    #[must_use]
    pub fn config(&self) -> &GarpConfig {
        &self.config
    }

    /// Whether [`start`](Self::start) was called without a later
    /// [`stop`](Self::stop).
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Became master at `now`: the first burst is due at `now`, the second
    /// `master_delay` later, refreshes every `master_refresh` after `now`.
    /// Calling it again restarts from `now`, dropping anything pending.
    pub fn start(&mut self, now: Instant) {
        let c = &self.config;
        let mut bursts = Vec::with_capacity(2);
        if c.master_repeat > 0 {
            bursts.push(Burst {
                start: now,
                rounds: c.master_repeat,
                reported: 0,
            });
            let second = if c.master_delay.is_zero() {
                None
            } else {
                now.checked_add(c.master_delay)
            };
            if let Some(start) = second {
                bursts.push(Burst {
                    start,
                    rounds: c.master_repeat,
                    reported: 0,
                });
            }
        }
        let next_refresh = if c.master_refresh.is_zero() || c.master_refresh_repeat == 0 {
            None
        } else {
            now.checked_add(c.master_refresh)
        };
        self.active = Some(Active {
            since: now,
            bursts,
            next_refresh,
        });
    }

    /// Left master: nothing more is due until the next [`start`](Self::start).
    pub fn stop(&mut self) {
        self.active = None;
    }

    /// How many rounds (one frame per VIP each) are due at `now` and were
    /// not reported by an earlier call; those are now reported. 0 when idle.
    pub fn poll(&mut self, now: Instant) -> u32 {
        let Some(active) = &mut self.active else {
            return 0;
        };
        let c = &self.config;
        if active.next_refresh.is_some_and(|at| now >= at) {
            // The latest refresh point at or before `now`; earlier missed
            // ones collapse into it.
            let periods = now.duration_since(active.since).as_nanos() / c.master_refresh.as_nanos();
            let start = mul(c.master_refresh, periods).and_then(|d| active.since.checked_add(d));
            let next = mul(c.master_refresh, periods.saturating_add(1))
                .and_then(|d| active.since.checked_add(d));
            if let Some(start) = start {
                active.bursts.push(Burst {
                    start,
                    rounds: c.master_refresh_repeat,
                    reported: 0,
                });
            }
            active.next_refresh = next;
        }
        let mut due = 0u32;
        for burst in &mut active.bursts {
            let by_now = burst.due_by(now, c.interval);
            due = due.saturating_add(by_now.saturating_sub(burst.reported));
            burst.reported = burst.reported.max(by_now);
        }
        active.bursts.retain(|b| b.reported < b.rounds);
        due
    }

    /// When the next round becomes due: poll then. `None` when idle or when
    /// nothing more will ever be due (no refresh and both bursts reported).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let active = self.active.as_ref()?;
        active
            .bursts
            .iter()
            .filter_map(|b| b.next_due(self.config.interval))
            .chain(active.next_refresh)
            .min()
    }
}

/// `d * k`, `None` if it does not fit a [`Duration`].
fn mul(d: Duration, k: u128) -> Option<Duration> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let nanos = d.as_nanos().checked_mul(k)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    // The remainder is below 10^9: fits a u32.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::{
        Packet as _,
        arp::ArpPacket,
        ethernet::EthernetPacket,
        icmpv6::ndp::{NdpOptionPacket, NeighborAdvertPacket},
        ipv6::Ipv6Packet,
    };

    const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x42, 0xacff, 0xfe11, 2);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

    #[test]
    fn gratuitous_arp_fields() {
        let frame = gratuitous_arp(MAC, VIP4);
        assert_eq!(frame.len(), 42);
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::broadcast());
        assert_eq!(eth.get_source(), MacAddr::from(MAC));
        assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
        assert_eq!(eth.get_ethertype().0, 0x0806);
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_hardware_type(), ArpHardwareTypes::Ethernet);
        assert_eq!(arp.get_protocol_type(), EtherTypes::Ipv4);
        assert_eq!(arp.get_hw_addr_len(), 6);
        assert_eq!(arp.get_proto_addr_len(), 4);
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_operation().0, 1);
        assert_eq!(arp.get_sender_hw_addr(), MacAddr::from(MAC));
        assert_eq!(arp.get_sender_proto_addr(), VIP4);
        assert_eq!(arp.get_target_hw_addr(), MacAddr::broadcast());
        assert_eq!(arp.get_target_proto_addr(), VIP4);
        assert!(arp.payload().is_empty());
        // The whole frame, byte for byte, as keepalived sends it.
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 198, 18, 0, 100,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 198, 18, 0, 100,
        ];
        assert_eq!(frame, expected);
    }

    /// RFC 1071 one's-complement sum of 16-bit big-endian words.
    fn ones_complement_sum(chunks: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = chunks.concat();
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        u16::try_from(sum).unwrap()
    }

    #[test]
    fn unsolicited_na_fields() {
        let frame = unsolicited_na(MAC, LINK_LOCAL, VIP6);
        assert_eq!(frame.len(), 86);
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::new(0x33, 0x33, 0, 0, 0, 1));
        assert_eq!(eth.get_source(), MacAddr::from(MAC));
        assert_eq!(eth.get_ethertype().0, 0x86dd);

        let ip = Ipv6Packet::new(eth.payload()).unwrap();
        assert_eq!(ip.get_version(), 6);
        assert_eq!(ip.get_traffic_class(), 0);
        assert_eq!(ip.get_flow_label(), 0);
        assert_eq!(ip.get_payload_length(), 32);
        assert_eq!(ip.get_next_header().0, 58);
        assert_eq!(ip.get_hop_limit(), 255);
        assert_eq!(ip.get_source(), LINK_LOCAL);
        assert_eq!(ip.get_destination(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload().len(), 32);

        let na = NeighborAdvertPacket::new(ip.payload()).unwrap();
        assert_eq!(na.get_icmpv6_type().0, 136);
        assert_eq!(na.get_icmpv6_code().0, 0);
        assert_eq!(na.get_flags(), 0b0010_0000, "O set, R and S clear");
        assert_eq!(na.get_reserved(), 0);
        assert_eq!(na.get_target_addr(), VIP6);
        let options = na.get_options();
        assert_eq!(options.len(), 1);
        assert_eq!(options[0].option_type.0, 2);
        assert_eq!(options[0].length, 1);
        assert_eq!(options[0].data, MAC);
        let option = NdpOptionPacket::new(&ip.payload()[24..]).unwrap();
        assert_eq!(option.get_option_type(), NdpOptionTypes::TargetLLAddr);
        assert_eq!(option.payload(), MAC);

        // Checksum, recomputed independently: pseudo-header (src, dst,
        // upper-layer length as u32, 3 zero bytes, next header 58) plus
        // the message; a correct one sums to 0xffff.
        let icmp = ip.payload();
        let pseudo_tail = [0, 0, 0, 32, 0, 0, 0, 58];
        let total = ones_complement_sum(&[
            &LINK_LOCAL.octets(),
            &ALL_NODES.octets(),
            &pseudo_tail,
            icmp,
        ]);
        assert_eq!(total, 0xffff, "checksum does not verify");
        let mut zeroed = icmp.to_vec();
        zeroed[2..4].fill(0);
        let expected = !ones_complement_sum(&[
            &LINK_LOCAL.octets(),
            &ALL_NODES.octets(),
            &pseudo_tail,
            &zeroed,
        ]);
        assert_eq!(na.get_checksum(), expected);
        assert_ne!(expected, 0);
    }

    #[test]
    fn na_checksum_depends_on_addresses() {
        let a = unsolicited_na(MAC, LINK_LOCAL, VIP6);
        let b = unsolicited_na(MAC, LINK_LOCAL, "2001:db8::101".parse().unwrap());
        let c = unsolicited_na(MAC, "fe80::1".parse().unwrap(), VIP6);
        assert_ne!(a[56..58], b[56..58]);
        assert_ne!(a[56..58], c[56..58]);
    }

    #[test]
    fn sender_rejects_bad_index_before_any_syscall() {
        for index in [0, u32::MAX, 1 << 31] {
            let err = FrameSender::open(index).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{index}");
        }
    }

    #[test]
    fn packet_addr_is_sockaddr_ll() {
        let addr = packet_addr(7);
        assert_eq!(
            addr.family(),
            libc::sa_family_t::try_from(libc::AF_PACKET).unwrap()
        );
        assert_eq!(
            usize::try_from(addr.len()).unwrap(),
            mem::size_of::<libc::sockaddr_ll>()
        );
        // SAFETY: the storage holds a sockaddr_ll (family and length
        // checked above); read_unaligned needs no alignment.
        let ll = unsafe { addr.as_ptr().cast::<libc::sockaddr_ll>().read_unaligned() };
        assert_eq!(ll.sll_ifindex, 7);
        assert_eq!(ll.sll_protocol, 0);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `(offset from t0, rounds due)` for each poll time in `at`.
    fn run(config: GarpConfig, at: &[u64]) -> Vec<(u64, u32)> {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        at.iter().map(|&t| (t, s.poll(t0 + ms(t)))).collect()
    }

    #[test]
    fn defaults_are_keepalived_s() {
        let c = GarpConfig::default();
        assert_eq!(c.master_delay, Duration::from_secs(5));
        assert_eq!(c.master_repeat, 5);
        assert_eq!(c.master_refresh, Duration::ZERO);
        assert_eq!(c.master_refresh_repeat, 1);
        assert_eq!(c.interval, Duration::ZERO);
    }

    #[test]
    fn default_schedule_two_bursts_of_five() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(GarpConfig::default());
        assert!(!s.is_active());
        assert_eq!(s.poll(t0), 0);
        assert_eq!(s.next_deadline(), None);

        s.start(t0);
        assert!(s.is_active());
        assert_eq!(s.next_deadline(), Some(t0));
        assert_eq!(s.poll(t0), 5);
        assert_eq!(s.poll(t0), 0, "already reported");
        assert_eq!(s.next_deadline(), Some(t0 + ms(5000)));
        assert_eq!(s.poll(t0 + ms(4999)), 0);
        assert_eq!(s.poll(t0 + ms(5000)), 5);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.poll(t0 + ms(3_600_000)), 0, "no refresh by default");
        assert!(s.is_active(), "still master, just nothing due");
    }

    #[test]
    fn zero_delay_means_one_burst() {
        let config = GarpConfig {
            master_delay: Duration::ZERO,
            ..GarpConfig::default()
        };
        assert_eq!(
            run(config, &[0, 5000, 60_000]),
            [(0, 5), (5000, 0), (60_000, 0)]
        );
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        s.poll(t0);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn zero_repeat_sends_nothing() {
        let config = GarpConfig {
            master_repeat: 0,
            ..GarpConfig::default()
        };
        assert_eq!(run(config, &[0, 5000]), [(0, 0), (5000, 0)]);
    }

    #[test]
    fn interval_spaces_rounds() {
        let config = GarpConfig {
            master_delay: ms(1000),
            master_repeat: 3,
            interval: ms(100),
            ..GarpConfig::default()
        };
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        assert_eq!(s.poll(t0), 1);
        assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
        assert_eq!(s.poll(t0 + ms(99)), 0);
        assert_eq!(s.poll(t0 + ms(100)), 1);
        assert_eq!(s.next_deadline(), Some(t0 + ms(200)));
        assert_eq!(s.poll(t0 + ms(250)), 1);
        assert_eq!(s.next_deadline(), Some(t0 + ms(1000)));
        assert_eq!(s.poll(t0 + ms(999)), 0);
        assert_eq!(
            run(config, &[1000, 1100, 1200, 1300, 5000]),
            [(1000, 4), (1100, 1), (1200, 1), (1300, 0), (5000, 0)],
            "polled first at 1000: the 3 of the first burst plus the 1st of the second"
        );
    }

    #[test]
    fn overlapping_bursts_add_up() {
        // Second burst starts before the first one is done.
        let config = GarpConfig {
            master_delay: ms(150),
            master_repeat: 4,
            interval: ms(100),
            ..GarpConfig::default()
        };
        assert_eq!(
            run(config, &[0, 100, 150, 200, 250, 300, 350, 450, 1000]),
            [
                (0, 1),
                (100, 1),
                (150, 1),
                (200, 1),
                (250, 1),
                (300, 1),
                (350, 1),
                (450, 1),
                (1000, 0)
            ]
        );
    }

    #[test]
    fn refresh_repeats_from_the_transition() {
        let config = GarpConfig {
            master_delay: ms(5000),
            master_repeat: 2,
            master_refresh: ms(3000),
            master_refresh_repeat: 2,
            interval: Duration::ZERO,
        };
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        assert_eq!(s.poll(t0), 2);
        assert_eq!(s.next_deadline(), Some(t0 + ms(3000)));
        assert_eq!(s.poll(t0 + ms(3000)), 2, "first refresh");
        assert_eq!(s.next_deadline(), Some(t0 + ms(5000)));
        assert_eq!(s.poll(t0 + ms(5000)), 2, "second master burst");
        assert_eq!(s.next_deadline(), Some(t0 + ms(6000)));
        // A poll a little late does not shift the grid.
        assert_eq!(s.poll(t0 + ms(6400)), 2);
        assert_eq!(s.next_deadline(), Some(t0 + ms(9000)));
        assert_eq!(s.poll(t0 + ms(8999)), 0);
        assert_eq!(s.poll(t0 + ms(9000)), 2);
    }

    #[test]
    fn refresh_with_interval() {
        let config = GarpConfig {
            master_delay: Duration::ZERO,
            master_repeat: 1,
            master_refresh: ms(1000),
            master_refresh_repeat: 3,
            interval: ms(10),
        };
        assert_eq!(
            run(config, &[0, 1000, 1010, 1015, 1020, 1030, 2025]),
            [
                (0, 1),
                (1000, 1),
                (1010, 1),
                (1015, 0),
                (1020, 1),
                (1030, 0),
                (2025, 3)
            ]
        );
    }

    #[test]
    fn stop_cancels_everything() {
        let config = GarpConfig {
            master_refresh: ms(1000),
            interval: ms(10),
            ..GarpConfig::default()
        };
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        assert_eq!(s.poll(t0), 1);
        s.stop();
        assert!(!s.is_active());
        assert_eq!(s.next_deadline(), None);
        for t in [0, 10, 1000, 5000, 60_000] {
            assert_eq!(s.poll(t0 + ms(t)), 0, "at {t}");
        }
        // Master again: everything starts over from the new transition.
        let t1 = t0 + ms(60_000);
        s.start(t1);
        assert_eq!(s.poll(t1 + ms(45)), 5);
        assert_eq!(s.next_deadline(), Some(t1 + ms(1000)));
    }

    #[test]
    fn restart_drops_pending_rounds() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(GarpConfig::default());
        s.start(t0);
        s.start(t0 + ms(1000));
        assert_eq!(s.poll(t0 + ms(5000)), 5, "the old second burst is gone");
        assert_eq!(s.poll(t0 + ms(6000)), 5);
    }

    #[test]
    fn late_poll_reports_everything_due() {
        let config = GarpConfig {
            master_delay: ms(2000),
            master_repeat: 5,
            master_refresh: ms(1000),
            master_refresh_repeat: 2,
            interval: ms(100),
        };
        // Both master bursts in full; the refreshes at 1000, 2000, 3000 and
        // 4000 collapse into the one at 4000, whose 2 rounds are both due.
        assert_eq!(run(config, &[4500]), [(4500, 5 + 5 + 2)]);
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        assert_eq!(s.poll(t0 + ms(4500)), 12);
        assert_eq!(s.next_deadline(), Some(t0 + ms(5000)));
        assert_eq!(s.poll(t0 + ms(4999)), 0);
        // Late by a few periods, just after a refresh point: only its first
        // round is due yet.
        assert_eq!(s.poll(t0 + ms(9050)), 1);
        assert_eq!(s.next_deadline(), Some(t0 + ms(9100)));
        assert_eq!(s.poll(t0 + ms(9100)), 1);
    }

    #[test]
    fn zero_refresh_repeat_disables_refresh() {
        let config = GarpConfig {
            master_delay: Duration::ZERO,
            master_refresh: ms(1000),
            master_refresh_repeat: 0,
            ..GarpConfig::default()
        };
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(config);
        s.start(t0);
        assert_eq!(s.poll(t0 + ms(10_000)), 5);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn mul_is_exact_and_checked() {
        assert_eq!(mul(ms(1500), 3), Some(ms(4500)));
        assert_eq!(
            mul(Duration::new(1, 999_999_999), 2),
            Some(Duration::new(3, 999_999_998))
        );
        assert_eq!(mul(Duration::MAX, 2), None);
    }
}
