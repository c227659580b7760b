//! `lb-pathbench`: the data path side by side, on one topology and one load
//! in one run: the direct path client → backend (the ceiling), lb `dsr`,
//! lb `ipip`, lb `fullnat`, nftables DNAT, nftables DNAT + masquerade and
//! HAProxy (mode tcp). The full proxies (backends answer the LB: fullnat,
//! DNAT + masquerade, HAProxy) are compared with each other. Run by
//! `cargo xtask bench paths` (root, 2 CPUs or more).
//!
//! Topology (network namespaces on one bridge, as in the daemon tests):
//! client 198.18.0.1, LB 198.18.0.2 holding the VIP 198.18.0.100 on eth0,
//! backends b1..b3 (198.18.0.11-13) running nginx, with the VIP on lo and
//! arp_ignore/arp_announce (LVS-DR style). One path at a time is set up in
//! the LB namespace and removed after it:
//! - `lb dsr` / `lb ipip`: `lbd --config` with services VIP:9/udp and
//!   VIP:80/tcp, XDP in native mode (default) or generic mode
//!   (`--xdp-mode generic`). veth delivers XDP_TX frames only to a peer that
//!   has an XDP program, so the LB's bridge port carries `lb_pass` (for all
//!   paths alike). For ipip the backends run `lbd decap` (generic mode).
//! - `haproxy`: `mode tcp`, `balance roundrobin`, one thread, bound to VIP:80.
//! - `nftables`: nat prerouting `dnat to numgen random mod 3 map {...}`;
//!   backends route the client via the LB, so replies are un-NATed there.
//! - `lb fullnat`: lbd with both services in `fullnat` (the servers see the
//!   LB's address; their transmit checksum offload is off for this path,
//!   see `Bench::backends_tx_offload`).
//! - `nft masq`: the same DNAT plus `masquerade` towards the backends.
//!
//! Backends count what arrives with nftables counters at prerouting
//! priority raw (`udp dport 9` counted and dropped, `tcp dport 80` counted),
//! so the count is what reached their IP layer, after any decapsulation.
//!
//! CPUs: the LB's eth0 and its bridge port run threaded NAPI. The LB's NAPI
//! thread, its bridge port's NAPI thread and lbd or HAProxy are pinned to
//! CPU 1 (the LB's machine, as it were); the client, wrk, the generator,
//! nginx and every other packet's processing (receive steering on the
//! client's and backends' eth0) to CPU 0.
//!
//! LB CPU time: everything the LB namespace does with a received packet (XDP
//! and XDP_TX, or the kernel stack with nftables, or TCP up to HAProxy's
//! socket) runs in the LB's NAPI thread, whose run time the scheduler
//! accounts to the nanosecond (/proc/TID/schedstat); lbd's or HAProxy's
//! threads are added the same way. That holds whatever else the machine
//! runs (a shared VM: CPU-wide /proc/stat figures would count other
//! tenants). The frames the LB sends are handled by the bridge port's
//! thread, not charged to the LB. `gro_max_size 1` on the LB's eth0 keeps
//! NAPI but stops GRO merging, so every path handles wire-sized packets.
//! For lbd, the XDP program's own run time (BPF_ENABLE_STATS, held only
//! during the A windows of the lb paths) is reported beside it.
//!
//! Windows, per path:
//! - A1a, UDP flood: 512 flows (connected sockets, one source port each),
//!   18-byte payloads (64-byte frames), sendmmsg from one thread: packets
//!   per second forwarded, counted at the backends. HAProxy does not proxy
//!   UDP: no A1 figure for it.
//! - A1b, the same at a fixed rate (`--udp-rate`) for every path: LB CPU
//!   per packet received at equal load; packets/s per LB core = its inverse.
//! - A2, short TCP connections (connect, GET, `Connection: close`) at a
//!   fixed rate (`--conn-rate`) for all five paths: LB CPU per connection
//!   (HAProxy's packets to the backends are not the client's, so packets
//!   are not a common unit).
//! - B, HTTP keep-alive with wrk: requests/s and p50/p99 latency;
//!   `--http-rounds` rounds, path order alternating, median reported.
//!
//! `LB_PATHBENCH_ONLY=direct,lb_dsr,...` runs only the paths named.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use clap::Parser;
use lb_lab::{
    cpu::{runtime_ns, set_affinity, set_affinity_all, set_threaded, threaded_napi},
    daemon::Daemon,
    netns::{Lan, Netns, run as run_cmd, wait_for},
};
use lb_user::config::{
    BackendConfig, Config, Dataplane, Global, Health, HealthKind, Protocol, Service,
};

const VIP: &str = "198.18.0.100";
const CLIENT: &str = "198.18.0.1";
const LB_ADDR: &str = "198.18.0.2";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "198.18.0.11"),
    ("b2", "198.18.0.12"),
    ("b3", "198.18.0.13"),
];
/// The LB's port on the bridge (hosts are added client, lb, b1..b3).
const LB_PORT: &str = "p2";
const UDP_PORT: u16 = 9;
/// UDP flows of the flood: one connected socket (source port) each.
const FLOWS: usize = 512;
/// Datagrams per sendmmsg call.
const BATCH: usize = 32;
/// Payload bytes: 14 + 20 + 8 + 18 = a 60-byte frame (64 with FCS).
const PAYLOAD: usize = 18;
/// wrk threads: one per backend on the direct path, the same elsewhere.
const WRK_THREADS: usize = 3;
/// The CPU of the LB's threads in phase A.
const LB_CPU: usize = 1;
/// Everything else in phase A.
const REST_CPU: usize = 0;
/// Load before each A1 measurement window (flows, ARP, conntrack warm).
const WARMUP: Duration = Duration::from_secs(1);
/// Client threads of the paced TCP window.
const CONN_THREADS: u64 = 4;

/// Data-path comparison: direct, lb dsr, lb ipip, nftables DNAT, HAProxy.
/// Needs root and 2 or more CPUs.
#[derive(Debug, Parser)]
struct Cli {
    /// The `lbd` binary to test.
    #[arg(long)]
    lbd: PathBuf,
    /// Seconds per measurement window (A1a, A1b, A2, and B per round).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// wrk connections (B).
    #[arg(long, default_value_t = 24)]
    connections: usize,
    /// Offered load of the paced UDP window (A1), packets/s: the same for
    /// every path, so LB CPU per packet compares like with like.
    #[arg(long, default_value_t = 200_000)]
    udp_rate: u64,
    /// Offered load of the paced TCP window (A2), connections/s.
    #[arg(long, default_value_t = 1_000)]
    conn_rate: u64,
    /// Rounds of the HTTP keep-alive window (B); the median is reported.
    #[arg(long, default_value_t = 3)]
    http_rounds: usize,
    /// XDP attach mode of lbd on the LB's eth0: native or generic.
    #[arg(long, default_value = "native", value_parser = ["native", "generic"])]
    xdp_mode: String,
}

type Error = Box<dyn std::error::Error>;
type Res<T> = Result<T, Error>;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

fn check_stop() -> Res<()> {
    if STOP.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleep `d`, waking early (with an error) on SIGINT/SIGTERM.
fn sleep(d: Duration) -> Res<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_stop()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Direct,
    LbDsr,
    LbIpip,
    /// lb `fullnat`: a full proxy at L4, backends answer the LB.
    LbFullnat,
    Haproxy,
    Nft,
    /// nftables DNAT + masquerade: the kernel's full NAT, backends
    /// answer the LB.
    NftMasq,
}

/// Round-one order. Deleting the nat table unregisters conntrack from the
/// LB namespace, so later rounds may run nftables before the others.
const PATHS: [PathKind; 7] = [
    PathKind::Direct,
    PathKind::LbDsr,
    PathKind::LbIpip,
    PathKind::LbFullnat,
    PathKind::Haproxy,
    PathKind::Nft,
    PathKind::NftMasq,
];

