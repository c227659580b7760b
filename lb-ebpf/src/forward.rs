//! Sending a packet on: `dsr` MAC rewrite, `ipip` encapsulation, and the
//! ICMP error a client gets when encapsulation would exceed the MTU; and
//! which interface a frame leaves by ([`leave_by`]): the one it came in on
//! (`XDP_TX`) or, with a `backend_interface`, the other (`XDP_REDIRECT`).
//!
//! Every function that moves the packet head re-derives its pointers with
//! `ptr_at` afterwards: the verifier invalidates all packet pointers on
//! `bpf_xdp_adjust_head`/`_tail`.
//!
//! TTL / hop limit: `dsr` leaves the IP header untouched (an L2 hop, as in
//! LVS-DR); `ipip` leaves the inner header untouched and gives the outer one
//! TTL / hop limit 64; the ICMP errors we originate carry 64 as well.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_common::{backend::Backend, config::Config, flow::FlowKey, stats::exit};

use crate::{
    csum::{fold, sum_bytes, sum_packet},
    maps::{ARM1_IFINDEX, ARMS, CONFIG},
    parse::{
        ETH_P_IP, ETH_P_IPV6, EthHdr, IPPROTO_ICMP, IPPROTO_ICMPV6, IcmpHdr, Ipv4Hdr, Ipv6Hdr,
        Packet, Truncated, VlanHdr, bounds, ptr_at,
    },
};

const TTL: u8 = 64;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

/// Failure of a forwarding step: the packet is aborted and counted.
pub struct Failed;

impl From<Truncated> for Failed {
    fn from(_: Truncated) -> Self {
        Self
    }
}

/// Point the frame at `mac`, from the MAC it was sent to (ours).
///
/// With a 4-byte and a 2-byte access per address: array assignments
/// become twelve byte loads and stores each (LLVM cannot prove the frame
/// aligned), on the path of every forwarded packet. Unaligned packet
/// accesses are fine, see `parse::load4`.
#[inline(always)]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "deliberate unaligned packet accesses, allowed by the verifier and JIT (see parse::load4)"
)]
pub fn rewrite_macs(ctx: &XdpContext, mac: [u8; 6]) -> Result<(), Failed> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?.cast_mut().cast::<u8>();
    let [m0, m1, m2, m3, m4, m5] = mac;
    // SAFETY: ptr_at checked the 14-byte header: bytes 0..12 are inside
    // the frame.
    unsafe {
        let dst_hi = eth.cast::<u32>();
        let dst_lo = eth.add(4).cast::<u16>();
        let ours = (dst_hi.read_volatile(), dst_lo.read_volatile());
        eth.add(6).cast::<u32>().write_volatile(ours.0);
        eth.add(10).cast::<u16>().write_volatile(ours.1);
        dst_hi.write_volatile(u32::from_ne_bytes([m0, m1, m2, m3]));
        dst_lo.write_volatile(u16::from_ne_bytes([m4, m5]));
    }
    Ok(())
}

/// The arm a packet came in by (`Config::arm_mac`): 1 on
/// `backend_interface`, else 0.
#[inline(always)]
pub fn ingress_arm(ctx: &XdpContext) -> u8 {
    let arm1 = ARM1_IFINDEX.load();
    if arm1 == 0 {
        return 0;
    }
    // SAFETY: reads the context's ingress ifindex.
    u8::from(unsafe { (*ctx.ctx).ingress_ifindex } == arm1)
}

/// A frame whose MACs are set as for the interface it came in on, made
/// to leave by `arm`: `0` (`XDP_TX`, the same interface) or
/// [`exit::REDIRECTED`] (the other one: its MAC as the source, the
/// redirect through `arms` set up).
#[inline(always)]
pub fn leave_by(ctx: &XdpContext, arm: u8) -> Result<usize, Failed> {
    if ARM1_IFINDEX.load() == 0 {
        return Ok(0);
    }
    let arm = arm & 1;
    if arm == ingress_arm(ctx) {
        return Ok(0);
    }
    let cfg = CONFIG.get(0).ok_or(Failed)?;
    let eth = ptr_at::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: checked by ptr_at; `arm` is 0 or 1.
    unsafe { (*eth).src = cfg.arm_mac[usize::from(arm)] };
    ARMS.redirect(u32::from(arm), 0)
        .map(|_| exit::REDIRECTED)
        .map_err(|_| Failed)
}

/// Send the frame to `mac` on arm `arm` (see [`leave_by`]).
#[inline(always)]
pub fn send(ctx: &XdpContext, mac: [u8; 6], arm: u8) -> Result<usize, Failed> {
    rewrite_macs(ctx, mac)?;
    leave_by(ctx, arm)
}

