//! The decapsulator for backends (program `lb_decap`, attached by
//! `lbd decap --iface IF`): strips the outer header `ipip` mode adds
//! (IPv4-in-IPv4, IPv6-in-IPv6) and passes the inner packet to the local
//! stack, where the VIP sits on `lo`. For backends whose kernel lacks the
//! ipip/ip6tnl modules (this project's test kernel has none); where a
//! kernel tunnel device exists it does the same job.
//!
//! An object of its own with one map (`stats_decap`): a backend running it
//! carries nothing of the balancer (no connection table, no Maglev
//! tables). Off the BPF target it builds as an empty host binary, so lints
//! cover it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action, btf_maps::PerCpuArray, helpers::bpf_xdp_adjust_head, macros::btf_map,
    macros::xdp, programs::XdpContext,
};
use lb_common::stats::{DecapCounters, decap};
use lb_ebpf::frame::{
    ETH_P_IP, ETH_P_IPV6, EthHdr, Ipv4Hdr, Ipv6Hdr, Truncated, VlanHdr, l2, ptr_at,
};

/// The decapsulator's counters (one entry), per CPU.
#[btf_map(name = "stats_decap")]
static STATS_DECAP: PerCpuArray<DecapCounters, 1> = PerCpuArray::new();

/// Entry point.
#[xdp]
#[allow(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro calls the function with an XdpContext by value"
)]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    let (action, reason) = decap(&ctx);
    count_decap(reason);
    action
}

/// Count one packet seen by the decapsulator.
#[inline(always)]
fn count_decap(reason: usize) {
    if reason >= decap::COUNT {
        return;
    }
    if let Some(counters) = STATS_DECAP.get_ptr_mut(0) {
        // SAFETY: DecapCounters is repr(C) with decap::COUNT u64 fields.
        unsafe { *counters.cast::<u64>().add(reason) += 1 };
    }
}

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

/// Strip one outer header if the frame is IP-in-IP: `(action, reason)`.
#[inline(always)]
fn decap(ctx: &XdpContext) -> (u32, usize) {
    match try_decap(ctx) {
        Ok(Some(())) => (xdp_action::XDP_PASS, decap::DECAPSULATED),
        Ok(None) => (xdp_action::XDP_PASS, decap::PASS_NOT_ENCAPSULATED),
        Err(Truncated) => (xdp_action::XDP_PASS, decap::PASS_MALFORMED),
    }
}

#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Result<Option<()>, Truncated> {
    let (ether_type, l3_off) = l2(ctx)?;
    let outer_len = match ether_type {
        ETH_P_IP => {
            let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off)?;
            // SAFETY: checked by ptr_at.
            let (vihl, proto) = unsafe { ((*ip).version_ihl, (*ip).protocol) };
            if proto != IPPROTO_IPIP {
                return Ok(None);
            }
            let len = usize::from(vihl & 0x0F) * 4;
            if len < size_of::<Ipv4Hdr>() {
                return Err(Truncated);
            }
            len
        }
        ETH_P_IPV6 => {
            let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off)?;
            // SAFETY: checked by ptr_at.
            if unsafe { (*ip).next_header } != IPPROTO_IPV6 {
                return Ok(None);
            }
            size_of::<Ipv6Hdr>()
        }
        _ => return Ok(None),
    };
    // The inner header must be there before we commit to stripping.
    ptr_at::<u8>(ctx, l3_off + outer_len)?;
    // Move the L2 header forward over the outer IP header, then drop the
    // bytes in front. The EtherType stays: IPv4 in IPv4, IPv6 in IPv6.
    let old = ptr_at::<EthHdr>(ctx, 0)?;
    // SAFETY: checked by ptr_at.
    let eth_copy = unsafe { old.read() };
    let vlan_copy = if l3_off > size_of::<EthHdr>() {
        // SAFETY: checked by ptr_at.
        Some(unsafe { ptr_at::<VlanHdr>(ctx, size_of::<EthHdr>())?.read() })
    } else {
        None
    };
    // SAFETY: ctx.ctx is the program's context pointer.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return Err(Truncated);
    }
    let new = ptr_at::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: checked by ptr_at after the head moved.
    unsafe { new.write(eth_copy) };
    if let Some(vlan) = vlan_copy {
        let at = ptr_at::<VlanHdr>(ctx, size_of::<EthHdr>())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe { at.write(vlan) };
    }
    Ok(Some(()))
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
