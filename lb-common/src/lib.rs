//! Types shared by the XDP program (`lb-ebpf`) and user space (`lb-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, and free of implicit padding, so
//! the kernel and user space agree byte for byte and `bpftool map dump` can
//! print each field by name from the program's BTF. Map values hold plain
//! integers; user space converts them into richer types.
//!
//! The `user` feature adds `aya::Pod` impls so user space can read the maps.
#![no_std]

pub mod stats;
