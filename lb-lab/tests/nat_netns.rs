//! Kernel test: `nat` and `fullnat` with `lbd` as an operator runs it, in
//! network namespaces, against servers that know nothing about the
//! balancer.
//!
//! Topology (one bridge): the client on 198.18.0.0/24; the LB on both
//! 198.18.0.0/24 (with the VIP) and 198.18.2.0/24 (address 198.18.2.1);
//! backends on 198.18.2.0/24 only. The backends have no route to the
//! client at all: in `fullnat` they answer the LB's SNAT address; in `nat`
//! their default route is the LB, as LVS-NAT requires.
//!
//! - fullnat, TCP: 40 long-lived connections exchanging a line every
//!   100 ms and 20 new connections a second, to VIP port 80, forwarded to
//!   the servers' port 9000, while a backend is added, one drained and one
//!   removed: every connection is kept (a removed backend's keep their
//!   translation) and no new one fails; the servers see 198.18.2.1 as
//!   their client; `lbctl flows` lists the translation and the state.
//! - fullnat, UDP: datagrams from many client sockets, each reply back to
//!   the socket that asked.
//! - nat, TCP: the servers see the client's own address.
//! - the user's seed test: two MariaDB servers (Debian `mariadb-server`)
//!   behind the VIP in fullnat; 40 `mariadb` client connections all
//!   succeed, land on both and are seen coming from the SNAT address; one
//!   server stopped leaves the pool and 20 more all succeed on the other.
//! - fullnat behind a VRRP pair with connection sync (the SNAT address a
//!   VRRP address too): a server joins on both nodes, then the master is
//!   SIGKILLed, under the same traffic; every connection is kept by the
//!   node that takes over, on its server (without sync, a third of them
//!   would be balanced to the new server and reset).
//!
//! - two arms: the servers on a second LAN behind the LB's `eth1`
//!   (`backend_interface`, native mode), fullnat and nat side by side
//!   under traffic, lbd SIGKILLed and started again (it adopts both
//!   links): every connection kept, every forwarded frame redirected
//!   across, IPv6 and UDP too.
//! - a `vrrp_sync_group` in nat (issue 14): two two-armed nodes, the
//!   external VIP (`VI_EXT`, eth0) and the servers' gateway 198.18.2.1
//!   (`VI_INT`, eth1) in one group, the servers routing through the
//!   gateway, connection sync over the clients' LAN; under traffic, lb1's
//!   eth1 goes down and lb2 takes both VIPs: every connection kept, new
//!   ones fail only during the failover, lb2 forwards both directions.
//!   While lb2 serves, 20 more connections open and a third server joins
//!   (lb1 keeps their synced flows waiting for its servers); eth1 comes
//!   back and lb1 takes both VIPs back: every connection kept, old and
//!   new.
//!
//! Every host that sends through the XDP program has transmit checksum
//! offload off (`ethtool -K eth0 tx off`): a veth otherwise hands XDP a
//! packet whose checksum is only partial (a NIC's receive path never
//! does). That is the lab's wiring, not a change to the servers.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
    traffic::{EchoServer, Options, Traffic},
};
use lb_user::config::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, Nat, Protocol,
    Service, Sync, VrrpInstance, VrrpSyncGroup, XdpMode,
};

static LBD: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbd"));
static LBCTL: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbctl"));

const VIP: &str = "198.18.0.100";
const VIP6: &str = "2001:db8::100";
const LB_INSIDE: &str = "198.18.2.1";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "198.18.2.11"),
    ("b2", "198.18.2.12"),
    ("b3", "198.18.2.13"),
];
const SERVER_PORT: u16 = 9000;

/// One lab at a time: the tests drive traffic and time failovers, and a
/// neighbour's load would starve them on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const UDP_PORT: u16 = 5353;

/// The servers' hosts on 198.18.2.0/24, transmit checksum offload off
/// (see the module doc); with `via_lb`, their default route is the LB (as
/// `nat` needs), else they have none.
fn add_servers(lan: &mut Lan, via_lb: bool) {
    for (name, addr) in BACKENDS {
        let host = lan
            .add_host(
                name,
                &format!("{addr}/24"),
                &format!("2001:db8:2::{}/64", &addr[9..]),
            )
            .unwrap();
        host.ns
            .exec("ethtool", &["-K", "eth0", "tx", "off"])
            .unwrap();
        if via_lb {
            host.ns
                .ip(&["route", "add", "default", "via", LB_INSIDE])
                .unwrap();
        }
    }
}

struct Lab {
    lan: Lan,
    /// Two-armed: the servers' LAN, behind the LB's `eth1` (else the
    /// servers are on `lan`).
    inside: Option<Lan>,
    dir: PathBuf,
    lbd: Option<Daemon>,
    mode: Mode,
}

