//! The flow hash, shared so the kernel and user space (tests, tools that
//! predict a flow's backend) compute the same value.
//!
//! Multiply-rotate mixing of the 5-tuple's ten 32-bit words followed by
//! murmur3's finalizer: no table, no loop with a data-dependent bound, cheap
//! on BPF. Not cryptographic; it spreads flows over the Maglev table.

use crate::flow::FlowKey;

const SEED: u32 = 0x6c62_2d31; // "lb-1"
const M1: u32 = 0x9e37_79b1;
const M2: u32 = 0x85eb_ca77;

/// Word `i` (0..4) of a 16-byte address, little-endian.
#[inline(always)]
pub(crate) const fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

#[inline(always)]
const fn mix(h: u32, w: u32) -> u32 {
    (h ^ w.wrapping_mul(M1))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Hash of a flow's 5-tuple.
#[inline(always)]
#[must_use]
pub const fn flow_hash(key: &FlowKey) -> u32 {
    let mut h = SEED;
    h = mix(h, word(&key.src, 0));
    h = mix(h, word(&key.src, 1));
    h = mix(h, word(&key.src, 2));
    h = mix(h, word(&key.src, 3));
    h = mix(h, word(&key.dst, 0));
    h = mix(h, word(&key.dst, 1));
    h = mix(h, word(&key.dst, 2));
    h = mix(h, word(&key.dst, 3));
    h = mix(h, (key.src_port_be as u32) << 16 | key.dst_port_be as u32);
    h = mix(h, key.proto as u32);
    // murmur3 fmix32
    h ^= h >> 16;
    h = h.wrapping_mul(M2);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
