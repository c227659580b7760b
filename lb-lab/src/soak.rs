//! A soak under churn (issue 17, "Robustness"): an lbd pair under
//! continuous traffic while everything an operator or a failure does to it
//! happens over and over, for as long as asked. Run by
//! `cargo xtask soak --minutes N` (`src/bin/lb-soak.rs`) and, for 2
//! minutes, by the kernel test `tests/soak.rs`.
//!
//! # Topology
//!
//! Its own LAN of network namespaces, named `lbsk<pid>x<n>-<role>`
//! ([`FAMILY`], [`Lan::with_family`]) with addresses from 198.18.77.0/24
//! and 2001:db8:77::/64, which no test or the lab uses: a client, two lbd
//! nodes `lb1` (priority 150) and `lb2` (100) forming a VRRP pair (100 ms
//! adverts) with connection sync, and four backends `b1`..`b4` running
//! [`EchoServer`]s behind the dsr service [`VIP`]:[`PORT`] (tcp health
//! checks every 200 ms). Configurations, control sockets and logs are in a
//! directory under the system's temporary directory, kept when the soak
//! fails and removed otherwise.
//!
//! # Traffic
//!
//! - Long-lived connections in generations ([`Traffic`], one per
//!   generation): every `generation_every` a generation of `long_lived`
//!   connections starts, each exchanging a line every 100 ms, and lives
//!   `generation_life` (so about `long_lived * life / every` connections
//!   are alive at once, each living through many events, and the ones a
//!   backend's failure breaks are replaced).
//! - New connections at `new_per_sec`, evenly paced, one line each.
//!
//! # Churn
//!
//! A schedule of 40 one-second steps, repeated (cycle `c`):
//!
//! | step | event |
//! |---|---|
//! | 0, 12, 18, 24, 30, 33 | reload: both files rewritten with other weights (1..3, rotating), SIGHUP to both |
//! | 3 | backend flap: `b[c % 4]`'s server stopped (its connections closed, new ones refused) |
//! | 6 | the master's priority changed (it stays the higher): reload |
//! | 9 | `lbctl drain` of `b[(c + 2) % 4]` on both nodes |
//! | 10 | the flapped backend's server started again |
//! | 15 | the backup's priority changed (it stays the lower): reload |
//! | 21 | `lbctl enable` of the drained backend on both nodes |
//! | 27 | mastership moved by priority: even cycles raise the backup above the master, odd ones lower the master below the backup |
//! | 36 | priorities back to 150 / 100, the new master keeping the 150 |
//!
//! Throughout, `lbctl` (status, stats, backends, services, vrrp, flows)
//! asks one node or the other every `lbctl_every`; every call must
//! succeed. Watchers inside the two LB namespaces record every change of
//! which node holds the VIP (polled every 50 ms); 5 s after each priority
//! change the VIP must be on the node the priorities say, and mastership
//! must move exactly as often as the priorities asked it to (lbd applies
//! a priority-only change in place, `lb-user/src/vrrp/driver.rs`, so a
//! master that stays the higher keeps the VIP throughout).
//!
//! # Attribution: which losses the events explain
//!
//! Every broken long-lived connection and failed new connection is either
//! explained by one event, by these rules, or counted a failure:
//!
//! - **Backend down.** A long-lived connection whose last answer came from
//!   backend B and which broke between B's flap down and 1 s after its
//!   flap up (its server closed it). A new connection whose attempt was
//!   under way within [`flap_window`] of a flap down (the time the health
//!   checks take to fail, plus 1 s): until both nodes drop B from the pool,
//!   some new connections reach a server that is not there.
//! - **VIP move.** A new connection whose attempt was under way from
//!   0.2 s before to [`MOVE_WINDOW`] after a change of the VIP's holders
//!   (the client's neighbour entry moves with the gratuitous ARP). A
//!   long-lived connection that broke in that window only if its generation
//!   was established less than [`SYNC_GRACE`] before the change (its flow
//!   may not have reached the peer yet); an older one had been synced, so
//!   breaking is a failure.
//! - Reloads, drains, enables and priority changes that move nothing
//!   explain nothing. A long-lived connection answered by another backend
//!   (moved) is a failure, as is a generation that could not be
//!   established.
//!
//! # Resources and logs
//!
//! Each lbd's RSS (`VmRSS` of `/proc/PID/status`) and open file
//! descriptors (`/proc/PID/fd`) are sampled every second. After a warm-up
//! (the first tenth of the churn, at least 10 s), the mean RSS of the last
//! quarter of the samples may exceed that of the first by at most
//! [`RSS_SLACK_KIB`] or [`RSS_SLACK_PERCENT`] %, whichever is larger; so
//! may its anonymous part (`RssAnon`: heap and stacks), judged apart
//! because about 90 MiB of lbd's RSS are pages of the BPF maps it maps
//! (`RssFile` + `RssShmem`), which would hide a heap growing by a few MiB
//! within 5 %. The median descriptor count may grow by at most
//! [`FD_SLACK`]. Both logs are
//! scanned at the end: any `ERROR` line or panic is a failure (`WARN` lines,
//! e.g. a backend going down, are counted and shown); each node must have
//! applied as many reloads as it was sent SIGHUPs; both must exit 0 on
//! SIGTERM.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use lb_user::config::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, Protocol, Service,
    Sync, VrrpInstance, XdpMode,
};

use crate::{
    daemon::Daemon,
    netns::{Lan, Netns},
    traffic::{self, EchoServer, Failure, LongLived, Traffic},
};

/// Every namespace of a soak is named `lbsk<pid>x<n>-<role>`.
pub const FAMILY: &str = "lbsk";
/// The service's virtual IP (198.18.77.0/24 is the soak's alone).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 100);
/// The service's port.
pub const PORT: u16 = 9000;
/// LB nodes: name, last octet (198.18.77.N, 2001:db8:77::N).
const LBS: [(&str, u8); 2] = [("lb1", 2), ("lb2", 3)];
/// Backends: name, last octet.
const BACKENDS: [(&str, u8); 4] = [("b1", 11), ("b2", 12), ("b3", 13), ("b4", 14)];
const SECRET: &str = "the soak's sync secret, 16+ characters";
const VRID: u8 = 77;
/// The priorities the cycle starts and ends from: master, backup.
const PRIO_MASTER: u8 = 150;
const PRIO_BACKUP: u8 = 100;
/// Health checks: every 200 ms, 150 ms timeout, the default fall (3).
const HEALTH_INTERVAL: Duration = Duration::from_millis(200);
const HEALTH_TIMEOUT: Duration = Duration::from_millis(150);
const HEALTH_FALL: u32 = 3;
/// One schedule step.
const STEP: Duration = Duration::from_secs(1);
/// Steps per cycle.
const CYCLE: u64 = 40;
/// Traffic alone before the churn starts, and after it ends.
const WARM_UP: Duration = Duration::from_secs(5);
const COOL_DOWN: Duration = Duration::from_secs(5);
/// How long after a priority change the VIP must be where the priorities
/// say.
const SETTLE: Duration = Duration::from_secs(5);
/// A VIP holder change explains new connections failing from 0.2 s before
/// to this long after it.
pub const MOVE_WINDOW: Duration = Duration::from_secs(2);
const MOVE_BEFORE: Duration = Duration::from_millis(200);
/// A long-lived connection established less than this before a VIP move
/// may not have been synced to the peer.
pub const SYNC_GRACE: Duration = Duration::from_secs(1);
/// RSS growth allowed from the first to the last quarter: the larger of
/// these.
pub const RSS_SLACK_KIB: u64 = 2048;
/// See [`RSS_SLACK_KIB`].
pub const RSS_SLACK_PERCENT: u64 = 5;
/// Growth of the median open-descriptor count allowed.
pub const FD_SLACK: u64 = 2;

