//! Kernel test: the README's main command, `cargo xtask demo`, end to end
//! (through `lb-lab demo` with this build's binaries): the lab comes up,
//! lbd runs on both LB nodes, traffic spreads, a backend failure is
//! detected, the master is killed under traffic (`lb_lab::traffic`,
//! counted kept, moved or broken), the old master returns, and nothing is
//! left behind. And the scale-out lab (`cargo xtask lab up --scale-out`):
//! up, every node announcing over BGP, status, down.
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{path::Path, process::Command};

/// Both labs use the same names and state directory: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `lb-lab ARGS` with this build's binaries; its stdout, or a panic with
/// both outputs.
fn lab(args: &[&str]) -> String {
    let lbd = lb_lab::bin("lbd");
    let out = Command::new(env!("CARGO_BIN_EXE_lb-lab"))
        .args(args)
        .arg("--bin-dir")
        .arg(lbd.parent().unwrap())
        .arg("--config-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lb-lab {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn scale_out_lab_comes_up_announcing_on_every_node_and_goes_down() {
    let _serial = serial();
    let text = lab(&["up", "--scale-out"]);
    assert!(
        text.contains("VIP 198.18.100.1 routed through 198.18.0.2, 198.18.0.3, 198.18.0.4"),
        "{text}"
    );
    // lbd polls bird every 2 s: its view of a session just established
    // may lag the router's route.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = lab(&["status"]);
        let all = ["lb1", "lb2", "lb3"].iter().all(|node| {
            status.contains(&format!("{node}: bgp session uplink: up Established"))
                && status.contains(&format!("{node}: bgp: BIRD"))
        });
        if all {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every node's lbd sees its session up:\n{status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // HTTP through the VIP from the client, behind the router.
    let client = lb_lab::netns::Netns::existing("lblab-client").unwrap();
    let body = client
        .run(|| {
            use std::io::{Read as _, Write as _};
            let mut c = std::net::TcpStream::connect("198.18.100.1:80").unwrap();
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            text
        })
        .unwrap();
    assert!(
        body.contains("\r\n\r\nweb"),
        "HTTP through the VIP: {body:?}"
    );
    lab(&["down"]);
    assert_nothing_left();
}

/// No lab namespace, pin or state directory remains.
fn assert_nothing_left() {
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains("lblab-"),
        "namespaces left behind"
    );
    let pins = std::fs::read_dir("/sys/fs/bpf").unwrap();
    assert!(
        !pins
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("lblab-")),
        "pins left behind"
    );
    assert!(
        !Path::new("/run/lb-lab").exists(),
        "state directory left behind"
    );
}

#[test]
fn demo_runs_end_to_end_and_leaves_nothing_behind() {
    let _serial = serial();
    let lbd = lb_lab::bin("lbd");
    let bin_dir = lbd.parent().unwrap();
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab");
    let out = Command::new(env!("CARGO_BIN_EXE_lb-lab"))
        .arg("demo")
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--config-dir")
        .arg(&config_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{text}\n{err}");
    let summary = |what: &str, value: &str| format!("{what:<40} {value}");
    for want in [
        "lb1 is MASTER and holds 198.18.0.100".to_owned(),
        summary("backends serving HTTP", "3 of 3"),
        "lb1 is MASTER again".to_owned(),
        "lab removed: no namespaces, processes or pins left".to_owned(),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    // Traffic flows through the failover (lb_lab::traffic): the killed
    // node's pinned data plane forwards until lb2's gratuitous ARP moves
    // the client, and lb2's table holds every flow (connection sync).
    assert!(
        text.contains(&summary(
            "live connections across failover",
            "40 of 40 kept"
        )),
        "every live connection kept:\n{text}"
    );
    for what in [
        "live connections across failover",
        "new connections during failover",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&summary(what, "")))
            .unwrap_or_else(|| panic!("{what:?} missing from:\n{text}"));
        println!("{}", line.trim());
    }
    assert!(
        text.contains("long-lived 40: "),
        "the traffic report is missing from:\n{text}"
    );
    assert_nothing_left();
}
