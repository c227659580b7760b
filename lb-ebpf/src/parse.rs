//! Bounds-checked header parsing for the balancer. Frame access (header
//! layouts, [`ptr_at`]) is `lb_ebpf::frame`, shared with the decapsulator.
//!
//! Rules (each one a documented verdict, see `ProtoClass`):
//! - Ethernet with at most one 802.1Q / 802.1ad tag; a second tag is parsed as
//!   an unknown EtherType (`NonIp`).
//! - IPv4: version must be 4, IHL >= 5 and the whole IHL-sized header present
//!   (options are skipped, not interpreted); total length >= IHL * 4. A
//!   non-first fragment carries no L4 header and counts as `Ipv4Other`; a
//!   first fragment is classified by its L4 header.
//! - IPv6: version must be 6. Up to [`MAX_EXT_HEADERS`] extension headers
//!   are walked to the upper-layer header: hop-by-hop options, routing,
//!   destination options (each `(length + 1) * 8` bytes) and fragment (8
//!   bytes). A fragment header makes the packet a fragment; a non-first one
//!   (offset > 0) carries no upper-layer header and counts as `Ipv6Other`
//!   with the fragment header's next header as its protocol, as IPv4 does.
//!   Any other next header (AH, ESP, no next header, ...) ends the walk:
//!   `Ipv6Other` unless it is TCP, UDP or ICMPv6. A chain longer than
//!   [`MAX_EXT_HEADERS`], or one that puts the upper-layer header past
//!   [`MAX_L4_OFF`], is `Malformed` (passed to the stack, which has its own
//!   limits).
//! - TCP: data offset >= 5 and the whole TCP header present. UDP: 8 bytes.
//! - Anything truncated or inconsistent on the way: `Malformed`.
//! - ICMP errors (destination unreachable, time exceeded; ICMPv6 also
//!   packet too big): the embedded packet's header is parsed too, and the
//!   flow is the embedded packet's 5-tuple reversed, i.e. the client's flow
//!   the error is about (`icmp_error`; `icmp_too_big` for "fragmentation
//!   needed" / "packet too big", which `dsr` and `ipip` forward). An
//!   embedded header we cannot read leaves the ICMP message an ordinary
//!   one.

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::programs::XdpContext;
use lb_common::{flow::FlowKey, stats::ProtoClass};
pub use lb_ebpf::frame::{
    ETH_P_IP, ETH_P_IPV6, EthHdr, IPPROTO_FRAGMENT, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
    IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr, Truncated, VlanHdr, bounds, l2, ptr_at, zero,
};

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
#[allow(
    clippy::struct_field_names,
    reason = "the _be suffix marks each wire field as big-endian bytes, as in TcpHdr"
)]
pub struct UdpHdr {
    pub src_port_be: [u8; 2],
    pub dst_port_be: [u8; 2],
    pub len_be: [u8; 2],
    pub check_be: [u8; 2],
}

/// Extension headers walked before giving up (RFC 8200's recommended
/// order has at most six, each at most once but destination options).
pub const MAX_EXT_HEADERS: usize = 6;
/// The furthest a TCP / UDP / ICMP header may start: the NAT rewrite masks
/// offsets with `0x1ff` for the verifier, so the parser guarantees they fit.
pub const MAX_L4_OFF: usize = 0x1ff - 64;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_DSTOPTS: u8 = 60;
/// Fragment-offset mask in an IPv6 fragment header's offset field (the
/// low three bits are flags).
const IPV6_OFFSET_MASK: u16 = 0xFFF8;

/// Fragment-offset mask in the IPv4 `frag_off` field.
const IPV4_OFFSET_MASK: u16 = 0x1FFF;
/// "More fragments" flag in the IPv4 `frag_off` field.
const IPV4_MF: u16 = 0x2000;
/// "Don't fragment" flag in the IPv4 `frag_off` field.
pub const IPV4_DF: u16 = 0x4000;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// ICMP / ICMPv6 header (type, code, checksum, 4 bytes of rest-of-header).
#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check_be: [u8; 2],
    pub rest: [u8; 4],
}

