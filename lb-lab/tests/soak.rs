//! Kernel test: the soak under churn (`lb_lab::soak`) for 2 minutes: an
//! lbd pair under continuous traffic while backends flap, reloads arrive
//! every few seconds, a backend is drained and enabled, VRRP priorities
//! change (three mastership moves) and lbctl is called in a loop. Every
//! broken or failed connection must be explained by an event, both lbds'
//! RSS and descriptors must stay flat, their logs hold no ERROR, both
//! exit 0. `cargo xtask soak --minutes N` runs the same for longer.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{sync::atomic::AtomicBool, time::Duration};

use lb_lab::soak;

#[test]
fn two_minutes_of_churn_lose_nothing_unexplained_and_leak_nothing() {
    let opts = soak::Options::new(Duration::from_mins(2));
    let never = AtomicBool::new(false);
    let summary = soak::run(&opts, &never).expect("the soak's lab starts (run as root)");
    println!("{summary}");
    // What the soak must have done for its verdict to mean something.
    assert!(
        summary.long_lived >= 50,
        "long-lived connections: {}",
        summary.long_lived
    );
    assert!(
        summary.new_ok >= 2000,
        "new connections: {}",
        summary.new_ok
    );
    for kind in [
        soak::Kind::Reload,
        soak::Kind::FlapDown,
        soak::Kind::Drain,
        soak::Kind::PriorityMove,
    ] {
        assert!(
            summary.events.get(&kind).copied().unwrap_or(0) >= 3,
            "{kind:?} events: {:?}",
            summary.events
        );
    }
    assert!(summary.mastership_moves >= 3, "{summary}");
    assert_eq!(summary.usage.len(), 2, "both lbds sampled");
    assert!(summary.passed(), "the soak failed:\n{summary}");
}
