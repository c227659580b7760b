//! Kernel test: the balancer's forwarding paths through `BPF_PROG_TEST_RUN`.
//!
//! Table-driven fixtures `{description, input frame, expected verdict,
//! expected output, expected exit reason}` over services configured through
//! the real `Balancer` and `EbpfMaps`: each mode × IPv4/IPv6 × TCP/UDP,
//! non-VIP traffic, a port-0 VIP, weight 0, no backend, VLAN, IPv4 options,
//! IPv6 extension headers, IPv4 and IPv6 fragments, ICMP errors about a VIP flow, packets too big to encapsulate,
//! and truncated input. Output bytes are compared whole (expected frames are
//! built independently here) and checksums verified with pnet. Further
//! tests cover the connection table and the traffic counters per (service,
//! backend), read back through `lb_user::dataplane::stats`.
//!
//! Needs root (BPF). `cargo xtask test` refuses to run without it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{Ebpf, programs::Xdp};
use lb_common::{
    config::Config, flow::FlowKey, hash::flow_hash, stats::TrafficCounters, v4_mapped,
};
use lb_lab::testpkt::{CLIENT_MAC, FrameSpec, L4, LB_MAC};
use lb_lab::testrun::{exit_delta, run};
use lb_user::{
    dataplane::balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Protocol, ServiceKey, ServiceSpec,
    },
    dataplane::loader::PROGRAM,
    dataplane::stats,
};
use pnet_packet::{
    Packet as _,
    icmp::IcmpPacket,
    icmpv6::Icmpv6Packet,
    ipv4::{self, Ipv4Packet},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const RING: u32 = 65_537;
const MTU: u16 = 1500;

fn ip4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}
fn ip6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}
fn mac(last: u8) -> [u8; 6] {
    [0x02, 0xbb, 0, 0, 0, last]
}

const CLIENT4: &str = "198.18.0.1";
const CLIENT6: &str = "2001:db8::1";

struct Lab {
    ebpf: Ebpf,
    balancer: Balancer<EbpfMaps>,
}

fn service(
    balancer: &mut Balancer<EbpfMaps>,
    vip: IpAddr,
    port: u16,
    proto: Protocol,
    mode: Mode,
    backends: &[(IpAddr, u32, u8)],
    on_none: NoBackend,
) -> ServiceKey {
    let key = ServiceKey { vip, port, proto };
    balancer
        .upsert_service(
            key,
            ServiceSpec {
                mode,
                ring_size: RING,
                on_no_backend: on_none,
                ..ServiceSpec::default()
            },
        )
        .unwrap();
    let specs: Vec<BackendSpec> = backends
        .iter()
        .map(|&(addr, weight, m)| BackendSpec {
            addr,
            weight,
            mac: mac(m),
            port: 0,
            snat: None,
            arm: 0,
        })
        .collect();
    balancer.set_backends(&key, &specs).unwrap();
    key
}

#[allow(
    clippy::too_many_lines,
    reason = "the fixtures' services and backends, declared one by one"
)]
fn lab() -> Lab {
    use Mode::{Dsr, Ipip};
    use NoBackend::{Drop, Pass};
    use Protocol::{Tcp, Udp};
    let mut ebpf = Ebpf::load(lb_user::EBPF_OBJ).expect("load BPF object (run as root)");
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
    program.load().expect("verifier accepts the program");
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf).unwrap());
    let mut cfg = Config {
        ipip_src_v4_be: u32::from_ne_bytes([198, 18, 255, 0]),
        ipip_src_v4_mask_be: u32::from_ne_bytes([0, 0, 0, 255]),
        ipip_src_v6_mask_be: u32::from_ne_bytes([0, 0, 255, 255]),
        mtu: MTU,
        ..Config::default()
    };
    cfg.ipip_src_v6 = "2001:db8:ffff::".parse::<Ipv6Addr>().unwrap().octets();
    balancer.set_config(&cfg).unwrap();
    let b = &mut balancer;
    service(
        b,
        ip4("198.18.0.100"),
        80,
        Tcp,
        Dsr,
        &[(ip4("198.18.1.11"), 1, 0x11)],
        Drop,
    );
    service(
        b,
        ip6("2001:db8::100"),
        80,
        Tcp,
        Dsr,
        &[(ip6("2001:db8:1::11"), 1, 0x11)],
        Drop,
    );
    service(
        b,
        ip4("198.18.0.100"),
        53,
        Udp,
        Dsr,
        &[(ip4("198.18.1.12"), 1, 0x12)],
        Drop,
    );
    service(
        b,
        ip6("2001:db8::100"),
        53,
        Udp,
        Dsr,
        &[(ip6("2001:db8:1::12"), 1, 0x12)],
        Drop,
    );
    // Port 0: every UDP port of this VIP.
    service(
        b,
        ip4("198.18.0.101"),
        0,
        Udp,
        Ipip,
        &[(ip4("198.18.1.21"), 1, 0x21)],
        Drop,
    );
    service(
        b,
        ip4("198.18.0.101"),
        80,
        Tcp,
        Ipip,
        &[(ip4("198.18.1.21"), 1, 0x21)],
        Drop,
    );
    service(
        b,
        ip6("2001:db8::101"),
        80,
        Tcp,
        Ipip,
        &[(ip6("2001:db8:1::21"), 1, 0x21)],
        Drop,
    );
    service(
        b,
        ip6("2001:db8::101"),
        53,
        Udp,
        Ipip,
        &[(ip6("2001:db8:1::21"), 1, 0x21)],
        Drop,
    );
    // Only a drained backend: no new flows.
    service(
        b,
        ip4("198.18.0.102"),
        80,
        Tcp,
        Dsr,
        &[(ip4("198.18.1.31"), 0, 0x31)],
        Drop,
    );
    service(b, ip4("198.18.0.103"), 80, Tcp, Dsr, &[], Pass);
    // Two backends, for connection-table behaviour.
    service(
        b,
        ip4("198.18.0.110"),
        80,
        Tcp,
        Dsr,
        &[(ip4("198.18.1.41"), 1, 0x41), (ip4("198.18.1.42"), 1, 0x42)],
        Drop,
    );
    // Port 0, IPv6: every UDP port (later fragments match it).
    service(
        b,
        ip6("2001:db8::103"),
        0,
        Udp,
        Dsr,
        &[(ip6("2001:db8:1::51"), 1, 0x51)],
        Drop,
    );
    Lab { ebpf, balancer }
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> FrameSpec {
    let (s, d) = (src.parse().unwrap(), dst.parse().unwrap());
    FrameSpec::new(
        s,
        d,
        L4::Tcp {
            src: sport,
            dst: dport,
        },
    )
}
fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> FrameSpec {
    let (s, d) = (src.parse().unwrap(), dst.parse().unwrap());
    FrameSpec::new(
        s,
        d,
        L4::Udp {
            src: sport,
            dst: dport,
        },
    )
}

