//! The model's frame rewrites: what `lb-ebpf/src/forward.rs` and
//! `lb-ebpf/src/nat.rs` do to a frame, over a `Vec<u8>`, with checksums in
//! big-endian 16-bit words (the program works on native-order 32-bit
//! words: one's-complement sums come out the same either way, RFC 1071
//! section 2, so a byte of difference is a bug on one side).

use lb_common::{backend::Backend, config::Config, flow::FlowKey};

use super::parse::{Packet, UDP};

/// One's-complement sum of big-endian 16-bit words (an odd byte padded).
pub(crate) fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// The checksum (complemented, folded) of a sum.
pub(crate) fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// RFC 1624's `~m + m'` over every 16-bit word of a replaced field.
fn diff(old: &[u8], new: &[u8]) -> u64 {
    old.chunks(2)
        .zip(new.chunks(2))
        .map(|(o, n)| {
            u64::from(!u16::from_be_bytes([o[0], o[1]]))
                + u64::from(u16::from_be_bytes([n[0], n[1]]))
        })
        .sum()
}

/// Checksum field `at` after a change of `d` (RFC 1624 eqn. 3).
fn update(f: &mut [u8], at: usize, d: u64) -> (u16, u16) {
    let old = u16::from_be_bytes([f[at], f[at + 1]]);
    let new = fold(u64::from(!old) + d);
    f[at..at + 2].copy_from_slice(&new.to_be_bytes());
    (old, new)
}

/// Write `new` over `f[at..]`; the checksum change.
fn replace(f: &mut [u8], at: usize, new: &[u8]) -> u64 {
    let d = diff(&f[at..at + new.len()], new);
    f[at..at + new.len()].copy_from_slice(new);
    d
}

/// Send to `mac` from the MAC the frame was sent to (ours).
pub fn send(f: &mut [u8], mac: [u8; 6]) {
    let ours: [u8; 6] = f[..6].try_into().expect("6 bytes");
    f[6..12].copy_from_slice(&ours);
    f[..6].copy_from_slice(&mac);
}

fn v4(a: &[u8; 16]) -> [u8; 4] {
    [a[12], a[13], a[14], a[15]]
}

fn port_bytes(port_be: u16) -> [u8; 2] {
    port_be.to_ne_bytes()
}

/// `ipip`: the frame encapsulated towards `b` (outer source from the
/// flow hash, see `Config`).
pub fn ipip(f: &[u8], p: &Packet, hash: u32, b: &Backend, cfg: &Config) -> Vec<u8> {
    let l3 = p.l3_off;
    let inner = &f[l3..];
    let mut out = f[..l3].to_vec();
    let our_mac: [u8; 6] = f[..6].try_into().expect("6 bytes");
    let hash_be = hash.to_be_bytes();
    if p.v6 {
        let mask = cfg.ipip_src_v6_mask_be.to_ne_bytes();
        let mut src = cfg.ipip_src_v6;
        for i in 0..4 {
            src[12 + i] = (src[12 + i] & !mask[i]) | (hash_be[i] & mask[i]);
        }
        let [_, h2, h1, h0] = hash_be;
        let mut ip = vec![
            0x60 | (inner[0] & 0x0F),
            (inner[1] & 0xF0) | (h2 & 0x0F),
            h1,
            h0,
        ];
        ip.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[41, 64]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&b.addr);
        out.extend_from_slice(&ip);
        out[l3 - 2..l3].copy_from_slice(&0x86DDu16.to_be_bytes());
    } else {
        let mask = cfg.ipip_src_v4_mask_be.to_ne_bytes();
        let base = cfg.ipip_src_v4_be.to_ne_bytes();
        let src: Vec<u8> = (0..4)
            .map(|i| (base[i] & !mask[i]) | (hash_be[i] & mask[i]))
            .collect();
        let mut ip = vec![0x45, inner[1]];
        ip.extend_from_slice(&((inner.len() + 20) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 4, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&v4(&b.addr));
        let check = fold(sum(&ip));
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        out.extend_from_slice(&ip);
    }
    out.extend_from_slice(inner);
    out[..6].copy_from_slice(&b.mac);
    out[6..12].copy_from_slice(&our_mac);
    out
}

/// The ICMP "fragmentation needed" / ICMPv6 "packet too big" sent back to
/// the client of an untagged frame, advertising `mtu`.
pub fn icmp_too_big(f: &[u8], p: &Packet, mtu: u16) -> Vec<u8> {
    let flow = &p.flow;
    let mut out = Vec::with_capacity(110);
    out.extend_from_slice(&f[6..12]);
    out.extend_from_slice(&f[..6]);
    if p.v6 {
        out.extend_from_slice(&0x86DDu16.to_be_bytes());
        let quote = &f[14..14 + 48];
        out.extend_from_slice(&[0x60, 0, 0, 0, 0, 56, 58, 64]);
        out.extend_from_slice(&flow.dst);
        out.extend_from_slice(&flow.src);
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&u32::from(mtu).to_be_bytes());
        icmp.extend_from_slice(quote);
        let pseudo = sum(&flow.dst) + sum(&flow.src) + 56 + 58;
        let check = fold(pseudo + sum(&icmp));
        icmp[2..4].copy_from_slice(&check.to_be_bytes());
        out.extend_from_slice(&icmp);
    } else {
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        let quote = &f[14..14 + 28];
        let mut ip = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&v4(&flow.dst));
        ip.extend_from_slice(&v4(&flow.src));
        let check = fold(sum(&ip));
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        out.extend_from_slice(&ip);
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(quote);
        let check = fold(sum(&icmp));
        icmp[2..4].copy_from_slice(&check.to_be_bytes());
        out.extend_from_slice(&icmp);
    }
    out
}

