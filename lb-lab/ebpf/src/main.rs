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
//! - The NIC-like benchmark's programs (`lb-nicbench`, `cargo xtask bench
//!   nic-like`): `nic_inject` runs first on every frame the kernel injects
//!   (`BPF_PROG_TEST_RUN` with live frames): it writes the frame template
//!   (`nic_template`) over the frame, since live mode recycles pages with
//!   what the previous run left in them, gives it its flow (the client
//!   port and the low 16 bits of its address from a run counter, modulo
//!   the template's flow count; the IPv4 checksum redone), and tail-calls
//!   the program under test (`nic_next[0]`). `nic_drop` (`XDP_DROP`: the
//!   injection floor) and `nic_tx` (swap the MAC addresses, `XDP_TX`: the
//!   least a forwarder does) are the in-run references; `nic_sink` counts
//!   and drops what arrives at the receiving end. `lbgen` injects the same
//!   way with `nic_out` (`XDP_TX` as it is) behind `nic_inject`: a traffic
//!   generator, TCP and UDP checksums kept right.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, LruHashMap, PerCpuArray, ProgramArray},
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

/// Bytes of a short frame (IPv4 or IPv6 UDP, IPv4 TCP: the NIC-like
/// benchmark's), and of a long one (room for IPv6 TCP).
pub const NIC_FRAME: usize = 64;
pub const NIC_FRAME_LONG: usize = 96;
const _: () = assert!(NIC_FRAME == 8 * 8 && NIC_FRAME_LONG == NIC_FRAME + 4 * 8);

/// The frame `nic_inject` writes, and how to vary it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NicTemplate {
    /// Flows: the run counter modulo this gives the flow (0 or 1: one
    /// flow; `u32::MAX`: a new flow for every frame).
    pub flows: u32,
    /// 4 (IPv4) or 6 (IPv6).
    pub family: u32,
    /// The frame's length: `NIC_FRAME` or `NIC_FRAME_LONG`.
    pub len: u32,
    /// Offset of the TCP or UDP checksum, kept right as the flow changes;
    /// 0: none (IPv4 UDP without a checksum).
    pub csum_off: u32,
    /// The frame (the first `len` bytes).
    pub frame: [u8; NIC_FRAME_LONG],
}

#[btf_map(name = "nic_template")]
static NIC_TEMPLATE: Array<NicTemplate, 1> = Array::new();

#[btf_map(name = "nic_next")]
static NIC_NEXT: ProgramArray<1> = ProgramArray::new();

/// `nic_sink`'s counts: frames, bytes.
#[btf_map(name = "nic_count")]
static NIC_COUNT: PerCpuArray<u64, 2> = PerCpuArray::new();

/// Runs of `nic_inject` so far.
static mut NIC_RUNS: u32 = 0;

/// Copy `N` 8-byte words from `src` to `dst`, one load and store each (a
/// plain array copy becomes a call to a memmove subprogram, which costs
/// more than the rest of `nic_inject`).
///
/// # Safety
/// `8 * N` bytes at both are valid.
#[inline(always)]
unsafe fn copy_words<const N: usize>(dst: *mut u64, src: *const u64) {
    for i in 0..N {
        // SAFETY: the caller's promise; unaligned access is allowed in XDP.
        unsafe { dst.add(i).write_unaligned(src.add(i).read_unaligned()) };
    }
}

/// One's-complement checksum `c` with 16-bit word `old` replaced by `new`
/// (RFC 1624: `~(~c + ~old + new)`).
#[inline(always)]
fn csum_replace(c: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!c) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The frame template, this run's flow, then the program under test.
#[xdp]
#[allow(clippy::needless_pass_by_value, reason = "the signature #[xdp] wants")]
pub fn nic_inject(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + NIC_FRAME > end {
        return xdp_action::XDP_ABORTED;
    }
    let Some(t) = NIC_TEMPLATE.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    #[allow(clippy::cast_ptr_alignment, reason = "read with read_unaligned")]
    let src = t.frame.as_ptr().cast::<u64>();
    // SAFETY: NIC_FRAME bytes from `data` are inside the frame (checked)
    // and in the template.
    unsafe { copy_words::<8>(data as *mut u64, src) };
    if t.len as usize == NIC_FRAME_LONG {
        if data + NIC_FRAME_LONG > end {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: the long frame's other 32 bytes (checked), and the
        // template's.
        unsafe { copy_words::<4>((data + NIC_FRAME) as *mut u64, src.add(8)) };
    }
    // SAFETY: as above.
    let frame = unsafe { &mut *(data as *mut [u8; NIC_FRAME]) };
    // SAFETY: a .bss global; XDP does not run re-entrantly on one CPU and
    // the injection runs on one.
    let n = unsafe {
        let n = core::ptr::read_volatile(&raw const NIC_RUNS).wrapping_add(1);
        core::ptr::write_volatile(&raw mut NIC_RUNS, n);
        n
    };
    if t.flows > 1 {
        let k = n % t.flows;
        let port = (1024 + (k & 0x7fff)) as u16;
        let host = (k >> 15) as u16;
        // The client port and the low 16 bits of its address.
        let (port_at, host_at) = if t.family == 4 { (34, 28) } else { (54, 36) };
        let word = |f: &[u8; NIC_FRAME], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        let (old_port, old_host) = (word(frame, port_at), word(frame, host_at));
        frame[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
        frame[host_at..host_at + 2].copy_from_slice(&host.to_be_bytes());
        if t.family == 4 {
            let c = csum_replace(word(frame, 24), old_host, host);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
        }
        let at = t.csum_off as usize;
        if at != 0 {
            if at + 2 > NIC_FRAME_LONG || data + at + 2 > end {
                return xdp_action::XDP_ABORTED;
            }
            // SAFETY: two bytes at `at` are inside the frame (checked).
            let field = unsafe { &mut *((data + at) as *mut [u8; 2]) };
            let c = u16::from_be_bytes(*field);
            let c = csum_replace(csum_replace(c, old_port, port), old_host, host);
            *field = c.to_be_bytes();
        }
    }
    // SAFETY: on success the tail call does not return.
    unsafe { NIC_NEXT.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Send the frame out as it is (`lbgen`: the template is addressed
/// already).
#[xdp]
pub fn nic_out(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// The injection floor.
#[xdp]
pub fn nic_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// The least a forwarder does: swap the MAC addresses, send it back out.
#[xdp]
#[allow(clippy::needless_pass_by_value, reason = "the signature #[xdp] wants")]
pub fn nic_tx(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + 12 > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: 12 bytes from `data` are inside the frame (checked).
    let macs = unsafe { &mut *(data as *mut [u8; 12]) };
    let dst = [macs[0], macs[1], macs[2], macs[3], macs[4], macs[5]];
    macs.copy_within(6..12, 0);
    macs[6..12].copy_from_slice(&dst);
    xdp_action::XDP_TX
}

/// Count and drop (the receiving end of the NIC-like benchmark).
#[xdp]
#[allow(clippy::needless_pass_by_value, reason = "the signature #[xdp] wants")]
pub fn nic_sink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(frames) = NIC_COUNT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array.
        unsafe { *frames += 1 };
    }
    if let Some(bytes) = NIC_COUNT.get_ptr_mut(1) {
        // SAFETY: as above.
        unsafe { *bytes += len };
    }
    xdp_action::XDP_DROP
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
