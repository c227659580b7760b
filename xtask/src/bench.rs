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
    /// Which benchmark: `dataplane` (BPF_PROG_TEST_RUN ns/packet per path).
    #[arg(default_value = "dataplane")]
    which: String,
    /// Runs per path.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
}

/// Build in release mode and run the chosen benchmark.
pub fn run(tc: &BpfToolchain, args: &BenchArgs) -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!("benchmarks load BPF programs: run as root");
    }
    match args.which.as_str() {
        "dataplane" => {
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
        other => bail!("unknown benchmark {other:?}; available: dataplane"),
    }
}