/// How long a flap down explains new connections failing: the health
/// checks' time to fail (fall × interval + timeout) plus 1 s.
#[must_use]
pub fn flap_window() -> Duration {
    HEALTH_INTERVAL * HEALTH_FALL + HEALTH_TIMEOUT + Duration::from_secs(1)
}

type Error = Box<dyn std::error::Error + Send + std::marker::Sync>;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the churn lasts (traffic runs [`WARM_UP`] before and
    /// [`COOL_DOWN`] after it).
    pub churn: Duration,
    /// Long-lived connections per generation.
    pub long_lived: usize,
    /// A new generation this often.
    pub generation_every: Duration,
    /// How long a generation lives.
    pub generation_life: Duration,
    /// New connections per second.
    pub new_per_sec: u32,
    /// An lbctl call this often.
    pub lbctl_every: Duration,
    /// Print each event as it happens.
    pub verbose: bool,
    /// The lbd binary.
    pub lbd: PathBuf,
    /// The lbctl binary.
    pub lbctl: PathBuf,
}

impl Options {
    /// A soak of `churn` with the defaults: generations of 10 connections
    /// every 15 s living 60 s (about 40 alive), 20 new connections a
    /// second, lbctl every 200 ms; lbd and lbctl beside the running
    /// executable ([`crate::bin`]).
    #[must_use]
    pub fn new(churn: Duration) -> Self {
        Self {
            churn,
            long_lived: 10,
            generation_every: Duration::from_secs(15),
            generation_life: Duration::from_mins(1),
            new_per_sec: 20,
            lbctl_every: Duration::from_millis(200),
            verbose: false,
            lbd: crate::bin("lbd"),
            lbctl: crate::bin("lbctl"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Events

/// A kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Both files rewritten with other weights, SIGHUP to both.
    Reload,
    /// A backend's server stopped.
    FlapDown,
    /// A backend's server started again.
    FlapUp,
    /// `lbctl drain` on both nodes.
    Drain,
    /// `lbctl enable` on both nodes.
    Enable,
    /// The master's priority changed, keeping it the higher.
    PriorityMaster,
    /// The backup's priority changed, keeping it the lower.
    PriorityBackup,
    /// Priorities changed to move mastership.
    PriorityMove,
    /// Priorities back to 150 / 100.
    PrioritySettle,
    /// The set of nodes holding the VIP changed (seen by the watchers).
    VipChange,
}

impl Kind {
    const fn name(self) -> &'static str {
        match self {
            Self::Reload => "reload (weights)",
            Self::FlapDown => "backend down (server stopped)",
            Self::FlapUp => "backend up (server started)",
            Self::Drain => "drain (lbctl, both nodes)",
            Self::Enable => "enable (lbctl, both nodes)",
            Self::PriorityMaster => "priority: master's, stays master",
            Self::PriorityBackup => "priority: backup's, stays backup",
            Self::PriorityMove => "priority: mastership moved",
            Self::PrioritySettle => "priority: back to 150/100",
            Self::VipChange => "VIP holders changed (observed)",
        }
    }
}

/// One event, as it happened.
#[derive(Debug, Clone)]
pub struct Event {
    /// When.
    pub at: Instant,
    /// What.
    pub kind: Kind,
    /// The backend concerned (flaps, drains).
    pub backend: Option<usize>,
    /// Details (weights, priorities, holders).
    pub detail: String,
    /// For [`Kind::VipChange`]: which nodes hold the VIP from now on.
    pub holders: Option<[bool; 2]>,
}

/// State shared by the soak's threads.
struct Shared {
    t0: Instant,
    verbose: bool,
    /// Set when the traffic is to stop (the generations end).
    stop_traffic: AtomicBool,
    /// Set when every helper thread is to stop.
    done: AtomicBool,
    events: Mutex<Vec<Event>>,
    /// Which nodes hold the VIP now.
    holders: Mutex<[bool; 2]>,
    samples: Mutex<Vec<Sample>>,
    lbctl: Mutex<LbctlTally>,
    /// Problems seen while running (each a failure of the soak).
    problems: Mutex<Vec<String>>,
}

impl Shared {
    fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64()
    }

    /// Record an event that began at `at` (before the action: a server's
    /// stop takes a while, and what it breaks breaks from its start).
    fn event(&self, at: Instant, kind: Kind, backend: Option<usize>, detail: String) {
        self.push(at, kind, backend, detail, None);
    }

    fn push(
        &self,
        at: Instant,
        kind: Kind,
        backend: Option<usize>,
        detail: String,
        holders: Option<[bool; 2]>,
    ) {
        if self.verbose {
            println!("{:8.1} s  {:<32} {detail}", self.secs(at), kind.name());
        }
        lock(&self.events).push(Event {
            at,
            kind,
            backend,
            detail,
            holders,
        });
    }

    fn problem(&self, what: String) {
        if self.verbose {
            println!("{:8.1} s  PROBLEM: {what}", self.secs(Instant::now()));
        }
        lock(&self.problems).push(what);
    }

    fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Sleep until `deadline` in short steps; `true` when the soak is
    /// done meanwhile.
    fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            if self.done() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }
}

/// One resource sample of one node's lbd.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    node: usize,
    rss_kib: u64,
    /// `RssAnon` (heap and stacks) and `RssFile` + `RssShmem` (mapped
    /// files and shared memory: the BPF maps lbd maps, pages it touched).
    anon_kib: u64,
    shared_kib: u64,
    fds: u64,
}

/// lbctl calls: per command, how many and how many failed; the first
/// failures.
#[derive(Debug, Default)]
struct LbctlTally {
    calls: BTreeMap<String, (u64, u64)>,
    failures: Vec<String>,
}

// ---------------------------------------------------------------------------
// The lab

/// The configuration both nodes are given (priorities per node).
#[derive(Debug, Clone, Copy)]
struct Knobs {
    weights: [u32; 4],
    prio: [u8; 2],
}

struct Lab {
    lan: Lan,
    dir: PathBuf,
    /// Backends' servers, `None` while flapped down.
    echo: Mutex<Vec<Option<EchoServer>>>,
    lbd: Vec<Option<Daemon>>,
    lbd_bin: PathBuf,
    /// SIGHUPs sent, per node.
    sighups: [Mutex<u64>; 2],
    keep_dir: bool,
}

fn addr4(octet: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 77, octet)
}

