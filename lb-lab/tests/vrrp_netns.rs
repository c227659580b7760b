//! Kernel test: VRRP between real processes in network namespaces joined by
//! a bridge: two `lbd` nodes, and `lbd` against keepalived 2.2.7.
//!
//! Who holds a VIP is checked with `ip addr` in each namespace, who is
//! master with each daemon's log. Adverts are decoded by tshark. Crafted
//! bad adverts (TTL 64, bad checksum, wrong password, other VIP list) come
//! from a third namespace and must be ignored and counted.
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
};
use lb_user::{
    config::{
        Config, Dur, Global, TrackInterface, TrackScript, VrrpInstance, VrrpScript, VrrpSyncGroup,
        VrrpTrackFile, VrrpTrackProcess,
    },
    vrrp::wire::{Auth, Family, Kind, Repr},
};

static LBD: std::sync::LazyLock<std::path::PathBuf> =
    std::sync::LazyLock::new(|| lb_lab::bin("lbd"));
const VIP: &str = "198.18.0.100";

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lb-vrrp-{}-{name}", std::process::id()))
}

/// lbd in `ns` with `config` (plus a control socket of its own), its log
/// in a file.
fn lbd(ns: &Netns, name: &str, config: Config) -> Daemon {
    let conf = tmp(&format!("{name}.toml"));
    // Each lbd its own control socket (the default is one per host).
    let config = Config {
        global: Global {
            control_socket: tmp(&format!("{name}.sock")),
            ..Global::default()
        },
        ..config
    };
    std::fs::write(&conf, config.to_toml().unwrap()).unwrap();
    let mut cmd = ns.command(&*LBD);
    cmd.arg("--config").arg(&conf).env("LB_LOG", "info");
    Daemon::spawn(name, &mut cmd, tmp(&format!("{name}.log"))).expect("start lbd")
}

/// keepalived (VRRP only) in `ns` with `config`, its log in a file.
fn keepalived(ns: &Netns, name: &str, config: &str) -> Daemon {
    let conf = tmp(&format!("{name}.conf"));
    std::fs::write(&conf, config).unwrap();
    let mut cmd = ns.command("keepalived");
    cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
        .arg("--use-file")
        .arg(&conf)
        .arg("--pid")
        .arg(tmp(&format!("{name}.pid")))
        .arg("--vrrp_pid")
        .arg(tmp(&format!("{name}.vrrp.pid")));
    Daemon::spawn(name, &mut cmd, tmp(&format!("{name}.log")))
        .expect("start keepalived (apt-get install keepalived)")
}

/// SIGTERM and wait: a clean stop (lbd exits 0).
fn stop(daemon: &mut Daemon) {
    let status = daemon.stop().unwrap();
    assert!(
        status.success() || daemon.name().starts_with("ka"),
        "{} exited {status}:\n{}",
        daemon.name(),
        daemon.log()
    );
}

