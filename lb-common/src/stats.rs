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
    /// IPv6 carrying anything else (ICMPv6, extension headers, ...).
    Ipv6Other = 6,
    /// A frame whose headers are truncated or inconsistent (IHL < 5, total
    /// length shorter than the header, TCP data offset < 5, ...).
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

#[cfg(feature = "user")]
// SAFETY: repr(C), five u64 fields, no padding, every bit pattern valid.
unsafe impl aya::Pod for VerdictCounters {}

const _: () = assert!(core::mem::size_of::<VerdictCounters>() == VerdictCounters::FIELDS * 8);
