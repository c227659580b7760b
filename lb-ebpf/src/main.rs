//! The XDP load balancer.
//!
//! Per packet: parse; not for a VIP → `XDP_PASS` untouched; otherwise pick
//! the backend (connection table, else Maglev) and forward by the VIP's
//! mode with `XDP_TX`. Every exit bumps one `stats_exit` reason and one
//! `stats_proto` cell; forwarded packets also count against their VIP and
//! their backend slot, which serves one (service, backend) pair, so the
//! per-backend counters are per service as well. All policy (which
//! backends, weights, health) lives in user space, which writes the maps.
//!
//! The decapsulator (`lb_decap`) is another object (`src/bin/lb-decap.rs`);
//! test-only programs live in `lb-lab/ebpf`.
//!
//! Layout follows katran's `lib/bpf/`: one file per concern.
//! - `parse`: bounds-checked header parsing;
//! - `select`: VIP lookup, connection table, Maglev;
//! - `forward`: `dsr`, `ipip`, ICMP too-big;
//! - `csum`: internet checksum;
//! - `stats`: per-CPU counters;
//! - `maps`: every map the program uses.
//!
//! Off the BPF target (clippy, `cargo test --workspace`) the crate builds as
//! an ordinary host binary with an empty `main`, so lints cover this code too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod csum;
mod forward;
mod maps;
mod parse;
mod select;
mod stats;

use core::mem::MaybeUninit;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    stats::{ProtoClass, exit},
    vip::{mode, vip_flags},
};

/// Entry point, attached by `lbd`.
#[xdp]
#[allow(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro calls the function with an XdpContext by value"
)]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let mut pkt = MaybeUninit::uninit();
    parse::parse(&ctx, &mut pkt);
    // SAFETY: parse initialises every field.
    let pkt = unsafe { pkt.assume_init_ref() };
    let (action, reason) = balance(&ctx, pkt);
    stats::count_proto(pkt.class, action);
    stats::count_exit(reason);
    action
}

/// Decide and carry out one packet's fate: `(XDP action, exit reason)`.
#[inline(always)]
fn balance(ctx: &XdpContext, pkt: &parse::Packet) -> (u32, usize) {
    use xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX};
    match pkt.class {
        ProtoClass::NonIp => return (XDP_PASS, exit::PASS_NOT_IP),
        ProtoClass::Malformed => return (XDP_PASS, exit::PASS_MALFORMED),
        _ => {}
    }
    let is_l4 = matches!(pkt.flow.proto, parse::IPPROTO_TCP | parse::IPPROTO_UDP);
    if !is_l4 && !pkt.icmp_too_big && !pkt.fragment {
        return (XDP_PASS, exit::PASS_NOT_VIP);
    }
    let bits = select::filter(&pkt.flow);
    if bits == 0 {
        return (XDP_PASS, exit::PASS_NOT_VIP);
    }
    let hash = lb_common::hash::flow_hash(&pkt.flow);
    let mut chosen = MaybeUninit::uninit();
    // Established flows (not a SYN: a new connection on a reused 5-tuple
    // always takes Maglev's current choice) skip the VIP lookup.
    let fast = !pkt.syn && !pkt.fragment && select::established(pkt, hash, &mut chosen);
    if !fast {
        let Some(vip) = select::find_vip(&pkt.flow, bits) else {
            return (XDP_PASS, exit::PASS_NOT_VIP);
        };
        // Fragments carry no ports to balance on (non-first ones none at
        // all): dropped, as katran does. Clients doing PMTU discovery never
        // send them.
        if pkt.fragment {
            return (XDP_DROP, exit::DROP_FRAGMENT);
        }
        if !select::new_flow(vip, pkt, hash, &mut chosen) {
            return if vip.flags & vip_flags::PASS_NO_BACKEND != 0 {
                (XDP_PASS, exit::PASS_NO_BACKEND)
            } else {
                (XDP_DROP, exit::DROP_NO_BACKEND)
            };
        }
    }
    // SAFETY: established or new_flow returned true, so `chosen` is written.
    let chosen: &select::Chosen = unsafe { chosen.assume_init_ref() };
    let (vip, backend) = (chosen.vip, chosen.backend);
    let (start, end) = parse::bounds(ctx);
    let bytes = (end - start) as u64;
    let result = if vip.mode == mode::IPIP {
        let Some(cfg) = maps::CONFIG.get(0) else {
            return (XDP_ABORTED, exit::ABORTED);
        };
        let overhead = if pkt.v6 { 40 } else { 20 };
        if forward::l3_len(ctx, pkt.l3_off) + overhead > usize::from(cfg.mtu) {
            // Tell the client to send smaller packets (PMTU discovery), as
            // katran does; an IPv4 sender that allows fragmentation cannot
            // be helped (we do not fragment) and is dropped.
            if !pkt.df || pkt.l3_off != 14 || pkt.icmp_too_big {
                return (XDP_DROP, exit::DROP_TOO_BIG);
            }
            return if forward::icmp_too_big(ctx, pkt, cfg.mtu - overhead as u16) {
                (XDP_TX, exit::TX_ICMP_TOO_BIG)
            } else {
                (XDP_ABORTED, exit::ABORTED)
            };
        }
        forward::ipip(ctx, pkt, hash, backend, cfg)
            .then_some(exit::TX_IPIP)
            .ok_or(forward::Failed)
    } else {
        forward::dsr(ctx, backend).map(|()| exit::TX_DSR)
    };
    match result {
        Ok(reason) => {
            stats::count_traffic(vip.id, chosen.index, bytes, chosen.new_flow);
            (XDP_TX, reason)
        }
        Err(forward::Failed) => (XDP_ABORTED, exit::ABORTED),
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
