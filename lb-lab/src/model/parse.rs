//! The model's parser: what `lb-ebpf/src/parse.rs` learns about a frame,
//! written again over a byte slice from the rules in that file's
//! documentation (not from its code): Ethernet with at most one VLAN tag,
//! IPv4 with options, IPv6 with up to six extension headers, TCP with
//! options, UDP, and ICMP errors quoting a TCP / UDP packet.

use lb_common::{flow::FlowKey, stats::ProtoClass, v4_mapped};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const DSTOPTS: u8 = 60;
const FRAGMENT: u8 = 44;
/// `parse::MAX_EXT_HEADERS`.
const MAX_EXT_HEADERS: usize = 6;
/// `parse::MAX_L4_OFF`.
const MAX_L4_OFF: usize = 0x1ff - 64;

/// What the program's parser records (`parse::Packet`), field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "the program's own Packet, mirrored field for field"
)]
pub struct Packet {
    pub class: Class,
    pub l3_off: usize,
    pub l4_off: usize,
    pub v6: bool,
    pub flow: FlowKey,
    pub fragment: bool,
    pub df: bool,
    pub syn: bool,
    pub tcp_flags: u8,
    pub icmp_too_big: bool,
    pub icmp_error: bool,
    pub inner_l4_off: usize,
}

/// `ProtoClass`, with a default (the parser starts from `Malformed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class(pub ProtoClass);

impl Default for Class {
    fn default() -> Self {
        Self(ProtoClass::Malformed)
    }
}

/// The frame ended early or a field is inconsistent.
struct Bad;

