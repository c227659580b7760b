//! Library target of `lb-ebpf`: empty on purpose.
//!
//! `lb-user` build-depends on this crate so cargo rebuilds it when the kernel
//! program changes (see `aya_build::build_ebpf`); the program itself is the
//! `lb-ebpf` binary, built for `bpfel-unknown-none`.
#![no_std]
