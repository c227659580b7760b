//! Per-CPU packet counters, indexed by protocol class, split by XDP verdict.
//!
//! Map `stats_proto` (a `BPF_MAP_TYPE_PERCPU_ARRAY`) holds one
//! [`VerdictCounters`] per [`ProtoClass`]. The program bumps exactly one field
//! of exactly one entry per packet, so the sum over all entries and fields is
//! the number of packets the program saw.

/// Name of the protocol-class counter map, as pinned under the bpffs path.
pub const STATS_PROTO_MAP: &str = "stats_proto";

/// What the parser made of a frame. The discriminant is the index into
/// `stats_proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProtoClass {
    /// Not IPv4 or IPv6 (ARP, LLDP, an unknown EtherType, ...).
    NonIp = 0,
    /// IPv4 carrying TCP.
    Ipv4Tcp = 1,
    /// IPv4 carrying UDP.
    Ipv4Udp = 2,
    /// IPv4 carrying anything else (ICMP, ...), or a non-first fragment.
    Ipv4Other = 3,
    /// IPv6 carrying TCP.
    Ipv6Tcp = 4,
    /// IPv6 carrying UDP.
    Ipv6Udp = 5,
    /// IPv6 carrying anything else after its extension headers (ICMPv6,
    /// ESP, ...), or a non-first fragment.
    Ipv6Other = 6,
    /// A frame whose headers are truncated or inconsistent (IHL < 5, total
    /// length shorter than the header, TCP data offset < 5, more than six
    /// IPv6 extension headers or more than 447 bytes of headers before the
    /// transport header, ...).
    Malformed = 7,
}

impl ProtoClass {
    /// Number of classes: the `max_entries` of `stats_proto`.
    pub const COUNT: u32 = 8;
    /// Every class, in index order.
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::NonIp,
        Self::Ipv4Tcp,
        Self::Ipv4Udp,
        Self::Ipv4Other,
        Self::Ipv6Tcp,
        Self::Ipv6Udp,
        Self::Ipv6Other,
        Self::Malformed,
    ];

    /// Short lowercase name for logs and tables.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NonIp => "non-ip",
            Self::Ipv4Tcp => "ipv4-tcp",
            Self::Ipv4Udp => "ipv4-udp",
            Self::Ipv4Other => "ipv4-other",
            Self::Ipv6Tcp => "ipv6-tcp",
            Self::Ipv6Udp => "ipv6-udp",
            Self::Ipv6Other => "ipv6-other",
            Self::Malformed => "malformed",
        }
    }
}

/// Packets per XDP verdict. Field order follows the `XDP_*` action values
/// (`XDP_ABORTED` = 0 ... `XDP_REDIRECT` = 4), so the kernel can index the
/// struct as an array of five `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VerdictCounters {
    /// `XDP_ABORTED`: the program hit an internal error.
    pub aborted: u64,
    /// `XDP_DROP`.
    pub drop: u64,
    /// `XDP_PASS`: handed to the kernel stack.
    pub pass: u64,
    /// `XDP_TX`: bounced out of the receiving interface.
    pub tx: u64,
    /// `XDP_REDIRECT`.
    pub redirect: u64,
}

impl VerdictCounters {
    /// Number of `u64` fields; `XDP_REDIRECT + 1`.
    pub const FIELDS: usize = 5;

    /// Sum of all verdicts.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.aborted + self.drop + self.pass + self.tx + self.redirect
    }

    /// Field-wise sum, used to fold per-CPU values.
    #[must_use]
    pub const fn add(self, other: Self) -> Self {
        Self {
            aborted: self.aborted + other.aborted,
            drop: self.drop + other.drop,
            pass: self.pass + other.pass,
            tx: self.tx + other.tx,
            redirect: self.redirect + other.redirect,
        }
    }
}

/// Name of the per-VIP counter map (per-CPU array indexed by VIP id). User
/// space zeroes a cell before giving its id to a new service.
pub const STATS_VIP_MAP: &str = "stats_vip";
/// Name of the per-(service, backend) counter map: a per-CPU array indexed
/// by backend slot, and a slot serves one (service, backend address) pair
/// (see `backend`), so a backend shared by two services has two cells.
/// User space zeroes a cell before giving its slot to a new pair.
pub const STATS_BACKEND_MAP: &str = "stats_backend";
/// Name of the exit-reason counter map (per-CPU array, one entry).
pub const STATS_EXIT_MAP: &str = "stats_exit";

/// Traffic through one VIP, or to one backend of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TrafficCounters {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (as received, before any encapsulation).
    pub bytes: u64,
    /// Flows that were new to the connection table (or the NAT table).
    pub new_flows: u64,
    /// `nat` / `fullnat`: the backends' replies translated back.
    pub replies: u64,
    /// `nat` / `fullnat`: bytes of those replies (as received).
    pub reply_bytes: u64,
    /// `nat` / `fullnat`: new flows Maglev chose this backend for, refused
    /// (no free SNAT port towards it, or the NAT table full).
    pub refused: u64,
}

