//! `nat` and `fullnat`: the flow's addresses and ports rewritten in place,
//! both ways, from the NAT table (`lb_common::nat`, map `nat`).
//!
//! - [`forward`]: a client's packet of a flow the table holds, rewritten
//!   towards its backend.
//! - [`new_flow`]: a client's first packet: `select::choose` has picked
//!   the backend (a client template, or Maglev), the
//!   reply entry is inserted first (for `fullnat` that is what takes a
//!   free SNAT port), then the forward entry.
//! - [`reply`]: a backend's packet (its source address is a NAT backend's),
//!   rewritten back towards the client.
//!
//! Checksums are updated incrementally (RFC 1624): the IPv4 header's over
//! the addresses, TCP's and UDP's over the pseudo-header addresses and the
//! ports; an IPv4 UDP checksum of 0 (none) stays 0. TTL / hop limit are
//! left alone, as the other modes do. Each function returns its exit
//! reason (`lb_common::stats::exit`), or [`MISS`].

#![allow(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values go to the map helpers by reference: by value they would be copied onto the 512-byte BPF stack first"
)]

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use lb_common::{
    backend::{Backend, backend_flags},
    flow::{FlowKey, flow_seen},
    nat::{NatEntry, NatEvent, SNAT_PORT_TRIES, nat_flags, reversed, snat_port, tcp_seen},
    stats::exit,
    vip::{VipMeta, mode, vip_flags},
};

use crate::{
    csum::fold,
    maps::{BACKENDS, CONFIG, FLOW_EVENTS, FLOW_EVENTS_ON, NAT, NAT_SCRATCH, VIP_IDS},
    parse::{EthHdr, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr, Packet, load4, ptr_at},
};

/// Not a packet of a flow the table holds: the caller goes on.
pub const MISS: usize = usize::MAX;

/// [`translate`] could not rewrite the frame (else it returns 0 or
/// `exit::REDIRECTED`: how the frame leaves).
const FAILED: usize = usize::MAX;

/// `-EEXIST`: the key is taken.
const EEXIST: i32 = -17;

/// A forward packet (client -> VIP) of a flow in the table, translated.
/// [`MISS`] when the table has no forward entry.
///
/// A flow whose backend slot no longer serves its VIP and backend (the
/// backend was removed, or failed its health check) keeps its translation if it is
/// TCP: the server may well be alive (a backend taken out of the
/// configuration), and a connection cannot move anyway; as in IPVS, it
/// ends when its state times out. A UDP flow is deleted instead and the
/// caller balances it again, so datagrams move to a live backend.
#[inline(never)]
pub fn forward(ctx: &XdpContext, pkt: &Packet) -> usize {
    let Some(entry) = NAT.get_ptr_mut(&pkt.flow) else {
        return MISS;
    };
    // SAFETY: a map value, valid for the whole run; other CPUs may write
    // `seen` and `tcp` meanwhile, which only loses an update.
    let e = unsafe { &mut *entry };
    if e.flags & nat_flags::REPLY != 0 {
        return MISS;
    }
    let live = serving(e.backend, e.vip_id, &e.to.dst);
    // A synced copy carries no MAC of its own (the slot's is used): with
    // the slot gone it cannot be sent on, and is balanced again as UDP is.
    if live.is_none() && (pkt.flow.proto != IPPROTO_TCP || is_zero(&e.mac)) {
        let stale = reversed(&e.to);
        let _ = NAT.remove(&stale);
        let _ = NAT.remove(&pkt.flow);
        return MISS;
    }
    touch(e, pkt, false);
    if e.flags & nat_flags::PERSIST != 0
        && let Some(vip) = VIP_IDS.get(e.vip_id)
    {
        let now = crate::clock::coarse_now_ns();
        crate::select::keep_template(vip, &pkt.flow.src, e.backend, now);
    }
    // The slot's MAC is the freshest (the neighbour may have moved); a
    // flow of a removed backend keeps the one it started with (a synced
    // copy learns it here, on its first packet).
    if let Some(b) = live
        && is_zero(&e.mac)
    {
        e.mac = b.mac;
        e.arm = b.arm;
    }
    let (mac, arm) = live.map_or((&e.mac, e.arm), |b| (&b.mac, b.arm));
    let how = translate(ctx, pkt, &e.to, mac, arm);
    if how == FAILED {
        return exit::ABORTED;
    }
    if live.is_some() {
        crate::stats::count_traffic(e.vip_id, e.backend, frame_len(ctx), false);
    }
    exit::TX_NAT | how
}