/// What the parser learned about a frame.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts about one frame, each read on its own in the XDP hot path; \
              packing them into flags would reshape verifier-sensitive code for no gain"
)]
pub struct Packet {
    /// Protocol class for `stats_proto`.
    pub class: ProtoClass,
    /// Offset of the IP header (14, or 18 behind a VLAN tag).
    pub l3_off: usize,
    /// Offset of the TCP / UDP header (meaningful for those two only).
    pub l4_off: usize,
    /// Whether the frame is IPv6.
    pub v6: bool,
    /// 5-tuple (ports 0 when the protocol has none). For ICMP too-big
    /// errors: the embedded flow, reversed.
    pub flow: FlowKey,
    /// IPv4 fragment (MF or offset) or IPv6 fragment header.
    pub fragment: bool,
    /// IPv4 don't-fragment bit (always true for IPv6: routers never
    /// fragment it).
    pub df: bool,
    /// TCP SYN without ACK: a new connection, whatever the table says.
    pub syn: bool,
    /// TCP header flags (0 for anything else).
    pub tcp_flags: u8,
    /// ICMP fragmentation-needed / ICMPv6 packet-too-big about `flow`.
    pub icmp_too_big: bool,
    /// Any ICMP error about `flow` (destination unreachable, time
    /// exceeded, packet too big): the embedded packet was read, and
    /// `flow` is its 5-tuple reversed.
    pub icmp_error: bool,
    /// ICMP errors: offset of the embedded packet's TCP / UDP header (its
    /// IP header starts 8 bytes after `l4_off`).
    pub inner_l4_off: usize,
}

/// An address as 32-bit words, bytes in wire order.
pub type Words = [u32; 4];

/// A 4-byte header field, read with one 32-bit load (bytes in wire order).
///
/// The BPF backend splits any load it cannot prove aligned into single
/// bytes (and calls a byte-loop `memmove` for longer copies): several times
/// the instructions on the hot path. Packet headers are not 4-byte aligned
/// (the IPv4 addresses of an untagged frame sit at offset 26), but the
/// verifier allows misaligned packet loads unless a program is loaded with
/// `BPF_F_STRICT_ALIGNMENT` (lbd never does), and the JIT on x86-64 and
/// arm64 emits plain loads that handle any alignment: the same thing every
/// C XDP program does when it reads `iph->saddr`.
///
/// # Safety
/// `p` points at 4 bytes inside the frame (checked with [`ptr_at`]).
#[inline(always)]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "a deliberate unaligned packet load, allowed by the verifier and JIT (see above)"
)]
pub unsafe fn load4(p: *const [u8; 4]) -> u32 {
    // SAFETY: see above; the bytes are inside the frame.
    unsafe { core::ptr::read_volatile(p.cast::<u32>()) }
}

/// A 16-byte header field (an IPv6 address), read as four 32-bit loads.
///
/// # Safety
/// As [`load4`], for 16 bytes.
#[inline(always)]
pub unsafe fn load16(p: *const [u8; 16]) -> Words {
    let p = p.cast::<[u8; 4]>();
    // SAFETY: the four words lie inside the 16 checked bytes.
    unsafe { [load4(p), load4(p.add(1)), load4(p.add(2)), load4(p.add(3))] }
}

/// An IPv4 address (one word in wire order) as a v4-mapped IPv6 address.
#[inline(always)]
pub const fn v4_mapped_words(v4: u32) -> Words {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), v4]
}

/// Set the flow's addresses with word stores.
#[inline(always)]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "FlowKey is align(4) with src at offset 0 and dst at 16: both casts are aligned"
)]
pub fn set_addrs(flow: &mut FlowKey, src: Words, dst: Words) {
    // SAFETY: FlowKey is `repr(C, align(4))` with `src` at offset 0 and
    // `dst` at 16, so both fields are 4-byte aligned and 16 bytes long.
    unsafe {
        (&raw mut flow.src).cast::<Words>().write(src);
        (&raw mut flow.dst).cast::<Words>().write(dst);
    }
}

/// Parse a frame into `pkt`. Never fails: a frame we cannot read is
/// `Malformed`, one that is not IP is `NonIp`.
///
/// A BPF subprogram of its own (see `bounds` for why that needs volatile
/// loads): its temporaries then share stack with the forwarding calls
/// instead of adding to the main frame; the verifier allows 512 bytes per
/// call chain, and everything inlined exceeded that.
#[inline(never)]
pub fn parse(ctx: &XdpContext, pkt: &mut MaybeUninit<Packet>) {
    // SAFETY: every field of Packet is an integer, bool or FlowKey (valid
    // as zero), and ProtoClass has a zero variant (NonIp).
    let pkt = unsafe {
        zero(pkt.as_mut_ptr());
        pkt.assume_init_mut()
    };
    pkt.class = ProtoClass::Malformed;
    if try_parse(ctx, pkt).is_err() {
        pkt.class = ProtoClass::Malformed;
    }
}

