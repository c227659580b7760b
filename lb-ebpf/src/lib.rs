//! Library target of `lb-ebpf`: what its XDP programs share.
//!
//! The programs are this package's binaries, each built for
//! `bpfel-unknown-none` into an object of its own by `lb-user/build.rs`:
//! - `lb-ebpf` (`src/main.rs`): the load balancer, program `lb_xdp`;
//! - `lb-decap` (`src/bin/lb-decap.rs`): the decapsulator for `ipip`
//!   backends, program `lb_decap`, with only its own counter map.
//!
//! Test-only programs are not here: they live in `lb-lab/ebpf`, an object
//! production never loads.
//!
//! `lb-user` build-depends on this crate so cargo rebuilds it when the
//! kernel programs change (see `aya_build::build_ebpf`).
#![no_std]

pub mod frame;

/// The panic handler of every lb XDP object (one per linked program; each
/// binary links this library).
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program; the verifier rejects unbounded loops.
    loop {}
}