/// The input with its MACs rewritten as `dsr` does.
fn dsr_out(frame: &[u8], to: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&to);
    out[6..12].copy_from_slice(&LB_MAC);
    out
}

fn flow_of(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> FlowKey {
    let a16 = |a: IpAddr| match a {
        IpAddr::V4(v) => v4_mapped(v.octets()),
        IpAddr::V6(v) => v.octets(),
    };
    FlowKey {
        src: a16(src),
        dst: a16(dst),
        src_port_be: sport.to_be(),
        dst_port_be: dport.to_be(),
        proto,
        pad: [0; 3],
    }
}

/// The input encapsulated as `ipip` does, built independently.
fn ipip_out(frame: &[u8], l3_off: usize, backend: IpAddr, to: [u8; 6], flow: &FlowKey) -> Vec<u8> {
    let hash = flow_hash(flow);
    let inner = &frame[l3_off..];
    let mut out = Vec::new();
    out.extend_from_slice(&to);
    out.extend_from_slice(&LB_MAC);
    out.extend_from_slice(&frame[12..l3_off]);
    match backend {
        IpAddr::V4(b) => {
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[1] = inner[1];
            h[2..4].copy_from_slice(&((inner.len() + 20) as u16).to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = 64;
            h[9] = 4;
            h[12..16].copy_from_slice(&[198, 18, 255, hash as u8]);
            h[16..20].copy_from_slice(&b.octets());
            let sum = ipv4::checksum(&Ipv4Packet::new(&h).unwrap());
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            out.extend_from_slice(&h);
        }
        IpAddr::V6(b) => {
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[1] = ((hash >> 16) & 0x0f) as u8;
            h[2] = (hash >> 8) as u8;
            h[3] = hash as u8;
            h[4..6].copy_from_slice(&(inner.len() as u16).to_be_bytes());
            h[6] = 41;
            h[7] = 64;
            let mut src = "2001:db8:ffff::".parse::<Ipv6Addr>().unwrap().octets();
            src[14] = (hash >> 8) as u8;
            src[15] = hash as u8;
            h[8..24].copy_from_slice(&src);
            h[24..40].copy_from_slice(&b.octets());
            out.extend_from_slice(&h);
        }
    }
    out.extend_from_slice(inner);
    out
}

/// A check of output bytes that are not fixed (ICMP errors we originate).
type OutputCheck = Box<dyn Fn(&[u8]) -> Result<(), String>>;

enum Expect {
    Unchanged,
    Bytes(Vec<u8>),
    Check(OutputCheck),
}

struct Fixture {
    description: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    expect: Expect,
    exit: &'static str,
}

fn fx(
    description: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    expect: Expect,
    exit: &'static str,
) -> Fixture {
    Fixture {
        description,
        frame,
        verdict,
        expect,
        exit,
    }
}

const HOPOPTS: u8 = 0;
const DSTOPTS: u8 = 60;
const FRAGMENT: u8 = 44;

/// An untagged IPv6 frame with extension headers `(type, length in 8-byte
/// units beyond the first 8)` inserted before its transport header.
fn with_ext(frame: &[u8], headers: &[(u8, u8)]) -> Vec<u8> {
    let (head, rest) = frame.split_at(14 + 40);
    let mut ip = head.to_vec();
    let mut next = ip[14 + 6];
    let mut exts = Vec::new();
    for &(kind, len8) in headers.iter().rev() {
        let mut h = vec![0u8; (usize::from(len8) + 1) * 8];
        h[0] = next;
        h[1] = len8;
        if kind == FRAGMENT {
            h[1] = 0;
            h.truncate(8);
        }
        h.extend_from_slice(&exts);
        exts = h;
        next = kind;
    }
    ip[14 + 6] = next;
    let payload = u16::from_be_bytes([ip[14 + 4], ip[14 + 5]]) + exts.len() as u16;
    ip[14 + 4..14 + 6].copy_from_slice(&payload.to_be_bytes());
    ip.extend_from_slice(&exts);
    ip.extend_from_slice(rest);
    ip
}

/// `frame` (untagged IPv6) as a fragment at `offset` (8-byte units), more
/// fragments following if `more`; a later fragment keeps only 8 bytes of
/// its transport data, as the real one would hold no header.
fn with_frag(frame: &[u8], offset: u16, more: bool) -> Vec<u8> {
    let mut f = with_ext(frame, &[(FRAGMENT, 0)]);
    let field = (offset << 3) | u16::from(more);
    f[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&field.to_be_bytes());
    if offset != 0 {
        f.truncate(14 + 48 + 8);
        let payload = (f.len() - 14 - 40) as u16;
        f[14 + 4..14 + 6].copy_from_slice(&payload.to_be_bytes());
    }
    f
}

fn icmp4_frag_needed_about(
    vip: &str,
    vport: u16,
    client: &str,
    cport: u16,
    router: &str,
) -> Vec<u8> {
    // The embedded packet went VIP -> client (a backend's DSR reply).
    let inner = tcp(vip, client, vport, cport).build();
    let mut payload = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0xc8]; // type 3 code 4, MTU 1480
    payload.extend_from_slice(&inner[14..14 + 28]);
    let sum = pnet_packet::util::checksum(&payload, 1);
    payload[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut spec = FrameSpec::new(router.parse().unwrap(), vip.parse().unwrap(), L4::Other(1));
    spec.payload = payload;
    spec.build()
}

fn icmp6_ptb_about(vip: &str, vport: u16, client: &str, cport: u16, router: &str) -> Vec<u8> {
    let inner = tcp(vip, client, vport, cport).build();
    let mut payload = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0xb4];
    payload.extend_from_slice(&inner[14..14 + 48]);
    let (r, v): (Ipv6Addr, Ipv6Addr) = (router.parse().unwrap(), vip.parse().unwrap());
    let sum = pnet_packet::util::ipv6_checksum(
        &payload,
        1,
        &[],
        &r,
        &v,
        pnet_packet::ip::IpNextHeaderProtocols::Icmpv6,
    );
    payload[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut spec = FrameSpec::new(IpAddr::V6(r), IpAddr::V6(v), L4::Other(58));
    spec.payload = payload;
    spec.build()
}

fn check_icmp4_too_big(out: &[u8], input: &[u8]) -> Result<(), String> {
    if out[..6] != CLIENT_MAC || out[6..12] != LB_MAC {
        return Err("MACs not swapped back to the client".into());
    }
    let ip = Ipv4Packet::new(&out[14..]).ok_or("short IPv4")?;
    if ipv4::checksum(&ip) != ip.get_checksum() {
        return Err("bad IPv4 checksum".into());
    }
    if ip.get_source() != "198.18.0.101".parse::<Ipv4Addr>().unwrap()
        || ip.get_destination() != CLIENT4.parse::<Ipv4Addr>().unwrap()
    {
        return Err(format!(
            "addresses {} -> {}",
            ip.get_source(),
            ip.get_destination()
        ));
    }
    if ip.get_ttl() != 64 || ip.get_total_length() as usize != out.len() - 14 {
        return Err("ttl / length".into());
    }
    let icmp = IcmpPacket::new(ip.payload()).ok_or("short ICMP")?;
    let sum = pnet_packet::util::checksum(ip.payload(), 1);
    if sum != icmp.get_checksum() {
        return Err(format!(
            "bad ICMP checksum {:#x} want {sum:#x}",
            icmp.get_checksum()
        ));
    }
    let p = ip.payload();
    if p[0] != 3 || p[1] != 4 || u16::from_be_bytes([p[6], p[7]]) != MTU - 20 {
        return Err(format!(
            "ICMP type/code/mtu {} {} {}",
            p[0],
            p[1],
            u16::from_be_bytes([p[6], p[7]])
        ));
    }
    if p[8..36] != input[14..42] {
        return Err("quote is not the offending header + 8 bytes".into());
    }
    Ok(())
}

fn check_icmp6_too_big(out: &[u8], input: &[u8]) -> Result<(), String> {
    if out[..6] != CLIENT_MAC || out[6..12] != LB_MAC {
        return Err("MACs not swapped".into());
    }
    let ip = pnet_packet::ipv6::Ipv6Packet::new(&out[14..]).ok_or("short IPv6")?;
    let (src, dst) = (ip.get_source(), ip.get_destination());
    if src != "2001:db8::101".parse::<Ipv6Addr>().unwrap()
        || dst != CLIENT6.parse::<Ipv6Addr>().unwrap()
    {
        return Err(format!("addresses {src} -> {dst}"));
    }
    let icmp = Icmpv6Packet::new(ip.payload()).ok_or("short ICMPv6")?;
    let want = pnet_packet::icmpv6::checksum(&icmp, &src, &dst);
    if want != icmp.get_checksum() {
        return Err(format!(
            "bad ICMPv6 checksum {:#x} want {want:#x}",
            icmp.get_checksum()
        ));
    }
    let p = ip.payload();
    if p[0] != 2 || u32::from_be_bytes([p[4], p[5], p[6], p[7]]) != u32::from(MTU - 40) {
        return Err("type / mtu".into());
    }
    if p[8..56] != input[14..62] {
        return Err("quote is not the offending header + 8 bytes".into());
    }
    Ok(())
}

#[allow(
    clippy::too_many_lines,
    reason = "a table-driven list of fixtures, one entry per case"
)]
fn fixtures() -> Vec<Fixture> {
    let mut v = Vec::new();
    let t4 = tcp(CLIENT4, "198.18.0.100", 40000, 80).build();
    v.push(fx(
        "dsr IPv4 TCP",
        t4.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&t4, mac(0x11))),
        "tx_dsr",
    ));
    let t6 = tcp(CLIENT6, "2001:db8::100", 40000, 80).build();
    v.push(fx(
        "dsr IPv6 TCP",
        t6.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&t6, mac(0x11))),
        "tx_dsr",
    ));
    let u4 = udp(CLIENT4, "198.18.0.100", 40000, 53).build();
    v.push(fx(
        "dsr IPv4 UDP",
        u4.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&u4, mac(0x12))),
        "tx_dsr",
    ));
    let u6 = udp(CLIENT6, "2001:db8::100", 40000, 53).build();
    v.push(fx(
        "dsr IPv6 UDP",
        u6.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&u6, mac(0x12))),
        "tx_dsr",
    ));

    let c4 = ip4(CLIENT4);
    let c6 = ip6(CLIENT6);
    let f = udp(CLIENT4, "198.18.0.101", 40000, 9999).build();
    let flow = flow_of(c4, ip4("198.18.0.101"), 40000, 9999, 17);
    v.push(fx(
        "ipip IPv4 UDP, port-0 VIP",
        f.clone(),
        XDP_TX,
        Expect::Bytes(ipip_out(&f, 14, ip4("198.18.1.21"), mac(0x21), &flow)),
        "tx_ipip",
    ));
    let f = tcp(CLIENT4, "198.18.0.101", 40001, 80).build();
    let flow = flow_of(c4, ip4("198.18.0.101"), 40001, 80, 6);
    v.push(fx(
        "ipip IPv4 TCP",
        f.clone(),
        XDP_TX,
        Expect::Bytes(ipip_out(&f, 14, ip4("198.18.1.21"), mac(0x21), &flow)),
        "tx_ipip",
    ));
    let f = tcp(CLIENT6, "2001:db8::101", 40000, 80).build();
    let flow = flow_of(c6, ip6("2001:db8::101"), 40000, 80, 6);
    v.push(fx(
        "ipip IPv6 TCP",
        f.clone(),
        XDP_TX,
        Expect::Bytes(ipip_out(&f, 14, ip6("2001:db8:1::21"), mac(0x21), &flow)),
        "tx_ipip",
    ));
    let f = udp(CLIENT6, "2001:db8::101", 40000, 53).build();
    let flow = flow_of(c6, ip6("2001:db8::101"), 40000, 53, 17);
    v.push(fx(
        "ipip IPv6 UDP",
        f.clone(),
        XDP_TX,
        Expect::Bytes(ipip_out(&f, 14, ip6("2001:db8:1::21"), mac(0x21), &flow)),
        "tx_ipip",
    ));

    let mut s = tcp(CLIENT4, "198.18.0.100", 40002, 80);
    s.vlan = Some(42);
    let f = s.build();
    v.push(fx(
        "dsr VLAN-tagged IPv4 TCP",
        f.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&f, mac(0x11))),
        "tx_dsr",
    ));
    let mut s = tcp(CLIENT4, "198.18.0.101", 40002, 80);
    s.vlan = Some(42);
    let f = s.build();
    let flow = flow_of(c4, ip4("198.18.0.101"), 40002, 80, 6);
    v.push(fx(
        "ipip VLAN-tagged IPv4 TCP (tag kept)",
        f.clone(),
        XDP_TX,
        Expect::Bytes(ipip_out(&f, 18, ip4("198.18.1.21"), mac(0x21), &flow)),
        "tx_ipip",
    ));
    let mut s = tcp(CLIENT4, "198.18.0.100", 40003, 80);
    s.ipv4_options = vec![1, 1, 1, 0];
    let f = s.build();
    v.push(fx(
        "dsr IPv4 with options",
        f.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&f, mac(0x11))),
        "tx_dsr",
    ));

    v.push(fx(
        "not a VIP",
        tcp(CLIENT4, "198.18.0.200", 40000, 80).build(),
        XDP_PASS,
        Expect::Unchanged,
        "pass_not_vip",
    ));
    v.push(fx(
        "VIP address, other port",
        tcp(CLIENT4, "198.18.0.100", 40000, 81).build(),
        XDP_PASS,
        Expect::Unchanged,
        "pass_not_vip",
    ));
    v.push(fx(
        "VIP address, other protocol",
        udp(CLIENT4, "198.18.0.100", 40000, 80).build(),
        XDP_PASS,
        Expect::Unchanged,
        "pass_not_vip",
    ));
    v.push(fx(
        "ICMP echo to a VIP",
        FrameSpec::new(c4, ip4("198.18.0.100"), L4::Other(1)).build(),
        XDP_PASS,
        Expect::Unchanged,
        "pass_not_vip",
    ));
    v.push(fx(
        "only backend drained (weight 0)",
        tcp(CLIENT4, "198.18.0.102", 40000, 80).build(),
        XDP_DROP,
        Expect::Unchanged,
        "drop_no_backend",
    ));
    v.push(fx(
        "no backend, configured to pass",
        tcp(CLIENT4, "198.18.0.103", 40000, 80).build(),
        XDP_PASS,
        Expect::Unchanged,
        "pass_no_backend",
    ));
    let mut frag = tcp(CLIENT4, "198.18.0.100", 40004, 80).build();
    frag[14 + 6] = 0x20; // MF, offset 0
    v.push(fx(
        "IPv4 first fragment to a VIP",
        frag,
        XDP_DROP,
        Expect::Unchanged,
        "drop_fragment",
    ));
    // IPv6 extension headers are walked to the transport header.
    let t6 = with_ext(
        &tcp(CLIENT6, "2001:db8::100", 40010, 80).build(),
        &[(HOPOPTS, 0), (DSTOPTS, 1)],
    );
    v.push(fx(
        "IPv6 hop-by-hop + destination options, TCP to a VIP",
        t6.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&t6, mac(0x11))),
        "tx_dsr",
    ));
    let first = with_frag(&tcp(CLIENT6, "2001:db8::100", 40011, 80).build(), 0, true);
    v.push(fx(
        "IPv6 first fragment to a VIP",
        first,
        XDP_DROP,
        Expect::Unchanged,
        "drop_fragment",
    ));
    let later = with_frag(
        &tcp(CLIENT6, "2001:db8::100", 40012, 80).build(),
        185,
        false,
    );
    v.push(fx(
        "IPv6 later fragment, VIP with a port",
        later,
        XDP_PASS,
        Expect::Unchanged,
        "pass_not_vip",
    ));
    let later = with_frag(
        &udp(CLIENT6, "2001:db8::103", 40013, 5353).build(),
        185,
        false,
    );
    v.push(fx(
        "IPv6 later fragment, port-0 VIP",
        later,
        XDP_DROP,
        Expect::Unchanged,
        "drop_fragment",
    ));
    let seven = with_ext(
        &tcp(CLIENT6, "2001:db8::100", 40014, 80).build(),
        &[(DSTOPTS, 0); 7],
    );
    v.push(fx(
        "IPv6 with seven extension headers",
        seven,
        XDP_PASS,
        Expect::Unchanged,
        "pass_malformed",
    ));
    let t = tcp(CLIENT4, "198.18.0.100", 40005, 80).build();
    v.push(fx(
        "TCP header truncated, to a VIP",
        t[..14 + 20 + 12].to_vec(),
        XDP_PASS,
        Expect::Unchanged,
        "pass_malformed",
    ));
    let mut garbage = vec![0x5Au8; 60];
    garbage[12..14].copy_from_slice(&[0x86, 0xdd]);
    v.push(fx(
        "garbage with IPv6 type",
        garbage,
        XDP_PASS,
        Expect::Unchanged,
        "pass_malformed",
    ));
    v.push(fx(
        "ARP",
        lb_lab::testpkt::ethernet(pnet_packet::ethernet::EtherTypes::Arp, None, &[0; 28]),
        XDP_PASS,
        Expect::Unchanged,
        "pass_not_ip",
    ));

    // ICMP errors about a VIP flow go to the flow's backend (dsr: MACs).
    let f = icmp4_frag_needed_about("198.18.0.100", 80, CLIENT4, 40000, "198.18.0.254");
    v.push(fx(
        "ICMP frag-needed about a VIP flow",
        f.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&f, mac(0x11))),
        "tx_dsr",
    ));
    let f = icmp6_ptb_about("2001:db8::100", 80, CLIENT6, 40000, "2001:db8::fe");
    v.push(fx(
        "ICMPv6 packet-too-big about a VIP flow",
        f.clone(),
        XDP_TX,
        Expect::Bytes(dsr_out(&f, mac(0x11))),
        "tx_dsr",
    ));

    // Too big to encapsulate: 1480 + 20 > 1500 (IPv4, DF) / 1460 + 40 (IPv6).
    let mut s = tcp(CLIENT4, "198.18.0.101", 40006, 80);
    s.payload = vec![7; 1500 - 40 - 19];
    let mut big4 = s.build();
    big4[14 + 6] = 0x40; // DF
    let sum = {
        big4[14 + 10] = 0;
        big4[14 + 11] = 0;
        ipv4::checksum(&Ipv4Packet::new(&big4[14..]).unwrap())
    };
    big4[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    let input = big4.clone();
    v.push(fx(
        "IPv4 too big to encapsulate, DF",
        big4.clone(),
        XDP_TX,
        Expect::Check(Box::new(move |o| check_icmp4_too_big(o, &input))),
        "tx_icmp_too_big",
    ));
    let mut nodf = big4;
    nodf[14 + 6] = 0;
    let sum = {
        nodf[14 + 10] = 0;
        nodf[14 + 11] = 0;
        ipv4::checksum(&Ipv4Packet::new(&nodf[14..]).unwrap())
    };
    nodf[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    v.push(fx(
        "IPv4 too big to encapsulate, no DF",
        nodf,
        XDP_DROP,
        Expect::Unchanged,
        "drop_too_big",
    ));
    let mut s = tcp(CLIENT6, "2001:db8::101", 40006, 80);
    s.payload = vec![7; 1500 - 60 - 39];
    let big6 = s.build();
    let input = big6.clone();
    v.push(fx(
        "IPv6 too big to encapsulate",
        big6,
        XDP_TX,
        Expect::Check(Box::new(move |o| check_icmp6_too_big(o, &input))),
        "tx_icmp_too_big",
    ));
    v
}

#[test]
fn forwarding_fixtures() {
    let lab = lab();
    let mut failures = Vec::new();
    for f in fixtures() {
        let before = stats::exit_stats_of(&lab.ebpf).unwrap();
        let (verdict, out) = run(&lab.ebpf, &f.frame);
        let after = stats::exit_stats_of(&lab.ebpf).unwrap();
        let exits = exit_delta(&before, &after);
        let output = match &f.expect {
            Expect::Unchanged if out != f.frame => Err("output differs from input".to_string()),
            Expect::Bytes(want) if &out != want => Err(format!(
                "output differs:\n got  {}\n want {}",
                hex(&out),
                hex(want)
            )),
            Expect::Check(check) => check(&out),
            _ => Ok(()),
        };
        let ok = verdict == f.verdict && exits == [f.exit] && output.is_ok();
        println!(
            "{:<46} verdict {verdict} (want {}) exit {exits:?} (want {}) {}",
            f.description,
            f.verdict,
            f.exit,
            output.as_ref().err().map_or("output ok", String::as_str)
        );
        if !ok {
            failures.push(f.description);
        }
    }
    assert!(failures.is_empty(), "fixtures failed: {failures:?}");
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn backend_of(out: &[u8]) -> u8 {
    out[5]
}

#[test]
fn connection_table_keeps_flows_and_weight_zero_drains() {
    let mut lab = lab();
    let vip = ip4("198.18.0.110");
    let key = ServiceKey {
        vip,
        port: 80,
        proto: Protocol::Tcp,
    };
    let syn = |sport| tcp(CLIENT4, "198.18.0.110", sport, 80).build();
    let ack = |sport| {
        let mut f = syn(sport);
        f[14 + 20 + 13] = 0x10; // ACK, not SYN
        f
    };
    // 64 connections spread over both backends; each ACK follows its SYN.
    let mut chosen = std::collections::HashMap::new();
    for sport in 41000..41064 {
        let (v, out) = run(&lab.ebpf, &syn(sport));
        assert_eq!(v, XDP_TX);
        chosen.insert(sport, backend_of(&out));
        let (_, out) = run(&lab.ebpf, &ack(sport));
        assert_eq!(backend_of(&out), chosen[&sport], "hit: same backend");
    }
    let to_41 = chosen.values().filter(|&&b| b == 0x41).count();
    assert!(
        to_41 > 10 && to_41 < 54,
        "flows spread over both backends: {to_41}/64 to .41"
    );
    let vstats: TrafficCounters = stats::vip_stats_of(&lab.ebpf, 10).unwrap();
    assert_eq!(vstats.new_flows, 64, "one new flow per SYN, none per ACK");
    assert_eq!(vstats.packets, 128);

    // Drain .41 (weight 0) and add .43: established flows keep their
    // backend (table hit, even though the pool changed); new ones avoid .41.
    let specs = [
        BackendSpec {
            addr: ip4("198.18.1.41"),
            weight: 0,
            mac: mac(0x41),
            port: 0,
            snat: None,
            arm: 0,
        },
        BackendSpec {
            addr: ip4("198.18.1.42"),
            weight: 1,
            mac: mac(0x42),
            port: 0,
            snat: None,
            arm: 0,
        },
        BackendSpec {
            addr: ip4("198.18.1.43"),
            weight: 1,
            mac: mac(0x43),
            port: 0,
            snat: None,
            arm: 0,
        },
    ];
    lab.balancer.set_backends(&key, &specs).unwrap();
    for sport in 41000..41064 {
        let (_, out) = run(&lab.ebpf, &ack(sport));
        assert_eq!(
            backend_of(&out),
            chosen[&sport],
            "established flow {sport} kept its backend"
        );
    }
    let mut new_to = std::collections::HashMap::new();
    for sport in 42000..42064 {
        let (_, out) = run(&lab.ebpf, &syn(sport));
        *new_to.entry(backend_of(&out)).or_insert(0) += 1;
    }
    assert_eq!(
        new_to.get(&0x41),
        None,
        "drained backend takes no new flows: {new_to:?}"
    );
    assert!(
        new_to.get(&0x43).is_some_and(|&n| n > 10),
        "new backend takes new flows: {new_to:?}"
    );

    // Remove .41 entirely: its flows are re-balanced (slot inactive), the
    // others stay put.
    lab.balancer.set_backends(&key, &specs[1..]).unwrap();
    for sport in 41000..41064 {
        let (_, out) = run(&lab.ebpf, &ack(sport));
        let b = backend_of(&out);
        if chosen[&sport] == 0x41 {
            assert_ne!(b, 0x41, "removed backend gets nothing");
        } else {
            assert_eq!(
                b, chosen[&sport],
                "flow {sport} to a remaining backend kept it"
            );
        }
    }
}

#[test]
fn removed_vip_releases_its_flows_and_a_new_vip_does_not_inherit_them() {
    let mut lab = lab();
    let vip = ip4("198.18.0.120");
    let syn = tcp(CLIENT4, "198.18.0.120", 43000, 80).build();
    let mut ack = syn.clone();
    ack[14 + 20 + 13] = 0x10;
    let key = service(
        &mut lab.balancer,
        vip,
        80,
        Protocol::Tcp,
        Mode::Dsr,
        &[(ip4("198.18.1.50"), 1, 0x50)],
        NoBackend::Drop,
    );
    assert_eq!(run(&lab.ebpf, &syn).0, XDP_TX);
    let (v, out) = run(&lab.ebpf, &ack);
    assert_eq!((v, backend_of(&out)), (XDP_TX, 0x50), "established flow");

    // Removed: the flow's entry still sits in the connection table, but
    // its VIP id is dead, so the packet is not a VIP packet any more.
    lab.balancer.remove_service(&key).unwrap();
    let before = stats::exit_stats_of(&lab.ebpf).unwrap();
    let (v, out) = run(&lab.ebpf, &ack);
    assert_eq!(v, XDP_PASS);
    assert_eq!(out, ack, "passed untouched");
    let after = stats::exit_stats_of(&lab.ebpf).unwrap();
    assert_eq!(exit_delta(&before, &after), ["pass_not_vip"]);

    // The same VIP again (the freed id comes back with a new generation)
    // with another backend: the old entry is stale, the flow is balanced
    // afresh onto the new pool.
    service(
        &mut lab.balancer,
        vip,
        80,
        Protocol::Tcp,
        Mode::Dsr,
        &[(ip4("198.18.1.51"), 1, 0x51)],
        NoBackend::Drop,
    );
    let (v, out) = run(&lab.ebpf, &ack);
    assert_eq!((v, backend_of(&out)), (XDP_TX, 0x51), "re-balanced");
    let (v, out) = run(&lab.ebpf, &ack);
    assert_eq!((v, backend_of(&out)), (XDP_TX, 0x51), "and recorded");
}

/// A connection table of 32 flows (4 sets of 8) and 200 connections: every
/// SYN is forwarded (a full set evicts, it never refuses), the table holds
/// exactly 32 flows where user space's model of it (`FlowTable`, same
/// code) finds them, each recorded with the backend its packet went to;
/// a kept flow's ACK is a hit, an evicted flow's ACK is re-balanced by
/// Maglev to the same backend.
#[test]
fn a_full_connection_table_evicts_and_never_refuses() {
    use aya::maps::Array;
    use lb_common::flow::{FLOWS_MAP, FlowSet, FlowTable};

    let mut ebpf = lb_user::dataplane::loader::load_object(32, lb_common::backend::MAX_BACKENDS)
        .expect("load BPF object (run as root)");
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
    program.load().expect("verifier accepts the program");
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf).unwrap());
    let key = service(
        &mut balancer,
        ip4("198.18.0.110"),
        80,
        Protocol::Tcp,
        Mode::Dsr,
        &[(ip4("198.18.1.41"), 1, 0x41), (ip4("198.18.1.42"), 1, 0x42)],
        NoBackend::Drop,
    );
    let vip_id = balancer.services().find(|(k, _, _)| **k == key).unwrap().2;
    let mac_of_index: std::collections::HashMap<u32, u8> = balancer
        .backends(&key)
        .unwrap()
        .iter()
        .map(|(spec, index)| (*index, spec.mac[5]))
        .collect();
    let syn = |sport| tcp(CLIENT4, "198.18.0.110", sport, 80).build();
    let ack = |sport| {
        let mut f = syn(sport);
        f[14 + 20 + 13] = 0x10;
        f
    };
    let flow = |sport| flow_of(ip4(CLIENT4), ip4("198.18.0.110"), sport, 80, 6);

    let sports: Vec<u16> = (43000..43200).collect();
    let mut chosen = std::collections::HashMap::new();
    for &sport in &sports {
        let (v, out) = run(&ebpf, &syn(sport));
        assert_eq!(
            v, XDP_TX,
            "SYN {sport} forwarded although the table is full"
        );
        chosen.insert(sport, backend_of(&out));
    }

    let table: Array<_, FlowSet> = Array::try_from(ebpf.map(FLOWS_MAP).unwrap()).unwrap();
    assert_eq!(table.len(), 4, "32 flows = 4 sets of 8");
    let mut sets: Vec<FlowSet> = (0..table.len())
        .map(|i| table.get(&i, 0).unwrap())
        .collect();
    assert!(
        sets.iter().all(|s| s.tags.iter().all(|&t| t != 0)),
        "every way in use"
    );
    let mut model = FlowTable::new(&mut sets);
    let kept: Vec<u16> = sports
        .iter()
        .copied()
        .filter(|&sport| {
            model.lookup(&flow(sport), 0).is_some_and(|state| {
                assert_eq!(state.vip_id, vip_id);
                assert_eq!(
                    mac_of_index[&state.backend], chosen[&sport],
                    "flow {sport} recorded with the backend it went to"
                );
                true
            })
        })
        .collect();
    assert_eq!(
        kept.len(),
        32,
        "the table holds as many flows as it has ways"
    );
    assert!(kept.contains(&43199), "the newest flow is kept");

    let new_flows = || stats::vip_stats_of(&ebpf, vip_id).unwrap().new_flows;
    let before = new_flows();
    assert_eq!(before, 200);
    let usage = stats::flow_table_usage(&ebpf).unwrap();
    assert_eq!(
        usage,
        stats::FlowTableUsage {
            capacity: 32,
            in_use: 32,
            recent: 32,
            evicted_recent: 200 - 32,
            evicted_idle: 0,
            events_lost: 0,
        },
        "full, all seen just now; every SYN past the 32nd evicted a flow seen moments ago"
    );
    for &sport in &kept {
        let (_, out) = run(&ebpf, &ack(sport));
        assert_eq!(backend_of(&out), chosen[&sport]);
    }
    assert_eq!(new_flows(), before, "kept flows hit the table");
    let evicted = *sports.iter().find(|s| !kept.contains(s)).unwrap();
    let (v, out) = run(&ebpf, &ack(evicted));
    assert_eq!(v, XDP_TX);
    assert_eq!(
        backend_of(&out),
        chosen[&evicted],
        "Maglev gives the same backend"
    );
    assert_eq!(new_flows(), before + 1, "an evicted flow is balanced anew");
}