#[inline(always)]
fn try_parse(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Truncated> {
    let (ether_type, l3_off) = l2(ctx)?;
    pkt.l3_off = l3_off;
    match ether_type {
        ETH_P_IP => parse_ipv4(ctx, pkt),
        ETH_P_IPV6 => {
            pkt.v6 = true;
            parse_ipv6(ctx, pkt)
        }
        _ => {
            pkt.class = ProtoClass::NonIp;
            Ok(())
        }
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Truncated> {
    let l3_off = pkt.l3_off;
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_off)?;
    // SAFETY: checked by ptr_at.
    let (version_ihl, total_len, frag_off, protocol, src, dst) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be_bytes((*ip).total_len_be),
            u16::from_be_bytes((*ip).frag_off_be),
            (*ip).protocol,
            load4(&raw const (*ip).src),
            load4(&raw const (*ip).dst),
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
    set_addrs(&mut pkt.flow, v4_mapped_words(src), v4_mapped_words(dst));
    pkt.flow.proto = protocol;
    pkt.df = frag_off & IPV4_DF != 0;
    pkt.fragment = frag_off & (IPV4_OFFSET_MASK | IPV4_MF) != 0;
    pkt.class = match protocol {
        IPPROTO_TCP => ProtoClass::Ipv4Tcp,
        IPPROTO_UDP => ProtoClass::Ipv4Udp,
        _ => ProtoClass::Ipv4Other,
    };
    if frag_off & IPV4_OFFSET_MASK != 0 {
        // Non-first fragment: no L4 header to look at.
        pkt.class = ProtoClass::Ipv4Other;
        return Ok(());
    }
    // A first fragment (MF set, offset 0) carries the L4 header: parse it.
    if protocol == IPPROTO_ICMP {
        parse_icmp_error(ctx, pkt, l4_off);
        return Ok(());
    }
    parse_l4(ctx, pkt, l4_off)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Truncated> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, pkt.l3_off)?;
    // SAFETY: checked by ptr_at.
    let (version, next_header, src, dst) = unsafe {
        (
            (*ip).version_tc_flow[0] >> 4,
            (*ip).next_header,
            load16(&raw const (*ip).src),
            load16(&raw const (*ip).dst),
        )
    };
    if version != 6 {
        return Err(Truncated);
    }
    set_addrs(&mut pkt.flow, src, dst);
    pkt.df = true;
    let (proto, l4_off, first) = walk_ext(ctx, next_header, pkt)?;
    let l4_off = opaque(l4_off) & 0x1ff;
    pkt.flow.proto = proto;
    pkt.class = match proto {
        IPPROTO_TCP => ProtoClass::Ipv6Tcp,
        IPPROTO_UDP => ProtoClass::Ipv6Udp,
        _ => ProtoClass::Ipv6Other,
    };
    if !first {
        // Non-first fragment: no upper-layer header to look at.
        pkt.class = ProtoClass::Ipv6Other;
        return Ok(());
    }
    if proto == IPPROTO_ICMPV6 {
        parse_icmp_error(ctx, pkt, l4_off);
        return Ok(());
    }
    parse_l4(ctx, pkt, l4_off)
}

/// `x` as the verifier sees a value it knows nothing of (at most
/// [`MAX_L4_OFF`] after the caller's mask).
///
/// Without it, each way out of [`walk_ext`] (no extension header: a
/// constant offset; some: a range; behind a VLAN tag or not) reached the
/// rest of the program as a state of its own, and the verifier went over
/// every later path once per state: past its budget of a million
/// instructions. A value read back from a map is unknown to it, so every
/// IPv6 packet's state after the walk is one state. A per-CPU array
/// lookup of a constant key, inlined by the verifier: a few instructions.
#[inline(always)]
fn opaque(x: usize) -> usize {
    let Some(slot) = crate::maps::PARSE_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot of a per-CPU array, valid for the run.
    unsafe {
        slot.write_volatile(x as u64);
        slot.read_volatile() as usize
    }
}

/// Walk the IPv6 extension headers after the fixed header (whose next
/// header is `next`): the upper-layer protocol, its offset, and whether
/// that header is in this packet (false behind a non-first fragment).
/// Sets `pkt.fragment` when a fragment header is crossed.
#[inline(always)]
fn walk_ext(
    ctx: &XdpContext,
    mut next: u8,
    pkt: &mut Packet,
) -> Result<(u8, usize, bool), Truncated> {
    let mut off = pkt.l3_off + size_of::<Ipv6Hdr>();
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h: *const [u8; 2] = ptr_at(ctx, off)?;
                // SAFETY: checked by ptr_at.
                let [nh, len] = unsafe { *h };
                next = nh;
                off += (usize::from(len) + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let h: *const [u8; 4] = ptr_at(ctx, off)?;
                // SAFETY: checked by ptr_at.
                let [nh, _, hi, lo] = unsafe { *h };
                pkt.fragment = true;
                next = nh;
                off += 8;
                if u16::from_be_bytes([hi, lo]) & IPV6_OFFSET_MASK != 0 {
                    return Ok((next, off, false));
                }
            }
            _ => break,
        }
        // Bounds the offset for the verifier, and for the NAT rewrite.
        if off > MAX_L4_OFF {
            return Err(Truncated);
        }
    }
    if matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
    ) {
        // Still an extension header after MAX_EXT_HEADERS of them.
        return Err(Truncated);
    }
    Ok((next, off, true))
}

