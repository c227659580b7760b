//! Running the balancer's program on a frame through `BPF_PROG_TEST_RUN`,
//! and reading which exit reasons a run bumped: what the fixture tests
//! (`tests/dataplane_test_run.rs`, `tests/nat_test_run.rs`) share.

use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::stats::ExitCounters;
use lb_user::dataplane::{loader::PROGRAM, stats};

/// Run the loaded balancer program of `ebpf` once on `frame`: the XDP
/// verdict and the frame it left (room for 512 bytes of growth).
///
/// # Panics
/// If the program is not loaded or the kernel refuses the run: a broken
/// test setup.
#[must_use]
pub fn run(ebpf: &Ebpf, frame: &[u8]) -> (u32, Vec<u8>) {
    let program: &Xdp = ebpf
        .program(PROGRAM)
        .expect("the balancer program")
        .try_into()
        .expect("an XDP program");
    let mut out = vec![0u8; frame.len() + 512];
    let r = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// The names (`stats::EXIT_NAMES`) of the exit reasons that changed
/// between two readings.
#[must_use]
pub fn exit_delta(before: &ExitCounters, after: &ExitCounters) -> Vec<&'static str> {
    let (b, a) = (stats::exit_fields(before), stats::exit_fields(after));
    stats::EXIT_NAMES
        .iter()
        .zip(b.iter().zip(a.iter()))
        .filter(|(_, (b, a))| a != b)
        .map(|(n, _)| *n)
        .collect()
}