/// Backend slot `slot` if it still serves the flow of VIP `vip_id` to
/// `backend` (the forward entry's translated destination): active, for
/// that VIP, and for that backend. A slot freed when its backend left the
/// pool may serve another backend of the same VIP by now; a flow must not
/// follow it there (it would reach that backend's MAC with its own
/// backend's address).
#[inline(always)]
fn serving(slot: u32, vip_id: u32, backend: &[u8; 16]) -> Option<&'static Backend> {
    BACKENDS.get(slot).filter(|b| {
        b.flags & backend_flags::ACTIVE != 0 && b.vip_id == vip_id && same_addr(&b.addr, backend)
    })
}

/// Whether two addresses are equal, byte by byte: `==` on arrays may
/// become a `memcmp` with its buffers on the stack, and `forward`'s
/// call chain has no stack to spare (verifier: "combined stack size of
/// 3 calls is 528").
#[inline(always)]
fn same_addr(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut diff = 0;
    for i in 0..16 {
        diff |= a[i] ^ b[i];
    }
    diff == 0
}

/// An ICMP error about a NAT flow (`pkt.flow` is the embedded packet's
/// 5-tuple reversed, which is the key of the entry for the direction the
/// error travels): sent on like that direction's packets, the embedded
/// packet translated as it was before (to the client: as the client sent
/// or received it; to the backend: as the backend did), the outer
/// addresses those of the translated direction, every checksum updated.
/// [`MISS`] when no entry matches.
#[inline(never)]
pub fn icmp_error(ctx: &XdpContext, pkt: &Packet) -> usize {
    let Some(entry) = NAT.get_ptr(&pkt.flow) else {
        return MISS;
    };
    // SAFETY: a map value, valid for the whole run.
    let e = unsafe { &*entry };
    let (mac, arm) = if e.flags & nat_flags::REPLY != 0 {
        (&e.mac, e.arm)
    } else {
        match serving(e.backend, e.vip_id, &e.to.dst) {
            Some(b) => (&b.mac, b.arm),
            None => (&e.mac, e.arm),
        }
    };
    if is_zero(mac) {
        return MISS;
    }
    let how = translate_icmp(ctx, pkt, &e.to, mac, arm);
    if how == FAILED {
        exit::ABORTED
    } else {
        exit::TX_NAT_ICMP | how
    }
}

/// See [`icmp_error`]: `to` is the entry's translated tuple; the outer
/// header goes from `to.src` to `to.dst`, the embedded packet becomes
/// `to` reversed.
#[inline(never)]
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "the MAC stays in its map value: a subprogram argument, one register"
)]
fn translate_icmp(ctx: &XdpContext, pkt: &Packet, to: &FlowKey, mac: &[u8; 6], arm: u8) -> usize {
    try_translate_icmp(ctx, pkt, to, mac, arm).unwrap_or(FAILED)
}