impl PathKind {
    const fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::LbDsr => "lb dsr",
            Self::LbIpip => "lb ipip",
            Self::LbFullnat => "fullnat",
            Self::Haproxy => "haproxy",
            Self::Nft => "nftables",
            Self::NftMasq => "nft masq",
        }
    }

    /// Name in FIGURE lines.
    const fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::LbDsr => "lb_dsr",
            Self::LbIpip => "lb_ipip",
            Self::LbFullnat => "lb_fullnat",
            Self::Haproxy => "haproxy",
            Self::Nft => "nftables",
            Self::NftMasq => "nftables_masq",
        }
    }

    const fn udp(self) -> bool {
        !matches!(self, Self::Haproxy)
    }

    const fn is_lb(self) -> bool {
        matches!(self, Self::LbDsr | Self::LbIpip | Self::LbFullnat)
    }
}

// ---------------------------------------------------------------------------
// CPU accounting and affinity

#[derive(Debug, Clone, Copy)]
struct CpuSnap {
    at: Instant,
    /// idle + iowait, USER_HZ ticks (nohz-exact).
    idle: u64,
    steal: u64,
}

fn cpu_snap(cpu: usize) -> Res<CpuSnap> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let tag = format!("cpu{cpu} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&tag))
        .ok_or_else(|| format!("/proc/stat has no cpu{cpu} line"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return Err(format!("short /proc/stat line: {line}").into());
    }
    Ok(CpuSnap {
        at: Instant::now(),
        idle: v[3] + v[4],
        steal: v[7],
    })
}

/// Busy seconds of the CPU between two snapshots.
fn busy_secs(a: &CpuSnap, b: &CpuSnap) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let wall = (b.at - a.at).as_secs_f64();
    let idle = b.idle.saturating_sub(a.idle) as f64 / hz;
    let steal = b.steal.saturating_sub(a.steal) as f64 / hz;
    (wall - idle - steal).clamp(0.0, wall)
}

// ---------------------------------------------------------------------------
// Results

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Snap {
    at: Instant,
    /// LB CPU time so far, ns.
    lb_ns: u64,
    /// Packets the LB's eth0 received so far.
    lb_rx: u64,
    /// Packets counted at the backends so far.
    arrived: u64,
    /// Datagrams the generator sent so far.
    sent: u64,
    /// lbd's XDP program: run time (ns) and runs so far.
    prog: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    secs: f64,
    /// Packets counted at the backends.
    arrived: u64,
    /// Packets the LB received.
    lb_rx: u64,
    /// LB CPU seconds (its NAPI thread, lbd or HAProxy).
    lb_cpu: f64,
    /// lbd's XDP program: run time (ns) and runs.
    prog: Option<(u64, u64)>,
}

impl Window {
    fn between(a: &Snap, b: &Snap) -> Self {
        Self {
            secs: (b.at - a.at).as_secs_f64(),
            arrived: b.arrived.saturating_sub(a.arrived),
            lb_rx: b.lb_rx.saturating_sub(a.lb_rx),
            lb_cpu: b.lb_ns.saturating_sub(a.lb_ns) as f64 / 1e9,
            prog: a
                .prog
                .zip(b.prog)
                .map(|((t0, n0), (t1, n1))| (t1.saturating_sub(t0), n1.saturating_sub(n0))),
        }
    }

    fn lb_util(&self) -> f64 {
        self.lb_cpu / self.secs
    }