impl Lab {
    fn new(lbd_bin: PathBuf) -> Result<Self, Error> {
        let mut lan = Lan::with_family(FAMILY)?;
        lan.add_host("client", "198.18.77.1/24", "2001:db8:77::1/64")?;
        for (name, octet) in LBS.iter().chain(&BACKENDS) {
            lan.add_host(
                name,
                &format!("{}/24", addr4(*octet)),
                &format!("2001:db8:77::{octet:x}/64"),
            )?;
        }
        lan.prepare_xdp("client")?;
        let mut echo = Vec::new();
        for (name, _) in BACKENDS {
            let ns = &lan.host(name).ns;
            ns.dsr_backend(&VIP.to_string())?;
            echo.push(Some(EchoServer::start(ns, name, PORT)?));
        }
        let dir = std::env::temp_dir().join(format!("{}soak", lan.prefix()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            lan,
            dir,
            echo: Mutex::new(echo),
            lbd: vec![None, None],
            lbd_bin,
            sighups: [Mutex::new(0), Mutex::new(0)],
            keep_dir: true,
        })
    }

    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    fn pin_path(&self, node: usize) -> PathBuf {
        format!("/sys/fs/bpf/{}{}", self.lan.prefix(), LBS[node].0).into()
    }

    fn socket(&self, node: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", LBS[node].0))
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("{}.log", LBS[node].0))
    }

    fn config_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("{}.toml", LBS[node].0))
    }

    fn config(&self, node: usize, knobs: &Knobs) -> Result<String, Error> {
        let ms = |ms| Dur(Duration::from_millis(ms));
        let backends = BACKENDS
            .iter()
            .zip(knobs.weights)
            .map(|((_, octet), weight)| BackendConfig {
                weight,
                ..BackendConfig::new(IpAddr::V4(addr4(*octet)))
            })
            .collect();
        let config = Config {
            global: Global {
                router_id: Some(LBS[node].0.into()),
                bpf_pin_path: self.pin_path(node),
                control_socket: self.socket(node),
                metrics_listen: None,
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Generic,
                ..Dataplane::new("eth0")
            }),
            vrrp_instance: vec![VrrpInstance {
                priority: knobs.prio[node],
                advert_interval: ms(100),
                ..VrrpInstance::new("VI_1", "eth0", VRID, vec![format!("{VIP}/24")])
            }],
            service: vec![Service {
                protocol: Protocol::Tcp,
                mode: Mode::Dsr,
                health: Health {
                    kind: HealthKind::Tcp,
                    interval: Dur(HEALTH_INTERVAL),
                    timeout: Dur(HEALTH_TIMEOUT),
                    fall: HEALTH_FALL,
                    ..Health::default()
                },
                ..Service::new(IpAddr::V4(VIP), PORT, backends)
            }],
            sync: Some(Sync::new(SECRET, vec![IpAddr::V4(addr4(LBS[1 - node].1))])),
            ..Config::default()
        };
        Ok(config.to_toml()?)
    }

    fn write_configs(&self, knobs: &Knobs) -> Result<(), Error> {
        for node in 0..2 {
            std::fs::write(self.config_path(node), self.config(node, knobs)?)?;
        }
        Ok(())
    }

    fn start(&mut self, node: usize, ready: &str) -> Result<(), Error> {
        let lb = LBS[node].0;
        let lbd_bin = self.lbd_bin.clone();
        let mut cmd = self.ns(lb).command(lbd_bin);
        cmd.arg("--config")
            .arg(self.config_path(node))
            .env("LB_LOG", "info");
        let lbd = Daemon::builder(lb, self.log_path(node))
            .parent_death_signal(libc::SIGKILL)
            .spawn(&mut cmd)?;
        lbd.wait_log(ready, Duration::from_secs(30))?;
        self.lbd[node] = Some(lbd);
        Ok(())
    }

    fn daemon(&self, node: usize) -> Option<&Daemon> {
        self.lbd[node].as_ref()
    }

    /// Rewrite both files and SIGHUP both nodes.
    fn reload(&self, knobs: &Knobs) -> Result<(), Error> {
        self.write_configs(knobs)?;
        for node in 0..2 {
            let daemon = self.daemon(node).ok_or("lbd not running")?;
            daemon.signal(libc::SIGHUP)?;
            *lock(&self.sighups[node]) += 1;
        }
        Ok(())
    }

    fn lbctl(&self, lbctl: &Path, node: usize, args: &[&str]) -> Result<String, String> {
        let out = self
            .ns(LBS[node].0)
            .command(lbctl)
            .arg("--socket")
            .arg(self.socket(node))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run lbctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{} lbctl {}: {} {}",
                LBS[node].0,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn flap(&self, backend: usize, up: bool) -> Result<(), Error> {
        let mut echo = lock(&self.echo);
        if up {
            let (name, _) = BACKENDS[backend];
            echo[backend] = Some(EchoServer::start(self.ns(name), name, PORT)?);
        } else if let Some(mut server) = echo[backend].take() {
            server.stop();
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for lbd in &mut self.lbd {
            // SIGTERM: VIPs released, program detached, pins removed.
            drop(lbd.take());
        }
        for node in 0..2 {
            // Only if an lbd died and left its data plane pinned.
            if self.pin_path(node).exists() {
                let _ = lb_user::dataplane::loader::detach_pinned(&self.pin_path(node));
            }
        }
        lock(&self.echo).clear();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// Helper threads

/// Whether an interface of the calling thread's network namespace holds
/// IPv4 address `addr`; `None` if the addresses cannot be read.
fn holds_v4(addr: Ipv4Addr) -> Option<bool> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list freed below.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return None;
    }
    let mut found = false;
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, not freed
        // yet.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            #[allow(
                clippy::cast_ptr_alignment,
                reason = "getifaddrs allocates an AF_INET address as a whole sockaddr_in"
            )]
            // SAFETY: a non-null ifa_addr points to a sockaddr whose
            // family says its type; AF_INET ones are sockaddr_in.
            unsafe {
                if i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                    let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    found |= u32::from_be(sin.sin_addr.s_addr) == u32::from(addr);
                }
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Some(found)
}

fn holder_names(holders: [bool; 2]) -> String {
    let names: Vec<&str> = (0..2).filter(|&n| holders[n]).map(|n| LBS[n].0).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join("+")
    }
}