#[inline(always)]
fn try_translate_icmp(
    ctx: &XdpContext,
    pkt: &Packet,
    to: &FlowKey,
    mac: &[u8; 6],
    arm: u8,
) -> Result<usize, ()> {
    let w = to.words();
    // Bounds for the verifier: 14 or 18; at most `parse::MAX_L4_OFF`
    // (IPv6 extension headers) + 8 + 60.
    let l3 = pkt.l3_off & 0x1f;
    let icmp_off = pkt.l4_off & 0x1ff;
    let inner_l3 = icmp_off + 8;
    let inner_l4 = pkt.inner_l4_off & 0x1ff;
    // 1. Outer addresses: from to.src to to.dst.
    let outer_diff = if pkt.v6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, l3).map_err(|_| ())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe { swap_addrs6(ip, &[w[0], w[1], w[2], w[3]], &[w[4], w[5], w[6], w[7]]) }
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, l3).map_err(|_| ())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe {
            let diff = swap_word(&raw mut (*ip).src, w[3]) + swap_word(&raw mut (*ip).dst, w[7]);
            (*ip).check_be = updated(u16::from_ne_bytes((*ip).check_be), diff).to_ne_bytes();
            diff
        }
    };
    // 2. The embedded packet: to.dst -> to.src (it travelled the other
    // way), with its ports.
    let mut icmp_diff = 0;
    let inner_addr_diff = if pkt.v6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, inner_l3).map_err(|_| ())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe { swap_addrs6(ip, &[w[4], w[5], w[6], w[7]], &[w[0], w[1], w[2], w[3]]) }
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, inner_l3).map_err(|_| ())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe {
            let diff = swap_word(&raw mut (*ip).src, w[7]) + swap_word(&raw mut (*ip).dst, w[3]);
            let old = u16::from_ne_bytes((*ip).check_be);
            let new = updated(old, diff);
            (*ip).check_be = new.to_ne_bytes();
            icmp_diff += u64::from(!old) + u64::from(new);
            diff
        }
    };
    icmp_diff += inner_addr_diff;
    let ports = ptr_at::<[u16; 2]>(ctx, inner_l4)
        .map_err(|_| ())?
        .cast_mut();
    // SAFETY: checked by ptr_at.
    let port_diff = unsafe {
        let old = ports.read_unaligned();
        ports.write_unaligned([to.dst_port_be, to.src_port_be]);
        u64::from(!old[0])
            + u64::from(to.dst_port_be)
            + u64::from(!old[1])
            + u64::from(to.src_port_be)
    };
    icmp_diff += port_diff;
    // The embedded transport checksum, where the error quotes it (UDP's
    // is in the 8 bytes every error carries; TCP's only in longer quotes).
    let check_off = if pkt.flow.proto == IPPROTO_UDP { 6 } else { 16 };
    if let Ok(check) = ptr_at::<[u8; 2]>(ctx, inner_l4 + check_off) {
        let check = check.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe {
            let old = u16::from_ne_bytes(*check);
            if !(old == 0 && pkt.flow.proto == IPPROTO_UDP && !pkt.v6) {
                let new = updated(old, inner_addr_diff + port_diff);
                *check = new.to_ne_bytes();
                icmp_diff += u64::from(!old) + u64::from(new);
            }
        }
    }
    // 3. The ICMP checksum: over the message, and for ICMPv6 the outer
    // pseudo-header too.
    if pkt.v6 {
        icmp_diff += outer_diff;
    }
    let check = ptr_at::<[u8; 2]>(ctx, icmp_off + 2)
        .map_err(|_| ())?
        .cast_mut();
    // SAFETY: checked by ptr_at.
    unsafe { *check = updated(u16::from_ne_bytes(*check), icmp_diff).to_ne_bytes() };
    crate::forward::send(ctx, *mac, arm).map_err(|_| ())
}

/// Replace an IPv6 header's addresses; the checksum change.
///
/// # Safety
/// `ip` points at a whole IPv6 header inside the frame.
#[inline(always)]
unsafe fn swap_addrs6(ip: *mut Ipv6Hdr, src: &[u32; 4], dst: &[u32; 4]) -> u64 {
    let mut diff = 0;
    let mut i = 0;
    while i < 4 {
        // SAFETY: i < 4 stays in each address, inside the header.
        unsafe {
            let s = (&raw mut (*ip).src).cast::<[u8; 4]>().add(i);
            let d = (&raw mut (*ip).dst).cast::<[u8; 4]>().add(i);
            diff += swap_word(s, src[i]) + swap_word(d, dst[i]);
        }
        i += 1;
    }
    diff
}

/// A packet from a NAT backend's address: a reply of a flow in the table,
/// translated back to the client, or (no reply entry) handed to the stack.
#[inline(never)]
pub fn reply(ctx: &XdpContext, pkt: &Packet) -> usize {
    let Some(entry) = NAT.get_ptr_mut(&pkt.flow) else {
        return exit::PASS_NAT_NO_ENTRY;
    };
    // SAFETY: as in `forward`.
    let e = unsafe { &mut *entry };
    if e.flags & nat_flags::REPLY == 0 {
        return exit::PASS_NAT_NO_ENTRY;
    }
    touch(e, pkt, true);
    let how = translate(ctx, pkt, &e.to, &e.mac, e.arm);
    if how == FAILED {
        return exit::ABORTED;
    }
    // Counted against the slot while it still serves the flow's VIP and
    // backend (a freed slot may serve another pair by now).
    if BACKENDS
        .get(e.backend)
        .is_some_and(|b| b.vip_id == e.vip_id && same_addr(&b.addr, &pkt.flow.src))
    {
        crate::stats::count_reply(e.vip_id, e.backend, frame_len(ctx));
    }
    exit::TX_NAT_REPLY | how
}