    /// lbd's XDP program: ns per run.
    fn prog_ns(&self) -> Option<f64> {
        self.prog
            .and_then(|(ns, runs)| (runs > 0).then(|| ns as f64 / runs as f64))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct UdpResult {
    sent: u64,
    w: Window,
}

impl UdpResult {
    /// LB CPU per packet it received, ns.
    fn lb_ns_per_pkt(&self) -> Option<f64> {
        (self.w.lb_rx > 0 && self.w.lb_cpu > 0.0).then(|| self.w.lb_cpu * 1e9 / self.w.lb_rx as f64)
    }

    /// Packets per second one LB core handles at that cost.
    fn per_core(&self) -> Option<f64> {
        self.lb_ns_per_pkt().map(|ns| 1e9 / ns)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct WrkOut {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    non2xx: u64,
}

/// The paced TCP window: connections completed and failed, LB CPU.
#[derive(Debug, Clone, Copy, Default)]
struct ConnResult {
    ok: u64,
    failed: u64,
    w: Window,
}

impl ConnResult {
    /// LB CPU per connection, us.
    fn lb_us_per_conn(&self) -> Option<f64> {
        (self.ok > 0 && self.w.lb_cpu > 0.0).then(|| self.w.lb_cpu * 1e6 / self.ok as f64)
    }

    /// Connections per second one LB core handles at that cost.
    fn conn_per_core(&self) -> Option<f64> {
        self.lb_us_per_conn().map(|us| 1e6 / us)
    }

    /// lbd's XDP program per connection, us.
    fn prog_us_per_conn(&self) -> Option<f64> {
        let (ns, _) = self.w.prog?;
        (self.ok > 0).then(|| ns as f64 / 1e3 / self.ok as f64)
    }
}

#[derive(Debug, Default)]
struct PathResult {
    flood: Option<UdpResult>,
    paced: Option<UdpResult>,
    conns: Option<ConnResult>,
    keepalive: Vec<WrkOut>,
    /// HTTP at a fixed, unsaturated rate (wrk pausing between requests).
    fixed_rate: Vec<WrkOut>,
    errors: Vec<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

impl PathResult {
    /// Median over the HTTP rounds.
    fn http(&self, f: impl Fn(&WrkOut) -> f64) -> Option<f64> {
        median(self.keepalive.iter().map(f).collect())
    }
}

// ---------------------------------------------------------------------------
// wrk output

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn parse_wrk(text: &str) -> Res<WrkOut> {
    let mut out = WrkOut::default();
    let mut got_rps = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            out.rps = v.trim().parse()?;
            got_rps = true;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            out.errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            out.non2xx = v.trim().parse().unwrap_or(0);
        } else if t.contains(" requests in ") {
            out.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("50%") {
            out.p50_ms = parse_duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            out.p99_ms = parse_duration_ms(v).unwrap_or(f64::NAN);
        }
    }
    if got_rps {
        Ok(out)
    } else {
        Err(format!("no Requests/sec in wrk output:\n{text}").into())
    }
}

// ---------------------------------------------------------------------------
// The UDP generator

/// Send `BATCH`-sized sendmmsg bursts round-robin over `socks` until `stop`,
/// as fast as possible or at `rate` packets/s.
fn flood(socks: &[UdpSocket], stop: &AtomicBool, sent: &AtomicU64, rate: Option<u64>) {
    let payload = [0x5a_u8; PAYLOAD];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is plain data; zero is a valid empty header.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &raw mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let start = Instant::now();
    let mut total = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        for s in socks {
            if let Some(rate) = rate {
                while total + BATCH as u64 > (start.elapsed().as_secs_f64() * rate as f64) as u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            // SAFETY: msgs point at iov, which points at payload; all live
            // for the call. Connected sockets: no address needed.
            let n = unsafe {
                libc::sendmmsg(
                    s.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                total += n as u64;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------
// The bench

struct Bench {
    lbd: PathBuf,
    secs: u64,
    connections: usize,
    udp_rate: u64,
    conn_rate: u64,
    xdp_mode: String,
    dir: PathBuf,
    /// nginx pid per backend.
    nginx: Vec<u32>,
    /// `lbd decap` on each backend, ipip only.
    decap: Vec<Daemon>,
    /// The process serving the current path in the LB namespace.
    lb_proc: Option<Daemon>,
    /// lbd's XDP program id, while lbd runs.
    prog_id: Option<u32>,
    /// BPF run-time statistics on while held (lb paths, phase A).
    stats: Option<OwnedFd>,
    /// NAPI thread of the LB's eth0 (phase A).
    lb_napi: Option<u32>,
    /// NAPI thread of the LB's bridge port (phase A).
    port_napi: Option<u32>,
    /// Busy fraction of the machine (both CPUs) before the bench loads it.
    background: f64,
    /// The pass-through XDP program on the LB's bridge port (native mode).
    pass: Option<aya::Ebpf>,
    lan: Lan,
}

fn sh(ns: &Netns, cmd: &str, args: &[&str]) -> Res<()> {
    ns.exec(cmd, args)
        .map_err(|e| format!("{cmd} {args:?} in {}: {e}", ns.name()))?;
    Ok(())
}

fn sysctl(ns: &Netns, kv: &str) -> Res<()> {
    sh(ns, "sysctl", &["-qw", kv])
}

impl Bench {
    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    fn new(cli: &Cli) -> Res<Self> {
        // The client's kernel completes checksums before XDP sees the
        // frames; NAPI (GRO) on the bridge ports for XDP_TX.
        let lan = Lan::client_lb_backends(&BACKENDS)?;
        let dir = std::env::temp_dir().join(format!("{}pathbench", lan.prefix()));
        std::fs::create_dir_all(&dir)?;
        let mut me = Self {
            lbd: cli.lbd.clone(),
            secs: cli.seconds,
            connections: cli.connections,
            udp_rate: cli.udp_rate,
            conn_rate: cli.conn_rate,
            xdp_mode: cli.xdp_mode.clone(),
            dir,
            nginx: Vec::new(),
            decap: Vec::new(),
            lb_proc: None,
            prog_id: None,
            stats: None,
            lb_napi: None,
            port_napi: None,
            background: 0.0,
            pass: None,
            lan,
        };
        me.configure()?;
        Ok(me)
    }

    fn configure(&mut self) -> Res<()> {
        let client = self.ns("client");
        sysctl(client, "net.ipv4.ip_local_port_range=1024 65000")?;
        sysctl(client, "net.ipv4.tcp_tw_reuse=1")?;
        let bridge = self.lan.bridge();
        // The bridge forwards without calling netfilter (br_netfilter may be
        // loaded on the host): a plain switch.
        for table in ["iptables", "ip6tables", "arptables"] {
            let _absent = bridge.exec(
                "sysctl",
                &["-qw", &format!("net.bridge.bridge-nf-call-{table}=0")],
            );
        }
        // A veth hands frames to its peer's NAPI (where XDP runs, and which
        // can be threaded) only when the sender has no TSO.
        sh(bridge, "ethtool", &["-K", LB_PORT, "tso", "off"])?;
        let lb = self.ns("lb");
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
        // NAPI on the LB's eth0 (GRO on) for every path, without merging.
        sh(lb, "ethtool", &["-K", "eth0", "gro", "on", "tso", "off"])?;
        lb.ip(&["link", "set", "eth0", "gro_max_size", "1"])?;
        for kv in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.eth0.rp_filter=0",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.eth0.send_redirects=0",
            "net.ipv4.ip_local_port_range=1024 65000",
            "net.ipv4.tcp_tw_reuse=1",
            "net.core.somaxconn=4096",
        ] {
            sysctl(lb, kv)?;
        }
        if self.xdp_mode == "native" {
            self.pass = Some(self.attach_pass()?);
        }
        let counters = self.dir.join("counters.nft");
        std::fs::write(
            &counters,
            "table inet pathbench {\n  counter udp9 { }\n  counter tcp80 { }\n  \
             chain pre {\n    type filter hook prerouting priority raw; policy accept;\n    \
             udp dport 9 counter name \"udp9\" drop\n    tcp dport 80 counter name \"tcp80\"\n  }\n}\n",
        )?;
        for (name, _) in BACKENDS {
            let ns = self.ns(name);
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            for k in ["all", "eth0"] {
                sysctl(ns, &format!("net.ipv4.conf.{k}.arp_ignore=1"))?;
                sysctl(ns, &format!("net.ipv4.conf.{k}.arp_announce=2"))?;
            }
            sysctl(ns, "net.core.somaxconn=4096")?;
            sh(ns, "nft", &["-f", counters.to_str().ok_or("path")?])?;
        }
        // Packets the LB's side hands to the client or a backend are
        // received on CPU 0, like everything of theirs.
        for role in ["client", "b1", "b2", "b3"] {
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                self.ns(role).name(),
                "sh",
                "-c",
                &format!(
                    "echo {:x} > /sys/class/net/eth0/queues/rx-0/rps_cpus",
                    1 << REST_CPU
                ),
            ]))?;
        }
        for (name, _) in BACKENDS {
            let pid = self.start_nginx(name)?;
            self.nginx.push(pid);
        }
        for (name, addr) in BACKENDS {
            let target: SocketAddr = format!("{addr}:80").parse()?;
            self.http_get(target)
                .map_err(|e| format!("nginx on {name} does not answer: {e}"))?;
        }
        Ok(())
    }

    /// veth delivers XDP_TX frames to its peer only when the peer has an
    /// XDP program: a pass-through one (`lb_pass`) on the LB's bridge port,
    /// for every path alike.
    fn attach_pass(&self) -> Res<aya::Ebpf> {
        lb_lab::netns::attach_pass(self.lan.bridge(), LB_PORT)
            .map_err(|e| format!("pass-through XDP program on {LB_PORT}: {e}").into())
    }

    fn start_nginx(&self, name: &str) -> Res<u32> {
        let dir = self.dir.join(name);
        lb_lab::netns::nginx_site(&dir, name)?;
        let ns = self.ns(name);
        let mut cmd = ns.command("nginx");
        cmd.arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Ok(ns.spawn(&mut cmd)?)
    }

    /// One HTTP GET on a fresh connection from the client: the body.
    fn http_get(&self, target: SocketAddr) -> Res<String> {
        let client = self.ns("client");
        let once = || -> Result<String, String> {
            client
                .run(|| -> Result<String, String> {
                    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                        .map_err(|e| format!("connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))
                        .map_err(|e| e.to_string())?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
                        .map_err(|e| format!("send: {e}"))?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)
                        .map_err(|e| format!("read: {e}"))?;
                    if !text.starts_with("HTTP/1.1 200") {
                        return Err(format!("answer: {text:?}"));
                    }
                    Ok(text
                        .rsplit("\r\n\r\n")
                        .next()
                        .unwrap_or_default()
                        .to_owned())
                })
                .map_err(|e| e.to_string())?
        };
        let mut last = String::new();
        let got = wait_for(Duration::from_secs(10), || match once() {
            Ok(body) => Some(body),
            Err(e) => {
                last = e;
                None
            }
        });
        got.ok_or_else(|| format!("GET http://{target}/ failed: {last}").into())
    }

    // -- phases ------------------------------------------------------------

    /// The LB's receive work in a NAPI thread of its own, the frames it
    /// sends in its bridge port's NAPI thread: both, and lbd or HAProxy, on
    /// CPU 1 (the LB's machine, as it were); everything else on CPU 0.
    fn split_cpus(&mut self) -> Res<()> {
        let lb_napi = threaded_napi(self.ns("lb"), "eth0")?;
        self.lb_napi = Some(lb_napi);
        let port_napi = threaded_napi(self.lan.bridge(), LB_PORT)?;
        self.port_napi = Some(port_napi);
        for pid in [lb_napi, port_napi]
            .into_iter()
            .chain(self.lb_proc.as_ref().map(Daemon::pid))
        {
            set_affinity_all(pid, &[LB_CPU]);
        }
        for pid in self
            .nginx
            .iter()
            .copied()
            .chain(self.decap.iter().map(Daemon::pid))
        {
            set_affinity_all(pid, &[REST_CPU]);
        }
        Ok(())
    }

    /// Back to NAPI in softirq context (the threads go away).
    fn unsplit(&mut self) {
        if self.lb_napi.take().is_some() {
            let _ = set_threaded(self.ns("lb"), &["eth0"], 0);
        }
        if self.port_napi.take().is_some() {
            let _ = set_threaded(self.lan.bridge(), &[LB_PORT], 0);
        }
    }

    // -- counters ----------------------------------------------------------

    /// (udp9, tcp80) packets counted at the backends, summed.
    fn arrived(&self) -> Res<(u64, u64)> {
        let (mut udp, mut tcp) = (0, 0);
        for (name, _) in BACKENDS {
            let out = self
                .ns(name)
                .exec("nft", &["list", "counters", "table", "inet", "pathbench"])?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut current = "";
            for line in text.lines() {
                let t = line.trim();
                if let Some(rest) = t.strip_prefix("counter ") {
                    current = rest.split_whitespace().next().unwrap_or("");
                } else if let Some(rest) = t.strip_prefix("packets ") {
                    let n: u64 = rest
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    match current {
                        "udp9" => udp += n,
                        "tcp80" => tcp += n,
                        _ => {}
                    }
                }
            }
        }
        Ok((udp, tcp))
    }

    /// Packets received by the LB's eth0.
    fn lb_rx(&self) -> Res<u64> {
        let out = self.ns("lb").ip(&["-j", "-s", "link", "show", "eth0"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .ok_or_else(|| "no rx packets in ip -j -s link".into())
    }

    /// CPU time of the LB so far: its NAPI thread and its process, ns.
    fn lb_runtime_ns(&self) -> u64 {
        self.lb_napi
            .into_iter()
            .chain(self.lb_proc.as_ref().map(Daemon::pid))
            .map(runtime_ns)
            .sum()
    }

    /// lbd's XDP program: (run time ns, runs) so far.
    fn prog_stats(&self) -> Option<(u64, u64)> {
        let id = self.prog_id?;
        self.stats.as_ref()?;
        aya::programs::loaded_programs()
            .flatten()
            .find(|p| p.id() == id)
            .map(|p| (p.run_time().as_nanos() as u64, p.run_count()))
    }

    fn snap(&self, udp: bool, sent: u64) -> Res<Snap> {
        let at = Instant::now();
        let lb_ns = self.lb_runtime_ns();
        let prog = self.prog_stats();
        let lb_rx = self.lb_rx()?;
        let (u, t) = self.arrived()?;
        Ok(Snap {
            at,
            lb_ns,
            lb_rx,
            arrived: if udp { u } else { t },
            sent,
            prog,
        })
    }

    /// How busy the machine is before the bench loads it.
    fn measure_background(&mut self) -> Res<()> {
        sleep(Duration::from_millis(300))?;
        let a = [cpu_snap(REST_CPU)?, cpu_snap(LB_CPU)?];
        sleep(Duration::from_secs(2))?;
        let b = [cpu_snap(REST_CPU)?, cpu_snap(LB_CPU)?];
        self.background = (busy_secs(&a[0], &b[0]) + busy_secs(&a[1], &b[1]))
            / (2.0 * (b[0].at - a[0].at).as_secs_f64());
        Ok(())
    }

    // -- paths -------------------------------------------------------------

    /// lbd's file for `mode` (`dsr` or `ipip`): UDP and TCP services on
    /// the VIP over every backend, always forwarding, no health checks.
    fn lbd_config(&self, mode: &str) -> Res<String> {
        let backends: Vec<BackendConfig> = BACKENDS
            .iter()
            .map(|(_, a)| a.parse().map(BackendConfig::new))
            .collect::<Result<_, _>>()?;
        let service = |port, protocol| -> Res<Service> {
            Ok(Service {
                protocol,
                mode: mode.parse()?,
                active_active: true,
                health: Health {
                    kind: HealthKind::None,
                    ..Health::default()
                },
                ..Service::new(VIP.parse()?, port, backends.clone())
            })
        };
        let config = Config {
            global: Global {
                router_id: Some("pathbench".into()),
                bpf_pin_path: format!("/sys/fs/bpf/{}lb-{mode}", self.lan.prefix()).into(),
                control_socket: self.dir.join(format!("run-{mode}/lbd.sock")),
                ..Global::default()
            },
            dataplane: Some(Dataplane {
                xdp_mode: self.xdp_mode.parse()?,
                conntrack_entries: 262_144,
                ..Dataplane::new("eth0")
            }),
            service: vec![
                service(UDP_PORT, Protocol::Udp)?,
                service(80, Protocol::Tcp)?,
            ],
            ..Config::default()
        };
        Ok(config.to_toml()?)
    }

    fn start_lbd(&mut self, mode: &str) -> Res<()> {
        if mode == "ipip" {
            for (name, _) in BACKENDS {
                let pin = PathBuf::from(format!("/sys/fs/bpf/{}{name}", self.lan.prefix()));
                let mut cmd = self.ns(name).command(&self.lbd);
                cmd.args(["decap", "--iface", "eth0", "--xdp-mode", "generic"])
                    .arg("--pin-path")
                    .arg(&pin);
                let decap = Daemon::spawn(
                    "lbd decap",
                    &mut cmd,
                    self.dir.join(format!("{name}-decap.log")),
                )?;
                let started = decap.wait_path(&pin.join("stats_decap"), Duration::from_secs(15));
                self.decap.push(decap);
                if started.is_err() {
                    return Err(format!("lbd decap did not start on {name}").into());
                }
            }
        }
        let conf = self.dir.join(format!("lb-{mode}.toml"));
        std::fs::write(&conf, self.lbd_config(mode)?)?;
        let mut cmd = self.ns("lb").command(&self.lbd);
        cmd.arg("--config").arg(&conf);
        let lbd = Daemon::spawn("lbd", &mut cmd, self.dir.join(format!("lbd-{mode}.log")))?;
        let active = lbd.wait_until("both services active", Duration::from_secs(20), |log| {
            (log.matches("service active").count() >= 2).then_some(())
        });
        let log = lbd.log();
        self.lb_proc = Some(lbd);
        if active.is_err() {
            return Err(format!("lbd did not activate both services:\n{log}").into());
        }
        let out = self.ns("lb").ip(&["-d", "link", "show", "eth0"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        self.prog_id = text
            .split("prog/xdp id ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok());
        Ok(())
    }

    fn start_haproxy(&mut self) -> Res<()> {
        let servers: Vec<String> = BACKENDS
            .iter()
            .map(|(n, a)| format!("  server {n} {a}:80"))
            .collect();
        let conf = format!(
            "global\n  maxconn 8000\n  nbthread 1\n\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
             frontend fe\n  bind {VIP}:80\n  default_backend be\n\n\
             backend be\n  balance roundrobin\n{}\n",
            servers.join("\n")
        );
        let path = self.dir.join("haproxy.cfg");
        std::fs::write(&path, conf)?;
        let mut cmd = self.ns("lb").command("haproxy");
        cmd.arg("-f").arg(&path).arg("-db");
        self.lb_proc = Some(Daemon::spawn(
            "haproxy",
            &mut cmd,
            self.dir.join("haproxy.log"),
        )?);
        Ok(())
    }

    fn start_nft(&self) -> Res<()> {
        let [(_, b1), (_, b2), (_, b3)] = BACKENDS;
        let rules = format!(
            "table ip pathbench {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {VIP} dnat to numgen random mod 3 map {{ 0 : {b1}, 1 : {b2}, 2 : {b3} }}\n  }}\n  \
             chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n  }}\n}}\n"
        );
        let path = self.dir.join("dnat.nft");
        std::fs::write(&path, rules)?;
        sh(self.ns("lb"), "nft", &["-f", path.to_str().ok_or("path")?])?;
        // Replies go back through the LB, which un-NATs them.
        for (name, _) in BACKENDS {
            self.ns(name).ip(&[
                "route",
                "add",
                &format!("{CLIENT}/32"),
                "via",
                LB_ADDR,
                "dev",
                "eth0",
            ])?;
        }
        Ok(())
    }

    /// nftables DNAT + masquerade: the backends answer the LB's address,
    /// as with fullnat (no route to the client needed).
    fn start_nft_masq(&self) -> Res<()> {
        let [(_, b1), (_, b2), (_, b3)] = BACKENDS;
        let rules = format!(
            "table ip pathbench {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {VIP} dnat to numgen random mod 3 map {{ 0 : {b1}, 1 : {b2}, 2 : {b3} }}\n  }}\n  \
             chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
             ip daddr {{ {b1}, {b2}, {b3} }} ct status dnat masquerade\n  }}\n}}\n"
        );
        let path = self.dir.join("masq.nft");
        std::fs::write(&path, rules)?;
        sh(self.ns("lb"), "nft", &["-f", path.to_str().ok_or("path")?])?;
        Ok(())
    }

    /// Transmit checksum offload on the backends' eth0.
    fn backends_tx_offload(&self, on: bool) -> Res<()> {
        for (name, _) in BACKENDS {
            sh(
                self.ns(name),
                "ethtool",
                &["-K", "eth0", "tx", if on { "on" } else { "off" }],
            )?;
        }
        Ok(())
    }

    fn setup(&mut self, path: PathKind) -> Res<()> {
        match path {
            PathKind::Direct => {}
            PathKind::LbDsr => self.start_lbd("dsr")?,
            PathKind::LbIpip => self.start_lbd("ipip")?,
            PathKind::LbFullnat => {
                // The servers' replies go through XDP: a veth must hand it
                // whole checksums (a NIC always does).
                self.backends_tx_offload(false)?;
                self.start_lbd("fullnat")?;
            }
            PathKind::Haproxy => self.start_haproxy()?,
            PathKind::Nft => self.start_nft()?,
            PathKind::NftMasq => self.start_nft_masq()?,
        }
        // Sanity: HTTP works through the path.
        for target in targets(path, 80) {
            self.http_get(SocketAddr::V4(target))?;
        }
        Ok(())
    }

    fn teardown(&mut self, path: PathKind) {
        self.stats = None;
        self.prog_id = None;
        self.unsplit();
        // Stopped on drop: SIGTERM, SIGKILL after 10 s.
        self.lb_proc = None;
        self.decap.clear();
        if path == PathKind::LbFullnat {
            let _ = self.backends_tx_offload(true);
        }
        if path == PathKind::NftMasq {
            let _ = self
                .ns("lb")
                .exec("nft", &["delete", "table", "ip", "pathbench"]);
        }
        if path == PathKind::Nft {
            let _ = self
                .ns("lb")
                .exec("nft", &["delete", "table", "ip", "pathbench"]);
            for (name, _) in BACKENDS {
                let _ = self.ns(name).ip(&["route", "del", &format!("{CLIENT}/32")]);
            }
        }
    }

    // -- measurements ------------------------------------------------------

    fn udp(&self, path: PathKind, rate: Option<u64>) -> Res<UdpResult> {
        let dsts = targets(path, UDP_PORT);
        let socks = self.ns("client").run(|| -> io::Result<Vec<UdpSocket>> {
            (0..FLOWS)
                .map(|i| {
                    let s = UdpSocket::bind((CLIENT, 0))?;
                    s.connect(dsts[i % dsts.len()])?;
                    Ok(s)
                })
                .collect()
        })??;
        let stop = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| flood(&socks, &stop, &sent, rate));
            let r = (|| -> Res<UdpResult> {
                sleep(WARMUP)?;
                let a = self.snap(true, sent.load(Ordering::Relaxed))?;
                sleep(Duration::from_secs(self.secs))?;
                let b = self.snap(true, sent.load(Ordering::Relaxed))?;
                Ok(UdpResult {
                    sent: b.sent - a.sent,
                    w: Window::between(&a, &b),
                })
            })();
            stop.store(true, Ordering::Relaxed);
            r
        })
    }

    /// Short TCP connections (connect, one GET, close) at `rate`/s from
    /// the client, spread over `CONN_THREADS` threads.
    fn conns(&self, path: PathKind, rate: u64) -> Res<ConnResult> {
        let dsts = targets(path, 80);
        let client = self.ns("client");
        let ok = AtomicU64::new(0);
        let failed = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..CONN_THREADS {
                let (dsts, ok, failed, stop) = (&dsts, &ok, &failed, &stop);
                s.spawn(move || client.run(|| conn_loop(t, dsts, rate, ok, failed, stop)));
            }
            let r = (|| -> Res<ConnResult> {
                sleep(Duration::from_millis(500))?;
                let a = self.snap(false, ok.load(Ordering::Relaxed))?;
                let f0 = failed.load(Ordering::Relaxed);
                sleep(Duration::from_secs(self.secs))?;
                let b = self.snap(false, ok.load(Ordering::Relaxed))?;
                Ok(ConnResult {
                    ok: b.sent - a.sent,
                    failed: failed.load(Ordering::Relaxed) - f0,
                    w: Window::between(&a, &b),
                })
            })();
            stop.store(true, Ordering::Relaxed);
            r
        })
    }

    /// wrk's script: on the direct path, one thread per backend; with
    /// `pause_ms`, each connection waits that long between requests (a
    /// fixed rate, far below saturation).
    fn wrk_script(&self, direct: bool, pause_ms: Option<u32>) -> Res<PathBuf> {
        let path = self.dir.join(format!(
            "wrk-{}-{}.lua",
            if direct { "direct" } else { "vip" },
            pause_ms.unwrap_or(0)
        ));
        let hosts: Vec<String> = BACKENDS.iter().map(|(_, a)| format!("\"{a}\"")).collect();
        let mut lua = String::new();
        if direct {
            lua += &format!(
                "-- One thread per backend: the direct path spreads like the LB does.\n\
                 local hosts = {{ {} }}\nlocal n = 0\n\
                 function setup(thread)\n  n = n + 1\n  \
                 thread.addr = wrk.lookup(hosts[(n - 1) % #hosts + 1], \"80\")[1]\nend\n",
                hosts.join(", ")
            );
        }
        if let Some(ms) = pause_ms {
            lua += &format!("function delay()\n  return {ms}\nend\n");
        }
        std::fs::write(&path, lua)?;
        Ok(path)
    }

    fn http(&self, path: PathKind) -> Res<WrkOut> {
        self.wrk(path, None)
    }

    /// wrk through `path`, each connection pausing `pause_ms` between
    /// requests if given.
    fn wrk(&self, path: PathKind, pause_ms: Option<u32>) -> Res<WrkOut> {
        let ns = self.ns("client");
        let mut cmd = ns.command("wrk");
        cmd.args([
            "-t",
            &WRK_THREADS.to_string(),
            "-c",
            &self.connections.max(WRK_THREADS).to_string(),
            "-d",
            &format!("{}s", self.secs),
            "--timeout",
            "2s",
            "--latency",
        ]);
        let direct = path == PathKind::Direct;
        if direct || pause_ms.is_some() {
            cmd.arg("-s").arg(self.wrk_script(direct, pause_ms)?);
        }
        let url = if direct {
            format!("http://{}/", BACKENDS[0].1)
        } else {
            format!("http://{VIP}/")
        };
        cmd.arg(url).stdin(Stdio::null()).stderr(Stdio::piped());
        let out = cmd.output()?;
        check_stop()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "wrk failed ({}): {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        parse_wrk(&text)
    }

    /// Set `path` up, run `f`, tear it down.
    fn with_path(
        &mut self,
        path: PathKind,
        res: &mut PathResult,
        f: impl FnOnce(&mut Self, &mut PathResult),
    ) {
        match self.setup(path) {
            Ok(()) => f(self, res),
            Err(e) => {
                println!("   setup: FAILED: {e}");
                res.errors.push(format!("setup: {e}"));
            }
        }
        self.teardown(path);
    }

    /// Round 1: phase A (A1, A2), then phase B.
    fn round_one(&mut self, path: PathKind, res: &mut PathResult) {
        println!("-- {}", path.label());
        self.with_path(path, res, |me, res| {
            let fail = |res: &mut PathResult, name: &str, e: Error| {
                println!("   {name}: FAILED: {e}");
                res.errors.push(format!("{name}: {e}"));
            };
            if let Err(e) = me.split_cpus() {
                fail(res, "cpu split", e);
            } else {
                if path.is_lb() {
                    // BPF run-time statistics while the fd is held.
                    me.stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
                }
                if path.udp() {
                    match me.udp(path, None) {
                        Ok(u) => {
                            println!(
                                "   A1 udp flood: sent {:.0}/s, LB received {:.0}/s, at backends \
                                 {:.0}/s, LB CPU {:.1}%",
                                u.sent as f64 / u.w.secs,
                                u.w.lb_rx as f64 / u.w.secs,
                                u.w.arrived as f64 / u.w.secs,
                                u.w.lb_util() * 100.0,
                            );
                            res.flood = Some(u);
                        }
                        Err(e) => fail(res, "A1 udp flood", e),
                    }
                    match me.udp(path, Some(me.udp_rate)) {
                        Ok(u) => {
                            println!(
                                "   A1 udp paced: at backends {:.0}/s, LB CPU {:.1}%, {} ns/pkt",
                                u.w.arrived as f64 / u.w.secs,
                                u.w.lb_util() * 100.0,
                                fmt_opt(u.lb_ns_per_pkt().filter(|_| path != PathKind::Direct), 0)
                            );
                            res.paced = Some(u);
                        }
                        Err(e) => fail(res, "A1 udp paced", e),
                    }
                }
                match me.conns(path, me.conn_rate) {
                    Ok(c) => {
                        println!(
                            "   A2 tcp paced: {:.0} conn/s ({} failed), LB CPU {:.1}%, {} us/conn",
                            c.ok as f64 / c.w.secs,
                            c.failed,
                            c.w.lb_util() * 100.0,
                            fmt_opt(c.lb_us_per_conn().filter(|_| path != PathKind::Direct), 1)
                        );
                        res.conns = Some(c);
                    }
                    Err(e) => fail(res, "A2 tcp paced", e),
                }
            }
            if STOP.load(Ordering::SeqCst) {
                return;
            }
            // The XDP program's run-time statistics cost time per run.
            me.stats = None;
            me.keepalive(path, res);
        });
    }

    /// Later rounds: phase B only.
    fn round_http(&mut self, path: PathKind, round: usize, res: &mut PathResult) {
        println!("-- {} (round {round})", path.label());
        self.with_path(path, res, |me, res| match me.split_cpus() {
            Ok(()) => me.keepalive(path, res),
            Err(e) => res.errors.push(format!("cpu split: {e}")),
        });
    }

    fn keepalive(&mut self, path: PathKind, res: &mut PathResult) {
        match self.http(path) {
            Ok(h) => {
                println!(
                    "   B keep-alive http: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
                    h.rps,
                    h.p50_ms,
                    h.p99_ms,
                    h.errors + h.non2xx
                );
                res.keepalive.push(h);
            }
            Err(e) => {
                println!("   B keep-alive http: FAILED: {e}");
                res.errors.push(format!("B keep-alive http: {e}"));
            }
        }
        match self.wrk(path, Some(FIXED_RATE_PAUSE_MS)) {
            Ok(h) => {
                println!(
                    "   B fixed-rate http: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
                    h.rps,
                    h.p50_ms,
                    h.p99_ms,
                    h.errors + h.non2xx
                );
                res.fixed_rate.push(h);
            }
            Err(e) => {
                println!("   B fixed-rate http: FAILED: {e}");
                res.errors.push(format!("B fixed-rate http: {e}"));
            }
        }
    }
}

/// One client thread of the paced TCP window: its share of `rate`.
fn conn_loop(
    idx: u64,
    dsts: &[SocketAddrV4],
    rate: u64,
    ok: &AtomicU64,
    failed: &AtomicU64,
    stop: &AtomicBool,
) {
    let period = Duration::from_secs_f64(CONN_THREADS as f64 / rate.max(1) as f64);
    let start = Instant::now() + period.mul_f64(idx as f64 / CONN_THREADS as f64);
    let mut k = 0_u32;
    while !stop.load(Ordering::Relaxed) {
        let due = start + period * k;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > period * 10 {
            // Far behind (a stall): skip, do not burst.
            k = ((now - start).as_secs_f64() / period.as_secs_f64()) as u32;
        }
        k += 1;
        let dst = dsts[(k as usize + idx as usize) % dsts.len()];
        let counter = if one_get(dst).is_ok() { ok } else { failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connect, GET / with `Connection: close`, read the answer to the end.
fn one_get(dst: SocketAddrV4) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(dst), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf)?;
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(io::Error::other("not a 200 answer"))
    }
}

fn targets(path: PathKind, port: u16) -> Vec<SocketAddrV4> {
    if path == PathKind::Direct {
        BACKENDS
            .iter()
            .map(|(_, a)| SocketAddrV4::new(a.parse().expect("address"), port))
            .collect()
    } else {
        vec![SocketAddrV4::new(VIP.parse().expect("address"), port)]
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        // lbd detaches and unpins on SIGTERM (sent when it is dropped);
        // the namespaces go with `lan`.
        self.stats = None;
        self.lb_proc = None;
        self.decap.clear();
        self.pass = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Report

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"))
}

fn figure(name: &str, value: f64, unit: &str, target: Option<&str>) {
    if value.is_finite() {
        match target {
            Some(t) => println!("FIGURE {name}={value:.3} unit={unit} target={t}"),
            None => println!("FIGURE {name}={value:.3} unit={unit}"),
        }
    }
}

/// `n/a` for HAProxy, which does not proxy UDP; `failed` for the others.
fn not_measured(p: PathKind) -> &'static str {
    if p.udp() {
        "failed"
    } else {
        "n/a (HAProxy does not proxy UDP)"
    }
}

/// The result of path `k`, if it ran.
fn result_of(results: &[(PathKind, PathResult)], k: PathKind) -> Option<&PathResult> {
    results.iter().find(|(p, _)| *p == k).map(|(_, r)| r)
}

/// (A1a): UDP flood.
fn report_udp_flood(results: &[(PathKind, PathResult)], cli: &Cli) {
    println!();
    println!(
        "(A1a) UDP flood, {FLOWS} flows, 64-byte frames, {} s: packets/s forwarded (counted at \
         the backends); LB CPU = the LB's NAPI thread + lbd, % of one core, per packet received",
        cli.seconds
    );
    println!(
        "{:<9} {:>9} {:>10} {:>11} {:>7} {:>10}",
        "path", "sent/s", "LB rx/s", "backends/s", "LB CPU", "LB ns/pkt"
    );
    for (p, r) in results {
        let Some(u) = r.flood else {
            println!("{:<9} {}", p.label(), not_measured(*p));
            continue;
        };
        let lb = *p != PathKind::Direct;
        println!(
            "{:<9} {:>9.0} {:>10} {:>11.0} {:>6.1}% {:>10}",
            p.label(),
            u.sent as f64 / u.w.secs,
            if lb {
                format!("{:.0}", u.w.lb_rx as f64 / u.w.secs)
            } else {
                "-".into()
            },
            u.w.arrived as f64 / u.w.secs,
            u.w.lb_util() * 100.0,
            fmt_opt(u.lb_ns_per_pkt().filter(|_| lb), 0),
        );
    }
}

/// (A1b): UDP at an equal offered rate; per-core ratios against nftables.
fn report_udp_paced(results: &[(PathKind, PathResult)], cli: &Cli) {
    println!();
    println!(
        "(A1b) UDP at {} packets/s offered to every path, {} s: LB CPU per packet at equal load; \
         XDP prog = lbd's program alone",
        cli.udp_rate, cli.seconds
    );
    println!(
        "{:<9} {:>11} {:>7} {:>10} {:>9} {:>15} {:>7}",
        "path", "backends/s", "LB CPU", "LB ns/pkt", "XDP prog", "pkts/s/LB core", "x nft"
    );
    let nft_core = result_of(results, PathKind::Nft)
        .and_then(|r| r.paced)
        .and_then(|u| u.per_core());
    for (p, r) in results {
        let Some(u) = r.paced else {
            println!("{:<9} {}", p.label(), not_measured(*p));
            continue;
        };
        let lb = *p != PathKind::Direct;
        let core = u.per_core().filter(|_| lb);
        println!(
            "{:<9} {:>11.0} {:>6.1}% {:>10} {:>9} {:>15} {:>7}",
            p.label(),
            u.w.arrived as f64 / u.w.secs,
            u.w.lb_util() * 100.0,
            fmt_opt(u.lb_ns_per_pkt().filter(|_| lb), 0),
            fmt_opt(u.w.prog_ns(), 0),
            fmt_opt(core, 0),
            fmt_opt(core.zip(nft_core).map(|(a, b)| a / b), 2),
        );
    }
}

/// (A2): short TCP connections; per-core ratios against HAProxy.
fn report_tcp_conns(results: &[(PathKind, PathResult)], cli: &Cli) {
    println!();
    println!(
        "(A2) short TCP connections at {} conn/s offered (connect, GET, Connection: close), {} s: \
         LB CPU per connection; HAProxy's packets are not the client's, so per connection",
        cli.conn_rate, cli.seconds
    );
    println!(
        "{:<9} {:>8} {:>7} {:>11} {:>7} {:>11} {:>10} {:>15} {:>9}",
        "path",
        "conn/s",
        "failed",
        "backends/s",
        "LB CPU",
        "LB us/conn",
        "XDP us/c",
        "conn/s/LB core",
        "x haproxy"
    );
    let hap_core = result_of(results, PathKind::Haproxy)
        .and_then(|r| r.conns)
        .and_then(|c| c.conn_per_core());
    for (p, r) in results {
        let Some(c) = r.conns else {
            println!("{:<9} failed", p.label());
            continue;
        };
        let lb = *p != PathKind::Direct;
        let core = c.conn_per_core().filter(|_| lb);
        println!(
            "{:<9} {:>8.0} {:>7} {:>11.0} {:>6.1}% {:>11} {:>10} {:>15} {:>9}",
            p.label(),
            c.ok as f64 / c.w.secs,
            c.failed,
            c.w.arrived as f64 / c.w.secs,
            c.w.lb_util() * 100.0,
            fmt_opt(c.lb_us_per_conn().filter(|_| lb), 1),
            fmt_opt(c.prog_us_per_conn(), 2),
            fmt_opt(core, 0),
            fmt_opt(core.zip(hap_core).map(|(a, b)| a / b), 2),
        );
    }
}

/// Each wrk connection's pause between requests in the fixed-rate runs:
/// with the default connections, about a thousand requests a second,
/// far below what any path saturates at, so the latency is the path's own.
const FIXED_RATE_PAUSE_MS: u32 = 20;

/// (B2): HTTP at a fixed, unsaturated rate: the latency each path adds.
fn report_fixed_rate(results: &[(PathKind, PathResult)], cli: &Cli) {
    println!();
    println!(
        "(B2) HTTP at a fixed rate (wrk -c{}, each connection pausing {FIXED_RATE_PAUSE_MS} ms between requests, {} s per round); median of the rounds; added = over direct",
        cli.connections, cli.seconds
    );
    println!(
        "{:<9} {:>9} {:>8} {:>8} {:>11} {:>11} {:>7}",
        "path", "req/s", "p50 ms", "p99 ms", "p50 added", "p99 added", "errors"
    );
    let med = |r: &PathResult, f: fn(&WrkOut) -> f64| median(r.fixed_rate.iter().map(f).collect());
    let direct = result_of(results, PathKind::Direct);
    let d50 = direct.and_then(|r| med(r, |w| w.p50_ms));
    let d99 = direct.and_then(|r| med(r, |w| w.p99_ms));
    for (p, r) in results {
        let (Some(rps), Some(p50), Some(p99)) = (
            med(r, |w| w.rps),
            med(r, |w| w.p50_ms),
            med(r, |w| w.p99_ms),
        ) else {
            println!("{:<9} failed", p.label());
            continue;
        };
        let added = |v: f64, d: Option<f64>| d.map_or("-".to_owned(), |d| format!("{:+.3}", v - d));
        println!(
            "{:<9} {:>9.0} {:>8.3} {:>8.3} {:>11} {:>11} {:>7}",
            p.label(),
            rps,
            p50,
            p99,
            added(p50, d50),
            added(p99, d99),
            r.fixed_rate
                .iter()
                .map(|h| h.errors + h.non2xx)
                .sum::<u64>()
        );
        let k = p.key();
        println!("FIGURE paths_http_fixed_rate_p50_{k}={p50:.3} unit=ms");
        println!("FIGURE paths_http_fixed_rate_p99_{k}={p99:.3} unit=ms");
    }
}

/// (B): HTTP keep-alive with wrk.
fn report_http(results: &[(PathKind, PathResult)], cli: &Cli) {
    println!();
    println!(
        "(B) HTTP keep-alive (wrk -t{WRK_THREADS} -c{}, {} s per round); median of the rounds",
        cli.connections, cli.seconds
    );
    println!(
        "{:<9} {:>24} {:>9} {:>8} {:>8} {:>9} {:>7}",
        "path", "req/s per round", "req/s", "p50 ms", "p99 ms", "x direct", "errors"
    );
    let direct_rps = result_of(results, PathKind::Direct).and_then(|r| r.http(|w| w.rps));
    for (p, r) in results {
        let Some(rps) = r.http(|w| w.rps) else {
            println!("{:<9} failed", p.label());
            continue;
        };
        let rounds: Vec<String> = r
            .keepalive
            .iter()
            .map(|h| format!("{:.0}", h.rps))
            .collect();
        println!(
            "{:<9} {:>24} {:>9.0} {:>8.3} {:>8.3} {:>9} {:>7}",
            p.label(),
            rounds.join(" "),
            rps,
            r.http(|w| w.p50_ms).unwrap_or(f64::NAN),
            r.http(|w| w.p99_ms).unwrap_or(f64::NAN),
            fmt_opt(direct_rps.map(|d| rps / d), 3),
            r.keepalive.iter().map(|h| h.errors + h.non2xx).sum::<u64>()
        );
    }
}

/// The FIGURE lines `cargo xtask bench` collects.
fn report_figures(results: &[(PathKind, PathResult)]) {
    println!();
    for (p, r) in results {
        let k = p.key();
        let lb = *p != PathKind::Direct;
        if let Some(u) = r.flood {
            figure(
                &format!("paths_udp_flood_pps_{k}"),
                u.w.arrived as f64 / u.w.secs,
                "pkt/s",
                None,
            );
            if lb && let Some(v) = u.lb_ns_per_pkt() {
                figure(&format!("paths_udp_flood_lb_ns_per_pkt_{k}"), v, "ns", None);
            }
        }
        if let Some(u) = r.paced {
            if lb {
                if let Some(v) = u.lb_ns_per_pkt() {
                    figure(&format!("paths_udp_lb_ns_per_pkt_{k}"), v, "ns", None);
                }
                if let Some(v) = u.per_core() {
                    figure(&format!("paths_udp_pps_per_lb_core_{k}"), v, "pkt/s", None);
                }
            }
            if let Some(v) = u.w.prog_ns() {
                figure(&format!("paths_udp_xdp_prog_ns_per_pkt_{k}"), v, "ns", None);
            }
        }
        if let Some(c) = r.conns
            && lb
        {
            if let Some(v) = c.lb_us_per_conn() {
                figure(&format!("paths_tcp_lb_us_per_conn_{k}"), v, "us", None);
            }
            if let Some(v) = c.conn_per_core() {
                figure(
                    &format!("paths_tcp_conn_per_lb_core_{k}"),
                    v,
                    "conn/s",
                    None,
                );
            }
            if let Some(v) = c.prog_us_per_conn() {
                figure(
                    &format!("paths_tcp_xdp_prog_us_per_conn_{k}"),
                    v,
                    "us",
                    None,
                );
            }
        }
        if let Some(rps) = r.http(|w| w.rps) {
            figure(&format!("paths_http_rps_{k}"), rps, "req/s", None);
            if let Some(v) = r.http(|w| w.p50_ms) {
                figure(&format!("paths_http_p50_{k}"), v, "ms", None);
            }
            if let Some(v) = r.http(|w| w.p99_ms) {
                figure(&format!("paths_http_p99_{k}"), v, "ms", None);
            }
        }
    }
}

/// The targets, met or missed.
fn report_targets(results: &[(PathKind, PathResult)]) {
    let nft_core = result_of(results, PathKind::Nft)
        .and_then(|r| r.paced)
        .and_then(|u| u.per_core());
    let hap_core = result_of(results, PathKind::Haproxy)
        .and_then(|r| r.conns)
        .and_then(|c| c.conn_per_core());
    let direct_rps = result_of(results, PathKind::Direct).and_then(|r| r.http(|w| w.rps));
    println!();
    let target = |name: &str, what: &str, value: Option<f64>, want: f64| match value {
        Some(v) => {
            println!(
                "  {what}: {v:.2} (target >= {want}) {}",
                if v >= want { "met" } else { "MISSED" }
            );
            figure(name, v, "x", Some(&format!("{want}")));
        }
        None => println!("  {what}: not measured (target >= {want}) MISSED"),
    };
    // Full proxies compared like with like: lb fullnat against the
    // kernel's full NAT and HAProxy.
    let masq_core = result_of(results, PathKind::NftMasq)
        .and_then(|r| r.paced)
        .and_then(|u| u.per_core());
    let fullnat = result_of(results, PathKind::LbFullnat);
    let ratio = |name: &str, what: &str, value: Option<f64>| match value {
        Some(v) => {
            println!("  {what}: {v:.2}");
            figure(name, v, "x", None);
        }
        None => println!("  {what}: not measured"),
    };
    println!("Full proxies (backends answer the LB):");
    ratio(
        "paths_ratio_lb_fullnat_vs_nftables_masq_per_core",
        "lb fullnat UDP pkts/s per LB core / nftables DNAT + masquerade",
        fullnat
            .and_then(|r| r.paced)
            .and_then(|u| u.per_core())
            .zip(masq_core)
            .map(|(a, b)| a / b),
    );
    let masq_tcp = result_of(results, PathKind::NftMasq)
        .and_then(|r| r.conns)
        .and_then(|c| c.conn_per_core());
    let fullnat_tcp = fullnat
        .and_then(|r| r.conns)
        .and_then(|c| c.conn_per_core());
    ratio(
        "paths_ratio_lb_fullnat_vs_nftables_masq_conn_per_core",
        "lb fullnat TCP conn/s per LB core / nftables DNAT + masquerade",
        fullnat_tcp.zip(masq_tcp).map(|(a, b)| a / b),
    );
    ratio(
        "paths_ratio_lb_fullnat_vs_haproxy_conn_per_core",
        "lb fullnat TCP conn/s per LB core / HAProxy",
        fullnat_tcp.zip(hap_core).map(|(a, b)| a / b),
    );
    for other in [PathKind::NftMasq, PathKind::Haproxy] {
        let rps = |p| result_of(results, p).and_then(|r| r.http(|w| w.rps));
        ratio(
            &format!("paths_ratio_lb_fullnat_http_rps_vs_{}", other.key()),
            &format!("lb fullnat HTTP req/s / {}", other.label()),
            rps(PathKind::LbFullnat).zip(rps(other)).map(|(a, b)| a / b),
        );
    }
    println!("Targets:");
    for lb in [PathKind::LbDsr, PathKind::LbIpip] {
        let k = lb.key();
        let l = lb.label();
        let udp_core = result_of(results, lb)
            .and_then(|r| r.paced)
            .and_then(|u| u.per_core());
        target(
            &format!("paths_ratio_{k}_vs_nftables_per_core"),
            &format!("{l} UDP pkts/s per LB core / nftables DNAT"),
            udp_core.zip(nft_core).map(|(a, b)| a / b),
            5.0,
        );
        let tcp_core = result_of(results, lb)
            .and_then(|r| r.conns)
            .and_then(|c| c.conn_per_core());
        target(
            &format!("paths_ratio_{k}_vs_haproxy_per_core"),
            &format!("{l} TCP conn/s per LB core / HAProxy"),
            tcp_core.zip(hap_core).map(|(a, b)| a / b),
            20.0,
        );
        let rps = result_of(results, lb).and_then(|r| r.http(|w| w.rps));
        target(
            &format!("paths_ratio_{k}_http_rps_vs_direct"),
            &format!("{l} HTTP req/s / direct"),
            rps.zip(direct_rps).map(|(a, b)| a / b),
            0.97,
        );
    }
}

/// Print the tables, the FIGURE lines and the targets; whether every
/// measurement ran.
fn report(results: &[(PathKind, PathResult)], cli: &Cli) -> bool {
    report_udp_flood(results, cli);
    report_udp_paced(results, cli);
    report_tcp_conns(results, cli);
    report_http(results, cli);
    report_fixed_rate(results, cli);
    report_figures(results);
    report_targets(results);
    let mut complete = true;
    for (p, r) in results {
        for e in &r.errors {
            complete = false;
            println!("  {} error: {e}", p.label());
        }
    }
    complete
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: installing async-signal-safe handlers (an atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lb-pathbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Res<bool> {
    if !cli.lbd.is_file() {
        return Err(format!("no lbd binary at {}", cli.lbd.display()).into());
    }
    if cli.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if cpus < 2 {
        return Err("needs 2 CPUs: one for the LB, one for everything else".into());
    }
    for tool in ["nginx", "wrk", "haproxy", "nft", "ethtool"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            return Err(format!("{tool} not found (cargo xtask setup installs it)").into());
        }
    }
    // This thread and everything it starts (generator, wrk, nginx) run on
    // CPU 0 unless moved.
    set_affinity(0, &[REST_CPU])?;
    let haproxy = Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!(
        "Data paths side by side: direct, lb dsr and lb ipip (lbd, XDP {} mode on veth), \
         HAProxy {haproxy} (mode tcp, 1 thread), nftables DNAT (numgen random mod 3); {} s \
         windows.",
        cli.xdp_mode, cli.seconds
    );
    println!(
        "CPU {LB_CPU}: the LB (its NAPI thread, its bridge port's NAPI thread, lbd or HAProxy); \
         CPU {REST_CPU}: client, generator, wrk, nginx. LB CPU = scheduler run time of the LB's \
         NAPI thread + lbd or HAProxy."
    );
    let started = Instant::now();
    let mut bench = Bench::new(cli)?;
    bench.measure_background()?;
    println!(
        "Machine busy before the bench: {:.0}% of 2 CPUs{}",
        bench.background * 100.0,
        if bench.background > 0.1 {
            " (other tenants: rates below are depressed and noisy; CPU per packet is \
             per-thread accounting and holds better)"
        } else {
            ""
        }
    );
    let mut results: Vec<(PathKind, PathResult)> = Vec::new();
    let only = std::env::var("LB_PATHBENCH_ONLY").ok();
    for path in PATHS.into_iter().filter(|p| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|k| k == p.key()))
    }) {
        check_stop()?;
        let mut r = PathResult::default();
        bench.round_one(path, &mut r);
        results.push((path, r));
    }
    // Later HTTP rounds alternate the path order, so drift in the
    // machine's load does not always favour the same path.
    for round in 2..=cli.http_rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..results.len()).rev().collect()
        } else {
            (0..results.len()).collect()
        };
        for i in order {
            check_stop()?;
            let (path, r) = &mut results[i];
            bench.round_http(*path, round, r);
        }
    }
    check_stop()?;
    drop(bench);
    let complete = report(&results, cli);
    println!(
        "\nlb-pathbench: {:.0} s in all; namespaces and processes removed",
        started.elapsed().as_secs_f64()
    );
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 5s test @ http://198.18.0.100/\n  3 threads and 24 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.20ms  300.00us   \
            9.00ms   80.00%\n  Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n     \
            90%    1.50ms\n     99%    2.40ms\n  60123 requests in 5.00s, 9.00MB read\n  \
            Socket errors: connect 0, read 3, write 0, timeout 2\nRequests/sec:  12024.60\n\
            Transfer/sec:      1.80MB\n";
        let w = parse_wrk(text).unwrap();
        assert_eq!(w.requests, 60123);
        assert!((w.rps - 12024.6).abs() < 1e-9);
        assert!((w.p50_ms - 0.812).abs() < 1e-9);
        assert!((w.p99_ms - 2.4).abs() < 1e-9);
        assert_eq!(w.errors, 5);
        assert_eq!(parse_duration_ms("1.5s"), Some(1500.0));
    }
}
