//! Frame access shared by every XDP program of lb: Ethernet, VLAN and IP
//! header layouts, and [`ptr_at`], the one bounds-checked accessor.
//!
//! Every read goes through [`ptr_at`], which checks `offset +
//! size_of::<T>()` against `data_end` immediately before the access: the
//! verifier needs to see the check, and the packet is never trusted to be
//! as long as its headers claim.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 fragment extension header.
pub const IPPROTO_FRAGMENT: u8 = 44;

/// Ethernet header.
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Big-endian EtherType.
    pub ether_type_be: [u8; 2],
}

/// 802.1Q tag following the source MAC: TCI, then the inner EtherType.
#[repr(C)]
pub struct VlanHdr {
    pub tci_be: [u8; 2],
    pub ether_type_be: [u8; 2],
}

/// Fixed part of the IPv4 header (options follow when IHL > 5).
#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len_be: [u8; 2],
    pub id_be: [u8; 2],
    pub frag_off_be: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check_be: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

/// IPv6 fixed header.
#[repr(C)]
pub struct Ipv6Hdr {
    pub version_tc_flow: [u8; 4],
    pub payload_len_be: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// The packet is shorter than the header we need, or a header field is
/// inconsistent. Carries nothing: per-packet errors never allocate.
pub struct Truncated;

/// `ctx->data` and `ctx->data_end`, read with volatile loads.
///
/// Verifier workaround (kernel 6.18, LLVM 22): with plain loads, LLVM's
/// argument promotion hoists them out of BPF subprograms (`parse`) into the
/// caller and passes 32-bit scalars; the callee's zero-extension of
/// `data_end` then fails with "pointer arithmetic on pkt_end prohibited".
/// Volatile loads are never promoted.
#[inline(always)]
#[must_use]
pub fn bounds(ctx: &XdpContext) -> (usize, usize) {
    // SAFETY: ctx.ctx is the program's context pointer, valid for the run.
    unsafe {
        (
            core::ptr::read_volatile(&raw const (*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&raw const (*ctx.ctx).data_end) as usize,
        )
    }
}

/// Zero the `T` at `p` with word stores.
///
/// `core::mem::zeroed`, `[0; N]` and struct literals with byte arrays become
/// calls to the BPF `memset`, a byte-at-a-time loop (the BPF backend expands
/// `memcpy` inline but not `memset`): 64 bytes of `Packet` cost ~300
/// instructions that way. Volatile stores cannot be turned back into a
/// `memset` call by the optimiser.
///
/// # Safety
/// `p` is valid for writes of a `T`; all-zero bytes are a valid `T`.
#[inline(always)]
pub unsafe fn zero<T>(p: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(4) && core::mem::align_of::<T>() >= 4) };
    let w = p.cast::<u32>();
    let mut i = 0;
    while i < size_of::<T>() / 4 {
        // SAFETY: in bounds (i < size / 4) and aligned (align >= 4).
        unsafe { w.add(i).write_volatile(0) };
        i += 1;
    }
}

/// Pointer to a `T` at `offset` from the start of the frame, after checking
/// that all `size_of::<T>()` bytes lie inside the frame.
///
/// # Errors
/// [`Truncated`] when the `T` would end past the end of the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Truncated> {
    let (start, end) = bounds(ctx);
    if start + offset + size_of::<T>() > end {
        return Err(Truncated);
    }
    Ok((start + offset) as *const T)
}

/// The L2 header: Ethernet with at most one 802.1Q / 802.1ad tag.
/// Returns the EtherType behind it and the offset of the L3 header (14, or
/// 18 behind a tag); a second tag is returned as the EtherType (unknown to
/// every caller, so not IP).
///
/// # Errors
/// [`Truncated`] when the frame ends inside the L2 header.
#[inline(always)]
pub fn l2(ctx: &XdpContext) -> Result<(u16, usize), Truncated> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the whole header is inside the frame.
    let mut ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type_be });
    let mut l3_off = size_of::<EthHdr>();
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan: *const VlanHdr = ptr_at(ctx, l3_off)?;
        // SAFETY: checked by ptr_at.
        ether_type = u16::from_be_bytes(unsafe { (*vlan).ether_type_be });
        l3_off += size_of::<VlanHdr>();
    }
    Ok((ether_type, l3_off))
}