impl Lab {
    fn new(mode: Mode) -> Self {
        let mut lan = Lan::new().expect("create LAN (run as root)");
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
            .unwrap();
        add_servers(&mut lan, mode == Mode::Nat);
        let lb = &lan.host("lb").ns;
        lb.ip(&["addr", "add", &format!("{LB_INSIDE}/24"), "dev", "eth0"])
            .unwrap();
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])
            .unwrap();
        lan.prepare_xdp("client").unwrap();
        let dir = std::env::temp_dir().join(format!("{}nat", lan.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lan,
            inside: None,
            dir,
            lbd: None,
            mode,
        }
    }

    /// Two LANs: the client and the LB's `eth0` (198.18.0.2, the VIPs) on
    /// one, the servers and the LB's `eth1` (198.18.2.1, 2001:db8:2::1)
    /// on the other, their default route via the LB (as `nat` needs).
    fn two_arm() -> Self {
        let mut lan = Lan::new().expect("create LAN (run as root)");
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
            .unwrap();
        let mut inside = Lan::new().unwrap();
        add_servers(&mut inside, true);
        let lb = &lan.host("lb").ns;
        inside
            .add_port(lb, "eth1", &format!("{LB_INSIDE}/24"), "2001:db8:2::1/64")
            .unwrap();
        for vip in [format!("{VIP}/32"), format!("{VIP6}/128")] {
            lb.ip(&["addr", "add", &vip, "dev", "eth0"]).unwrap();
        }
        for (name, _) in BACKENDS {
            inside
                .host(name)
                .ns
                .ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"])
                .unwrap();
        }
        lan.prepare_xdp("client").unwrap();
        // GRO on the inside ports too: frames redirected into `eth1` in
        // native mode need NAPI on its peer.
        inside.prepare_xdp(BACKENDS[0].0).unwrap();
        let dir = std::env::temp_dir().join(format!("{}nat", lan.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lan,
            inside: Some(inside),
            dir,
            lbd: None,
            mode: Mode::Fullnat,
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        match self.inside.as_ref().and_then(|l| l.find_host(role)) {
            Some(h) => &h.ns,
            None => &self.lan.host(role).ns,
        }
    }

    /// lbd's file for `services`.
    fn config_of(&self, service: Vec<Service>) -> String {
        Config {
            global: Global {
                router_id: Some("lb-nat".into()),
                bpf_pin_path: format!("/sys/fs/bpf/{}lb", self.lan.prefix()).into(),
                control_socket: self.dir.join("run/lbd.sock"),
                metrics_listen: None,
            },
            // Two-armed in native mode: XDP_REDIRECT between veths as
            // between NICs.
            dataplane: Some(Dataplane {
                xdp_mode: if self.inside.is_some() {
                    XdpMode::Native
                } else {
                    XdpMode::Generic
                },
                conntrack_entries: 65_536,
                backend_interface: self.inside.as_ref().map(|_| "eth1".to_owned()),
                ..Dataplane::new("eth0")
            }),
            service,
            nat: Nat {
                flows: 4096,
                ..Nat::default()
            },
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    /// lbd's file: the TCP service VIP:80 and the UDP service VIP:5353
    /// over `backends` (names), servers on port 9000 and 5353.
    fn config(&self, backends: &[&str]) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        let list = |port: u16| -> Vec<BackendConfig> {
            BACKENDS
                .iter()
                .filter(|(n, _)| backends.contains(n))
                .map(|(_, a)| BackendConfig {
                    port: Some(port),
                    ..BackendConfig::new(a.parse().unwrap())
                })
                .collect()
        };
        let health = Health {
            kind: HealthKind::Tcp,
            interval: ms(200),
            timeout: ms(150),
            rise: 2,
            fall: 2,
            ..Health::default()
        };
        self.config_of(vec![
            Service {
                mode: self.mode,
                health: health.clone(),
                ..Service::new(VIP.parse().unwrap(), 80, list(SERVER_PORT))
            },
            Service {
                mode: self.mode,
                protocol: Protocol::Udp,
                health: Health {
                    kind: HealthKind::None,
                    ..health
                },
                ..Service::new(VIP.parse().unwrap(), UDP_PORT, list(UDP_PORT))
            },
        ])
    }

    fn start(&mut self, backends: &[&str]) {
        self.write_config(backends);
        self.run_lbd();
    }

    fn run_lbd(&mut self) {
        let mut cmd = self.ns("lb").command(&*LBD);
        cmd.arg("--config").arg(self.dir.join("lb.toml"));
        let lbd = Daemon::spawn("lbd", &mut cmd, self.dir.join("lbd.log")).unwrap();
        if let Err(e) = lbd.wait_log("service active", Duration::from_secs(15)) {
            panic!("lbd did not activate the service: {e}");
        }
        self.lbd = Some(lbd);
    }

    fn write_config(&self, backends: &[&str]) {
        std::fs::write(self.dir.join("lb.toml"), self.config(backends)).unwrap();
    }

    fn reload(&self, backends: &[&str]) {
        self.write_config(backends);
        let lbd = self.lbd.as_ref().unwrap();
        lbd.signal(libc::SIGHUP).unwrap();
        lbd.wait_log("applied", Duration::from_secs(5)).unwrap();
    }

    fn log(&self) -> String {
        self.lbd.as_ref().map(Daemon::log).unwrap_or_default()
    }

    fn lbctl(&self, args: &[&str]) -> String {
        let out: Output = self
            .ns("lb")
            .command(&*LBCTL)
            .arg("--socket")
            .arg(self.dir.join("run/lbd.sock"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lbctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Peers of the established connections to the server port in `name`
    /// (IPv4 as IPv4).
    fn peers(&self, name: &str) -> Vec<SocketAddr> {
        server_peers(self.ns(name))
    }

    /// Wait until a connection through the VIP reaches a server.
    fn wait_serving(&self) {
        let target: SocketAddr = format!("{VIP}:80").parse().unwrap();
        let ok = wait_for(Duration::from_secs(10), || {
            self.ns("client").run(|| ask(target)).ok().flatten()
        });
        assert!(ok.is_some(), "no answer through the VIP\n{}", self.log());
    }
}

/// Peers of the established connections to the server port in `ns`
/// (IPv4 as IPv4).
fn server_peers(ns: &Netns) -> Vec<SocketAddr> {
    let out = ns
        .exec(
            "ss",
            &[
                "-Htn",
                "state",
                "established",
                &format!("( sport = :{SERVER_PORT} )"),
            ],
        )
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.parse::<SocketAddr>().ok())
        // The servers listen on [::]: IPv4 peers show v4-mapped.
        .map(|p| SocketAddr::new(p.ip().to_canonical(), p.port()))
        .collect()
}

/// One line through a fresh connection to `target`: the answer.
fn ask(target: SocketAddr) -> Option<String> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"ping\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    (!line.is_empty()).then_some(line)
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.lbd = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn echo_servers(lab: &Lab) -> Vec<EchoServer> {
    BACKENDS
        .iter()
        .map(|(name, _)| EchoServer::start(lab.ns(name), name, SERVER_PORT).unwrap())
        .collect()
}

#[test]
fn fullnat_keeps_connections_while_backends_come_drain_and_go() {
    let _serial = serial();
    let mut lab = Lab::new(Mode::Fullnat);
    let _servers = echo_servers(&lab);
    lab.start(&["b1", "b2"]);
    lab.wait_serving();
    let target: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let traffic = Traffic::start(lab.ns("client"), target, Options::default()).unwrap();
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();

    // The servers see the LB's SNAT address, with a port from the range.
    for name in ["b1", "b2"] {
        let peers = lab.peers(name);
        assert!(!peers.is_empty(), "{name} has connections");
        for p in &peers {
            assert_eq!(p.ip().to_string(), LB_INSIDE, "{name} sees {p}");
            assert!((1024..=32767).contains(&p.port()), "{name} sees {p}");
        }
    }
    let flows = lab.lbctl(&["flows", &format!("{VIP}:80")]);
    assert!(
        flows.contains("fullnat") && flows.contains("ESTABLISHED"),
        "{flows}"
    );
    assert!(flows.contains(&format!("{LB_INSIDE}:")), "{flows}");
    let status = lab.lbctl(&["status"]);
    assert!(
        status.contains("NAT table: ") && status.contains(" of 4096 flows"),
        "{status}"
    );

    // Added.
    lab.reload(&["b1", "b2", "b3"]);
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    // Drained.
    lab.lbctl(&["drain", &format!("{VIP}:80"), "198.18.2.11"]);
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    let drained_at = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    // Removed: its connections keep their translation (the server is
    // alive) until they end.
    let removed_at = Instant::now();
    lab.reload(&["b1", "b3"]);
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    let report = traffic.stop();
    println!("{report}");

    let mut outcome: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for l in &report.long_lived {
        let e = outcome.entry(l.first_server.as_str()).or_default();
        if l.outcome == lb_lab::traffic::Outcome::Kept {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    println!("long-lived by first server (kept, not kept): {outcome:?}");
    assert_eq!(report.long_lived.len(), 40);
    assert_eq!(report.kept(), 40, "{report}\n{}", lab.log());
    assert_eq!(report.new_failed(), 0, "{report}");
    let after_removal = report
        .new
        .iter()
        .filter(|c| c.started > removed_at + Duration::from_millis(200))
        .filter(|c| c.result.as_deref() == Ok("b2"))
        .count();
    assert_eq!(after_removal, 0, "removed b2 takes no new connections");
    // After the drain, no new connection went to b1.
    let to_b1 = report
        .new
        .iter()
        .filter(|c| c.started > drained_at && c.result.as_deref() == Ok("b1"))
        .count();
    assert_eq!(to_b1, 0, "drained b1 takes no new connections");
    assert!(
        report.new_per_server().contains_key("b3"),
        "b3 took new ones"
    );
}

/// A UDP server in `ns` answering every datagram with its name and the
/// datagram, until `stop` is set.
fn udp_echo(ns: &Netns, name: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let socket = ns
        .run(|| UdpSocket::bind(("0.0.0.0", UDP_PORT)).unwrap())
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let mut reply = format!("{name} ").into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from);
            }
        }
    })
}

#[test]
fn fullnat_udp_replies_reach_the_client_that_asked() {
    let _serial = serial();
    let mut lab = Lab::new(Mode::Fullnat);
    let _servers = echo_servers(&lab);
    let stop = Arc::new(AtomicBool::new(false));
    let udp: Vec<_> = BACKENDS
        .iter()
        .map(|(name, _)| udp_echo(lab.ns(name), name, Arc::clone(&stop)))
        .collect();
    lab.start(&["b1", "b2", "b3"]);
    lab.wait_serving();
    let target: SocketAddr = format!("{VIP}:{UDP_PORT}").parse().unwrap();
    let sockets: Vec<UdpSocket> = (0..30)
        .map(|_| {
            let s = lab
                .ns("client")
                .run(|| UdpSocket::bind("198.18.0.1:0").unwrap())
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    let mut servers: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..5 {
        for (i, s) in sockets.iter().enumerate() {
            let ask = format!("client {i} round {round}");
            s.send_to(ask.as_bytes(), target).unwrap();
            let mut buf = [0u8; 1500];
            let (n, from) = s.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("socket {i} round {round}: no reply ({e})\n{}", lab.log())
            });
            assert_eq!(from, target, "the reply comes from the VIP");
            let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (server, echoed) = reply.split_once(' ').unwrap();
            assert_eq!(echoed, ask, "socket {i} got its own reply");
            *servers.entry(server.to_owned()).or_default() += 1;
        }
    }
    println!("UDP replies per server: {servers:?}");
    assert_eq!(servers.values().sum::<usize>(), 150);
    assert!(servers.len() >= 2, "several servers answered: {servers:?}");
    // One flow per client socket, each keeping its server.
    let flows = lab.lbctl(&["flows", &format!("{VIP}:{UDP_PORT}/udp")]);
    assert!(
        flows.contains("30 flows") && flows.contains("UDP"),
        "{flows}"
    );
    stop.store(true, Ordering::Relaxed);
    for t in udp {
        t.join().unwrap();
    }
}

#[test]
fn nat_backends_see_the_client_and_answer_through_the_lb() {
    let _serial = serial();
    let mut lab = Lab::new(Mode::Nat);
    let _servers = echo_servers(&lab);
    lab.start(&["b1", "b2"]);
    lab.wait_serving();
    let target: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let opts = Options {
        long_lived: 20,
        ..Options::default()
    };
    let traffic = Traffic::start(lab.ns("client"), target, opts).unwrap();
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();
    let mut seen = 0;
    for name in ["b1", "b2"] {
        for p in lab.peers(name) {
            assert_eq!(p.ip().to_string(), "198.18.0.1", "{name} sees {p}");
            seen += 1;
        }
    }
    assert!(seen >= 20, "the long-lived connections are on the servers");
    let report = traffic.stop();
    println!("{report}");
    assert_eq!(report.kept(), 20, "{report}");
    assert_eq!(report.new_failed(), 0, "{report}");
    let flows = lab.lbctl(&["flows"]);
    assert!(
        flows.contains(" nat ") || flows.contains("nat  "),
        "{flows}"
    );
}

/// Peers of `lab`'s servers' established connections to the server port,
/// counted by address.
fn peer_addresses(lab: &Lab) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for (name, _) in BACKENDS {
        for p in lab.peers(name) {
            *seen.entry(p.ip().to_string()).or_default() += 1;
        }
    }
    seen
}

