//! `cargo xtask`: the project's build, setup and test driver.
//!
//! Every command except `setup` runs setup first (fast when everything is
//! present), so a fresh Debian machine needs no manual step.

mod bench;
mod build;
mod exec;
mod report;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// lb's task runner. Start with `cargo xtask demo` or `cargo xtask test`.
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what the BPF build and the tests need (idempotent): Debian
    /// packages, bpf-linker, a toolchain with the Rust library source.
    Setup,
    /// Build lbd (with the XDP program inside) in release mode.
    Build,
    /// Build, then run lbd on an interface in the foreground.
    BuildAndLoad(build::LoadArgs),
    /// Formatting, clippy (warnings denied), unit tests, then the kernel
    /// tests (BPF_PROG_TEST_RUN and network namespaces; needs root).
    Test(test::TestArgs),
    /// Benchmarks, side by side in one run: dataplane, paths, controlplane,
    /// failover, flows; `all` (default) runs them all and writes
    /// docs/BENCHMARKS.md with a plot.
    Bench(bench::BenchArgs),
    /// Run the main job on the built-in lab: two LB nodes (a VRRP pair),
    /// three backends (nginx, Redis), a client; narrated, with timings;
    /// leaves nothing behind (also on Ctrl-C).
    Demo,
    /// The lab alone: `up`, `down` or `status` (network namespaces on this
    /// machine, addresses from 198.18.0.0/15).
    Lab {
        /// up | down | status
        action: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run().map(|_| ()),
        Command::Build => setup::run().and_then(|tc| build::release(&tc)),
        Command::BuildAndLoad(args) => {
            setup::run().and_then(|tc| build::build_and_load(&tc, &args))
        }
        Command::Test(args) => setup::run().and_then(|tc| test::run(&tc, &args)),
        Command::Bench(args) => setup::run().and_then(|tc| bench::run(&tc, &args)),
        Command::Demo => setup::run().and_then(|tc| lab(&tc, "demo")),
        Command::Lab { action } => setup::run().and_then(|tc| lab(&tc, &action)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Build the release binaries and run `lb-lab ACTION`.
fn lab(tc: &setup::BpfToolchain, action: &str) -> anyhow::Result<()> {
    if !["up", "down", "status", "demo"].contains(&action) {
        anyhow::bail!("unknown lab action {action:?}: up, down or status");
    }
    if !setup::is_root() {
        anyhow::bail!("the lab creates network namespaces and loads XDP programs: run as root");
    }
    build::release_bins(tc, &["lbd", "lbctl", "lb-lab"])?;
    let root = build::workspace_root();
    let release = root.join("target/release");
    exec::exec(
        std::process::Command::new(release.join("lb-lab"))
            .arg(action)
            .arg("--bin-dir")
            .arg(&release)
            .arg("--config-dir")
            .arg(root.join("examples/lab")),
    )
}
