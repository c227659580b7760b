//! Kernel test: a service's backends from etcd (`backends_from`), with
//! traffic flowing throughout (40 long-lived TCP connections exchanging a
//! line every 100 ms, 20 new connections a second, `lb_lab::traffic`).
//!
//! On a LAN of network namespaces: a client, lbd (dsr, generic XDP), an
//! etcd host (Debian's `etcd-server`, its own data directory in a temp
//! dir, listening on 198.18.0.50:2379 in its namespace) and four backends
//! running echo servers; each backend's membership is an `lbctl register
//! --ttl 2s` agent in its namespace. The service has no static backend;
//! its `backends_from` lists an endpoint where no etcd runs first (the
//! client uses the other).
//!
//! - three agents register: the three backends enter the pool and share
//!   the traffic;
//! - one agent SIGKILLed: its backend leaves the pool when its lease
//!   expires (measured; within the TTL plus 1.5 s), new connections go
//!   only to the others;
//! - a fourth registers: it enters the pool and receives new connections;
//!   its agent's `--check` fails: it leaves; passes again: it returns;
//! - `lbctl reload` of the same file keeps every member;
//! - an agent stopped with SIGTERM deletes its key: its backend leaves at
//!   once (well within the TTL), the agent exits 0;
//! - etcd SIGKILLed for 4 s (twice the TTL) and started again on its data
//!   directory: lbd keeps the membership throughout (nothing removed, new
//!   connections all succeed), logs the outage once, and resumes watching:
//!   an agent that registers after the restart joins, one stopped leaves;
//! - a reload without `backends_from` stops the watch (the members go), one
//!   with it again reads the prefix (they return);
//! - long-lived connections to the backend that stays throughout are all
//!   kept; no new connection fails but one under way as a backend leaves.
//!   Those to a backend that leaves are counted, not asserted: a backend
//!   out of the pool has its slot deactivated and its flows re-balanced
//!   (`dataplane::balancer`), so in dsr the other backends reset them (a
//!   new connection caught in its handshake too).
//!
//! Needs root, and `/usr/bin/etcd`; `cargo xtask test` refuses to run
//! without root and `cargo xtask setup` installs etcd.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
    traffic::{EchoServer, Options, Outcome, Report, Traffic},
};
use lb_user::config::{
    BackendsFrom, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, Service, XdpMode,
};

static LBD: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbd"));
static LBCTL: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbctl"));

const VIP: &str = "198.18.0.100";
const PORT: u16 = 9000;
const ETCD: &str = "198.18.0.50";
const PREFIX: &str = "/lb/echo/";
/// The agents' lease TTL.
const TTL: Duration = Duration::from_secs(2);
/// Backends: name, address.
const BACKENDS: [(&str, &str); 4] = [
    ("b1", "198.18.0.11"),
    ("b2", "198.18.0.12"),
    ("b3", "198.18.0.13"),
    ("b4", "198.18.0.14"),
];

struct Lab {
    lan: Lan,
    dir: PathBuf,
    _echo: Vec<EchoServer>,
    etcd: Option<Daemon>,
    lbd: Option<Daemon>,
    /// The registration agent of each backend, when running.
    agents: Vec<Option<Daemon>>,
}

