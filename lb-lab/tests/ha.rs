//! Kernel test: high availability with traffic flowing through every
//! failure (40 long-lived TCP connections each exchanging a line every
//! 100 ms, 20 new connections a second, `lb_lab::traffic`), on a LAN of
//! network namespaces: a client, one or two lbd nodes (dsr, generic XDP),
//! four backends running echo servers that answer with their name.
//!
//! - a single node SIGKILLed and restarted 3 s later: every connection
//!   kept, no new connection failed, the connection table holds the same
//!   flows before and after; then a restart through the documented path
//!   (SIGUSR2, as `systemctl restart`): no failure;
//! - a pinned data plane with another layout stamp is refused with the
//!   fix, and left forwarding; `lbd detach` removes it;
//! - a VRRP pair with connection sync: the pool changed on both nodes (a
//!   backend added, then one drained), the master SIGKILLed: every
//!   connection kept on its original backend, new connections fail only
//!   within the failover window; the old master returns and preempts only
//!   after its bulk sync: nothing broken either;
//! - sync under load: new UDP flows at a high rate for 10 s; the backup's
//!   table holds every flow the master made;
//! - client affinity (`persistence_timeout`) in a pair: one client's
//!   connections reach one backend, other clients spread, and every
//!   client keeps its backend through the master's SIGKILL.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use lb_common::flow::{FLOW_WAYS, FlowKey, FlowSet};
use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
    testpkt::{FrameSpec, L4},
    traffic::{EchoServer, Options, Report, Traffic},
};
use lb_user::config::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, Protocol, Service,
    Sync, VrrpInstance, XdpMode,
};

static LBD: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbd"));

const VIP: &str = "198.18.0.100";
const PORT: u16 = 9000;
/// Backends: name, address. The fourth joins the pool during a test.
const BACKENDS: [(&str, &str); 4] = [
    ("b1", "198.18.0.11"),
    ("b2", "198.18.0.12"),
    ("b3", "198.18.0.13"),
    ("b4", "198.18.0.14"),
];
const LBS: [(&str, &str); 2] = [("lb1", "198.18.0.2"), ("lb2", "198.18.0.3")];
const SECRET: &str = "a test secret, 16+ characters";

/// One lab at a time: these tests time failovers (100 ms adverts) and
/// drive traffic, and a neighbour's 20,000 flows/s would starve them on a
/// 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Lab {
    lan: Lan,
    dir: PathBuf,
    _echo: Vec<EchoServer>,
    lbd: Vec<Option<Daemon>>,
    /// lbd nodes in this lab (1 or 2).
    nodes: usize,
    /// The service keeps client templates (`persistence_timeout`).
    persistent: bool,
}

