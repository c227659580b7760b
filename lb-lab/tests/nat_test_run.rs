//! Kernel test: `nat` and `fullnat` through `BPF_PROG_TEST_RUN`.
//!
//! Services are configured through the real `Balancer` and `EbpfMaps`.
//! Every translated frame is compared whole with one built independently
//! here (addresses, ports and every checksum computed from scratch by
//! pnet), so a wrong incremental checksum update fails the comparison.
//! Covered: each mode × IPv4/IPv6 × TCP/UDP in both directions, a backend
//! port other than the service's, an IPv4 UDP datagram without checksum,
//! SNAT port exhaustion, a full NAT table (new flows refused, established
//! ones kept), a reply without an entry, TCP state from SYN to FIN and
//! RST, a backend leaving the pool (TCP flows keep their translation, UDP
//! ones move), and truncated input through the NAT paths. The NAT table is read back as `lbd` reads it.
//! Two arms (`backend_interface`): frames redirected to the other
//! interface from its MAC, or sent back out of the one they came in on,
//! in every mode.
//!
//! Needs root (BPF). `cargo xtask test` refuses to run without it.

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::Xdp,
};
use lb_common::{
    config::{ARMS_MAP, Config},
    flow::FlowKey,
    nat::{NAT_MAP, NatEntry, NatState, nat_flags, reversed},
    stats::{ExitCounters, TrafficCounters},
    v4_mapped,
};
use lb_lab::testpkt::{CLIENT_MAC, FrameSpec, L4, LB_MAC};
use lb_lab::testrun::{exit_delta, run, run_on};
use lb_user::dataplane::{
    balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Protocol, ServiceKey, ServiceSpec,
    },
    loader::{PROGRAM, Sizes, load_object_with},
    stats,
};
use pnet_packet::tcp::TcpFlags;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const RING: u32 = 251;
const SNAT_MIN: u16 = 40_000;
const SNAT_PORTS: u16 = 1000;
const BACKEND_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x10];
const XDP_REDIRECT: u32 = 4;
/// The MACs of the program's two interfaces (`Config::arm_mac`).
const ARM_MACS: [[u8; 6]; 2] = [[0x02, 0xa0, 0, 0, 0, 1], [0x02, 0xa1, 0, 0, 0, 2]];

const CLIENT4: &str = "198.18.0.1";
const CLIENT6: &str = "2001:db8::1";

struct Lab {
    ebpf: Ebpf,
    balancer: Balancer<EbpfMaps>,
}

/// One service under test: VIP:port → one backend:port, SNAT address.
#[derive(Clone, Copy)]
struct Svc {
    mode: Mode,
    proto: Protocol,
    vip: &'static str,
    port: u16,
    backend: &'static str,
    backend_port: u16,
    snat: &'static str,
    client: &'static str,
}

