//! Kernel test: crafted frames through the XDP program with
//! `BPF_PROG_TEST_RUN`. For each fixture: the verdict, the output bytes, and
//! exactly one counter increment in the right protocol class.
//!
//! Needs root (BPF). `cargo xtask test` refuses to run without it; nothing
//! here skips.

use std::net::IpAddr;

use aya::{
    Ebpf,
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp},
};
use lb_common::stats::{ProtoClass, VerdictCounters};
use lb_lab::testpkt::{FrameSpec, L4};
use lb_user::{dataplane::loader::PROGRAM, dataplane::stats::proto_stats_of};

const XDP_PASS: u32 = 2;

fn v4(last: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, last])
}
fn v6(last: u16) -> IpAddr {
    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, last])
}

struct Fixture {
    description: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    class: ProtoClass,
}

fn fixture(description: &'static str, frame: Vec<u8>, class: ProtoClass) -> Fixture {
    Fixture {
        description,
        frame,
        verdict: XDP_PASS,
        class,
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "a table-driven list of fixtures, one entry per case"
)]
fn fixtures() -> Vec<Fixture> {
    let tcp = L4::Tcp {
        src: 40000,
        dst: 80,
    };
    let udp = L4::Udp {
        src: 40000,
        dst: 53,
    };
    let tcp4 = FrameSpec::new(v4(1), v4(100), tcp);
    let tcp6 = FrameSpec::new(v6(1), v6(100), tcp);
    let mut vlan = tcp4.clone();
    vlan.vlan = Some(42);
    let mut vlan6 = FrameSpec::new(v6(1), v6(100), udp);
    vlan6.vlan = Some(7);
    let mut options = tcp4.clone();
    // Two words: NOP, NOP, NOP, EOL and a Router Alert (0x94 04 0000).
    options.ipv4_options = vec![1, 1, 1, 0, 0x94, 4, 0, 0];
    let good4 = tcp4.build();

    let mut fragment = good4.clone();
    fragment[14 + 6] = 0x00; // offset 185 * 8, no MF: a non-first fragment
    fragment[14 + 7] = 0xb9;
    let mut first_fragment = good4.clone();
    first_fragment[14 + 6] = 0x20; // MF set, offset 0: carries the TCP header

    let mut ihl_too_small = good4.clone();
    ihl_too_small[14] = 0x44;
    let mut total_len_short = good4.clone();
    total_len_short[14 + 2..14 + 4].copy_from_slice(&12u16.to_be_bytes());
    let mut bad_version = good4.clone();
    bad_version[14] = 0x65;
    let mut tcp_doff_small = good4.clone();
    tcp_doff_small[14 + 20 + 12] = 0x40;
    let mut options_cut = options.build();
    options_cut.truncate(14 + 24); // IHL says 28 bytes, 24 present
    let mut garbage = vec![0xA5u8; 64];
    garbage[12..14].copy_from_slice(&0x0800u16.to_be_bytes());

    vec![
        fixture("IPv4 TCP", good4.clone(), ProtoClass::Ipv4Tcp),
        fixture(
            "IPv4 UDP",
            FrameSpec::new(v4(1), v4(100), udp).build(),
            ProtoClass::Ipv4Udp,
        ),
        fixture("IPv6 TCP", tcp6.build(), ProtoClass::Ipv6Tcp),
        fixture(
            "IPv6 UDP",
            FrameSpec::new(v6(1), v6(100), udp).build(),
            ProtoClass::Ipv6Udp,
        ),
        fixture(
            "IPv4 ICMP",
            FrameSpec::new(v4(1), v4(100), L4::Other(1)).build(),
            ProtoClass::Ipv4Other,
        ),
        fixture(
            "IPv6 ICMPv6",
            FrameSpec::new(v6(1), v6(100), L4::Other(58)).build(),
            ProtoClass::Ipv6Other,
        ),
        fixture("802.1Q-tagged IPv4 TCP", vlan.build(), ProtoClass::Ipv4Tcp),
        fixture("802.1Q-tagged IPv6 UDP", vlan6.build(), ProtoClass::Ipv6Udp),
        fixture(
            "IPv4 with 8 bytes of options, TCP",
            options.build(),
            ProtoClass::Ipv4Tcp,
        ),
        fixture("IPv4 non-first fragment", fragment, ProtoClass::Ipv4Other),
        fixture(
            "IPv4 first fragment (MF)",
            first_fragment,
            ProtoClass::Ipv4Tcp,
        ),
        fixture(
            "ARP",
            lb_lab::testpkt::ethernet(pnet_packet::ethernet::EtherTypes::Arp, None, &[0; 28]),
            ProtoClass::NonIp,
        ),
        fixture(
            "Ethernet header only, IPv4 type",
            good4[..14].to_vec(),
            ProtoClass::Malformed,
        ),
        fixture(
            "IPv4 header cut at 19 bytes",
            good4[..14 + 19].to_vec(),
            ProtoClass::Malformed,
        ),
        fixture(
            "TCP header cut at 10 bytes",
            good4[..14 + 20 + 10].to_vec(),
            ProtoClass::Malformed,
        ),
        fixture(
            "IPv6 header cut at 39 bytes",
            tcp6.build()[..14 + 39].to_vec(),
            ProtoClass::Malformed,
        ),
        fixture(
            "UDP header cut at 7 bytes",
            FrameSpec::new(v4(1), v4(100), udp).build()[..14 + 20 + 7].to_vec(),
            ProtoClass::Malformed,
        ),
        fixture(
            "VLAN tag cut short",
            vlan.build()[..16].to_vec(),
            ProtoClass::Malformed,
        ),
        fixture("IPv4 IHL 4", ihl_too_small, ProtoClass::Malformed),
        fixture(
            "IPv4 total length < header",
            total_len_short,
            ProtoClass::Malformed,
        ),
        fixture(
            "IPv4 ethertype, version 6 in header",
            bad_version,
            ProtoClass::Malformed,
        ),
        fixture("TCP data offset 4", tcp_doff_small, ProtoClass::Malformed),
        fixture("IPv4 options cut short", options_cut, ProtoClass::Malformed),
        fixture(
            "64 bytes of garbage with IPv4 type",
            garbage,
            ProtoClass::Malformed,
        ),
    ]
}

