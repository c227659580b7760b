//! Kernel test: the XDP program against its model (`lb_lab::difftest`),
//! a bounded run of generated and mutated frames through
//! `BPF_PROG_TEST_RUN`: every verdict, exit reason and output frame, and
//! the tables and counters every few thousand frames, must agree. Long
//! runs: `cargo xtask fuzz --minutes N`.
//!
//! Needs root (BPF). `cargo xtask test` refuses to run without it.

use std::time::Duration;

use lb_lab::difftest::{Options, run};

#[test]
fn the_program_does_what_its_model_does() {
    // A fixed seed in CI (a failure reruns the same frames); long runs
    // take the clock's.
    let report = run(&Options {
        seed: 0x6c62_6469_6666,
        frames: 300_000,
        duration: Duration::from_mins(5),
        check_every: 5_000,
        progress_every: Duration::ZERO,
    })
    .expect("the program loads and its maps read");
    println!("{}", report.summary());
    assert!(report.frames >= 300_000, "ran {} frames", report.frames);
    assert!(report.clean(), "differences:\n{}", report.summary());
    assert!(
        report.unpredictable * 1000 < report.frames,
        "the tables filled too often for the model: {}",
        report.unpredictable
    );
    // Every way out was taken (the generator reaches every path).
    let names = lb_user::dataplane::stats::EXIT_NAMES;
    for (i, n) in report.reasons.iter().enumerate() {
        let rare = ["drop_malformed", "drop_nat_full", "aborted"].contains(&names[i]);
        assert!(rare || *n > 0, "no frame left by {}", names[i]);
    }
}
