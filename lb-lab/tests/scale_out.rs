//! Kernel test: scale-out, three active lbd nodes behind a router that
//! spreads flows over them by ECMP, with BGP through bird2 and connection
//! sync among all three; traffic flows through every failure (60
//! long-lived TCP connections each exchanging a line every 100 ms, 20 new
//! connections a second, `lb_lab::traffic`).
//!
//! ```text
//! client 198.19.0.2 --- router 198.19.0.1 | 198.18.0.1 (bird: ECMP, BFD)
//!                                           |
//!        LAN 198.18.0.0/24: lb1 .2, lb2 .3, lb3 .4 (lbd + bird, dsr, generic XDP)
//!                           b1 .11 .. b4 .14 (VIP on lo, reply through the router)
//! ```
//!
//! The bird files are the documented ones, `examples/bird/router.conf`
//! and `examples/bird/lb-node.conf`, unchanged.
//!
//! - the router learns the VIP from all three nodes and flows spread over
//!   them (each node's count of the flows it created);
//! - a backend added on every node while the connections run;
//! - lb1's lbd stopped (SIGTERM: withdrawn, then forwarding for the
//!   grace), then started again (announced after its bulk sync);
//! - lb2's lbd killed (SIGKILL) and its link cut: BFD takes it out of the
//!   route; the link and lbd come back;
//! - every long-lived connection is kept on its backend throughout; new
//!   connections fail only around the kill;
//! - the VIP is withdrawn by every node when the last backend fails, and
//!   announced again when one returns;
//! - fullnat: each node translates from its own address; when one
//!   leaves, only its translations break;
//! - lbd refuses to start in BGP mode when the speaker does not answer.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
    traffic::{EchoServer, Options, Report, Traffic},
};
use lb_user::config::{
    Announce, BackendConfig, Bgp, Config, Dataplane, Dur, Global, Health, HealthKind, Mode,
    Service, Sync, XdpMode,
};

static LBD: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbd"));

use lb_lab::scaleout::{NODES as LBS, ROUTER, VIP};
const PORT: u16 = 9000;
const BACKENDS: [(&str, &str); 4] = [
    ("b1", "198.18.0.11"),
    ("b2", "198.18.0.12"),
    ("b3", "198.18.0.13"),
    ("b4", "198.18.0.14"),
];
const SECRET: &str = "a test secret, 16+ characters";

/// One lab at a time (they time failovers on a 2-core machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/bird/{name}"))
}

struct Lab {
    lan: Lan,
    /// The client's side of the router.
    outside: Lan,
    dir: PathBuf,
    echo: Vec<Option<EchoServer>>,
    lbd: Vec<Option<Daemon>>,
}

