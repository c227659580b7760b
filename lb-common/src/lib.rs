//! Types shared by the XDP program (`lb-ebpf`) and user space (`lb-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, and free of implicit padding, so
//! the kernel and user space agree byte for byte and `bpftool map dump` can
//! print each field by name from the program's BTF. Map values hold plain
//! integers; user space converts them into richer types. Byte order is in
//! the name: `_be` fields are network order, everything else host order.
//!
//! One module per map family, as katran's `balancer_structs.h` groups them.
//! The `user` feature adds `aya::Pod` impls so user space can use the maps.
#![cfg_attr(not(test), no_std)]

pub mod backend;
pub mod config;
pub mod flow;
pub mod hash;
pub mod layout;
pub mod nat;
pub mod persist;
pub mod stats;
pub mod vip;

/// Implement `aya::Pod` for padding-free `repr(C)` map types.
macro_rules! pod {
    ($($t:ty),+ $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: repr(C), integer and byte-array fields only, padding
            // spelled out as fields, so every bit pattern is valid.
            unsafe impl aya::Pod for $t {}
        )+
    };
}
pub(crate) use pod;

/// IPv4 address as the v4-mapped IPv6 address `::ffff:a.b.c.d`, the form
/// every 16-byte address field uses.
#[must_use]
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}