impl TrafficCounters {
    /// Field-wise sum, used to fold per-CPU values.
    #[must_use]
    pub const fn add(self, o: Self) -> Self {
        Self {
            packets: self.packets + o.packets,
            bytes: self.bytes + o.bytes,
            new_flows: self.new_flows + o.new_flows,
            replies: self.replies + o.replies,
            reply_bytes: self.reply_bytes + o.reply_bytes,
            refused: self.refused + o.refused,
        }
    }
}

/// Why a packet left the program the way it did: exactly one field is
/// bumped per packet. Field names are what `bpftool` and `lbctl` show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExitCounters {
    /// `XDP_PASS`: not IPv4/IPv6.
    pub pass_not_ip: u64,
    /// `XDP_PASS`: headers truncated or inconsistent before the VIP lookup
    /// (the kernel stack applies its own checks and drops them).
    pub pass_malformed: u64,
    /// `XDP_PASS`: not addressed to a VIP (or not TCP/UDP/ICMP).
    pub pass_not_vip: u64,
    /// `XDP_PASS`: VIP without a usable backend, configured to pass.
    pub pass_no_backend: u64,
    /// `XDP_DROP`: addressed to a VIP but the L4 header is truncated.
    pub drop_malformed: u64,
    /// `XDP_DROP`: an IPv4 or IPv6 fragment addressed to a VIP (no ports to
    /// balance on; as katran does). A first fragment matches its VIP by
    /// port; a later one carries no ports and matches only a port-0 (all
    /// ports) VIP: to a VIP with a port it goes to the stack, which cannot
    /// reassemble it without the dropped first fragment.
    pub drop_fragment: u64,
    /// `XDP_DROP`: VIP without a usable backend.
    pub drop_no_backend: u64,
    /// `XDP_DROP`: IPv4 packet too big to encapsulate and DF not set (we
    /// cannot fragment).
    pub drop_too_big: u64,
    /// `XDP_TX` (or `XDP_REDIRECT` to the other interface): forwarded in `dsr` mode.
    pub tx_dsr: u64,
    /// `XDP_TX` (or `XDP_REDIRECT`): forwarded in `ipip` mode.
    pub tx_ipip: u64,
    /// `XDP_TX`: ICMP fragmentation-needed / packet-too-big sent back to
    /// the client because encapsulation would exceed the MTU.
    pub tx_icmp_too_big: u64,
    /// `XDP_TX` (or `XDP_REDIRECT`): a `nat` / `fullnat` flow's packet, translated towards
    /// its backend.
    pub tx_nat: u64,
    /// `XDP_TX` (or `XDP_REDIRECT`): a backend's reply, translated back towards the client.
    pub tx_nat_reply: u64,
    /// `XDP_TX` (or `XDP_REDIRECT`): an ICMP error about a NAT flow (from either side), its
    /// outer and embedded headers translated (path MTU discovery works
    /// through the translation).
    pub tx_nat_icmp: u64,
    /// `XDP_DROP`: a new `fullnat` flow found no free SNAT port towards
    /// its backend (or a `nat` flow's reply tuple is taken).
    pub drop_nat_ports: u64,
    /// `XDP_DROP`: a new NAT flow found the NAT table full (established
    /// flows keep working; `[dataplane] nat_flows`).
    pub drop_nat_full: u64,
    /// `XDP_PASS`: from a NAT backend's address but no NAT entry (not a
    /// reply to a flow we translated: health checks, ssh, an expired flow).
    pub pass_nat_no_entry: u64,
    /// `XDP_ABORTED`: a helper failed (e.g. no headroom to encapsulate).
    pub aborted: u64,
}

impl ExitCounters {
    /// Field-wise sum, used to fold per-CPU values.
    #[must_use]
    pub const fn add(self, o: Self) -> Self {
        Self {
            pass_not_ip: self.pass_not_ip + o.pass_not_ip,
            pass_malformed: self.pass_malformed + o.pass_malformed,
            pass_not_vip: self.pass_not_vip + o.pass_not_vip,
            pass_no_backend: self.pass_no_backend + o.pass_no_backend,
            drop_malformed: self.drop_malformed + o.drop_malformed,
            drop_fragment: self.drop_fragment + o.drop_fragment,
            drop_no_backend: self.drop_no_backend + o.drop_no_backend,
            drop_too_big: self.drop_too_big + o.drop_too_big,
            tx_dsr: self.tx_dsr + o.tx_dsr,
            tx_ipip: self.tx_ipip + o.tx_ipip,
            tx_icmp_too_big: self.tx_icmp_too_big + o.tx_icmp_too_big,
            tx_nat: self.tx_nat + o.tx_nat,
            tx_nat_reply: self.tx_nat_reply + o.tx_nat_reply,
            tx_nat_icmp: self.tx_nat_icmp + o.tx_nat_icmp,
            drop_nat_ports: self.drop_nat_ports + o.drop_nat_ports,
            drop_nat_full: self.drop_nat_full + o.drop_nat_full,
            pass_nat_no_entry: self.pass_nat_no_entry + o.pass_nat_no_entry,
            aborted: self.aborted + o.aborted,
        }
    }
}

