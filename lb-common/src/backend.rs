//! Backends: map `backends` (array, index -> [`Backend`]). Maglev tables
//! and the connection table hold these indices.

/// Name of the backend map.
pub const BACKENDS_MAP: &str = "backends";
/// Number of backend slots.
pub const MAX_BACKENDS: u32 = 4096;

/// Bits of `Backend::flags`.
pub mod backend_flags {
    /// The slot holds a live backend. Cleared when the backend is removed
    /// from every pool: connection-table entries pointing at an inactive slot
    /// are treated as misses and re-balanced.
    pub const ACTIVE: u8 = 1 << 0;
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
}

crate::pod!(Backend);
