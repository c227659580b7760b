//! `lbgen`: a traffic generator for real NICs. It sends prebuilt frames out
//! of an interface with `BPF_PROG_TEST_RUN` live frames: the kernel injects
//! each frame on the interface, `nic_inject` (`lb-lab/ebpf`) restores the
//! template and gives the frame its flow (client port and the low 16 bits
//! of its address, checksums kept right), and `nic_out` returns `XDP_TX`,
//! so the driver transmits it without a socket, a copy or an skb. One CPU
//! reaches millions of frames a second (`cargo xtask bench nic` and
//! `docs/BENCHMARKS.md` say how to run it against an lbd on another host).
//!
//! The driver must support XDP transmission (`ndo_xdp_xmit`); on a veth
//! the peer needs an XDP program or GRO on to receive.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aya::{
    EbpfLoader,
    maps::{Array, ProgramArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use clap::Parser;
use lb_lab::nic::{iface_mac, parse_mac, tx_dropped};
use lb_lab::testpkt::{FrameSpec, L4};
use pnet_packet::tcp::TcpFlags;

/// Send frames out of an interface at up to line rate (XDP live frames).
/// Needs root.
#[derive(Debug, Parser)]
#[command(
    after_help = "Example: lbgen --iface eth1 --dst-mac 52:54:00:12:34:56 --src 198.18.0.1 --dst 198.18.0.100 --dport 80 --flows 256 --count 100000000\n\nPrints what it sent, how fast, and what the interface refused (its transmit ring full)."
)]
struct Cli {
    /// The interface to send from.
    #[arg(long)]
    iface: String,
    /// Destination MAC (the balancer's, or the next hop's).
    #[arg(long)]
    dst_mac: String,
    /// Source MAC; default: the interface's.
    #[arg(long)]
    src_mac: Option<String>,
    /// Client address (its low 16 bits vary with the flow).
    #[arg(long)]
    src: IpAddr,
    /// Destination address (the VIP).
    #[arg(long)]
    dst: IpAddr,
    /// Destination port.
    #[arg(long)]
    dport: u16,
    /// `udp` or `tcp`.
    #[arg(long, default_value = "udp")]
    proto: String,
    /// TCP flags of every segment: `syn` (every one opens a connection)
    /// or `ack` (segments of established connections).
    #[arg(long, default_value = "syn")]
    tcp_flags: String,
    /// Flows to spread the frames over, or `new` for a new flow every
    /// frame.
    #[arg(long, default_value = "256")]
    flows: String,
    /// Frames to send.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// Frames per second; 0: as fast as the CPU and the NIC go.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Frame size in bytes (headers included, no FCS): up to 96; default
    /// 64, or 96 where the headers need it (IPv6 TCP).
    #[arg(long)]
    size: Option<usize>,
    /// Frames per batch the kernel injects.
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// The CPU to send from.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// lbd's Prometheus endpoint (`http://HOST:PORT/metrics`, its
    /// `metrics_listen`): read before and after, to report what the
    /// balancer forwarded, its program's ns per packet (with
    /// `kernel.bpf_stats_enabled = 1` there) and its CPUs' load.
    #[arg(long)]
    metrics: Option<String>,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The frame to send, as the options say.
fn frame(cli: &Cli) -> Res<Vec<u8>> {
    if cli.src.is_ipv4() != cli.dst.is_ipv4() {
        return Err("--src and --dst must be of one address family".into());
    }
    let l4 = match cli.proto.as_str() {
        "udp" => L4::Udp {
            src: 1024,
            dst: cli.dport,
        },
        "tcp" => L4::Tcp {
            src: 1024,
            dst: cli.dport,
        },
        other => return Err(format!("--proto {other:?}: udp or tcp").into()),
    };
    let mut spec = FrameSpec::new(cli.src, cli.dst, l4);
    spec.tcp_flags = match cli.tcp_flags.as_str() {
        "syn" => TcpFlags::SYN,
        "ack" => TcpFlags::ACK,
        other => return Err(format!("--tcp-flags {other:?}: syn or ack").into()),
    };
    spec.payload.clear();
    let headers = spec.build().len();
    let default = if headers <= lb_lab::nic::SHORT {
        lb_lab::nic::SHORT
    } else {
        lb_lab::nic::LONG
    };
    let size = cli.size.unwrap_or(default);
    if size < headers.max(60) || size > lb_lab::nic::LONG {
        return Err(format!(
            "--size {size}: from {} to {} bytes for these headers",
            headers.max(60),
            lb_lab::nic::LONG
        )
        .into());
    }
    spec.payload = vec![0x6c; size - headers];
    let mut f = spec.build();
    f[..6].copy_from_slice(&parse_mac(&cli.dst_mac)?);
    let src_mac = match &cli.src_mac {
        Some(m) => parse_mac(m)?,
        None => iface_mac(&cli.iface)?,
    };
    f[6..12].copy_from_slice(&src_mac);
    Ok(f)
}

/// Frames the interface could not send so far: its `tx_dropped` and its
/// `ethtool -S` counters of failed XDP transmissions.
fn refused(iface: &str) -> u64 {
    let dropped = tx_dropped(iface);
    let xdp = std::process::Command::new("ethtool")
        .args(["-S", iface])
        .output()
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().split_once(": "))
                .filter(|(k, _)| k.contains("xdp") && (k.contains("err") || k.contains("drop")))
                .filter(|(k, _)| !k.starts_with("rx_queue") || k.contains("xdp_tx_err"))
                .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
                .sum()
        });
    dropped + xdp
}

