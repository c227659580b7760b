//! Per-CPU counters: one increment per packet, no locks, no logs.

use aya_ebpf::bindings::xdp_action;
use lb_common::stats::ProtoClass;

use crate::maps::STATS_PROTO;

/// Count one packet of `class` that leaves with `action`.
#[inline(always)]
pub fn count(class: ProtoClass, action: u32) {
    let Some(counters) = STATS_PROTO.get_ptr_mut(class as u32) else {
        return;
    };
    // SAFETY: the pointer comes from a successful per-CPU array lookup, so it
    // is valid, aligned, and only this CPU writes it while we run.
    let counters = unsafe { &mut *counters };
    let field = match action {
        xdp_action::XDP_ABORTED => &mut counters.aborted,
        xdp_action::XDP_DROP => &mut counters.drop,
        xdp_action::XDP_PASS => &mut counters.pass,
        xdp_action::XDP_TX => &mut counters.tx,
        _ => &mut counters.redirect,
    };
    *field += 1;
}
