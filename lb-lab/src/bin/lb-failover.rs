//! `lb-failover`: VRRP failover time of `lbd` against keepalived, measured
//! side by side in one run. Run by `cargo xtask bench failover` (root).
//!
//! Each run builds a fresh LAN of network namespaces: node a (priority 150),
//! node b (priority 100), client c. Both nodes run the same daemon (two
//! `lbd`, or two keepalived) for one VRRPv3 instance with one VIP. Once a
//! holds the VIP, b is BACKUP and has heard adverts for a second, a's
//! daemon is SIGKILLed (keepalived: its VRRP child and its parent) right
//! after c sees one of a's adverts, and c starts probing at that instant.
//! Killing just after an advert makes every run the worst case of the
//! advert phase (b's Master_Down_Interval starts with the kill), the same
//! for both daemons; a kill at a random phase would subtract a random
//! 0..1 interval.
//!
//! Probe: TCP connects from c to the VIP, where only b has a listener. a's
//! interface stays up with its stale VIP (nothing ran to remove it), so
//! until b's gratuitous ARP moves c's neighbour entry, c's SYNs reach a's
//! kernel and are refused: a refusal (or a timeout) counts as "not yet".
//! The failover time ends at the first connect that succeeds, i.e. lands on
//! b with the VIP up.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use lb_lab::{
    daemon,
    netns::{Lan, Netns, wait_for},
};
use lb_user::config::{Config, Dur, Global, VrrpInstance};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const PORT: u16 = 8080;
const VRID: u8 = 51;
const PRIO_MASTER: u8 = 150;
const PRIO_BACKUP: u8 = 100;
/// Connect timeout of one probe: bounds how late a success is seen when a
/// SYN is lost (e.g. it reached b just before the VIP was added).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(10);
/// Pause after a refused connect, so the client does not starve the
/// daemons of CPU.
const REFUSED_PAUSE: Duration = Duration::from_millis(1);

/// VRRP failover benchmark: SIGKILL of the master to the VIP answering on
/// the backup, lbd against keepalived. Needs root.
#[derive(Debug, Parser)]
struct Cli {
    /// The `lbd` binary to test.
    #[arg(long)]
    lbd: PathBuf,
    /// The keepalived binary.
    #[arg(long, default_value = "keepalived")]
    keepalived: PathBuf,
    /// Runs per implementation and interval (at least 1; 5 or more for a
    /// meaningful median).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Lbd,
    Keepalived,
}