fn has_vip(ns: &Netns, vip: &str) -> bool {
    let out = ns.ip(&["-br", "addr", "show", "eth0"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(vip))
}

/// Wait until exactly `holder` of `nodes` has `vip`; the time it took.
fn wait_holder(nodes: &[&Netns], holder: usize, vip: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let ok = wait_for(timeout, || {
        nodes
            .iter()
            .enumerate()
            .all(|(i, ns)| has_vip(ns, vip) == (i == holder))
            .then_some(())
    });
    let state: Vec<bool> = nodes.iter().map(|ns| has_vip(ns, vip)).collect();
    assert!(
        ok.is_some(),
        "expected node {holder} alone to hold {vip} within {timeout:?}; holders: {state:?}"
    );
    start.elapsed()
}

fn two_nodes() -> Lan {
    let mut lan = Lan::new().unwrap();
    lan.add_host("a", "198.18.0.1/24", "2001:db8::1/64")
        .unwrap();
    lan.add_host("b", "198.18.0.2/24", "2001:db8::2/64")
        .unwrap();
    lan
}

/// A VRRP-only configuration of `instances`.
fn vrrp(instances: impl IntoIterator<Item = VrrpInstance>) -> Config {
    Config {
        vrrp_instance: instances.into_iter().collect(),
        ..Config::default()
    }
}

/// Instance `name` on eth0 holding `vips` (/24), advertising every 100 ms.
fn fast(name: &str, vrid: u8, priority: u8, vips: &[&str]) -> VrrpInstance {
    let vips = vips.iter().map(|v| format!("{v}/24")).collect();
    VrrpInstance {
        priority,
        advert_interval: Dur(Duration::from_millis(100)),
        ..VrrpInstance::new(name, "eth0", vrid, vips)
    }
}

/// Instance `name` holding the VIP, VRRPv2 with `auth_pass` `pass`,
/// advertising every second.
fn v2(name: &str, vrid: u8, priority: u8, pass: &str) -> VrrpInstance {
    VrrpInstance {
        version: 2,
        advert_interval: Dur(Duration::from_secs(1)),
        auth_pass: Some(pass.into()),
        ..fast(name, vrid, priority, &[VIP])
    }
}

#[test]
fn election_crash_failover_restart_and_clean_release() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let mut da = lbd(a, "elect-a", vrrp([fast("VI_1", 50, 150, &[VIP])]));
    let db = lbd(b, "elect-b", vrrp([fast("VI_1", 50, 100, &[VIP])]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    db.wait_log("to=BACKUP", Duration::from_secs(2)).unwrap();

    // Crash: the backup takes over after Master_Down_Interval. The dead
    // master's address stays on its interface (nothing ran to remove it).
    da.kill().unwrap();
    let start = Instant::now();
    let ok = wait_for(Duration::from_secs(3), || has_vip(b, VIP).then_some(()));
    assert!(ok.is_some(), "backup did not take over:\n{}", db.log());
    let took = start.elapsed();
    // 3 × 100 ms + skew (≈ 61 ms at priority 100) + polling slack.
    assert!(took < Duration::from_millis(800), "takeover took {took:?}");

    // Restart: the stale tagged VIP is removed, then A preempts (higher
    // priority, preempt on by default).
    let mut da = lbd(a, "elect-a2", vrrp([fast("VI_1", 50, 150, &[VIP])]));
    da.wait_log("removed VIP left by an earlier run", Duration::from_secs(3))
        .unwrap();
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(3));
    da.wait_log("preempting lower-priority master", Duration::from_secs(1))
        .unwrap();

    // Clean stop: priority 0 advert, B takes over after its skew time
    // (≈ 61 ms), not after a Master_Down_Interval.
    stop(&mut da);
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(2));
    db.wait_log("released (priority 0)", Duration::from_secs(1))
        .unwrap();
    let log = da.log();
    assert!(log.contains("from=MASTER to=INIT"), "{log}");
}

#[test]
fn nopreempt_and_preempt_delay() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let _db = lbd(b, "np-b", vrrp([fast("VI_1", 60, 100, &[VIP])]));
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(5));

    // nopreempt: a higher priority node joins and stays backup.
    let mut da = lbd(
        a,
        "np-a",
        vrrp([VrrpInstance {
            preempt: false,
            ..fast("VI_1", 60, 200, &[VIP])
        }]),
    );
    da.wait_log("to=BACKUP", Duration::from_secs(2)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        has_vip(b, VIP) && !has_vip(a, VIP),
        "nopreempt: B keeps the VIP"
    );
    stop(&mut da);

    // preempt_delay = 1s: A takes over, but not before the delay.
    let start = Instant::now();
    let _da = lbd(
        a,
        "pd-a",
        vrrp([VrrpInstance {
            preempt_delay: Some(Dur(Duration::from_secs(1))),
            ..fast("VI_1", 60, 200, &[VIP])
        }]),
    );
    let took = wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    let since = start.elapsed();
    assert!(
        since >= Duration::from_secs(1),
        "preempted after {since:?}, before the 1 s delay"
    );
    assert!(took < Duration::from_secs(3), "preempt took {took:?}");
}

#[test]
fn failing_track_script_moves_mastership() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let flag = tmp("track-flag");
    std::fs::write(&flag, "ok").unwrap();
    let script = VrrpScript {
        interval: Some(Dur(Duration::from_millis(100))),
        weight: -100,
        fall: 2,
        rise: 2,
        ..VrrpScript::new("chk", format!("test -e {}", flag.display()))
    };
    let conf_a = Config {
        vrrp_script: vec![script],
        ..vrrp([VrrpInstance {
            track_script: vec![TrackScript::new("chk")],
            ..fast("VI_1", 70, 150, &[VIP])
        }])
    };
    let da = lbd(a, "track-a", conf_a);
    let _db = lbd(b, "track-b", vrrp([fast("VI_1", 70, 100, &[VIP])]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));

    std::fs::remove_file(&flag).unwrap();
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(5));
    da.wait_log("effective priority changed", Duration::from_secs(1))
        .unwrap();

    std::fs::write(&flag, "ok").unwrap();
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    let _ = std::fs::remove_file(&flag);
}

