//! The decapsulator for backends: strips the outer header `ipip` mode adds
//! (IPv4-in-IPv4, IPv6-in-IPv6) and passes the inner packet to the local
//! stack, where the VIP sits on `lo`. For backends whose kernel lacks the
//! ipip/ip6tnl modules (this project's test kernel has none); where a
//! kernel tunnel device exists it does the same job.

use core::mem::size_of;

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::stats::decap;

use crate::parse::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, EthHdr, Ipv4Hdr, Ipv6Hdr, Truncated, VlanHdr,
    ptr_at,
};

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

/// Strip one outer header if the frame is IP-in-IP: `(action, reason)`.
#[inline(always)]
pub fn decap(ctx: &XdpContext) -> (u32, usize) {
    match try_decap(ctx) {
        Ok(Some(())) => (xdp_action::XDP_PASS, decap::DECAPSULATED),
        Ok(None) => (xdp_action::XDP_PASS, decap::PASS_NOT_ENCAPSULATED),
        Err(Truncated) => (xdp_action::XDP_PASS, decap::PASS_MALFORMED),
    }
}

#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Result<Option<()>, Truncated> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    // SAFETY: checked by ptr_at.
    let mut ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type_be });
    let mut l3_off = size_of::<EthHdr>();
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan = ptr_at::<VlanHdr>(ctx, l3_off)?;
        // SAFETY: checked by ptr_at.
        ether_type = u16::from_be_bytes(unsafe { (*vlan).ether_type_be });
        l3_off += size_of::<VlanHdr>();
    }
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
