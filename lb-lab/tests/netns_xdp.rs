//! Kernel test: `lbd` attached to a veth in one network namespace, real
//! traffic from another, counters read back through the pinned map, and
//! every packet still delivered. Plus the refusals an operator can hit.
//!
//! Needs root (BPF, namespaces). `cargo xtask test` refuses to run without
//! it; nothing here skips.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use lb_common::stats::ProtoClass;
use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns},
};
use lb_user::dataplane::loader::LINK_PIN;
use lb_user::dataplane::stats::proto_stats_pinned;

static LBD: std::sync::LazyLock<std::path::PathBuf> =
    std::sync::LazyLock::new(|| lb_lab::bin("lbd"));
const PACKETS: usize = 20;
/// How long lbd may take to pin its maps.
const PIN_TIMEOUT: Duration = Duration::from_secs(15);

fn lan() -> Lan {
    let mut lan = Lan::new().expect("create LAN (run as root)");
    lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
        .unwrap();
    lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
        .unwrap();
    lan
}

/// Start `lbd ARGS` in `ns`, its output in a log file we can show on
/// failure.
fn start_lbd(ns: &Netns, args: &[&str]) -> Daemon {
    let log = std::env::temp_dir().join(format!("{}-lbd-{}.log", ns.name(), rand_suffix()));
    Daemon::spawn("lbd", ns.command(&*LBD).args(args), log).expect("start lbd")
}

/// SIGTERM, wait; its exit status and log (the log file is removed).
fn stop(mut lbd: Daemon) -> (ExitStatus, String) {
    let status = lbd.stop().unwrap();
    let log = lbd.log();
    let _ = std::fs::remove_file(lbd.log_path());
    (status, log)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Run lbd to completion and return (status, stderr).
fn lbd_once(ns: &Netns, args: &[&str]) -> (ExitStatus, String) {
    let out = ns.command(&*LBD).args(args).output().expect("run lbd");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn udp_roundtrip(lan: &Lan, dst: SocketAddr, bind: SocketAddr) -> usize {
    let server = lan
        .host("lb")
        .ns
        .run(|| {
            let s = UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .unwrap();
    lan.host("client")
        .ns
        .run(|| {
            let any: SocketAddr = if dst.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let c = UdpSocket::bind(any).unwrap();
            for i in 0..PACKETS {
                c.send_to(format!("datagram {i}").as_bytes(), dst).unwrap();
            }
        })
        .unwrap();
    let mut buf = [0u8; 64];
    (0..PACKETS)
        .take_while(|_| server.recv_from(&mut buf).is_ok())
        .count()
}

#[test]
fn lbd_counts_real_traffic_and_delivers_it() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}lb", lan.prefix()));
    let pin_dir_arg = pin_dir.to_str().unwrap();
    let lbd = start_lbd(lb, &["--iface", "eth0", "--pin-path", pin_dir_arg]);
    lbd.wait_path(&pin_dir.join(LINK_PIN), PIN_TIMEOUT).unwrap();
    let link = String::from_utf8(lb.ip(&["link", "show", "eth0"]).unwrap().stdout).unwrap();
    assert!(link.contains("xdp"), "XDP program attached to eth0: {link}");

    // IPv4 and IPv6 UDP: every datagram arrives.
    let got = udp_roundtrip(
        &lan,
        "198.18.0.2:7000".parse().unwrap(),
        "198.18.0.2:7000".parse().unwrap(),
    );
    assert_eq!(got, PACKETS, "IPv4 UDP datagrams delivered");
    let got = udp_roundtrip(
        &lan,
        "[2001:db8::2]:7000".parse().unwrap(),
        "[2001:db8::2]:7000".parse().unwrap(),
    );
    assert_eq!(got, PACKETS, "IPv6 UDP datagrams delivered");

    // TCP: a connection completes and data flows both ways.
    let listener = lb
        .run(|| TcpListener::bind("198.18.0.2:7001").unwrap())
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let echoed = lan
        .host("client")
        .ns
        .run(|| {
            let mut c = TcpStream::connect_timeout(
                &"198.18.0.2:7001".parse().unwrap(),
                Duration::from_secs(5),
            )
            .unwrap();
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            buf
        })
        .unwrap();
    server.join().unwrap();
    assert_eq!(&echoed, b"hello");

    // ICMP: pings are answered.
    lan.host("client")
        .ns
        .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"])
        .expect("ping through the XDP program");

    let stats = proto_stats_pinned(&pin_dir).expect("read pinned counters");
    print!("{}", lb_user::dataplane::stats::format_proto_stats(&stats));
    let pass = |c: ProtoClass| stats[c as usize].pass;
    assert!(
        pass(ProtoClass::Ipv4Udp) >= PACKETS as u64,
        "ipv4-udp counted"
    );
    assert!(
        pass(ProtoClass::Ipv6Udp) >= PACKETS as u64,
        "ipv6-udp counted"
    );
    assert!(
        pass(ProtoClass::Ipv4Tcp) >= 3,
        "ipv4-tcp counted (handshake, data, ack)"
    );
    assert!(
        pass(ProtoClass::Ipv4Other) >= 3,
        "ipv4-other counted (ICMP echo)"
    );
    assert!(pass(ProtoClass::NonIp) >= 1, "non-ip counted (ARP)");
    assert!(
        stats.iter().all(|c| c.total() == c.pass),
        "the foundation program only passes: {stats:?}"
    );

    // bpftool prints the counters with their field names (BTF).
    let dump = Command::new("bpftool")
        .args(["map", "dump", "pinned"])
        .arg(pin_dir.join("stats_proto"))
        .output()
        .expect("run bpftool");
    let dump = String::from_utf8_lossy(&dump.stdout);
    for field in [
        "\"pass\": ",
        "\"drop\": ",
        "\"tx\": ",
        "\"redirect\": ",
        "\"aborted\": ",
    ] {
        assert!(dump.contains(field), "bpftool shows field {field}:\n{dump}");
    }

    let (exit_status, log) = stop(lbd);
    println!("{log}");
    assert!(
        exit_status.success(),
        "lbd exits 0 on SIGTERM: {exit_status}\n{log}"
    );
    assert!(log.contains("detached lb_xdp from eth0"), "{log}");
    assert!(!pin_dir.exists(), "pins removed on exit");
    let link = String::from_utf8(lb.ip(&["link", "show", "eth0"]).unwrap().stdout).unwrap();
    assert!(!link.contains("xdp"), "XDP detached on exit: {link}");
}

#[test]
fn lbd_refuses_with_a_reason() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let pin_dir = format!("/sys/fs/bpf/{}lb", lan.prefix());
    let other_pin = format!("/sys/fs/bpf/{}other", lan.prefix());

    let (status, err) = lbd_once(lb, &["--iface", "nosuch0", "--pin-path", &pin_dir]);
    assert!(
        !status.success() && err.contains("interface \"nosuch0\" does not exist"),
        "{err}"
    );

    let (status, err) = lbd_once(
        lb,
        &[
            "--iface",
            "eth0",
            "--pin-path",
            &format!("/tmp/{}notbpf", lan.prefix()),
        ],
    );
    assert!(
        !status.success() && err.contains("is not on a bpffs") && err.contains("mount -t bpf"),
        "{err}"
    );

    let unprivileged = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&*LBD)
        .args(["--iface", "lo", "--pin-path", &pin_dir])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&unprivileged.stderr);
    assert!(
        !unprivileged.status.success() && err.contains("lbd needs root") && err.contains("CAP_BPF"),
        "{err}"
    );

    let first = start_lbd(lb, &["--iface", "eth0", "--pin-path", &pin_dir]);
    first
        .wait_path(&Path::new(&pin_dir).join(LINK_PIN), PIN_TIMEOUT)
        .unwrap();

    let (status, err) = lbd_once(lb, &["--iface", "eth0", "--pin-path", &other_pin]);
    assert!(
        !status.success() && err.contains("already has XDP program") && err.contains("--replace"),
        "{err}"
    );
    assert!(
        !Path::new(&other_pin).exists(),
        "a refused lbd leaves no pin directory"
    );

    let (status, err) = lbd_once(lb, &["--iface", "eth0", "--pin-path", &pin_dir]);
    assert!(
        !status.success() && err.contains("in use by another lbd"),
        "{err}"
    );

    let (status, log) = stop(first);
    assert!(status.success(), "{log}");
}