#[test]
fn dual_master_with_two_instances() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let v1 = "198.18.0.101";
    let v2 = "198.18.0.102";
    let conf = |p1, p2| vrrp([fast("VI_1", 81, p1, &[v1]), fast("VI_2", 82, p2, &[v2])]);
    let mut da = lbd(a, "dual-a", conf(150, 100));
    let _db = lbd(b, "dual-b", conf(100, 150));
    wait_holder(&[a, b], 0, v1, Duration::from_secs(5));
    wait_holder(&[a, b], 1, v2, Duration::from_secs(5));
    // A crashes: B takes VI_1 over and keeps VI_2. (A's copy of v1 stays
    // on its interface: nothing ran to remove it.)
    da.kill().unwrap();
    let ok = wait_for(Duration::from_secs(3), || has_vip(b, v1).then_some(()));
    assert!(ok.is_some(), "B did not take over VI_1");
    assert!(has_vip(b, v2));
}

fn keepalived_conf(version: u8, priority: u8, auth: &str) -> String {
    let (interval, auth) = if version == 2 {
        (
            "1",
            format!("  authentication {{\n    auth_type PASS\n    auth_pass {auth}\n  }}\n"),
        )
    } else {
        ("0.1", String::new())
    };
    format!(
        "global_defs {{\n  router_id ka\n  vrrp_version {version}\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 90\n  \
         priority {priority}\n  advert_int {interval}\n{auth}  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
    )
}

fn lbd_peer_conf(version: u8, priority: u8, auth: &str) -> Config {
    vrrp([if version == 2 {
        v2("VI_1", 90, priority, auth)
    } else {
        fast("VI_1", 90, priority, &[VIP])
    }])
}

fn interop(version: u8) {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let wait = if version == 2 { 8 } else { 4 };
    let wait = Duration::from_secs(wait);
    // lbd master (150), keepalived backup (100).
    let mut da = lbd(
        a,
        &format!("ka{version}-lbd"),
        lbd_peer_conf(version, 150, "secret12"),
    );
    // keepalived joins an established master (started together, it may
    // time out waiting for adverts first and be master for a moment).
    da.wait_log("to=MASTER", wait).unwrap();
    let mut kb = keepalived(
        b,
        &format!("ka{version}-ka"),
        &keepalived_conf(version, 100, "secret12"),
    );
    wait_holder(&[a, b], 0, VIP, wait);
    kb.wait_log("Entering BACKUP STATE", wait).unwrap();
    da.wait_log("to=MASTER", wait).unwrap();
    std::thread::sleep(Duration::from_secs(if version == 2 { 3 } else { 1 }));
    // Still stable, and keepalived never complained about our adverts.
    wait_holder(&[a, b], 0, VIP, Duration::from_millis(100));
    let klog = kb.log();
    assert!(
        !klog.contains("Entering MASTER STATE"),
        "keepalived became master:\n{klog}"
    );
    // keepalived logs every advert it discards ("Invalid VRRPv3 checksum",
    // "bad ttl", "received an invalid passwd", "ip address associated with
    // VRID ... not present"): none of those for ours.
    let lower = klog.to_lowercase();
    for bad in ["invalid", "bad ttl", "passwd", "not present", "mismatch"] {
        assert!(
            !lower.contains(bad),
            "keepalived complained ({bad}):\n{klog}"
        );
    }
    // lbd stops cleanly (priority 0): keepalived takes over.
    stop(&mut da);
    wait_holder(&[a, b], 1, VIP, wait);
    kb.wait_log("Entering MASTER STATE", wait).unwrap();

    // keepalived master (200), lbd backup (100): lbd stays backup.
    stop(&mut kb);
    let _kb = keepalived(
        b,
        &format!("ka{version}-ka2"),
        &keepalived_conf(version, 200, "secret12"),
    );
    wait_holder(&[a, b], 1, VIP, wait);
    let db = lbd(
        a,
        &format!("ka{version}-lbd2"),
        lbd_peer_conf(version, 100, "secret12"),
    );
    db.wait_log("to=BACKUP", wait).unwrap();
    std::thread::sleep(Duration::from_secs(if version == 2 { 4 } else { 1 }));
    wait_holder(&[a, b], 1, VIP, Duration::from_millis(100));
    let log = db.log();
    assert!(
        !log.contains("to=MASTER"),
        "lbd became master against keepalived:\n{log}"
    );
    assert!(
        !log.contains("rejected advert"),
        "lbd rejected keepalived's adverts:\n{log}"
    );
    assert!(
        !log.contains("dropped VRRP packet"),
        "lbd dropped keepalived's adverts:\n{log}"
    );
}

