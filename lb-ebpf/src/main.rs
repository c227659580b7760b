//! The XDP load balancer.
//!
//! Per packet: parse; not for a VIP (nor a NAT backend's reply) →
//! `XDP_PASS` untouched; otherwise pick the backend (connection table or
//! NAT table, else Maglev) and forward by the VIP's mode with `XDP_TX`, or
//! `XDP_REDIRECT` to the other interface when the program runs on two
//! (`[dataplane] backend_interface`) and the next hop is there. Every exit bumps one `stats_exit` reason and one
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
//! - `nat`: `nat` and `fullnat`, both directions;
//! - `csum`: internet checksum;
//! - `clock`: the coarse clock, read once per tick per CPU;
//! - `stats`: per-CPU counters;
//! - `maps`: every map the program uses.
//!
//! Off the BPF target (clippy, `cargo test --workspace`) the crate builds as
//! an ordinary host binary with an empty `main`, so lints cover this code too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod clock;
mod csum;
mod forward;
mod maps;
mod nat;
mod parse;
mod select;
mod stats;

use core::mem::MaybeUninit;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    stats::{ProtoClass, exit},
    vip::{filter_bits, mode, vip_flags},
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

/// The XDP action of an exit reason (without [`exit::REDIRECTED`]: a
/// `TX_*` reason with it is `XDP_REDIRECT`).
#[inline(always)]
const fn action_of(reason: usize) -> u32 {
    use xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX};
    match reason {
        exit::PASS_NOT_IP
        | exit::PASS_MALFORMED
        | exit::PASS_NOT_VIP
        | exit::PASS_NO_BACKEND
        | exit::PASS_NAT_NO_ENTRY => XDP_PASS,
        exit::DROP_MALFORMED
        | exit::DROP_FRAGMENT
        | exit::DROP_NO_BACKEND
        | exit::DROP_TOO_BIG
        | exit::DROP_NAT_PORTS
        | exit::DROP_NAT_FULL => XDP_DROP,
        exit::TX_DSR
        | exit::TX_IPIP
        | exit::TX_ICMP_TOO_BIG
        | exit::TX_NAT
        | exit::TX_NAT_REPLY
        | exit::TX_NAT_ICMP => XDP_TX,
        _ => XDP_ABORTED,
    }
}

/// Decide and carry out one packet's fate: `(XDP action, exit reason)`.
#[inline(always)]
fn balance(ctx: &XdpContext, pkt: &parse::Packet) -> (u32, usize) {
    let reason = match pkt.class {
        ProtoClass::NonIp => exit::PASS_NOT_IP,
        ProtoClass::Malformed => exit::PASS_MALFORMED,
        _ => to_vip(ctx, pkt),
    };
    if reason & exit::REDIRECTED != 0 {
        return (xdp_action::XDP_REDIRECT, reason & !exit::REDIRECTED);
    }
    (action_of(reason), reason)
}

/// A packet to a VIP, or a NAT backend's reply, or neither (passed).
#[inline(always)]
fn to_vip(ctx: &XdpContext, pkt: &parse::Packet) -> usize {
    // For an ICMP error, `flow` is the embedded packet's, reversed.
    let is_l4 =
        matches!(pkt.flow.proto, parse::IPPROTO_TCP | parse::IPPROTO_UDP) && !pkt.icmp_error;
    if !is_l4 && !pkt.icmp_error && !pkt.fragment {
        return exit::PASS_NOT_VIP;
    }
    let bits = select::filter(&pkt.flow.dst);
    if pkt.icmp_error {
        // About a NAT flow, either way: both layers translated.
        if bits & filter_bits::NAT != 0
            || select::filter(&pkt.flow.src) & filter_bits::NAT_REAL != 0
        {
            let reason = nat::icmp_error(ctx, pkt);
            if reason != nat::MISS {
                return reason;
            }
        }
        // dsr and ipip forward "too big" along the flow; the rest, and
        // errors about no flow of ours, go to the stack.
        if !pkt.icmp_too_big || bits == 0 {
            return exit::PASS_NOT_VIP;
        }
    }
    let plain_l4 = is_l4 && !pkt.fragment;
    if bits != 0 {
        let reason = vip_packet(ctx, pkt, bits);
        if reason != exit::PASS_NOT_VIP {
            return reason;
        }
    }
    // Not to a VIP: a reply from a NAT backend, or the stack's.
    if plain_l4 && select::filter(&pkt.flow.src) & filter_bits::NAT_REAL != 0 {
        return nat::reply(ctx, pkt);
    }
    exit::PASS_NOT_VIP
}