/// The two-armed lab's services: fullnat TCP and UDP and nat TCP on the
/// IPv4 VIP, fullnat TCP on the IPv6 one, over the three servers.
fn two_arm_config(lab: &Lab) -> String {
    let list = |port: u16, v6: bool| -> Vec<BackendConfig> {
        BACKENDS
            .iter()
            .map(|(_, a)| {
                let addr = if v6 {
                    format!("2001:db8:2::{}", &a[9..])
                } else {
                    (*a).to_owned()
                };
                BackendConfig {
                    port: Some(port),
                    ..BackendConfig::new(addr.parse().unwrap())
                }
            })
            .collect()
    };
    let tcp = Health {
        kind: HealthKind::Tcp,
        interval: Dur(Duration::from_millis(200)),
        ..Health::default()
    };
    let none = Health {
        kind: HealthKind::None,
        ..Health::default()
    };
    let service = |vip: &str, port, mode, protocol, backends, health: &Health| Service {
        mode,
        protocol,
        health: health.clone(),
        ..Service::new(vip.parse().unwrap(), port, backends)
    };
    lab.config_of(vec![
        service(
            VIP,
            80,
            Mode::Fullnat,
            Protocol::Tcp,
            list(SERVER_PORT, false),
            &tcp,
        ),
        service(
            VIP,
            81,
            Mode::Nat,
            Protocol::Tcp,
            list(SERVER_PORT, false),
            &tcp,
        ),
        service(
            VIP,
            UDP_PORT,
            Mode::Fullnat,
            Protocol::Udp,
            list(UDP_PORT, false),
            &none,
        ),
        service(
            VIP6,
            80,
            Mode::Fullnat,
            Protocol::Tcp,
            list(SERVER_PORT, true),
            &tcp,
        ),
    ])
}