#[test]
fn keepalived_interop_v3() {
    interop(3);
}

#[test]
fn keepalived_interop_v2_pass() {
    interop(2);
}

#[test]
fn tshark_decodes_lbd_adverts_as_good() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let da = lbd(a, "tshark-a", vrrp([fast("VI_1", 55, 150, &[VIP])]));
    da.wait_log("to=MASTER", Duration::from_secs(5)).unwrap();
    let pcap = tmp("adverts.pcap");
    let cap = b
        .command("tshark")
        .args(["-i", "eth0", "-f", "ip proto 112", "-a", "duration:2", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run tshark (apt-get install tshark)");
    assert!(cap.success(), "tshark capture failed");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=,"])
        .args([
            "-e",
            "vrrp.checksum.status",
            "-e",
            "ip.ttl",
            "-e",
            "vrrp.prio",
        ])
        .args([
            "-e",
            "vrrp.short_adver_int",
            "-e",
            "vrrp.virt_rtr_id",
            "-e",
            "vrrp.ip_addr",
        ])
        .args(["-e", "ip.dst"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        rows.len() >= 10,
        "expected ~20 adverts in 2 s at 100 ms, got:\n{text}"
    );
    for row in rows {
        assert_eq!(
            row, "1,255,150,10,55,198.18.0.100,224.0.0.18",
            "tshark fields"
        );
    }
    let _ = std::fs::remove_file(&pcap);
}

/// Send a crafted VRRP datagram from `ns` with the given TTL.
fn send_raw(ns: &Netns, src: Ipv4Addr, ttl: u8, payload: Vec<u8>) {
    ns.run(move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .unwrap();
        s.bind(&SocketAddrV4::new(src, 0).into()).unwrap();
        s.set_multicast_ttl_v4(u32::from(ttl)).unwrap();
        s.send_to(
            &payload,
            &SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 18), 0).into(),
        )
        .unwrap();
    })
    .unwrap();
}