/// Counters of each backend of `key` by the last byte of its MAC, read as
/// `lbctl stats` reads them: the service's backend slots, summed over
/// CPUs by `stats::backend_stats_of`.
fn backend_counters(lab: &Lab, key: &ServiceKey) -> BTreeMap<u8, TrafficCounters> {
    lab.balancer
        .backends(key)
        .unwrap()
        .iter()
        .map(|(spec, index)| {
            let c = stats::backend_stats_of(&lab.ebpf, *index).unwrap();
            (spec.mac[5], c)
        })
        .collect()
}

/// The VIP id of `key`.
fn vip_id(lab: &Lab, key: &ServiceKey) -> u32 {
    lab.balancer
        .services()
        .find(|(k, _, _)| *k == key)
        .unwrap()
        .2
}

/// Run `frame`, which must be forwarded, and add it to `counts` under the
/// backend it went to, as the kernel should count it (`new_flow`: not
/// found in the connection table). Returns that backend.
fn send(lab: &Lab, frame: &[u8], new_flow: bool, counts: &mut BTreeMap<u8, TrafficCounters>) -> u8 {
    let (v, out) = run(&lab.ebpf, frame);
    assert_eq!(v, XDP_TX, "forwarded");
    let backend = backend_of(&out);
    let c = counts.entry(backend).or_default();
    c.packets += 1;
    c.bytes += frame.len() as u64;
    c.new_flows += u64::from(new_flow);
    backend
}