/// Record every change of whether node `node` holds the VIP, polling
/// every 50 ms from inside its namespace, until the soak is done.
fn watch_vip(lab: &Lab, shared: &Shared, node: usize) {
    let run = lab.ns(LBS[node].0).run(|| {
        let mut last = None;
        while !shared.done() {
            if let Some(now) = holds_v4(VIP)
                && last != Some(now)
            {
                let holders = {
                    let mut h = lock(&shared.holders);
                    h[node] = now;
                    *h
                };
                if last.is_some() {
                    shared.push(
                        Instant::now(),
                        Kind::VipChange,
                        None,
                        format!(
                            "{} {} the VIP; holders now: {}",
                            LBS[node].0,
                            if now { "took" } else { "released" },
                            holder_names(holders)
                        ),
                        Some(holders),
                    );
                }
                last = Some(now);
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    if let Err(e) = run {
        shared.problem(format!("VIP watcher on {}: {e}", LBS[node].0));
    }
}

/// Process `pid`'s memory and open descriptors now (a [`Sample`] but
/// for its time and node).
fn proc_usage(pid: u32) -> Option<[u64; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some([
        kib("VmRSS:")?,
        kib("RssAnon:")?,
        kib("RssFile:")? + kib("RssShmem:")?,
        fds,
    ])
}

/// Sample both lbds' RSS and descriptors every second until done.
fn sample(lab: &Lab, shared: &Shared) {
    let pids: Vec<Option<u32>> = (0..2).map(|n| lab.daemon(n).map(Daemon::pid)).collect();
    let mut next = Instant::now();
    while !shared.sleep_until(next) {
        for (node, pid) in pids.iter().enumerate() {
            if let Some([rss_kib, anon_kib, shared_kib, fds]) = pid.and_then(proc_usage) {
                lock(&shared.samples).push(Sample {
                    at: Instant::now(),
                    node,
                    rss_kib,
                    anon_kib,
                    shared_kib,
                    fds,
                });
            }
        }
        next += Duration::from_secs(1);
    }
}

/// What the lbctl loop asks, in turn, of each node.
const LBCTL_CALLS: [&[&str]; 6] = [
    &["status"],
    &["stats"],
    &["backends"],
    &["services"],
    &["vrrp"],
    &["flows", "--limit", "20"],
];

/// Call lbctl every `every`, the nodes and commands in turn, until done.
fn lbctl_loop(lab: &Lab, shared: &Shared, lbctl: &Path, every: Duration) {
    let mut next = Instant::now();
    for i in 0usize.. {
        if shared.sleep_until(next) {
            return;
        }
        let node = i % 2;
        let args = LBCTL_CALLS[(i / 2) % LBCTL_CALLS.len()];
        let result = lab.lbctl(lbctl, node, args);
        let at = shared.secs(Instant::now());
        let mut tally = lock(&shared.lbctl);
        let entry = tally.calls.entry(args[0].to_owned()).or_default();
        entry.0 += 1;
        if let Err(e) = result {
            entry.1 += 1;
            tally.failures.push(format!("+{at:.1} s {e}"));
        }
        next = (next + every).max(Instant::now());
    }
}

/// One generation of long-lived connections, stopped.
#[derive(Debug)]
struct Generation {
    /// When every connection of it had exchanged its first line.
    ready: Instant,
    report: traffic::Report,
}

/// Start a generation every `generation_every`, stop each after
/// `generation_life`, until told to stop the traffic; then stop them all.
/// A generation that cannot start is a problem of the soak.
fn generations(lab: &Lab, shared: &Shared, opts: &Options) -> Vec<Generation> {
    let client = lab.ns("client");
    let target = SocketAddr::from((VIP, PORT));
    let options = traffic::Options {
        long_lived: opts.long_lived,
        new_per_sec: 0,
        ..traffic::Options::default()
    };
    let mut live: Vec<(Instant, Instant, Traffic)> = Vec::new();
    let mut done = Vec::new();
    let mut next = Instant::now();
    loop {
        let stopping = shared.stop_traffic.load(Ordering::SeqCst);
        let now = Instant::now();
        let (old, young): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|(started, _, _)| stopping || now >= *started + opts.generation_life);
        live = young;
        for (_, ready, t) in old {
            done.push(Generation {
                ready,
                report: t.stop(),
            });
        }
        if stopping {
            return done;
        }
        if now >= next {
            let started = Instant::now();
            match Traffic::start(client, target, options) {
                Ok(t) => live.push((started, Instant::now(), t)),
                Err(e) => shared.problem(format!(
                    "+{:.1} s a generation of long-lived connections did not start: {e}",
                    shared.secs(started)
                )),
            }
            next += opts.generation_every;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sets the stop flags when dropped, also while unwinding: the helper
/// threads end, so the scope joining them does not wait forever.
struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop_traffic.store(true, Ordering::SeqCst);
        self.0.done.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// The churn

/// Weights of the `n`th reload: 1..3, rotating.
fn weights(n: u64) -> [u32; 4] {
    let mut w = [1; 4];
    for (i, w) in w.iter_mut().enumerate() {
        *w = 1 + ((n + i as u64) % 3) as u32;
    }
    w
}

fn prio_text(knobs: &Knobs) -> String {
    format!(
        "{} {}, {} {}",
        LBS[0].0, knobs.prio[0], LBS[1].0, knobs.prio[1]
    )
}

/// The churn's state: the files' knobs, which node the priorities make
/// master, what is flapped or drained, checks due.
struct Churn<'a> {
    lab: &'a Lab,
    shared: &'a Shared,
    lbctl: &'a Path,
    knobs: Knobs,
    reloads: u64,
    master: usize,
    flapped: Option<usize>,
    drained: Option<usize>,
    /// When, which node must hold the VIP alone, after what.
    expect: Vec<(Instant, usize, String)>,
}

impl Churn<'_> {
    fn reload(&mut self, kind: Kind, detail: String) {
        if kind == Kind::Reload {
            self.reloads += 1;
            self.knobs.weights = weights(self.reloads);
        }
        let at = Instant::now();
        match self.lab.reload(&self.knobs) {
            Ok(()) => self.shared.event(at, kind, None, detail),
            Err(e) => self.shared.problem(format!("{}: {e}", kind.name())),
        }
    }

    fn priority(&mut self, kind: Kind) {
        let detail = prio_text(&self.knobs);
        self.reload(kind, detail.clone());
        self.expect.push((
            Instant::now() + SETTLE,
            self.master,
            format!("{} ({detail})", kind.name()),
        ));
    }

    fn flap(&mut self, backend: usize, up: bool) {
        let kind = if up { Kind::FlapUp } else { Kind::FlapDown };
        let at = Instant::now();
        match self.lab.flap(backend, up) {
            Ok(()) => {
                self.flapped = (!up).then_some(backend);
                self.shared
                    .event(at, kind, Some(backend), BACKENDS[backend].0.to_owned());
            }
            Err(e) => self.shared.problem(format!("{}: {e}", kind.name())),
        }
    }

    fn drain(&mut self, backend: usize, on: bool) {
        let kind = if on { Kind::Drain } else { Kind::Enable };
        let service = format!("{VIP}:{PORT}");
        let addr = addr4(BACKENDS[backend].1).to_string();
        let verb = if on { "drain" } else { "enable" };
        let at = Instant::now();
        let mut ok = true;
        for node in 0..2 {
            if let Err(e) = self.lab.lbctl(self.lbctl, node, &[verb, &service, &addr]) {
                self.shared.problem(e);
                ok = false;
            }
        }
        if ok {
            self.drained = on.then_some(backend);
            self.shared
                .event(at, kind, Some(backend), BACKENDS[backend].0.to_owned());
        }
    }

    /// Step `step` of the schedule (see the module's documentation).
    fn step(&mut self, step: u64) {
        let cycle = step / CYCLE;
        let backup = 1 - self.master;
        match step % CYCLE {
            0 | 12 | 18 | 24 | 30 | 33 => {
                let w = weights(self.reloads + 1);
                self.reload(Kind::Reload, format!("weights {w:?}"));
            }
            3 => self.flap((cycle % 4) as usize, false),
            6 => {
                self.knobs.prio[self.master] = PRIO_MASTER + 10;
                self.priority(Kind::PriorityMaster);
            }
            9 => self.drain(((cycle + 2) % 4) as usize, true),
            10 => {
                if let Some(b) = self.flapped {
                    self.flap(b, true);
                }
            }
            15 => {
                self.knobs.prio[backup] = PRIO_BACKUP + 10;
                self.priority(Kind::PriorityBackup);
            }
            21 => {
                if let Some(b) = self.drained {
                    self.drain(b, false);
                }
            }
            27 => {
                if cycle.is_multiple_of(2) {
                    self.knobs.prio[backup] = PRIO_MASTER + 20;
                } else {
                    self.knobs.prio[self.master] = PRIO_BACKUP - 10;
                }
                self.master = backup;
                self.priority(Kind::PriorityMove);
            }
            36 => {
                self.knobs.prio[self.master] = PRIO_MASTER;
                self.knobs.prio[backup] = PRIO_BACKUP;
                self.priority(Kind::PrioritySettle);
            }
            _ => {}
        }
    }

    /// Check the mastership expectations that are due (all of them with
    /// `all`, after waiting for the last).
    fn check_expectations(&mut self, all: bool) {
        if all && let Some(last) = self.expect.iter().map(|(at, _, _)| *at).max() {
            let now = Instant::now();
            if last > now {
                thread::sleep(last - now);
            }
        }
        let now = Instant::now();
        let holders = *lock(&self.shared.holders);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.expect)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.expect = later;
        for (_, node, what) in due {
            let mut want = [false; 2];
            want[node] = true;
            if holders != want {
                self.shared.problem(format!(
                    "{} s after {what}, the VIP is on {}, not on {} alone",
                    SETTLE.as_secs(),
                    holder_names(holders),
                    LBS[node].0
                ));
            }
        }
    }
}

/// Run the churn schedule for `opts.churn` (or until `stop`); then bring
/// back what is flapped or drained. Whether it was interrupted.
fn churn(lab: &Lab, shared: &Shared, opts: &Options, stop: &AtomicBool) -> bool {
    let mut churn = Churn {
        lab,
        shared,
        lbctl: &opts.lbctl,
        knobs: Knobs {
            weights: weights(0),
            prio: [PRIO_MASTER, PRIO_BACKUP],
        },
        reloads: 0,
        master: 0,
        flapped: None,
        drained: None,
        expect: Vec::new(),
    };
    let start = Instant::now();
    let steps = opts.churn.as_secs().max(1);
    let mut interrupted = false;
    'steps: for step in 0..steps {
        let due = start + STEP * u32::try_from(step).unwrap_or(u32::MAX);
        while Instant::now() < due {
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
                break 'steps;
            }
            thread::sleep(Duration::from_millis(20));
        }
        for (node, (name, _)) in LBS.iter().enumerate() {
            if let Some(status) = lab.daemon(node).and_then(Daemon::exited) {
                shared.problem(format!("{name}'s lbd exited during the soak ({status})"));
                interrupted = true;
                break 'steps;
            }
        }
        churn.check_expectations(false);
        churn.step(step);
    }
    if let Some(b) = churn.flapped {
        churn.flap(b, true);
    }
    if let Some(b) = churn.drained {
        churn.drain(b, false);
    }
    if !interrupted {
        churn.check_expectations(true);
    }
    interrupted
}

// ---------------------------------------------------------------------------
// Run

/// Run the soak: build the lab, start the lbd pair, traffic and churn;
/// stop everything; judge. `stop` (set by a signal handler) ends the churn
/// early: everything is still stopped and removed, and the summary says
/// it was interrupted.
///
/// # Errors
/// The lab or the lbd pair could not be set up, or the traffic could not
/// start: no summary then (the daemons' logs are kept, and the error names
/// their directory).
pub fn run(opts: &Options, stop: &AtomicBool) -> Result<Summary, Error> {
    let mut lab = Lab::new(opts.lbd.clone())?;
    let dir = lab.dir.clone();
    setup(&mut lab).map_err(|e| format!("{e} (logs in {})", dir.display()))?;
    let shared = Shared {
        t0: Instant::now(),
        verbose: opts.verbose,
        stop_traffic: AtomicBool::new(false),
        done: AtomicBool::new(false),
        events: Mutex::new(Vec::new()),
        holders: Mutex::new([true, false]),
        samples: Mutex::new(Vec::new()),
        lbctl: Mutex::new(LbctlTally::default()),
        problems: Mutex::new(Vec::new()),
    };
    let new_options = traffic::Options {
        long_lived: 0,
        new_per_sec: opts.new_per_sec,
        ..traffic::Options::default()
    };
    let (interrupted, churn_start, churn_end, gens, new_report) = thread::scope(|s| {
        let guard = StopOnDrop(&shared);
        let (lab, shared) = (&lab, &shared);
        for node in 0..2 {
            s.spawn(move || watch_vip(lab, shared, node));
        }
        s.spawn(|| sample(lab, shared));
        s.spawn(|| lbctl_loop(lab, shared, &opts.lbctl, opts.lbctl_every));
        let gens = s.spawn(|| generations(lab, shared, opts));
        let new_traffic =
            Traffic::start(lab.ns("client"), SocketAddr::from((VIP, PORT)), new_options);
        let new_traffic = match new_traffic {
            Ok(t) => t,
            Err(e) => {
                drop(guard);
                let _ = gens.join();
                return Err(Error::from(format!(
                    "new connections did not start: {e} (logs in {})",
                    dir.display()
                )));
            }
        };
        thread::sleep(WARM_UP);
        let churn_start = Instant::now();
        if shared.verbose {
            println!(
                "{:8.1} s  churn starts ({} s)",
                shared.secs(churn_start),
                opts.churn.as_secs()
            );
        }
        let interrupted = churn(lab, shared, opts, stop);
        let churn_end = Instant::now();
        if !interrupted {
            thread::sleep(COOL_DOWN);
        }
        shared.stop_traffic.store(true, Ordering::SeqCst);
        let gens = gens
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let new_report = new_traffic.stop();
        drop(guard);
        Ok((interrupted, churn_start, churn_end, gens, new_report))
    })?;
    // Both lbds stopped as an operator would: SIGTERM, exit 0.
    let mut problems = std::mem::take(&mut *lock(&shared.problems));
    for (node, (name, _)) in LBS.iter().enumerate() {
        if let Some(mut lbd) = lab.lbd[node].take() {
            match lbd.stop() {
                Ok(status) if status.success() => {}
                Ok(status) => problems.push(format!("{name}'s lbd exited {status} on SIGTERM")),
                Err(e) => problems.push(format!("{name}'s lbd: {e}")),
            }
        }
    }
    let logs: Vec<String> = (0..2)
        .map(|n| std::fs::read_to_string(lab.log_path(n)).unwrap_or_default())
        .collect();
    let sighups = [*lock(&lab.sighups[0]), *lock(&lab.sighups[1])];
    let summary = Summary::judge(Judged {
        opts,
        interrupted,
        t0: shared.t0,
        churn: churn_end - churn_start,
        warm_from: churn_start + (opts.churn / 10).max(Duration::from_secs(10)),
        events: std::mem::take(&mut *lock(&shared.events)),
        gens,
        new_report,
        samples: std::mem::take(&mut *lock(&shared.samples)),
        lbctl: std::mem::take(&mut *lock(&shared.lbctl)),
        logs,
        sighups,
        problems,
        dir: lab.dir.clone(),
    });
    lab.keep_dir = !summary.passed();
    Ok(summary)
}

/// Start both lbds (lb1 master, lb2 backup with lb1's table) and wait
/// until lb1 holds the VIP.
fn setup(lab: &mut Lab) -> Result<(), Error> {
    lab.write_configs(&Knobs {
        weights: weights(0),
        prio: [PRIO_MASTER, PRIO_BACKUP],
    })?;
    lab.start(0, "service active")?;
    lab.start(1, "service standby")?;
    let lb2 = lab.daemon(1).ok_or("lb2 not running")?;
    lb2.wait_log("bulk sync complete", Duration::from_secs(20))?;
    let ns = lab.ns(LBS[0].0);
    let master = crate::netns::wait_for(Duration::from_secs(10), || {
        ns.has_address("eth0", &VIP.to_string()).then_some(())
    });
    if master.is_none() {
        return Err(format!("{} never took the VIP", LBS[0].0).into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Judging

/// What the run produced, for [`Summary::judge`].
struct Judged<'a> {
    opts: &'a Options,
    interrupted: bool,
    churn: Duration,
    warm_from: Instant,
    events: Vec<Event>,
    t0: Instant,
    gens: Vec<Generation>,
    new_report: traffic::Report,
    samples: Vec<Sample>,
    lbctl: LbctlTally,
    logs: Vec<String>,
    sighups: [u64; 2],
    problems: Vec<String>,
    dir: PathBuf,
}

/// Why a loss is explained.
const BY_FLAP: &str = "backend down";
const BY_MOVE: &str = "VIP move";
const BY_MOVE_UNSYNCED: &str = "VIP move, flow not yet synced";

fn before(t: Instant, d: Duration) -> Instant {
    t.checked_sub(d).unwrap_or(t)
}

/// The event that explains long-lived connection `conn` of generation
/// `generation` breaking, if one does (see the module's documentation).
fn explain_long(
    conn: &LongLived,
    generation: &Generation,
    events: &[Event],
) -> Option<&'static str> {
    let failure = conn.failure()?;
    let server = conn.servers.last()?;
    for (i, down) in events.iter().enumerate() {
        let Some(b) = down.backend.filter(|_| down.kind == Kind::FlapDown) else {
            continue;
        };
        if BACKENDS[b].0 != server {
            continue;
        }
        let up = events[i..]
            .iter()
            .find(|e| e.kind == Kind::FlapUp && e.backend == Some(b))
            .map(|e| e.at + Duration::from_secs(1));
        if failure.at >= down.at && up.is_none_or(|up| failure.at <= up) {
            return Some(BY_FLAP);
        }
    }
    events
        .iter()
        .filter(|e| e.kind == Kind::VipChange)
        .any(|e| {
            failure.overlaps(before(e.at, MOVE_BEFORE), e.at + MOVE_WINDOW)
                && generation.ready >= before(e.at, SYNC_GRACE)
        })
        .then_some(BY_MOVE_UNSYNCED)
}

/// The event that explains new connection failure `failure`, if one does.
fn explain_new(failure: &Failure, events: &[Event]) -> Option<&'static str> {
    for e in events {
        match e.kind {
            Kind::FlapDown if failure.overlaps(e.at, e.at + flap_window()) => return Some(BY_FLAP),
            Kind::VipChange if failure.overlaps(before(e.at, MOVE_BEFORE), e.at + MOVE_WINDOW) => {
                return Some(BY_MOVE);
            }
            _ => {}
        }
    }
    None
}

/// One node's lbd over the soak.
#[derive(Debug, Clone)]
pub struct Usage {
    /// The node.
    pub node: &'static str,
    /// Samples after the warm-up.
    pub samples: usize,
    /// RSS at the first and last of them (KiB).
    pub rss_first: u64,
    /// See `rss_first`.
    pub rss_last: u64,
    /// Mean RSS of the first and last quarter (KiB).
    pub rss_q1: u64,
    /// See `rss_q1`.
    pub rss_q4: u64,
    /// Of which anonymous memory (heap, stacks): first and last quarter's
    /// mean (KiB).
    pub anon_q1: u64,
    /// See `anon_q1`.
    pub anon_q4: u64,
    /// Of which mapped files and shared memory (the BPF maps lbd maps:
    /// pages it has touched): first and last quarter's mean (KiB).
    pub shared_q1: u64,
    /// See `shared_q1`.
    pub shared_q4: u64,
    /// Mean anonymous memory of each tenth of the samples (KiB): flat, or
    /// a slope.
    pub anon_tenths: Vec<u64>,
    /// Open descriptors at the first and last sample.
    pub fd_first: u64,
    /// See `fd_first`.
    pub fd_last: u64,
    /// Median descriptors of the first and last quarter.
    pub fd_q1: u64,
    /// See `fd_q1`.
    pub fd_q4: u64,
    /// The most descriptors seen.
    pub fd_max: u64,
    /// The RSS stayed within the slack.
    pub rss_flat: bool,
    /// The descriptors stayed within the slack.
    pub fds_flat: bool,
}

fn usage(node: usize, samples: &[Sample], from: Instant) -> Option<Usage> {
    let s: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.node == node && s.at >= from)
        .collect();
    if s.len() < 8 {
        return None;
    }
    let q = s.len() / 4;
    let (first, last) = (&s[..q], &s[s.len() - q..]);
    let mean = |part: &[&Sample], of: fn(&Sample) -> u64| {
        part.iter().map(|s| of(s)).sum::<u64>() / part.len() as u64
    };
    let median = |part: &[&Sample]| {
        let mut fds: Vec<u64> = part.iter().map(|s| s.fds).collect();
        fds.sort_unstable();
        fds[fds.len() / 2]
    };
    let (rss_q1, rss_q4) = (mean(first, |s| s.rss_kib), mean(last, |s| s.rss_kib));
    let (anon_q1, anon_q4) = (mean(first, |s| s.anon_kib), mean(last, |s| s.anon_kib));
    let (fd_q1, fd_q4) = (median(first), median(last));
    Some(Usage {
        node: LBS[node].0,
        samples: s.len(),
        anon_tenths: (0..10)
            .map(|i| mean(&s[i * s.len() / 10..(i + 1) * s.len() / 10], |s| s.anon_kib))
            .collect(),
        anon_q1,
        anon_q4,
        shared_q1: mean(first, |s| s.shared_kib),
        shared_q4: mean(last, |s| s.shared_kib),
        rss_first: s[0].rss_kib,
        rss_last: s[s.len() - 1].rss_kib,
        rss_q1,
        rss_q4,
        fd_first: s[0].fds,
        fd_last: s[s.len() - 1].fds,
        fd_q1,
        fd_q4,
        fd_max: s.iter().map(|s| s.fds).max().unwrap_or(0),
        rss_flat: rss_q4 <= rss_q1 + RSS_SLACK_KIB.max(rss_q1 * RSS_SLACK_PERCENT / 100)
            && anon_q4 <= anon_q1 + RSS_SLACK_KIB.max(anon_q1 * RSS_SLACK_PERCENT / 100),
        fds_flat: fd_q4 <= fd_q1 + FD_SLACK,
    })
}

