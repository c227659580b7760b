//! Frames for differential testing: built from templates of every kind
//! the fixture tests send (each mode's services, IPv4 and IPv6, TCP, UDP,
//! ICMP errors about flows, VLAN tags, IPv4 options, IPv6 extension
//! headers, fragments, frames too big to encapsulate, replies from NAT
//! backends), then often mutated (bytes flipped or set to values the
//! parser tests for, truncated, extended). Deterministic for a seed.

use std::net::IpAddr;

use lb_common::flow::FlowKey;

use crate::model::rewrite::{fold, sum as csum};

/// SplitMix64: small, fast, and good enough to pick frames.
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub const fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// A service frames are aimed at.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub vip: IpAddr,
    /// 0: every port.
    pub port: u16,
    /// 6 or 17.
    pub proto: u8,
}

/// The transport of a built packet.
#[derive(Clone, Copy)]
enum L4 {
    Tcp { flags: u8 },
    Udp,
    Other(u8),
}

/// What goes into one IP packet.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent choices of one generated packet"
)]
struct Spec {
    src: [u8; 16],
    dst: [u8; 16],
    v6: bool,
    sport: u16,
    dport: u16,
    l4: L4,
    payload: usize,
    vlan: bool,
    /// IPv4 option bytes (a multiple of 4).
    options: usize,
    /// IPv6 extension headers before the transport, by next-header value.
    ext: Vec<u8>,
    /// IPv4 `frag_off` (flags and offset) / IPv6 fragment offset field.
    frag: Option<u16>,
    df: bool,
    good_checksums: bool,
}

const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];
const LB_MAC: [u8; 6] = [0x02, 0x1b, 0, 0, 0, 1];

/// Values a mutated header byte takes besides random ones: the ones the
/// parser branches on.
const INTERESTING: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 11, 17, 41, 43, 44, 58, 60, 0x45, 0xff];

/// The generator: services to aim at, clients, and flows seen (to answer
/// NAT flows and quote them in ICMP errors).
pub struct Gen {
    pub rng: Rng,
    targets: Vec<Target>,
    /// Reply-entry keys of NAT flows the model recorded: a backend's
    /// packet with this 5-tuple is a reply.
    replies: Vec<FlowKey>,
    /// Client flows recently sent (for ICMP errors quoting them).
    flows: Vec<FlowKey>,
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => lb_common::v4_mapped(v.octets()),
        IpAddr::V6(v) => v.octets(),
    }
}

fn is_v4(a: &[u8; 16]) -> bool {
    a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}

const RING: usize = 512;

impl Gen {
    #[must_use]
    pub fn new(seed: u64, targets: Vec<Target>) -> Self {
        Self {
            rng: Rng::new(seed),
            targets,
            replies: Vec::new(),
            flows: Vec::new(),
        }
    }

    /// Remember a NAT flow's reply key (its backend's packets).
    pub fn saw_reply_key(&mut self, key: FlowKey) {
        remember(&mut self.replies, key, &mut self.rng);
    }

    /// Forget flows (the tables were emptied).
    pub fn forget(&mut self) {
        self.replies.clear();
        self.flows.clear();
    }

    fn client(&mut self, v6: bool) -> [u8; 16] {
        let n = self.rng.below(48) as u8;
        if v6 {
            let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[15] = n;
            a
        } else {
            lb_common::v4_mapped([198, 18, 9, n])
        }
    }

    /// The next frame.
    pub fn frame(&mut self) -> Vec<u8> {
        let mut f = match self.rng.below(100) {
            0..=54 => self.for_service(),
            55..=69 if !self.replies.is_empty() => self.reply(),
            70..=79 if !self.flows.is_empty() => self.icmp_error(),
            _ => self.odd(),
        };
        if self.rng.chance(30) {
            self.mutate(&mut f);
        }
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
        while f.len() < 14 {
            f.push(self.rng.byte());
        }
        f
    }

    fn base(&mut self, src: [u8; 16], dst: [u8; 16], l4: L4) -> Spec {
        let v6 = !is_v4(&dst);
        Spec {
            src,
            dst,
            v6,
            sport: 1024 + self.rng.below(12) as u16,
            dport: 80,
            l4,
            payload: *self.rng.pick(&[0, 0, 8, 100, 600]),
            vlan: self.rng.chance(10),
            options: if !v6 && self.rng.chance(8) {
                4 * (1 + self.rng.below(10))
            } else {
                0
            },
            ext: Vec::new(),
            frag: None,
            df: self.rng.chance(80),
            good_checksums: self.rng.chance(75),
        }
    }