#[test]
fn bad_adverts_are_ignored_and_counted() {
    let mut lan = two_nodes();
    lan.add_host("x", "198.18.0.9/24", "2001:db8::9/64")
        .unwrap();
    let (a, b, x) = (&lan.host("a").ns, &lan.host("b").ns, &lan.host("x").ns);
    let mut da = lbd(a, "reject-a", vrrp([v2("VI_1", 77, 100, "secret12")]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(6));
    let src: IpAddr = "198.18.0.9".parse().unwrap();
    let dst: IpAddr = "224.0.0.18".parse().unwrap();
    // Each would make A back off (priority 200 > 100) if it were accepted.
    let advert = |pass: &str, vips: &[&str]| Repr {
        family: Family::Ipv4,
        vrid: 77,
        priority: 200,
        kind: Kind::V2 {
            advert_interval_secs: 1,
            auth: Auth::pass(pass),
        },
        addresses: vips.iter().map(|v| v.parse().unwrap()).collect(),
    };
    let good = advert("secret12", &[VIP]).to_bytes(src, dst).unwrap();
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0x55;
    let wrong_pass = advert("guess123", &[VIP]).to_bytes(src, dst).unwrap();
    let other_vips = advert("secret12", &["198.18.0.200"])
        .to_bytes(src, dst)
        .unwrap();
    let sender = Ipv4Addr::new(198, 18, 0, 9);
    for _ in 0..3 {
        send_raw(x, sender, 64, good.clone());
        send_raw(x, sender, 255, bad_sum.clone());
        send_raw(x, sender, 255, wrong_pass.clone());
        send_raw(x, sender, 255, other_vips.clone());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(has_vip(a, VIP), "A stays master:\n{}", da.log());
    stop(&mut da);
    let log = da.log();
    for want in [
        "bad_ttl=3",
        "bad_checksum=3",
        "auth_failure=3",
        "address_mismatch=3",
    ] {
        assert!(
            log.contains(want),
            "{want} missing from the summary:\n{log}"
        );
    }
    // Logged once per cause, then only counted.
    assert_eq!(
        log.matches("dropped VRRP packet: TTL 64").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("rejected advert").count(), 2, "{log}");
    assert_eq!(
        log.matches("to=BACKUP").count(),
        1,
        "only the startup transition:\n{log}"
    );
}

/// Wait until `ns`'s link-local address has finished duplicate address
/// detection (a tentative address cannot be bound).
fn wait_link_local(ns: &Netns) {
    let ok = wait_for(Duration::from_secs(5), || {
        let out = ns
            .ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("fe80") && !text.contains("tentative")).then_some(())
    });
    assert!(
        ok.is_some(),
        "{}: link-local address still tentative",
        ns.name()
    );
}

#[test]
fn ipv6_election_and_failover_and_keepalived_interop() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    wait_link_local(a);
    wait_link_local(b);
    let vip6 = "2001:db8::100";
    let conf = |priority| {
        vrrp([VrrpInstance {
            priority,
            advert_interval: Dur(Duration::from_millis(100)),
            ..VrrpInstance::new("VI_6", "eth0", 66, vec![format!("{vip6}/64")])
        }])
    };
    let mut da = lbd(a, "v6-a", conf(150));
    let db = lbd(b, "v6-b", conf(100));
    wait_holder(&[a, b], 0, vip6, Duration::from_secs(5));
    db.wait_log("to=BACKUP", Duration::from_secs(1)).unwrap();
    da.kill().unwrap();
    let ok = wait_for(Duration::from_secs(3), || has_vip(b, vip6).then_some(()));
    assert!(ok.is_some(), "IPv6 backup did not take over:\n{}", db.log());
    drop(db);

    // keepalived as the IPv6 peer: lbd (150) master, keepalived backup.
    let _ = a.ip(&["-6", "addr", "del", &format!("{vip6}/64"), "dev", "eth0"]);
    let _ = b.ip(&["-6", "addr", "del", &format!("{vip6}/64"), "dev", "eth0"]);
    let ka = format!(
        "global_defs {{\n  router_id ka6\n  vrrp_version 3\n}}\nvrrp_instance VI_6 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 66\n  priority 100\n  advert_int 0.1\n  virtual_ipaddress {{\n    {vip6}/64\n  }}\n}}\n"
    );
    let da = lbd(a, "v6-lbd", conf(150));
    da.wait_log("to=MASTER", Duration::from_secs(5)).unwrap();
    let kb = keepalived(b, "ka6", &ka);
    wait_holder(&[a, b], 0, vip6, Duration::from_secs(5));
    kb.wait_log("Entering BACKUP STATE", Duration::from_secs(3))
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let klog = kb.log();
    assert!(
        !klog.contains("Entering MASTER STATE"),
        "keepalived became master:\n{klog}"
    );
    assert!(!da.log().contains("rejected advert"), "{}", da.log());
}

#[test]
fn unicast_peers_with_keepalived() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let lbd_conf = vrrp([VrrpInstance {
        unicast_src_ip: Some("198.18.0.1".parse().unwrap()),
        unicast_peer: vec!["198.18.0.2".parse().unwrap()],
        ..fast("VI_1", 91, 150, &[VIP])
    }]);
    let ka = format!(
        "global_defs {{\n  router_id kau\n  vrrp_version 3\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 91\n  priority 100\n  advert_int 0.1\n  unicast_src_ip 198.18.0.2\n  unicast_peer {{\n    198.18.0.1\n  }}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
    );
    let mut da = lbd(a, "uni-lbd", lbd_conf);
    da.wait_log("to=MASTER", Duration::from_secs(5)).unwrap();
    let kb = keepalived(b, "kau", &ka);
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    kb.wait_log("Entering BACKUP STATE", Duration::from_secs(3))
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(!kb.log().contains("Entering MASTER STATE"), "{}", kb.log());
    assert!(da.log().contains("(unicast)"), "{}", da.log());
    stop(&mut da);
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(3));
}

#[test]
fn notify_hooks_get_keepalived_arguments() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let all = tmp("notify-all");
    let master = tmp("notify-master");
    let conf = vrrp([VrrpInstance {
        notify: Some(format!("echo >> {}", all.display())),
        notify_master: Some(format!("echo became-master >> {}", master.display())),
        ..fast("VI_N", 92, 150, &[VIP])
    }]);
    let mut da = lbd(a, "notify-a", conf);
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    stop(&mut da);
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let ok = wait_for(Duration::from_secs(2), || {
        read(&all).contains("STOP").then_some(())
    });
    assert!(ok.is_some(), "notify log: {:?}", read(&all));
    assert_eq!(
        read(&all),
        "INSTANCE VI_N BACKUP 150\nINSTANCE VI_N MASTER 150\nINSTANCE VI_N STOP 150\n"
    );
    assert_eq!(read(&master), "became-master\n");
    let _ = std::fs::remove_file(&all);
    let _ = std::fs::remove_file(&master);
}