/// What one lbd log holds: ERROR and panic lines, WARN lines by message,
/// reloads applied.
#[derive(Debug, Clone, Default)]
pub struct LogScan {
    /// ERROR lines and panics, whole.
    pub errors: Vec<String>,
    /// WARN lines by message (timestamp and level cut).
    pub warnings: BTreeMap<String, usize>,
    /// "configuration ... applied" lines (reloads that took).
    pub applied: u64,
}

fn scan_log(log: &str) -> LogScan {
    let mut scan = LogScan::default();
    for line in log.lines() {
        // `2026-12-03T16:51:17.123456Z  INFO message key=value`
        let mut words = line.split_whitespace();
        let level = words.nth(1).unwrap_or_default();
        if level == "ERROR" || line.contains("panicked") {
            scan.errors.push(line.to_owned());
        } else if level == "WARN" {
            let message: String = words.collect::<Vec<_>>().join(" ");
            let message: String = message.chars().take(110).collect();
            *scan.warnings.entry(message).or_insert(0) += 1;
        }
        if level == "INFO" && line.contains("configuration ") && line.ends_with(" applied") {
            scan.applied += 1;
        }
    }
    scan
}

/// The soak's figures and verdict.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How long the churn ran.
    pub churn: Duration,
    /// Ctrl-C (or an lbd's exit) cut it short.
    pub interrupted: bool,
    /// Generations of long-lived connections, and their size.
    pub generations: usize,
    /// See `generations`.
    pub generation_size: usize,
    /// Long-lived connections: all, kept, moved, broken.
    pub long_lived: usize,
    /// See `long_lived`.
    pub kept: usize,
    /// See `long_lived`.
    pub moved: usize,
    /// See `long_lived`.
    pub broken: usize,
    /// Broken ones explained, by reason.
    pub broken_explained: BTreeMap<&'static str, usize>,
    /// Broken ones no event explains.
    pub broken_unexplained: Vec<String>,
    /// Lines exchanged on the long-lived connections.
    pub lines: u64,
    /// New connections: all, answered, failed.
    pub new_total: usize,
    /// See `new_total`.
    pub new_ok: usize,
    /// See `new_total`.
    pub new_failed: usize,
    /// New connections per second, measured.
    pub new_rate: f64,
    /// Failed ones explained, by reason.
    pub new_explained: BTreeMap<&'static str, usize>,
    /// Failed ones no event explains.
    pub new_unexplained: Vec<String>,
    /// Events by kind.
    pub events: BTreeMap<Kind, usize>,
    /// Times the VIP went from one node alone to the other alone.
    pub mastership_moves: usize,
    /// The longest time no node held the VIP.
    pub longest_vip_gap: Duration,
    /// lbctl calls by command: (calls, failed).
    pub lbctl_calls: BTreeMap<String, (u64, u64)>,
    /// Each lbd's RSS and descriptors.
    pub usage: Vec<Usage>,
    /// Each lbd's log.
    pub logs: Vec<LogScan>,
    /// SIGHUPs sent to each node.
    pub sighups: [u64; 2],
    /// Everything that makes the soak fail.
    pub problems: Vec<String>,
    /// Configurations and logs (kept when the soak fails).
    pub dir: PathBuf,
}

