//! `docs/BENCHMARKS.md` and its plot, from one `cargo xtask bench` run.
//!
//! Every benchmark binary prints its tables plus one machine-readable line
//! per figure: `FIGURE name=value unit=U [target=T]`. The runner captures
//! each benchmark's output (still echoing it), and this module writes the
//! report: machine, kernel, date, command, each benchmark's output
//! verbatim, a summary of the figures, and a PNG plot (gnuplot).

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// One benchmark's captured output.
pub struct Section {
    /// Heading.
    pub title: String,
    /// The command, for the reader to rerun.
    pub command: String,
    /// Everything it printed on stdout.
    pub output: String,
}

/// Run `cmd`, echoing its stdout line by line, and return what it printed.
///
/// # Errors
/// It cannot start or exits unsuccessfully.
pub fn run_capture(cmd: &mut Command) -> anyhow::Result<String> {
    let line = format!("{cmd:?}");
    eprintln!("xtask: $ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {line}"))?;
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        for l in BufReader::new(stdout).lines() {
            let l = l.unwrap_or_default();
            println!("{l}");
            out.push_str(&l);
            out.push('\n');
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(out)
}

/// A `FIGURE` line, parsed.
struct Figure {
    name: String,
    value: String,
    unit: String,
    target: Option<String>,
}

fn figures(text: &str) -> Vec<Figure> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("FIGURE "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let (name, value) = words.next()?.split_once('=')?;
            let mut unit = String::new();
            let mut target = None;
            for w in words {
                match w.split_once('=') {
                    Some(("unit", u)) => u.clone_into(&mut unit),
                    Some(("target", t)) => target = Some(t.to_owned()),
                    _ => {}
                }
            }
            Some(Figure {
                name: name.to_owned(),
                value: value.to_owned(),
                unit,
                target,
            })
        })
        .collect()
}

fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Write `docs/BENCHMARKS.md` and `docs/benchmarks-failover.png` under
/// `root`.
///
/// # Errors
/// Writing the files fails.
pub fn write(root: &Path, command: &str, sections: &[Section]) -> anyhow::Result<()> {
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs)?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1_048_576.0)
        });
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `{command}` on {}.\n\n| | |\n|---|---|\n| machine | {cpu}, {cores} cores, {mem} |\n| kernel | {} |\n| date | {} |\n| command | `{command}` |\n\n",
        shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        shell("uname", &["-r"]),
        shell("date", &["-u", "+%Y-%m-%d"]),
    ));
    let all: Vec<Figure> = sections.iter().flat_map(|s| figures(&s.output)).collect();
    if !all.is_empty() {
        md.push_str(
            "## Summary of the figures\n\n| figure | value | unit | target |\n|---|---|---|---|\n",
        );
        for f in &all {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                f.name,
                f.value,
                f.unit,
                f.target.as_deref().unwrap_or("")
            ));
        }
        md.push('\n');
    }
    if plot(&docs, &all).is_ok() {
        md.push_str(
            "![Failover time by advert interval, lbd and keepalived](benchmarks-failover.png)\n\n",
        );
    }
    for s in sections {
        md.push_str(&format!(
            "## {}\n\n`{}`\n\n```\n{}```\n\n",
            s.title,
            s.command,
            s.output
                .lines()
                .filter(|l| !l.trim_start().starts_with("FIGURE "))
                .flat_map(|l| [l, "\n"])
                .collect::<String>()
        ));
    }
    md.push_str(GUIDE);
    std::fs::write(docs.join("BENCHMARKS.md"), md)?;
    eprintln!("xtask: wrote docs/BENCHMARKS.md");
    Ok(())
}

/// Failover medians per interval, lbd against keepalived, as a bar chart.
fn plot(docs: &Path, figs: &[Figure]) -> anyhow::Result<()> {
    let value = |imp: &str, interval: &str| {
        figs.iter()
            .find(|f| f.name == format!("failover_{imp}_{interval}_median"))
            .map(|f| f.value.clone())
    };
    let mut data = String::from("# interval lbd keepalived target\n");
    for interval in ["1s", "100ms", "50ms"] {
        let target = figs
            .iter()
            .find(|f| f.name == format!("failover_lbd_{interval}_median"))
            .and_then(|f| f.target.clone());
        if let (Some(l), Some(k), Some(t)) = (
            value("lbd", interval),
            value("keepalived", interval),
            target,
        ) {
            data.push_str(&format!("{interval} {l} {k} {t}\n"));
        }
    }
    if data.lines().count() < 2 {
        bail!("no failover figures");
    }
    let dat = docs.join("benchmarks-failover.dat");
    std::fs::write(&dat, data)?;
    let png = docs.join("benchmarks-failover.png");
    let script = format!(
        "set terminal png size 800,450\nset output '{}'\nset title 'VRRP failover: SIGKILL of the master to the VIP answering (median)'\n\
         set ylabel 'ms (log scale)'\nset logscale y\nset style data histograms\nset style histogram clustered gap 1\n\
         set style fill solid 0.8 border -1\nset key top right\nset grid ytics\n\
         plot '{}' using 2:xtic(1) title 'lbd', '' using 3 title 'keepalived 2.2.7', '' using 4 title 'target'\n",
        png.display(),
        dat.display()
    );
    let gp = docs.join("benchmarks-failover.gp");
    std::fs::write(&gp, script)?;
    let status = Command::new("gnuplot")
        .arg(&gp)
        .status()
        .context("running gnuplot (apt-get install gnuplot-nox)")?;
    let _ = std::fs::remove_file(&dat);
    let _ = std::fs::remove_file(&gp);
    if !status.success() {
        bail!("gnuplot failed");
    }
    Ok(())
}

