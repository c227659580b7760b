//! The XDP program. For now it parses every frame, counts it by protocol
//! class and verdict, and passes it to the kernel stack unchanged.
//!
//! Layout follows katran's `lib/bpf/`: one file per concern.
//! - `parse`: bounds-checked header parsing;
//! - `stats`: per-CPU counters;
//! - `maps`: every map the program uses.
//!
//! Off the BPF target (clippy, `cargo test --workspace`) the crate builds as
//! an ordinary host binary with an empty `main`, so lints cover this code too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod maps;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Entry point, attached by `lbd`.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let class = parse::classify(&ctx);
    // The foundation program never changes a packet's fate: everything goes
    // to the kernel stack, including malformed frames (they are counted, and
    // the stack applies its own checks).
    let action = xdp_action::XDP_PASS;
    stats::count(class, action);
    action
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program; the verifier rejects unbounded loops.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