const SERVICES: [Svc; 8] = [
    Svc {
        mode: Mode::Fullnat,
        proto: Protocol::Tcp,
        vip: "198.18.0.200",
        port: 80,
        backend: "198.18.2.10",
        backend_port: 8080,
        snat: "198.18.2.1",
        client: CLIENT4,
    },
    Svc {
        mode: Mode::Fullnat,
        proto: Protocol::Udp,
        vip: "198.18.0.200",
        port: 53,
        backend: "198.18.2.11",
        backend_port: 5353,
        snat: "198.18.2.1",
        client: CLIENT4,
    },
    Svc {
        mode: Mode::Nat,
        proto: Protocol::Tcp,
        vip: "198.18.0.201",
        port: 80,
        backend: "198.18.2.12",
        backend_port: 80,
        snat: "",
        client: CLIENT4,
    },
    Svc {
        mode: Mode::Nat,
        proto: Protocol::Udp,
        vip: "198.18.0.201",
        port: 53,
        backend: "198.18.2.13",
        backend_port: 1053,
        snat: "",
        client: CLIENT4,
    },
    Svc {
        mode: Mode::Fullnat,
        proto: Protocol::Tcp,
        vip: "2001:db8::200",
        port: 80,
        backend: "2001:db8:2::10",
        backend_port: 8080,
        snat: "2001:db8:2::1",
        client: CLIENT6,
    },
    Svc {
        mode: Mode::Fullnat,
        proto: Protocol::Udp,
        vip: "2001:db8::200",
        port: 53,
        backend: "2001:db8:2::11",
        backend_port: 53,
        snat: "2001:db8:2::1",
        client: CLIENT6,
    },
    Svc {
        mode: Mode::Nat,
        proto: Protocol::Tcp,
        vip: "2001:db8::201",
        port: 443,
        backend: "2001:db8:2::12",
        backend_port: 8443,
        snat: "",
        client: CLIENT6,
    },
    Svc {
        mode: Mode::Nat,
        proto: Protocol::Udp,
        vip: "2001:db8::201",
        port: 53,
        backend: "2001:db8:2::13",
        backend_port: 53,
        snat: "",
        client: CLIENT6,
    },
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key_of(svc: &Svc) -> ServiceKey {
    ServiceKey {
        vip: ip(svc.vip),
        port: svc.port,
        proto: svc.proto,
    }
}

fn backends_of(svc: &Svc) -> Vec<BackendSpec> {
    vec![BackendSpec {
        addr: ip(svc.backend),
        weight: 1,
        mac: BACKEND_MAC,
        port: svc.backend_port,
        snat: (svc.mode == Mode::Fullnat).then(|| ip(svc.snat)),
        arm: 0,
    }]
}

fn lab(nat_flows: u32, snat_ports: u16) -> Lab {
    lab_with(nat_flows, snat_ports, None)
}

/// [`lab`], with `arms` the program's two interfaces (arm 0, arm 1):
/// every backend is then behind arm 1.
fn lab_with(nat_flows: u32, snat_ports: u16, arms: Option<[u32; 2]>) -> Lab {
    let sizes = Sizes {
        nat_flows,
        arm1_ifindex: arms.map_or(0, |a| a[1]),
        ..Sizes::default()
    };
    let mut ebpf = load_object_with(&sizes, false, None).expect("load BPF object (run as root)");
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
    program.load().expect("verifier accepts the program");
    if let Some(arms) = arms {
        let mut map: aya::maps::DevMap<&mut MapData> =
            aya::maps::DevMap::try_from(ebpf.map_mut(ARMS_MAP).unwrap()).unwrap();
        for (arm, ifindex) in (0..).zip(arms) {
            map.set(arm, ifindex, None, 0).unwrap();
        }
    }
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf).unwrap());
    balancer
        .set_config(&Config {
            mtu: 1500,
            snat_port_min: SNAT_MIN,
            snat_ports,
            arm_mac: ARM_MACS,
            ..Config::default()
        })
        .unwrap();
    let arm = u8::from(arms.is_some());
    for svc in &SERVICES {
        let key = key_of(svc);
        balancer
            .upsert_service(
                key,
                ServiceSpec {
                    mode: svc.mode,
                    ring_size: RING,
                    on_no_backend: NoBackend::Drop,
                    ..ServiceSpec::default()
                },
            )
            .unwrap();
        let backends: Vec<BackendSpec> = backends_of(svc)
            .into_iter()
            .map(|b| BackendSpec { arm, ..b })
            .collect();
        balancer.set_backends(&key, &backends).unwrap();
    }
    Lab { ebpf, balancer }
}

/// A frame `src:sport -> dst:dport` of `proto`, every checksum computed
/// from scratch; MACs: to the LB from the client.
fn frame(proto: Protocol, src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = match proto {
        Protocol::Tcp => L4::Tcp {
            src: sport,
            dst: dport,
        },
        Protocol::Udp => L4::Udp {
            src: sport,
            dst: dport,
        },
    };
    let mut spec = FrameSpec::new(ip(src), ip(dst), l4);
    spec.tcp_flags = flags;
    spec.build()
}