/// Scratch space for building a new flow's entries: a per-CPU map value,
/// not the stack (the verifier allows 512 bytes of stack per call chain).
#[repr(C)]
pub struct NatScratch {
    /// The reply entry.
    pub reply: NatEntry,
    /// The forward entry.
    pub fwd: NatEntry,
    /// The reply entry's key.
    pub key: FlowKey,
    /// The new flow, for connection sync.
    pub event: NatEvent,
}

// `new_flow` copies the VIP's PERSIST bit into its entries as it is.
const _: () = assert!(vip_flags::PERSIST == nat_flags::PERSIST);

/// Returned by [`new_flow`] when another CPU recorded the flow first: the
/// caller follows that flow's entries ([`forward`]).
pub const RACED: usize = usize::MAX - 1;

/// A client's first packet to `vip` (a `nat` / `fullnat` VIP; flow hash
/// `hash`): pick the backend, record both entries, translate.
#[inline(never)]
pub fn new_flow(ctx: &XdpContext, pkt: &Packet, hash: u32, vip: &VipMeta, index: u32) -> usize {
    let no_backend = if vip.flags & vip_flags::PASS_NO_BACKEND != 0 {
        exit::PASS_NO_BACKEND
    } else {
        exit::DROP_NO_BACKEND
    };
    let Some(backend) = crate::select::backend_at(index, vip.id) else {
        return no_backend;
    };
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return exit::ABORTED;
    };
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return exit::ABORTED;
    };
    // SAFETY: this CPU's slot of a per-CPU array, valid for the run.
    let s = unsafe { &mut *scratch };
    let fullnat = vip.mode == mode::FULLNAT;
    // The VIP's PERSIST bit is the entry's (same bit, asserted below),
    // copied without a branch: a branch here doubled the verifier's
    // states on every path that follows.
    let flags = (if fullnat { nat_flags::FULLNAT } else { 0 }) | (vip.flags & vip_flags::PERSIST);
    // SAFETY: a helper without arguments.
    let seen = flow_seen(unsafe { bpf_ktime_get_coarse_ns() });
    let f = &pkt.flow;
    let r = &mut s.reply;
    set_key(
        &mut r.to,
        &f.dst,
        &f.src,
        f.dst_port_be,
        f.src_port_be,
        f.proto,
    );
    // SAFETY: checked by ptr_at.
    r.mac = unsafe { (*eth).src };
    r.arm = crate::forward::ingress_arm(ctx);
    r.flags = flags | nat_flags::REPLY;
    r.tcp = 0;
    set_common(r, seen, index, vip.id);
    let w = &mut s.fwd;
    let (src, src_port_be) = if fullnat {
        (&backend.snat, 0)
    } else {
        (&f.src, f.src_port_be)
    };
    let dst_port_be = if backend.port_be == 0 {
        f.dst_port_be
    } else {
        backend.port_be
    };
    set_key(
        &mut w.to,
        src,
        &backend.addr,
        src_port_be,
        dst_port_be,
        f.proto,
    );
    w.mac = backend.mac;
    w.arm = backend.arm;
    w.flags = flags;
    w.tcp = tcp_seen(0, pkt.tcp_flags, false);
    set_common(w, seen, index, vip.id);
    let placed = if fullnat {
        take_snat_port(s, hash)
    } else {
        insert_reply(s)
    };
    if placed != 0 {
        if placed != exit::ABORTED {
            crate::stats::count_refused(vip.id, index);
        }
        return placed;
    }
    if let Err(e) = NAT.insert(&pkt.flow, &s.fwd, u64::from(BPF_NOEXIST)) {
        let _ = NAT.remove(&s.key);
        if e == EEXIST {
            return RACED;
        }
        crate::stats::count_refused(vip.id, index);
        return exit::DROP_NAT_FULL;
    }
    if FLOW_EVENTS_ON.load() != 0 {
        emit_event(s, pkt, vip);
    }
    let how = translate(ctx, pkt, &s.fwd.to, &backend.mac, backend.arm);
    if how == FAILED {
        return exit::ABORTED;
    }
    crate::stats::count_traffic(vip.id, index, frame_len(ctx), true);
    exit::TX_NAT | how
}