impl Lab {
    fn new() -> Self {
        let mut lan = Lan::new().expect("create LAN (run as root)");
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
            .unwrap();
        lan.add_host("etcd", &format!("{ETCD}/24"), "2001:db8::50/64")
            .unwrap();
        for (i, (b, addr)) in BACKENDS.iter().enumerate() {
            lan.add_host(
                b,
                &format!("{addr}/24"),
                &format!("2001:db8::{}/64", 11 + i),
            )
            .unwrap();
        }
        lan.prepare_xdp("client").unwrap();
        // No VRRP: the VIP is the LB's own address, for the client's ARP.
        lan.host("lb")
            .ns
            .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])
            .unwrap();
        let mut echo = Vec::new();
        for (b, _) in BACKENDS {
            let ns = &lan.host(b).ns;
            ns.dsr_backend(VIP).unwrap();
            echo.push(EchoServer::start(ns, b, PORT).unwrap());
        }
        let dir = std::env::temp_dir().join(format!("{}etcd", lan.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lan,
            dir,
            _echo: echo,
            etcd: None,
            lbd: None,
            agents: BACKENDS.iter().map(|_| None).collect(),
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("lbd.sock")
    }

    /// Start etcd on its data directory (the same one at a restart);
    /// return once it serves clients. Each start appends its log.
    fn start_etcd(&mut self) {
        let url = format!("http://{ETCD}:2379");
        let peer = "http://127.0.0.1:2380";
        let mut cmd = self.ns("etcd").command("/usr/bin/etcd");
        cmd.args(["--name", "e1", "--logger", "zap", "--data-dir"])
            .arg(self.dir.join("etcd-data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("e1={peer}")]);
        let n = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("etcd-"))
            .count();
        let log = self.dir.join(format!("etcd-{n}.log"));
        let etcd = Daemon::spawn("etcd", &mut cmd, &log).unwrap();
        etcd.wait_log("serving client traffic", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("etcd did not start: {e}\n{}", etcd.log()));
        self.etcd = Some(etcd);
    }

    /// lbd's file: the service over the etcd prefix (`from`, else no
    /// backends at all), its backends checked every `interval_ms`.
    fn config(&self, from: bool, interval_ms: u64) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        Config {
            global: Global {
                router_id: Some("lb".into()),
                bpf_pin_path: format!("/sys/fs/bpf/{}lb", self.lan.prefix()).into(),
                control_socket: self.socket(),
                metrics_listen: None,
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Generic,
                ..Dataplane::new("eth0")
            }),
            service: vec![Service {
                mode: Mode::Dsr,
                health: Health {
                    kind: HealthKind::Tcp,
                    interval: ms(interval_ms),
                    timeout: ms(150),
                    ..Health::default()
                },
                backends_from: from.then(|| BackendsFrom {
                    // The first endpoint has no etcd: the client uses the other.
                    etcd: vec![
                        "http://198.18.0.51:2379".into(),
                        format!("http://{ETCD}:2379"),
                    ],
                    prefix: PREFIX.into(),
                    port: None,
                }),
                ..Service::new(VIP.parse().unwrap(), PORT, Vec::new())
            }],
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn start_lbd(&mut self) {
        let path = self.dir.join("lb.toml");
        std::fs::write(&path, self.config(true, 200)).unwrap();
        let mut cmd = self.ns("lb").command(&*LBD);
        cmd.arg("--config").arg(&path).env("LB_LOG", "info");
        let lbd = Daemon::spawn("lbd", &mut cmd, self.dir.join("lbd.log")).unwrap();
        lbd.wait_log("running;", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("lbd not ready: {e}\n{}", lbd.log()));
        self.lbd = Some(lbd);
    }

    /// Write lbd's file anew and `lbctl reload`.
    fn reload(&self, text: &str) {
        std::fs::write(self.dir.join("lb.toml"), text).unwrap();
        let out = self
            .ns("lb")
            .command(&*LBCTL)
            .arg("--socket")
            .arg(self.socket())
            .arg("reload")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lbctl reload: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.lbd_log()
        );
    }

    fn lbd_log(&self) -> String {
        self.lbd.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// Start backend `i`'s agent: `lbctl register` in its namespace, with
    /// `check` (run every 200 ms) if given.
    fn register(&mut self, i: usize, check: Option<&str>) {
        let (name, addr) = BACKENDS[i];
        let mut cmd = self.ns(name).command(&*LBCTL);
        cmd.args(["register", "--etcd", &format!("http://{ETCD}:2379")])
            .args(["--prefix", PREFIX, "--address", addr, "--ttl"])
            .arg(format!("{}s", TTL.as_secs()));
        if let Some(check) = check {
            cmd.args(["--check", check, "--check-interval", "200ms"]);
        }
        let agent = Daemon::spawn(
            format!("agent-{name}"),
            &mut cmd,
            self.dir.join(format!("agent-{name}.log")),
        )
        .unwrap();
        self.agents[i] = Some(agent);
    }

    /// `lbctl --json backends`: the service's backends.
    fn backends(&self) -> Vec<serde_json::Value> {
        let out = self
            .ns("lb")
            .command(&*LBCTL)
            .arg("--socket")
            .arg(self.socket())
            .args(["--json", "backends"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lbctl backends: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        reply["data"][0]["backends"].as_array().unwrap().clone()
    }

    /// Backends in the service's pool, by name.
    fn pool(&self) -> BTreeSet<&'static str> {
        let mut pool = BTreeSet::new();
        for b in self.backends() {
            if b["in_pool"].as_bool() == Some(true) {
                let addr = b["address"].as_str().unwrap();
                let (name, _) = BACKENDS.iter().find(|(_, a)| *a == addr).unwrap();
                pool.insert(*name);
            }
        }
        pool
    }

    /// Wait until the pool is `want`; how long that took.
    fn wait_pool(&self, want: &[&str], timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let want: BTreeSet<&str> = want.iter().copied().collect();
        let got = wait_for(timeout, || (self.pool() == want).then_some(()));
        assert!(
            got.is_some(),
            "pool is {:?}, not {want:?} after {timeout:?}\n{}",
            self.pool(),
            self.lbd_log()
        );
        t0.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for a in &mut self.agents {
            drop(a.take());
        }
        drop(self.lbd.take());
        drop(self.etcd.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// New connections answered by `server` that started after `t`.
fn new_after(report: &Report, server: &str, t: Instant) -> usize {
    report
        .new
        .iter()
        .filter(|c| c.started >= t && c.result.as_deref().is_ok_and(|s| s == server))
        .count()
}

/// Wait until a new connection that started after `t` was answered by
/// `server`.
fn wait_new_conn(traffic: &Traffic, server: &str, t: Instant) {
    let seen = wait_for(Duration::from_secs(10), || {
        (new_after(&traffic.snapshot(), server, t) > 0).then_some(())
    });
    assert!(seen.is_some(), "no new connection reached {server}");
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario, step by step, under one traffic run"
)]
fn backends_come_and_go_with_their_etcd_leases() {
    assert!(
        std::path::Path::new("/usr/bin/etcd").exists(),
        "/usr/bin/etcd is missing: run `cargo xtask setup` (Debian's etcd-server)"
    );
    let mut lab = Lab::new();
    // lbd first: etcd is not up yet, and lbd starts all the same.
    lab.start_lbd();
    assert!(lab.pool().is_empty());
    lab.lbd
        .as_ref()
        .unwrap()
        .wait_log("unreachable", Duration::from_secs(5))
        .unwrap();
    lab.start_etcd();
    for i in 0..3 {
        lab.register(i, None);
    }
    let joined = lab.wait_pool(&["b1", "b2", "b3"], Duration::from_secs(15));
    eprintln!("three agents registered: in the pool after {joined:.2?}");
    let log = lab.lbd_log();
    assert!(
        log.contains("etcd /lb/echo/: backend 198.18.0.11 joined (key /lb/echo/198.18.0.11)"),
        "{log}"
    );
    // lbctl backends names each one's key.
    let keys: Vec<String> = lab
        .backends()
        .iter()
        .map(|b| b["etcd_key"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "/lb/echo/198.18.0.11",
            "/lb/echo/198.18.0.12",
            "/lb/echo/198.18.0.13"
        ]
    );

    let target: SocketAddr = format!("{VIP}:{PORT}").parse().unwrap();
    let traffic = Traffic::start(lab.ns("client"), target, Options::default())
        .unwrap_or_else(|e| panic!("traffic did not start: {e}\n{}", lab.lbd_log()));
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();

    // When a backend left the pool: from the action that made it leave to
    // 200 ms after the pool showed it. A new connection under way then
    // may be reset (its flow is re-balanced), and only then.
    let mut leaving: Vec<(Instant, Instant)> = Vec::new();
    let settled = || Instant::now() + Duration::from_millis(200);

    // b3's agent SIGKILLed: its lease expires within the TTL.
    let killed = Instant::now();
    lab.agents[2].take().unwrap().kill().unwrap();
    let left = lab.wait_pool(&["b1", "b2"], TTL + Duration::from_secs(5));
    leaving.push((killed, settled()));
    eprintln!(
        "agent SIGKILLed: backend left the pool after {:.2?} (lease TTL {TTL:?})",
        killed.elapsed()
    );
    assert!(
        left <= TTL + Duration::from_millis(1500),
        "left after {left:?}, TTL {TTL:?}"
    );
    assert!(
        lab.lbd_log().contains(
            "backend 198.18.0.13 left (key deleted or lease expired; key /lb/echo/198.18.0.13)"
        ),
        "{}",
        lab.lbd_log()
    );
    let after_leave = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let snap = traffic.snapshot();
    assert_eq!(new_after(&snap, "b3", after_leave), 0, "new flows to b3");
    assert!(new_after(&snap, "b1", after_leave) > 0 && new_after(&snap, "b2", after_leave) > 0);

    // A fourth registers: it joins and takes new connections. Its agent
    // checks a file: while the check fails, b4 is out.
    let down = lab.dir.join("b4.down");
    let t = Instant::now();
    lab.register(3, Some(&format!("test ! -e {}", down.display())));
    let joined = lab.wait_pool(&["b1", "b2", "b4"], Duration::from_secs(10));
    eprintln!("b4 registered: in the pool after {joined:.2?}");
    wait_new_conn(&traffic, "b4", t);
    let failing = Instant::now();
    std::fs::write(&down, "").unwrap();
    let out = lab.wait_pool(&["b1", "b2"], Duration::from_secs(2));
    leaving.push((failing, settled()));
    std::fs::remove_file(&down).unwrap();
    let back = lab.wait_pool(&["b1", "b2", "b4"], Duration::from_secs(2));
    eprintln!("b4's check failing: out after {out:.2?}; passing again: back after {back:.2?}");
    let t = Instant::now();
    wait_new_conn(&traffic, "b4", t);

    // A reload of the same file keeps the etcd members (merged in again):
    // nothing leaves, nothing is re-added.
    let mark = lab.lbd_log().len();
    lab.reload(&lab.config(true, 200));
    for _ in 0..10 {
        assert_eq!(lab.pool(), BTreeSet::from(["b1", "b2", "b4"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = lab.lbd_log()[mark..].to_owned();
    assert!(log.contains("applied"), "{log}");
    assert!(!log.contains("left") && !log.contains("joined"), "{log}");

    // b2's agent stopped with SIGTERM: the key is deleted at once.
    let stopped = Instant::now();
    let mut agent = lab.agents[1].take().unwrap();
    let status = agent.stop().unwrap();
    let gone = lab.wait_pool(&["b1", "b4"], TTL);
    let gone_total = stopped.elapsed();
    leaving.push((stopped, settled()));
    eprintln!("agent SIGTERMed: backend left the pool after {gone_total:.2?} (exit {status})");
    assert!(status.success(), "agent exit {status}\n{}", agent.log());
    assert!(
        gone_total < TTL / 2,
        "SIGTERM: left after {gone_total:?} ({gone:?} after the agent exited): not at once"
    );
    assert!(agent.log().contains("deleted"), "{}", agent.log());

    // etcd SIGKILLed for twice the TTL, then started on its data directory.
    let outage = Instant::now();
    let mark = lab.lbd_log().len();
    lab.etcd.take().unwrap().kill().unwrap();
    while outage.elapsed() < 2 * TTL {
        assert_eq!(
            lab.pool(),
            BTreeSet::from(["b1", "b4"]),
            "membership changed while etcd was down\n{}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let restart = Instant::now();
    lab.start_etcd();
    let back = wait_for(Duration::from_secs(15), || {
        lab.lbd_log()[mark..]
            .contains("etcd reachable again")
            .then_some(())
    });
    assert!(back.is_some(), "lbd did not resync\n{}", lab.lbd_log());
    eprintln!(
        "etcd down {:.2?}; lbd watching again {:.2?} after its restart",
        restart - outage,
        restart.elapsed()
    );
    // Nothing left while etcd was away or as it came back (the agents
    // re-register before their old leases expire).
    for _ in 0..20 {
        assert_eq!(
            lab.pool(),
            BTreeSet::from(["b1", "b4"]),
            "{}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = lab.lbd_log()[mark..].to_owned();
    assert_eq!(
        log.matches("unreachable").count(),
        1,
        "one outage, one warning\n{log}"
    );
    assert!(!log.contains("left ("), "{log}");
    // No new connection that started during the outage failed.
    let during = traffic.snapshot();
    let outage_failures: Vec<_> = during
        .new_failures()
        .filter(|f| f.started >= outage)
        .collect();
    assert!(outage_failures.is_empty(), "{outage_failures:?}");

    // Watching resumed: b2 registers again and joins; b4 stops and leaves.
    let t = Instant::now();
    lab.register(1, None);
    lab.wait_pool(&["b1", "b2", "b4"], Duration::from_secs(10));
    wait_new_conn(&traffic, "b2", t);
    let t = Instant::now();
    lab.agents[3].take().unwrap().stop().unwrap();
    lab.wait_pool(&["b1", "b2"], Duration::from_secs(1));
    leaving.push((t, settled()));
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();

    let report = traffic.stop();
    eprintln!("traffic: {report}");
    eprintln!(
        "long-lived per first server: {:?}",
        report.long_lived_per_server()
    );
    eprintln!("new per server: {:?}", report.new_per_server());
    // b1 stayed in the pool throughout: every connection to it kept.
    let on_b1: Vec<_> = report
        .long_lived
        .iter()
        .filter(|l| l.first_server == "b1")
        .collect();
    assert!(!on_b1.is_empty());
    for l in &on_b1 {
        assert_eq!(l.outcome, Outcome::Kept, "long-lived #{} on b1", l.id);
    }
    let others = report.long_lived.len() - on_b1.len();
    eprintln!(
        "long-lived on b1: {} of {} kept; on the backends that left: {} ({} broken, {} moved)",
        on_b1.len(),
        on_b1.len(),
        others,
        report.broken(),
        report.moved()
    );
    // New connections failed only while a backend was leaving.
    let stray: Vec<_> = report
        .new_failures()
        .filter(|f| !leaving.iter().any(|(t0, t1)| f.overlaps(*t0, *t1)))
        .collect();
    eprintln!(
        "new connections failed: {} of {} (none but while a backend left the pool)",
        report.new_failed(),
        report.new.len()
    );
    assert!(stray.is_empty(), "{stray:?}\n{report}");

    eprintln!(
        "--- b1's agent ---\n{}",
        lab.agents[0].as_ref().unwrap().log()
    );
    let log = lab.lbd_log();
    let etcd_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("etcd /lb/echo/"))
        .collect();
    eprintln!("--- lbd's etcd lines ---\n{}", etcd_lines.join("\n"));

    // A reload without backends_from stops the watch and its members go;
    // one with it again starts a watch that reads the prefix.
    lab.reload(&lab.config(false, 200));
    lab.wait_pool(&[], Duration::from_secs(2));
    assert!(lab.lbd_log().contains("watch stopped"), "{}", lab.lbd_log());
    lab.reload(&lab.config(true, 200));
    lab.wait_pool(&["b1", "b2"], Duration::from_secs(5));
}

/// Not a kernel feature but the agent's contract: `lbctl register`
/// refuses what it cannot use, with exit status 2, before contacting
/// anything.
#[test]
fn register_refuses_bad_arguments() {
    for args in [
        vec![
            "--etcd",
            "198.18.0.50:2379",
            "--prefix",
            "/p/",
            "--address",
            "198.18.0.11",
        ],
        vec![
            "--etcd",
            "https://198.18.0.50:2379",
            "--prefix",
            "/p/",
            "--address",
            "198.18.0.11",
        ],
        vec![
            "--etcd",
            "http://198.18.0.50:2379",
            "--prefix",
            "",
            "--address",
            "198.18.0.11",
        ],
    ] {
        let out = Command::new(&*LBCTL)
            .arg("register")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let help = Command::new(&*LBCTL)
        .args(["register", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("backends_from = { etcd ="), "{text}");
}