/// `dsr`: new MACs, same IP packet.
#[inline(always)]
pub fn dsr(ctx: &XdpContext, backend: &Backend) -> Result<usize, Failed> {
    send(ctx, backend.mac, backend.arm)
}

/// Move the L2 header (Ethernet, plus the VLAN tag when `l3_off` is 18)
/// from `from` bytes into the frame to its start.
#[inline(always)]
fn move_l2(ctx: &XdpContext, from: usize, l3_off: usize) -> Result<(), Failed> {
    let old = ptr_at::<EthHdr>(ctx, from)?;
    let new = ptr_at::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: both checked by ptr_at; they may overlap, hence `read` first.
    unsafe { new.write(old.read()) };
    if l3_off == size_of::<EthHdr>() + size_of::<VlanHdr>() {
        let old = ptr_at::<VlanHdr>(ctx, from + size_of::<EthHdr>())?;
        let new = ptr_at::<VlanHdr>(ctx, size_of::<EthHdr>())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe { new.write(old.read()) };
    }
    Ok(())
}

/// Set the EtherType that precedes the IP header at `l3_off`.
#[inline(always)]
fn set_l3_type(ctx: &XdpContext, l3_off: usize, ether_type: u16) -> Result<(), Failed> {
    let at = ptr_at::<[u8; 2]>(ctx, l3_off - 2)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe { *at = ether_type.to_be_bytes() };
    Ok(())
}

/// Length of the IP packet that starts at `l3_off`, as the frame holds it.
#[inline(always)]
pub fn l3_len(ctx: &XdpContext, l3_off: usize) -> usize {
    let (start, end) = bounds(ctx);
    (end - start).saturating_sub(l3_off)
}

fn ipv4_checksum(ip: &Ipv4Hdr) -> [u8; 2] {
    // SAFETY: Ipv4Hdr is 20 plain bytes.
    let bytes: &[u8; 20] = unsafe { &*core::ptr::from_ref(ip).cast::<[u8; 20]>() };
    fold(sum_bytes(bytes)).to_be_bytes()
}

/// `ipip`: IPv4-in-IPv4 or IPv6-in-IPv6 to the backend, sent to its
/// next hop's MAC. The outer source carries flow-hash bits (see `Config`).
/// Returns whether the packet is ready to transmit.
#[inline(always)]
pub fn ipip(ctx: &XdpContext, pkt: &Packet, hash: u32, backend: &Backend, cfg: &Config) -> bool {
    if pkt.v6 {
        ipip6(ctx, pkt.l3_off, backend, cfg, hash)
    } else {
        ipip4(ctx, pkt.l3_off, backend, cfg, hash)
    }
}

/// IPv4-in-IPv4. A subprogram of its own so its stack does not add to the
/// main frame's (512 bytes per call chain); headers are written in place.
#[inline(never)]
fn ipip4(ctx: &XdpContext, l3_off: usize, backend: &Backend, cfg: &Config, hash: u32) -> bool {
    try_ipip4(ctx, l3_off, backend, cfg, hash).is_ok()
}

/// IPv6-in-IPv6, see [`ipip4`].
#[inline(never)]
fn ipip6(ctx: &XdpContext, l3_off: usize, backend: &Backend, cfg: &Config, hash: u32) -> bool {
    try_ipip6(ctx, l3_off, backend, cfg, hash).is_ok()
}

#[inline(always)]
fn our_mac(ctx: &XdpContext) -> Result<[u8; 6], Failed> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    // SAFETY: checked by ptr_at.
    Ok(unsafe { (*eth).dst })
}

#[inline(always)]
fn try_ipip4(
    ctx: &XdpContext,
    l3_off: usize,
    backend: &Backend,
    cfg: &Config,
    hash: u32,
) -> Result<(), Failed> {
    let inner_len = l3_len(ctx, l3_off);
    let our_mac = our_mac(ctx)?;
    let tos = {
        let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off)?;
        // SAFETY: checked by ptr_at.
        unsafe { (*ip).tos }
    };
    grow_head(ctx, size_of::<Ipv4Hdr>())?;
    move_l2(ctx, size_of::<Ipv4Hdr>(), l3_off)?;
    let mask = cfg.ipip_src_v4_mask_be;
    let src = (cfg.ipip_src_v4_be & !mask) | (hash.to_be() & mask);
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        (*ip).version_ihl = 0x45;
        (*ip).tos = tos;
        (*ip).total_len_be = ((inner_len + size_of::<Ipv4Hdr>()) as u16).to_be_bytes();
        (*ip).id_be = [0; 2];
        (*ip).frag_off_be = crate::parse::IPV4_DF.to_be_bytes();
        (*ip).ttl = TTL;
        (*ip).protocol = IPPROTO_IPIP;
        (*ip).check_be = [0; 2];
        (*ip).src = src.to_ne_bytes();
        (*ip).dst = [
            backend.addr[12],
            backend.addr[13],
            backend.addr[14],
            backend.addr[15],
        ];
        (*ip).check_be = ipv4_checksum(&*ip);
    }
    set_macs(ctx, our_mac, backend.mac)
}

