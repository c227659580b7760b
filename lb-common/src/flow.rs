//! Connection table: map `flows` (LRU hash, [`FlowKey`] -> [`FlowState`]).
//! A hit keeps a flow on its backend whatever happens to the pool; a full
//! table evicts the least recently used entry, it never refuses an insert.

/// Name of the connection table.
pub const FLOWS_MAP: &str = "flows";
/// Default number of entries.
pub const DEFAULT_FLOW_ENTRIES: u32 = 1 << 20;

/// A flow's 5-tuple as the client sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(4))]
pub struct FlowKey {
    /// Client address (v4-mapped for IPv4).
    pub src: [u8; 16],
    /// VIP address (v4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Client port, network order.
    pub src_port_be: u16,
    /// VIP port, network order.
    pub dst_port_be: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Explicit padding, always 0.
    pub pad: [u8; 3],
}

/// Where a flow goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowState {
    /// Backend index.
    pub backend: u32,
    /// VIP id the flow belongs to.
    pub vip_id: u32,
    /// That VIP's generation (`VipMeta::generation`) when the flow began:
    /// a flow of a removed VIP never matches the id's next owner.
    pub vip_generation: u32,
    /// Explicit padding, always 0.
    pub pad: u32,
    /// `bpf_ktime_get_ns()` of the last packet.
    pub last_seen_ns: u64,
}

crate::pod!(FlowKey, FlowState);