/// `n` bytes at `at`, or [`Bad`].
fn bytes(f: &[u8], at: usize, n: usize) -> Result<&[u8], Bad> {
    f.get(at..at.checked_add(n).ok_or(Bad)?).ok_or(Bad)
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn addr4(b: &[u8]) -> [u8; 16] {
    v4_mapped([b[0], b[1], b[2], b[3]])
}

fn addr6(b: &[u8]) -> [u8; 16] {
    let mut a = [0; 16];
    a.copy_from_slice(&b[..16]);
    a
}

/// Parse `frame` as the program does.
#[must_use]
pub fn parse(frame: &[u8]) -> Packet {
    let mut p = Packet::default();
    if parse_l2(frame, &mut p).is_err() {
        p.class = Class(ProtoClass::Malformed);
    }
    p
}

fn parse_l2(f: &[u8], p: &mut Packet) -> Result<(), Bad> {
    let mut ether_type = be16(bytes(f, 12, 2)?);
    p.l3_off = 14;
    if ether_type == 0x8100 || ether_type == 0x88A8 {
        ether_type = be16(bytes(f, 16, 2)?);
        p.l3_off = 18;
    }
    match ether_type {
        0x0800 => parse_v4(f, p),
        0x86DD => {
            p.v6 = true;
            parse_v6(f, p)
        }
        _ => {
            p.class = Class(ProtoClass::NonIp);
            Ok(())
        }
    }
}

fn parse_v4(f: &[u8], p: &mut Packet) -> Result<(), Bad> {
    let ip = bytes(f, p.l3_off, 20)?;
    let header_len = usize::from(ip[0] & 0x0F) * 4;
    if ip[0] >> 4 != 4 || header_len < 20 || usize::from(be16(&ip[2..])) < header_len {
        return Err(Bad);
    }
    let l4_off = p.l3_off + header_len;
    bytes(f, l4_off - 1, 1)?;
    let frag = be16(&ip[6..]);
    p.flow.src = addr4(&ip[12..]);
    p.flow.dst = addr4(&ip[16..]);
    p.flow.proto = ip[9];
    p.df = frag & 0x4000 != 0;
    p.fragment = frag & 0x3FFF != 0;
    p.class = Class(class_of(ip[9], false));
    if frag & 0x1FFF != 0 {
        p.class = Class(ProtoClass::Ipv4Other);
        return Ok(());
    }
    if ip[9] == ICMP {
        icmp_error(f, p, l4_off);
        return Ok(());
    }
    parse_l4(f, p, l4_off)
}

fn class_of(proto: u8, v6: bool) -> ProtoClass {
    match (proto, v6) {
        (TCP, false) => ProtoClass::Ipv4Tcp,
        (UDP, false) => ProtoClass::Ipv4Udp,
        (_, false) => ProtoClass::Ipv4Other,
        (TCP, true) => ProtoClass::Ipv6Tcp,
        (UDP, true) => ProtoClass::Ipv6Udp,
        (_, true) => ProtoClass::Ipv6Other,
    }
}

fn parse_v6(f: &[u8], p: &mut Packet) -> Result<(), Bad> {
    let ip = bytes(f, p.l3_off, 40)?;
    if ip[0] >> 4 != 6 {
        return Err(Bad);
    }
    p.flow.src = addr6(&ip[8..]);
    p.flow.dst = addr6(&ip[24..]);
    p.df = true;
    let mut next = ip[6];
    let mut off = p.l3_off + 40;
    let mut walked = 0;
    let mut first = true;
    loop {
        match next {
            HOPOPTS | ROUTING | DSTOPTS if walked < MAX_EXT_HEADERS => {
                let h = bytes(f, off, 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            FRAGMENT if walked < MAX_EXT_HEADERS => {
                let h = bytes(f, off, 4)?;
                p.fragment = true;
                next = h[0];
                off += 8;
                if be16(&h[2..]) & 0xFFF8 != 0 {
                    first = false;
                    break;
                }
            }
            HOPOPTS | ROUTING | DSTOPTS | FRAGMENT => return Err(Bad),
            _ => break,
        }
        walked += 1;
        if off > MAX_L4_OFF {
            return Err(Bad);
        }
    }
    p.flow.proto = next;
    p.class = Class(class_of(next, true));
    if !first {
        p.class = Class(ProtoClass::Ipv6Other);
        return Ok(());
    }
    if next == ICMPV6 {
        icmp_error(f, p, off);
        return Ok(());
    }
    parse_l4(f, p, off)
}

fn parse_l4(f: &[u8], p: &mut Packet, l4_off: usize) -> Result<(), Bad> {
    p.l4_off = l4_off;
    match p.flow.proto {
        TCP => {
            let th = bytes(f, l4_off, 20)?;
            let doff = usize::from(th[12] >> 4) * 4;
            if doff < 20 {
                return Err(Bad);
            }
            bytes(f, l4_off + doff - 1, 1)?;
            p.flow.src_port_be = u16::from_ne_bytes([th[0], th[1]]);
            p.flow.dst_port_be = u16::from_ne_bytes([th[2], th[3]]);
            p.syn = th[13] & 0x12 == 0x02;
            p.tcp_flags = th[13];
        }
        UDP => {
            let uh = bytes(f, l4_off, 8)?;
            p.flow.src_port_be = u16::from_ne_bytes([uh[0], uh[1]]);
            p.flow.dst_port_be = u16::from_ne_bytes([uh[2], uh[3]]);
        }
        _ => {}
    }
    Ok(())
}

/// An ICMP error quoting a TCP / UDP packet makes the flow that packet's,
/// reversed; anything else leaves `p` a plain ICMP message.
fn icmp_error(f: &[u8], p: &mut Packet, l4_off: usize) {
    let Ok(icmp) = bytes(f, l4_off, 8) else {
        return;
    };
    let (kind, code) = (icmp[0], icmp[1]);
    let (error, too_big) = if p.v6 {
        ((1..=3).contains(&kind), kind == 2)
    } else {
        (kind == 3 || kind == 11, kind == 3 && code == 4)
    };
    if !error {
        return;
    }
    let inner = l4_off + 8;
    let quoted = if p.v6 {
        bytes(f, inner, 40)
            .ok()
            .map(|ip| (addr6(&ip[8..]), addr6(&ip[24..]), ip[6], inner + 40))
    } else {
        bytes(f, inner, 20).ok().and_then(|ip| {
            let ihl = usize::from(ip[0] & 0x0F) * 4;
            (ihl >= 20).then(|| (addr4(&ip[12..]), addr4(&ip[16..]), ip[9], inner + ihl))
        })
    };
    let Some((src, dst, proto, ports_off)) = quoted else {
        return;
    };
    if proto != TCP && proto != UDP {
        return;
    }
    let Ok(ports) = bytes(f, ports_off, 4) else {
        return;
    };
    p.flow.src = dst;
    p.flow.dst = src;
    p.flow.proto = proto;
    p.flow.src_port_be = u16::from_ne_bytes([ports[2], ports[3]]);
    p.flow.dst_port_be = u16::from_ne_bytes([ports[0], ports[1]]);
    p.l4_off = l4_off;
    p.inner_l4_off = ports_off;
    p.icmp_error = true;
    p.icmp_too_big = too_big;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[6] = next;
        ip[23] = 1;
        ip[39] = 2;
        ip.extend_from_slice(payload);
        eth(0x86DD, &ip)
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn ext(next: u8, len8: u8) -> Vec<u8> {
        let mut h = vec![0u8; (usize::from(len8) + 1) * 8];
        h[0] = next;
        h[1] = len8;
        h
    }

    #[test]
    fn extension_headers_are_walked_to_tcp() {
        let mut payload = ext(DSTOPTS, 0);
        payload.extend(ext(ROUTING, 1));
        payload.extend(ext(TCP, 0));
        payload.extend(tcp(1234, 80, 0x02));
        let p = parse(&v6(HOPOPTS, &payload));
        assert_eq!(p.class, Class(ProtoClass::Ipv6Tcp));
        assert_eq!(p.l4_off, 14 + 40 + 8 + 16 + 8);
        assert_eq!(p.flow.dst_port_be, 80u16.to_be());
        assert!(p.syn && !p.fragment);
    }

    #[test]
    fn fragments_first_and_not() {
        let mut first = vec![TCP, 0, 0, 1, 0, 0, 0, 7];
        first.extend(tcp(1, 443, 0x10));
        let p = parse(&v6(FRAGMENT, &first));
        assert_eq!(p.class, Class(ProtoClass::Ipv6Tcp));
        assert!(p.fragment);
        assert_eq!(p.flow.dst_port_be, 443u16.to_be());
        let later = [TCP, 0, 0x05, 0x08, 0, 0, 0, 7, 1, 2, 3, 4];
        let p = parse(&v6(FRAGMENT, &later));
        assert_eq!(p.class, Class(ProtoClass::Ipv6Other));
        assert!(p.fragment);
        assert_eq!((p.flow.proto, p.flow.dst_port_be), (TCP, 0));
    }

    #[test]
    fn chains_too_long_or_cut_short_are_malformed() {
        let mut seven = Vec::new();
        for _ in 0..6 {
            seven.extend(ext(DSTOPTS, 0));
        }
        seven.extend(ext(TCP, 0));
        seven.extend(tcp(1, 2, 0));
        assert_eq!(
            parse(&v6(DSTOPTS, &seven)).class,
            Class(ProtoClass::Malformed)
        );
        let six = &seven[8..];
        assert_eq!(parse(&v6(DSTOPTS, six)).class, Class(ProtoClass::Ipv6Tcp));
        assert_eq!(
            parse(&v6(HOPOPTS, &ext(TCP, 3)[..20])).class,
            Class(ProtoClass::Malformed),
            "the walk reads only the next header and length; the TCP header is missing"
        );
        let mut far = ext(TCP, 60);
        far.extend(tcp(1, 2, 0));
        assert_eq!(
            parse(&v6(HOPOPTS, &far)).class,
            Class(ProtoClass::Malformed),
            "the TCP header would start past MAX_L4_OFF"
        );
        let no_next = parse(&v6(59, &[]));
        assert_eq!(no_next.class, Class(ProtoClass::Ipv6Other));
    }
}
