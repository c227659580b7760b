//! Kernel test: the README's main command, `cargo xtask demo`, end to end
//! (through `lb-lab demo` with this build's binaries): the lab comes up,
//! lbd runs on both LB nodes, traffic spreads, a backend failure is
//! detected, the master is killed and a live connection survives the
//! failover, the old master returns, and nothing is left behind.
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
    for want in [
        "lb1 is MASTER and holds 198.18.0.100",
        "backends serving HTTP                    3 of 3",
        "live connection across failover          kept",
        "lb1 is MASTER again",
        "lab removed: no namespaces, processes or pins left",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
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