fn run(cli: &Cli) -> Res<()> {
    let flows: u32 = match cli.flows.as_str() {
        "new" => u32::MAX,
        n => n
            .parse()
            .map_err(|_| format!("--flows {n:?}: a number of flows, or `new`"))?,
    };
    if cli.count == 0 || cli.batch == 0 {
        return Err("--count and --batch must be at least 1".into());
    }
    let frame = frame(cli)?;
    let ifindex = {
        let name = std::ffi::CString::new(cli.iface.as_str())?;
        // SAFETY: a NUL-terminated name.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => return Err(format!("no interface {}", cli.iface).into()),
            i => i,
        }
    };
    lb_lab::cpu::set_affinity(0, &[cli.cpu])?;
    let mut obj = EbpfLoader::new().load(lb_lab::TEST_OBJ)?;
    for name in ["nic_inject", "nic_out"] {
        let p: &mut Xdp = obj.program_mut(name).ok_or(name)?.try_into()?;
        p.load()?;
    }
    let out: &Xdp = obj.program("nic_out").ok_or("nic_out")?.try_into()?;
    let out_fd = out.fd()?.try_clone()?;
    let mut next = ProgramArray::try_from(obj.take_map("nic_next").ok_or("no nic_next")?)?;
    next.set(0, &out_fd, 0)?;
    let mut template: Array<_, lb_lab::nic::Template> =
        Array::try_from(obj.take_map("nic_template").ok_or("no nic_template")?)?;
    let t = lb_lab::nic::template(&frame, flows)?;
    let padded = t[16..16 + frame.len().max(lb_lab::nic::SHORT)].to_vec();
    template.set(0, t, 0)?;
    let inject: &Xdp = obj.program("nic_inject").ok_or("nic_inject")?.try_into()?;
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&u32::try_from(padded.len())?.to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());

    // A scrape is idempotent: one that a reset cut short (seen once in the
    // kernel test, right after a burst) is asked again.
    let scrape = |url: &String| {
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            match metrics::scrape(url) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(format!("--metrics {url}: {last} (3 attempts)"))
    };
    let lb_before = cli.metrics.as_ref().map(scrape).transpose()?;
    let refused_before = refused(&cli.iface);
    // Each kernel call costs tens of milliseconds of setup and teardown
    // (an RCU grace period) outside its timed part: calls of a million
    // frames unlimited, or of 50 ms' worth at the rate (sent at full speed,
    // then the pause), at least a batch.
    let chunk = if cli.rate == 0 {
        1_000_000
    } else {
        (cli.rate / 20).max(u64::from(cli.batch))
    };
    let start = Instant::now();
    let (mut sent, mut kernel_ns) = (0u64, 0f64);
    while sent < cli.count {
        let n = chunk.min(cli.count - sent);
        let r = inject.test_run(TestRunOptions {
            data_in: Some(&padded),
            ctx_in: Some(&ctx),
            repeat: u32::try_from(n)?,
            attrs: TestRunAttrs::new().xdp_live_frames(cli.batch),
            ..TestRunOptions::default()
        })?;
        kernel_ns += r.duration.as_secs_f64() * 1e9 * n as f64;
        sent += n;
        if cli.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / cli.rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let refused = refused(&cli.iface).saturating_sub(refused_before);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "sent {sent} frames of {} bytes from {} in {secs:.3} s: {:.0} frames/s ({:.3} Mpps); {:.0} ns/frame on the CPU (kernel); refused by {}: {refused}",
        padded.len(),
        cli.iface,
        sent as f64 / secs,
        sent as f64 / secs / 1e6,
        kernel_ns / sent as f64,
        cli.iface,
    )?;
    if let (Some(url), Some(before)) = (&cli.metrics, lb_before) {
        let after = scrape(url)?;
        writeln!(out, "{}", metrics::report(&before, &after))?;
    }
    Ok(())
}