fn syn_to(vip: &str, sport: u16, dport: u16) -> Vec<u8> {
    tcp(CLIENT4, vip, sport, dport).build()
}

fn ack_to(vip: &str, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = syn_to(vip, sport, dport);
    f[14 + 20 + 13] = 0x10; // ACK, not SYN
    f
}

fn packets(counts: &BTreeMap<u8, TrafficCounters>) -> u64 {
    counts.values().map(|c| c.packets).sum()
}

/// Two services on one VIP address and the same two backend addresses
/// (80/tcp and 6379/tcp, as the lab's HTTP and Redis): each (service,
/// backend) has its own counters. N packets to HTTP show under HTTP only,
/// Redis's stay 0; then M packets to Redis show under Redis only.
#[test]
fn services_sharing_backend_addresses_count_apart() {
    const VIP: &str = "198.18.0.130";
    let mut lab = lab();
    let pool = [(ip4("198.18.1.61"), 1, 0x61), (ip4("198.18.1.62"), 1, 0x62)];
    let (tcp, dsr, drop) = (Protocol::Tcp, Mode::Dsr, NoBackend::Drop);
    let http = service(&mut lab.balancer, ip4(VIP), 80, tcp, dsr, &pool, drop);
    let redis = service(&mut lab.balancer, ip4(VIP), 6379, tcp, dsr, &pool, drop);
    let zero: BTreeMap<u8, TrafficCounters> = [
        (0x61, TrafficCounters::default()),
        (0x62, TrafficCounters::default()),
    ]
    .into();
    assert_eq!(backend_counters(&lab, &http), zero);
    assert_eq!(backend_counters(&lab, &redis), zero);

    // N = 90: 30 HTTP connections, a SYN and two ACKs each.
    let mut want_http = zero.clone();
    for sport in 44000..44030 {
        let first = send(&lab, &syn_to(VIP, sport, 80), true, &mut want_http);
        for _ in 0..2 {
            let next = send(&lab, &ack_to(VIP, sport, 80), false, &mut want_http);
            assert_eq!(next, first, "flow {sport} stays on its backend");
        }
    }
    assert_eq!(packets(&want_http), 90);
    assert!(
        want_http.values().all(|c| c.packets > 0),
        "both backends served HTTP: {want_http:?}"
    );
    assert_eq!(backend_counters(&lab, &http), want_http);
    assert_eq!(
        backend_counters(&lab, &redis),
        zero,
        "no Redis traffic was sent"
    );
    let vip_packets = |lab: &Lab, key| {
        stats::vip_stats_of(&lab.ebpf, vip_id(lab, key))
            .unwrap()
            .packets
    };
    assert_eq!(vip_packets(&lab, &http), 90);
    assert_eq!(vip_packets(&lab, &redis), 0);

    // M = 14: 7 Redis connections from the same client ports, a SYN and an
    // ACK each.
    let mut want_redis = zero.clone();
    for sport in 44000..44007 {
        send(&lab, &syn_to(VIP, sport, 6379), true, &mut want_redis);
        send(&lab, &ack_to(VIP, sport, 6379), false, &mut want_redis);
    }
    assert_eq!(packets(&want_redis), 14);
    assert_eq!(backend_counters(&lab, &redis), want_redis);
    assert_eq!(
        backend_counters(&lab, &http),
        want_http,
        "HTTP's counters did not move"
    );
    assert_eq!(vip_packets(&lab, &http), 90);
    assert_eq!(vip_packets(&lab, &redis), 14);
}

