//! Kernel test: `lbgen`, the traffic generator for real NICs, over a veth
//! (two namespaces, `gen` and `recv`; GRO on at the receiver so a veth
//! hands it XDP-transmitted frames). The receiver's own stack judges the
//! frames: every one is counted (exact counts), TCP and UDP checksums
//! verified (no checksum errors), and the flows vary as asked (distinct
//! client ports and addresses seen by a UDP socket). The rate limit holds.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lb_lab::netns::{Netns, veth_between};

static LBGEN: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbgen"));

struct Pair {
    gen_ns: Netns,
    recv: Netns,
    recv_mac: String,
}

fn pair(tag: &str) -> Pair {
    let id = std::process::id() % 100_000;
    let gen_ns = Netns::create(&format!("lbgen-g{tag}{id}")).expect("create netns (run as root)");
    let recv = Netns::create(&format!("lbgen-r{tag}{id}")).unwrap();
    veth_between(&gen_ns, &recv).unwrap();
    gen_ns
        .ip(&["addr", "add", "198.18.0.1/24", "dev", "eth0"])
        .unwrap();
    gen_ns
        .ip(&["addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
        .unwrap();
    recv.ip(&["addr", "add", "198.18.0.2/24", "dev", "eth0"])
        .unwrap();
    recv.ip(&["addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"])
        .unwrap();
    // The clients' addresses vary in their low 16 bits: reachable, not
    // filtered as martians.
    recv.ip(&["route", "add", "198.18.0.0/15", "dev", "eth0"])
        .unwrap();
    for kv in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.eth0.rp_filter=0",
    ] {
        recv.exec("sysctl", &["-qw", kv]).unwrap();
    }
    recv.exec("ethtool", &["-K", "eth0", "gro", "on"]).unwrap();
    let mac = recv
        .run(|| lb_lab::nic::iface_mac("eth0"))
        .unwrap()
        .unwrap();
    let recv_mac = mac.map(|b| format!("{b:02x}")).join(":");
    Pair {
        gen_ns,
        recv,
        recv_mac,
    }
}

impl Pair {
    /// lbgen in the generator's namespace, sending to the receiver.
    fn command(&self, args: &[&str]) -> std::process::Output {
        self.gen_ns
            .command(&*LBGEN)
            .args(["--iface", "eth0", "--dst-mac", &self.recv_mac])
            .args(args)
            .output()
            .unwrap()
    }

    fn lbgen(&self, args: &[&str]) -> String {
        let out = self.command(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lbgen {args:?}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("lbgen {}: {stdout}", args.join(" "));
        stdout
    }

    /// A counter of the receiver's `/proc/net/snmp` (or `snmp6`): `Tcp`
    /// `InSegs`, ...
    fn snmp(&self, file: &str, group: &str, name: &str) -> u64 {
        let out = self
            .recv
            .exec("cat", &[&format!("/proc/net/{file}")])
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        if file == "snmp6" {
            return text
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(char::is_whitespace)?;
                    (k == format!("{group}{name}")).then(|| v.trim().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no {group}{name} in {file}"));
        }
        let mut rows = text.lines().filter(|l| l.starts_with(&format!("{group}:")));
        let (head, values) = (rows.next().unwrap(), rows.next().unwrap());
        let i = head
            .split_whitespace()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {group} {name}"));
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    }
}

/// The count settles once the receiver's stack has taken every frame.
fn settled(read: impl Fn() -> u64, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = read();
        if got >= want || Instant::now() > deadline {
            std::thread::sleep(Duration::from_millis(100));
            return read();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// IPv4 UDP over 16 flows, rate-limited: every datagram reaches the
/// socket, with a right checksum, from 16 distinct client endpoints.
#[test]
fn udp_frames_arrive_exactly_with_their_flows_and_rate() {
    let p = pair("u");
    let socket = p
        .recv
        .run(|| UdpSocket::bind("198.18.0.2:9000").unwrap())
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Room for the bursts (lbgen sends 50 ms' worth at once).
    let size: libc::c_int = 16 << 20;
    // SAFETY: a valid socket and an int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE");
    let errors = p.snmp("snmp", "Udp", "InCsumErrors");
    let (count, rate) = (20_000u64, 40_000u64);
    let reader = std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        let mut got = 0u64;
        let mut buf = [0u8; 128];
        while let Ok((_, from)) = socket.recv_from(&mut buf) {
            got += 1;
            seen.insert(from);
        }
        (got, seen)
    });
    let start = Instant::now();
    let report = p.lbgen(&[
        "--src",
        "198.18.0.1",
        "--dst",
        "198.18.0.2",
        "--dport",
        "9000",
        "--flows",
        "16",
        "--count",
        "20000",
        "--rate",
        "40000",
    ]);
    let took = start.elapsed();
    let (got, seen) = reader.join().unwrap();
    assert!(report.contains("sent 20000 frames"), "{report}");
    assert_eq!(got, count, "{report}");
    assert_eq!(p.snmp("snmp", "Udp", "InCsumErrors") - errors, 0);
    let ports: BTreeSet<u16> = seen.iter().map(SocketAddr::port).collect();
    assert_eq!(seen.len(), 16, "{seen:?}");
    assert_eq!(ports.len(), 16, "{ports:?}");
    // 20,000 at 40,000/s: half a second, not much more (process start and
    // the object's load included).
    let want = Duration::from_secs_f64(count as f64 / rate as f64);
    assert!(
        took >= want.mul_f64(0.9) && took < want + Duration::from_secs(2),
        "took {took:?} for {want:?}"
    );
}

/// IPv6 TCP (96-byte frames), a new flow every frame: every segment is
/// taken by the receiver's TCP with a right checksum.
#[test]
fn tcp_over_ipv6_with_a_new_flow_every_frame_arrives_exactly() {
    let p = pair("t");
    let (segs, errors) = (
        p.snmp("snmp", "Tcp", "InSegs"),
        p.snmp("snmp", "Tcp", "InCsumErrors"),
    );
    let report = p.lbgen(&[
        "--src",
        "2001:db8::1",
        "--dst",
        "2001:db8::2",
        "--dport",
        "9000",
        "--proto",
        "tcp",
        "--flows",
        "new",
        "--count",
        "10000",
        "--rate",
        "50000",
    ]);
    assert!(report.contains("frames of 96 bytes"), "{report}");
    let got = settled(|| p.snmp("snmp", "Tcp", "InSegs") - segs, 10_000);
    assert_eq!(got, 10_000, "{report}");
    assert_eq!(p.snmp("snmp", "Tcp", "InCsumErrors") - errors, 0);
}

/// Bad options are refused with what is wrong.
#[test]
fn bad_options_say_what_is_wrong() {
    let p = pair("b");
    // Each case: a valid base (IPv4, one flow) with one thing wrong, or
    // its own arguments where the base itself is what is wrong.
    let base = ["--src", "198.18.0.1", "--dst", "198.18.0.2", "--dport", "1"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--src",
                "198.18.0.1",
                "--dst",
                "2001:db8::2",
                "--dport",
                "1",
            ],
            "one address family",
        ),
        (with(&["--proto", "icmp"]), "udp or tcp"),
        (with(&["--size", "200"]), "--size 200"),
        (with(&["--flows", "many"]), "`new`"),
    ];
    for (args, want) in &cases {
        let out = p.command(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}

/// lbgen against an lbd (dsr, XDP native on the receiving veth), reading
/// its counters over its metrics endpoint: lbd forwarded every frame sent,
/// and the report says so with its program's and CPUs' figures.
#[test]
fn lbgen_reads_what_a_remote_lbd_forwarded() {
    use lb_user::config::{
        BackendConfig, Config, Dataplane, Global, Health, HealthKind, Mode, Protocol, Service,
        XdpMode,
    };
    let p = pair("m");
    // The backend is the generator's host (lbd sends the frames back to it).
    p.gen_ns
        .ip(&["addr", "add", "198.18.0.11/24", "dev", "eth0"])
        .unwrap();
    let dir = std::env::temp_dir().join(format!("lbgen-lbd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config {
        global: Global {
            router_id: Some("lbgen-test".into()),
            bpf_pin_path: format!("/sys/fs/bpf/lbgen{}", std::process::id()).into(),
            control_socket: dir.join("lbd.sock"),
            metrics_listen: Some("198.18.0.2:9680".parse().unwrap()),
        },
        dataplane: Some(Dataplane {
            xdp_mode: XdpMode::Native,
            ..Dataplane::new("eth0")
        }),
        service: vec![Service {
            protocol: Protocol::Udp,
            mode: Mode::Dsr,
            health: Health {
                kind: HealthKind::None,
                ..Health::default()
            },
            ..Service::new(
                "198.18.0.100".parse().unwrap(),
                9000,
                vec![BackendConfig::new("198.18.0.11".parse().unwrap())],
            )
        }],
        ..Config::default()
    };
    let conf = dir.join("lb.toml");
    std::fs::write(&conf, config.to_toml().unwrap()).unwrap();
    let lbd_bin = lb_lab::bin("lbd");
    let mut cmd = p.recv.command(&lbd_bin);
    cmd.arg("--config").arg(&conf);
    let lbd = lb_lab::daemon::Daemon::spawn("lbd", &mut cmd, dir.join("lbd.log")).unwrap();
    lbd.wait_log("service active", Duration::from_secs(15))
        .unwrap();
    // Once the backend's MAC is known, it is in the pool.
    let lbctl = lb_lab::bin("lbctl");
    let in_pool = || {
        let out = std::process::Command::new(&lbctl)
            .arg("--socket")
            .arg(dir.join("lbd.sock"))
            .args(["--json", "backends"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("\"in_pool\": true")
            .then_some(())
    };
    let ok = lb_lab::netns::wait_for(Duration::from_secs(10), in_pool);
    assert!(ok.is_some(), "{}", lbd.log());
    let report = p.lbgen(&[
        "--src",
        "198.18.0.1",
        "--dst",
        "198.18.0.100",
        "--dport",
        "9000",
        "--count",
        "30000",
        "--rate",
        "60000",
        "--metrics",
        "http://198.18.0.2:9680/metrics",
    ]);
    assert!(
        report.contains("lbd forwarded 30000 packets"),
        "{report}\n{}",
        lbd.log()
    );
    assert!(report.contains("% in softirq"), "{report}");
    drop(lbd);
    let _ = std::fs::remove_dir_all(&dir);
}