impl Lab {
    /// The topology of the module doc, bird running on the router and on
    /// every lb node; no lbd yet.
    fn new(name: &str) -> Self {
        let mut lan = Lan::new().expect("create LAN (run as root)");
        lan.add_host("router", &format!("{ROUTER}/24"), "2001:db8::1/64")
            .unwrap();
        for (i, (lb, addr)) in LBS.iter().enumerate() {
            lan.add_host(
                lb,
                &format!("{addr}/24"),
                &format!("2001:db8::{}/64", 2 + i),
            )
            .unwrap();
        }
        for (i, (b, addr)) in BACKENDS.iter().enumerate() {
            lan.add_host(
                b,
                &format!("{addr}/24"),
                &format!("2001:db8::{}/64", 11 + i),
            )
            .unwrap();
        }
        let mut outside = Lan::new().unwrap();
        outside
            .add_host("client", "198.19.0.2/24", "2001:db8:1::2/64")
            .unwrap();
        outside
            .add_port(
                &lan.host("router").ns,
                "eth1",
                "198.19.0.1/24",
                "2001:db8:1::1/64",
            )
            .unwrap();
        outside.prepare_xdp("client").unwrap();
        let client = &outside.host("client").ns;
        client
            .ip(&["route", "add", "default", "via", "198.19.0.1"])
            .unwrap();
        let router = &lan.host("router").ns;
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.fib_multipath_hash_policy", "1"),
        ] {
            router
                .exec("sysctl", &["-qw", &format!("{k}={v}")])
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!("{}{name}", lan.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut echo = Vec::new();
        for (b, _) in BACKENDS {
            let ns = &lan.host(b).ns;
            ns.dsr_backend(VIP).unwrap();
            ns.ip(&["route", "add", "default", "via", ROUTER]).unwrap();
            echo.push(Some(EchoServer::start(ns, b, PORT).unwrap()));
        }
        let lab = Self {
            lan,
            outside,
            dir,
            echo,
            lbd: (0..LBS.len()).map(|_| None).collect(),
        };
        lab.bird("router", &example("router.conf"));
        for (lb, _) in LBS {
            lab.bird(lb, &example("lb-node.conf"));
        }
        lab
    }

    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    /// Start bird in `role`'s namespace (foreground, ended with it).
    fn bird(&self, role: &str, conf: &Path) {
        let socket = self.bird_socket(role);
        let _ = std::fs::remove_file(&socket);
        let mut cmd = self.ns(role).command("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(self.dir.join(format!("{role}.bird.pid")));
        self.ns(role).spawn(&mut cmd).unwrap();
        wait_for(Duration::from_secs(10), || socket.exists().then_some(()))
            .unwrap_or_else(|| panic!("bird did not start in {role}"));
    }

    fn bird_socket(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.bird.ctl"))
    }

    fn pin_path(&self, node: usize) -> PathBuf {
        format!("/sys/fs/bpf/{}{}", self.lan.prefix(), LBS[node].0).into()
    }

    fn socket(&self, node: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", LBS[node].0))
    }

    /// Node `node`'s file: the echo service over `backends`, announced by
    /// BGP; sync with every node (the list is the same on all of them:
    /// each skips its own address).
    fn config(&self, node: usize, backends: &[&str]) -> String {
        self.config_mode(node, backends, Mode::Dsr)
    }

    fn config_mode(&self, node: usize, backends: &[&str], mode: Mode) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        let backends = backends
            .iter()
            .map(|a| BackendConfig::new(a.parse().unwrap()))
            .collect();
        Config {
            global: Global {
                router_id: Some(LBS[node].0.into()),
                bpf_pin_path: self.pin_path(node),
                control_socket: self.socket(node),
                metrics_listen: None,
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Generic,
                conntrack_entries: 1 << 20,
                ..Dataplane::new("eth0")
            }),
            service: vec![Service {
                mode,
                announce: Announce::Bgp,
                health: Health {
                    kind: HealthKind::Tcp,
                    interval: ms(200),
                    timeout: ms(150),
                    ..Health::default()
                },
                ..Service::new(VIP.parse().unwrap(), PORT, backends)
            }],
            sync: Some(Sync::new(
                SECRET,
                LBS.iter().map(|(_, a)| a.parse().unwrap()).collect(),
            )),
            bgp: Some(Bgp::new(self.bird_socket(LBS[node].0))),
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn write_config(&self, node: usize, backends: &[&str]) {
        self.write_text(node, &self.config(node, backends));
    }

    fn write_text(&self, node: usize, text: &str) {
        let path = self.dir.join(format!("{}.toml", LBS[node].0));
        std::fs::write(&path, text).unwrap();
    }

    /// Start lbd on node `node` with its file; wait until it runs. Each
    /// start begins the node's log anew.
    fn start(&mut self, node: usize) {
        let lb = LBS[node].0;
        let mut cmd = self.ns(lb).command(&*LBD);
        cmd.arg("--config")
            .arg(self.dir.join(format!("{lb}.toml")))
            .env("LB_LOG", "info");
        let lbd = Daemon::spawn(lb, &mut cmd, self.dir.join(format!("{lb}.log"))).unwrap();
        let ready = lbd.wait_log("running; SIGINT", Duration::from_secs(20));
        if let Err(e) = ready {
            panic!("{lb} not running: {e}\n{}", self.logs());
        }
        self.lbd[node] = Some(lbd);
    }

    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", LBS[node].0))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (n, (lb, _)) in LBS.iter().enumerate() {
            out.push_str(&format!("--- {lb} ---\n{}", self.log(n)));
        }
        out
    }