/// A backend slot freed by one service and given to another starts from
/// zero, and the first service's recorded flows through it are re-balanced
/// within that service instead of following the slot to the other
/// service's backend (and counting there). A freed VIP id starts from zero
/// too.
#[test]
fn a_reused_slot_or_id_starts_from_zero_and_keeps_no_old_flows() {
    const VIP: &str = "198.18.0.131";
    const OTHER: &str = "198.18.0.132";
    let mut lab = lab();
    let (tcp, dsr, drop) = (Protocol::Tcp, Mode::Dsr, NoBackend::Drop);
    let pool = [(ip4("198.18.1.61"), 1, 0x61), (ip4("198.18.1.62"), 1, 0x62)];
    let http = service(&mut lab.balancer, ip4(VIP), 80, tcp, dsr, &pool, drop);
    let mut want = BTreeMap::new();
    let mut on_61 = Vec::new();
    for sport in 45000..45040 {
        if send(&lab, &syn_to(VIP, sport, 80), true, &mut want) == 0x61 {
            on_61.push(sport);
        }
    }
    assert!(on_61.len() >= 5, "flows on .61: {on_61:?}");
    assert_eq!(backend_counters(&lab, &http), want);
    let slot_61 = lab.balancer.backends(&http).unwrap()[0].1;

    // .61 leaves HTTP; another service's backend takes its slot.
    let specs = [BackendSpec {
        addr: ip4("198.18.1.62"),
        weight: 1,
        mac: mac(0x62),
        port: 0,
        snat: None,
        arm: 0,
    }];
    lab.balancer.set_backends(&http, &specs).unwrap();
    let other = service(
        &mut lab.balancer,
        ip4(OTHER),
        80,
        tcp,
        dsr,
        &[(ip4("198.18.1.63"), 1, 0x63)],
        drop,
    );
    assert_eq!(
        lab.balancer.backends(&other).unwrap()[0].1,
        slot_61,
        "the freed slot is reused"
    );
    let zero = || -> BTreeMap<u8, TrafficCounters> { [(0x63, TrafficCounters::default())].into() };
    assert_eq!(
        backend_counters(&lab, &other),
        zero(),
        "the slot's counters start from zero (it had {} packets)",
        want[&0x61].packets
    );

    // HTTP's flows recorded on that slot: re-balanced to .62, counted
    // under HTTP as new flows, never forwarded to .63.
    for &sport in &on_61 {
        let to = send(&lab, &ack_to(VIP, sport, 80), true, &mut want);
        assert_eq!(to, 0x62, "flow {sport} stays in HTTP");
    }
    want.remove(&0x61);
    assert_eq!(backend_counters(&lab, &http), want);
    assert_eq!(backend_counters(&lab, &other), zero());
    let other_id = vip_id(&lab, &other);
    assert_eq!(
        stats::vip_stats_of(&lab.ebpf, other_id).unwrap(),
        TrafficCounters::default()
    );

    // Traffic to the other service, then it goes and a new one takes its
    // VIP id and slot: both start from zero.
    let mut want_other = BTreeMap::new();
    for sport in 45100..45103 {
        send(&lab, &syn_to(OTHER, sport, 80), true, &mut want_other);
    }
    assert_eq!(backend_counters(&lab, &other), want_other);
    assert_eq!(stats::vip_stats_of(&lab.ebpf, other_id).unwrap().packets, 3);
    lab.balancer.remove_service(&other).unwrap();
    let next = service(
        &mut lab.balancer,
        ip4(OTHER),
        6379,
        tcp,
        dsr,
        &[(ip4("198.18.1.63"), 1, 0x63)],
        drop,
    );
    assert_eq!(vip_id(&lab, &next), other_id, "the freed id is reused");
    assert_eq!(lab.balancer.backends(&next).unwrap()[0].1, slot_61);
    assert_eq!(
        stats::vip_stats_of(&lab.ebpf, other_id).unwrap(),
        TrafficCounters::default()
    );
    assert_eq!(backend_counters(&lab, &next), zero());
}