impl Summary {
    /// Whether the soak passed: no problem.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one pass over the run's records, rule after rule, as the module documents them"
    )]
    fn judge(j: Judged<'_>) -> Self {
        let mut problems = j.problems;
        if j.interrupted {
            problems.push("interrupted before the end of the churn".into());
        }
        let events = j.events;
        let gens = j.gens;
        // Long-lived connections.
        let (mut kept, mut moved, mut broken, mut lines) = (0, 0, 0, 0);
        let mut broken_explained = BTreeMap::new();
        let mut broken_unexplained = Vec::new();
        let t0 = j.t0;
        let secs = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
        for (gi, g) in gens.iter().enumerate() {
            for conn in &g.report.long_lived {
                lines += conn.lines;
                match &conn.outcome {
                    traffic::Outcome::Kept => kept += 1,
                    traffic::Outcome::Moved { from, to } => {
                        moved += 1;
                        problems.push(format!(
                            "generation {gi} connection #{}: moved from {from} to {to}",
                            conn.id
                        ));
                    }
                    traffic::Outcome::Broken(f) => {
                        broken += 1;
                        if let Some(why) = explain_long(conn, g, &events) {
                            *broken_explained.entry(why).or_insert(0) += 1;
                        } else {
                            broken_unexplained.push(format!(
                                "+{:.1} s generation {gi} (ready +{:.1} s) connection #{} on {}: {f}",
                                secs(f.at),
                                secs(g.ready),
                                conn.id,
                                conn.servers.join("->")
                            ));
                        }
                    }
                }
            }
        }
        let long_lived = kept + moved + broken;
        if long_lived == 0 {
            problems.push("no long-lived connection was established".into());
        }
        for u in &broken_unexplained {
            problems.push(format!(
                "long-lived connection broken, no event explains it: {u}"
            ));
        }
        // New connections.
        let r = &j.new_report;
        let mut new_explained = BTreeMap::new();
        let mut new_unexplained = Vec::new();
        for f in r.new_failures() {
            if let Some(why) = explain_new(f, &events) {
                *new_explained.entry(why).or_insert(0) += 1;
            } else {
                new_unexplained.push(format!("+{:.1} s {f}", secs(f.started)));
            }
        }
        if r.new_ok() == 0 {
            problems.push("no new connection was answered".into());
        }
        for u in &new_unexplained {
            problems.push(format!("new connection failed, no event explains it: {u}"));
        }
        let span = r.end.saturating_duration_since(r.start).as_secs_f64();
        // Events, mastership.
        let mut counts = BTreeMap::new();
        for e in &events {
            *counts.entry(e.kind).or_insert(0) += 1;
        }
        let (mut sole, mut switches, mut gap_since, mut gap) =
            (Some(0usize), 0, None, Duration::ZERO);
        for e in events.iter().filter(|e| e.kind == Kind::VipChange) {
            let Some(h) = e.holders else { continue };
            match (h[0], h[1]) {
                (true, false) | (false, true) => {
                    let now = usize::from(h[1]);
                    if sole.is_some_and(|s| s != now) {
                        switches += 1;
                    }
                    sole = Some(now);
                }
                _ => {}
            }
            if h == [false, false] {
                gap_since.get_or_insert(e.at);
            } else if let Some(since) = gap_since.take() {
                gap = gap.max(e.at - since);
            }
        }
        let asked = counts.get(&Kind::PriorityMove).copied().unwrap_or(0);
        if switches != asked && !j.interrupted {
            problems.push(format!(
                "mastership moved {switches} times; the priorities asked for {asked} moves \
                 (a change that keeps the master is applied in place and moves nothing)"
            ));
        }
        if switches == 0 && !j.interrupted {
            problems.push("mastership never moved".into());
        }
        // lbctl.
        for f in &j.lbctl.failures {
            problems.push(format!("lbctl failed: {f}"));
        }
        // Resources.
        let mut usages = Vec::new();
        for (node, (name, _)) in LBS.iter().enumerate() {
            match usage(node, &j.samples, j.warm_from) {
                Some(u) => {
                    if !u.rss_flat {
                        problems.push(format!(
                            "{}'s RSS grew: {} KiB (first quarter's mean) -> {} KiB (last \
                             quarter's), of which anonymous {} -> {} KiB",
                            u.node, u.rss_q1, u.rss_q4, u.anon_q1, u.anon_q4
                        ));
                    }
                    if !u.fds_flat {
                        problems.push(format!(
                            "{}'s open descriptors grew: median {} (first quarter) -> {} (last)",
                            u.node, u.fd_q1, u.fd_q4
                        ));
                    }
                    usages.push(u);
                }
                None if j.interrupted => {}
                None => problems.push(format!(
                    "{name}: too few resource samples after the warm-up to judge"
                )),
            }
        }
        // Logs.
        let logs: Vec<LogScan> = j.logs.iter().map(|l| scan_log(l)).collect();
        for (node, scan) in logs.iter().enumerate() {
            for e in &scan.errors {
                problems.push(format!("{}'s log: {e}", LBS[node].0));
            }
            if scan.applied != j.sighups[node] {
                problems.push(format!(
                    "{} applied {} reloads of the {} SIGHUPs it was sent",
                    LBS[node].0, scan.applied, j.sighups[node]
                ));
            }
        }
        Self {
            churn: j.churn,
            interrupted: j.interrupted,
            generations: gens.len(),
            generation_size: j.opts.long_lived,
            long_lived,
            kept,
            moved,
            broken,
            broken_explained,
            broken_unexplained,
            lines,
            new_total: r.new.len(),
            new_ok: r.new_ok(),
            new_failed: r.new_failed(),
            new_rate: if span > 0.0 {
                r.new.len() as f64 / span
            } else {
                0.0
            },
            new_explained,
            new_unexplained,
            events: counts,
            mastership_moves: switches,
            longest_vip_gap: gap,
            lbctl_calls: j.lbctl.calls,
            usage: usages,
            logs,
            sighups: j.sighups,
            problems,
            dir: j.dir,
        }
    }
}

