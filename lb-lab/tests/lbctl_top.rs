//! Kernel test: `lbctl top` and `lbctl stats --rate` against a real lbd
//! forwarding real traffic. A client namespace, an LB namespace running
//! lbd (data plane in `dsr`, VRRP instance `VI_1` holding the VIP, HTTP
//! health checks, sync with a peer that never answers), two nginx
//! backends; HTTP requests on fresh connections through the VIP.
//!
//! `lbctl top` runs in tmux (its own server, `tmux -L`), and the test
//! reads the screen as a person would (`capture-pane`):
//! - the service's row shows packets/s and new flows/s while requests
//!   run, the numbers move, and more requests show as higher rates; the
//!   backends' rows say `up`, the VRRP row `MASTER`, the sync line is
//!   there;
//! - with the requests stopped the rates fall to 0;
//! - `lbctl drain` shows in the DRAINED column (the backend stays IN
//!   POOL for its established flows), and its FLOWS/S stays 0 while the
//!   other backend's does not;
//! - lbd stopped: `lbd unreachable: ...` and top keeps running; lbd
//!   started again: top shows it again, without being restarted;
//! - a smaller window redraws to fit;
//! - `q` quits with status 0 and the session ends; so do Ctrl-C, Esc and
//!   SIGTERM, and the terminal is as it was (line settings, main screen).
//!
//! `lbctl stats --rate` (table and `--json`) under a stream of requests:
//! its new flows per second agree with the requests the client counted.
//!
//! Namespaces are of the family `lbtop` (`lbtop<pid>x<n>-...`), addresses
//! from 198.18.0.0/24 and 2001:db8::/64. Needs root and tmux; `cargo
//! xtask test` refuses to run without root.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
};
use lb_user::config::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, Protocol, Service,
    Sync, VrrpInstance, XdpMode,
};

static LBD: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbd"));
static LBCTL: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbctl"));
/// This file's namespace family (`lbtop<pid>x<n>-client`, ...).
const FAMILY: &str = "lbtop";
const VIP: &str = "198.18.0.100";
const SERVICE: &str = "198.18.0.100:80/tcp";
const BACKENDS: [(&str, &str); 2] = [("b1", "198.18.0.11"), ("b2", "198.18.0.12")];
/// One test at a time: the rates each one checks are its own traffic's,
/// on a machine of 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Lab {
    lan: Lan,
    dir: PathBuf,
    nginx: Vec<Daemon>,
    lbd: Option<Daemon>,
}