/// Ten IPv6 connections and ten UDP exchanges through the two-armed lab.
fn ipv6_and_udp_across(lab: &Lab) {
    let target6: SocketAddr = format!("[{VIP6}]:80").parse().unwrap();
    for i in 0..10 {
        let answer = lab.ns("client").run(|| ask(target6)).unwrap();
        assert!(answer.is_some(), "IPv6 connection {i}\n{}", lab.log());
    }
    let target: SocketAddr = format!("{VIP}:{UDP_PORT}").parse().unwrap();
    for i in 0..10 {
        let s = lab
            .ns("client")
            .run(|| UdpSocket::bind("198.18.0.1:0").unwrap())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let ask = format!("datagram {i}");
        s.send_to(ask.as_bytes(), target).unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
        assert_eq!(from, target);
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(&ask));
    }
}

#[test]
fn two_arms_forward_between_interfaces_through_a_crash() {
    let _serial = serial();
    let mut lab = Lab::two_arm();
    let _servers = echo_servers(&lab);
    let stop = Arc::new(AtomicBool::new(false));
    let udp: Vec<_> = BACKENDS
        .iter()
        .map(|(name, _)| udp_echo(lab.ns(name), name, Arc::clone(&stop)))
        .collect();
    let config = two_arm_config(&lab);
    std::fs::write(lab.dir.join("lb.toml"), config).unwrap();
    lab.run_lbd();
    lab.wait_serving();
    let log = lab.log();
    assert!(
        log.contains("to eth1 (ifindex") && log.contains("in native mode"),
        "attached to both interfaces, natively\n{log}"
    );

    // fullnat and nat side by side, both under traffic.
    let opts = Options {
        long_lived: 20,
        new_per_sec: 10,
        ..Options::default()
    };
    let fullnat =
        Traffic::start(lab.ns("client"), format!("{VIP}:80").parse().unwrap(), opts).unwrap();
    let nat = Traffic::start(lab.ns("client"), format!("{VIP}:81").parse().unwrap(), opts).unwrap();
    fullnat.wait_lines(5, Duration::from_secs(10)).unwrap();
    nat.wait_lines(5, Duration::from_secs(10)).unwrap();
    // The servers see the SNAT address (fullnat) and the client (nat).
    let seen = peer_addresses(&lab);
    println!("the servers' peers: {seen:?}");
    assert!(seen.get(LB_INSIDE).copied().unwrap_or(0) >= 20, "{seen:?}");
    assert!(
        seen.get("198.18.0.1").copied().unwrap_or(0) >= 20,
        "{seen:?}"
    );

    // lbd dies and comes back: the program stays on both interfaces, the
    // new lbd adopts both links.
    lab.lbd.as_mut().unwrap().kill().unwrap();
    fullnat.wait_lines(5, Duration::from_secs(10)).unwrap();
    nat.wait_lines(5, Duration::from_secs(10)).unwrap();
    lab.run_lbd();
    let log = lab.log();
    assert!(
        log.contains("adopted the data plane") && log.contains("and on the backend interface eth1"),
        "{log}"
    );
    lab.lbd
        .as_ref()
        .unwrap()
        .wait_log("control socket at", Duration::from_secs(5))
        .unwrap();
    let status = lab.lbctl(&["status"]);
    assert!(
        status.contains("data plane: eth0 (native mode), backends behind eth1 (native mode)"),
        "{status}"
    );

    ipv6_and_udp_across(&lab);
    fullnat.wait_lines(5, Duration::from_secs(10)).unwrap();
    let (fullnat, nat) = (fullnat.stop(), nat.stop());
    println!("two arms, fullnat: {fullnat}");
    println!("two arms, nat: {nat}");
    for report in [&fullnat, &nat] {
        assert_eq!(report.long_lived.len(), 20);
        assert_eq!(report.kept(), 20, "{report}\n{}", lab.log());
        assert_eq!(report.new_failed(), 0, "{report}");
        assert!(report.new_ok() > 0, "{report}");
    }
    // Every forwarded frame crossed interfaces: redirected, none sent back
    // out of the interface it came in on.
    let pins = PathBuf::from(format!("/sys/fs/bpf/{}lb", lab.lan.prefix()));
    let verdicts = lb_user::dataplane::stats::proto_stats_pinned(&pins).unwrap();
    println!(
        "{}",
        lb_user::dataplane::stats::format_proto_stats(&verdicts)
    );
    let total =
        |f: fn(&lb_common::stats::VerdictCounters) -> u64| verdicts.iter().map(f).sum::<u64>();
    assert!(total(|c| c.redirect) > 1000, "redirected");
    assert_eq!(total(|c| c.tx), 0, "nothing sent back out of its interface");
    assert_eq!(total(|c| c.aborted), 0);
    stop.store(true, Ordering::Relaxed);
    for t in udp {
        t.join().unwrap();
    }
}

/// What both VRRP pairs here share: their lbd processes, their files
/// and pins (named after [`PAIR`]); dropping it stops the daemons and
/// removes what a killed one left pinned.
struct Nodes {
    prefix: String,
    dir: PathBuf,
    lbd: Vec<Option<Daemon>>,
}