/// `[dataplane] backend_pairs` sizes the backend maps at load: with 64
/// slots, 64 (service, backend) pairs fit and the 65th is refused with a
/// message that says what to raise.
#[test]
fn backend_pairs_sizes_the_backend_maps() {
    let mut ebpf =
        lb_user::dataplane::loader::load_object(32, 64).expect("load BPF object (run as root)");
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf).unwrap());
    let spec = ServiceSpec {
        mode: Mode::Dsr,
        ring_size: 251,
        on_no_backend: NoBackend::Drop,
        ..ServiceSpec::default()
    };
    let backends = |n: u8| -> Vec<BackendSpec> {
        (0..n)
            .map(|i| BackendSpec {
                addr: IpAddr::from([198, 18, 2, i]),
                weight: 1,
                mac: [2, 0, 0, 0, 2, i],
                port: 0,
                snat: None,
                arm: 0,
            })
            .collect()
    };
    let key = |port| ServiceKey {
        vip: ip4("198.18.0.120"),
        port,
        proto: Protocol::Tcp,
    };
    // Two services of 32 backends each: the same addresses, 64 pairs.
    for port in [80, 81] {
        balancer.upsert_service(key(port), spec).unwrap();
        balancer.set_backends(&key(port), &backends(32)).unwrap();
    }
    balancer.upsert_service(key(82), spec).unwrap();
    let err = balancer.set_backends(&key(82), &backends(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "too many backends across services (the maps hold 64 service-backend pairs; \
         raise [dataplane] backend_pairs)"
    );
}