#[test]
fn tracked_interface_down_means_fault() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    a.ip(&["link", "add", "t0", "type", "veth", "peer", "name", "t1"])
        .unwrap();
    a.ip(&["link", "set", "t0", "up"]).unwrap();
    a.ip(&["link", "set", "t1", "up"]).unwrap();
    let conf = vrrp([VrrpInstance {
        track_interface: vec![TrackInterface {
            name: "t0".into(),
            weight: 0,
        }],
        ..fast("VI_1", 93, 150, &[VIP])
    }]);
    let da = lbd(a, "trackif-a", conf);
    let _db = lbd(b, "trackif-b", vrrp([fast("VI_1", 93, 100, &[VIP])]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    // Peer down: t0 loses carrier (not RUNNING): A goes to FAULT and
    // releases the VIP.
    a.ip(&["link", "set", "t1", "down"]).unwrap();
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(3));
    da.wait_log("to=FAULT", Duration::from_secs(1)).unwrap();
    a.ip(&["link", "set", "t1", "up"]).unwrap();
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(3));
}

#[test]
fn new_master_sends_gratuitous_arp() {
    let mut lan = two_nodes();
    lan.add_host("x", "198.18.0.9/24", "2001:db8::9/64")
        .unwrap();
    let (a, b, x) = (&lan.host("a").ns, &lan.host("b").ns, &lan.host("x").ns);
    let b_mac = lan.host("b").mac().unwrap();
    let mut da = lbd(a, "garp-a", vrrp([fast("VI_1", 94, 150, &[VIP])]));
    let db = lbd(b, "garp-b", vrrp([fast("VI_1", 94, 100, &[VIP])]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    db.wait_log("to=BACKUP", Duration::from_secs(1)).unwrap();
    let pcap = tmp("garp.pcap");
    let cap_log = tmp("garp.tshark.log");
    let mut cap = x
        .command("tshark")
        .args(["-i", "eth0", "-f", "arp", "-a", "duration:3", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&cap_log).unwrap())
        .spawn()
        .expect("run tshark");
    // tshark takes a while to start on a busy machine: kill only once it
    // says it is capturing.
    let capturing = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&cap_log)
            .unwrap_or_default()
            .contains("Capturing on")
            .then_some(())
    });
    assert!(capturing.is_some(), "tshark did not start capturing");
    da.kill().unwrap();
    assert!(cap.wait().unwrap().success());
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=,"])
        .args([
            "-e",
            "arp.opcode",
            "-e",
            "arp.src.hw_mac",
            "-e",
            "arp.src.proto_ipv4",
        ])
        .args([
            "-e",
            "arp.dst.proto_ipv4",
            "-e",
            "eth.dst",
            "-e",
            "arp.isgratuitous",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = b_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let want = format!("1,{mac},{VIP},{VIP},ff:ff:ff:ff:ff:ff,1");
    let garps = text.lines().filter(|l| *l == want).count();
    assert!(
        garps >= 5,
        "expected garp_master_repeat (5) gratuitous ARPs from B ({want}), got {garps}:\n{text}"
    );
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&cap_log);
}

/// Seed 003's split-brain guard, with lbd in keepalived's place: the two
/// nodes disagree on the password (auth_pass 1111 vs 2222, as in the
/// seed), so each rejects the other's adverts and both claim the VIP. B's
/// `check_vip` script sees the other master alive while holding the VIP
/// and stops its own daemon (the seed runs `systemctl stop keepalived`;
/// here `kill -TERM $PPID`, lbd being the script's parent); B releases
/// the VIP and A alone keeps it.
#[test]
fn seed_003_split_brain_script_stops_the_second_master() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let da = lbd(a, "split-a", vrrp([v2("VI_1", 50, 150, "1111")]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(6));
    // B first without the guard: split brain.
    let mut db = lbd(b, "split-b", vrrp([v2("VI_1", 50, 100, "2222")]));
    let both = wait_for(Duration::from_secs(8), || {
        (has_vip(a, VIP) && has_vip(b, VIP)).then_some(())
    });
    assert!(both.is_some(), "expected split brain:\n{}", db.log());
    db.wait_log("auth_failure", Duration::from_secs(1)).unwrap();
    stop(&mut db);
    // B again, with seed 003's check_vip guard.
    let script = VrrpScript {
        interval: Some(Dur(Duration::from_secs(1))),
        weight: 50,
        ..VrrpScript::new(
            "check_vip",
            format!(
                "if ping -c1 -W1 198.18.0.1 >/dev/null && ip -br addr show eth0 | grep -q '{VIP}/'; then kill -TERM $PPID; fi"
            ),
        )
    };
    let guarded = Config {
        vrrp_script: vec![script],
        ..vrrp([VrrpInstance {
            track_script: vec![TrackScript::new("check_vip")],
            ..v2("VI_1", 50, 100, "2222")
        }])
    };
    let db = lbd(b, "split-b2", guarded);
    db.wait_log("to=MASTER", Duration::from_secs(8)).unwrap();
    let exited = wait_for(Duration::from_secs(5), || db.exited());
    assert!(
        exited.is_some_and(|s| s.success()),
        "B did not stop itself:\n{}",
        db.log()
    );
    assert!(db.log().contains("SIGTERM received"), "{}", db.log());
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(2));
    assert!(da.log().contains("to=MASTER"));
}