/// `f` with its MACs set to `dst` and `src`.
fn macs(mut f: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// The source port of an untagged frame's TCP / UDP header.
fn sport_of(f: &[u8]) -> u16 {
    let l4 = if f[12..14] == [0x86, 0xdd] { 54 } else { 34 };
    u16::from_be_bytes([f[l4], f[l4 + 1]])
}

fn exits(lab: &Lab) -> ExitCounters {
    stats::exit_stats_of(&lab.ebpf).unwrap()
}

/// Run `input`, expecting `verdict` and exactly one exit reason `why`.
fn expect(lab: &Lab, input: &[u8], verdict: u32, why: &str) -> Vec<u8> {
    let before = exits(lab);
    let (v, out) = run(&lab.ebpf, input);
    assert_eq!(v, verdict, "verdict ({why})");
    assert_eq!(exit_delta(&before, &exits(lab)), vec![why]);
    out
}

/// The counters of `svc`'s (only) backend.
fn backend_counters(lab: &Lab, svc: &Svc) -> TrafficCounters {
    let key = key_of(svc);
    let (_, index) = lab.balancer.backends(&key).unwrap()[0];
    stats::backend_stats_of(&lab.ebpf, index).unwrap()
}

fn nat_table(lab: &Lab) -> Vec<(FlowKey, NatEntry)> {
    let map: BpfHashMap<&MapData, FlowKey, NatEntry> =
        BpfHashMap::try_from(lab.ebpf.map(NAT_MAP).unwrap()).unwrap();
    map.iter().map(Result::unwrap).collect()
}

fn flow_key(proto: Protocol, src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    let a16 = |s: &str| match ip(s) {
        IpAddr::V4(v) => v4_mapped(v.octets()),
        IpAddr::V6(v) => v.octets(),
    };
    FlowKey {
        src: a16(src),
        dst: a16(dst),
        src_port_be: sport.to_be(),
        dst_port_be: dport.to_be(),
        proto: proto.number(),
        pad: [0; 3],
    }
}

/// The flow's state as `lbd` derives it from both entries.
fn state(lab: &Lab, fwd_key: &FlowKey) -> NatState {
    let table = nat_table(lab);
    let fwd = table
        .iter()
        .find(|(k, _)| k == fwd_key)
        .expect("forward entry")
        .1;
    let reply_key = reversed(&fwd.to);
    let reply = table
        .iter()
        .find(|(k, _)| *k == reply_key)
        .expect("reply entry")
        .1;
    NatState::of(fwd_key.proto, fwd.tcp, reply.tcp)
}

/// One service: first packet, a reply, a second packet; whole frames.
fn round_trip(lab: &Lab, svc: &Svc, cport: u16) {
    let name = format!("{:?} {} {}", svc.mode, svc.proto, svc.vip);
    let syn = frame(
        svc.proto,
        svc.client,
        cport,
        svc.vip,
        svc.port,
        TcpFlags::SYN,
    );
    let out = expect(lab, &syn, XDP_TX, "tx_nat");
    let (src, sport) = if svc.mode == Mode::Fullnat {
        let p = sport_of(&out);
        assert!(
            (SNAT_MIN..SNAT_MIN + SNAT_PORTS).contains(&p),
            "{name}: SNAT port {p} in range"
        );
        (svc.snat, p)
    } else {
        (svc.client, cport)
    };
    let want = frame(
        svc.proto,
        src,
        sport,
        svc.backend,
        svc.backend_port,
        TcpFlags::SYN,
    );
    assert_eq!(out, macs(want, BACKEND_MAC, LB_MAC), "{name}: forward");

    let reply_flags = TcpFlags::SYN | TcpFlags::ACK;
    let reply = frame(
        svc.proto,
        svc.backend,
        svc.backend_port,
        src,
        sport,
        reply_flags,
    );
    let out = expect(lab, &reply, XDP_TX, "tx_nat_reply");
    let want = frame(svc.proto, svc.vip, svc.port, svc.client, cport, reply_flags);
    assert_eq!(out, macs(want, CLIENT_MAC, LB_MAC), "{name}: reply");

    let ack = frame(
        svc.proto,
        svc.client,
        cport,
        svc.vip,
        svc.port,
        TcpFlags::ACK,
    );
    let out = expect(lab, &ack, XDP_TX, "tx_nat");
    let want = frame(
        svc.proto,
        src,
        sport,
        svc.backend,
        svc.backend_port,
        TcpFlags::ACK,
    );
    assert_eq!(out, macs(want, BACKEND_MAC, LB_MAC), "{name}: established");
    let key = flow_key(svc.proto, svc.client, cport, svc.vip, svc.port);
    let want_state = match svc.proto {
        Protocol::Tcp => NatState::Established,
        Protocol::Udp => NatState::Udp,
    };
    assert_eq!(state(lab, &key), want_state, "{name}");
}

/// Run `input` received on interface `ifindex`, expecting `verdict` and
/// exactly one exit reason `why`.
fn expect_on(lab: &Lab, input: &[u8], ifindex: u32, verdict: u32, why: &str) -> Vec<u8> {
    let before = exits(lab);
    let (v, out) = run_on(&lab.ebpf, input, ifindex);
    assert_eq!(v, verdict, "verdict ({why})");
    assert_eq!(exit_delta(&before, &exits(lab)), vec![why]);
    out
}

/// Two arms: a client's packet arriving on arm 0 for a backend behind
/// arm 1 is redirected there from arm 1's MAC; the reply arriving on arm
/// 1 is redirected back from arm 0's MAC; a packet that leaves by the
/// interface it came in on is sent with `XDP_TX`, from the MAC it came
/// to. Every mode: `fullnat` and `nat` (whole frames), `dsr` and `ipip`.
#[test]
fn two_arms_redirect_across_and_transmit_back() {
    let lan = lb_lab::netns::Lan::new().expect("a namespace (run as root)");
    let ns = lan.bridge();
    // Two interfaces (a veth pair: any two will do).
    ns.ip(&[
        "link", "add", "arm0", "type", "veth", "peer", "name", "arm1",
    ])
    .unwrap();
    for name in ["arm0", "arm1"] {
        ns.ip(&["link", "set", name, "up"]).unwrap();
    }
    // The devmap and the run's ingress interface are looked up in the
    // calling thread's network namespace.
    ns.run(|| {
        let index = |n| lb_user::sys::interface::ifindex(n).unwrap();
        let arms = [index("arm0"), index("arm1")];
        let lab = lab_with(1024, SNAT_PORTS, Some(arms));
        for (i, svc) in [SERVICES[0], SERVICES[2], SERVICES[5]].iter().enumerate() {
            let name = format!("{:?} {} {}", svc.mode, svc.proto, svc.vip);
            let cport = 7000 + u16::try_from(i).unwrap();
            let syn = frame(
                svc.proto,
                svc.client,
                cport,
                svc.vip,
                svc.port,
                TcpFlags::SYN,
            );
            let out = expect_on(&lab, &syn, arms[0], XDP_REDIRECT, "tx_nat");
            let (src, sport) = if svc.mode == Mode::Fullnat {
                (svc.snat, sport_of(&out))
            } else {
                (svc.client, cport)
            };
            let want = frame(
                svc.proto,
                src,
                sport,
                svc.backend,
                svc.backend_port,
                TcpFlags::SYN,
            );
            assert_eq!(out, macs(want, BACKEND_MAC, ARM_MACS[1]), "{name}: forward");
            let flags = TcpFlags::SYN | TcpFlags::ACK;
            let reply = frame(svc.proto, svc.backend, svc.backend_port, src, sport, flags);
            let out = expect_on(&lab, &reply, arms[1], XDP_REDIRECT, "tx_nat_reply");
            let want = frame(svc.proto, svc.vip, svc.port, svc.client, cport, flags);
            assert_eq!(
                out,
                macs(want.clone(), CLIENT_MAC, ARM_MACS[0]),
                "{name}: reply"
            );
            // The same reply arriving on the client's side (hairpin): it
            // leaves by the interface it came in on.
            let out = expect_on(&lab, &reply, arms[0], XDP_TX, "tx_nat_reply");
            assert_eq!(
                out,
                macs(want, CLIENT_MAC, LB_MAC),
                "{name}: reply sent back"
            );
        }
        // Each entry records its arm: the reply's is the client's.
        let table = nat_table(&lab);
        assert_eq!(table.len(), 6);
        for (_, e) in &table {
            let want = u8::from(e.flags & nat_flags::REPLY == 0);
            assert_eq!(e.arm, want, "{e:?}");
        }
        two_arms_dsr_and_ipip(lab, arms);
    })
    .unwrap();
}

/// `dsr` and `ipip` services whose backend is behind arm 1: redirected.
fn two_arms_dsr_and_ipip(mut lab: Lab, arms: [u32; 2]) {
    for (mode, vip) in [(Mode::Dsr, "198.18.0.210"), (Mode::Ipip, "198.18.0.211")] {
        let key = ServiceKey {
            vip: ip(vip),
            port: 80,
            proto: Protocol::Tcp,
        };
        let spec = ServiceSpec {
            mode,
            ring_size: RING,
            on_no_backend: NoBackend::Drop,
            ..ServiceSpec::default()
        };
        lab.balancer.upsert_service(key, spec).unwrap();
        let backend = BackendSpec {
            addr: ip("198.18.2.20"),
            weight: 1,
            mac: BACKEND_MAC,
            port: 0,
            snat: None,
            arm: 1,
        };
        lab.balancer.set_backends(&key, &[backend]).unwrap();
        let syn = frame(Protocol::Tcp, CLIENT4, 7100, vip, 80, TcpFlags::SYN);
        let why = if mode == Mode::Dsr {
            "tx_dsr"
        } else {
            "tx_ipip"
        };
        let out = expect_on(&lab, &syn, arms[0], XDP_REDIRECT, why);
        assert_eq!(
            out[..12],
            macs(syn.clone(), BACKEND_MAC, ARM_MACS[1])[..12],
            "{mode:?}"
        );
        if mode == Mode::Dsr {
            assert_eq!(out[12..], syn[12..], "dsr leaves the IP packet alone");
        }
        // Received on arm 1 itself: sent back out of it.
        let out = expect_on(&lab, &syn, arms[1], XDP_TX, why);
        assert_eq!(out[..12], macs(syn, BACKEND_MAC, LB_MAC)[..12], "{mode:?}");
    }
}

#[test]
fn every_mode_family_and_protocol_translates_both_ways() {
    let lab = lab(1024, SNAT_PORTS);
    for (i, svc) in SERVICES.iter().enumerate() {
        round_trip(&lab, svc, 50_000 + u16::try_from(i).unwrap());
        // Per (service, backend): both forward packets, the flow, the reply.
        let c = backend_counters(&lab, svc);
        assert_eq!(
            (c.packets, c.new_flows, c.replies, c.refused),
            (2, 1, 1, 0),
            "{c:?}"
        );
        assert!(c.reply_bytes > 0);
    }
    // Two entries per flow, each flagged with its direction and mode.
    let table = nat_table(&lab);
    assert_eq!(table.len(), 2 * SERVICES.len());
    let replies = table
        .iter()
        .filter(|(_, e)| e.flags & nat_flags::REPLY != 0)
        .count();
    assert_eq!(replies, SERVICES.len());
    let full = table
        .iter()
        .filter(|(_, e)| e.flags & nat_flags::FULLNAT != 0)
        .count();
    assert_eq!(full, 8, "4 fullnat services, 2 entries each");
}

#[test]
fn ipv4_udp_without_checksum_stays_without() {
    let lab = lab(1024, SNAT_PORTS);
    let svc = &SERVICES[1];
    let l4 = 14 + 20;
    let mut input = frame(svc.proto, CLIENT4, 5000, svc.vip, svc.port, 0);
    input[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    let out = expect(&lab, &input, XDP_TX, "tx_nat");
    let sport = sport_of(&out);
    let mut want = macs(
        frame(svc.proto, svc.snat, sport, svc.backend, svc.backend_port, 0),
        BACKEND_MAC,
        LB_MAC,
    );
    want[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    assert_eq!(out, want);
}

#[test]
fn snat_ports_run_out_and_are_counted() {
    let lab = lab(1024, 2);
    let svc = &SERVICES[0];
    let mut ports = Vec::new();
    for cport in [6000, 6001] {
        let syn = frame(svc.proto, CLIENT4, cport, svc.vip, svc.port, TcpFlags::SYN);
        ports.push(sport_of(&expect(&lab, &syn, XDP_TX, "tx_nat")));
    }
    ports.sort_unstable();
    assert_eq!(ports, vec![SNAT_MIN, SNAT_MIN + 1], "both ports used once");
    let syn = frame(svc.proto, CLIENT4, 6002, svc.vip, svc.port, TcpFlags::SYN);
    expect(&lab, &syn, XDP_DROP, "drop_nat_ports");
    let c = backend_counters(&lab, svc);
    assert_eq!(
        (c.new_flows, c.refused),
        (2, 1),
        "refused, per backend: {c:?}"
    );
    // The other backend has its own ports: (SNAT, port, backend) differ.
    let other = &SERVICES[1];
    let dns = frame(other.proto, CLIENT4, 6002, other.vip, other.port, 0);
    expect(&lab, &dns, XDP_TX, "tx_nat");
    // Established flows keep going.
    let ack = frame(svc.proto, CLIENT4, 6000, svc.vip, svc.port, TcpFlags::ACK);
    expect(&lab, &ack, XDP_TX, "tx_nat");
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_established_ones() {
    // 64 flows: 128 entries.
    let lab = lab(64, SNAT_PORTS);
    let svc = &SERVICES[2];
    for cport in 0..64 {
        let syn = frame(
            svc.proto,
            CLIENT4,
            7000 + cport,
            svc.vip,
            svc.port,
            TcpFlags::SYN,
        );
        expect(&lab, &syn, XDP_TX, "tx_nat");
    }
    let syn = frame(svc.proto, CLIENT4, 7064, svc.vip, svc.port, TcpFlags::SYN);
    expect(&lab, &syn, XDP_DROP, "drop_nat_full");
    assert_eq!(
        nat_table(&lab).len(),
        128,
        "nothing evicted, nothing half-written"
    );
    for cport in [7000, 7063] {
        let ack = frame(svc.proto, CLIENT4, cport, svc.vip, svc.port, TcpFlags::ACK);
        expect(&lab, &ack, XDP_TX, "tx_nat");
        let reply = frame(svc.proto, svc.backend, 80, CLIENT4, cport, TcpFlags::ACK);
        expect(&lab, &reply, XDP_TX, "tx_nat_reply");
    }
}

#[test]
fn a_reply_without_an_entry_goes_to_the_stack() {
    let lab = lab(1024, SNAT_PORTS);
    let svc = &SERVICES[0];
    // From a NAT backend's address, to a port no flow has: a health
    // check's answer, say.
    let stray = frame(
        svc.proto,
        svc.backend,
        8080,
        svc.snat,
        45_000,
        TcpFlags::ACK,
    );
    let out = expect(&lab, &stray, XDP_PASS, "pass_nat_no_entry");
    assert_eq!(out, stray, "passed untouched");
    // From an address that is no NAT backend: not even looked up.
    let other = frame(
        svc.proto,
        "198.18.3.3",
        8080,
        svc.snat,
        45_000,
        TcpFlags::ACK,
    );
    expect(&lab, &other, XDP_PASS, "pass_not_vip");
}

#[test]
fn tcp_state_follows_fin_and_rst() {
    let lab = lab(1024, SNAT_PORTS);
    let svc = &SERVICES[2];
    let key = flow_key(svc.proto, CLIENT4, 9000, svc.vip, svc.port);
    let from_client = |flags| frame(svc.proto, CLIENT4, 9000, svc.vip, svc.port, flags);
    let from_backend = |flags| frame(svc.proto, svc.backend, 80, CLIENT4, 9000, flags);
    expect(&lab, &from_client(TcpFlags::SYN), XDP_TX, "tx_nat");
    assert_eq!(state(&lab, &key), NatState::SynSent);
    let synack = TcpFlags::SYN | TcpFlags::ACK;
    expect(&lab, &from_backend(synack), XDP_TX, "tx_nat_reply");
    assert_eq!(state(&lab, &key), NatState::SynRecv);
    expect(&lab, &from_client(TcpFlags::ACK), XDP_TX, "tx_nat");
    assert_eq!(state(&lab, &key), NatState::Established);
    let fin = TcpFlags::FIN | TcpFlags::ACK;
    expect(&lab, &from_client(fin), XDP_TX, "tx_nat");
    assert_eq!(state(&lab, &key), NatState::FinWait);
    expect(&lab, &from_backend(fin), XDP_TX, "tx_nat_reply");
    assert_eq!(state(&lab, &key), NatState::TimeWait);
    // The client reuses the tuple: a new connection, same translation.
    expect(&lab, &from_client(TcpFlags::SYN), XDP_TX, "tx_nat");
    expect(&lab, &from_backend(synack), XDP_TX, "tx_nat_reply");
    assert_eq!(state(&lab, &key), NatState::SynRecv);
    expect(&lab, &from_backend(TcpFlags::RST), XDP_TX, "tx_nat_reply");
    assert_eq!(state(&lab, &key), NatState::Close);
}

#[test]
fn a_backend_leaving_the_pool_keeps_tcp_flows_and_moves_udp_ones() {
    let mut lab = lab(1024, SNAT_PORTS);
    let (tcp, udp) = (SERVICES[2], SERVICES[3]);
    let syn = frame(tcp.proto, CLIENT4, 9100, tcp.vip, tcp.port, TcpFlags::SYN);
    expect(&lab, &syn, XDP_TX, "tx_nat");
    let dns = frame(udp.proto, CLIENT4, 9100, udp.vip, udp.port, 0);
    expect(&lab, &dns, XDP_TX, "tx_nat");
    // Both backends leave their pools (removed, or failed their checks).
    lab.balancer.set_backends(&key_of(&tcp), &[]).unwrap();
    lab.balancer.set_backends(&key_of(&udp), &[]).unwrap();
    // The TCP connection keeps its translation (the server may be alive;
    // it ends when its state times out), replies included.
    let ack = frame(tcp.proto, CLIENT4, 9100, tcp.vip, tcp.port, TcpFlags::ACK);
    let out = expect(&lab, &ack, XDP_TX, "tx_nat");
    let want = frame(tcp.proto, CLIENT4, 9100, tcp.backend, 80, TcpFlags::ACK);
    assert_eq!(out, macs(want, BACKEND_MAC, LB_MAC));
    let reply = frame(tcp.proto, tcp.backend, 80, CLIENT4, 9100, TcpFlags::ACK);
    expect(&lab, &reply, XDP_TX, "tx_nat_reply");
    // The UDP flow is deleted and balanced again: nothing to go to now.
    expect(&lab, &dns, XDP_DROP, "drop_no_backend");
    assert_eq!(nat_table(&lab).len(), 2, "only the TCP flow's entries stay");
    // A new backend: the UDP flow goes there.
    let mut specs = backends_of(&udp);
    specs[0].addr = ip("198.18.2.14");
    lab.balancer.set_backends(&key_of(&udp), &specs).unwrap();
    let out = expect(&lab, &dns, XDP_TX, "tx_nat");
    let want = frame(udp.proto, CLIENT4, 9100, "198.18.2.14", udp.backend_port, 0);
    assert_eq!(out, macs(want, BACKEND_MAC, LB_MAC));
}

/// A backend that left the pool frees its slot, and another backend of
/// the same service may take it: the established TCP flows of the first
/// still go to the first (its MAC, as they started), and are not counted
/// against the newcomer.
#[test]
fn a_flow_whose_slot_went_to_another_backend_stays_on_its_own() {
    const OTHER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x20];
    let mut lab = lab(1024, SNAT_PORTS);
    let tcp = SERVICES[2];
    let key = key_of(&tcp);
    let syn = frame(tcp.proto, CLIENT4, 9200, tcp.vip, tcp.port, TcpFlags::SYN);
    expect(&lab, &syn, XDP_TX, "tx_nat");
    let (_, slot) = lab.balancer.backends(&key).unwrap()[0];
    // The backend fails its check; another one comes in its place.
    lab.balancer.set_backends(&key, &[]).unwrap();
    let other = BackendSpec {
        addr: ip("198.18.2.20"),
        mac: OTHER_MAC,
        ..backends_of(&tcp)[0]
    };
    lab.balancer.set_backends(&key, &[other]).unwrap();
    let (_, reused) = lab.balancer.backends(&key).unwrap()[0];
    assert_eq!(reused, slot, "the newcomer has the freed slot");
    let before = backend_counters(&lab, &tcp);
    let ack = frame(tcp.proto, CLIENT4, 9200, tcp.vip, tcp.port, TcpFlags::ACK);
    let out = expect(&lab, &ack, XDP_TX, "tx_nat");
    let want = frame(tcp.proto, CLIENT4, 9200, tcp.backend, 80, TcpFlags::ACK);
    assert_eq!(
        out,
        macs(want, BACKEND_MAC, LB_MAC),
        "to its own backend's MAC"
    );
    let reply = frame(tcp.proto, tcp.backend, 80, CLIENT4, 9200, TcpFlags::ACK);
    expect(&lab, &reply, XDP_TX, "tx_nat_reply");
    assert_eq!(
        backend_counters(&lab, &tcp),
        before,
        "the newcomer's counters"
    );
    // A new connection goes to the newcomer.
    let syn = frame(tcp.proto, CLIENT4, 9201, tcp.vip, tcp.port, TcpFlags::SYN);
    let out = expect(&lab, &syn, XDP_TX, "tx_nat");
    let want = frame(tcp.proto, CLIENT4, 9201, "198.18.2.20", 80, TcpFlags::SYN);
    assert_eq!(out, macs(want, OTHER_MAC, LB_MAC));
}

#[test]
fn truncated_and_garbage_input_never_translates() {
    let lab = lab(1024, SNAT_PORTS);
    let svc = &SERVICES[0];
    let syn = frame(svc.proto, CLIENT4, 9200, svc.vip, svc.port, TcpFlags::SYN);
    for cut in [14 + 10, 14 + 20 + 10, 14 + 20 + 19] {
        expect(&lab, &syn[..cut], XDP_PASS, "pass_malformed");
    }
    // Data offset below 5.
    let mut bad = syn.clone();
    bad[14 + 20 + 12] = 0x40;
    expect(&lab, &bad, XDP_PASS, "pass_malformed");
    let reply = frame(
        svc.proto,
        svc.backend,
        8080,
        svc.snat,
        40_000,
        TcpFlags::ACK,
    );
    expect(&lab, &reply[..14 + 20 + 10], XDP_PASS, "pass_malformed");
    assert!(nat_table(&lab).is_empty(), "no entry from garbage");
    // Random bytes behind a valid Ethernet + IPv4 header to the VIP.
    let mut noise = syn;
    let mut x = 0x1234_5678_u32;
    for b in &mut noise[14 + 20..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x.to_le_bytes()[0];
    }
    let (v, _) = run(&lab.ebpf, &noise);
    assert!(matches!(v, XDP_TX | XDP_PASS | XDP_DROP), "verdict {v}");
    assert_eq!(exits(&lab).aborted, 0);
}

/// An ICMP error from `router` to `to`, quoting `quote` bytes of
/// `inner` (an IP packet), every checksum computed from scratch. IPv4:
/// type 3 code 4 (fragmentation needed, MTU 1400); IPv6: packet too big.
fn icmp_error(router: &str, to: &str, inner: &[u8], quote: usize) -> Vec<u8> {
    let (src, dst) = (ip(router), ip(to));
    let v6 = src.is_ipv6();
    let mut msg = if v6 {
        vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x78]
    } else {
        vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78]
    };
    msg.extend_from_slice(&inner[..quote.min(inner.len())]);
    let sum = match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => pnet_packet::util::ipv6_checksum(
            &msg,
            1,
            &[],
            &s,
            &d,
            pnet_packet::ip::IpNextHeaderProtocols::Icmpv6,
        ),
        _ => pnet_packet::util::checksum(&msg, 1),
    };
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut spec = FrameSpec::new(src, dst, L4::Other(if v6 { 58 } else { 1 }));
    spec.payload = msg;
    spec.build()
}

