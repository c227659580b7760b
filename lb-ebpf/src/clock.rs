//! The coarse clock (`bpf_ktime_get_coarse_ns`), read once per tick per CPU.
//!
//! Established flows stamp their connection-table way (and NAT entry,
//! client template) with the coarse clock on every packet. The helper is a
//! call out of the program and back, two on kernels whose helper calls
//! `ktime_get_coarse_ts64`, and with the SRSO "safe RET" mitigation (AMD
//! Zen) every return costs a mispredicted branch: measured on the NIC-like
//! bench, the helper's calls were about 7 ns of a ~290 ns dsr frame.
//!
//! The coarse clock only moves on a timer tick, when `jiffies` moves too;
//! `bpf_jiffies64` is inlined by the verifier into one load. So each CPU
//! keeps the last reading with the `jiffies` it was taken at (map `clock`),
//! and calls the helper only when `jiffies` has moved since.
//!
//! The tick bumps `jiffies` a moment before the coarse clock
//! (`tick_do_update_jiffies64`, then `update_wall_time`): a reading that
//! has not moved since the one kept is not trusted for the new `jiffies`,
//! and the next packet asks again. Left over: a CPU whose previous reading
//! is more than a tick old and that reads in that moment keeps a value one
//! tick behind until the next tick, as any reader of the coarse clock just
//! before a tick gets.
//!
//! Only the per-packet paths of established flows use it (connection-table
//! hit, NAT forward and reply): new flows call the helper themselves, as
//! `select::choose` does anyway; the cache's branch in those paths cost
//! the verifier more states than it saved time.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::maps::CLOCK;

/// `ClockCache::jiffies` that no `jiffies` value matches.
const NONE: u64 = u64::MAX;

/// One CPU's last coarse-clock reading.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ClockCache {
    /// `jiffies` when `now_ns` was read; [`NONE`]: read again.
    pub jiffies: u64,
    /// The coarse clock, ns.
    pub now_ns: u64,
}

/// `bpf_ktime_get_coarse_ns()`, from this CPU's cache while `jiffies` has
/// not moved.
#[inline(always)]
pub fn coarse_now_ns() -> u64 {
    // SAFETY: a helper without arguments (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(c) = CLOCK.get_ptr_mut(0) else {
        // SAFETY: a helper without arguments.
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: this CPU's slot of a per-CPU array, valid for the run; XDP
    // does not run re-entrantly on one CPU.
    let c = unsafe { &mut *c };
    if c.jiffies == jiffies {
        return c.now_ns;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    c.jiffies = if now == c.now_ns { NONE } else { jiffies };
    c.now_ns = now;
    now
}