#[test]
fn lbd_replace_takes_over_a_netlink_attached_program() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}lb", lan.prefix()));
    // Attach lb's own object with iproute2 (netlink, no BPF link), as an
    // operator's earlier experiment might have.
    let obj = std::env::temp_dir().join(format!("{}lb-ebpf.o", lan.prefix()));
    std::fs::write(&obj, lb_user::EBPF_OBJ).unwrap();
    let attached = lb.ip(&[
        "link",
        "set",
        "dev",
        "eth0",
        "xdpgeneric",
        "obj",
        obj.to_str().unwrap(),
        "sec",
        "xdp",
    ]);
    let _ = std::fs::remove_file(&obj);
    attached.expect("ip link set xdpgeneric obj");

    let (status, err) = lbd_once(
        lb,
        &["--iface", "eth0", "--pin-path", pin_dir.to_str().unwrap()],
    );
    assert!(
        !status.success() && err.contains("attached in generic mode"),
        "{err}"
    );

    let lbd = start_lbd(
        lb,
        &[
            "--iface",
            "eth0",
            "--pin-path",
            pin_dir.to_str().unwrap(),
            "--replace",
        ],
    );
    lbd.wait_path(&pin_dir.join(LINK_PIN), PIN_TIMEOUT).unwrap();
    let (status, log) = stop(lbd);
    assert!(status.success(), "{log}");
    assert!(log.contains("--replace: detached XDP program"), "{log}");
}
