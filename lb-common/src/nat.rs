//! NAT table: map `nat` (hash, [`FlowKey`] -> [`NatEntry`]), the state of
//! every flow of a `nat` or `fullnat` service.
//!
//! A NATed flow has two entries, one per direction, each keyed by the
//! 5-tuple its packets carry on the wire and holding the 5-tuple they carry
//! after translation ([`NatEntry::to`]):
//! - forward, client -> VIP: `to` is client -> backend (`nat`) or SNAT
//!   address -> backend (`fullnat`);
//! - reply, backend -> client (`nat`) or backend -> SNAT address
//!   (`fullnat`): `to` is VIP -> client.
//!
//! Each entry's key is its partner's `to` reversed ([`reversed`]), so
//! either entry finds the other. The XDP program writes both on a flow's
//! first packet: the reply entry first, with `BPF_NOEXIST`, which is how a
//! fullnat flow gets its SNAT port: the first port (from
//! [`snat_port`]'s sequence) whose reply key nobody holds. The map itself
//! is the port allocator, atomic across CPUs, and no two live flows ever
//! share (SNAT address, port, backend, backend port, protocol).
//!
//! Unlike the connection table (`flow`), nothing here is ever evicted to
//! make room: a reply entry cannot be rebuilt from a hash, so losing it
//! would break the flow. A full map refuses new flows (counted); `lbd`
//! deletes flows whose state has timed out ([`NatState`], [`Timeouts`]).
//! Each direction records the TCP flags it has seen ([`NatEntry::tcp`]) and
//! when it was last seen; `lbd` combines the two into the flow's state.

use crate::flow::FlowKey;

/// Name of the NAT table.
pub const NAT_MAP: &str = "nat";
/// Default NAT flows (the map holds two entries per flow).
pub const DEFAULT_NAT_FLOWS: u32 = 1 << 18;
/// Fewest NAT flows `lbd` accepts.
pub const MIN_NAT_FLOWS: u32 = 64;
/// Most NAT flows `lbd` accepts (32 M flows, about 8 GiB of entries).
pub const MAX_NAT_FLOWS: u32 = 1 << 25;
/// Ports a new fullnat flow tries before it is refused as "ports
/// exhausted": the SNAT range is nearly full for that backend.
pub const SNAT_PORT_TRIES: u32 = 32;
/// Default SNAT source ports: below the kernel's default ephemeral range
/// (32768-60999), so `lbd`'s own connections (health checks) from the same
/// address never collide with a translated flow.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (1024, 32767);

/// Bits of [`NatEntry::flags`].
pub mod nat_flags {
    /// The entry translates replies (backend -> client).
    pub const REPLY: u8 = 1 << 0;
    /// The flow's service is `fullnat` (the source is translated too).
    pub const FULLNAT: u8 = 1 << 1;
    /// Written by connection sync, not yet used here: the program clears
    /// it on the entry's first packet. Sync refreshes only entries without
    /// it (this node's live flows) and overwrites only entries with it.
    pub const SYNCED: u8 = 1 << 2;
    /// The flow's service keeps client templates (`crate::persist`): the
    /// flow's packets refresh its client's.
    pub const PERSIST: u8 = 1 << 3;
}

/// TCP header flags, as [`NatEntry::tcp`] records them.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// The flags an entry records.
    pub const TRACKED: u8 = FIN | SYN | RST | ACK;
}

/// One direction of a NATed flow. 64 bytes, one cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NatEntry {
    /// The packet's 5-tuple after translation.
    pub to: FlowKey,
    /// MAC to send the translated packet to: the backend's (or its next
    /// hop's) forward, the client's (or its router's) for replies.
    pub mac: [u8; 6],
    /// Bits of [`nat_flags`].
    pub flags: u8,
    /// TCP flags seen in this direction ([`tcp_flags`]); reset by a new
    /// connection's SYN (forward) or SYN-ACK (reply).
    pub tcp: u8,
    /// When this direction was last seen, in `flow::flow_seen` units.
    pub seen: u32,
    /// Backend slot of the flow (`backends`; counters, `lbctl flows`).
    pub backend: u32,
    /// VIP id of the flow's service.
    pub vip_id: u32,
    /// The interface `mac` is on (`config::Config::arm_ifindex`): the
    /// client's ingress interface for replies, the backend's for a flow
    /// whose slot is gone.
    pub arm: u8,
    /// Explicit padding, always 0.
    pub pad: [u8; 3],
}

const _: () = assert!(size_of::<NatEntry>() == 64);

crate::pod!(NatEntry);