/// A packet to a VIP address (the prefilter says so): its exit reason.
#[inline(always)]
fn vip_packet(ctx: &XdpContext, pkt: &parse::Packet, bits: u8) -> usize {
    let hash = lb_common::hash::flow_hash(&pkt.flow);
    let mut chosen = MaybeUninit::uninit();
    // Established flows (not a SYN: a new connection on a reused 5-tuple
    // always takes Maglev's current choice) skip the VIP lookup.
    // The connection table only where dsr / ipip VIPs live, the NAT table
    // only where nat / fullnat ones do: a bucket with one kind pays for
    // no lookup of the other.
    let fast = bits & filter_bits::PLAIN != 0
        && !pkt.syn
        && !pkt.fragment
        && select::established(pkt, hash, &mut chosen);
    if !fast {
        if bits & filter_bits::NAT != 0 && !pkt.fragment && !pkt.icmp_error {
            let reason = nat::forward(ctx, pkt);
            if reason != nat::MISS {
                return reason;
            }
        }
        let Some(vip) = select::find_vip(&pkt.flow, bits) else {
            return exit::PASS_NOT_VIP;
        };
        // Fragments carry no ports to balance on (non-first ones none at
        // all): dropped, as katran does. Clients doing PMTU discovery never
        // send them.
        if pkt.fragment {
            return exit::DROP_FRAGMENT;
        }
        if vip.mode >= mode::NAT {
            // ICMP errors about NATed flows are left to the stack.
            if pkt.icmp_too_big {
                return exit::PASS_NOT_VIP;
            }
            let index = select::choose(vip, pkt, hash);
            let reason = nat::new_flow(ctx, pkt, hash, vip, index);
            if reason == nat::RACED {
                // Another CPU recorded the flow first: follow its entries.
                let reason = nat::forward(ctx, pkt);
                return if reason == nat::MISS {
                    exit::DROP_NAT_FULL
                } else {
                    reason
                };
            }
            return reason;
        }
        let index = select::choose(vip, pkt, hash);
        if !select::new_flow(vip, pkt, hash, index, &mut chosen) {
            return if vip.flags & vip_flags::PASS_NO_BACKEND != 0 {
                exit::PASS_NO_BACKEND
            } else {
                exit::DROP_NO_BACKEND
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
            return exit::ABORTED;
        };
        let overhead = if pkt.v6 { 40 } else { 20 };
        if forward::l3_len(ctx, pkt.l3_off) + overhead > usize::from(cfg.mtu) {
            // Tell the client to send smaller packets (PMTU discovery), as
            // katran does; an IPv4 sender that allows fragmentation cannot
            // be helped (we do not fragment) and is dropped.
            if !pkt.df || pkt.l3_off != 14 || pkt.icmp_too_big {
                return exit::DROP_TOO_BIG;
            }
            return if forward::icmp_too_big(ctx, pkt, cfg.mtu - overhead as u16) {
                exit::TX_ICMP_TOO_BIG
            } else {
                exit::ABORTED
            };
        }
        if forward::ipip(ctx, pkt, hash, backend, cfg) {
            forward::leave_by(ctx, backend.arm).map(|how| exit::TX_IPIP | how)
        } else {
            Err(forward::Failed)
        }
    } else {
        forward::dsr(ctx, backend).map(|how| exit::TX_DSR | how)
    };
    match result {
        Ok(reason) => {
            stats::count_traffic(vip.id, chosen.index, bytes, chosen.new_flow);
            reason
        }
        Err(forward::Failed) => exit::ABORTED,
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
