//! Virtual services: map `vips` (hash, [`VipKey`] -> [`VipMeta`]) and the
//! Maglev lookup tables, map `maglev_tables` (array of maps).
//!
//! Table layout: VIP `id` owns outer slots `2 * id` and `2 * id + 1`; each
//! holds an array of `ring_size` backend indices. `VipMeta::active_table`
//! (0 or 1) says which copy the kernel reads. User space rewrites the other
//! copy completely, then flips `active_table` with one map update, so the
//! kernel never sees a half-written table.
//!
//! Two more maps serve the fast path:
//! - `vip_ids` (array, id -> [`VipMeta`]): a connection-table hit names its
//!   VIP by id and generation, so established flows skip the `vips` hash
//!   lookup. A removed VIP's slot is zeroed (generation 0 = no VIP), and a
//!   re-used id gets a new generation, so stale flows never match it.
//! - `vip_filter` (array, [`filter_bucket`] of an address -> bits of
//!   [`filter_bits`]): which kinds of VIP exist on addresses in that bucket.
//!   Traffic to an address in an empty bucket is passed without any hash
//!   lookup; a VIP address skips the lookup (exact port or port 0) that
//!   cannot match.

/// Name of the VIP map.
pub const VIPS_MAP: &str = "vips";
/// Name of the outer Maglev table map.
pub const MAGLEV_TABLES_MAP: &str = "maglev_tables";
/// Name of the id-indexed VIP array.
pub const VIP_IDS_MAP: &str = "vip_ids";
/// Name of the address prefilter.
pub const VIP_FILTER_MAP: &str = "vip_filter";
/// Buckets in `vip_filter` (a power of two).
pub const FILTER_BUCKETS: u32 = 1 << 16;

/// Bits of a `vip_filter` bucket.
pub mod filter_bits {
    /// Some VIP with a specific port has an address in this bucket.
    pub const PORT: u8 = 1 << 0;
    /// Some all-ports (port 0) VIP has an address in this bucket.
    pub const ANY_PORT: u8 = 1 << 1;
}

/// The `vip_filter` bucket of an address (v4-mapped for IPv4).
#[inline(always)]
#[must_use]
pub const fn filter_bucket(addr: &[u8; 16]) -> u32 {
    use crate::hash::word;
    let h =
        (word(addr, 0) ^ word(addr, 1) ^ word(addr, 2) ^ word(addr, 3)).wrapping_mul(0x9e37_79b1);
    (h >> 16) & (FILTER_BUCKETS - 1)
}

/// How many VIPs the maps hold (ids `0..MAX_VIPS`).
pub const MAX_VIPS: u32 = 1024;
/// Default Maglev table size (prime).
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// `BPF_F_INNER_MAP`: inner tables may differ in `max_entries` (ring size).
pub const BPF_F_INNER_MAP: u32 = 1 << 12;
/// `BPF_F_MMAPABLE`: user space writes a whole table with one copy into
/// the array's memory instead of one syscall per slot.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Flags of every inner Maglev table (the kernel requires inner maps to
/// match the template's flags).
pub const TABLE_FLAGS: u32 = BPF_F_INNER_MAP | BPF_F_MMAPABLE;

/// Key of the VIP map. A VIP with `port_be == 0` matches every port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(4))]
pub struct VipKey {
    /// VIP address; IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub addr: [u8; 16],
    /// Destination port, network byte order; 0 = all ports.
    pub port_be: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// Explicit padding, always 0.
    pub pad: u8,
}

/// Forwarding modes (`VipMeta::mode`).
pub mod mode {
    /// L2 direct routing (LVS-DR): rewrite MACs, `XDP_TX`.
    pub const DSR: u8 = 0;
    /// IP-in-IP encapsulation to the backend, `XDP_TX` to the next hop.
    pub const IPIP: u8 = 1;
}

/// Bits of `VipMeta::flags`.
pub mod vip_flags {
    /// No backend can take new flows (all down or drained): established
    /// flows still forward; new ones are dropped unless `PASS_NO_BACKEND`.
    pub const NO_BACKEND: u8 = 1 << 0;
    /// With `NO_BACKEND`: hand new flows to the local stack instead of
    /// dropping them.
    pub const PASS_NO_BACKEND: u8 = 1 << 1;
}

/// Value of the VIP map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VipMeta {
    /// Index into per-VIP stats and (times two) into `maglev_tables`.
    pub id: u32,
    /// Maglev table size M (prime); the flow hash is taken modulo this.
    pub ring_size: u32,
    /// One of [`mode`].
    pub mode: u8,
    /// Bits from [`vip_flags`].
    pub flags: u8,
    /// Which of the VIP's two tables is live: 0 or 1.
    pub active_table: u8,
    /// Explicit padding, always 0.
    pub pad: u8,
    /// Generation of this id's current VIP: never 0 for a live VIP, new
    /// each time the id is given to a VIP. Flows record it.
    pub generation: u32,
}

impl VipMeta {
    /// Outer `maglev_tables` index of table copy `which` (0 or 1).
    #[must_use]
    pub const fn table_slot(id: u32, which: u8) -> u32 {
        id * 2 + (which & 1) as u32
    }
}

crate::pod!(VipKey, VipMeta);