impl Impl {
    const fn name(self) -> &'static str {
        match self {
            Self::Lbd => "lbd",
            Self::Keepalived => "keepalived",
        }
    }

    /// What the backup logs once it is BACKUP.
    const fn backup_marker(self) -> &'static str {
        match self {
            Self::Lbd => "to=BACKUP",
            Self::Keepalived => "Entering BACKUP STATE",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Interval {
    dur: Duration,
    lbd: &'static str,
    keepalived: &'static str,
}

const INTERVALS: [Interval; 3] = [
    Interval {
        dur: Duration::from_secs(1),
        lbd: "1s",
        keepalived: "1",
    },
    Interval {
        dur: Duration::from_millis(100),
        lbd: "100ms",
        keepalived: "0.1",
    },
    Interval {
        dur: Duration::from_millis(50),
        lbd: "50ms",
        keepalived: "0.05",
    },
];

impl Interval {
    fn label(self) -> &'static str {
        self.lbd
    }

    /// Skew_Time of VRRPv3 for `priority`, truncated to whole centiseconds
    /// (the unit of the advert interval on the wire).
    fn skew(self, priority: u8) -> Duration {
        let cs = self.dur.as_millis() as u64 / 10;
        Duration::from_millis((256 - u64::from(priority)) * cs / 256 * 10)
    }

    /// 3 × interval + skew of the backup + 20 ms.
    fn target(self) -> Duration {
        self.dur * 3 + self.skew(PRIO_BACKUP) + Duration::from_millis(20)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lb-failover: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn run(cli: &Cli) -> Result<bool, Error> {
    if cli.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if !cli.lbd.is_file() {
        return Err(format!("no lbd binary at {}", cli.lbd.display()).into());
    }
    // keepalived forks its VRRP child: when both die, the child is
    // re-parented to us, so we can reap it (see Daemon::kill).
    // SAFETY: prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    let tmp = TempDir::new()?;
    println!(
        "VRRPv3 failover: SIGKILL of the master (a, priority {PRIO_MASTER}) until {VIP} answers \
         on the backup (b, priority {PRIO_BACKUP}); {} runs each, fresh namespaces per run. The \
         kill comes right after one of a's adverts (seen from c): the worst-case advert phase.",
        cli.runs
    );
    println!(
        "Probe: from client namespace c (neighbour cache flushed first), TCP connects to \
         {VIP}:{PORT} in a loop ({} ms connect timeout, {} ms pause after a refusal). Only b \
         listens; a keeps its stale VIP on a live interface, so its kernel answers ARP and \
         refuses the connect until b's gratuitous ARP moves c's entry: refused or timed out \
         counts as \"not yet\", the first accepted connect ends the measurement.",
        CONNECT_TIMEOUT.as_millis(),
        REFUSED_PAUSE.as_millis()
    );
    println!();
    let results = measure(cli, &tmp);
    Ok(report(&results))
}

/// The runs of one daemon at one interval: the interval, the daemon, the
/// times of the runs that succeeded (ms) and how many failed.
type Outcome = (Interval, Impl, Vec<f64>, usize);

/// `cli.runs` failovers per interval and daemon, each printed as it ends.
fn measure(cli: &Cli, tmp: &TempDir) -> Vec<Outcome> {
    let mut results = Vec::new();
    for interval in INTERVALS {
        let mut per_impl = [
            (Impl::Lbd, Vec::new(), 0),
            (Impl::Keepalived, Vec::new(), 0),
        ];
        for i in 1..=cli.runs {
            // Alternate the implementations run by run, so drift in the
            // machine's load hits both alike.
            for (imp, times, failed) in &mut per_impl {
                let tag = format!("{}-{}-{i}", imp.name(), interval.label());
                match one_run(cli, tmp, *imp, interval, &tag) {
                    Ok(probe) => {
                        let ms = probe.took.as_secs_f64() * 1e3;
                        println!(
                            "{:>5} {:<10} run {i}/{}: {ms:8.1} ms  (killed {} us after an advert; \
                             {} refused, {} timed out)",
                            interval.label(),
                            imp.name(),
                            cli.runs,
                            probe.kill_after_advert.as_micros(),
                            probe.refused,
                            probe.timed_out
                        );
                        times.push(ms);
                    }
                    Err(e) => {
                        println!(
                            "{:>5} {:<10} run {i}/{}: FAILED: {e}",
                            interval.label(),
                            imp.name(),
                            cli.runs
                        );
                        *failed += 1;
                    }
                }
            }
        }
        for (imp, times, failed) in per_impl {
            results.push((interval, imp, times, failed));
        }
    }
    results
}

/// The table of medians against the targets, how the targets are made,
/// and the lbd/keepalived ratios. Whether every run succeeded.
fn report(results: &[Outcome]) -> bool {
    println!();
    println!(
        "{:<8} {:<11} {:>10} {:>10} {:>10} {:>5} {:>11}  meets",
        "interval", "daemon", "median ms", "min ms", "max ms", "runs", "target ms"
    );
    let mut all_ok = true;
    for (interval, imp, times, failed) in results {
        let target = interval.target().as_secs_f64() * 1e3;
        let stats = Stats::of(times);
        let runs = if *failed == 0 {
            format!("{}", times.len())
        } else {
            all_ok = false;
            format!("{}/{}", times.len(), times.len() + failed)
        };
        match stats {
            Some(s) => println!(
                "{:<8} {:<11} {:>10.1} {:>10.1} {:>10.1} {runs:>5} {target:>11.0}  {}\n\
                 FIGURE failover_{}_{}_median={:.1} unit=ms target={target:.0}",
                interval.label(),
                imp.name(),
                s.median,
                s.min,
                s.max,
                if s.median <= target { "yes" } else { "NO" },
                imp.name(),
                interval.label(),
                s.median
            ),
            None => println!(
                "{:<8} {:<11} {:>10} {:>10} {:>10} {runs:>5} {target:>11.0}  -",
                interval.label(),
                imp.name(),
                "-",
                "-",
                "-"
            ),
        }
    }
    println!();
    for interval in INTERVALS {
        println!(
            "target {:>5}: 3 x {} ms + skew {} ms (priority {PRIO_BACKUP}: (256 - {PRIO_BACKUP}) x \
             interval / 256, whole centiseconds) + 20 ms = {} ms",
            interval.label(),
            interval.dur.as_millis(),
            interval.skew(PRIO_BACKUP).as_millis(),
            interval.target().as_millis()
        );
    }
    for interval in INTERVALS {
        let median = |want: Impl| {
            results
                .iter()
                .find(|(i, imp, _, _)| i.dur == interval.dur && *imp == want)
                .and_then(|(_, _, t, _)| Stats::of(t))
                .map(|s| s.median)
        };
        match (median(Impl::Lbd), median(Impl::Keepalived)) {
            (Some(l), Some(k)) => println!(
                "ratio lbd/keepalived (median) at {:>5}: {:.3}",
                interval.label(),
                l / k
            ),
            _ => println!(
                "ratio lbd/keepalived (median) at {:>5}: - (missing runs)",
                interval.label()
            ),
        }
    }
    all_ok
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(times: &[f64]) -> Option<Self> {
        if times.is_empty() {
            return None;
        }
        let mut t = times.to_vec();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median = if n % 2 == 1 {
            t[n / 2]
        } else {
            f64::midpoint(t[n / 2 - 1], t[n / 2])
        };
        Some(Self {
            median,
            min: t[0],
            max: t[n - 1],
        })
    }
}

/// A private directory for configs, logs and pid files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("lb-failover-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// lbd or keepalived in a namespace, its output in a log file. Dropping it
/// kills it (all of its processes, for keepalived), also while unwinding.
struct Daemon {
    process: daemon::Daemon,
    imp: Impl,
    vrrp_pid: PathBuf,
    /// Killed and reaped: its pids may be another process's by now.
    reaped: bool,
}

impl Daemon {
    fn start(
        cli: &Cli,
        tmp: &TempDir,
        imp: Impl,
        ns: &Netns,
        name: &str,
        priority: u8,
        interval: Interval,
    ) -> Result<Self, Error> {
        let vrrp_pid = tmp.path(&format!("{name}.vrrp.pid"));
        let mut cmd = match imp {
            Impl::Lbd => {
                let conf = tmp.path(&format!("{name}.toml"));
                let instance = VrrpInstance {
                    priority,
                    version: 3,
                    advert_interval: Dur(interval.dur),
                    ..VrrpInstance::new("VI_1", "eth0", VRID, vec![format!("{VIP}/24")])
                };
                let config = Config {
                    global: Global {
                        control_socket: tmp.path(&format!("{name}.sock")),
                        ..Global::default()
                    },
                    vrrp_instance: vec![instance],
                    ..Config::default()
                };
                std::fs::write(&conf, config.to_toml()?)?;
                let mut cmd = ns.command(&cli.lbd);
                cmd.arg("--config").arg(&conf).env("LB_LOG", "info");
                cmd
            }
            Impl::Keepalived => {
                let conf = tmp.path(&format!("{name}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "global_defs {{\n  router_id {name}\n  vrrp_version 3\n}}\n\
                         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  \
                         virtual_router_id {VRID}\n  priority {priority}\n  advert_int {}\n  \
                         virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
                        interval.keepalived
                    ),
                )?;
                let mut cmd = ns.command(&cli.keepalived);
                cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
                    .arg("--use-file")
                    .arg(&conf)
                    .arg("--pid")
                    .arg(tmp.path(&format!("{name}.pid")))
                    .arg("--vrrp_pid")
                    .arg(&vrrp_pid);
                cmd
            }
        };
        // If this process dies without unwinding (a signal), the daemon
        // goes too. We spawn from the main thread, which lives as long as
        // the process. lbd gets 3 s to stop cleanly on drop.
        let process = daemon::Daemon::builder(imp.name(), tmp.path(&format!("{name}.log")))
            .parent_death_signal(libc::SIGKILL)
            .grace(Duration::from_secs(3))
            .spawn(&mut cmd)?;
        Ok(Self {
            process,
            imp,
            vrrp_pid,
            reaped: false,
        })
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// Every process of the daemon: keepalived's VRRP child first (the one
    /// that sends adverts), then the main process and any other children.
    fn pids(&self) -> Vec<i32> {
        if self.reaped {
            return Vec::new();
        }
        let main = self.process.pid() as i32;
        let mut pids = Vec::new();
        if self.imp == Impl::Keepalived {
            if let Some(p) = std::fs::read_to_string(&self.vrrp_pid)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                pids.push(p);
            }
            let children = std::fs::read_to_string(format!("/proc/{main}/task/{main}/children"))
                .unwrap_or_default();
            for p in children.split_whitespace().filter_map(|p| p.parse().ok()) {
                if !pids.contains(&p) {
                    pids.push(p);
                }
            }
        }
        pids.push(main);
        pids
    }

    /// SIGKILL every process in `pids` (a crash: no release, no cleanup)
    /// and reap them.
    fn kill(&mut self, pids: &[i32]) {
        sigkill(pids);
        self.reap(pids);
    }

    /// Reap the processes in `pids` once they have been killed.
    fn reap(&mut self, pids: &[i32]) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        let main = self.process.pid() as i32;
        let _status = self.process.kill();
        // keepalived's children are re-parented to us (child subreaper):
        // reap them, or they stay zombies.
        for &p in pids.iter().filter(|&&p| p != main) {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                // SAFETY: waitpid on one pid; ECHILD when it is not ours
                // (already reaped by its parent).
                let r = unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) };
                if r != 0 || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// SIGKILL each of `pids`.
fn sigkill(pids: &[i32]) {
    for &p in pids {
        // Pids that belong to one daemon; one may have exited already.
        let _gone = daemon::signal_pid(p, libc::SIGKILL);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // lbd: a clean stop (SIGKILL after 3 s); keepalived: its processes
        // are not ours to wait for, kill them outright (the namespace goes
        // next).
        if self.imp == Impl::Lbd {
            self.reaped = true;
            let _status = self.process.stop();
        } else {
            let pids = self.pids();
            self.kill(&pids);
        }
    }
}

fn has_vip(ns: &Netns) -> bool {
    let vip = VIP.to_string();
    ns.ip(&["-br", "addr", "show", "eth0"]).is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(vip.as_str()))
    })
}

