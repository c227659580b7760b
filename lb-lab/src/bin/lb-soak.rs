//! `lb-soak`: an lbd pair under traffic and churn for N minutes
//! (`lb_lab::soak`). Run by `cargo xtask soak --minutes N` (root).
//!
//! Prints each event as it happens (`--quiet`: only the summary), then the
//! summary table; exits 1 when the soak fails (a loss no event explains,
//! RSS or descriptors growing, an ERROR in a log, ...). Ctrl-C ends the
//! churn early and still removes everything it made.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use clap::Parser;
use lb_lab::soak;

/// Soak an lbd pair under traffic and churn. Needs root.
#[derive(Debug, Parser)]
struct Cli {
    /// Minutes of churn.
    #[arg(long, default_value_t = 10, conflicts_with = "seconds")]
    minutes: u64,
    /// Seconds of churn instead (for a short try).
    #[arg(long)]
    seconds: Option<u64>,
    /// Long-lived connections per generation (a generation every 15 s,
    /// living 60 s).
    #[arg(long, default_value_t = 10)]
    long_lived: usize,
    /// New connections per second.
    #[arg(long, default_value_t = 20)]
    new_per_sec: u32,
    /// Print only the summary, not each event.
    #[arg(long)]
    quiet: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let churn = Duration::from_secs(cli.seconds.unwrap_or(cli.minutes.saturating_mul(60)));
    if churn < Duration::from_secs(40) {
        eprintln!("lb-soak: at least 40 s of churn (one cycle of the schedule)");
        return ExitCode::FAILURE;
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let opts = soak::Options {
        long_lived: cli.long_lived,
        new_per_sec: cli.new_per_sec,
        verbose: !cli.quiet,
        ..soak::Options::new(churn)
    };
    println!(
        "lb-soak: {} s of churn; {} long-lived connections per generation, {} new a second",
        churn.as_secs(),
        opts.long_lived,
        opts.new_per_sec
    );
    match soak::run(&opts, &STOP) {
        Ok(summary) => {
            println!("\n{summary}");
            if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lb-soak: {e}");
            ExitCode::FAILURE
        }
    }
}
