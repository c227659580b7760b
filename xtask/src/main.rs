//! `cargo xtask`: the project's build, setup and test driver.
//!
//! Every command except `setup` runs setup first (fast when everything is
//! present), so a fresh Debian machine needs no manual step.

mod bench;
mod build;
mod exec;
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
    /// Benchmarks: `dataplane` (BPF_PROG_TEST_RUN ns/packet per path),
    /// `failover` (VRRP failover time, lbd vs keepalived), `all` (default).
    Bench(bench::BenchArgs),
    /// Run the main job on the built-in lab.
    Demo,
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
        Command::Demo => demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> anyhow::Result<()> {
    anyhow::bail!(
        "the demo is not built yet: it arrives with the lab (issue: the lab, `cargo xtask demo` \
         and `cargo xtask bench`). Today `cargo xtask build-and-load --iface IF` runs lbd on an \
         interface, and `cargo xtask test` shows it working in network namespaces."
    )
}