/// A NAT flow the program has just recorded, for connection sync: what
/// `lbd` tells its peers so their NAT tables hold the flow (both entries)
/// before a failover brings them its packets. Written to the same ring
/// buffer as `flow::FlowEvent`; the reader tells them apart by length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NatEvent {
    /// The client's 5-tuple (the forward entry's key).
    pub key: FlowKey,
    /// The forward translation (the forward entry's `to`).
    pub to: FlowKey,
    /// The client's (or its router's) MAC, where replies go.
    pub client_mac: [u8; 6],
    /// [`nat_flags`] of the forward entry.
    pub flags: u8,
    /// TCP flags of the first packet.
    pub tcp: u8,
    /// The backend slot (this node's index).
    pub backend: u32,
    /// The VIP id (this node's).
    pub vip_id: u32,
    /// The VIP's generation.
    pub vip_generation: u32,
    /// The interface the client's packet came in on (its `arm`).
    pub client_arm: u8,
    /// Explicit padding, always 0.
    pub pad: [u8; 3],
}

const _: () = assert!(size_of::<NatEvent>() == 104);

crate::pod!(NatEvent);

/// The key of the entry for the other direction of a packet whose
/// translated tuple is `to`: addresses and ports swapped.
#[inline(always)]
#[must_use]
pub const fn reversed(to: &FlowKey) -> FlowKey {
    FlowKey {
        src: to.dst,
        dst: to.src,
        src_port_be: to.dst_port_be,
        dst_port_be: to.src_port_be,
        proto: to.proto,
        pad: [0; 3],
    }
}

/// The `attempt`-th SNAT port (host order) a flow of hash `hash` tries, in
/// the range of `count` ports from `min`: consecutive ports from one the
/// hash picks, so the same client tuple asks for the same port first (a
/// flow re-created after its entries were lost usually gets its old port
/// back) and a range smaller than [`SNAT_PORT_TRIES`] is tried whole.
#[inline(always)]
#[must_use]
pub const fn snat_port(hash: u32, attempt: u32, min: u16, count: u16) -> u16 {
    if count == 0 {
        return min;
    }
    let off = (hash.wrapping_add(attempt)) % count as u32;
    min.wrapping_add(off as u16)
}

/// The TCP flags a direction has seen after a packet with header flags
/// `flags`: a client's SYN (forward, no ACK) or a backend's SYN-ACK
/// (reply) starts a new connection on the tuple and clears what the
/// previous one left.
#[inline(always)]
#[must_use]
pub const fn tcp_seen(old: u8, flags: u8, reply: bool) -> u8 {
    let flags = flags & tcp_flags::TRACKED;
    let opens = if reply {
        tcp_flags::SYN | tcp_flags::ACK
    } else {
        tcp_flags::SYN
    };
    if flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == opens {
        flags
    } else {
        old | flags
    }
}

/// A NATed flow's state, from both directions' flags, named as `ipvsadm
/// -Lc` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatState {
    /// TCP: the client's SYN, nothing from the backend yet.
    SynSent,
    /// TCP: the backend answered, the client has not acknowledged.
    SynRecv,
    /// TCP: both sides have exchanged data or acknowledgements.
    Established,
    /// TCP: one side has sent FIN.
    FinWait,
    /// TCP: both sides have sent FIN.
    TimeWait,
    /// TCP: a RST was seen.
    Close,
    /// UDP (no connection: the flow lives while packets do).
    Udp,
}

impl NatState {
    /// Every state.
    pub const ALL: [Self; 7] = [
        Self::SynSent,
        Self::SynRecv,
        Self::Established,
        Self::FinWait,
        Self::TimeWait,
        Self::Close,
        Self::Udp,
    ];

    /// The state from the protocol and the TCP flags each direction has
    /// seen.
    #[must_use]
    pub const fn of(proto: u8, forward: u8, reply: u8) -> Self {
        use tcp_flags::{ACK, FIN, RST, SYN};
        if proto != 6 {
            return Self::Udp;
        }
        if (forward | reply) & RST != 0 {
            Self::Close
        } else if forward & reply & FIN != 0 {
            Self::TimeWait
        } else if (forward | reply) & FIN != 0 {
            Self::FinWait
        } else if forward & ACK != 0 && reply != 0 {
            Self::Established
        } else if reply & SYN != 0 {
            Self::SynRecv
        } else if reply != 0 {
            // A flow re-created mid-stream: the backend answers with plain
            // ACKs; one more packet from the client makes it established.
            Self::SynRecv
        } else {
            Self::SynSent
        }
    }