fn explained_text(explained: &BTreeMap<&'static str, usize>, unexplained: usize) -> String {
    let total: usize = explained.values().sum();
    let by: Vec<String> = explained.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if by.is_empty() {
        format!("explained 0, unexplained {unexplained}")
    } else {
        format!(
            "explained {total} ({}), unexplained {unexplained}",
            by.join(", ")
        )
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Failures listed in full at most.
const SHOWN: usize = 20;

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak: {:.0} s of churn; lbd pair {}/{} (VRRP, sync), backends {}, service {VIP}:{PORT} dsr",
            self.churn.as_secs_f64(),
            LBS[0].0,
            LBS[1].0,
            BACKENDS.map(|(n, _)| n).join(" ")
        )?;
        writeln!(
            f,
            "{:<34} {} ({} generations of {}, a line every 100 ms; {} lines)",
            "long-lived connections",
            self.long_lived,
            self.generations,
            self.generation_size,
            self.lines
        )?;
        writeln!(f, "{:<34} {}", "  kept", self.kept)?;
        writeln!(f, "{:<34} {}", "  moved to another backend", self.moved)?;
        writeln!(
            f,
            "{:<34} {}: {}",
            "  broken",
            self.broken,
            explained_text(&self.broken_explained, self.broken_unexplained.len())
        )?;
        writeln!(
            f,
            "{:<34} {} at {:.1}/s: {} ok, {} failed: {}",
            "new connections",
            self.new_total,
            self.new_rate,
            self.new_ok,
            self.new_failed,
            explained_text(&self.new_explained, self.new_unexplained.len())
        )?;
        writeln!(f, "events")?;
        for (kind, n) in &self.events {
            writeln!(f, "  {:<32} {n}", kind.name())?;
        }
        writeln!(
            f,
            "  {:<32} {} (longest with no holder: {} ms)",
            "mastership moves (observed)",
            self.mastership_moves,
            self.longest_vip_gap.as_millis()
        )?;
        let calls: u64 = self.lbctl_calls.values().map(|c| c.0).sum();
        let failed: u64 = self.lbctl_calls.values().map(|c| c.1).sum();
        let each: Vec<String> = self
            .lbctl_calls
            .iter()
            .map(|(k, (n, _))| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "{:<34} {calls} calls, {failed} failed ({})",
            "lbctl loop",
            each.join(", ")
        )?;
        self.fmt_lbds(f)?;
        if self.passed() {
            write!(f, "PASS")?;
        } else {
            writeln!(f, "FAIL: {} problems", self.problems.len())?;
            for p in self.problems.iter().take(SHOWN) {
                writeln!(f, "  - {p}")?;
            }
            if self.problems.len() > SHOWN {
                writeln!(f, "  ... and {} more", self.problems.len() - SHOWN)?;
            }
            write!(f, "logs and configurations kept in {}", self.dir.display())?;
        }
        Ok(())
    }
}