#[inline(always)]
fn try_ipip6(
    ctx: &XdpContext,
    l3_off: usize,
    backend: &Backend,
    cfg: &Config,
    hash: u32,
) -> Result<(), Failed> {
    let inner_len = l3_len(ctx, l3_off);
    let our_mac = our_mac(ctx)?;
    let tc_flow = {
        let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off)?;
        // SAFETY: checked by ptr_at.
        unsafe { (*ip).version_tc_flow }
    };
    grow_head(ctx, size_of::<Ipv6Hdr>())?;
    move_l2(ctx, size_of::<Ipv6Hdr>(), l3_off)?;
    let mask = cfg.ipip_src_v6_mask_be;
    let base = &cfg.ipip_src_v6;
    let low = u32::from_ne_bytes([base[12], base[13], base[14], base[15]]);
    let low = (low & !mask) | (hash.to_be() & mask);
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        // Keep the traffic class; a fresh flow label from the hash.
        (*ip).version_tc_flow = [
            0x60 | (tc_flow[0] & 0x0F),
            (tc_flow[1] & 0xF0) | ((hash >> 16) as u8 & 0x0F),
            (hash >> 8) as u8,
            hash as u8,
        ];
        (*ip).payload_len_be = (inner_len as u16).to_be_bytes();
        (*ip).next_header = IPPROTO_IPV6;
        (*ip).hop_limit = TTL;
        let [a, b, c, d] = low.to_ne_bytes();
        (*ip).src = *base;
        (*ip).src[12] = a;
        (*ip).src[13] = b;
        (*ip).src[14] = c;
        (*ip).src[15] = d;
        (*ip).dst = backend.addr;
    }
    set_l3_type(ctx, l3_off, ETH_P_IPV6)?;
    set_macs(ctx, our_mac, backend.mac)
}

#[inline(always)]
fn set_macs(ctx: &XdpContext, src: [u8; 6], dst: [u8; 6]) -> Result<(), Failed> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        (*eth).src = src;
        (*eth).dst = dst;
    }
    Ok(())
}

#[inline(always)]
fn grow_head(ctx: &XdpContext, by: usize) -> Result<(), Failed> {
    // SAFETY: ctx.ctx is the program's context pointer.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(by as i32)) } != 0 {
        return Err(Failed);
    }
    Ok(())
}

/// Bytes of the offending packet quoted in an ICMPv4 error: its IPv4
/// header (without options) and the first 8 bytes of its payload.
const ICMP4_QUOTE: usize = 28;
/// Bytes quoted in an ICMPv6 error: the IPv6 header and 8 bytes.
const ICMP6_QUOTE: usize = 48;

/// Turn the frame into an ICMP "fragmentation needed" (IPv4) / ICMPv6
/// "packet too big" addressed to the client that sent it, advertising
/// `mtu` (the largest inner packet that fits), to be sent back with
/// `XDP_TX`. Only untagged frames (`l3_off == 14`); the caller drops the
/// others. Returns whether the packet is ready to transmit.
#[inline(always)]
pub fn icmp_too_big(ctx: &XdpContext, pkt: &Packet, mtu: u16) -> bool {
    if pkt.v6 {
        icmp6_too_big(ctx, &pkt.flow, mtu)
    } else {
        icmp4_too_big(ctx, &pkt.flow, mtu)
    }
}

/// The IPv4 half of [`icmp_too_big`]; a subprogram of its own for the stack
/// budget (see `parse::parse`).
#[inline(never)]
fn icmp4_too_big(ctx: &XdpContext, flow: &FlowKey, mtu: u16) -> bool {
    try_icmp4_too_big(ctx, flow, mtu).is_ok()
}

/// The IPv6 half of [`icmp_too_big`].
#[inline(never)]
fn icmp6_too_big(ctx: &XdpContext, flow: &FlowKey, mtu: u16) -> bool {
    try_icmp6_too_big(ctx, flow, mtu).is_ok()
}