    fn tcp_flags(&mut self) -> u8 {
        *self
            .rng
            .pick(&[0x02, 0x02, 0x10, 0x10, 0x18, 0x11, 0x04, 0x12, 0x00, 0xff])
    }

    fn for_service(&mut self) -> Vec<u8> {
        let t = *self.rng.pick(&self.targets.clone());
        let dst = addr16(t.vip);
        let src = self.client(!is_v4(&dst));
        let l4 = if t.proto == 6 {
            L4::Tcp {
                flags: self.tcp_flags(),
            }
        } else {
            L4::Udp
        };
        let mut s = self.base(src, dst, l4);
        s.dport = if t.port == 0 {
            *self.rng.pick(&[22, 80, 8443])
        } else {
            t.port
        };
        if self.rng.chance(5) {
            s.payload = 1400 + self.rng.below(120);
        }
        if s.v6 && self.rng.chance(10) {
            s.ext = self.ext_chain();
        }
        if self.rng.chance(4) {
            s.frag = Some(self.frag_field(s.v6));
        }
        remember(
            &mut self.flows,
            FlowKey {
                src,
                dst,
                src_port_be: s.sport.to_be(),
                dst_port_be: s.dport.to_be(),
                proto: t.proto,
                pad: [0; 3],
            },
            &mut self.rng,
        );
        build(&s, &mut self.rng)
    }

    fn ext_chain(&mut self) -> Vec<u8> {
        let most = if self.rng.chance(10) { 8 } else { 3 };
        let n = 1 + self.rng.below(most);
        (0..n)
            .map(|_| *self.rng.pick(&[0u8, 43, 60, 60, 44]))
            .collect()
    }

    fn frag_field(&mut self, v6: bool) -> u16 {
        let offset = if self.rng.chance(50) {
            0
        } else {
            1 + self.rng.below(100) as u16
        };
        if v6 {
            (offset << 3) | u16::from(self.rng.chance(70))
        } else {
            offset | if self.rng.chance(70) { 0x2000 } else { 0 }
        }
    }

    fn reply(&mut self) -> Vec<u8> {
        let k = *self.rng.pick(&self.replies);
        let l4 = if k.proto == 6 {
            L4::Tcp {
                flags: self.tcp_flags(),
            }
        } else {
            L4::Udp
        };
        let mut s = self.base(k.src, k.dst, l4);
        s.sport = u16::from_be(k.src_port_be);
        s.dport = u16::from_be(k.dst_port_be);
        build(&s, &mut self.rng)
    }

