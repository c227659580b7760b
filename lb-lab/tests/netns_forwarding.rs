//! Kernel test, end to end: a client namespace, an LB namespace with the
//! XDP program on its veth, and three backend namespaces running real TCP
//! servers, on one bridge. Real TCP connections through the VIP in `dsr`
//! mode and in `ipip` mode (with `lbd decap` on the backends):
//! - every connection completes, and they spread over all three backends;
//! - a backend removed from the pool while long-lived connections to the
//!   other two keep exchanging data, without a reset;
//! - a backend set to weight 0 takes no new connections while its
//!   established ones continue.
//!
//! The LB side runs in this process (`Dataplane` + `Balancer`), as the
//! controller will drive it; MACs come from the kernel's neighbour table.
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lb_common::config::Config;
use lb_lab::netns::{Lan, Netns, wait_for};
use lb_user::{
    dataplane::balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Protocol, ServiceKey, ServiceSpec,
    },
    dataplane::loader::{AttachMode, Dataplane, Options, Role},
    sys::neigh,
};

const VIP: &str = "198.18.0.100";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "198.18.0.11"),
    ("b2", "198.18.0.12"),
    ("b3", "198.18.0.13"),
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A TCP server in a backend namespace: greets with its name, then echoes.
struct Server {
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(ns: &Netns, name: &'static str) -> Self {
        let listener = ns
            .run(|| TcpListener::bind((VIP, 80)).expect("bind VIP:80 on a backend"))
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            if conn.write_all(format!("{name}\n").as_bytes()).is_err() {
                                return;
                            }
                            let mut buf = [0u8; 256];
                            while let Ok(n) = conn.read(&mut buf) {
                                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A client connection through the VIP, and the backend that answered.
struct Conn {
    stream: BufReader<TcpStream>,
    backend: String,
}

impl Conn {
    fn open(client: &Netns) -> Result<Self, String> {
        let stream = client
            .run(|| {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([198, 18, 0, 100], 80)),
                    Duration::from_secs(3),
                )
            })
            .unwrap()
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut stream = BufReader::new(stream);
        let mut backend = String::new();
        stream
            .read_line(&mut backend)
            .map_err(|e| format!("greeting: {e}"))?;
        if backend.is_empty() {
            return Err("closed before greeting".into());
        }
        Ok(Self {
            stream,
            backend: backend.trim().to_owned(),
        })
    }

    /// Send a line and read it back.
    fn echo(&mut self, msg: &str) -> Result<(), String> {
        self.stream
            .get_mut()
            .write_all(format!("{msg}\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut back = String::new();
        self.stream
            .read_line(&mut back)
            .map_err(|e| format!("echo: {e}"))?;
        if back.trim() == msg {
            Ok(())
        } else {
            Err(format!("echo {back:?} for {msg:?}"))
        }
    }
}

struct Topology {
    lan: Lan,
    _servers: Vec<Server>,
    dataplane: Dataplane,
    balancer: Balancer<EbpfMaps>,
    key: ServiceKey,
    macs: HashMap<&'static str, [u8; 6]>,
}

#[allow(
    clippy::too_many_lines,
    reason = "the test topology, built step by step; it reads top to bottom"
)]
fn topology(mode: Mode, attach: AttachMode) -> Topology {
    let mut lan = Lan::client_lb_backends(&BACKENDS).expect("create LAN (run as root)");
    // The LB answers ARP for the VIP (VRRP will do this in production).
    lan.host("lb")
        .ns
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])
        .unwrap();
    let mut servers = Vec::new();
    for (name, _) in BACKENDS {
        let ns = &lan.host(name).ns;
        ns.dsr_backend(VIP).unwrap();
        if mode == Mode::Ipip {
            let pin = PathBuf::from(format!("/sys/fs/bpf/{}{name}", lan.prefix()));
            let log = std::fs::File::create(
                std::env::temp_dir().join(format!("{}{name}-decap.log", lan.prefix())),
            )
            .unwrap();
            let mut cmd = ns.command(lb_lab::bin("lbd"));
            cmd.args([
                "decap",
                "--iface",
                "eth0",
                "--pin-path",
                pin.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
            ns.spawn(&mut cmd).unwrap();
            assert!(
                wait_for(Duration::from_secs(15), || pin
                    .join("stats_decap")
                    .exists()
                    .then_some(()))
                .is_some(),
                "lbd decap did not start on {name}"
            );
        }
        servers.push(Server::start(ns, name));
    }

    if attach == AttachMode::Native {
        // Native XDP_TX on a veth reaches the peer (bridge port p2) only
        // when the peer runs an XDP program too.
        lan.xdp_pass_on_port("p2").unwrap();
    }
    let lb = &lan.host("lb").ns;
    let opts = Options {
        iface: "eth0".into(),
        mode: attach,
        pin_path: PathBuf::from(format!("/sys/fs/bpf/{}lb", lan.prefix())),
        replace: false,
        role: Role::Balancer,
        flow_entries: 65_536,
        backend_pairs: lb_common::backend::MAX_BACKENDS,
        nat_flows: 1024,
        flow_events: false,
        backend_iface: None,
    };
    let mut dataplane = lb
        .run(|| rt().block_on(Dataplane::start(&opts)))
        .unwrap()
        .expect("start the data plane");
    let mut balancer = Balancer::new(EbpfMaps::take(dataplane.ebpf_mut()).unwrap());
    balancer
        .set_config(&Config {
            ipip_src_v4_be: u32::from_ne_bytes([198, 18, 255, 0]),
            ipip_src_v4_mask_be: u32::from_ne_bytes([0, 0, 0, 255]),
            mtu: 1500,
            ..Config::default()
        })
        .unwrap();
    let (_, ifindex) = dataplane.interface();
    let mut macs = HashMap::new();
    for (name, addr) in BACKENDS {
        let hop = lb
            .run(|| {
                rt().block_on(neigh::resolve(
                    addr.parse().unwrap(),
                    Some(&[ifindex]),
                    Duration::from_secs(3),
                ))
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("resolve {addr}: {e}"));
        assert_eq!(
            hop.mac,
            lan.host(name).mac().unwrap(),
            "neighbour table gives {name}'s MAC"
        );
        macs.insert(name, hop.mac);
    }
    let key = ServiceKey {
        vip: VIP.parse().unwrap(),
        port: 80,
        proto: Protocol::Tcp,
    };
    balancer
        .upsert_service(
            key,
            ServiceSpec {
                mode,
                ring_size: 65_537,
                on_no_backend: NoBackend::Drop,
                ..ServiceSpec::default()
            },
        )
        .unwrap();
    let mut topo = Topology {
        lan,
        _servers: servers,
        dataplane,
        balancer,
        key,
        macs,
    };
    set_pool(&mut topo, &[("b1", 1), ("b2", 1), ("b3", 1)]);
    topo
}

fn set_pool(t: &mut Topology, pool: &[(&'static str, u32)]) {
    let specs: Vec<BackendSpec> = pool
        .iter()
        .map(|&(name, weight)| {
            let addr: IpAddr = BACKENDS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .parse()
                .unwrap();
            BackendSpec {
                addr,
                weight,
                mac: t.macs[name],
                port: 0,
                snat: None,
                arm: 0,
            }
        })
        .collect();
    t.balancer.set_backends(&t.key, &specs).unwrap();
}

fn spread(t: &Topology, n: usize) -> HashMap<String, usize> {
    let client = &t.lan.host("client").ns;
    let mut counts = HashMap::new();
    for i in 0..n {
        let mut c = Conn::open(client).unwrap_or_else(|e| {
            let exits = lb_user::dataplane::stats::exit_stats_of(t.dataplane.ebpf()).unwrap();
            for (name, _) in BACKENDS {
                let out = t
                    .lan
                    .host(name)
                    .ns
                    .ip(&["-s", "link", "show", "eth0"])
                    .unwrap();
                eprintln!("{name}: {}", String::from_utf8_lossy(&out.stdout));
            }
            let out = t.lan.bridge().ip(&["-s", "link", "show", "p2"]).unwrap();
            eprintln!("p2: {}", String::from_utf8_lossy(&out.stdout));
            let out = t
                .lan
                .host("lb")
                .ns
                .ip(&["-d", "link", "show", "eth0"])
                .unwrap();
            eprintln!("lb: {}", String::from_utf8_lossy(&out.stdout));
            panic!("connection {i} through the VIP: {e}; exits {exits:?}")
        });
        c.echo(&format!("short {i}")).unwrap();
        *counts.entry(c.backend).or_insert(0) += 1;
    }
    counts
}

fn exercise(mode: Mode, attach: AttachMode) {
    let mut t = topology(mode, attach);
    let want = if attach == AttachMode::Native {
        "native"
    } else {
        "generic"
    };
    assert_eq!(t.dataplane.mode(), want, "attach mode in effect");
    let client = &t.lan.host("client").ns;

    let counts = spread(&t, 30);
    println!("{mode:?}: 30 connections over {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 30);
    assert_eq!(
        counts.len(),
        3,
        "connections spread over all three backends: {counts:?}"
    );

    // Long-lived connections, then b3 leaves the pool.
    let mut long: Vec<Conn> = (0..12).map(|_| Conn::open(client).unwrap()).collect();
    for (i, c) in long.iter_mut().enumerate() {
        c.echo(&format!("hello {i}")).unwrap();
    }
    set_pool(&mut t, &[("b1", 1), ("b2", 1)]);
    let mut kept = 0;
    for round in 0..3 {
        for (i, c) in long
            .iter_mut()
            .enumerate()
            .filter(|(_, c)| c.backend != "b3")
        {
            c.echo(&format!("after removal {round} {i}"))
                .unwrap_or_else(|e| panic!("connection to {} broke when b3 left: {e}", c.backend));
            kept += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(kept > 0, "some long-lived connections were on b1/b2");
    let counts = spread(&t, 20);
    assert!(
        !counts.contains_key("b3"),
        "removed backend gets no connections: {counts:?}"
    );

    // b3 back, b1 drained: b1's established connections continue, new ones
    // avoid it.
    set_pool(&mut t, &[("b1", 0), ("b2", 1), ("b3", 1)]);
    let on_b1 = long.iter().filter(|c| c.backend == "b1").count();
    for c in long.iter_mut().filter(|c| c.backend == "b1") {
        c.echo("while drained")
            .unwrap_or_else(|e| panic!("drained backend's connection broke: {e}"));
    }
    let counts = spread(&t, 30);
    println!("{mode:?}: after draining b1 (it kept {on_b1} established): {counts:?}");
    assert!(
        !counts.contains_key("b1"),
        "drained backend takes no new connections: {counts:?}"
    );
    assert!(counts.contains_key("b3"), "b3 is back: {counts:?}");

    let exits = lb_user::dataplane::stats::exit_stats_of(t.dataplane.ebpf()).unwrap();
    println!("{mode:?}: exit counters {exits:?}");
    match mode {
        Mode::Dsr => assert!(exits.tx_dsr > 0 && exits.tx_ipip == 0),
        Mode::Ipip => assert!(exits.tx_ipip > 0 && exits.tx_dsr == 0),
        Mode::Nat | Mode::Fullnat => unreachable!("run with dsr and ipip only"),
    }
    assert_eq!(exits.aborted, 0);
}

#[test]
fn dsr_end_to_end() {
    exercise(Mode::Dsr, AttachMode::Generic);
}

#[test]
fn ipip_end_to_end_with_decap_on_backends() {
    exercise(Mode::Ipip, AttachMode::Generic);
}

/// The same in native (driver) mode: veth delivers XDP_TX frames once the
/// peer has an XDP program (`Lan::xdp_pass_on_port`).
#[test]
fn dsr_end_to_end_native_xdp() {
    exercise(Mode::Dsr, AttachMode::Native);
}

#[test]
fn lbd_decap_help_names_the_job() {
    let out = Command::new(lb_lab::bin("lbd"))
        .args(["decap", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("decapsulator"));
}