impl Lab {
    /// The LAN, nginx on each backend, lbd started and its service active.
    fn up() -> Self {
        let mut lan = Lan::with_family(FAMILY).expect("create LAN (run as root)");
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
            .unwrap();
        for (i, (name, addr)) in BACKENDS.iter().enumerate() {
            lan.add_host(
                name,
                &format!("{addr}/24"),
                &format!("2001:db8::{}/64", 11 + i),
            )
            .unwrap();
        }
        lan.prepare_xdp("client").unwrap();
        let dir = std::env::temp_dir().join(format!("{}top", lan.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nginx = Vec::new();
        for (name, _) in BACKENDS {
            let ns = &lan.host(name).ns;
            ns.dsr_backend(VIP).unwrap();
            let site = dir.join(name);
            lb_lab::netns::nginx_site(&site, name).unwrap();
            let mut cmd = ns.command("nginx");
            cmd.arg("-c").arg(site.join("nginx.conf"));
            nginx.push(
                Daemon::spawn("nginx", &mut cmd, site.join("nginx.log"))
                    .expect("start nginx (apt-get install nginx)"),
            );
        }
        let mut lab = Self {
            lan,
            dir,
            nginx,
            lbd: None,
        };
        std::fs::write(lab.dir.join("lb.toml"), lab.config()).unwrap();
        lab.start_lbd();
        lab
    }

    /// lbd's file: the data plane, `VI_1` holding the VIP, the HTTP
    /// service over both backends, sync with 198.18.0.3 (nobody: the sync
    /// line shows a peer never heard).
    fn config(&self) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        Config {
            global: Global {
                router_id: Some("lb-top".into()),
                bpf_pin_path: format!("/sys/fs/bpf/{}lb", self.lan.prefix()).into(),
                control_socket: self.socket(),
                metrics_listen: None,
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Generic,
                conntrack_entries: 65536,
                ..Dataplane::new("eth0")
            }),
            vrrp_instance: vec![VrrpInstance {
                priority: 150,
                advert_interval: ms(100),
                ..VrrpInstance::new("VI_1", "eth0", 51, vec![format!("{VIP}/24")])
            }],
            sync: Some(Sync::new(
                "a test secret, 16+ characters",
                vec!["198.18.0.3".parse().unwrap()],
            )),
            service: vec![Service {
                protocol: Protocol::Tcp,
                mode: Mode::Dsr,
                health: Health {
                    kind: HealthKind::Http,
                    path: "/".into(),
                    expect_status: lb_user::config::Statuses::one(200),
                    interval: ms(200),
                    timeout: ms(150),
                    rise: 2,
                    fall: 2,
                    ..Health::default()
                },
                ..Service::new(
                    VIP.parse().unwrap(),
                    80,
                    BACKENDS
                        .iter()
                        .map(|(_, a)| BackendConfig::new(a.parse().unwrap()))
                        .collect(),
                )
            }],
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/lbd.sock")
    }

    fn start_lbd(&mut self) {
        let mut cmd = self.ns("lb").command(&*LBD);
        cmd.arg("--config").arg(self.dir.join("lb.toml"));
        let lbd = Daemon::spawn("lbd", &mut cmd, self.dir.join("lbd.log")).unwrap();
        if let Err(e) = lbd.wait_log("service active", Duration::from_secs(15)) {
            panic!("lbd did not activate the service: {e}");
        }
        self.lbd = Some(lbd);
    }

    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    fn log(&self) -> String {
        self.lbd.as_ref().map(Daemon::log).unwrap_or_default()
    }

    fn lbctl(&self, args: &[&str]) -> Output {
        lb_lab::lbctl(self.ns("lb"), &self.socket(), args)
    }

    fn lbctl_ok(&self, args: &[&str]) -> String {
        let out = self.lbctl(args);
        assert!(
            out.status.success(),
            "lbctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.lbd = None;
        self.nginx.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HTTP requests on fresh connections to the VIP from the client
/// namespace, on a thread, until dropped (or 2 minutes, whichever comes
/// first): `pause` between requests, changeable while it runs.
struct Requests {
    stop: Arc<AtomicBool>,
    pause_ms: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Requests {
    fn start(client: &Netns, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pause_ms = Arc::new(AtomicU64::new(pause.as_millis() as u64));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let ns = Netns::existing(client.name()).unwrap();
        let (s, p, d, f) = (
            Arc::clone(&stop),
            Arc::clone(&pause_ms),
            Arc::clone(&done),
            Arc::clone(&failed),
        );
        let thread = std::thread::spawn(move || {
            ns.run(|| {
                let deadline = Instant::now() + Duration::from_mins(2);
                while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match get() {
                        Ok(()) => d.fetch_add(1, Ordering::Relaxed),
                        Err(_) => f.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(p.load(Ordering::Relaxed)));
                }
            })
            .unwrap();
        });
        Self {
            stop,
            pause_ms,
            done,
            failed,
            thread: Some(thread),
        }
    }

    fn set_pause(&self, pause: Duration) {
        self.pause_ms
            .store(pause.as_millis() as u64, Ordering::Relaxed);
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP request through the VIP on a fresh connection.
fn get() -> Result<(), String> {
    let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("answer: {answer:?}"))
    }
}

/// A tmux server of our own (`tmux -L NAME`) running one command in a
/// 160×50 window; killed on drop, its socket file removed.
struct Tmux {
    server: String,
    socket: Option<PathBuf>,
}

impl Tmux {
    fn start(command: &str) -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let mut me = Self {
            server: format!(
                "{FAMILY}{}x{}",
                std::process::id(),
                RUN.fetch_add(1, Ordering::Relaxed)
            ),
            socket: None,
        };
        let out = me.tmux(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "50",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session (apt-get install tmux): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = me.tmux(&["display-message", "-p", "#{socket_path}"]);
        me.socket = Some(String::from_utf8_lossy(&out.stdout).trim().into());
        me
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux runs (apt-get install tmux)")
    }

    /// The screen as text.
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let out = self.tmux(&["send-keys", "-t", "top", keys]);
        assert!(out.status.success(), "tmux send-keys {keys}");
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session", "-t", "top"]).status.success()
    }

    /// Wait until `probe` finds what it wants on the screen.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let mut last = String::new();
        wait_for(timeout, || {
            last = self.screen();
            probe(&last)
        })
        .unwrap_or_else(|| panic!("no {what} on lbctl top's screen within {timeout:?}:\n{last}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        // The server leaves its socket file behind.
        if let Some(socket) = self.socket.as_ref().filter(|s| s.is_absolute()) {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// The cells of the screen's line that contains `needle` (split at
/// blanks and table borders), if there is one.
fn row<'a>(screen: &'a str, needle: &str) -> Option<Vec<&'a str>> {
    screen.lines().find(|l| l.contains(needle)).map(|l| {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .collect()
    })
}

/// A rate as top prints it (`950`, `1.2k`, `3.4M`): its value; `None` for
/// `-` (no rate).
fn value(cell: &str) -> Option<f64> {
    if cell == "-" {
        return None;
    }
    let (digits, scale) = match cell.chars().last() {
        Some('k') => (&cell[..cell.len() - 1], 1e3),
        Some('M') => (&cell[..cell.len() - 1], 1e6),
        Some('G') => (&cell[..cell.len() - 1], 1e9),
        Some('T') => (&cell[..cell.len() - 1], 1e12),
        _ => (cell, 1.0),
    };
    Some(
        digits
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{cell:?} is not a rate: {e}"))
            * scale,
    )
}

/// The service row's packets/s and new flows/s, once both are numbers.
fn service_rates(screen: &str) -> Option<(f64, f64)> {
    // SERVICE MODE HEALTH DRAINED IN-POOL WEIGHT PKTS/S BYTES/S FLOWS/S
    let cells = row(screen, SERVICE)?;
    Some((value(cells.get(6)?)?, value(cells.get(8)?)?))
}

/// A backend row's cells: ADDRESS:PORT HEALTH DRAINED IN-POOL WEIGHT
/// PKTS/S BYTES/S FLOWS/S (its MODE cell is empty).
fn backend_row<'a>(screen: &'a str, address: &str) -> Option<Vec<&'a str>> {
    row(screen, &format!("{address}:80")).filter(|c| c.len() == 8)
}

/// `lbctl top` with the service's row filled, the traffic's rates
/// followed over a slow and a fast phase.
fn top_follows_traffic(lab: &Lab, top: &Tmux) {
    // Before any traffic: the rows, health, VRRP, sync.
    let screen = top.wait(
        "service, backends up and VI_1 MASTER",
        Duration::from_secs(15),
        |s| {
            let up = BACKENDS
                .iter()
                .all(|(_, a)| backend_row(s, a).is_some_and(|c| c[1] == "up"));
            let master =
                row(s, "VI_1").is_some_and(|c| c.contains(&"MASTER") && c.contains(&"150/150"));
            (up && master && row(s, SERVICE).is_some()).then(|| s.to_owned())
        },
    );
    assert!(
        screen.contains("lbctl top — lbd lb-top (pid "),
        "the title names lbd:\n{screen}"
    );
    assert!(
        screen.contains("sync: ") && screen.contains("198.18.0.3"),
        "the sync line with its peer:\n{screen}"
    );
    let cells = row(&screen, SERVICE).unwrap();
    assert_eq!(&cells[1..6], ["dsr", "active", "-", "2/2", "-"], "{screen}");

    let mut requests = Requests::start(lab.ns("client"), Duration::from_millis(60));
    let follow = |phase: &str| {
        // The first interval may straddle the change: let it pass.
        std::thread::sleep(Duration::from_millis(1500));
        let mut seen = Vec::new();
        let mut backends_busy = [false; BACKENDS.len()];
        for _ in 0..5 {
            let screen = top.screen();
            let (pps, fps) = service_rates(&screen)
                .unwrap_or_else(|| panic!("{phase}: no rates on the service's row:\n{screen}"));
            assert!(
                pps > 0.0 && fps > 0.0,
                "{phase}: requests run but the service shows {pps} packets/s, {fps} new flows/s:\n{screen}"
            );
            for (busy, (_, addr)) in backends_busy.iter_mut().zip(BACKENDS) {
                let cells = backend_row(&screen, addr).expect("backend row");
                *busy |= value(cells[5]).is_some_and(|v| v > 0.0);
            }
            seen.push((pps, fps, row(&screen, SERVICE).unwrap()[6].to_owned()));
            std::thread::sleep(Duration::from_millis(1100));
        }
        assert!(
            backends_busy.iter().all(|b| *b),
            "{phase}: each backend's row shows traffic at some point: {backends_busy:?}"
        );
        seen
    };
    let slow = follow("slow requests");
    requests.set_pause(Duration::from_millis(2));
    let fast = follow("requests 2 ms apart");
    let shown: std::collections::BTreeSet<&str> = slow
        .iter()
        .chain(&fast)
        .map(|(_, _, s)| s.as_str())
        .collect();
    assert!(
        shown.len() > 1,
        "the packets/s shown never changed: {slow:?} {fast:?}"
    );
    let max_fps = |v: &[(f64, f64, String)]| v.iter().map(|r| r.1).fold(0.0, f64::max);
    assert!(
        max_fps(&fast) > max_fps(&slow),
        "requests 2 ms apart show more new flows/s than 60 ms apart: slow {slow:?}, fast {fast:?}"
    );
    requests.stop();
    eprintln!(
        "lbctl_top: {} requests; new flows/s shown: slow {:?}, fast {:?}",
        requests.done(),
        slow.iter().map(|r| r.1).collect::<Vec<_>>(),
        fast.iter().map(|r| r.1).collect::<Vec<_>>()
    );
    top.wait("rates fallen to 0", Duration::from_secs(5), |s| {
        (service_rates(s)? == (0.0, 0.0)).then_some(())
    });
}

#[test]
fn lbctl_top_shows_rates_health_drain_vrrp_and_outlives_lbd() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut lab = Lab::up();
    let status = lab.dir.join("top.status");
    let top = Tmux::start(&format!(
        "'{}' --socket '{}' top; echo $? > '{}'",
        LBCTL.display(),
        lab.socket().display(),
        status.display()
    ));
    top_follows_traffic(&lab, &top);

    // Drain: DRAINED yes (still in the pool, for its established flows);
    // new flows go to b2 only.
    let (b1, b2) = (BACKENDS[0].1, BACKENDS[1].1);
    lab.lbctl_ok(&["drain", "198.18.0.100:80", b1]);
    let screen = top.wait("b1 drained", Duration::from_secs(5), |s| {
        let c = backend_row(s, b1)?;
        (c[1..4] == ["up", "yes", "yes"]).then(|| s.to_owned())
    });
    assert_eq!(backend_row(&screen, b2).unwrap()[1..4], ["up", "no", "yes"]);
    let requests = Requests::start(lab.ns("client"), Duration::from_millis(20));
    // FLOWS/S of b1 and b2, twice in a row: b1 none, b2 some.
    let mut in_a_row = 0;
    top.wait("new flows to b2 only", Duration::from_secs(10), |s| {
        let flows = |a| backend_row(s, a).and_then(|c| value(c[7]));
        let only_b2 = flows(b1) == Some(0.0) && flows(b2).is_some_and(|f| f > 0.0);
        in_a_row = if only_b2 { in_a_row + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(400));
        (in_a_row >= 3).then_some(())
    });
    drop(requests);

    // lbd stops: top says so and stays; lbd back: top follows it again.
    let status_code = lab.lbd.as_mut().unwrap().stop().unwrap();
    assert!(status_code.success(), "lbd stops cleanly: {}", lab.log());
    let screen = top.wait("lbd unreachable", Duration::from_secs(5), |s| {
        s.contains("lbd unreachable: cannot reach lbd at")
            .then(|| s.to_owned())
    });
    assert!(top.running(), "top keeps running without lbd");
    assert!(
        row(&screen, SERVICE).is_some_and(|c| c[6..] == ["-", "-", "-"]),
        "the last rows stay, without rates:\n{screen}"
    );
    lab.start_lbd();
    top.wait("lbd back", Duration::from_secs(15), |s| {
        let back = !s.contains("unreachable")
            && row(s, "VI_1").is_some_and(|c| c.contains(&"MASTER"))
            && backend_row(s, b1).is_some_and(|c| c[1] == "up");
        back.then_some(())
    });

    // A smaller window: redrawn to fit (the table's right border at the
    // new width).
    let out = top.tmux(&["resize-window", "-t", "top", "-x", "100", "-y", "24"]);
    assert!(out.status.success(), "tmux resize-window");
    let screen = top.wait("a redraw at 100 columns", Duration::from_secs(5), |s| {
        s.lines()
            .any(|l| l.starts_with('┌') && l.trim_end().chars().count() == 100)
            .then(|| s.to_owned())
    });
    assert!(row(&screen, SERVICE).is_some(), "{screen}");

    top.keys("q");
    let code = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&status)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .unwrap_or_else(|| panic!("lbctl top did not quit on q:\n{}", top.screen()));
    assert_eq!(code.trim(), "0", "lbctl top's exit status");
    assert!(
        wait_for(Duration::from_secs(5), || (!top.running()).then_some(())).is_some(),
        "the tmux session ends with lbctl top"
    );
}

/// `lbctl stats --rate`'s rates agree with the requests the client made.
#[test]
fn lbctl_stats_rate_counts_the_traffic_sent() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lab = Lab::up();
    let requests = Requests::start(lab.ns("client"), Duration::from_millis(5));
    assert!(
        wait_for(Duration::from_secs(10), || (requests.done() > 20)
            .then_some(()))
        .is_some(),
        "requests through the VIP: {} done, {} failed\n{}",
        requests.done(),
        requests.failed.load(Ordering::Relaxed),
        lab.log()
    );

