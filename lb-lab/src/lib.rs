//! What does not ship with lb: the kit its kernel tests, the lab and the
//! benchmarks are built from. `lbd` and `lbctl` never link this crate, and
//! the production XDP object carries none of its programs.
//!
//! - [`netns`]: network-namespace topologies (a bridge, hosts joined to it
//!   by veth pairs) created per test and removed on drop;
//! - [`daemon`]: a daemon child process (lbd, keepalived, nginx, ...) with
//!   its output in a log file: waits that fail fast with the log, signals,
//!   kill, clean stop on drop;
//! - [`traffic`]: traffic that keeps flowing through a failure (long-lived
//!   connections exchanging lines, new ones arriving) counted as kept,
//!   moved or broken, and the echo server it talks to;
//! - [`testpkt`]: Ethernet frames for `BPF_PROG_TEST_RUN` fixtures and
//!   benchmarks;
//! - [`mapmem`]: what a BPF map costs in memory (the kernel's charge and
//!   the pages it took), the connection table's at a given size;
//! - [`scaleout`]: the scale-out topology's addresses and the router's
//!   next hops for its VIP;
//! - [`soak`]: an lbd pair under traffic and churn for N minutes, every
//!   loss attributed to an event, memory, descriptors and logs checked
//!   (`cargo xtask soak`, `tests/soak.rs`);
//! - [`systemd_root`]: a throwaway Debian system booted under systemd in
//!   a container (debootstrap, systemd-nspawn), for the package test
//!   (`tests/package.rs`);
//! - [`bin`]: where the binaries under test (`lbd`, `lbctl`) are, and
//!   [`lbctl`] / [`lbctl_data`] to ask an lbd in a namespace;
//! - [`model`]: a model of the XDP program's decision, and [`difftest`],
//!   which runs generated frames through both and compares them
//!   (`cargo xtask fuzz`);
//! - [`TEST_OBJ`]: XDP programs for tests and benchmarks only.
//!
//! The kernel tests are in `tests/` (run by `cargo xtask test`), the lab
//! and demo in `src/bin/lb-lab.rs` (`cargo xtask demo | lab`), and the
//! benchmarks in the other `src/bin/lb-*.rs` (`cargo xtask bench`).

pub mod cpu;
pub mod daemon;
pub mod difftest;
pub mod docs;
pub mod mapmem;
pub mod model;
pub mod netns;
pub mod nic;
pub mod scaleout;
pub mod soak;
pub mod systemd_root;
pub mod testpkt;
pub mod testrun;
pub mod traffic;

/// The test-only XDP object (`lb-lab/ebpf`): `lb_pass` (a pass-through for
/// the far side of a veth, see [`netns::Lan::xdp_pass_on_port`]) and
/// `lb_bench_insert` (the kernel-LRU reference of the data-plane bench,
/// map `bench_lru`).
pub static TEST_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-lab-progs"));

use std::path::PathBuf;

/// The path of lb binary `name` (`lbd`, `lbctl`) built beside the running
/// test or tool: the same `target/<profile>/` directory.
///
/// # Panics
/// When it is not there: build lb-user's binaries first (`cargo xtask test`
/// does: `cargo build -p lb-user --bins`).
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    // Test binaries sit in target/<profile>/deps, tools in target/<profile>.
    let mut dir = exe.parent().expect("a directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build lb-user's binaries first (cargo build -p lb-user --bins; \
         `cargo xtask test` does)",
        path.display()
    );
    path
}

/// `lbctl --socket SOCKET ARGS` run in namespace `ns`.
///
/// # Panics
/// When lbctl cannot be started (see [`bin`]).
#[must_use]
pub fn lbctl(ns: &netns::Netns, socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    ns.command(bin("lbctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("lbctl runs")
}

/// `lbctl --json ARGS` in namespace `ns`: the reply's `data`.
///
/// # Errors
/// lbctl failed (its stderr) or printed no JSON.
pub fn lbctl_data(
    ns: &netns::Netns,
    socket: &std::path::Path,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = lbctl(ns, socket, &all);
    if !out.status.success() {
        return Err(format!(
            "lbctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("lbctl {args:?}: not JSON: {e}"))?;
    Ok(reply["data"].clone())
}