/// Tell connection sync about the flow just recorded (`s` holds its
/// entries), built in the scratch space and copied from there.
#[inline(always)]
fn emit_event(s: &mut NatScratch, pkt: &Packet, vip: &VipMeta) {
    let e = &mut s.event;
    let f = &pkt.flow;
    set_key(
        &mut e.key,
        &f.src,
        &f.dst,
        f.src_port_be,
        f.dst_port_be,
        f.proto,
    );
    let to = &s.fwd.to;
    set_key(
        &mut e.to,
        &to.src,
        &to.dst,
        to.src_port_be,
        to.dst_port_be,
        to.proto,
    );
    e.client_mac = s.reply.mac;
    e.flags = s.fwd.flags;
    e.tcp = s.fwd.tcp;
    e.backend = s.fwd.backend;
    e.vip_id = vip.id;
    e.vip_generation = vip.generation;
    e.client_arm = s.reply.arm;
    e.pad = [0; 3];
    if FLOW_EVENTS.output_untyped::<NatEvent>(&s.event, 0).is_err() {
        crate::stats::count_event_lost();
    }
}

/// Fill a 5-tuple in place (no temporary on the stack).
#[inline(always)]
fn set_key(k: &mut FlowKey, src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, proto: u8) {
    k.src = *src;
    k.dst = *dst;
    k.src_port_be = sport;
    k.dst_port_be = dport;
    k.proto = proto;
    k.pad = [0; 3];
}

#[inline(always)]
fn set_common(e: &mut NatEntry, seen: u32, backend: u32, vip_id: u32) {
    e.seen = seen;
    e.backend = backend;
    e.vip_id = vip_id;
    e.pad = [0; 3];
}

/// Insert the reply entry (`s.reply`) under the forward translation's
/// tuple reversed; 0, or the exit reason of the refusal.
#[inline(always)]
fn insert_reply(s: &mut NatScratch) -> usize {
    let to = &s.fwd.to;
    set_key(
        &mut s.key,
        &to.dst,
        &to.src,
        to.dst_port_be,
        to.src_port_be,
        to.proto,
    );
    match NAT.insert(&s.key, &s.reply, u64::from(BPF_NOEXIST)) {
        Ok(()) => 0,
        Err(EEXIST) => exit::DROP_NAT_PORTS,
        Err(_) => exit::DROP_NAT_FULL,
    }
}

/// Find the forward translation a SNAT port whose reply tuple is free,
/// inserting the reply entry under it; 0, or the exit reason of the
/// refusal. A subprogram of its own: the loop is verified once per call
/// site, so it has one.
#[inline(never)]
fn take_snat_port(s: &mut NatScratch, hash: u32) -> usize {
    let Some(cfg) = CONFIG.get(0) else {
        return exit::ABORTED;
    };
    let (min, count) = (cfg.snat_port_min, cfg.snat_ports);
    let mut attempt = 0;
    while attempt < SNAT_PORT_TRIES && attempt < u32::from(count) {
        s.fwd.to.src_port_be = snat_port(hash, attempt, min, count).to_be();
        match insert_reply(s) {
            exit::DROP_NAT_PORTS => {}
            placed => return placed,
        }
        attempt += 1;
    }
    exit::DROP_NAT_PORTS
}

/// An unset MAC (a synced copy's forward entry).
#[inline(always)]
fn is_zero(mac: &[u8; 6]) -> bool {
    mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5] == 0
}

/// Mark the entry seen now, with the packet's TCP flags.
#[inline(always)]
fn touch(e: &mut NatEntry, pkt: &Packet, reply: bool) {
    let now = flow_seen(crate::clock::coarse_now_ns());
    if e.seen != now {
        e.seen = now;
    }
    if e.flags & nat_flags::SYNCED != 0 {
        e.flags &= !nat_flags::SYNCED;
    }
    if pkt.flow.proto == IPPROTO_TCP {
        let tcp = tcp_seen(e.tcp, pkt.tcp_flags, reply);
        if tcp != e.tcp {
            e.tcp = tcp;
        }
    }
}

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> u64 {
    let (start, end) = crate::parse::bounds(ctx);
    (end - start) as u64
}

/// The one's-complement change of replacing `old` by `new` (RFC 1624:
/// `~m + m'`), both read in memory order.
#[inline(always)]
fn diff32(old: u32, new: u32) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// A checksum (memory order) after a change of `diff`.
#[inline(always)]
fn updated(check: u16, diff: u64) -> u16 {
    fold(u64::from(!check) + diff)
}

