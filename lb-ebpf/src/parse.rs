//! Bounds-checked header parsing.
//!
//! Every read goes through [`ptr_at`], which checks `offset + size_of::<T>()`
//! against `data_end` immediately before the access: the verifier needs to
//! see the check, and the packet is never trusted to be as long as its
//! headers claim.
//!
//! Rules (each one a documented verdict, see `ProtoClass`):
//! - Ethernet with at most one 802.1Q / 802.1ad tag; a second tag is parsed as
//!   an unknown EtherType (`NonIp`).
//! - IPv4: version must be 4, IHL >= 5 and the whole IHL-sized header present
//!   (options are skipped, not interpreted); total length >= IHL * 4. A
//!   non-first fragment carries no L4 header and counts as `Ipv4Other`; a
//!   first fragment is classified by its L4 header.
//! - IPv6: version must be 6; the fixed header's next header decides. No
//!   extension-header walk yet: anything but TCP/UDP is `Ipv6Other`.
//! - TCP: data offset >= 5 and the whole TCP header present. UDP: 8 bytes.
//! - Anything truncated or inconsistent on the way: `Malformed`.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::stats::ProtoClass;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

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

/// TCP header without options.
#[repr(C)]
pub struct TcpHdr {
    pub src_port_be: [u8; 2],
    pub dst_port_be: [u8; 2],
    pub seq_be: [u8; 4],
    pub ack_be: [u8; 4],
    /// Data offset in the high nibble.
    pub doff_flags: [u8; 2],
    pub window_be: [u8; 2],
    pub check_be: [u8; 2],
    pub urg_be: [u8; 2],
}

/// UDP header.
#[repr(C)]
pub struct UdpHdr {
    pub src_port_be: [u8; 2],
    pub dst_port_be: [u8; 2],
    pub len_be: [u8; 2],
    pub check_be: [u8; 2],
}

/// Fragment-offset mask in the IPv4 `frag_off` field.
const IPV4_OFFSET_MASK: u16 = 0x1FFF;

/// The packet is shorter than the header we need, or a header field is
/// inconsistent. Carries nothing: per-packet errors never allocate.
pub struct Truncated;

/// Pointer to a `T` at `offset` from the start of the frame, after checking
/// that all `size_of::<T>()` bytes lie inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Truncated> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Truncated);
    }
    Ok((start + offset) as *const T)
}

/// Classify the frame for counting. Never fails: a frame we cannot read is
/// `Malformed`.
#[inline(always)]
pub fn classify(ctx: &XdpContext) -> ProtoClass {
    match try_classify(ctx) {
        Ok(class) => class,
        Err(Truncated) => ProtoClass::Malformed,
    }
}

#[inline(always)]
fn try_classify(ctx: &XdpContext) -> Result<ProtoClass, Truncated> {
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
    match ether_type {
        ETH_P_IP => classify_ipv4(ctx, l3_off),
        ETH_P_IPV6 => classify_ipv6(ctx, l3_off),
        _ => Ok(ProtoClass::NonIp),
    }
}

#[inline(always)]
fn classify_ipv4(ctx: &XdpContext, l3_off: usize) -> Result<ProtoClass, Truncated> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_off)?;
    // SAFETY: checked by ptr_at.
    let (version_ihl, total_len, frag_off, protocol) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be_bytes((*ip).total_len_be),
            u16::from_be_bytes((*ip).frag_off_be),
            (*ip).protocol,
        )
    };
    // The mask bounds the header length to 0..=60 for the verifier.
    let header_len = usize::from(version_ihl & 0x0F) * 4;
    if version_ihl >> 4 != 4 || header_len < size_of::<Ipv4Hdr>() {
        return Err(Truncated);
    }
    if usize::from(total_len) < header_len {
        return Err(Truncated);
    }
    let l4_off = l3_off + header_len;
    // Options (IHL > 5) must be present in full even though we skip them.
    ptr_at::<u8>(ctx, l4_off - 1)?;
    if frag_off & IPV4_OFFSET_MASK != 0 {
        // Non-first fragment: no L4 header to look at.
        return Ok(ProtoClass::Ipv4Other);
    }
    // A first fragment (MF set, offset 0) carries the L4 header: classify it.
    classify_l4(
        ctx,
        l4_off,
        protocol,
        ProtoClass::Ipv4Tcp,
        ProtoClass::Ipv4Udp,
        ProtoClass::Ipv4Other,
    )
}

#[inline(always)]
fn classify_ipv6(ctx: &XdpContext, l3_off: usize) -> Result<ProtoClass, Truncated> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off)?;
    // SAFETY: checked by ptr_at.
    let (version, next_header) = unsafe { ((*ip).version_tc_flow[0] >> 4, (*ip).next_header) };
    if version != 6 {
        return Err(Truncated);
    }
    let l4_off = l3_off + size_of::<Ipv6Hdr>();
    classify_l4(
        ctx,
        l4_off,
        next_header,
        ProtoClass::Ipv6Tcp,
        ProtoClass::Ipv6Udp,
        ProtoClass::Ipv6Other,
    )
}

#[inline(always)]
fn classify_l4(
    ctx: &XdpContext,
    l4_off: usize,
    protocol: u8,
    tcp: ProtoClass,
    udp: ProtoClass,
    other: ProtoClass,
) -> Result<ProtoClass, Truncated> {
    match protocol {
        IPPROTO_TCP => {
            let th: *const TcpHdr = ptr_at(ctx, l4_off)?;
            // SAFETY: checked by ptr_at.
            let doff = usize::from(unsafe { (*th).doff_flags[0] } >> 4) * 4;
            if doff < size_of::<TcpHdr>() {
                return Err(Truncated);
            }
            // TCP options must be present in full.
            ptr_at::<u8>(ctx, l4_off + doff - 1)?;
            Ok(tcp)
        }
        IPPROTO_UDP => {
            ptr_at::<UdpHdr>(ctx, l4_off)?;
            Ok(udp)
        }
        _ => Ok(other),
    }
}