fn has_vip_on(ns: &Netns, dev: &str, vip: &str) -> bool {
    let out = ns.ip(&["-br", "addr", "show", dev]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(vip))
}

/// Wait until node `holder` of `nodes` alone has `vip` on `dev`.
fn wait_holder_on(nodes: &[&Netns], holder: usize, dev: &str, vip: &str, timeout: Duration) {
    let ok = wait_for(timeout, || {
        nodes
            .iter()
            .enumerate()
            .all(|(i, ns)| has_vip_on(ns, dev, vip) == (i == holder))
            .then_some(())
    });
    let state: Vec<bool> = nodes.iter().map(|ns| has_vip_on(ns, dev, vip)).collect();
    assert!(
        ok.is_some(),
        "expected node {holder} alone to hold {vip} on {dev} within {timeout:?}; holders: {state:?}"
    );
}

/// Two LANs between two nodes (eth0 on 198.18.0.0/24, eth1 on
/// 198.19.0.0/24), an external VIP on eth0 and an internal gateway VIP on
/// eth1, the two instances in one sync group: when A's eth1 goes down,
/// its internal instance goes to FAULT, the group takes the external one
/// to FAULT too, and B takes both VIPs; when eth1 comes back, A takes both
/// back. The group's notify script sees the transitions.
#[test]
fn sync_group_fails_over_together_when_one_interface_goes_down() {
    let lan = two_nodes();
    let mut inside = Lan::new().unwrap();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    inside
        .add_port(a, "eth1", "198.19.0.1/24", "2001:db8:1::1/64")
        .unwrap();
    inside
        .add_port(b, "eth1", "198.19.0.2/24", "2001:db8:1::2/64")
        .unwrap();
    let gw = "198.19.0.254";
    let conf = |priority, log: &PathBuf| Config {
        vrrp_sync_group: vec![VrrpSyncGroup {
            notify: Some(format!("echo >> {}", log.display())),
            notify_fault: Some(format!("echo fault-hook >> {}", log.display())),
            ..VrrpSyncGroup::new("VG_NAT", vec!["VI_EXT".into(), "VI_INT".into()])
        }],
        ..vrrp([
            fast("VI_EXT", 101, priority, &[VIP]),
            VrrpInstance {
                interface: "eth1".into(),
                ..fast("VI_INT", 102, priority, &[gw])
            },
        ])
    };
    let (log_a, log_b) = (tmp("group-a"), tmp("group-b"));
    let da = lbd(a, "group-a", conf(150, &log_a));
    let db = lbd(b, "group-b", conf(100, &log_b));
    wait_holder_on(&[a, b], 0, "eth0", VIP, Duration::from_secs(5));
    wait_holder_on(&[a, b], 0, "eth1", gw, Duration::from_secs(5));

    let start = Instant::now();
    a.ip(&["link", "set", "eth1", "down"]).unwrap();
    wait_holder_on(&[a, b], 1, "eth0", VIP, Duration::from_secs(5));
    wait_holder_on(&[a, b], 1, "eth1", gw, Duration::from_secs(5));
    let took = start.elapsed();
    da.wait_log(
        "sync group VG_NAT: another member is in FAULT",
        Duration::from_secs(1),
    )
    .unwrap();
    db.wait_log(
        "VRRP sync group transition: to=MASTER",
        Duration::from_secs(1),
    )
    .unwrap();

    a.ip(&["link", "set", "eth1", "up"]).unwrap();
    wait_holder_on(&[a, b], 0, "eth0", VIP, Duration::from_secs(5));
    wait_holder_on(&[a, b], 0, "eth1", gw, Duration::from_secs(5));

    // The two hooks of one transition (notify_fault and notify) run at
    // once, so their lines may land in either order.
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).unwrap_or_default().replace(
            "GROUP VG_NAT FAULT\nfault-hook\n",
            "fault-hook\nGROUP VG_NAT FAULT\n",
        )
    };
    let want_a = "GROUP VG_NAT BACKUP\nGROUP VG_NAT MASTER\nfault-hook\nGROUP VG_NAT FAULT\n\
                  GROUP VG_NAT BACKUP\nGROUP VG_NAT MASTER\n";
    let ok = wait_for(Duration::from_secs(2), || {
        (read(&log_a) == want_a).then_some(())
    });
    assert!(
        ok.is_some(),
        "A's group notify log: {:?}\n{}",
        read(&log_a),
        da.log()
    );
    // B: backup, master while A was in fault, backup again.
    let want_b = "GROUP VG_NAT BACKUP\nGROUP VG_NAT MASTER\nGROUP VG_NAT BACKUP\n";
    let ok = wait_for(Duration::from_secs(2), || {
        (read(&log_b) == want_b).then_some(())
    });
    assert!(
        ok.is_some(),
        "B's group notify log: {:?}\n{}",
        read(&log_b),
        db.log()
    );
    assert!(took < Duration::from_secs(3), "failover took {took:?}");
    let _ = std::fs::remove_file(&log_a);
    let _ = std::fs::remove_file(&log_b);
}

