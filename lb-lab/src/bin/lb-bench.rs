//! `lb-bench`: data-plane micro-benchmarks through `BPF_PROG_TEST_RUN`.
//! Run by `cargo xtask bench dataplane` (release build, root).
//!
//! Each path runs the same frame `--repeat` times in one kernel call; the
//! kernel reports the mean time per run; the figure is the median of seven
//! such calls, printed with their range. Paths: connection-table hit, new
//! flow (Maglev + insert: a TCP SYN always re-selects), non-VIP pass, and
//! `ipip` encapsulation (a table hit plus the encapsulation), `fullnat`
//! forward and reply on an established flow and a new flow (SNAT port and
//! the two NAT entries), each against the `dsr` paths. Then the cost
//! of connection sync's new-flow event: the new-flow path of the program
//! loaded with events off and on, measured alternately in one run (the
//! ring buffer drained between calls, so every event is really written).
//! Last, the connection table's memory at 1 M and 16 M entries (the
//! kernel's charge and the pages it took) beside the kernel's LRU hash's
//! charge at 1 M.

use std::{net::IpAddr, process::ExitCode};

use aya::{
    Ebpf, EbpfLoader,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use clap::Parser;
use lb_lab::testpkt::{FrameSpec, L4};
use lb_user::{
    dataplane::balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Protocol, ServiceKey, ServiceSpec,
    },
    dataplane::loader::{DECAP_PROGRAM, PROGRAM},
};

/// Data-plane micro-benchmarks (BPF_PROG_TEST_RUN ns/packet). Needs root.
#[derive(Debug, Parser)]
struct Cli {
    /// Runs per path (one kernel call each).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Backends behind each benchmark service.
    #[arg(long, default_value_t = 10)]
    backends: u8,
}