/// What each figure measures, and the two-host procedure: the end of
/// every `docs/BENCHMARKS.md`.
const GUIDE: &str = r#"## What the figures measure

- **NIC-like path** (`nic-like`, the headline): `BPF_PROG_TEST_RUN` with
  live frames injects 64-byte frames on the LB's interface as a driver's
  receive path would, all on one CPU, and the kernel reports the time per
  frame: lb's program, the in-run floors (`XDP_DROP`, a minimal `XDP_TX`
  forwarder) and the kernel's own forwarding and nftables NAT (behind
  `XDP_PASS`) pay the same injection. The receiver counts every frame on
  the other CPU ("delivered"; "veth refused": frames the veth could not
  queue to the receiver, its ring full). It stands in for a NIC's
  transmit ring, which the NIC drains and the driver reclaims without the
  sending CPU waking anyone, so it polls: its NAPI stays armed on a
  timer on its own CPU (`napi_defer_hard_irqs` + `gro_flush_timeout`;
  the kernel's threaded busy polling would do it without a timer, but
  6.18 lacks it), and the LB's transmit only queues. By default veth's
  receiver sleeps once it has emptied its ring and the next transmit
  wakes it, an IPI paid on the LB's CPU, more often the slower the path:
  the two "sleeping receiver" rows and their ratio show that veth cost.
  Batches are of 256 frames because the test run's page pool is sized to
  the batch: with 64, up to a tenth of the frames coming back from the
  receiver's CPU overflowed it and were allocated and initialised afresh
  on the LB's CPU, more for slower paths. What is left of a NIC's cost
  (descriptor rings, DMA) is the same for every path and not in the
  figures.
- **Data plane** (`dataplane`): the program alone on one frame, repeated
  (`BPF_PROG_TEST_RUN`), ns per packet for each path. Then the connection
  table's memory at 1 M and 16 M entries: the kernel's charge (`memlock`,
  as `bpftool map show` prints it) and the pages the map really took
  (`/proc/vmallocinfo`, `lb_lab::mapmem`), beside the kernel's LRU hash's
  charge at 1 M.
- **Paths** (`paths`): end to end over veth in network namespaces; the
  veth driver's copy and thread wake-ups dominate the LB's cost there, so
  the per-core ratios measure veth as much as the balancer.
- **Control plane** (`controlplane`): the Maglev build alone; then
  `upsert_service` for 1,000 services and `set_backends_many` with their
  pools through the maps of a loaded object (what lbd does on a start or
  a reload: tables built on every core while the built ones are written),
  each service with its own pool of 100 (identical pools are built once,
  so a shared pool would flatter the figure), then all 1,000 moved to one
  shared pool; a health flip is one whole `set_backends` with one backend
  out or back (Maglev build, backend slot, the slots that moved counted, a
  spare table written, the VIP record pointed at it). lbd runs the same
  1,000 services over one shared pool of 100 with health checks off; its
  start is timed to its own log line saying every pool is written with
  every backend, and to `lbctl services` confirming it (each poll of that
  listing carries 100,000 backends, so the confirmation lags). About 2 s
  of the start is the kernel verifying the program (lbd logs it). A table
  is 2 bytes a slot (`lb_common::vip::table`), so the 1,000 tables take
  about 130 MiB of kernel memory; lbd maps a table only while it writes
  or reads it, so its RSS is its heap (the RssAnon line).
- **Failover, flows**: as their sections say.

## Line rate on real NICs: two hosts

`lbgen` sends prebuilt frames out of a real interface with XDP live frames
(no socket, no skb: millions of frames a second from one CPU), varying the
client port and address (N flows, or a new flow every frame) with correct
checksums. Against an lbd on another host:

1. On the LB host: lbd with a service (dsr, or any mode) on the NIC facing
   the generator, `metrics_listen` set in `[global]` (for example
   `"198.18.0.2:9100"`), and `sysctl -w kernel.bpf_stats_enabled=1` so its
   program's run time is counted. Note the NIC's MAC address.
2. On the generator host (root, the NIC's driver must support XDP
   transmission): `cargo xtask bench nic -- --iface eth1 --dst-mac
   LB_MAC --src 198.18.0.1 --dst VIP --dport 80 --flows 256 --count
   100000000 --metrics http://198.18.0.2:9100/metrics` (add `--rate PPS`
   to hold a rate, `--flows new` for a new flow every frame, `--proto
   tcp`, IPv6 addresses).
3. lbgen prints what it sent (frames/s, its own ns per frame, frames its
   interface refused) and, from lbd's counters before and after, what lbd
   forwarded (Mpps), its program's ns per run, and each LB CPU's busy and
   softirq share, with Mpps per LB core in softirq.

A 10 GbE link carries at most 14.88 Mpps of 64-byte frames. The
arithmetic from the NIC-like figures (2026-12-03 afternoon, this VM,
four runs of 5 paired rounds with the polling receiver: minimal XDP_TX
forwarder 97-108 ns/frame, lb dsr 137-161 ns/frame, so lb costs 40-55 ns
beyond the least a forwarder does, its program and helpers by perf; with
the sleeping receiver it paid 20-35 ns more, `__napi_schedule` waking the
receiving CPU): assume a native-XDP driver's receive plus
`XDP_TX` costs about 80 ns per frame (the order of the ~12-14 Mpps per
core published for `XDP_TX` on 10-40 GbE NICs; an assumption, not
measured here, as this machine has no NIC). Then lb dsr costs about
80 + 50 = 130 ns per frame, 7.7 Mpps per core: 2 cores of this CPU for
14.88 Mpps (fewer on a faster CPU: the same build measured half these
times on another machine). lbgen itself runs the minimal forwarder's
path: about 2.3 cores of this CPU for line rate.
"#;