/// Ports (and TCP flags) of a TCP or UDP header at `l4_off`.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, pkt: &mut Packet, l4_off: usize) -> Result<(), Truncated> {
    pkt.l4_off = l4_off;
    match pkt.flow.proto {
        IPPROTO_TCP => {
            let th: *const TcpHdr = ptr_at(ctx, l4_off)?;
            // SAFETY: checked by ptr_at.
            let (sport, dport, doff_flags) =
                unsafe { ((*th).src_port_be, (*th).dst_port_be, (*th).doff_flags) };
            let doff = usize::from(doff_flags[0] >> 4) * 4;
            if doff < size_of::<TcpHdr>() {
                return Err(Truncated);
            }
            // TCP options must be present in full.
            ptr_at::<u8>(ctx, l4_off + doff - 1)?;
            pkt.flow.src_port_be = u16::from_ne_bytes(sport);
            pkt.flow.dst_port_be = u16::from_ne_bytes(dport);
            pkt.syn = doff_flags[1] & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
            pkt.tcp_flags = doff_flags[1];
        }
        IPPROTO_UDP => {
            let uh: *const UdpHdr = ptr_at(ctx, l4_off)?;
            // SAFETY: checked by ptr_at.
            let (sport, dport) = unsafe { ((*uh).src_port_be, (*uh).dst_port_be) };
            pkt.flow.src_port_be = u16::from_ne_bytes(sport);
            pkt.flow.dst_port_be = u16::from_ne_bytes(dport);
        }
        _ => {}
    }
    Ok(())
}

/// If the ICMP(v6) message at `l4_off` is an error (destination
/// unreachable, time exceeded; ICMPv6 also packet too big) that embeds a
/// TCP or UDP header, make `pkt.flow` the embedded flow reversed and mark
/// it `icmp_error` (and `icmp_too_big` for fragmentation needed / packet
/// too big). Otherwise leave `pkt` alone: a plain ICMP message.
#[inline(always)]
fn parse_icmp_error(ctx: &XdpContext, pkt: &mut Packet, l4_off: usize) {
    let Ok(icmp) = ptr_at::<IcmpHdr>(ctx, l4_off) else {
        return;
    };
    // SAFETY: checked by ptr_at.
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    let (error, too_big) = if pkt.v6 {
        (matches!(kind, 1..=3), kind == 2)
    } else {
        (matches!(kind, 3 | 11), kind == 3 && code == 4)
    };
    if !error {
        return;
    }
    let inner_off = l4_off + size_of::<IcmpHdr>();
    let (src, dst, proto, ports_off) = if pkt.v6 {
        let Ok(ip) = ptr_at::<Ipv6Hdr>(ctx, inner_off) else {
            return;
        };
        // SAFETY: checked by ptr_at.
        unsafe {
            (
                load16(&raw const (*ip).src),
                load16(&raw const (*ip).dst),
                (*ip).next_header,
                inner_off + size_of::<Ipv6Hdr>(),
            )
        }
    } else {
        let Ok(ip) = ptr_at::<Ipv4Hdr>(ctx, inner_off) else {
            return;
        };
        // SAFETY: checked by ptr_at.
        let (vihl, src, dst, proto) = unsafe {
            (
                (*ip).version_ihl,
                load4(&raw const (*ip).src),
                load4(&raw const (*ip).dst),
                (*ip).protocol,
            )
        };
        let ihl = usize::from(vihl & 0x0F) * 4;
        if ihl < size_of::<Ipv4Hdr>() {
            return;
        }
        (
            v4_mapped_words(src),
            v4_mapped_words(dst),
            proto,
            inner_off + ihl,
        )
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return;
    }
    // TCP and UDP both start with source port, destination port.
    let Ok(ports) = ptr_at::<[[u8; 2]; 2]>(ctx, ports_off) else {
        return;
    };
    // SAFETY: checked by ptr_at.
    let ports = unsafe { *ports };
    // The embedded packet went VIP -> client; the flow is client -> VIP.
    set_addrs(&mut pkt.flow, dst, src);
    pkt.flow.proto = proto;
    pkt.flow.src_port_be = u16::from_ne_bytes(ports[1]);
    pkt.flow.dst_port_be = u16::from_ne_bytes(ports[0]);
    pkt.l4_off = l4_off;
    pkt.inner_l4_off = ports_off;
    pkt.icmp_error = true;
    pkt.icmp_too_big = too_big;
}