/// lbd's counters, read over its Prometheus endpoint.
mod metrics {
    use std::collections::BTreeMap;
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};

    /// The samples of one scrape (`name{labels}` -> value) and when.
    pub struct Scrape {
        pub at: Instant,
        pub samples: BTreeMap<String, f64>,
    }

    /// `GET` the text exposition at `url` (`http://HOST:PORT/PATH`).
    pub fn scrape(url: &str) -> Result<Scrape, String> {
        let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
        let mut s = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let at = Instant::now();
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1).is_none_or(|c| c != "200")
        {
            return Err(format!("answered {:?}", head.lines().next().unwrap_or("")));
        }
        Ok(Scrape {
            at,
            samples: parse(body),
        })
    }

    /// `name{labels} value` lines.
    pub fn parse(body: &str) -> BTreeMap<String, f64> {
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    }

    /// The sum of the samples of metric `name` (every label set).
    fn sum(s: &BTreeMap<String, f64>, name: &str) -> f64 {
        s.iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// What the balancer did between two scrapes.
    pub fn report(a: &Scrape, b: &Scrape) -> String {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let delta = |name: &str| sum(&b.samples, name) - sum(&a.samples, name);
        let packets = delta("lb_vip_packets_total");
        let (runs, run_ns) = (
            delta("lb_xdp_program_runs_total"),
            delta("lb_xdp_program_run_nanoseconds_total"),
        );
        let mut out = format!(
            "lbd forwarded {packets:.0} packets in {secs:.3} s: {:.3} Mpps",
            packets / secs / 1e6
        );
        if runs > 0.0 {
            out += &format!(
                "; its program {:.0} ns per run ({runs:.0} runs)",
                run_ns / runs
            );
        } else {
            out += "; its program's run time is not counted (sysctl kernel.bpf_stats_enabled=1 on the LB)";
        }
        let softirq: f64 = b
            .samples
            .iter()
            .filter(|(k, _)| k.starts_with("lb_cpu_softirq_nanoseconds_total{"))
            .map(|(k, v)| v - a.samples.get(k).copied().unwrap_or(0.0))
            .sum();
        for (k, v) in b
            .samples
            .iter()
            .filter(|(k, _)| k.starts_with("lb_cpu_busy_nanoseconds_total{"))
        {
            let busy = (v - a.samples.get(k).copied().unwrap_or(0.0)) / 1e9 / secs;
            let cpu = k.trim_start_matches("lb_cpu_busy_nanoseconds_total");
            let soft_key = format!("lb_cpu_softirq_nanoseconds_total{cpu}");
            let soft = (b.samples.get(&soft_key).copied().unwrap_or(0.0)
                - a.samples.get(&soft_key).copied().unwrap_or(0.0))
                / 1e9
                / secs;
            out += &format!(
                "\n  LB {cpu}: {:.0}% busy, {:.0}% in softirq",
                busy * 100.0,
                soft * 100.0
            );
        }
        if softirq > 0.0 {
            out += &format!(
                "\n  {:.3} Mpps per LB core in softirq",
                packets / (softirq / 1e9) / 1e6
            );
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_report_from_two_scrapes() {
            let text = |packets: u64, runs: u64, ns: u64, busy: u64, soft: u64| {
                format!(
                    "# HELP x\nlb_vip_packets_total{{service=\"a\"}} {packets}\nlb_vip_packets_total{{service=\"b\"}} 0\n\
                     lb_xdp_program_runs_total {runs}\nlb_xdp_program_run_nanoseconds_total {ns}\n\
                     lb_cpu_busy_nanoseconds_total{{cpu=\"0\"}} {busy}\nlb_cpu_softirq_nanoseconds_total{{cpu=\"0\"}} {soft}\n# EOF\n"
                )
            };
            let t0 = Instant::now();
            let a = Scrape {
                at: t0,
                samples: parse(&text(0, 0, 0, 0, 0)),
            };
            let b = Scrape {
                at: t0 + Duration::from_secs(2),
                samples: parse(&text(
                    4_000_000,
                    4_000_000,
                    400_000_000,
                    1_000_000_000,
                    500_000_000,
                )),
            };
            let r = report(&a, &b);
            assert!(
                r.contains("lbd forwarded 4000000 packets in 2.000 s: 2.000 Mpps"),
                "{r}"
            );
            assert!(r.contains("its program 100 ns per run"), "{r}");
            assert!(
                r.contains("LB {cpu=\"0\"}: 50% busy, 25% in softirq"),
                "{r}"
            );
            assert!(r.contains("8.000 Mpps per LB core in softirq"), "{r}");
        }
    }
}
