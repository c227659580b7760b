//! `lb-fuzz`: differential fuzzing of the XDP program against its model
//! (`lb_lab::difftest`), for as long as asked. Run by `cargo xtask fuzz
//! --minutes N`; needs root (BPF).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use lb_lab::difftest::{self, Options};

/// Generated and mutated frames through BPF_PROG_TEST_RUN and through the
/// model of the program: verdict, exit reason, output frame, tables and
/// counters must agree. Exits 1 on any difference.
#[derive(Debug, Parser)]
struct Cli {
    /// Run this long.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// Stop after this many frames (whichever comes first).
    #[arg(long, default_value_t = u64::MAX)]
    frames: u64,
    /// Generator seed (default: from the clock; printed, to rerun a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Compare the tables and counters, and empty the tables, this often.
    #[arg(long, default_value_t = 20_000)]
    check_every: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    if !(cli.minutes > 0.0 && cli.minutes.is_finite()) || cli.check_every == 0 {
        eprintln!("lb-fuzz: --minutes must be positive and --check-every at least 1");
        return ExitCode::from(2);
    }
    eprintln!("lb-fuzz: seed {seed}, {} minutes", cli.minutes);
    let opts = Options {
        seed,
        frames: cli.frames,
        duration: Duration::from_secs_f64(cli.minutes * 60.0),
        check_every: cli.check_every,
        progress_every: Duration::from_secs(30),
    };
    match difftest::run(&opts) {
        Ok(report) => {
            print!("{}", report.summary());
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!("lb-fuzz: differences found (rerun with --seed {seed})");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lb-fuzz: error: {e}");
            ExitCode::from(2)
        }
    }
}