/// Calls per batched path (the figure is their median).
const CALLS: usize = 7;

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark's setup, measurements and report, read top to bottom; its closures share the loaded programs"
)]
fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    // The reference LRU is small, so nearly every insert evicts (a busy
    // table is full).
    let (ebpf, mut balancer) =
        lb_lab::testrun::load_balancer().map_err(|e| -> Box<dyn std::error::Error> { e })?;
    let mut test_progs = EbpfLoader::new()
        .map_max_entries("bench_lru", 1 << 16)
        .load(lb_lab::TEST_OBJ)?;
    let mut decap_obj = Ebpf::load(lb_user::DECAP_OBJ)?;
    let backends: Vec<BackendSpec> = (0..cli.backends)
        .map(|i| BackendSpec {
            addr: IpAddr::from([198, 18, 1, 10 + i]),
            weight: 1,
            mac: [2, 0, 0, 0, 1, i],
            port: 0,
            snat: None,
            arm: 0,
        })
        .collect();
    let snat: IpAddr = [198, 18, 2, 1].into();
    let nat_backends: Vec<BackendSpec> = backends
        .iter()
        .map(|b| BackendSpec {
            port: 8080,
            snat: Some(snat),
            arm: 0,
            ..*b
        })
        .collect();
    for (port, mode) in [(80, Mode::Dsr), (81, Mode::Ipip), (82, Mode::Fullnat)] {
        let key = ServiceKey {
            vip: IpAddr::from([198, 18, 0, 100]),
            port,
            proto: Protocol::Tcp,
        };
        let spec = ServiceSpec {
            mode,
            ring_size: lb_common::vip::DEFAULT_RING_SIZE,
            on_no_backend: NoBackend::Drop,
            ..ServiceSpec::default()
        };
        balancer.upsert_service(key, spec)?;
        let pool = if mode == Mode::Fullnat {
            &nat_backends
        } else {
            &backends
        };
        balancer.set_backends(&key, pool)?;
    }
    let client: IpAddr = [198, 18, 0, 1].into();
    let vip: IpAddr = [198, 18, 0, 100].into();
    let frame = |dport, syn: bool| {
        let mut f = FrameSpec::new(
            client,
            vip,
            L4::Tcp {
                src: 40000,
                dst: dport,
            },
        )
        .build();
        if !syn {
            f[14 + 20 + 13] = 0x10; // ACK: follows the connection table
        }
        f
    };
    let decap: &mut Xdp = decap_obj
        .program_mut(DECAP_PROGRAM)
        .ok_or("no decap program")?
        .try_into()?;
    decap.load()?;
    let insert: &mut Xdp = test_progs
        .program_mut("lb_bench_insert")
        .ok_or("no lb_bench_insert program")?
        .try_into()?;
    insert.load()?;
    let insert: &Xdp = test_progs
        .program("lb_bench_insert")
        .ok_or("no lb_bench_insert program")?
        .try_into()?;
    let decap: &Xdp = decap_obj
        .program(DECAP_PROGRAM)
        .ok_or("no decap program")?
        .try_into()?;
    let program: &Xdp = ebpf.program(PROGRAM).ok_or("no program")?.try_into()?;
    let run = |program: &Xdp,
               frame: &[u8],
               repeat: u32|
     -> Result<(u32, f64), Box<dyn std::error::Error>> {
        let mut out = vec![0u8; frame.len() + 256];
        let r = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })?;
        Ok((r.return_value, r.duration.as_secs_f64() * 1e9))
    };
    // Batched paths: the median of CALLS calls of `--repeat` runs each, so
    // a call slowed down by the host (a VM's neighbours) does not make the
    // figure; the spread is printed with it.
    let spread = std::cell::Cell::new((f64::NAN, f64::NAN));
    let batched = |program: &Xdp, frame: &[u8]| -> Result<(u32, f64), Box<dyn std::error::Error>> {
        let mut calls = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            calls.push(run(program, frame, cli.repeat)?);
        }
        calls.sort_by(|a, b| a.1.total_cmp(&b.1));
        spread.set((calls[0].1, calls[CALLS - 1].1));
        Ok(calls[CALLS / 2])
    };
    let time = |frame: &[u8]| batched(program, frame);
    // XDP test runs repeat on the same buffer, so a path that changes the
    // packet's addressing (ipip) only runs once per call: average single
    // runs over many calls instead (timer granularity included, so dsr is
    // measured the same way for the ratio).
    let single_each =
        |frame: &dyn Fn(u32) -> Vec<u8>| -> Result<(u32, f64), Box<dyn std::error::Error>> {
            let calls = (cli.repeat / 5).max(1);
            let mut total = 0.0;
            let mut verdict = 0;
            for i in 0..calls {
                let (v, ns) = run(program, &frame(i), 1)?;
                verdict = v;
                total += ns;
            }
            Ok((verdict, total / f64::from(calls)))
        };
    let single = |frame: &[u8]| single_each(&|_| frame.to_vec());
    // A different client (address and port) per call: each run is a
    // genuinely new flow, which the repeat loop cannot give (it replays one
    // frame, so its "new flow" re-selects one 5-tuple and rewrites its way).
    let new_client = |i: u32| {
        let [_, a, b, c] = i.to_be_bytes();
        FrameSpec::new(
            IpAddr::from([198, 19, b, c]),
            vip,
            L4::Tcp {
                src: 40000 + u16::from(a),
                dst: 80,
            },
        )
        .build()
    };
    // Prime the connection table for the hit paths.
    time(&frame(80, true))?;
    time(&frame(81, true))?;
    let non_vip = FrameSpec::new(
        client,
        [198, 18, 0, 200].into(),
        L4::Tcp {
            src: 40000,
            dst: 80,
        },
    )
    .build();
    println!(
        "BPF_PROG_TEST_RUN, {} backends per service, M = 65537",
        cli.backends
    );
    println!("{:<60} {:>10}   (min-max)", "path", "ns/packet");
    let report = |name: &str,
                  (verdict, ns): (u32, f64),
                  want: u32|
     -> Result<f64, Box<dyn std::error::Error>> {
        if verdict != want {
            return Err(format!("{name}: verdict {verdict}, expected {want}").into());
        }
        match spread.replace((f64::NAN, f64::NAN)) {
            (lo, _) if lo.is_nan() => println!("{name:<60} {ns:>10.1}"),
            (lo, hi) => println!("{name:<60} {ns:>10.1}   ({lo:.0}-{hi:.0})"),
        }
        Ok(ns)
    };
    let n = format!("median of {CALLS} x {}", cli.repeat);
    let floor = report(
        &format!("floor: lb_decap on a plain frame ({n})"),
        batched(decap, &non_vip)?,
        2,
    )?;
    let insert_floor = report(
        &format!("reference: kernel LRU hash insert alone ({n})"),
        batched(insert, &non_vip)?,
        2,
    )?;
    let pass = report(&format!("non-VIP pass ({n})"), time(&non_vip)?, 2)?;
    let hit = report(
        &format!("connection-table hit, dsr ({n})"),
        time(&frame(80, false))?,
        3,
    )?;
    let new = report(
        &format!("new flow: Maglev + insert, dsr ({n})"),
        time(&frame(80, true))?,
        3,
    )?;
    let calls = (cli.repeat / 5).max(1);
    let hit1 = report(
        &format!("connection-table hit, dsr (single runs x{calls})"),
        single(&frame(80, false))?,
        3,
    )?;
    let new1 = report(
        &format!("new flow, a new client each run (single runs x{calls})"),
        single_each(&new_client)?,
        3,
    )?;
    let ipip1 = report(
        &format!("ipip encap, table hit (single runs x{calls})"),
        single(&frame(81, false))?,
        3,
    )?;
    // fullnat: a flow recorded by one SYN, then its forward packets and
    // the backend's replies (each rewrites the packet: single runs).
    let mut primed = vec![0u8; 256];
    let syn = frame(82, true);
    let first = program.test_run(TestRunOptions {
        data_in: Some(&syn),
        data_out: Some(&mut primed),
        ..TestRunOptions::default()
    })?;
    if first.return_value != 3 {
        return Err(format!("fullnat SYN: verdict {}", first.return_value).into());
    }
    let snat_port = u16::from_be_bytes([primed[34], primed[35]]);
    let backend = IpAddr::from([primed[30], primed[31], primed[32], primed[33]]);
    let mut reply = FrameSpec::new(
        backend,
        snat,
        L4::Tcp {
            src: 8080,
            dst: snat_port,
        },
    )
    .build();
    reply[14 + 20 + 13] = 0x10;
    let nat_fwd1 = report(
        &format!("fullnat forward, established (single runs x{calls})"),
        single(&frame(82, false))?,
        3,
    )?;
    let nat_rev1 = report(
        &format!("fullnat reply, established (single runs x{calls})"),
        single(&reply)?,
        3,
    )?;
    let new_nat_client = |i: u32| {
        let [_, high, mid, low] = i.to_be_bytes();
        FrameSpec::new(
            IpAddr::from([198, 19, mid, low]),
            vip,
            L4::Tcp {
                src: 40000 + u16::from(high),
                dst: 82,
            },
        )
        .build()
    };
    let nat_new1 = report(
        &format!("fullnat new flow: SNAT port + 2 inserts (single runs x{calls})"),
        single_each(&new_nat_client)?,
        3,
    )?;
    let (events_off, events_on) = sync_event_cost(&backends)?;
    println!(
        "{:<60} {events_off:>10.1}",
        format!("new flow, events off (median of {SYNC_ROUNDS} x {SYNC_REPEAT})")
    );
    println!(
        "{:<60} {events_on:>10.1}",
        format!("new flow + sync event, events on (median of {SYNC_ROUNDS} x {SYNC_REPEAT})")
    );
    flow_table_memory()?;
    for (name, value, target) in [
        ("dataplane_new_flow_events_off", events_off, None),
        ("dataplane_new_flow_sync_event", events_on, None),
        ("dataplane_non_vip_pass", pass, None),
        ("dataplane_hit", hit, Some(50)),
        ("dataplane_new_flow", new, Some(80)),
        ("dataplane_kernel_lru_insert_alone", insert_floor, None),
        ("dataplane_ipip_single_run", ipip1, None),
        ("dataplane_dsr_single_run", hit1, None),
        ("dataplane_new_client_single_run", new1, None),
        ("dataplane_fullnat_forward_single_run", nat_fwd1, None),
        ("dataplane_fullnat_reply_single_run", nat_rev1, None),
        ("dataplane_fullnat_new_flow_single_run", nat_new1, None),
    ] {
        match target {
            Some(t) => println!("FIGURE {name}={value:.1} unit=ns target={t}"),
            None => println!("FIGURE {name}={value:.1} unit=ns"),
        }
    }
    println!(
        "fullnat (single runs): forward / dsr hit = {:.2}; reply / dsr hit = {:.2}; new flow / dsr new client = {:.2}",
        nat_fwd1 / hit1,
        nat_rev1 / hit1,
        nat_new1 / new1
    );
    println!(
        "sync event: new flow with / without = {:.3} (+{:.1} ns)",
        events_on / events_off,
        events_on - events_off
    );
    println!(
        "ratios: new flow / hit = {:.2}; new flow / kernel LRU insert alone = {:.2}; new client / hit (single runs) = {:.2}; ipip / dsr hit (single runs) = {:.2}; hit / non-VIP pass = {:.2}; non-VIP pass / floor = {:.2}",
        new / hit,
        new / insert_floor,
        new1 / hit1,
        ipip1 / hit1,
        hit / pass,
        pass / floor
    );
    Ok(())
}

