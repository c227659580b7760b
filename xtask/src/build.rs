//! `build` and `build-and-load`.

use std::process::Command;

use anyhow::Context as _;

use crate::{exec::exec, setup::BpfToolchain};

/// Arguments of `build-and-load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Interface to attach to.
    #[arg(long, value_name = "IF")]
    iface: String,
    /// Further lbd arguments, after `--` (see `lbd --help`).
    #[arg(last = true)]
    lbd_args: Vec<String>,
}

/// `cargo` with the BPF toolchain exported for lb-user's build script.
pub fn cargo(tc: &BpfToolchain) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env("LB_BPF_TOOLCHAIN", &tc.name);
    cmd
}

/// Build every binary in release mode.
pub fn release(tc: &BpfToolchain) -> anyhow::Result<()> {
    exec(cargo(tc).args(["build", "--release", "--package", "lb-user", "--bins"]))
}

/// Build `bins` (of lb-user: `lbd`, `lbctl`; of lb-lab: the lab and the
/// benchmarks) in release mode.
pub fn release_bins(tc: &BpfToolchain, bins: &[&str]) -> anyhow::Result<()> {
    let mut cmd = cargo(tc);
    cmd.args([
        "build",
        "--release",
        "--package",
        "lb-user",
        "--package",
        "lb-lab",
    ]);
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    exec(&mut cmd)
}

/// Build, then run `lbd --iface IF ARGS...` in the foreground.
pub fn build_and_load(tc: &BpfToolchain, args: &LoadArgs) -> anyhow::Result<()> {
    release(tc)?;
    let lbd = workspace_root().join("target/release/lbd");
    let mut cmd = Command::new(&lbd);
    cmd.arg("--iface").arg(&args.iface).args(&args.lbd_args);
    exec(&mut cmd).with_context(|| format!("{} exited with an error", lbd.display()))
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}