fn load() -> Ebpf {
    let mut ebpf = Ebpf::load(lb_user::EBPF_OBJ).expect("load BPF object (run as root)");
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM)
        .expect("program in object")
        .try_into()
        .expect("XDP program");
    program.load().expect("verifier accepts the program");
    ebpf
}

fn run(
    ebpf: &Ebpf,
    frame: &[u8],
    out: &mut [u8],
) -> Result<aya::programs::TestRunResult, ProgramError> {
    let program: &Xdp = ebpf.program(PROGRAM).unwrap().try_into().unwrap();
    program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(out),
        ..TestRunOptions::default()
    })
}

#[test]
fn fixtures_verdicts_output_and_counters() {
    let ebpf = load();
    let mut failures = Vec::new();
    for f in fixtures() {
        let before = proto_stats_of(&ebpf).unwrap();
        let mut out = vec![0u8; f.frame.len() + 256];
        let result = run(&ebpf, &f.frame, &mut out)
            .unwrap_or_else(|e| panic!("{}: BPF_PROG_TEST_RUN failed: {e}", f.description));
        let after = proto_stats_of(&ebpf).unwrap();
        let out = &out[..result.data_size_out as usize];

        let mut expected = before;
        let c = &mut expected[f.class as usize];
        *c = c.add(VerdictCounters {
            pass: 1,
            ..Default::default()
        });
        let ok = result.return_value == f.verdict && out == f.frame.as_slice() && after == expected;
        println!(
            "{:<40} verdict {} (want {}), output {} bytes {}, counted as {}",
            f.description,
            result.return_value,
            f.verdict,
            out.len(),
            if out == f.frame.as_slice() {
                "unchanged"
            } else {
                "CHANGED"
            },
            ProtoClass::ALL
                .iter()
                .find(|c| after[**c as usize] != before[**c as usize])
                .map_or("nothing", |c| c.name()),
        );
        if !ok {
            failures.push(f.description);
        }
    }
    assert!(failures.is_empty(), "fixtures failed: {failures:?}");
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_kernel() {
    // BPF_PROG_TEST_RUN rejects XDP input shorter than ETH_HLEN before the
    // program runs; the program's own bounds checks cover the rest.
    let ebpf = load();
    for len in [0usize, 1, 13] {
        let frame = vec![0u8; len];
        let mut out = vec![0u8; 64];
        let err = run(&ebpf, &frame, &mut out).expect_err("kernel must refuse short input");
        assert!(
            err.to_string().contains("bpf_prog_test_run")
                || matches!(err, ProgramError::SyscallError(_)),
            "{len}: {err}"
        );
    }
    let stats = proto_stats_of(&ebpf).unwrap();
    assert!(
        stats.iter().all(|c| c.total() == 0),
        "nothing counted for refused input"
    );
}