/// A child process killed on drop (the test's tracked daemon).
struct Tracked(std::process::Child);

impl Drop for Tracked {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `track_process` with weight 0 on an nginx (seed 003's `ps -C nginx`
/// check, as keepalived's native tracker): A is master while its nginx
/// runs; stopped, A goes to FAULT and B takes the VIP; started again, A
/// preempts back. The nginx binary runs under the name `lbnginx`, so the
/// tracker counts this nginx only (/proc is shared with the machine's).
#[test]
fn track_process_follows_an_nginx_process() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let dir = tmp("trackproc");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("lbnginx");
    std::fs::copy("/usr/sbin/nginx", &exe).expect("nginx (apt-get install nginx)");
    let conf = lb_lab::netns::nginx_site(&dir.join("site"), "a").unwrap();
    let run = || Tracked(a.command(&exe).arg("-c").arg(&conf).spawn().unwrap());
    let nginx = run();
    let conf_a = Config {
        vrrp_track_process: vec![VrrpTrackProcess {
            weight: 0,
            ..VrrpTrackProcess::new("nginx", "lbnginx")
        }],
        ..vrrp([VrrpInstance {
            track_process: vec![TrackScript::new("nginx")],
            ..fast("VI_1", 103, 150, &[VIP])
        }])
    };
    let da = lbd(a, "tproc-a", conf_a);
    let _db = lbd(b, "tproc-b", vrrp([fast("VI_1", 103, 100, &[VIP])]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));

    drop(nginx);
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(5));
    da.wait_log("to=FAULT", Duration::from_secs(1)).unwrap();
    assert!(
        da.log().contains("0 running, quorum at least 1"),
        "{}",
        da.log()
    );

    let _nginx = run();
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `track_file` with weight 0: a non-zero value puts A in FAULT (B takes
/// the VIP); 0 again and A preempts back.
#[test]
fn track_file_value_faults_and_recovers() {
    let lan = two_nodes();
    let (a, b) = (&lan.host("a").ns, &lan.host("b").ns);
    let file = tmp("track-file");
    let set = |v: &str| {
        let t = file.with_extension("tmp");
        std::fs::write(&t, v).unwrap();
        std::fs::rename(&t, &file).unwrap();
    };
    set("0\n");
    let conf_a = Config {
        vrrp_track_file: vec![VrrpTrackFile {
            weight: 0,
            ..VrrpTrackFile::new("maint", &file)
        }],
        ..vrrp([VrrpInstance {
            track_file: vec![TrackScript::new("maint")],
            ..fast("VI_1", 104, 150, &[VIP])
        }])
    };
    let da = lbd(a, "tfile-a", conf_a);
    let _db = lbd(b, "tfile-b", vrrp([fast("VI_1", 104, 100, &[VIP])]));
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));

    set("1\n");
    wait_holder(&[a, b], 1, VIP, Duration::from_secs(5));
    da.wait_log("to=FAULT", Duration::from_secs(1)).unwrap();

    set("0\n");
    wait_holder(&[a, b], 0, VIP, Duration::from_secs(5));
    let _ = std::fs::remove_file(&file);
}
