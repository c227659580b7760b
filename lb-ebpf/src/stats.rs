//! Per-CPU counters: a few increments per packet, no locks, no logs.

use aya_ebpf::bindings::xdp_action;
use lb_common::{
    flow::Replaced,
    stats::{ProtoClass, exit},
};

use crate::maps::{STATS_BACKEND, STATS_EXIT, STATS_FLOWS, STATS_PROTO, STATS_VIP};

/// Count one packet of `class` that leaves with `action`.
#[inline(always)]
pub fn count_proto(class: ProtoClass, action: u32) {
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

/// Count one packet leaving for `reason` (an index from `lb_common::stats::exit`).
#[inline(always)]
pub fn count_exit(reason: usize) {
    if reason >= exit::COUNT {
        return;
    }
    if let Some(counters) = STATS_EXIT.get_ptr_mut(0) {
        // SAFETY: ExitCounters is repr(C) with exit::COUNT u64 fields and
        // reason < exit::COUNT; per-CPU slot, only this CPU writes it.
        unsafe { *counters.cast::<u64>().add(reason) += 1 };
    }
}

/// Count a forwarded packet against its VIP and its backend slot (one slot
/// per (service, backend) pair: `lb_common::backend`).
#[inline(always)]
pub fn count_traffic(vip_id: u32, backend: u32, bytes: u64, new_flow: bool) {
    let new = u64::from(new_flow);
    if let Some(c) = STATS_VIP.get_ptr_mut(vip_id) {
        // SAFETY: per-CPU slot from a successful lookup.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
        c.new_flows += new;
    }
    if let Some(c) = STATS_BACKEND.get_ptr_mut(backend) {
        // SAFETY: per-CPU slot from a successful lookup.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
        c.new_flows += new;
    }
}

/// Count a NAT reply translated back, against its VIP and backend slot.
#[inline(always)]
pub fn count_reply(vip_id: u32, backend: u32, bytes: u64) {
    if let Some(c) = STATS_VIP.get_ptr_mut(vip_id) {
        // SAFETY: per-CPU slot from a successful lookup.
        let c = unsafe { &mut *c };
        c.replies += 1;
        c.reply_bytes += bytes;
    }
    if let Some(c) = STATS_BACKEND.get_ptr_mut(backend) {
        // SAFETY: per-CPU slot from a successful lookup.
        let c = unsafe { &mut *c };
        c.replies += 1;
        c.reply_bytes += bytes;
    }
}

/// Count a new NAT flow refused, against its VIP and the backend slot
/// Maglev chose.
#[inline(always)]
pub fn count_refused(vip_id: u32, backend: u32) {
    if let Some(c) = STATS_VIP.get_ptr_mut(vip_id) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { (*c).refused += 1 };
    }
    if let Some(c) = STATS_BACKEND.get_ptr_mut(backend) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { (*c).refused += 1 };
    }
}

/// Count what recording a new flow displaced.
#[inline(always)]
pub fn count_replaced(replaced: Replaced) {
    if replaced == Replaced::Nothing {
        return;
    }
    if let Some(c) = STATS_FLOWS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot from a successful lookup.
        let c = unsafe { &mut *c };
        if replaced == Replaced::Recent {
            c.evicted_recent += 1;
        } else {
            c.evicted_idle += 1;
        }
    }
}

/// Count a new-flow event that did not fit the ring buffer.
#[inline(always)]
pub fn count_event_lost() {
    if let Some(c) = STATS_FLOWS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { (*c).events_lost += 1 };
    }
}
