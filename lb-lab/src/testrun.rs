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
    run_on(ebpf, frame, 0)
}

/// [`run`], the frame received on interface `ingress_ifindex` (0: none;
/// else an interface of the calling thread's network namespace): what
/// the program reads as `xdp_md.ingress_ifindex`.
///
/// # Panics
/// As [`run`].
#[must_use]
pub fn run_on(ebpf: &Ebpf, frame: &[u8], ingress_ifindex: u32) -> (u32, Vec<u8>) {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex (u32 each); the kernel wants
    // data_end to be the frame's length.
    let mut ctx = [0u8; 24];
    let len = u32::try_from(frame.len()).expect("a frame fits a u32");
    ctx[4..8].copy_from_slice(&len.to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
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
            ctx_in: (ingress_ifindex != 0).then_some(&ctx[..]),
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

/// The balancer program loaded (not attached) with its maps behind a
/// [`Balancer`], and the global settings the benchmarks use (an `ipip`
/// source range in 198.18.255.0/24, MTU 1500, the default SNAT ports).
///
/// # Errors
/// The object does not load or the settings cannot be written.
pub fn load_balancer() -> Result<
    (
        Ebpf,
        lb_user::dataplane::balancer::Balancer<lb_user::dataplane::balancer::EbpfMaps>,
    ),
    Box<dyn std::error::Error + Send + Sync>,
> {
    use lb_user::dataplane::balancer::{Balancer, EbpfMaps};
    let mut ebpf = Ebpf::load(lb_user::EBPF_OBJ)?;
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).ok_or("no program")?.try_into()?;
    program.load()?;
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf)?);
    let (port_min, port_max) = lb_common::nat::DEFAULT_SNAT_PORTS;
    balancer.set_config(&lb_common::config::Config {
        ipip_src_v4_be: u32::from_ne_bytes([198, 18, 255, 0]),
        ipip_src_v4_mask_be: u32::from_ne_bytes([0, 0, 0, 255]),
        mtu: 1500,
        snat_port_min: port_min,
        snat_ports: port_max - port_min + 1,
        ..lb_common::config::Config::default()
    })?;
    Ok((ebpf, balancer))
}