    /// `ipvsadm`'s spelling.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::Established => "ESTABLISHED",
            Self::FinWait => "FIN_WAIT",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::Udp => "UDP",
        }
    }
}

/// How long a flow may stay idle in each state before `lbd` deletes it
/// (and its SNAT port is free again), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// [`NatState::SynSent`], [`NatState::SynRecv`].
    pub tcp_syn: u32,
    /// [`NatState::Established`].
    pub tcp_established: u32,
    /// [`NatState::FinWait`], [`NatState::TimeWait`].
    pub tcp_fin: u32,
    /// [`NatState::Close`].
    pub tcp_close: u32,
    /// [`NatState::Udp`].
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults where they are sane for a proxy: established 15
    /// minutes, closing one minute (the client's TIME_WAIT), a reset 10
    /// seconds; a half-open connection one minute; UDP one minute.
    fn default() -> Self {
        Self {
            tcp_syn: 60,
            tcp_established: 900,
            tcp_fin: 60,
            tcp_close: 10,
            udp: 60,
        }
    }
}

impl Timeouts {
    /// The idle timeout of `state`, in seconds.
    #[must_use]
    pub const fn of(&self, state: NatState) -> u32 {
        match state {
            NatState::SynSent | NatState::SynRecv => self.tcp_syn,
            NatState::Established => self.tcp_established,
            NatState::FinWait | NatState::TimeWait => self.tcp_fin,
            NatState::Close => self.tcp_close,
            NatState::Udp => self.udp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_flags::{ACK, FIN, RST, SYN};

    #[test]
    fn reversed_swaps_both_ends_and_twice_is_identity() {
        let k = FlowKey {
            src: [1; 16],
            dst: [2; 16],
            src_port_be: 10,
            dst_port_be: 20,
            proto: 6,
            pad: [0; 3],
        };
        let r = reversed(&k);
        assert_eq!((r.src, r.dst), ([2; 16], [1; 16]));
        assert_eq!((r.src_port_be, r.dst_port_be), (20, 10));
        assert_eq!(reversed(&r), k);
    }

    #[test]
    fn snat_ports_stay_in_range_and_cover_a_small_one() {
        for hash in [0, 1, 77, u32::MAX] {
            let mut seen = std::collections::BTreeSet::new();
            for attempt in 0..4 {
                let p = snat_port(hash, attempt, 40000, 4);
                assert!((40000..40004).contains(&p));
                seen.insert(p);
            }
            assert_eq!(seen.len(), 4, "4 tries cover a 4-port range");
            let p = snat_port(hash, 0, 1024, 31744);
            assert!((1024..=32767).contains(&p));
        }
        assert_eq!(snat_port(5, 0, 65535, 1), 65535);
    }

    #[test]
    fn a_connection_goes_through_its_states() {
        let s = |f, r| NatState::of(6, f, r);
        let mut f = tcp_seen(0, SYN, false);
        let mut r = 0;
        assert_eq!(s(f, r), NatState::SynSent);
        r = tcp_seen(r, SYN | ACK, true);
        assert_eq!(s(f, r), NatState::SynRecv);
        f = tcp_seen(f, ACK, false);
        assert_eq!(s(f, r), NatState::Established);
        f = tcp_seen(f, FIN | ACK, false);
        assert_eq!(s(f, r), NatState::FinWait);
        r = tcp_seen(r, FIN | ACK, true);
        assert_eq!(s(f, r), NatState::TimeWait);
        // The tuple reused by a new connection: fresh state both ways.
        f = tcp_seen(f, SYN, false);
        assert_eq!(
            s(f, r),
            NatState::FinWait,
            "old FIN still on the reply side"
        );
        r = tcp_seen(r, SYN | ACK, true);
        assert_eq!(s(f, r), NatState::SynRecv);
        assert_eq!(s(f | RST, r), NatState::Close);
        assert_eq!(NatState::of(17, 0, 0), NatState::Udp);
    }

    #[test]
    fn a_flow_recreated_mid_stream_becomes_established() {
        let f = tcp_seen(0, ACK, false);
        assert_eq!(NatState::of(6, f, 0), NatState::SynSent);
        let r = tcp_seen(0, ACK, true);
        assert_eq!(NatState::of(6, f, r), NatState::Established);
    }

    #[test]
    fn timeouts_cover_every_state() {
        let t = Timeouts::default();
        for s in NatState::ALL {
            assert!(t.of(s) > 0, "{}", s.name());
        }
        assert!(t.of(NatState::Established) > t.of(NatState::FinWait));
    }
}