    /// An ICMP error quoting a packet of a flow seen: either direction,
    /// from a router's address.
    fn icmp_error(&mut self) -> Vec<u8> {
        let use_reply = !self.replies.is_empty() && self.rng.chance(50);
        let k = if use_reply {
            *self.rng.pick(&self.replies)
        } else {
            *self.rng.pick(&self.flows)
        };
        // The error travels towards the flow's source about a packet
        // that went the other way: the quoted packet is the flow reversed.
        let v6 = !is_v4(&k.src);
        let quoted_l4 = if k.proto == 6 {
            L4::Tcp { flags: 0x10 }
        } else {
            L4::Udp
        };
        let mut q = self.base(k.dst, k.src, quoted_l4);
        q.sport = u16::from_be(k.dst_port_be);
        q.dport = u16::from_be(k.src_port_be);
        q.vlan = false;
        q.payload = self.rng.below(40);
        let quoted = ip_packet(&q, &mut self.rng);
        let keep = if self.rng.chance(50) {
            quoted.len()
        } else {
            (if v6 { 48 } else { 28 }).min(quoted.len())
        };
        let (kind, code) = if v6 {
            *self.rng.pick(&[(1u8, 4u8), (2, 0), (3, 0), (128, 0)])
        } else {
            *self.rng.pick(&[(3u8, 4u8), (3, 3), (11, 0), (8, 0)])
        };
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0x05, 0xc8];
        icmp.extend_from_slice(&quoted[..keep]);
        let router = if v6 {
            [
                0x20, 0x01, 0x0d, 0xb8, 0, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ]
        } else {
            lb_common::v4_mapped([198, 18, 238, 1])
        };
        let mut s = self.base(router, k.src, L4::Other(if v6 { 58 } else { 1 }));
        s.payload = 0;
        let mut f = build_with_l4(&s, &icmp, &mut self.rng);
        if s.good_checksums {
            fix_icmp_checksum(&mut f, &s);
        }
        f
    }

    /// Anything else: not IP, other protocols, random addresses, bare
    /// fragments, long extension chains.
    fn odd(&mut self) -> Vec<u8> {
        match self.rng.below(6) {
            0 => {
                let len = self.rng.below(80);
                let mut f: Vec<u8> = (0..len).map(|_| self.rng.byte()).collect();
                if f.len() >= 14 {
                    let t: [u8; 2] = *self.rng.pick(&[[0x08, 0x06], [0x88, 0xcc]]);
                    f[12..14].copy_from_slice(&t);
                }
                f
            }
            1 => {
                let t = *self.rng.pick(&self.targets.clone());
                let dst = addr16(t.vip);
                let src = self.client(!is_v4(&dst));
                let proto = *self.rng.pick(&[1u8, 47, 132, 58]);
                let mut s = self.base(src, dst, L4::Other(proto));
                s.payload = 8 + self.rng.below(40);
                build(&s, &mut self.rng)
            }
            2 => {
                let v6 = self.rng.chance(50);
                let src = self.client(v6);
                let mut dst = self.client(v6);
                dst[15] ^= 0x80;
                let flags = self.tcp_flags();
                let mut s = self.base(src, dst, L4::Tcp { flags });
                s.ext = if v6 { self.ext_chain() } else { Vec::new() };
                build(&s, &mut self.rng)
            }
            _ => {
                let t = *self.rng.pick(&self.targets.clone());
                let dst = addr16(t.vip);
                let src = self.client(!is_v4(&dst));
                let l4 = if t.proto == 6 {
                    L4::Tcp { flags: 0x10 }
                } else {
                    L4::Udp
                };
                let mut s = self.base(src, dst, l4);
                s.dport = if t.port == 0 { 80 } else { t.port };
                s.frag = Some(self.frag_field(s.v6));
                if s.v6 {
                    s.ext = self.ext_chain();
                }
                build(&s, &mut self.rng)
            }
        }
    }

    fn mutate(&mut self, f: &mut Vec<u8>) {
        for _ in 0..=self.rng.below(3) {
            match self.rng.below(5) {
                0 if !f.is_empty() => {
                    let at = self.rng.below(f.len().min(120));
                    f[at] ^= 1 << self.rng.below(8);
                }
                1 if !f.is_empty() => {
                    let at = self.rng.below(f.len().min(120));
                    f[at] = *self.rng.pick(&INTERESTING);
                }
                2 => {
                    let len = self.rng.below(f.len() + 1);
                    f.truncate(len);
                }
                3 => {
                    for _ in 0..self.rng.below(16) {
                        let b = self.rng.byte();
                        f.push(b);
                    }
                }
                _ if !f.is_empty() => {
                    let at = self.rng.below(f.len());
                    f[at] = self.rng.byte();
                }
                _ => {}
            }
        }
    }
}

fn remember(seen: &mut Vec<FlowKey>, key: FlowKey, rng: &mut Rng) {
    if seen.len() < RING {
        seen.push(key);
    } else {
        let at = rng.below(RING);
        seen[at] = key;
    }
}

/// The transport header and payload of `s`.
fn transport(s: &Spec, rng: &mut Rng) -> Vec<u8> {
    let payload: Vec<u8> = (0..s.payload).map(|_| rng.byte()).collect();
    let mut t = match s.l4 {
        L4::Tcp { flags } => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&s.sport.to_be_bytes());
            t[2..4].copy_from_slice(&s.dport.to_be_bytes());
            t[4..8].copy_from_slice(&(rng.next() as u32).to_be_bytes());
            t[12] = 5 << 4;
            t[13] = flags;
            t[14] = 0xff;
            t
        }
        L4::Udp => {
            let mut t = vec![0u8; 8];
            t[0..2].copy_from_slice(&s.sport.to_be_bytes());
            t[2..4].copy_from_slice(&s.dport.to_be_bytes());
            t[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            t
        }
        L4::Other(_) => Vec::new(),
    };
    t.extend_from_slice(&payload);
    t
}

