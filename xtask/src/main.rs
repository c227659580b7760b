//! `cargo xtask`: the project's build, setup and test driver.
//!
//! Every command except `setup` runs setup first (fast when everything is
//! present), so a fresh Debian machine needs no manual step.

mod bench;
mod build;
mod exec;
mod package;
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
    /// Build the Debian package target/debian/lb_VERSION_ARCH.deb: lbd and
    /// lbctl in /usr/sbin, the systemd unit (installed, not enabled),
    /// /etc/lb/lb.toml as a conffile, man pages, shell completions, the
    /// config's JSON Schema, the Grafana dashboard, the docs. Install it
    /// with `apt install ./target/debian/lb_*.deb`.
    Package,
    /// Build, then run lbd on an interface in the foreground.
    BuildAndLoad(build::LoadArgs),
    /// Formatting, clippy (warnings denied), unit tests, then the kernel
    /// tests (BPF_PROG_TEST_RUN and network namespaces; needs root).
    Test(test::TestArgs),
    /// Benchmarks, side by side in one run: dataplane, paths, controlplane,
    /// failover, flows; `all` (default) runs them all and writes
    /// docs/BENCHMARKS.md with a plot.
    Bench(bench::BenchArgs),
    /// A soak under churn: an lbd pair (VRRP, sync) under continuous
    /// traffic while backends flap, reloads arrive every few seconds,
    /// backends are drained and enabled, VRRP priorities move mastership
    /// and lbctl is called in a loop; every lost connection attributed to
    /// an event, lbd's RSS and descriptors flat, no error in the logs
    /// (lb-lab/src/soak.rs). Fails otherwise.
    Soak {
        /// Minutes of churn.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Run the main job on the built-in lab: two LB nodes (a VRRP pair),
    /// three backends (nginx, Redis), a client; narrated, with timings;
    /// leaves nothing behind (also on Ctrl-C).
    Demo,
    /// Differential fuzzing of the XDP program: generated and mutated
    /// frames through BPF_PROG_TEST_RUN and through its model (verdict,
    /// exit reason, output frame, tables, counters must agree).
    Fuzz {
        /// How long to run.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Generator seed (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// The lab alone: `up`, `down` or `status` (network namespaces on this
    /// machine, addresses from 198.18.0.0/15). `up --scale-out`: a router
    /// running bird2 (ECMP, BFD) in front of three lbd nodes that announce
    /// the VIP over BGP (docs/SCALE-OUT.md).
    Lab {
        /// up | down | status
        action: String,
        /// With `up`: the scale-out topology instead of the VRRP pair.
        #[arg(long)]
        scale_out: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run().map(|_| ()),
        Command::Build => setup::run().and_then(|tc| build::release(&tc)),
        Command::Package => setup::run().and_then(|tc| package::run(&tc).map(drop)),
        Command::BuildAndLoad(args) => {
            setup::run().and_then(|tc| build::build_and_load(&tc, &args))
        }
        Command::Test(args) => setup::run().and_then(|tc| test::run(&tc, &args)),
        Command::Bench(args) => setup::run().and_then(|tc| bench::run(&tc, &args)),
        Command::Soak { minutes } => setup::run().and_then(|tc| soak(&tc, minutes)),
        Command::Demo => setup::run().and_then(|tc| lab(&tc, "demo", false)),
        Command::Fuzz { minutes, seed } => setup::run().and_then(|tc| fuzz(&tc, minutes, seed)),
        Command::Lab { action, scale_out } => {
            setup::run().and_then(|tc| lab(&tc, &action, scale_out))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Build and run `lb-fuzz` (needs root: it loads the XDP program).
fn fuzz(tc: &setup::BpfToolchain, minutes: f64, seed: Option<u64>) -> anyhow::Result<()> {
    if !setup::is_root() {
        anyhow::bail!("fuzzing runs the XDP program through BPF_PROG_TEST_RUN: run as root");
    }
    build::release_bins(tc, &["lb-fuzz"])?;
    let bin = build::workspace_root().join("target/release/lb-fuzz");
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--minutes").arg(minutes.to_string());
    if let Some(seed) = seed {
        cmd.arg("--seed").arg(seed.to_string());
    }
    exec::exec(&mut cmd)
}

/// Build the release binaries and run `lb-soak --minutes MINUTES`.
fn soak(tc: &setup::BpfToolchain, minutes: u64) -> anyhow::Result<()> {
    if !setup::is_root() {
        anyhow::bail!("the soak creates network namespaces and loads XDP programs: run as root");
    }
    if minutes == 0 {
        anyhow::bail!("--minutes must be at least 1");
    }
    build::release_bins(tc, &["lbd", "lbctl", "lb-soak"])?;
    let release = build::workspace_root().join("target/release");
    exec::exec(
        std::process::Command::new(release.join("lb-soak"))
            .arg("--minutes")
            .arg(minutes.to_string()),
    )
}

/// Build the release binaries and run `lb-lab ACTION`.
fn lab(tc: &setup::BpfToolchain, action: &str, scale_out: bool) -> anyhow::Result<()> {
    if !["up", "down", "status", "demo"].contains(&action) {
        anyhow::bail!("unknown lab action {action:?}: up, down or status");
    }
    if scale_out && action != "up" {
        anyhow::bail!("--scale-out goes with `up` (down and status handle either lab)");
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
            .args(scale_out.then_some("--scale-out"))
            .arg("--bin-dir")
            .arg(&release)
            .arg("--config-dir")
            .arg(root.join("examples/lab")),
    )
}
