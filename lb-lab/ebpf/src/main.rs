//! XDP programs for tests and benchmarks only (object `lb-lab-progs`,
//! `lb_lab::TEST_OBJ`); lbd never loads them.
//!
//! - `lb_pass`: passes every frame. A veth only delivers the frames its
//!   peer sends with native-mode `XDP_TX` when the receiving side has an
//!   XDP program of its own (the kernel kicks the receiver's NAPI only
//!   then); `lb_lab::netns::Lan::xdp_pass_on_port` attaches this one to the
//!   test bridge's ports.
//! - `lb_bench_insert`: one insert of a new flow into the kernel's LRU hash
//!   (`bench_lru`, sized by the bench so it runs full and evicts), then
//!   `XDP_PASS`: what the kernel's LRU would cost the new-flow path on its
//!   own, measured by `cargo xtask bench dataplane` next to lb's own
//!   connection table.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::LruHashMap,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::flow::{FlowKey, FlowState};
use lb_ebpf::frame::zero;

/// `BPF_F_NO_COMMON_LRU`: per-CPU LRU lists, no global lock on insert.
const BPF_F_NO_COMMON_LRU: usize = 1 << 1;

/// The kernel's LRU hash for `lb_bench_insert`. Tiny unless the bench sizes
/// it at load.
#[btf_map(name = "bench_lru")]
static BENCH_LRU: LruHashMap<FlowKey, FlowState, 64, BPF_F_NO_COMMON_LRU> = LruHashMap::new();

/// Runs of `lb_bench_insert` so far.
static mut BENCH_RUNS: u32 = 0;

/// Passes every frame (see the module doc).
#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// One new-flow insert into `bench_lru` (see the module doc).
#[xdp]
pub fn lb_bench_insert(_ctx: XdpContext) -> u32 {
    let mut key = MaybeUninit::<FlowKey>::uninit();
    let mut state = MaybeUninit::<FlowState>::uninit();
    // SAFETY: both are plain integers and byte arrays, valid as zero.
    let (mut key, state) = unsafe {
        zero(key.as_mut_ptr());
        zero(state.as_mut_ptr());
        (key.assume_init(), state.assume_init())
    };
    // A different client port and address per run: every insert is a new
    // flow, as on the new-flow path.
    // SAFETY: a .bss global; XDP does not run re-entrantly on one CPU and
    // the bench runs on one.
    let n = unsafe {
        let n = core::ptr::read_volatile(&raw const BENCH_RUNS).wrapping_add(1);
        core::ptr::write_volatile(&raw mut BENCH_RUNS, n);
        n
    };
    key.src_port_be = n as u16;
    key.src[12] = (n >> 16) as u8;
    key.src[13] = (n >> 24) as u8;
    let key: &FlowKey = &key;
    let _evicted_or_failed = BENCH_LRU.insert(key, state, 0);
    xdp_action::XDP_PASS
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
