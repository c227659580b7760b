//! Backends: map `backends` (array, index -> [`Backend`]). Maglev tables
//! and the connection table hold these indices.
//!
//! A slot belongs to one (service, backend address) pair, as a "real
//! server" belongs to one virtual service in IPVS: two services with the
//! same backend address use two slots. The slot index is also the index of
//! the pair's traffic counters (`stats_backend`), so the program counts
//! per (service, backend) with the one per-CPU array increment it makes
//! for the VIP. [`Backend::vip_id`] names the owning service, so a flow of
//! another service never follows a slot that was freed and given to a new
//! pair (nor counts against it).

/// Name of the backend map.
pub const BACKENDS_MAP: &str = "backends";
/// Name of the per-pair traffic counters (one cell per backend slot).
pub const STATS_BACKEND_MAP: &str = "stats_backend";
/// Backend slots ((service, backend) pairs across all services) in the
/// object as built; `lbd` sizes both maps at load from `[dataplane]
/// backend_pairs`, whose default this is. Each slot costs 48 bytes, plus
/// 48 bytes of counters per CPU.
pub const MAX_BACKENDS: u32 = 4096;
/// The fewest backend slots `backend_pairs` may ask for.
pub const MIN_BACKEND_PAIRS: u32 = 64;
/// The most backend slots `backend_pairs` may ask for.
pub const MAX_BACKEND_PAIRS: u32 = 1 << 20;

/// Bits of `Backend::flags`.
pub mod backend_flags {
    /// The slot holds a live backend. Cleared when the backend leaves its
    /// service's pool (or the service goes): connection-table entries
    /// pointing at an inactive slot are treated as misses and re-balanced.
    pub const ACTIVE: u8 = 1 << 0;
    /// Weight 0 (drained, or failed with `inhibit_on_failure`): in no
    /// Maglev table, so it takes no new flows; a persistence template
    /// naming it is not followed either (`crate::persist`).
    pub const DRAINED: u8 = 1 << 1;
}

/// Value of the backend map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct Backend {
    /// Backend address; IPv4 as v4-mapped IPv6.
    pub addr: [u8; 16],
    /// MAC to send to: the backend's own (dsr) or the next hop's towards it
    /// (ipip), resolved by user space from the neighbour table.
    pub mac: [u8; 6],
    /// 4 or 6.
    pub family: u8,
    /// Bits from [`backend_flags`].
    pub flags: u8,
    /// Id of the VIP (service) this slot serves. The program forwards a
    /// flow through the slot only for this VIP.
    pub vip_id: u32,
    /// `nat` / `fullnat`: the backend's port (network order); 0: the
    /// service's (the packet's own destination port).
    pub port_be: u16,
    /// The interface the next hop is on: 0 the one clients arrive on,
    /// 1 `[dataplane] backend_interface` (see `config::Config::arm_ifindex`).
    pub arm: u8,
    /// Explicit padding, always 0.
    pub pad: u8,
    /// `fullnat`: the source address translated flows get towards this
    /// backend (v4-mapped for IPv4).
    pub snat: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<Backend>() == 48);

crate::pod!(Backend);