#[inline(always)]
fn try_icmp6_too_big(ctx: &XdpContext, flow: &FlowKey, mtu: u16) -> Result<(), Failed> {
    let eth_len = size_of::<EthHdr>();
    let hdrs = size_of::<Ipv6Hdr>() + size_of::<IcmpHdr>();
    grow_head(ctx, hdrs)?;
    move_l2(ctx, hdrs, eth_len)?;
    swap_macs(ctx)?;
    shrink_to(ctx, eth_len + hdrs + ICMP6_QUOTE)?;
    set_l3_type(ctx, eth_len, ETH_P_IPV6)?;
    let payload_len = (size_of::<IcmpHdr>() + ICMP6_QUOTE) as u16;
    let ip = ptr_at::<Ipv6Hdr>(ctx, eth_len)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        (*ip).version_tc_flow = [0x60, 0, 0, 0];
        (*ip).payload_len_be = payload_len.to_be_bytes();
        (*ip).next_header = IPPROTO_ICMPV6;
        (*ip).hop_limit = TTL;
        (*ip).src = flow.dst;
        (*ip).dst = flow.src;
    }
    let icmp = ptr_at::<IcmpHdr>(ctx, eth_len + size_of::<Ipv6Hdr>())?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        (*icmp).kind = 2;
        (*icmp).code = 0;
        (*icmp).check_be = [0; 2];
        (*icmp).rest = u32::from(mtu).to_be_bytes();
    }
    // Checksum: pseudo-header (src, dst, length, next header) + message.
    let msg = ptr_at::<[u8; 8 + ICMP6_QUOTE]>(ctx, eth_len + size_of::<Ipv6Hdr>())?;
    let mut sum = sum_bytes(&flow.dst) + sum_bytes(&flow.src);
    sum += u64::from(payload_len) + u64::from(IPPROTO_ICMPV6);
    let sum = sum_packet(msg, sum);
    // SAFETY: checked by ptr_at above; nothing moved the packet since.
    unsafe { (*icmp).check_be = fold(sum).to_be_bytes() };
    Ok(())
}

#[inline(always)]
fn try_icmp4_too_big(ctx: &XdpContext, flow: &FlowKey, mtu: u16) -> Result<(), Failed> {
    let eth_len = size_of::<EthHdr>();
    let hdrs = size_of::<Ipv4Hdr>() + size_of::<IcmpHdr>();
    grow_head(ctx, hdrs)?;
    move_l2(ctx, hdrs, eth_len)?;
    swap_macs(ctx)?;
    shrink_to(ctx, eth_len + hdrs + ICMP4_QUOTE)?;
    set_l3_type(ctx, eth_len, ETH_P_IP)?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, eth_len)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        (*ip).version_ihl = 0x45;
        (*ip).tos = 0;
        (*ip).total_len_be = ((hdrs + ICMP4_QUOTE) as u16).to_be_bytes();
        (*ip).id_be = [0; 2];
        (*ip).frag_off_be = [0; 2];
        (*ip).ttl = TTL;
        (*ip).protocol = IPPROTO_ICMP;
        (*ip).check_be = [0; 2];
        (*ip).src = [flow.dst[12], flow.dst[13], flow.dst[14], flow.dst[15]];
        (*ip).dst = [flow.src[12], flow.src[13], flow.src[14], flow.src[15]];
        (*ip).check_be = ipv4_checksum(&*ip);
    }
    let icmp = ptr_at::<IcmpHdr>(ctx, eth_len + size_of::<Ipv4Hdr>())?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe {
        (*icmp).kind = 3;
        (*icmp).code = 4;
        (*icmp).check_be = [0; 2];
        let [hi, lo] = mtu.to_be_bytes();
        (*icmp).rest = [0, 0, hi, lo];
    }
    let msg = ptr_at::<[u8; 8 + ICMP4_QUOTE]>(ctx, eth_len + size_of::<Ipv4Hdr>())?;
    let sum = sum_packet(msg, 0);
    // SAFETY: checked by ptr_at; nothing moved the packet since.
    unsafe { (*icmp).check_be = fold(sum).to_be_bytes() };
    Ok(())
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Result<(), Failed> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe { core::mem::swap(&mut (*eth).src, &mut (*eth).dst) };
    Ok(())
}

/// Trim the frame to `len` bytes.
#[inline(always)]
fn shrink_to(ctx: &XdpContext, len: usize) -> Result<(), Failed> {
    let (start, end) = bounds(ctx);
    let have = end - start;
    if have < len {
        return Err(Failed);
    }
    // SAFETY: ctx.ctx is the program's context pointer.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((have - len) as i32)) } != 0 {
        return Err(Failed);
    }
    Ok(())
}