impl Lab {
    /// A client, `nodes` lbd hosts and the four backends (dsr: the VIP on
    /// their `lo`), each running an echo server on [`PORT`].
    fn new(nodes: usize, name: &str) -> Self {
        let mut lan = Lan::new().expect("create LAN (run as root)");
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        for (i, (lb, addr)) in LBS.iter().take(nodes).enumerate() {
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
        lan.prepare_xdp("client").unwrap();
        let mut echo = Vec::new();
        for (b, _) in BACKENDS {
            let ns = &lan.host(b).ns;
            ns.dsr_backend(VIP).unwrap();
            echo.push(EchoServer::start(ns, b, PORT).unwrap());
        }
        let dir = std::env::temp_dir().join(format!("{}{name}", lan.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lan,
            dir,
            _echo: echo,
            lbd: (0..nodes).map(|_| None).collect(),
            nodes,
            persistent: false,
        }
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

    /// Node `node`'s file: the echo service over `backends` (`drained`
    /// ones with weight 0); with two nodes, VRRP (lb1 priority 150, lb2
    /// 100, 100 ms adverts) and connection sync with the other node.
    fn config(&self, node: usize, backends: &[&str], drained: &[&str], proto: Protocol) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        let backends = backends
            .iter()
            .map(|a| BackendConfig {
                weight: u32::from(!drained.contains(a)),
                ..BackendConfig::new(a.parse().unwrap())
            })
            .collect();
        let pair = self.nodes == 2;
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
            vrrp_instance: if pair {
                vec![VrrpInstance {
                    priority: if node == 0 { 150 } else { 100 },
                    advert_interval: ms(100),
                    ..VrrpInstance::new("VI_1", "eth0", 51, vec![format!("{VIP}/24")])
                }]
            } else {
                Vec::new()
            },
            service: vec![Service {
                protocol: proto,
                mode: Mode::Dsr,
                health: Health {
                    kind: if proto == Protocol::Tcp {
                        HealthKind::Tcp
                    } else {
                        HealthKind::None
                    },
                    interval: ms(200),
                    timeout: ms(150),
                    ..Health::default()
                },
                persistence_timeout: self.persistent.then(|| Dur(Duration::from_mins(5))),
                ..Service::new(VIP.parse().unwrap(), PORT, backends)
            }],
            sync: pair.then(|| Sync::new(SECRET, vec![LBS[1 - node].1.parse::<IpAddr>().unwrap()])),
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn write_config(&self, node: usize, text: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.toml", LBS[node].0));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Start lbd on node `node` with its file; wait until `ready` is in
    /// its log. Each start appends to the node's log.
    fn start(&mut self, node: usize, ready: &str) {
        let lb = LBS[node].0;
        let mut cmd = self.ns(lb).command(&*LBD);
        cmd.arg("--config")
            .arg(self.dir.join(format!("{lb}.toml")))
            .env("LB_LOG", "info");
        let log = self.dir.join(format!("{lb}.log"));
        let lbd = Daemon::spawn(lb, &mut cmd, &log).unwrap();
        if let Err(e) = lbd.wait_log(ready, Duration::from_secs(20)) {
            panic!("{lb} not ready ({ready:?}): {e}");
        }
        self.lbd[node] = Some(lbd);
    }

    fn daemon(&self, node: usize) -> &Daemon {
        self.lbd[node].as_ref().expect("lbd running")
    }

    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", LBS[node].0))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (n, (lb, _)) in LBS.iter().enumerate().take(self.nodes) {
            out.push_str(&format!("--- {lb} ---\n{}", self.log(n)));
        }
        out
    }

    fn lbctl(&self, node: usize, args: &[&str]) -> Output {
        lb_lab::lbctl(self.ns(LBS[node].0), &self.socket(node), args)
    }

    fn status(&self, node: usize) -> serde_json::Value {
        lb_lab::lbctl_data(self.ns(LBS[node].0), &self.socket(node), &["status"])
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    fn has_vip(&self, node: usize) -> bool {
        self.ns(LBS[node].0).has_address("eth0", VIP)
    }

    fn traffic(&self) -> Traffic {
        let target: SocketAddr = format!("{VIP}:{PORT}").parse().unwrap();
        Traffic::start(self.ns("client"), target, Options::default())
            .unwrap_or_else(|e| panic!("traffic did not start: {e}\n{}", self.logs()))
    }

    fn kill(&mut self, node: usize) -> Instant {
        let mut lbd = self.lbd[node].take().expect("lbd running");
        let at = Instant::now();
        lbd.kill().unwrap();
        at
    }

    /// Whether an XDP program is attached to node `node`'s interface.
    fn xdp_attached(&self, node: usize) -> bool {
        let out = self.ns(LBS[node].0).ip(&["link", "show", "eth0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for lbd in &mut self.lbd {
            // SIGTERM: detach and unpin.
            drop(lbd.take());
        }
        // A killed lbd's data plane stays pinned: remove it.
        for node in 0..self.nodes {
            let _ = lb_user::dataplane::loader::detach_pinned(&self.pin_path(node));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The flows of node `node`'s pinned connection table: (key, backend
/// slot) of every way whose check word holds.
fn pinned_flows(pin: &Path) -> BTreeSet<(Vec<u8>, u32)> {
    let data = aya::maps::MapData::from_pin(pin.join("flows")).unwrap();
    let map = aya::maps::Map::Array(data);
    let array: aya::maps::Array<_, FlowSet> = aya::maps::Array::try_from(map).unwrap();
    let mut flows = BTreeSet::new();
    for set in array.iter() {
        let set = set.unwrap();
        for i in 0..FLOW_WAYS {
            if set.tags[i] == 0 {
                continue;
            }
            let way = set.ways[i];
            let hash = lb_common::hash::flow_hash(&way.key);
            if let Some(state) = way.valid_state(hash) {
                flows.insert((key_bytes(&way.key), state.backend));
            }
        }
    }
    flows
}

/// The id of the XDP program on lb1's interface (`ip link` prints it).
fn xdp_prog_id(lab: &Lab) -> String {
    let out = lab.ns("lb1").ip(&["link", "show", "eth0"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "prog/xdp")
        .nth(2)
        .unwrap_or_else(|| panic!("no program id in {text}"))
        .to_owned()
}

fn key_bytes(k: &FlowKey) -> Vec<u8> {
    let mut v = k.src.to_vec();
    v.extend_from_slice(&k.dst);
    v.extend_from_slice(&k.src_port_be.to_ne_bytes());
    v.extend_from_slice(&k.dst_port_be.to_ne_bytes());
    v.push(k.proto);
    v
}

fn assert_all_kept(report: &Report, logs: &str) {
    assert_eq!(
        (report.kept(), report.moved(), report.broken()),
        (report.long_lived.len(), 0, 0),
        "every long-lived connection kept on its backend: {report}\n{logs}"
    );
}

/// `lbctl flows` lists the traffic's 40 long-lived flows (each seen
/// within the last 100 ms), JSON and text.
fn assert_lbctl_flows_lists_the_long_lived(lab: &Lab) {
    let service = format!("{VIP}:{PORT}");
    let out = lab.lbctl(0, &["--json", "flows", &service, "--limit", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = reply["data"]["flows"].as_array().unwrap();
    assert_eq!(reply["data"]["total"].as_u64(), Some(listed.len() as u64));
    let fresh = listed
        .iter()
        .filter(|f| f["idle_ms"].as_u64().is_some_and(|ms| ms < 1000))
        .count();
    let mut idle: Vec<u64> = listed
        .iter()
        .filter_map(|f| f["idle_ms"].as_u64())
        .collect();
    idle.sort_unstable();
    assert!(
        fresh >= 40,
        "lbctl flows: {fresh} recent of {}: idle ms {idle:?}",
        listed.len()
    );
    assert!(
        listed
            .iter()
            .all(|f| f["vip"] == service.as_str() && f["protocol"] == "tcp"),
        "{reply}"
    );
    let text = lab.lbctl(0, &["flows", "--limit", "5"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("PRO  CLIENT")
            && text.contains("5 of ")
            && text.contains("most recently seen first"),
        "{text}"
    );
}

/// Single node, no VRRP: SIGKILL, 3 s without lbd, restart; then a
/// restart through SIGUSR2. Traffic runs throughout.
#[test]
fn single_node_survives_sigkill_and_restarts_without_a_gap() {
    let _serial = serial();
    let mut lab = Lab::new(1, "single");
    // No VRRP: the VIP is the LB's own address, for the client's ARP.
    lab.ns("lb1")
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])
        .unwrap();
    let backends: Vec<&str> = BACKENDS[..3].iter().map(|(_, a)| *a).collect();
    lab.write_config(0, &lab.config(0, &backends, &[], Protocol::Tcp));
    lab.start(0, "service active");
    let traffic = lab.traffic();
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();

    let before = pinned_flows(&lab.pin_path(0));
    assert!(before.len() >= 40, "the long-lived flows are in the table");
    assert_lbctl_flows_lists_the_long_lived(&lab);
    lab.kill(0);
    assert!(lab.xdp_attached(0), "the program outlives lbd");
    std::thread::sleep(Duration::from_secs(3));
    traffic
        .wait_lines(3, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("traffic stalled while lbd was dead: {e}\n{}", lab.logs()));
    let while_dead = pinned_flows(&lab.pin_path(0));
    lab.start(0, "running; SIGINT");
    assert!(
        lab.log(0).contains("adopted the data plane pinned at"),
        "{}",
        lab.logs()
    );
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    let after = pinned_flows(&lab.pin_path(0));
    assert!(
        while_dead.is_subset(&after),
        "every flow of the table before the restart is still there, on the same slot \
         ({} before, {} after, {} missing)",
        while_dead.len(),
        after.len(),
        while_dead.difference(&after).count()
    );
    assert!(before.is_subset(&after));

    // An upgrade through the documented path: SIGUSR2 leaves the data
    // plane forwarding, and the next lbd runs another program (here: with
    // connection sync's new-flow events on, which the old one did not
    // emit), swapped into the pinned link in one step.
    let id_before = xdp_prog_id(&lab);
    lab.daemon(0).signal(libc::SIGUSR2).unwrap();
    let exited = wait_for(Duration::from_secs(5), || lab.daemon(0).exited());
    assert!(exited.is_some_and(|s| s.success()), "{}", lab.logs());
    lab.lbd[0] = None;
    assert!(lab.xdp_attached(0));
    let with_sync = format!(
        "{}\n[sync]\nsecret = \"{SECRET}\"\npeers = [\"198.18.0.3\"]\nbulk_timeout = \"1s\"\n",
        lab.config(0, &backends, &[], Protocol::Tcp)
    );
    lab.write_config(0, &with_sync);
    lab.start(0, "running; SIGINT");
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    let id_after = xdp_prog_id(&lab);
    assert_ne!(
        id_before, id_after,
        "another program runs after the upgrade"
    );
    let events = wait_for(Duration::from_secs(5), || {
        let sent = lab.status(0)["sync"]["flows_sent"].as_u64().unwrap_or(0);
        (sent > 0).then_some(sent)
    });
    assert!(
        events.is_some(),
        "the new program emits new-flow events\n{}",
        lab.logs()
    );
    let report = traffic.stop();
    println!(
        "single node, SIGKILL + 3 s + restart, then an upgrade through SIGUSR2 (program {id_before} -> {id_after}, new-flow events on): {report}"
    );
    assert_all_kept(&report, &lab.logs());
    assert_eq!(report.new_failed(), 0, "{report}\n{}", lab.logs());
    assert!(report.new_ok() >= 100, "{report}");

    // SIGTERM is still a clean stop.
    lab.lbd[0] = None;
    assert!(!lab.xdp_attached(0), "SIGTERM detaches");
    assert!(!lab.pin_path(0).exists(), "SIGTERM unpins");
}

/// A pinned data plane of another layout version is refused, with the
/// fix, and keeps forwarding; `lbd detach` removes it.
#[test]
fn another_layout_stamp_is_refused_with_the_fix() {
    let _serial = serial();
    let mut lab = Lab::new(1, "stamp");
    let backends: Vec<&str> = BACKENDS[..2].iter().map(|(_, a)| *a).collect();
    lab.write_config(0, &lab.config(0, &backends, &[], Protocol::Tcp));
    lab.start(0, "service active");
    lab.kill(0);
    let stamp_path = lab.pin_path(0).join("layout");
    {
        let data = aya::maps::MapData::from_pin(&stamp_path).unwrap();
        let mut stamp: aya::maps::Array<_, lb_common::layout::Layout> =
            aya::maps::Array::try_from(aya::maps::Map::Array(data)).unwrap();
        let mut s = stamp.get(&0, 0).unwrap();
        assert_eq!(s.version, lb_common::layout::LAYOUT_VERSION);
        s.version = 999;
        stamp.set(0, s, 0).unwrap();
    }
    let out = lab
        .ns("lb1")
        .command(&*LBD)
        .arg("--config")
        .arg(lab.dir.join("lb1.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let want = format!(
        "cannot be adopted: its maps have layout version 999, this lbd uses version {}",
        lb_common::layout::LAYOUT_VERSION
    );
    assert!(
        err.contains(&want) && err.contains("run `lbd detach --pin-path"),
        "{err}"
    );
    assert!(lab.xdp_attached(0), "the old data plane keeps forwarding");
    let out = lab
        .ns("lb1")
        .command(&*LBD)
        .args(["detach", "--pin-path"])
        .arg(lab.pin_path(0))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lab.xdp_attached(0));
    assert!(!lab.pin_path(0).exists());
}

/// Wait until node `node` holds the VIP and the other does not.
fn wait_master(lab: &Lab, node: usize, timeout: Duration) -> Instant {
    let ok = wait_for(timeout, || lab.has_vip(node).then_some(()));
    assert!(
        ok.is_some(),
        "{} never took the VIP\n{}",
        LBS[node].0,
        lab.logs()
    );
    Instant::now()
}

/// A VRRP pair with sync over the first three backends (`proto`): lb1
/// master, lb2 backup with lb1's table (bulk sync done).
fn pair(name: &str, proto: Protocol) -> Lab {
    pair_with(name, proto, false)
}

/// [`pair`], the service `persistent` or not.
fn pair_with(name: &str, proto: Protocol, persistent: bool) -> Lab {
    let mut lab = Lab::new(2, name);
    lab.persistent = persistent;
    let three: Vec<&str> = BACKENDS[..3].iter().map(|(_, a)| *a).collect();
    for node in 0..2 {
        lab.write_config(node, &lab.config(node, &three, &[], proto));
    }
    lab.start(0, "service active");
    lab.start(1, "service standby");
    lab.daemon(1)
        .wait_log("bulk sync complete", Duration::from_secs(10))
        .unwrap();
    wait_master(&lab, 0, Duration::from_secs(5));
    lab
}

/// How the pool changes on both nodes before the master dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolChange {
    /// A fourth backend joins: the new table sends about a quarter of the
    /// existing flows' hashes to it.
    Added,
    /// `lbctl drain` of b1: the new table sends none to it.
    Drained,
}

/// A backend added on both nodes, the master SIGKILLed, the old master
/// back (bulk sync, then preemption); traffic throughout.
#[test]
fn vrrp_pair_backend_added_master_killed_and_back() {
    pair_failover(PoolChange::Added, true);
}

/// A backend drained on both nodes, the master SIGKILLed; traffic
/// throughout.
#[test]
fn vrrp_pair_backend_drained_master_killed() {
    pair_failover(PoolChange::Drained, false);
}

/// The VRRP pair with sync: the pool changes under established
/// connections, the master is SIGKILLed, and (`then_return`) comes back.
fn pair_failover(change: PoolChange, then_return: bool) {
    let _serial = serial();
    let mut lab = pair(if then_return { "pairback" } else { "pair" }, Protocol::Tcp);
    let four: Vec<&str> = BACKENDS.iter().map(|(_, a)| *a).collect();

    let traffic = lab.traffic();
    traffic.wait_lines(3, Duration::from_secs(10)).unwrap();
    for node in 0..2 {
        match change {
            PoolChange::Added => {
                lab.write_config(node, &lab.config(node, &four, &[], Protocol::Tcp));
                lab.daemon(node).signal(libc::SIGHUP).unwrap();
            }
            PoolChange::Drained => {
                let service = format!("{VIP}:{PORT}");
                let out = lab.lbctl(node, &["drain", &service, BACKENDS[0].1]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();
    let status = lab.status(1);
    let synced = status["sync"]["flows_applied"]
        .as_u64()
        .unwrap_or_else(|| panic!("{status}"));
    assert!(synced >= 40, "the backup has the master's flows: {synced}");

    // The master dies.
    let killed = lab.kill(0);
    assert!(
        lab.xdp_attached(0),
        "the dead master's program keeps forwarding"
    );
    let took_over = wait_master(&lab, 1, Duration::from_secs(5));
    traffic
        .wait_lines(10, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("traffic stalled after the failover: {e}\n{}", lab.logs()));
    let after_kill = traffic.snapshot();
    println!(
        "pair, {change:?}: master SIGKILLed, backup master after {} ms: {after_kill}",
        took_over.duration_since(killed).as_millis()
    );
    assert_all_kept(&after_kill, &lab.logs());
    let window = killed..took_over + Duration::from_secs(1);
    assert!(
        after_kill.failures_outside(window).is_empty(),
        "new connections fail only within the failover window: {after_kill}"
    );

    if !then_return {
        let report = traffic.stop();
        println!("pair, {change:?}: {report}");
        assert_all_kept(&report, &lab.logs());
        return;
    }
    // The old master returns: it adopts its data plane, asks lb2 for its
    // table, and preempts only once it has it.
    lab.start(0, "running; SIGINT");
    // Its interface still holds the VIP the killed run left (until the
    // new run sweeps it): wait for the transition, not the address.
    lab.daemon(0)
        .wait_log("to=MASTER", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("not master again: {e}\n{}", lab.logs()));
    let returned = wait_master(&lab, 0, Duration::from_secs(5));
    let log = lab.log(0);
    let restart = log.rfind("adopted the data plane").expect("adopted");
    let bulk = log[restart..]
        .find("bulk sync complete")
        .unwrap_or_else(|| panic!("no bulk sync before taking over\n{}", lab.logs()));
    let master = log[restart..]
        .find("to=MASTER")
        .unwrap_or_else(|| panic!("not master again\n{}", lab.logs()));
    assert!(
        bulk < master,
        "bulk sync completed before preempting\n{log}"
    );
    traffic.wait_lines(10, Duration::from_secs(15)).unwrap();
    let report = traffic.stop();
    println!(
        "pair: old master back and master again {} ms after its start: {report}",
        returned.duration_since(took_over).as_millis()
    );
    assert_all_kept(&report, &lab.logs());
    assert!(
        report
            .failures_outside(killed..took_over + Duration::from_secs(1))
            .is_empty(),
        "no new connection failed around the return: {report}"
    );
    let sync = &lab.status(0)["sync"];
    println!("lb1 sync after its return: {sync}");
    assert_eq!(sync["bulk"], "done");
}

/// One connection from `src` (an address of the client): the name of the
/// backend that answered.
fn ask(lab: &Lab, src: &str) -> Result<String, String> {
    use std::io::{BufRead as _, Write as _};
    let src: IpAddr = src.parse().unwrap();
    let target: SocketAddr = format!("{VIP}:{PORT}").parse().unwrap();
    lab.ns("client")
        .run(move || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .map_err(|e| e.to_string())?;
            s.bind(&SocketAddr::new(src, 0).into())
                .map_err(|e| format!("bind {src}: {e}"))?;
            s.connect_timeout(&target.into(), Duration::from_secs(2))
                .map_err(|e| format!("connect from {src}: {e}"))?;
            let mut stream: std::net::TcpStream = s.into();
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(b"who\n")
                .map_err(|e| format!("send from {src}: {e}"))?;
            let mut line = String::new();
            std::io::BufReader::new(stream)
                .read_line(&mut line)
                .map_err(|e| format!("answer to {src}: {e}"))?;
            line.split_whitespace()
                .next()
                .map(str::to_owned)
                .ok_or_else(|| format!("empty answer to {src}"))
        })
        .unwrap()
}

/// Client affinity (`persistence_timeout`) through a failover: a client's
/// 20 connections reach one backend while 16 other clients spread; with
/// 40 long-lived connections and 20 new ones a second from a client
/// flowing, the master is SIGKILLed, and afterwards every client's new
/// connections still reach its backend: the backup wrote the clients'
/// templates from the synced flows. The traffic client's every connection,
/// long-lived or new, before, during and after, reaches one backend.
#[test]
fn persistence_keeps_clients_on_their_backends_across_a_failover() {
    let _serial = serial();
    let mut lab = pair_with("persist", Protocol::Tcp, true);
    let clients: Vec<String> = (40..57).map(|n| format!("198.18.0.{n}")).collect();
    for c in &clients {
        lab.ns("client")
            .ip(&["addr", "add", &format!("{c}/24"), "dev", "eth0"])
            .unwrap();
    }
    let traffic = lab.traffic();
    traffic.wait_lines(3, Duration::from_secs(10)).unwrap();

    let first = ask(&lab, &clients[0]).unwrap();
    for i in 1..20 {
        let b = ask(&lab, &clients[0]).unwrap();
        assert_eq!(
            b, first,
            "connection {i} of {} kept its backend",
            clients[0]
        );
    }
    let mut chosen = std::collections::BTreeMap::new();
    for c in &clients {
        chosen.insert(c.clone(), ask(&lab, c).unwrap());
    }
    assert_eq!(chosen[&clients[0]], first);
    let spread: BTreeSet<&String> = chosen.values().collect();
    assert!(spread.len() >= 2, "17 clients over 3 backends: {chosen:?}");
    println!("persistence: clients to backends before the failover: {chosen:?}");
    // The backup has written templates for the clients' flows.
    let written = wait_for(Duration::from_secs(5), || {
        let n = lab.status(1)["sync"]["templates_written"]
            .as_u64()
            .unwrap_or(0);
        (n >= clients.len() as u64 + 20).then_some(n)
    });
    assert!(
        written.is_some(),
        "templates on the backup: {}",
        lab.status(1)["sync"]
    );

    let killed = lab.kill(0);
    let took_over = wait_master(&lab, 1, Duration::from_secs(5));
    traffic
        .wait_lines(10, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("traffic stalled after the failover: {e}\n{}", lab.logs()));
    let (mut kept, mut moved) = (0, Vec::new());
    for c in &clients {
        for _ in 0..3 {
            let b = ask(&lab, c).unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
            if b == chosen[c] {
                kept += 1;
            } else {
                moved.push(format!("{c}: {} -> {b}", chosen[c]));
            }
        }
    }
    println!(
        "persistence: after the failover ({} ms), {kept} connections kept their client's backend, {} moved",
        took_over.duration_since(killed).as_millis(),
        moved.len()
    );
    assert!(moved.is_empty(), "clients moved: {moved:?}\n{}", lab.logs());
    let report = traffic.stop();
    println!("persistence: {report}");
    assert_all_kept(&report, &lab.logs());
    let window = killed..took_over + Duration::from_secs(1);
    assert!(
        report.failures_outside(window).is_empty(),
        "new connections fail only within the failover window: {report}"
    );
    let servers = report.new_per_server();
    assert_eq!(
        servers.len(),
        1,
        "every new connection of the traffic client reached one backend: {servers:?}"
    );
    assert_eq!(report.long_lived_per_server().len(), 1, "{report}");
}

/// New UDP flows at a high rate for 10 s through the master: the backup's
/// table ends up with every one of them but the few its own sets evicted.
#[test]
fn sync_under_load_carries_every_new_flow() {
    let _serial = serial();
    let mut lab = pair("load", Protocol::Udp);
    // The client's neighbour entry for the VIP, so the generator's frames
    // carry the master's MAC.
    let lb_mac = lab.lan.host("lb1").mac().unwrap();
    let client_mac = lab.lan.host("client").mac().unwrap();
    // LB_HA_LOAD_RATE measures higher rates (the note's figures).
    let rate: u32 = std::env::var("LB_HA_LOAD_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20_000);
    let secs = 10u32;
    let sent = lab
        .ns("client")
        .run(|| blast_udp(client_mac, lb_mac, rate, secs))
        .unwrap();
    // Let the last datagrams land.
    std::thread::sleep(Duration::from_millis(500));
    let vip16 = lb_common::v4_mapped(VIP.parse::<std::net::Ipv4Addr>().unwrap().octets());
    let pins = [lab.pin_path(0), lab.pin_path(1)];
    let of_vip = |node: usize| -> BTreeSet<Vec<u8>> {
        pinned_flows(&pins[node])
            .into_iter()
            .filter(|(k, _)| k[16..32] == vip16 && k[36] == 17)
            .map(|(k, _)| k)
            .collect()
    };
    let master = of_vip(0);
    let backup = of_vip(1);
    let s0 = lab.status(0);
    let s1 = lab.status(1);
    println!(
        "sync under load: {sent} flows offered at {rate}/s for {secs} s; master table {}, backup table {}; \
         master sent {} (events lost {}), backup applied {}, lag last {} us max {} us, datagrams lost {}",
        master.len(),
        backup.len(),
        s0["sync"]["flows_sent"],
        s0["data_plane"]["connection_table"]["events_lost"],
        s1["sync"]["flows_applied"],
        s1["sync"]["lag_last_us"],
        s1["sync"]["lag_max_us"],
        s1["sync"]["datagrams_lost"],
    );
    assert!(
        master.len() as u64 >= u64::from(rate) * u64::from(secs) * 9 / 10,
        "the master saw the flows"
    );
    // Each table evicts on its own when a set overflows (the same sets on
    // both: same hash, same size), and which flow goes depends on when
    // each way was last seen: a flow the master kept may be one its backup
    // evicted. So every flow the master holds is on the backup unless the
    // backup evicted it, and those are rare at this load (about 1 in
    // 30,000 at a fifth of the table, see lb_common::flow).
    let missing = master.difference(&backup).count() as u64;
    let applied = s1["sync"]["flows_applied"].as_u64().unwrap_or(0);
    let backup_evicted = applied.saturating_sub(backup.len() as u64);
    println!(
        "backup evicted {backup_evicted} of {applied}; {missing} of the master's flows not on it"
    );
    assert!(
        missing <= backup_evicted,
        "the backup's table holds every flow the master made but those it evicted \
         ({missing} missing, {backup_evicted} evicted)"
    );
    assert!(
        backup_evicted * 2_000 <= applied,
        "evictions are rare at this load: {backup_evicted} of {applied}"
    );

    // Bulk sync at that scale: the backup stopped cleanly (its table goes
    // with its pins) and started again gets the whole table from the
    // master before it may preempt.
    drop(lab.lbd[1].take());
    assert!(!lab.pin_path(1).exists(), "a clean stop removes the table");
    let started = Instant::now();
    lab.start(1, "service standby");
    lab.daemon(1)
        .wait_log("bulk sync complete", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let took = started.elapsed();
    let rebuilt = of_vip(1);
    let missing = master.difference(&rebuilt).count();
    println!(
        "bulk sync of {} flows: {} ms from lbd's start, {missing} missing",
        master.len(),
        took.as_millis()
    );
    assert_eq!(missing, 0, "bulk sync carried every flow\n{}", lab.log(1));
    let log = lab.log(1);
    assert!(
        log.contains("bulk sync from 198.18.0.2 complete") && !log.contains("flows arrived"),
        "the answer arrived whole:\n{log}"
    );
}

/// Send `rate` UDP frames a second for `secs` s from the calling thread's
/// namespace (`eth0`), each a new flow (distinct source address and port)
/// to VIP:PORT; returns how many were sent.
fn blast_udp(src_mac: [u8; 6], dst_mac: [u8; 6], rate: u32, secs: u32) -> u64 {
    let ifindex = lb_user::sys::interface::ifindex("eth0").unwrap();
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    assert!(
        fd >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: sockaddr_ll is plain integers; all zeros is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = i32::try_from(ifindex).unwrap();
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let start = Instant::now();
    let total = u64::from(rate) * u64::from(secs);
    let mut sent = 0u64;
    while sent < total {
        // Pace in 1 ms steps.
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        while sent < due.min(total) {
            let n = sent;
            // Clients 198.19.x.y (inside 198.18.0.0/15), ports 1024..
            let src = std::net::Ipv4Addr::new(198, 19, (n >> 16) as u8, (n >> 8) as u8);
            let port = 1024 + (n & 0xff) as u16 * 16 + ((n >> 24) as u16 & 0xf);
            let mut frame = FrameSpec::new(
                src.into(),
                vip.into(),
                L4::Udp {
                    src: port,
                    dst: PORT,
                },
            )
            .build();
            frame[..6].copy_from_slice(&dst_mac);
            frame[6..12].copy_from_slice(&src_mac);
            // SAFETY: sendto with a buffer and address we own.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap(),
                )
            };
            assert!(rc >= 0, "sendto: {}", std::io::Error::last_os_error());
            sent += 1;
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    sent
}