/// The connection table's memory at 1 M entries (the default) and 16 M,
/// and the kernel's LRU hash at 1 M beside it: the kernel's charge
/// (`memlock`, as `bpftool map show` prints it) and, for the table, the
/// pages its creation took (`lb_lab::mapmem`).
fn flow_table_memory() -> Result<(), Box<dyn std::error::Error>> {
    const MIB: f64 = 1024.0 * 1024.0;
    println!(
        "{:<40} {:>10} {:>12} {:>8} {:>14} {:>8}",
        "connection table memory", "flows", "memlock MiB", "B/flow", "allocated MiB", "B/flow"
    );
    for (label, entries) in [("1m", 1u32 << 20), ("16m", 1 << 24)] {
        let m = lb_lab::mapmem::flow_table_memory(entries)?;
        let flows = m.capacity as f64;
        println!(
            "{:<40} {:>10} {:>12.1} {:>8.1} {:>14.1} {:>8.1}",
            format!("lb connection table, {} entries", label.to_uppercase()),
            m.capacity,
            m.memlock as f64 / MIB,
            m.memlock as f64 / flows,
            m.allocated as f64 / MIB,
            m.allocated as f64 / flows,
        );
        println!(
            "FIGURE dataplane_flow_table_{label}_memlock={:.1} unit=MiB",
            m.memlock as f64 / MIB
        );
        println!(
            "FIGURE dataplane_flow_table_{label}_allocated={:.1} unit=MiB",
            m.allocated as f64 / MIB
        );
    }
    let lru_entries = 1u32 << 20;
    let lru = EbpfLoader::new()
        .map_max_entries("bench_lru", lru_entries)
        .load(lb_lab::TEST_OBJ)?;
    let memlock = lb_lab::mapmem::memlock(&lru, "bench_lru")?;
    println!(
        "{:<40} {:>10} {:>12.1} {:>8.1}",
        "reference: kernel LRU hash, 1M entries",
        lru_entries,
        memlock as f64 / MIB,
        memlock as f64 / f64::from(lru_entries),
    );
    println!(
        "FIGURE dataplane_kernel_lru_1m_memlock={:.1} unit=MiB",
        memlock as f64 / MIB
    );
    Ok(())
}