    // JSON: exact rates, against the requests counted meanwhile.
    let (before, started) = (requests.done(), Instant::now());
    let out = lab.lbctl_ok(&["--json", "stats", "--rate", "--interval", "2s"]);
    let (after, took) = (requests.done(), started.elapsed());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    let data = &v["data"];
    let interval = data["interval_s"].as_f64().unwrap();
    assert!((1.9..3.0).contains(&interval), "interval_s {interval}");
    let service = &data["services"][0];
    assert_eq!(service["service"], SERVICE, "{out}");
    let rate = |r: &serde_json::Value, k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {out}"))
    };
    let total = &service["total"];
    let (pps, bps, fps) = (
        rate(total, "packets_per_s"),
        rate(total, "bytes_per_s"),
        rate(total, "new_flows_per_s"),
    );
    let sent = (after - before) as f64 / took.as_secs_f64();
    eprintln!(
        "lbctl_stats_rate: client made {sent:.1} requests/s; lbctl says {fps:.1} new flows/s, {pps:.1} packets/s, {bps:.0} bytes/s"
    );
    assert!(
        fps > sent / 2.0 && fps < sent * 2.0,
        "new flows/s {fps:.1} within a factor of 2 of the {sent:.1} requests/s made\n{out}"
    );
    // Client to VIP per request: SYN, ACK, the request, ACKs, FIN, ACK.
    assert!(
        pps >= 3.0 * fps,
        "packets/s {pps:.1} vs new flows/s {fps:.1}"
    );
    // Every frame has at least Ethernet, IPv4 and TCP headers (54 bytes).
    assert!(bps >= 54.0 * pps, "bytes/s {bps:.0} vs packets/s {pps:.1}");
    let backends = service["backends"].as_object().unwrap();
    assert_eq!(backends.len(), BACKENDS.len(), "{out}");
    let sum: f64 = backends.values().map(|r| rate(r, "new_flows_per_s")).sum();
    assert!(
        sum > fps * 0.8 && sum < fps * 1.2,
        "the backends' new flows/s add up to the service's: {sum:.1} vs {fps:.1}\n{out}"
    );

    // The table: the service's (all) row and each backend's, with rates.
    let table = lab.lbctl_ok(&["stats", "--rate", "--interval", "1s"]);
    let cells = row(&table, SERVICE).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(cells[1], "(all)", "{table}");
    for cell in &cells[2..5] {
        assert!(
            value(cell).is_some_and(|v| v > 0.0),
            "a positive rate in every column:\n{table}"
        );
    }
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(
        table.contains("PKTS/S") && table.contains("BYTES/S") && table.contains("FLOWS/S"),
        "{table}"
    );
    for (_, addr) in BACKENDS {
        let cells = row(&table, addr).unwrap_or_else(|| panic!("no {addr} in\n{table}"));
        assert!(value(cells[1]).is_some_and(|v| v > 0.0), "{table}");
    }
    assert!(table.contains("per second over the last 1."), "{table}");

    // --interval without --rate is refused (exit 2), as is 0.
    for args in [
        &["stats", "--interval", "1s"][..],
        &["stats", "--rate", "--interval", "0s"][..],
    ] {
        let out = lab.lbctl(args);
        assert_eq!(out.status.code(), Some(2), "lbctl {args:?}");
    }
    drop(requests);
}