impl Nodes {
    fn new(prefix: &str, what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}{what}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            prefix: prefix.to_owned(),
            dir,
            lbd: vec![None, None],
        }
    }

    fn pin_path(&self, node: usize) -> PathBuf {
        format!("/sys/fs/bpf/{}{}", self.prefix, PAIR[node].0).into()
    }

    fn socket(&self, node: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", PAIR[node].0))
    }

    fn write_config(&self, node: usize, text: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.toml", PAIR[node].0));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Start node `node`'s lbd in `ns` on `config`, and wait for `ready`
    /// in its log.
    fn start(&mut self, ns: &Netns, node: usize, config: &str, ready: &str) {
        let lb = PAIR[node].0;
        let path = self.write_config(node, config);
        let mut cmd = ns.command(&*LBD);
        cmd.arg("--config").arg(&path);
        let lbd = Daemon::spawn(lb, &mut cmd, self.dir.join(format!("{lb}.log"))).unwrap();
        if let Err(e) = lbd.wait_log(ready, Duration::from_secs(15)) {
            panic!("{lb}: {e}\n{}", lbd.log());
        }
        self.lbd[node] = Some(lbd);
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for d in self.lbd.iter().flatten() {
            out.push_str(&format!("== {}\n{}", d.name(), d.log()));
        }
        out
    }

    /// `lbctl status`'s sync part of node `node` (in `ns`).
    fn sync_status(&self, ns: &Netns, node: usize) -> serde_json::Value {
        let out = ns
            .command(&*LBCTL)
            .arg("--socket")
            .arg(self.socket(node))
            .args(["--json", "status"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["data"]["sync"].clone()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for lbd in &mut self.lbd {
            drop(lbd.take());
        }
        // A killed lbd's data plane stays pinned: remove it.
        for node in 0..2 {
            let _ = lb_user::dataplane::loader::detach_pinned(&self.pin_path(node));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two LB nodes with VRRP and connection sync in front of the fullnat
/// service: the VIP and the SNAT address (198.18.2.1) are both VRRP
/// addresses, so the servers' replies follow the master.
struct Pair {
    /// First: dropped (daemons stopped) before the LAN.
    nodes: Nodes,
    lan: Lan,
}

impl std::ops::Deref for Pair {
    type Target = Nodes;
    fn deref(&self) -> &Nodes {
        &self.nodes
    }
}

impl std::ops::DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut Nodes {
        &mut self.nodes
    }
}

const PAIR: [(&str, &str, &str); 2] = [
    ("lb1", "198.18.0.2", "198.18.2.2"),
    ("lb2", "198.18.0.3", "198.18.2.3"),
];

impl Pair {
    fn new() -> Self {
        let mut lan = Lan::new().expect("create LAN (run as root)");
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        for (i, (lb, addr, inside)) in PAIR.iter().enumerate() {
            let host = lan
                .add_host(
                    lb,
                    &format!("{addr}/24"),
                    &format!("2001:db8::{}/64", 2 + i),
                )
                .unwrap();
            host.ns
                .ip(&["addr", "add", &format!("{inside}/24"), "dev", "eth0"])
                .unwrap();
        }
        add_servers(&mut lan, false);
        lan.prepare_xdp("client").unwrap();
        Self {
            nodes: Nodes::new(lan.prefix(), "natpair"),
            lan,
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    /// Node `node`'s file with the first `backends` of [`BACKENDS`].
    fn config(&self, node: usize, backends: usize) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        let backends = BACKENDS[..backends]
            .iter()
            .map(|(_, a)| BackendConfig {
                port: Some(SERVER_PORT),
                ..BackendConfig::new(a.parse().unwrap())
            })
            .collect();
        Config {
            global: Global {
                router_id: Some(PAIR[node].0.into()),
                bpf_pin_path: self.pin_path(node),
                control_socket: self.socket(node),
                metrics_listen: None,
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Generic,
                conntrack_entries: 65_536,
                ..Dataplane::new("eth0")
            }),
            vrrp_instance: vec![VrrpInstance {
                priority: if node == 0 { 150 } else { 100 },
                advert_interval: ms(100),
                ..VrrpInstance::new(
                    "VI_1",
                    "eth0",
                    52,
                    vec![format!("{VIP}/24"), format!("{LB_INSIDE}/24")],
                )
            }],
            service: vec![Service {
                mode: Mode::Fullnat,
                snat_address: Some(LB_INSIDE.parse().unwrap()),
                health: Health {
                    kind: HealthKind::Tcp,
                    interval: ms(200),
                    timeout: ms(150),
                    ..Health::default()
                },
                ..Service::new(VIP.parse().unwrap(), 80, backends)
            }],
            sync: Some(Sync::new(
                "a test secret, 16+ characters",
                vec![PAIR[1 - node].1.parse().unwrap()],
            )),
            nat: Nat {
                flows: 4096,
                ..Nat::default()
            },
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn write_config(&self, node: usize, backends: usize) -> PathBuf {
        self.nodes.write_config(node, &self.config(node, backends))
    }

    fn start(&mut self, node: usize, ready: &str) {
        let config = self.config(node, 2);
        let ns = &self.lan.host(PAIR[node].0).ns;
        self.nodes.start(ns, node, &config, ready);
    }

    fn holds_vip(&self, node: usize) -> bool {
        self.ns(PAIR[node].0).has_address("eth0", VIP)
    }

    fn sync_status(&self, node: usize) -> serde_json::Value {
        self.nodes.sync_status(self.ns(PAIR[node].0), node)
    }
}

#[test]
fn fullnat_connections_survive_the_master_s_death() {
    let _serial = serial();
    let mut pair = Pair::new();
    let _servers: Vec<EchoServer> = BACKENDS
        .iter()
        .map(|(name, _)| EchoServer::start(pair.ns(name), name, SERVER_PORT).unwrap())
        .collect();
    pair.start(0, "service active");
    pair.start(1, "service standby");
    pair.lbd[1]
        .as_ref()
        .unwrap()
        .wait_log("bulk sync complete", Duration::from_secs(10))
        .unwrap();
    let ok = wait_for(Duration::from_secs(5), || pair.holds_vip(0).then_some(()));
    assert!(ok.is_some(), "lb1 is master\n{}", pair.logs());

    let target: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let traffic = Traffic::start(pair.ns("client"), target, Options::default()).unwrap();
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    // A third server joins on both nodes: Maglev now sends about a third
    // of the existing flows' hashes to it. Only their NAT entries keep them
    // on their servers once the other node has to carry them.
    for node in 0..2 {
        pair.write_config(node, 3);
        let lbd = pair.lbd[node].as_ref().unwrap();
        lbd.signal(libc::SIGHUP).unwrap();
        lbd.wait_log("applied", Duration::from_secs(5)).unwrap();
    }
    traffic.wait_lines(10, Duration::from_secs(10)).unwrap();
    let synced = pair.sync_status(1)["flows_applied"].as_u64().unwrap_or(0);
    assert!(
        synced >= 40,
        "lb2 holds lb1's NAT flows: {synced}\nlb1 sync: {}\nlb2 sync: {}\n{}",
        pair.sync_status(0),
        pair.sync_status(1),
        pair.logs()
    );

    // The master dies; lb2 takes the VIP and the SNAT address.
    let killed = Instant::now();
    pair.lbd[0].take().unwrap().kill().unwrap();
    let ok = wait_for(Duration::from_secs(5), || pair.holds_vip(1).then_some(()));
    assert!(ok.is_some(), "lb2 took over\n{}", pair.logs());
    let took_over = Instant::now();
    traffic
        .wait_lines(10, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("traffic stalled after the failover: {e}\n{}", pair.logs()));
    let report = traffic.snapshot();
    println!(
        "fullnat pair: master SIGKILLed, lb2 master after {} ms: {report}",
        took_over.duration_since(killed).as_millis()
    );
    assert_eq!(report.kept(), 40, "{report}\n{}", pair.logs());
    let window = killed..took_over + Duration::from_secs(1);
    let failed = report.failures_outside(window.clone());
    assert!(failed.is_empty(), "{report}\n{failed:?}");

    // lb1 returns: it adopts its data plane, takes lb2's tables (NAT flows
    // included: bulk sync), and only then preempts.
    pair.start(0, "running; SIGINT");
    pair.lbd[0]
        .as_ref()
        .unwrap()
        .wait_log("to=MASTER", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("lb1 not master again: {e}\n{}", pair.logs()));
    let log = pair.lbd[0].as_ref().unwrap().log();
    let restart = log.rfind("adopted the data plane").expect("adopted");
    let bulk = log[restart..].find("bulk sync complete");
    let master = log[restart..].find("to=MASTER");
    assert!(
        bulk.is_some() && bulk < master,
        "bulk sync before preempting\n{log}"
    );
    traffic.wait_lines(10, Duration::from_secs(15)).unwrap();
    let report = traffic.stop();
    println!("fullnat pair: lb1 back and master again: {report}");
    let bulk_flows = pair.sync_status(0)["peers"][0]["bulk_flows"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        bulk_flows >= 40,
        "lb2's NAT flows came in the bulk answer: {bulk_flows}"
    );
    assert_eq!(report.kept(), 40, "{report}\n{}", pair.logs());
    assert!(report.failures_outside(window).is_empty(), "{report}");
}

/// Two LB nodes, each with two arms: `eth0` on the clients' LAN
/// (198.18.0.0/24, the external VIP in instance `VI_EXT`), `eth1` on the
/// servers' LAN (198.18.2.0/24, the servers' gateway 198.18.2.1 in
/// instance `VI_INT`), both instances in one sync group: the LVS-NAT
/// two-NIC setup. The service is `nat`: the servers' default route is the
/// gateway VIP, so their replies go through whichever node holds it.
/// Connection sync runs over the clients' LAN.
struct GroupPair {
    /// First: dropped (daemons stopped) before the LANs.
    nodes: Nodes,
    outside: Lan,
    inside: Lan,
}

impl std::ops::Deref for GroupPair {
    type Target = Nodes;
    fn deref(&self) -> &Nodes {
        &self.nodes
    }
}

impl std::ops::DerefMut for GroupPair {
    fn deref_mut(&mut self) -> &mut Nodes {
        &mut self.nodes
    }
}

impl GroupPair {
    fn new() -> Self {
        let mut outside = Lan::new().expect("create LAN (run as root)");
        outside
            .add_host("client", "198.18.0.1/24", "2001:db8::1/64")
            .unwrap();
        let mut inside = Lan::new().unwrap();
        add_servers(&mut inside, true);
        for (i, (lb, addr, inner)) in PAIR.iter().enumerate() {
            let host = outside
                .add_host(
                    lb,
                    &format!("{addr}/24"),
                    &format!("2001:db8::{}/64", 2 + i),
                )
                .unwrap();
            inside
                .add_port(
                    &host.ns,
                    "eth1",
                    &format!("{inner}/24"),
                    &format!("2001:db8:2::{}/64", 2 + i),
                )
                .unwrap();
        }
        // GRO on every bridge port of both LANs: frames redirected into a
        // veth in native mode need NAPI on its peer.
        outside.prepare_xdp("client").unwrap();
        inside.prepare_xdp(BACKENDS[0].0).unwrap();
        Self {
            nodes: Nodes::new(outside.prefix(), "natgroup"),
            outside,
            inside,
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        match self.inside.find_host(role) {
            Some(h) => &h.ns,
            None => &self.outside.host(role).ns,
        }
    }

    /// Node `node`'s file with the first `backends` of [`BACKENDS`]: lb1
    /// has the higher priority in both instances.
    fn config(&self, node: usize, backends: usize) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        // `preempt_delay`: a node back from FAULT lets its health checks
        // bring its servers back (2 x 200 ms) before it preempts. Without
        // it, it takes the VIPs back in about 400 ms, before its pool is
        // whole, and the peer's flows still waiting for a server here
        // (`sync::parked`) are balanced afresh meanwhile.
        let instance = |name: &str, interface: &str, vrid, vip: &str| VrrpInstance {
            priority: if node == 0 { 150 } else { 100 },
            advert_interval: ms(100),
            preempt_delay: Some(ms(1000)),
            ..VrrpInstance::new(name, interface, vrid, vec![format!("{vip}/24")])
        };
        let backends = BACKENDS[..backends]
            .iter()
            .map(|(_, a)| BackendConfig {
                port: Some(SERVER_PORT),
                ..BackendConfig::new(a.parse().unwrap())
            })
            .collect();
        Config {
            global: Global {
                router_id: Some(PAIR[node].0.into()),
                bpf_pin_path: self.pin_path(node),
                control_socket: self.socket(node),
                metrics_listen: None,
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Native,
                conntrack_entries: 65_536,
                backend_interface: Some("eth1".into()),
                ..Dataplane::new("eth0")
            }),
            vrrp_instance: vec![
                instance("VI_EXT", "eth0", 61, VIP),
                instance("VI_INT", "eth1", 62, LB_INSIDE),
            ],
            vrrp_sync_group: vec![VrrpSyncGroup::new(
                "VG_NAT",
                vec!["VI_EXT".into(), "VI_INT".into()],
            )],
            service: vec![Service {
                mode: Mode::Nat,
                health: Health {
                    kind: HealthKind::Tcp,
                    interval: ms(200),
                    timeout: ms(150),
                    ..Health::default()
                },
                ..Service::new(VIP.parse().unwrap(), 80, backends)
            }],
            sync: Some(Sync::new(
                "a test secret, 16+ characters",
                vec![PAIR[1 - node].1.parse().unwrap()],
            )),
            nat: Nat {
                flows: 4096,
                ..Nat::default()
            },
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn write_config(&self, node: usize, backends: usize) -> PathBuf {
        self.nodes.write_config(node, &self.config(node, backends))
    }

    /// Both nodes reload with the first `backends` servers.
    fn reload(&self, backends: usize) {
        for node in 0..2 {
            self.write_config(node, backends);
            let lbd = self.lbd[node].as_ref().unwrap();
            lbd.signal(libc::SIGHUP).unwrap();
            lbd.wait_log("applied", Duration::from_secs(5)).unwrap();
        }
    }

    fn start(&mut self, node: usize, ready: &str) {
        let config = self.config(node, 2);
        let ns = &self.outside.host(PAIR[node].0).ns;
        self.nodes.start(ns, node, &config, ready);
    }

    /// Whether `node` holds the external VIP and the servers' gateway.
    fn holds(&self, node: usize) -> (bool, bool) {
        let ns = self.ns(PAIR[node].0);
        (
            ns.has_address("eth0", VIP),
            ns.has_address("eth1", LB_INSIDE),
        )
    }

    /// Wait until `node` holds both VIPs and the other neither: when.
    fn wait_both_on(&self, node: usize, timeout: Duration) -> Instant {
        let done = wait_for(timeout, || {
            (self.holds(node) == (true, true) && self.holds(1 - node) == (false, false))
                .then(Instant::now)
        });
        done.unwrap_or_else(|| {
            panic!(
                "{} does not hold both VIPs alone within {timeout:?}: lb1 {:?}, lb2 {:?}\n{}",
                PAIR[node].0,
                self.holds(0),
                self.holds(1),
                self.logs()
            )
        })
    }

    /// Frames `node`'s program has redirected from one arm to the other
    /// (every forwarded frame of a two-armed node, both directions).
    fn redirected(&self, node: usize) -> u64 {
        let stats = lb_user::dataplane::stats::proto_stats_pinned(&self.pin_path(node)).unwrap();
        stats.iter().map(|c| c.redirect).sum()
    }

    /// nat: the servers see the client itself; lb2 holds lb1's flows.
    /// (The nodes' own inside addresses are their health checks'
    /// connections, which may be open at the moment of looking.)
    fn check_nat_and_sync(&self) {
        let mut peers = 0;
        for (name, _) in BACKENDS {
            let checks = |p: &SocketAddr| {
                PAIR.iter()
                    .any(|(_, _, inside)| p.ip().to_string() == *inside)
            };
            for p in server_peers(self.ns(name))
                .into_iter()
                .filter(|p| !checks(p))
            {
                assert_eq!(p.ip().to_string(), "198.18.0.1", "{name} sees {p}");
                peers += 1;
            }
        }
        assert!(peers >= 40, "the long-lived connections are on the servers");
        let synced = self.sync_status(1)["flows_applied"].as_u64().unwrap_or(0);
        assert!(
            synced >= 40,
            "lb2 holds lb1's NAT flows: {synced}\nlb1 sync: {}\nlb2 sync: {}\n{}",
            self.sync_status(0),
            self.sync_status(1),
            self.logs()
        );
    }

    /// While lb2 serves and lb1's `eth1` is down: 20 long-lived
    /// connections opened on lb2. lb1 has no server in its pool (its
    /// checks fail), so their synced flows wait there for one. Then a
    /// third server joins on both nodes: Maglev would now send about a
    /// third of these flows to it, so only the synced entries can keep
    /// them on lb1 once it takes over again.
    fn open_while_lb2_serves(&self, target: SocketAddr) -> Traffic {
        let opts = Options {
            long_lived: 20,
            new_per_sec: 0,
            ..Options::default()
        };
        let opened = Traffic::start(self.ns("client"), target, opts).unwrap();
        opened.wait_lines(3, Duration::from_secs(10)).unwrap();
        self.reload(3);
        opened.wait_lines(3, Duration::from_secs(10)).unwrap();
        let waiting = self.sync_status(0)["waiting_for_backend"]
            .as_u64()
            .unwrap_or(0);
        println!("nat sync group: lb1 holds {waiting} synced flows waiting for their servers");
        assert!(waiting >= 20, "lb1 keeps lb2's new flows: {waiting}");
        opened
    }

    fn sync_status(&self, node: usize) -> serde_json::Value {
        self.nodes.sync_status(self.ns(PAIR[node].0), node)
    }
}

/// Issue 14's setup under traffic: a sync group of the external VIP's
/// instance and the servers' gateway's, `nat` through two-armed nodes.
/// lb1's `eth1` goes down: its internal instance faults, the group takes
/// the external one along, and lb2 takes both VIPs; with the NAT flows
/// synced, every connection is kept. While lb2 serves, more connections
/// open (lb1, its servers down for it, keeps their synced flows waiting)
/// and a third server joins on both nodes, so that balancing them afresh
/// would move a third of them. `eth1` comes back: lb1 takes both VIPs
/// back (preempt), and keeps every connection, old and new.
#[test]
fn nat_sync_group_keeps_connections_when_an_interface_goes_down() {
    let _serial = serial();
    let mut pair = GroupPair::new();
    let _servers: Vec<EchoServer> = BACKENDS
        .iter()
        .map(|(name, _)| EchoServer::start(pair.ns(name), name, SERVER_PORT).unwrap())
        .collect();
    pair.start(0, "service active");
    pair.start(1, "service standby");
    pair.lbd[1]
        .as_ref()
        .unwrap()
        .wait_log("bulk sync complete", Duration::from_secs(10))
        .unwrap();
    pair.wait_both_on(0, Duration::from_secs(5));

    let target: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let opts = Options {
        long_lived: 40,
        new_per_sec: 15,
        ..Options::default()
    };
    let traffic = Traffic::start(pair.ns("client"), target, opts).unwrap();
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    pair.check_nat_and_sync();

    // lb1 loses its servers' LAN: the whole group moves to lb2.
    let lb2_before = pair.redirected(1);
    let down = Instant::now();
    pair.ns("lb1").ip(&["link", "set", "eth1", "down"]).unwrap();
    let took_over = pair.wait_both_on(1, Duration::from_secs(5));
    traffic
        .wait_lines(10, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("traffic stalled after the failover: {e}\n{}", pair.logs()));
    let report = traffic.snapshot();
    let lb2_carried = pair.redirected(1) - lb2_before;
    println!(
        "nat sync group: lb1 eth1 down at +{} ms, lb2 holds both VIPs {} ms later \
         ({lb2_carried} frames forwarded by lb2 since): {report}",
        report.ms(down),
        took_over.duration_since(down).as_millis()
    );
    // Both directions of 10 lines on each of 40 connections went through
    // lb2, the replies too (it holds the servers' gateway).
    assert!(lb2_carried >= 800, "lb2 forwarded {lb2_carried} frames");
    assert_eq!(report.kept(), 40, "{report}\n{}", pair.logs());
    let window = down..took_over + Duration::from_secs(1);
    let failed = report.failures_outside(window.clone());
    assert!(failed.is_empty(), "{report}\n{failed:?}");
    let before_return = report.new.len();

    // Nothing reaches lb1 any more: the clients and the servers have
    // both learnt lb2's addresses.
    let lb1_idle = pair.redirected(0);
    traffic.wait_lines(5, Duration::from_secs(10)).unwrap();
    assert_eq!(pair.redirected(0), lb1_idle, "lb1 forwards nothing");

    let opened = pair.open_while_lb2_serves(target);

    // eth1 back: lb1 preempts both instances.
    let up = Instant::now();
    pair.ns("lb1").ip(&["link", "set", "eth1", "up"]).unwrap();
    let back = pair.wait_both_on(0, Duration::from_secs(5));
    traffic
        .wait_lines(10, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("traffic stalled after the return: {e}\n{}", pair.logs()));
    opened.wait_lines(5, Duration::from_secs(10)).unwrap();
    let (report, during) = (traffic.stop(), opened.stop());
    let lb1_carried = pair.redirected(0) - lb1_idle;
    println!(
        "nat sync group: lb1 eth1 up at +{} ms, lb1 holds both VIPs again {} ms later \
         ({lb1_carried} frames forwarded by lb1 since): {report}",
        report.ms(up),
        back.duration_since(up).as_millis()
    );
    println!(
        "nat sync group: {} new connections since the return; opened on lb2, by server: {:?}: \
         {during}",
        report.new.len() - before_return,
        during.long_lived_per_server()
    );
    let status = pair.sync_status(0);
    assert_eq!(
        status["waiting_for_backend"].as_u64(),
        Some(0),
        "lb1 wrote the waiting flows: {status}"
    );
    assert!(lb1_carried >= 800, "lb1 forwarded {lb1_carried} frames");
    assert_eq!(report.kept(), 40, "{report}\n{}", pair.logs());
    assert_eq!(during.kept(), 20, "{during}\n{}", pair.logs());
    let returned = up..back + Duration::from_secs(1);
    let failed: Vec<_> = report
        .failures_outside(window)
        .into_iter()
        .filter(|f| !f.overlaps(returned.start, returned.end))
        .collect();
    assert!(failed.is_empty(), "{report}\n{failed:?}");
    assert!(report.new_ok() > 0, "{report}");
}

/// MariaDB as Debian installs it (`mariadb-server`), one server in a
/// backend namespace: its own data directory under `dir`, listening on
/// 3306 with server id `id`, and a user `lab` allowed from anywhere
/// (created through the root socket, as an administrator would).
struct Mariadb {
    process: Option<Daemon>,
}

impl Mariadb {
    fn start(ns: &Netns, dir: &std::path::Path, id: u32) -> Self {
        let data = dir.join("data");
        let out = std::process::Command::new("mariadb-install-db")
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db (apt-get install mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = dir.join("mysqld.sock");
        let mut cmd = ns.command("mariadbd");
        cmd.args([
            "--no-defaults",
            "--user=root",
            "--port=3306",
            "--bind-address=0.0.0.0",
        ])
        .arg("--skip-name-resolve")
        .arg(format!("--server-id={id}"))
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()));
        let process = Daemon::spawn("mariadbd", &mut cmd, dir.join("mariadbd.log")).unwrap();
        process
            .wait_path(&socket, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("mariadbd did not start: {e}\n{}", process.log()));
        let sql = "CREATE USER 'lab'@'%' IDENTIFIED BY 'lab'; GRANT USAGE ON *.* TO 'lab'@'%';";
        let out = std::process::Command::new("mariadb")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            process: Some(process),
        }
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `mariadb` client connection through the VIP from the client
/// namespace: (server id, the client host the server sees).
fn mariadb_query(lab: &Lab) -> Result<(String, String), String> {
    let out = lab
        .ns("client")
        .command("mariadb")
        .args(["-h", VIP, "-P", "3306", "-u", "lab", "-plab", "-N", "-B"])
        .args(["--connect-timeout=3", "-e"])
        .arg("SELECT @@server_id, SUBSTRING_INDEX(USER(), '@', -1)")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (id, host) = text.trim().split_once('\t').ok_or(text.clone())?;
    Ok((id.to_owned(), host.to_owned()))
}

/// The user's seed test: two MariaDB servers behind the VIP in fullnat,
/// many client connections through it all succeed and land on both, the
/// servers see the LB's SNAT address; one server stopped leaves the pool
/// and every new connection succeeds on the other.
#[test]
fn mariadb_servers_behind_fullnat() {
    let _serial = serial();
    let mut lab = Lab::new(Mode::Fullnat);
    let mut servers: Vec<Mariadb> = BACKENDS[..2]
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let dir = lab.dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            Mariadb::start(lab.ns(name), &dir, u32::try_from(i).unwrap() + 1)
        })
        .collect();
    let backends = BACKENDS[..2]
        .iter()
        .map(|(_, a)| BackendConfig::new(a.parse().unwrap()))
        .collect();
    let ms = |ms| Dur(Duration::from_millis(ms));
    let text = lab.config_of(vec![Service {
        mode: Mode::Fullnat,
        health: Health {
            kind: HealthKind::Tcp,
            interval: ms(200),
            timeout: ms(150),
            rise: 2,
            fall: 2,
            ..Health::default()
        },
        ..Service::new(VIP.parse().unwrap(), 3306, backends)
    }]);
    std::fs::write(lab.dir.join("lb.toml"), text).unwrap();
    lab.run_lbd();

    let mut by_server: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..40 {
        let (id, host) = mariadb_query(&lab)
            .unwrap_or_else(|e| panic!("connection {i} failed: {e}\n{}", lab.log()));
        assert_eq!(host, LB_INSIDE, "the server sees the SNAT address");
        *by_server.entry(id).or_default() += 1;
    }
    println!("mariadb: 40 connections through the VIP by server id: {by_server:?}");
    assert_eq!(
        by_server.len(),
        2,
        "both servers took connections: {by_server:?}"
    );

    // Server 1 stops: it leaves the pool (fall 2 x 200 ms); every new
    // connection then succeeds on server 2.
    servers[0].stop();
    let gone = wait_for(Duration::from_secs(5), || {
        lab.lbctl(&["backends"])
            .lines()
            .any(|l| l.contains("198.18.2.11:3306") && l.contains(" down "))
            .then_some(())
    });
    assert!(gone.is_some(), "server 1 left the pool\n{}", lab.log());
    for i in 0..20 {
        let (id, _) = mariadb_query(&lab)
            .unwrap_or_else(|e| panic!("connection {i} after the stop failed: {e}\n{}", lab.log()));
        assert_eq!(id, "2", "only server 2 is left");
    }
    println!("mariadb: server 1 stopped; 20 of 20 new connections succeeded on server 2");
}