/// Rounds of the event-cost comparison (alternating off and on).
const SYNC_ROUNDS: usize = 15;
/// Runs per call: well under the ring buffer's 65,536 events, so no event
/// finds it full.
const SYNC_REPEAT: u32 = 50_000;

/// The new-flow path (a SYN, Maglev + insert) of the program loaded with
/// new-flow events off and on, same services: median ns per packet of
/// each, measured alternately; the ring buffer is drained after each call.
fn sync_event_cost(backends: &[BackendSpec]) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let load = |events: bool| -> Result<(Ebpf, Balancer<EbpfMaps>), Box<dyn std::error::Error>> {
        let sizes = lb_user::dataplane::loader::Sizes::default();
        let mut ebpf = lb_user::dataplane::loader::load_object_with(&sizes, events, None)?;
        let program: &mut Xdp = ebpf.program_mut(PROGRAM).ok_or("no program")?.try_into()?;
        program.load()?;
        let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf)?);
        let key = ServiceKey {
            vip: IpAddr::from([198, 18, 0, 100]),
            port: 80,
            proto: Protocol::Tcp,
        };
        balancer.upsert_service(
            key,
            ServiceSpec {
                mode: Mode::Dsr,
                ring_size: lb_common::vip::DEFAULT_RING_SIZE,
                on_no_backend: NoBackend::Drop,
                ..ServiceSpec::default()
            },
        )?;
        balancer.set_backends(&key, backends)?;
        Ok((ebpf, balancer))
    };
    let (off, _off_balancer) = load(false)?;
    let (mut on, _on_balancer) = load(true)?;
    let mut ring = aya::maps::RingBuf::try_from(
        on.take_map(lb_common::flow::FLOW_EVENTS_MAP)
            .ok_or("no flow_events map")?,
    )?;
    let syn = FrameSpec::new(
        IpAddr::from([198, 18, 0, 1]),
        IpAddr::from([198, 18, 0, 100]),
        L4::Tcp {
            src: 40000,
            dst: 80,
        },
    )
    .build();
    let call = |ebpf: &Ebpf| -> Result<f64, Box<dyn std::error::Error>> {
        let program: &Xdp = ebpf.program(PROGRAM).ok_or("no program")?.try_into()?;
        let mut out = vec![0u8; syn.len() + 256];
        let r = program.test_run(TestRunOptions {
            data_in: Some(&syn),
            data_out: Some(&mut out),
            repeat: SYNC_REPEAT,
            ..TestRunOptions::default()
        })?;
        if r.return_value != 3 {
            return Err(format!("new flow: verdict {}, expected XDP_TX", r.return_value).into());
        }
        Ok(r.duration.as_secs_f64() * 1e9)
    };
    let mut times = (Vec::new(), Vec::new());
    let mut drained = 0u64;
    for _ in 0..SYNC_ROUNDS {
        times.0.push(call(&off)?);
        times.1.push(call(&on)?);
        while ring.next().is_some() {
            drained += 1;
        }
    }
    let want = SYNC_ROUNDS as u64 * u64::from(SYNC_REPEAT);
    if drained != want {
        return Err(format!("{drained} sync events read back, expected {want}").into());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(&mut times.0), median(&mut times.1)))
}