/// Replace the 4 packet bytes at `p` (checked by the caller) with `new`
/// (memory order); returns the checksum change.
///
/// # Safety
/// `p` points at 4 bytes inside the frame.
#[inline(always)]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "a deliberate unaligned packet store, allowed by the verifier and JIT (see parse::load4)"
)]
unsafe fn swap_word(p: *mut [u8; 4], new: u32) -> u64 {
    // SAFETY: as the caller promises.
    unsafe {
        let old = load4(p);
        core::ptr::write_volatile(p.cast::<u32>(), new);
        diff32(old, new)
    }
}

/// Rewrite the packet to `to` and send it to `mac` on arm `arm`
/// (`forward::send`): 0 (`XDP_TX`), `exit::REDIRECTED`, or [`FAILED`]. A
/// subprogram of its own, so its registers spill into its own frame, not
/// its callers'.
#[inline(never)]
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "the MAC stays in its map value: a subprogram argument, one register"
)]
fn translate(ctx: &XdpContext, pkt: &Packet, to: &FlowKey, mac: &[u8; 6], arm: u8) -> usize {
    try_translate(ctx, pkt, to, mac, arm).unwrap_or(FAILED)
}

#[inline(always)]
fn try_translate(
    ctx: &XdpContext,
    pkt: &Packet,
    to: &FlowKey,
    mac: &[u8; 6],
    arm: u8,
) -> Result<usize, ()> {
    // The mask bounds the offset for the verifier (it is 14 or 18).
    let l3_off = pkt.l3_off & 0x1f;
    let words = to.words();
    let addr_diff = if pkt.v6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).map_err(|_| ())?.cast_mut();
        let mut diff = 0;
        let mut i = 0;
        while i < 4 {
            // SAFETY: checked by ptr_at; i < 4 stays in each address.
            unsafe {
                let src = (&raw mut (*ip).src).cast::<[u8; 4]>().add(i);
                let dst = (&raw mut (*ip).dst).cast::<[u8; 4]>().add(i);
                diff += swap_word(src, words[i]) + swap_word(dst, words[4 + i]);
            }
            i += 1;
        }
        diff
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).map_err(|_| ())?.cast_mut();
        // SAFETY: checked by ptr_at.
        unsafe {
            let diff =
                swap_word(&raw mut (*ip).src, words[3]) + swap_word(&raw mut (*ip).dst, words[7]);
            let check = updated(u16::from_ne_bytes((*ip).check_be), diff);
            (*ip).check_be = check.to_ne_bytes();
            diff
        }
    };
    rewrite_l4(ctx, pkt, to, addr_diff)?;
    crate::forward::send(ctx, *mac, arm).map_err(|_| ())
}

/// New ports and TCP / UDP checksum (`addr_diff`: the pseudo-header's
/// change).
#[inline(always)]
fn rewrite_l4(ctx: &XdpContext, pkt: &Packet, to: &FlowKey, addr_diff: u64) -> Result<(), ()> {
    // The mask bounds the offset for the verifier (the parser keeps it at
    // most `parse::MAX_L4_OFF`, IPv6 extension headers included).
    let l4 = pkt.l4_off & 0x1ff;
    let ports = ptr_at::<[u16; 2]>(ctx, l4).map_err(|_| ())?.cast_mut();
    let (check_off, udp) = match pkt.flow.proto {
        IPPROTO_TCP => (16, false),
        IPPROTO_UDP => (6, true),
        _ => return Err(()),
    };
    let check = ptr_at::<[u8; 2]>(ctx, l4 + check_off)
        .map_err(|_| ())?
        .cast_mut();
    // SAFETY: both checked by ptr_at.
    unsafe {
        let old = ports.read_unaligned();
        let diff = addr_diff
            + u64::from(!old[0])
            + u64::from(to.src_port_be)
            + u64::from(!old[1])
            + u64::from(to.dst_port_be);
        ports.write_unaligned([to.src_port_be, to.dst_port_be]);
        let sum = u16::from_ne_bytes(*check);
        if udp && sum == 0 && !pkt.v6 {
            // IPv4 UDP without a checksum stays without one.
            return Ok(());
        }
        let mut new = updated(sum, diff);
        if udp && new == 0 {
            new = 0xffff;
        }
        *check = new.to_ne_bytes();
    }
    Ok(())
}
