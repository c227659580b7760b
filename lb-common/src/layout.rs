//! The data plane's layout stamp: map `layout` (array with one [`Layout`]).
//!
//! The program and its maps outlive `lbd` (the XDP link and every map are
//! pinned), and a starting `lbd` adopts what an earlier one left. It may
//! only do so if the pinned maps mean what its own program expects: the
//! stamp records the layout version and the sizes chosen at load, and the
//! adopting `lbd` compares them (and every pinned map's key and value
//! sizes) before it touches anything.

/// Name of the stamp map.
pub const LAYOUT_MAP: &str = "layout";

/// `Layout::magic`: "lb-dplan" read as a little-endian `u64`.
pub const LAYOUT_MAGIC: u64 = u64::from_le_bytes(*b"lb-dplan");

/// Version of what the maps hold and mean. Bump it whenever a map's key or
/// value changes meaning (a change of size is caught without it) or a map
/// is renamed; an `lbd` refuses to adopt a data plane of another version.
/// 6: a flow's connection-table set is taken from its mixed hash
/// (`flow::flow_set_index`), and the map `parse_scratch` is new.
pub const LAYOUT_VERSION: u32 = 6;

/// The stamp, written once by the `lbd` that creates the maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Layout {
    /// [`LAYOUT_MAGIC`]; 0 means the stamp was never written.
    pub magic: u64,
    /// [`LAYOUT_VERSION`] of the `lbd` that created the maps.
    pub version: u32,
    /// Sets in the connection table (`flows`).
    pub flow_sets: u32,
    /// Backend slots (`backends`, `stats_backend`).
    pub backend_pairs: u32,
    /// The interface the program is attached to.
    pub ifindex: u32,
    /// The attach mode's `XDP_FLAGS_*` bits (`XDP_FLAGS_SKB_MODE` 2,
    /// `XDP_FLAGS_DRV_MODE` 4).
    pub xdp_flags: u32,
    /// Flows the NAT table (`nat`) holds (two entries each).
    pub nat_flows: u32,
    /// The second interface the program is attached to (`[dataplane]
    /// backend_interface`), 0 for none.
    pub backend_ifindex: u32,
    /// Its attach mode's `XDP_FLAGS_*` bits.
    pub backend_xdp_flags: u32,
}

const _: () = assert!(core::mem::size_of::<Layout>() == 40);

crate::pod!(Layout);
