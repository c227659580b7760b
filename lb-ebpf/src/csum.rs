//! Internet checksum (RFC 1071) pieces: fold a 32-bit accumulator, and sum
//! fixed-size headers with constant loop bounds.

/// Fold a one's-complement accumulator to 16 bits and complement it.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// One's-complement sum of `N` bytes read as big-endian 16-bit words.
#[inline(always)]
pub fn sum_bytes<const N: usize>(bytes: &[u8; N]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i + 1 < N {
        sum += u64::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    if N % 2 == 1 {
        sum += u64::from(bytes[N - 1]) << 8;
    }
    sum
}

/// One's-complement sum of `N` bytes of packet memory at `ptr` (checked by
/// the caller), added to `seed`, via the `bpf_csum_diff` helper: one call
/// instead of an unrolled loop whose spills cost stack. `N` must be a
/// multiple of 4 and at most 512 (helper limits).
#[inline(always)]
pub fn sum_packet<const N: usize>(ptr: *const [u8; N], seed: u64) -> u64 {
    const { assert!(N.is_multiple_of(4) && N <= 512) };
    // SAFETY: the helper reads N bytes at ptr, which the caller checked lie
    // inside the packet; it writes nothing.
    let sum = unsafe {
        aya_ebpf::helpers::bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            ptr.cast_mut().cast(),
            N as u32,
            0,
        )
    };
    // The helper sums 32-bit words in memory order; fold to 16-bit words
    // (still in memory order) and byte-swap into our big-endian domain.
    let mut s = sum as u64;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    seed + u64::from((s as u16).swap_bytes())
}