struct Probe {
    took: Duration,
    refused: u32,
    timed_out: u32,
    /// From receiving a's last advert (in c) to the SIGKILL.
    kill_after_advert: Duration,
}

/// A raw VRRP socket in the current namespace, joined to 224.0.0.18 on the
/// interface with address `local`, so it sees the adverts on the LAN.
fn advert_sniffer(local: Ipv4Addr, timeout: Duration) -> io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(112)),
    )?;
    s.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 18), &local)?;
    s.set_read_timeout(Some(timeout))?;
    Ok(s)
}

/// Wait for an advert for our VRID from `from`; when it arrived.
fn wait_advert(sniffer: &socket2::Socket, from: Ipv4Addr) -> Result<Instant, String> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let n = sniffer
            .recv(&mut buf)
            .map_err(|e| format!("no advert from {from}: {e}"))?;
        let at = Instant::now();
        // SAFETY: recv initialised the first n bytes.
        let pkt: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
        if n >= ihl + 8 && ihl >= 20 && pkt[12..16] == from.octets() && pkt[ihl + 1] == VRID {
            return Ok(at);
        }
    }
}

fn one_run(
    cli: &Cli,
    tmp: &TempDir,
    imp: Impl,
    interval: Interval,
    tag: &str,
) -> Result<Probe, Error> {
    let mut lan = Lan::new()?;
    lan.add_host("a", "198.18.0.1/24", "2001:db8::1/64")?;
    lan.add_host("b", "198.18.0.2/24", "2001:db8::2/64")?;
    lan.add_host("c", "198.18.0.3/24", "2001:db8::3/64")?;
    let (a, b, c) = (&lan.host("a").ns, &lan.host("b").ns, &lan.host("c").ns);

    // The listener lives in b only; the socket stays in b's namespace.
    let listener = b.run(|| -> io::Result<socket2::Socket> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT).into())?;
        s.listen(16)?;
        Ok(s)
    })??;

    let mut da = Daemon::start(cli, tmp, imp, a, &format!("{tag}-a"), PRIO_MASTER, interval)?;
    let db = Daemon::start(cli, tmp, imp, b, &format!("{tag}-b"), PRIO_BACKUP, interval)?;
    // a waits a Master_Down_Interval before it claims mastership.
    let settle = interval.dur * 5 + Duration::from_secs(5);
    let elected = wait_for(settle, || (has_vip(a) && !has_vip(b)).then_some(()));
    if elected.is_none() {
        return Err(format!(
            "a did not become sole master within {settle:?}\n--- a:\n{}\n--- b:\n{}",
            da.log(),
            db.log()
        )
        .into());
    }
    let marker = imp.backup_marker();
    if wait_for(Duration::from_secs(2), || {
        db.log().contains(marker).then_some(())
    })
    .is_none()
    {
        return Err(format!("b never logged {marker:?}:\n{}", db.log()).into());
    }
    // Let b hear a few adverts (and learn the master's interval).
    std::thread::sleep(Duration::from_secs(1));
    if !has_vip(a) || has_vip(b) {
        return Err(format!(
            "mastership moved before the kill\n--- a:\n{}\n--- b:\n{}",
            da.log(),
            db.log()
        )
        .into());
    }
    if imp == Impl::Keepalived && da.pids().len() < 2 {
        return Err(format!(
            "keepalived on a has no VRRP child (vrrp pid file {})",
            da.vrrp_pid.display()
        )
        .into());
    }
    c.ip(&["neigh", "flush", "all"])?;
    let pids = da.pids();
    let deadline = interval.dur * 3 + Duration::from_secs(5);

    // Kill right after an advert from a: the backup's Master_Down_Interval
    // then starts from the kill, so the measurement is the worst case of
    // the advert phase, the same for both daemons.
    let (a_addr, c_addr) = (lan.host("a").addr4(), lan.host("c").addr4());
    let sniff_timeout = interval.dur * 2 + Duration::from_secs(1);
    let probe = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            c.run(|| -> Result<Probe, String> {
                let sniffer =
                    advert_sniffer(c_addr, sniff_timeout).map_err(|e| format!("sniffer: {e}"))?;
                let heard = wait_advert(&sniffer, a_addr)?;
                let t0 = Instant::now();
                sigkill(&pids);
                let mut probe = probe_loop(t0, deadline)?;
                probe.kill_after_advert = t0 - heard;
                Ok(probe)
            })
        });
        let result = prober.join();
        // Reap a (already killed by the prober, unless it failed first).
        if !matches!(result, Ok(Ok(Ok(_)))) {
            sigkill(&pids);
        }
        da.reap(&pids);
        match result {
            Ok(Ok(r)) => r.map_err(Error::from),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err("probe thread panicked".into()),
        }
    });
    let probe =
        probe.map_err(|e| format!("{e}; b holds the VIP: {}\n--- b:\n{}", has_vip(b), db.log()))?;

    // Sanity: the accepted connection is the client's, on b.
    listener.set_nonblocking(true)?;
    let (_conn, peer) = listener
        .accept()
        .map_err(|e| format!("the probe connected but b's listener has nothing: {e}"))?;
    let peer = peer.as_socket();
    if peer.map(|p| p.ip()) != Some(std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3))) {
        return Err(format!("unexpected peer {peer:?} on b's listener").into());
    }
    if !has_vip(b) {
        return Err("the probe succeeded but b does not hold the VIP".into());
    }
    drop(db);
    Ok(probe)
}

/// Connect to the VIP until a connect succeeds; runs inside c.
fn probe_loop(t0: Instant, limit: Duration) -> Result<Probe, String> {
    let target: SocketAddr = SocketAddrV4::new(VIP, PORT).into();
    let target = socket2::SockAddr::from(target);
    let (mut refused, mut timed_out) = (0, 0);
    loop {
        if t0.elapsed() > limit {
            return Err(format!(
                "no answer from the VIP within {limit:?} ({refused} refused, {timed_out} timed out)"
            ));
        }
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| format!("socket: {e}"))?;
        match s.connect_timeout(&target, CONNECT_TIMEOUT) {
            Ok(()) => {
                let took = t0.elapsed();
                return Ok(Probe {
                    took,
                    refused,
                    timed_out,
                    kill_after_advert: Duration::ZERO,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                refused += 1;
                std::thread::sleep(REFUSED_PAUSE);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) || e.raw_os_error() == Some(libc::EHOSTUNREACH) =>
            {
                timed_out += 1;
                if e.raw_os_error() == Some(libc::EHOSTUNREACH) {
                    std::thread::sleep(REFUSED_PAUSE);
                }
            }
            Err(e) => return Err(format!("connect: {e}")),
        }
    }
}