    fn lbctl_data(&self, node: usize, args: &[&str]) -> serde_json::Value {
        lb_lab::lbctl_data(self.ns(LBS[node].0), &self.socket(node), args)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    fn status(&self, node: usize) -> serde_json::Value {
        self.lbctl_data(node, &["status"])
    }

    /// The next hops of the router's route to the VIP.
    fn next_hops(&self) -> Vec<String> {
        let out = self.ns("router").ip(&["route", "show", VIP]).unwrap();
        lb_lab::scaleout::next_hops(&String::from_utf8_lossy(&out.stdout))
    }

    /// Wait until the router's route to the VIP goes through exactly the
    /// nodes `nodes`; when it did.
    fn wait_next_hops(&self, nodes: &[usize], timeout: Duration) -> Instant {
        let mut want: Vec<String> = nodes.iter().map(|&n| LBS[n].1.to_owned()).collect();
        want.sort();
        wait_for(timeout, || (self.next_hops() == want).then(Instant::now)).unwrap_or_else(|| {
            panic!(
                "the router's next hops for {VIP}: {:?}, want {want:?}\n{}",
                self.next_hops(),
                self.logs()
            )
        })
    }

    fn traffic(&self) -> Traffic {
        let target: SocketAddr = format!("{VIP}:{PORT}").parse().unwrap();
        let opts = Options {
            long_lived: 60,
            ..Options::default()
        };
        Traffic::start(&self.outside.host("client").ns, target, opts)
            .unwrap_or_else(|e| panic!("traffic did not start: {e}\n{}", self.logs()))
    }

    /// The new flows each node made (its sync's count of flows sent).
    fn flows_made(&self, nodes: &[usize]) -> Vec<u64> {
        nodes
            .iter()
            .map(|&n| self.status(n)["sync"]["flows_sent"].as_u64().unwrap_or(0))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for lbd in &mut self.lbd {
            drop(lbd.take());
        }
        for node in 0..LBS.len() {
            let _ = lb_user::dataplane::loader::detach_pinned(&self.pin_path(node));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Node `node`'s status once it reports its BGP session up (within 5 s;
/// else as it is): lbd asks bird every 2 s, so the router may have the
/// route before lbd has seen the session up.
fn status_once_session_up(lab: &Lab, node: usize) -> serde_json::Value {
    wait_for(Duration::from_secs(5), || {
        let status = lab.status(node);
        (status["bgp"]["sessions"][0]["state"] == "up").then_some(status)
    })
    .unwrap_or_else(|| lab.status(node))
}

fn assert_all_kept(report: &Report, logs: &str) {
    assert_eq!(
        (report.kept(), report.moved(), report.broken()),
        (report.long_lived.len(), 0, 0),
        "every long-lived connection kept on its backend: {report}\n{logs}"
    );
}

/// Three nodes: spread, a backend added, a stop and return, a kill and
/// return; traffic throughout.
#[test]
fn three_nodes_share_the_vip_and_keep_every_connection_through_stop_and_kill() {
    let _serial = serial();
    let mut lab = Lab::new("ecmp");
    let three: Vec<&str> = BACKENDS[..3].iter().map(|(_, a)| *a).collect();
    let four: Vec<&str> = BACKENDS.iter().map(|(_, a)| *a).collect();
    for node in 0..3 {
        lab.write_config(node, &three);
        lab.start(node);
    }
    lab.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    let status = status_once_session_up(&lab, 0);
    assert_eq!(status["bgp"]["announced"][0], VIP, "{status}");
    assert_eq!(status["bgp"]["sessions"][0]["name"], "uplink", "{status}");
    assert_eq!(status["bgp"]["sessions"][0]["state"], "up", "{status}");

    let traffic = lab.traffic();
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();
    let made = lab.flows_made(&[0, 1, 2]);
    println!("flows made per node (lb1, lb2, lb3): {made:?}");
    assert!(
        made.iter().all(|&n| n >= 5),
        "ECMP spreads the flows over every node: {made:?}"
    );

    // A backend joins on every node while the connections run.
    for node in 0..3 {
        lab.write_config(node, &four);
        lab.lbd[node]
            .as_ref()
            .unwrap()
            .signal(libc::SIGHUP)
            .unwrap();
    }
    traffic.wait_lines(20, Duration::from_secs(10)).unwrap();

    // lb1 stops: withdrawn, then forwarding for the grace.
    let stopped = Instant::now();
    let mut lb1 = lab.lbd[0].take().unwrap();
    lb1.signal(libc::SIGTERM).unwrap();
    let gone = lab.wait_next_hops(&[1, 2], Duration::from_secs(5));
    println!(
        "lb1 stopped: out of the route after {} ms",
        gone.duration_since(stopped).as_millis()
    );
    let status = lb1.stop().unwrap();
    println!(
        "lb1 exited ({status}) {} ms after SIGTERM",
        stopped.elapsed().as_millis()
    );
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();
    let log = lab.log(0);
    assert!(
        log.contains("BGP: withdrawing 198.18.100.1: lbd is stopping"),
        "{log}"
    );
    assert!(
        status.success() && log.contains("INFO stopped"),
        "lb1 stopped cleanly: {status}\n{log}"
    );

    // lb1 returns: announced only after its bulk sync.
    lab.start(0);
    let back = lab.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    let log = lab.log(0);
    let bulk = log
        .rfind("bulk sync complete")
        .unwrap_or_else(|| panic!("{log}"));
    let announced = log
        .rfind("BGP: announcing")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(bulk < announced, "announced after the bulk sync\n{log}");
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();

    // lb2 dies: lbd SIGKILLed, its link cut.
    let killed = Instant::now();
    lab.lbd[1].take().unwrap().kill().unwrap();
    lab.ns("lb2").ip(&["link", "set", "eth0", "down"]).unwrap();
    let gone = lab.wait_next_hops(&[0, 2], Duration::from_secs(10));
    println!(
        "lb2 killed and cut off: out of the route after {} ms (BFD)",
        gone.duration_since(killed).as_millis()
    );
    traffic
        .wait_lines(10, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("traffic stalled after the kill: {e}\n{}", lab.logs()));
    let after_kill = traffic.snapshot();
    println!("after the kill: {after_kill}");
    assert_all_kept(&after_kill, &lab.logs());

    // lb2 returns: link up, lbd adopts its pinned data plane.
    lab.ns("lb2").ip(&["link", "set", "eth0", "up"]).unwrap();
    lab.start(1);
    lab.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    traffic.wait_lines(20, Duration::from_secs(15)).unwrap();
    let made = lab.flows_made(&[0, 1, 2]);
    let report = traffic.stop();
    println!(
        "three nodes, lb1 stopped and back ({} ms), lb2 killed and back: {report}; flows made since the restarts {made:?}",
        back.duration_since(stopped).as_millis()
    );
    assert_all_kept(&report, &lab.logs());
    let window = killed..gone + Duration::from_secs(2);
    assert!(
        report.failures_outside(window).is_empty(),
        "new connections fail only while the router still sends to the dead node: {report}"
    );
    assert!(
        report.new_per_server().len() == 4,
        "new connections reach all four backends: {report}"
    );
}

/// Every node withdraws the VIP when the last backend fails and
/// announces it again when one is back.
#[test]
fn the_vip_is_withdrawn_with_the_last_backend() {
    let _serial = serial();
    let mut lab = Lab::new("last");
    let one = [BACKENDS[0].1];
    for node in 0..3 {
        lab.write_config(node, &one);
        lab.start(node);
    }
    lab.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    let down = Instant::now();
    if let Some(mut echo) = lab.echo[0].take() {
        echo.stop();
    }
    let gone = lab.wait_next_hops(&[], Duration::from_secs(10));
    println!(
        "last backend down: withdrawn by all nodes after {} ms",
        gone.duration_since(down).as_millis()
    );
    let log = lab.log(2);
    assert!(
        log.contains("BGP: withdrawing 198.18.100.1: no service on it has a backend up"),
        "{log}"
    );
    lab.echo[0] = Some(EchoServer::start(lab.ns("b1"), "b1", PORT).unwrap());
    lab.wait_next_hops(&[0, 1, 2], Duration::from_secs(10));
}

/// fullnat through three nodes: each translates from its own address, so
/// every connection's replies come back through the node that translated
/// it. When a node leaves, only the connections it translated can break
/// (their replies go to its address); the others are kept, also those the
/// router moved between the remaining nodes.
#[test]
fn fullnat_nodes_translate_from_their_own_addresses() {
    let _serial = serial();
    let mut lab = Lab::new("fnat");
    let three: Vec<&str> = BACKENDS[..3].iter().map(|(_, a)| *a).collect();
    for node in 0..3 {
        lab.write_text(node, &lab.config_mode(node, &three, Mode::Fullnat));
        lab.start(node);
    }
    lab.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    let traffic = lab.traffic();
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();
    // Each node's own NAT flows: translated from its own address.
    let service = format!("{VIP}:{PORT}");
    let mut established_by = Vec::new();
    for (node, (lb, addr)) in LBS.iter().enumerate() {
        let reply = lab.lbctl_data(node, &["flows", &service, "--limit", "0"]);
        let flows = reply["flows"].as_array().cloned().unwrap_or_default();
        let mine = |f: &&serde_json::Value| {
            f["snat"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{addr}:")))
        };
        let sources: std::collections::BTreeSet<String> = flows
            .iter()
            .filter_map(|f| f["snat"].as_str().and_then(|s| s.split(':').next()))
            .map(str::to_owned)
            .collect();
        assert!(
            sources.iter().all(|s| LBS.iter().any(|(_, a)| a == s)),
            "{lb}: fullnat sources are node addresses: {sources:?}"
        );
        let established = flows
            .iter()
            .filter(mine)
            .filter(|f| f["state"] == "ESTABLISHED")
            .count();
        established_by.push(established);
    }
    println!("long-lived connections each node translated: {established_by:?}");
    assert!(
        established_by.iter().all(|&n| n > 0),
        "every node translates, from its own address: {established_by:?}"
    );
    let steady = traffic.snapshot();
    assert_all_kept(&steady, &lab.logs());

    // lb3 leaves: its translations end with it.
    let status = lab.lbd[2].take().unwrap().stop().unwrap();
    assert!(status.success(), "lb3 stopped cleanly: {status}");
    lab.wait_next_hops(&[0, 1], Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(4));
    let report = traffic.stop();
    println!("fullnat, lb3 stopped: {report}");
    assert!(
        report.broken() <= established_by[2],
        "only lb3's translations may break ({} of them): {report}\n{}",
        established_by[2],
        lab.logs()
    );
    assert_eq!(report.moved(), 0, "{report}");
}

/// A speaker that does not answer refuses the start, with the way out.
#[test]
fn lbd_refuses_bgp_mode_without_its_speaker() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("lb-bgp-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = Config {
        bgp: Some(Bgp::new(dir.join("no-bird.ctl"))),
        dataplane: Some(Dataplane::new("lo")),
        service: vec![Service {
            announce: Announce::Bgp,
            ..Service::new(VIP.parse().unwrap(), PORT, Vec::new())
        }],
        ..Config::default()
    };
    config.global.control_socket = dir.join("lbd.sock");
    config.global.bpf_pin_path = dir.join("pins");
    let path = dir.join("lb.toml");
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    let out = Command::new(&*LBD)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("[bgp]: the BGP speaker cannot be reached")
            && stderr.contains("no-bird.ctl")
            && stderr.contains("examples/bird/lb-node.conf"),
        "{stderr}"
    );
}