/// Without any lbd: top waits, saying so; Ctrl-C, Esc and SIGTERM quit
/// with status 0, and the terminal is left as it was found (the same
/// `stty` settings: out of raw mode; back on the main screen).
#[test]
fn lbctl_top_without_lbd_waits_then_quits_on_ctrl_c_esc_or_sigterm_restoring_the_terminal() {
    let dir = std::env::temp_dir().join(format!("{FAMILY}{}-keys", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for how in ["C-c", "Escape", "SIGTERM"] {
        let file = |name: &str| dir.join(format!("{how}.{name}"));
        let top = Tmux::start(&format!(
            "stty -g > '{before}'; \
             sh -c 'echo $$ > \"$0\"; exec \"$1\" --socket \"$2\" top --interval 200ms' \
             '{pid}' '{lbctl}' '{socket}'; \
             echo $? > '{status}'; stty -g > '{after}'; sleep 60",
            before = file("before").display(),
            pid = file("pid").display(),
            lbctl = LBCTL.display(),
            socket = dir.join("nobody.sock").display(),
            status = file("status").display(),
            after = file("after").display(),
        ));
        top.wait("lbd unreachable", Duration::from_secs(5), |s| {
            s.contains("lbd unreachable: cannot reach lbd at")
                .then_some(())
        });
        let alternate = || {
            let out = top.tmux(&["display-message", "-p", "-t", "top", "#{alternate_on}"]);
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(alternate(), "1", "top draws on the alternate screen");
        if how == "SIGTERM" {
            let pid: i32 = std::fs::read_to_string(file("pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            lb_lab::daemon::signal_pid(pid, libc::SIGTERM).unwrap();
        } else {
            top.keys(how);
        }
        let after = wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(file("after"))
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| panic!("lbctl top did not quit on {how}:\n{}", top.screen()));
        let status = std::fs::read_to_string(file("status")).unwrap();
        assert_eq!(status.trim(), "0", "exit status after {how}");
        let before = std::fs::read_to_string(file("before")).unwrap();
        assert_eq!(after, before, "terminal settings restored after {how}");
        assert_eq!(alternate(), "0", "back on the main screen after {how}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
