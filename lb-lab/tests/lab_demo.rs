//! Kernel test: the README's main command, `cargo xtask demo`, end to end
//! (through `lb-lab demo` with this build's binaries): the lab comes up,
//! lbd runs on both LB nodes, traffic spreads, a backend failure is
//! detected, the master is killed under traffic (`lb_lab::traffic`,
//! counted kept, moved or broken), the old master returns, and nothing is
//! left behind.
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{path::Path, process::Command};

#[test]
fn demo_runs_end_to_end_and_leaves_nothing_behind() {
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