/// Bump helper names: index of each field, for the kernel's array view.
pub mod exit {
    /// See [`super::ExitCounters::pass_not_ip`].
    pub const PASS_NOT_IP: usize = 0;
    /// See [`super::ExitCounters::pass_malformed`].
    pub const PASS_MALFORMED: usize = 1;
    /// See [`super::ExitCounters::pass_not_vip`].
    pub const PASS_NOT_VIP: usize = 2;
    /// See [`super::ExitCounters::pass_no_backend`].
    pub const PASS_NO_BACKEND: usize = 3;
    /// See [`super::ExitCounters::drop_malformed`].
    pub const DROP_MALFORMED: usize = 4;
    /// See [`super::ExitCounters::drop_fragment`].
    pub const DROP_FRAGMENT: usize = 5;
    /// See [`super::ExitCounters::drop_no_backend`].
    pub const DROP_NO_BACKEND: usize = 6;
    /// See [`super::ExitCounters::drop_too_big`].
    pub const DROP_TOO_BIG: usize = 7;
    /// See [`super::ExitCounters::tx_dsr`].
    pub const TX_DSR: usize = 8;
    /// See [`super::ExitCounters::tx_ipip`].
    pub const TX_IPIP: usize = 9;
    /// See [`super::ExitCounters::tx_icmp_too_big`].
    pub const TX_ICMP_TOO_BIG: usize = 10;
    /// See [`super::ExitCounters::tx_nat`].
    pub const TX_NAT: usize = 11;
    /// See [`super::ExitCounters::tx_nat_reply`].
    pub const TX_NAT_REPLY: usize = 12;
    /// See [`super::ExitCounters::tx_nat_icmp`].
    pub const TX_NAT_ICMP: usize = 13;
    /// See [`super::ExitCounters::drop_nat_ports`].
    pub const DROP_NAT_PORTS: usize = 14;
    /// See [`super::ExitCounters::drop_nat_full`].
    pub const DROP_NAT_FULL: usize = 15;
    /// See [`super::ExitCounters::pass_nat_no_entry`].
    pub const PASS_NAT_NO_ENTRY: usize = 16;
    /// See [`super::ExitCounters::aborted`].
    pub const ABORTED: usize = 17;
    /// Number of fields.
    pub const COUNT: usize = 18;
    /// Or-ed into a `TX_*` reason by the program: the packet leaves by the
    /// other interface (`XDP_REDIRECT`), not the one it came in on. Never
    /// a counter index: the exit is counted without it, the verdict as
    /// `redirect`.
    pub const REDIRECTED: usize = 1 << 8;
}

const _: () = assert!(core::mem::size_of::<ExitCounters>() == exit::COUNT * 8);

/// Name of the decapsulator's counter map.
pub const STATS_DECAP_MAP: &str = "stats_decap";

/// What the decapsulator (program `lb_decap`) did with each packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DecapCounters {
    /// Outer header stripped, inner packet passed to the stack.
    pub decapsulated: u64,
    /// Not IP-in-IP: passed unchanged.
    pub pass_not_encapsulated: u64,
    /// Truncated headers: passed unchanged (the stack drops them).
    pub pass_malformed: u64,
}

/// Field indices of [`DecapCounters`].
pub mod decap {
    /// See [`super::DecapCounters::decapsulated`].
    pub const DECAPSULATED: usize = 0;
    /// See [`super::DecapCounters::pass_not_encapsulated`].
    pub const PASS_NOT_ENCAPSULATED: usize = 1;
    /// See [`super::DecapCounters::pass_malformed`].
    pub const PASS_MALFORMED: usize = 2;
    /// Number of fields.
    pub const COUNT: usize = 3;
}

const _: () = assert!(core::mem::size_of::<DecapCounters>() == decap::COUNT * 8);

/// Name of the connection-table counter map (per-CPU array, one entry).
pub const STATS_FLOWS_MAP: &str = "stats_flows";

/// Flows the connection table evicted to make room for new ones (see
/// `flow::Replaced`). Idle evictions are the table doing its job; recent
/// ones mean flows that were probably still live lost their entry: the
/// table is too small for the traffic (`conntrack_entries`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowCounters {
    /// Evicted flows seen within `flow::FLOW_RECENT_UNITS` (about 1 s).
    pub evicted_recent: u64,
    /// Evicted flows idle longer than that.
    pub evicted_idle: u64,
    /// New-flow events for connection sync that found the ring buffer
    /// full (`lbd` not draining fast enough): those flows are not synced.
    pub events_lost: u64,
}

impl FlowCounters {
    /// Field-wise sum, used to fold per-CPU values.
    #[must_use]
    pub const fn add(self, o: Self) -> Self {
        Self {
            evicted_recent: self.evicted_recent + o.evicted_recent,
            evicted_idle: self.evicted_idle + o.evicted_idle,
            events_lost: self.events_lost + o.events_lost,
        }
    }
}

crate::pod!(
    VerdictCounters,
    TrafficCounters,
    ExitCounters,
    DecapCounters,
    FlowCounters
);

const _: () = assert!(core::mem::size_of::<VerdictCounters>() == VerdictCounters::FIELDS * 8);
