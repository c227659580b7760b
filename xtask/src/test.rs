//! `cargo xtask test`: formatting, clippy, unit tests, kernel tests.

use anyhow::bail;

use crate::{build::cargo, exec::exec, setup::BpfToolchain};

/// Arguments of `test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Only run tests whose name contains this (passed to the test binaries).
    filter: Option<String>,
}

/// Run every stage in order; stop at the first failure.
pub fn run(tc: &BpfToolchain, args: &TestArgs) -> anyhow::Result<()> {
    // Kernel tests load BPF and create network namespaces. They must run,
    // not skip: refuse up front instead of reporting a green run that
    // tested nothing.
    if !crate::setup::is_root() {
        bail!(
            "the kernel tests need root (BPF, network namespaces): run `sudo -E cargo xtask test`"
        );
    }
    let filter: Vec<&str> = args.filter.iter().map(String::as_str).collect();
    eprintln!("xtask: == formatting");
    exec(cargo(tc).args(["fmt", "--all", "--check"]))?;
    eprintln!("xtask: == clippy (warnings denied)");
    exec(cargo(tc).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask: == unit tests");
    exec(
        cargo(tc)
            .args(["test", "--workspace", "--lib", "--bins", "--"])
            .args(&filter),
    )?;
    eprintln!("xtask: == kernel tests (BPF_PROG_TEST_RUN, network namespaces)");
    // The kernel tests (lb-lab/tests) run lbd and lbctl from the same
    // target directory; cargo builds only the tested package's binaries.
    exec(cargo(tc).args(["build", "--package", "lb-user", "--bins"]))?;
    // The package test (lb-lab/tests/package.rs) installs the Debian
    // package under systemd in a throwaway root: build it as an operator
    // would.
    eprintln!("xtask: == the Debian package (cargo xtask package)");
    let deb = crate::package::run(tc)?;
    exec(
        cargo(tc)
            .args(["test", "--package", "lb-lab", "--test", "*", "--"])
            .args(&filter)
            .env("LB_DEB", &deb),
    )?;
    eprintln!("xtask: all tests passed");
    Ok(())
}
