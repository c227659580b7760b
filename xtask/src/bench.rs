//! `cargo xtask bench`: benchmarks that print ratios measured side by side
//! in one run. `all` (the default) runs every one in turn and writes
//! `docs/BENCHMARKS.md` with a plot.

use std::{path::Path, process::Command};

use anyhow::bail;

use crate::{
    build::workspace_root,
    report::{self, Section},
    setup::BpfToolchain,
};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which benchmark:
    /// `nic-like`: ns/frame and Mpps per core on a NIC-like path (live
    /// frames injected on the LB's interface, delivery counted at the
    /// receiver): lb's modes against XDP_DROP, a minimal XDP_TX forwarder,
    /// kernel forwarding and nftables DNAT;
    /// `dataplane`: BPF_PROG_TEST_RUN ns/packet per path;
    /// `paths`: packets/s, LB CPU per packet and HTTP rps/latency through
    /// direct, lb dsr, lb ipip, nftables DNAT and HAProxy;
    /// `controlplane`: Maglev build time, 1,000 services x 100 backends
    /// applied to the maps, lbd start-up time and memory;
    /// `failover`: VRRP failover time at 1 s, 100 ms and 50 ms adverts,
    /// lbd against keepalived;
    /// `flows`: established flows kept across an LB failover, flows moved
    /// when one of three backends leaves (on the lab);
    /// `scaleout`: three lbd nodes behind a bird2 router (ECMP): flows
    /// broken when a node leaves, joins, dies, returns; new connections a
    /// second through three nodes against one;
    /// `all`: every one, then docs/BENCHMARKS.md.
    /// `nic` (not in `all`: it needs two hosts and a NIC): `lbgen` sends
    /// frames out of a real interface at line rate towards an lbd on
    /// another host, reading that lbd's counters over its metrics endpoint;
    /// give lbgen's options after `--` (see docs/BENCHMARKS.md), e.g.
    /// `cargo xtask bench nic -- --iface eth1 --dst-mac 52:54:00:12:34:56
    /// --src 198.18.0.1 --dst 198.18.0.100 --dport 80 --metrics
    /// http://198.18.0.2:9100/metrics`.
    #[arg(default_value = "all")]
    which: String,
    /// `nic`: lbgen's options (after `--`).
    #[arg(last = true)]
    generator: Vec<String>,
    /// Runs per path (dataplane).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Runs per daemon and advert interval (failover).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds per measurement (paths).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// The benchmarks, in the order `all` runs them: name, report title.
const BENCHES: [(&str, &str); 7] = [
    (
        "nic-like",
        "NIC-like path: ns/frame and Mpps per core, lb against XDP floors and nftables",
    ),
    ("dataplane", "Data plane: BPF_PROG_TEST_RUN ns/packet"),
    (
        "paths",
        "Paths: packets/s, LB CPU per packet, HTTP through each path",
    ),
    (
        "controlplane",
        "Control plane: Maglev build, 1,000 services x 100 backends, lbd memory",
    ),
    ("failover", "VRRP failover: lbd against keepalived"),
    (
        "flows",
        "Flows across an LB failover and a backend removal (the lab)",
    ),
    (
        "scaleout",
        "Scale-out: three nodes behind ECMP, nodes leaving, joining, dying",
    ),
];

/// Build in release mode and run the chosen benchmark(s).
pub fn run(tc: &BpfToolchain, args: &BenchArgs) -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!("benchmarks load BPF programs and create network namespaces: run as root");
    }
    if args.runs == 0 || args.seconds == 0 {
        bail!("--runs and --seconds must be at least 1");
    }
    if args.which == "nic" {
        if args.generator.is_empty() {
            bail!(
                "`cargo xtask bench nic` needs lbgen's options after `--`: at least --iface, --dst-mac, --src, --dst, --dport (and --metrics to read the remote lbd); see docs/BENCHMARKS.md"
            );
        }
        crate::build::release_bins(tc, &["lbgen"])?;
        let status = Command::new(workspace_root().join("target/release/lbgen"))
            .args(&args.generator)
            .status()?;
        if !status.success() {
            bail!("lbgen failed: {status}");
        }
        return Ok(());
    }
    if !args.generator.is_empty() {
        bail!("options after `--` are for `cargo xtask bench nic` only");
    }
    let which: Vec<&str> = match args.which.as_str() {
        "all" => BENCHES.iter().map(|(n, _)| *n).collect(),
        one if BENCHES.iter().any(|(n, _)| *n == one) => vec![one],
        other => bail!(
            "unknown benchmark {other:?}; available: {}, all, nic",
            BENCHES.map(|(n, _)| n).join(", ")
        ),
    };
    crate::build::release_bins(
        tc,
        &[
            "lbd",
            "lbctl",
            "lb-bench",
            "lb-nicbench",
            "lb-pathbench",
            "lb-cpbench",
            "lb-failover",
            "lb-lab",
        ],
    )?;
    let root = workspace_root();
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for name in &which {
        let mut cmd = command(&root, name, args);
        // One benchmark failing does not lose the others' figures: the
        // report says what failed, and the run fails at the end.
        let output = match report::run_capture(&mut cmd) {
            Ok(output) => output,
            Err(e) => {
                failed.push(*name);
                format!("FAILED: {e:#}\n")
            }
        };
        let title = BENCHES
            .iter()
            .find(|(n, _)| n == name)
            .map_or(*name, |(_, t)| *t);
        sections.push(Section {
            title: title.to_owned(),
            command: format!("cargo xtask bench {name}"),
            output,
        });
    }
    if args.which == "all" {
        report::write(&root, "cargo xtask bench", &sections)?;
    }
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The command line of benchmark `name` (binaries built in release mode).
fn command(root: &Path, name: &str, args: &BenchArgs) -> Command {
    let release = root.join("target/release");
    let mut cmd = match name {
        "nic-like" => Command::new(release.join("lb-nicbench")),
        "dataplane" => {
            let mut c = Command::new(release.join("lb-bench"));
            c.arg("--repeat").arg(args.repeat.to_string());
            c
        }
        "paths" => {
            let mut c = Command::new(release.join("lb-pathbench"));
            c.arg("--seconds").arg(args.seconds.to_string());
            c
        }
        "controlplane" => {
            let mut c = Command::new(release.join("lb-cpbench"));
            c.arg("--lbctl").arg(release.join("lbctl"));
            c
        }
        "failover" => {
            let mut c = Command::new(release.join("lb-failover"));
            c.arg("--runs").arg(args.runs.to_string());
            c
        }
        "scaleout" => {
            let mut c = Command::new(release.join("lb-lab"));
            c.arg("scale-bench")
                .arg("--bin-dir")
                .arg(&release)
                .arg("--config-dir")
                .arg(root.join("examples/lab"));
            c
        }
        _ => {
            let mut c = Command::new(release.join("lb-lab"));
            c.arg("bench")
                .arg("--bin-dir")
                .arg(&release)
                .arg("--config-dir")
                .arg(root.join("examples/lab"));
            c
        }
    };
    if !matches!(name, "dataplane" | "flows" | "nic-like" | "scaleout") {
        cmd.arg("--lbd").arg(release.join("lbd"));
    }
    cmd
}