fn proto_of(l4: L4) -> u8 {
    match l4 {
        L4::Tcp { .. } => 6,
        L4::Udp => 17,
        L4::Other(p) => p,
    }
}

/// The IP packet of `s` with transport `l4` (checksummed if asked).
fn ip_with(s: &Spec, mut l4: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    let proto = proto_of(s.l4);
    let check_at = match s.l4 {
        L4::Tcp { .. } => Some(16),
        L4::Udp => Some(6),
        L4::Other(_) => None,
    };
    if let Some(at) = check_at {
        let value = if s.good_checksums {
            let pseudo = if s.v6 {
                csum(&s.src) + csum(&s.dst) + l4.len() as u64 + u64::from(proto)
            } else {
                csum(&s.src[12..]) + csum(&s.dst[12..]) + l4.len() as u64 + u64::from(proto)
            };
            let c = fold(pseudo + csum(&l4));
            if c == 0 && proto == 17 { 0xffff } else { c }
        } else if proto == 17 && rng.chance(20) {
            0
        } else {
            rng.next() as u16
        };
        l4[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
    if s.v6 {
        let mut exts = Vec::new();
        let mut next = proto;
        for (i, &h) in s.ext.iter().enumerate().rev() {
            let mut e = if h == 44 {
                let field = s.frag.unwrap_or(0);
                let mut e = vec![next, 0];
                e.extend_from_slice(&field.to_be_bytes());
                e.extend_from_slice(&(i as u32).to_be_bytes());
                e
            } else {
                let len8 = (i % 3) as u8;
                let mut e = vec![0u8; (usize::from(len8) + 1) * 8];
                e[0] = next;
                e[1] = len8;
                e
            };
            e.extend_from_slice(&exts);
            exts = e;
            next = h;
        }
        if s.frag.is_some() && !s.ext.contains(&44) {
            let mut e = vec![next, 0];
            e.extend_from_slice(&s.frag.unwrap_or(0).to_be_bytes());
            e.extend_from_slice(&[0, 0, 0, 7]);
            e.extend_from_slice(&exts);
            exts = e;
            next = 44;
        }
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((exts.len() + l4.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[next, 64]);
        ip.extend_from_slice(&s.src);
        ip.extend_from_slice(&s.dst);
        ip.extend_from_slice(&exts);
        ip.extend_from_slice(&l4);
        ip
    } else {
        let hl = 20 + s.options;
        let mut ip = vec![0u8; hl];
        ip[0] = 0x40 | (hl / 4) as u8;
        ip[2..4].copy_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(rng.next() as u16).to_be_bytes());
        let frag = s.frag.unwrap_or(0) | if s.df { 0x4000 } else { 0 };
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&s.src[12..]);
        ip[16..20].copy_from_slice(&s.dst[12..]);
        for b in &mut ip[20..] {
            *b = 1; // NOP options
        }
        let c = if s.good_checksums {
            fold(csum(&ip))
        } else {
            rng.next() as u16
        };
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&l4);
        ip
    }
}

fn ip_packet(s: &Spec, rng: &mut Rng) -> Vec<u8> {
    let l4 = transport(s, rng);
    ip_with(s, l4, rng)
}

fn frame_of(s: &Spec, ip: &[u8]) -> Vec<u8> {
    let mut f = LB_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    if s.vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    f.extend_from_slice(if s.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(ip);
    f
}

fn build(s: &Spec, rng: &mut Rng) -> Vec<u8> {
    let ip = ip_packet(s, rng);
    frame_of(s, &ip)
}

fn build_with_l4(s: &Spec, l4: &[u8], rng: &mut Rng) -> Vec<u8> {
    let ip = ip_with(s, l4.to_vec(), rng);
    frame_of(s, &ip)
}

/// Give the ICMP message of a frame built from `s` a correct checksum.
fn fix_icmp_checksum(f: &mut [u8], s: &Spec) {
    let l3 = if s.vlan { 18 } else { 14 };
    let (at, pseudo) = if s.v6 {
        let at = l3 + 40;
        let len = (f.len() - at) as u64;
        (at, csum(&s.src) + csum(&s.dst) + len + 58)
    } else {
        (l3 + 20 + s.options, 0)
    };
    f[at + 2..at + 4].copy_from_slice(&[0, 0]);
    let c = fold(pseudo + csum(&f[at..]));
    f[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
}
