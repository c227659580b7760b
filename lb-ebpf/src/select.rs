//! Backend selection: VIP lookup, connection table, Maglev.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{
    backend::{Backend, backend_flags},
    flow::{FlowKey, FlowState},
    hash::flow_hash,
    vip::{VipKey, VipMeta, vip_flags},
};

use crate::{
    maps::{BACKENDS, FLOWS, MAGLEV_TABLES, VIPS},
    parse::Packet,
};

/// Refresh a flow's `last_seen_ns` at most this often, so a busy flow does
/// not write its table entry on every packet.
const TOUCH_INTERVAL_NS: u64 = 1_000_000_000;

/// The VIP a flow is addressed to: exact port first, then the port-0
/// (all ports) VIP for the address.
#[inline(always)]
pub fn find_vip(flow: &FlowKey) -> Option<VipMeta> {
    let mut key = VipKey {
        addr: flow.dst,
        port_be: flow.dst_port_be,
        proto: flow.proto,
        pad: 0,
    };
    // SAFETY: the value is copied out before any other map operation.
    if let Some(meta) = unsafe { VIPS.get(key) } {
        return Some(*meta);
    }
    key.port_be = 0;
    // SAFETY: as above.
    unsafe { VIPS.get(key) }.copied()
}

/// A live backend slot.
#[inline(always)]
fn backend_at(index: u32) -> Option<(u32, Backend)> {
    let b = BACKENDS.get(index)?;
    (b.flags & backend_flags::ACTIVE != 0).then_some((index, *b))
}

/// The backend chosen for a packet.
pub struct Chosen {
    /// Backend index.
    pub index: u32,
    /// The flow was not in the connection table.
    pub new_flow: bool,
    /// The backend's slot, copied.
    pub backend: Backend,
}

impl Chosen {
    /// Nothing chosen yet.
    pub const fn new() -> Self {
        Self {
            index: 0,
            new_flow: false,
            backend: Backend {
                addr: [0; 16],
                mac: [0; 6],
                family: 0,
                flags: 0,
            },
        }
    }
}

/// Pick the backend for `pkt` (addressed to `vip`) into `out`: the
/// connection table's choice if it has one and the slot is still live,
/// else Maglev. A TCP SYN always takes the Maglev choice (a new connection
/// on a reused 5-tuple). New choices are recorded, except for ICMP errors,
/// which only follow existing flows. Returns false when the VIP has no
/// backend for a new flow (flag `NO_BACKEND`, or an empty table slot).
///
/// A BPF subprogram of its own: its temporaries (keys and values for three
/// map calls) would otherwise sit in the main frame, and main plus the
/// deepest forwarding call must fit 512 bytes of stack.
#[inline(never)]
pub fn select(vip: &VipMeta, pkt: &Packet, out: &mut Chosen) -> bool {
    let flow = &pkt.flow;
    let now = unsafe { bpf_ktime_get_ns() };
    if !pkt.syn
        && let Some(state) = FLOWS.get_ptr_mut(flow)
    {
        // SAFETY: pointer from a successful lookup; a concurrent eviction
        // can only make us read a stale but valid entry.
        let state = unsafe { &mut *state };
        if let Some((index, backend)) = backend_at(state.backend) {
            if now.wrapping_sub(state.last_seen_ns) > TOUCH_INTERVAL_NS {
                state.last_seen_ns = now;
            }
            out.index = index;
            out.backend = backend;
            out.new_flow = false;
            return true;
        }
    }
    if vip.flags & vip_flags::NO_BACKEND != 0 || vip.ring_size == 0 {
        return false;
    }
    let slot = flow_hash(flow) % vip.ring_size;
    let table = VipMeta::table_slot(vip.id, vip.active_table);
    let Some(index) = MAGLEV_TABLES.get_value(table, &slot) else {
        return false;
    };
    let Some((index, backend)) = backend_at(*index) else {
        return false;
    };
    if !pkt.icmp_too_big {
        let state = FlowState {
            backend: index,
            vip_id: vip.id,
            last_seen_ns: now,
        };
        // An LRU insert evicts when full; it fails only under memory
        // pressure, and then the flow is re-balanced on its next packet.
        let _evicted_or_failed = FLOWS.insert(flow, state, 0);
    }
    out.index = index;
    out.backend = backend;
    out.new_flow = true;
    true
}