/// Addresses of the IP header at `l3` replaced by `src`, `dst`; the
/// pseudo-header's change (an IPv4 header checksum is updated too).
fn readdress(f: &mut [u8], l3: usize, v6: bool, src: &[u8; 16], dst: &[u8; 16]) -> u64 {
    if v6 {
        replace(f, l3 + 8, src) + replace(f, l3 + 24, dst)
    } else {
        let d = replace(f, l3 + 12, &v4(src)) + replace(f, l3 + 16, &v4(dst));
        update(f, l3 + 10, d);
        d
    }
}

/// `nat` / `fullnat`: the flow rewritten to `to` and sent to `mac`; `None`
/// where the program fails (a checksum field outside the frame).
pub fn translate(f: &[u8], p: &Packet, to: &FlowKey, mac: [u8; 6]) -> Option<Vec<u8>> {
    let mut out = f.to_vec();
    let d = readdress(&mut out, p.l3_off, p.v6, &to.src, &to.dst);
    let l4 = p.l4_off;
    let udp = p.flow.proto == UDP;
    let check = l4 + if udp { 6 } else { 16 };
    out.get(check..check + 2)?;
    let mut ports = port_bytes(to.src_port_be).to_vec();
    ports.extend_from_slice(&port_bytes(to.dst_port_be));
    let d = d + replace(&mut out, l4, &ports);
    let old = u16::from_be_bytes([out[check], out[check + 1]]);
    if !(udp && old == 0 && !p.v6) {
        let (_, new) = update(&mut out, check, d);
        if udp && new == 0 {
            out[check..check + 2].copy_from_slice(&[0xff, 0xff]);
        }
    }
    send(&mut out, mac);
    Some(out)
}

/// An ICMP error about a NAT flow whose entry translates to `to`: outer
/// addresses `to.src -> to.dst`, the quoted packet `to` reversed, every
/// checksum updated; `None` where the program fails.
pub fn translate_icmp(f: &[u8], p: &Packet, to: &FlowKey, mac: [u8; 6]) -> Option<Vec<u8>> {
    let mut out = f.to_vec();
    let icmp = p.l4_off;
    let (inner_l3, inner_l4) = (icmp + 8, p.inner_l4_off);
    let outer = readdress(&mut out, p.l3_off, p.v6, &to.src, &to.dst);
    let mut icmp_diff = 0;
    out.get(inner_l3..inner_l3 + if p.v6 { 40 } else { 20 })?;
    let inner_addr = if p.v6 {
        replace(&mut out, inner_l3 + 8, &to.dst) + replace(&mut out, inner_l3 + 24, &to.src)
    } else {
        let d = replace(&mut out, inner_l3 + 12, &v4(&to.dst))
            + replace(&mut out, inner_l3 + 16, &v4(&to.src));
        let (old, new) = update(&mut out, inner_l3 + 10, d);
        icmp_diff += u64::from(!old) + u64::from(new);
        d
    };
    icmp_diff += inner_addr;
    out.get(inner_l4..inner_l4 + 4)?;
    let mut ports = port_bytes(to.dst_port_be).to_vec();
    ports.extend_from_slice(&port_bytes(to.src_port_be));
    let port_diff = replace(&mut out, inner_l4, &ports);
    icmp_diff += port_diff;
    let udp = p.flow.proto == UDP;
    let check = inner_l4 + if udp { 6 } else { 16 };
    if out.get(check..check + 2).is_some() {
        let old = u16::from_be_bytes([out[check], out[check + 1]]);
        if !(old == 0 && udp && !p.v6) {
            let (old, new) = update(&mut out, check, inner_addr + port_diff);
            icmp_diff += u64::from(!old) + u64::from(new);
        }
    }
    if p.v6 {
        icmp_diff += outer;
    }
    out.get(icmp + 2..icmp + 4)?;
    update(&mut out, icmp + 2, icmp_diff);
    send(&mut out, mac);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_updates_agree_with_a_full_sum() {
        // An IPv4 header with a correct checksum, then one address changed.
        let mut h = vec![
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 200,
        ];
        let c = fold(sum(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let d = replace(&mut h, 16, &[198, 18, 2, 10]);
        update(&mut h, 10, d);
        assert_eq!(fold(sum(&h)), 0, "a header with its checksum sums to 0");
    }
}