impl Summary {
    /// Each lbd's RSS, descriptors and log.
    fn fmt_lbds(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>24} {:>24} {:>16} {:>16}",
            "lbd", "RSS first -> last", "quarter means", "fds first->last", "quarter medians"
        )?;
        for u in &self.usage {
            let rss = format!("{} -> {}", mib(u.rss_first), mib(u.rss_last));
            let rss_q = format!("{} -> {}", mib(u.rss_q1), mib(u.rss_q4));
            let fds = format!("{} -> {}", u.fd_first, u.fd_last);
            let fds_q = format!("{} -> {}", u.fd_q1, u.fd_q4);
            writeln!(
                f,
                "{:<10} {rss:>24} {rss_q:>24} {fds:>16} {fds_q:>16}  (max {} fds, {} samples){}",
                u.node,
                u.fd_max,
                u.samples,
                if u.rss_flat && u.fds_flat {
                    ""
                } else {
                    "  NOT FLAT"
                }
            )?;
            let anon = format!("{} -> {}", mib(u.anon_q1), mib(u.anon_q4));
            let tenths: Vec<String> = u
                .anon_tenths
                .iter()
                .map(|k| format!("{:.1}", *k as f64 / 1024.0))
                .collect();
            writeln!(
                f,
                "{:<10} {:>24} {anon:>24}   by tenth of the run: {} MiB",
                "  anon",
                "",
                tenths.join(" ")
            )?;
            let maps = format!("{} -> {}", mib(u.shared_q1), mib(u.shared_q4));
            writeln!(f, "{:<10} {:>24} {maps:>24}", "  maps", "")?;
        }
        for (node, scan) in self.logs.iter().enumerate() {
            let warns: usize = scan.warnings.values().sum();
            writeln!(
                f,
                "{:<10} log: {} ERROR/panic lines, {warns} WARN lines; {} of {} reloads applied",
                LBS[node].0,
                scan.errors.len(),
                scan.applied,
                self.sighups[node]
            )?;
            let mut top: Vec<(&String, &usize)> = scan.warnings.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1));
            for (message, n) in top.iter().take(6) {
                writeln!(f, "             {n:>5} x WARN {message}")?;
            }
        }
        Ok(())
    }
}
