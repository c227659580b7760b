//! `cargo xtask bench`: benchmarks that print ratios measured side by side
//! in one run.

use anyhow::bail;

use crate::{
    build::{cargo, workspace_root},
    exec::exec,
    setup::BpfToolchain,
};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: `dataplane` (BPF_PROG_TEST_RUN ns/packet per path),
    /// `failover` (VRRP failover time, lbd against keepalived, in network
    /// namespaces), or `all` (both, in that order).
    #[arg(default_value = "all")]
    which: String,
    /// Runs per path (dataplane).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Runs per daemon and advert interval (failover).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Build in release mode and run the chosen benchmark.
pub fn run(tc: &BpfToolchain, args: &BenchArgs) -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!("benchmarks load BPF programs and create network namespaces: run as root");
    }
    match args.which.as_str() {
        "dataplane" => dataplane(tc, args),
        "failover" => failover(tc, args),
        "flows" => flows(tc),
        "all" => {
            dataplane(tc, args)?;
            failover(tc, args)
        }
        other => bail!("unknown benchmark {other:?}; available: dataplane, failover, all"),
    }
}

fn dataplane(tc: &BpfToolchain, args: &BenchArgs) -> anyhow::Result<()> {
    exec(cargo(tc).args([
        "build",
        "--release",
        "--package",
        "lb-user",
        "--bin",
        "lb-bench",
    ]))?;
    exec(
        std::process::Command::new(workspace_root().join("target/release/lb-bench"))
            .arg("--repeat")
            .arg(args.repeat.to_string()),
    )
}

/// Flows kept across an LB failover and moved when a backend leaves, on
/// the lab (`lb-lab bench`).
fn flows(tc: &BpfToolchain) -> anyhow::Result<()> {
    exec(cargo(tc).args([
        "build",
        "--release",
        "--package",
        "lb-user",
        "--bin",
        "lbd",
        "--bin",
        "lbctl",
        "--bin",
        "lb-lab",
    ]))?;
    let root = workspace_root();
    let release = root.join("target/release");
    exec(
        std::process::Command::new(release.join("lb-lab"))
            .arg("bench")
            .arg("--bin-dir")
            .arg(&release)
            .arg("--config-dir")
            .arg(root.join("examples/lab")),
    )
}

fn failover(tc: &BpfToolchain, args: &BenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    exec(cargo(tc).args([
        "build",
        "--release",
        "--package",
        "lb-user",
        "--bin",
        "lbd",
        "--bin",
        "lb-failover",
    ]))?;
    let release = workspace_root().join("target/release");
    exec(
        std::process::Command::new(release.join("lb-failover"))
            .arg("--lbd")
            .arg(release.join("lbd"))
            .arg("--runs")
            .arg(args.runs.to_string()),
    )
}