/// The IP packet of a frame (behind the untagged Ethernet header).
fn ip_packet(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

#[test]
fn icmp_errors_about_nat_flows_are_translated_both_ways() {
    let lab = lab(1024, SNAT_PORTS);
    // fullnat and nat, IPv4 and IPv6, TCP and UDP; whole quotes and the
    // 8 bytes minimum.
    for (i, svc) in SERVICES.iter().enumerate() {
        let name = format!("{:?} {} {}", svc.mode, svc.proto, svc.vip);
        let cport = 30_000 + u16::try_from(i).unwrap();
        let v6 = svc.client.contains(':');
        let syn = frame(
            svc.proto,
            svc.client,
            cport,
            svc.vip,
            svc.port,
            TcpFlags::SYN,
        );
        let out = expect(&lab, &syn, XDP_TX, "tx_nat");
        let (src, sport) = if svc.mode == Mode::Fullnat {
            (svc.snat, sport_of(&out))
        } else {
            (svc.client, cport)
        };
        let (router_in, router_out) = if v6 {
            ("2001:db8:2::fe", "2001:db8::fe")
        } else {
            ("198.18.2.254", "198.18.0.254")
        };
        let hdr = if v6 { 40 } else { 20 };
        for quote in [hdr + 8, usize::MAX] {
            // A router towards the backend cannot pass the translated
            // packet: its error goes to the source the backend sees, and
            // must reach the client about the packet the client sent.
            let sent = frame(
                svc.proto,
                src,
                sport,
                svc.backend,
                svc.backend_port,
                TcpFlags::SYN,
            );
            let error = icmp_error(router_in, src, &ip_packet(&sent), quote);
            let out = expect(&lab, &error, XDP_TX, "tx_nat_icmp");
            let want = icmp_error(svc.vip, svc.client, &ip_packet(&syn), quote);
            assert_eq!(
                out,
                macs(want, CLIENT_MAC, LB_MAC),
                "{name}: to the client, quote {quote}"
            );
            // A router towards the client cannot pass a reply: its error
            // goes to the VIP and must reach the backend about the packet
            // the backend sent.
            let flags = TcpFlags::SYN | TcpFlags::ACK;
            let reply = frame(svc.proto, svc.vip, svc.port, svc.client, cport, flags);
            let error = icmp_error(router_out, svc.vip, &ip_packet(&reply), quote);
            let out = expect(&lab, &error, XDP_TX, "tx_nat_icmp");
            let sent = frame(svc.proto, svc.backend, svc.backend_port, src, sport, flags);
            let want = icmp_error(src, svc.backend, &ip_packet(&sent), quote);
            assert_eq!(
                out,
                macs(want, BACKEND_MAC, LB_MAC),
                "{name}: to the backend, quote {quote}"
            );
        }
    }
    // An error about no flow of ours goes to the stack untouched.
    let svc = &SERVICES[0];
    let stray = frame(
        svc.proto,
        svc.snat,
        45_000,
        svc.backend,
        8080,
        TcpFlags::SYN,
    );
    let error = icmp_error("198.18.2.254", svc.snat, &ip_packet(&stray), 28);
    let out = expect(&lab, &error, XDP_PASS, "pass_not_vip");
    assert_eq!(out, error);
}

#[test]
fn lbd_reads_the_whole_table_in_batches() {
    // 5,000 flows: 10,000 entries, several batch calls.
    let lab = lab(8192, SNAT_PORTS);
    let svc = &SERVICES[2];
    for i in 0..5000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        let client = format!("198.19.{hi}.{lo}");
        let syn = frame(svc.proto, &client, 7000, svc.vip, svc.port, TcpFlags::SYN);
        let (v, _) = run(&lab.ebpf, &syn);
        assert_eq!(v, XDP_TX);
    }
    let map: BpfHashMap<&MapData, FlowKey, NatEntry> =
        BpfHashMap::try_from(lab.ebpf.map(NAT_MAP).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let mut batched = lb_user::dataplane::nat::snapshot(&map);
    let batch_time = started.elapsed();
    let started = std::time::Instant::now();
    let mut walked = nat_table(&lab);
    let walk_time = started.elapsed();
    println!(
        "10,000 entries: batch lookup {batch_time:?}, one by one {walk_time:?} ({:.1}x)",
        walk_time.as_secs_f64() / batch_time.as_secs_f64()
    );
    assert_eq!(batched.len(), 10_000);
    batched.sort_by_key(|(k, _)| k.words().to_vec());
    walked.sort_by_key(|(k, _)| k.words().to_vec());
    assert_eq!(batched, walked);
}

#[test]
fn a_synced_flow_is_carried_with_this_node_s_slot() {
    use lb_common::nat::tcp_flags::{ACK, SYN};
    use lb_user::dataplane::nat::{NatRecord, write};
    let mut lab = lab(1024, SNAT_PORTS);
    let svc = SERVICES[0];
    let sa = |s: &str| s.parse().unwrap();
    let record = NatRecord {
        proto: 6,
        fullnat: true,
        tcp: (SYN | ACK, SYN | ACK),
        vip: sa("198.18.0.200:80"),
        client: sa("198.18.0.1:9300"),
        backend: sa("198.18.2.10:8080"),
        source: sa("198.18.2.1:41000"),
        client_mac: CLIENT_MAC,
        client_arm: 0,
    };
    let translation = lab.balancer.translation();
    {
        let mut map: BpfHashMap<&mut MapData, FlowKey, NatEntry> =
            BpfHashMap::try_from(lab.ebpf.map_mut(NAT_MAP).unwrap()).unwrap();
        write(&mut map, &record, &translation, 1).unwrap();
        let idle = NatRecord {
            client: sa("198.18.0.1:9301"),
            source: sa("198.18.2.1:41001"),
            ..record
        };
        write(&mut map, &idle, &translation, 1).unwrap();
    }
    // Both directions go as on the node that made the flow: to the
    // backend slot's MAC here, back to the client's MAC the record names.
    let ack = frame(svc.proto, CLIENT4, 9300, svc.vip, svc.port, TcpFlags::ACK);
    let out = expect(&lab, &ack, XDP_TX, "tx_nat");
    let want = frame(
        svc.proto,
        svc.snat,
        41_000,
        svc.backend,
        8080,
        TcpFlags::ACK,
    );
    assert_eq!(out, macs(want, BACKEND_MAC, LB_MAC));
    let reply = frame(
        svc.proto,
        svc.backend,
        8080,
        svc.snat,
        41_000,
        TcpFlags::ACK,
    );
    let out = expect(&lab, &reply, XDP_TX, "tx_nat_reply");
    let want = frame(svc.proto, svc.vip, svc.port, CLIENT4, 9300, TcpFlags::ACK);
    assert_eq!(out, macs(want, CLIENT_MAC, LB_MAC));
    // The backend leaves the pool. The copy in use learned the slot's MAC
    // on its first packet and is kept, as a flow made here would be; the
    // copy never used has no MAC to go to and is balanced again (here:
    // no backend left).
    lab.balancer.set_backends(&key_of(&svc), &[]).unwrap();
    expect(&lab, &ack, XDP_TX, "tx_nat");
    let unused = frame(svc.proto, CLIENT4, 9301, svc.vip, svc.port, TcpFlags::ACK);
    expect(&lab, &unused, XDP_DROP, "drop_no_backend");
}
