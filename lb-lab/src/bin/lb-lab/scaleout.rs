//! The scale-out lab (`lb-lab up --scale-out`) and its benchmark
//! (`lb-lab scale-bench`): three active lbd nodes behind a router that
//! spreads flows over them by ECMP, BGP through bird2 with the files of
//! `examples/bird/`, connection sync among all three.
//!
//! ```text
//!   lblab-client  198.19.0.2     behind the router
//!   lblab-router  198.19.0.1 | 198.18.0.1   bird2: ECMP over the nodes, BFD
//!   lblab-lb1..3  198.18.0.2-4   lbd (dsr, generic XDP) + bird2
//!   lblab-web1..3 198.18.0.11-13 echo server :9000, nginx :80; VIP on lo,
//!                                replies through the router
//!   VIP           198.18.100.1   :9000 (echo), :80 (HTTP)
//! ```

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use std::io::{BufRead as _, BufReader, Write as _};

use lb_lab::{
    netns::Netns,
    traffic::{Options, Report, Traffic},
};
use lb_user::config::{
    Announce, BackendConfig, Bgp, Config, Dataplane, Dur, Global, Health, HealthKind, Mode,
    Service, Sync, XdpMode,
};

use super::{
    Cli, ECHO_PORT, Res, STATE, detach, down, in_ns, ip, kill_tag, lbctl, log, ns, spawn,
    start_echo, start_nginx, tcp_ok, wait, with_ns,
};

use lb_lab::scaleout::{NODES, ROUTER, VIP as SO_VIP};
const WEBS: [(&str, &str); 3] = [
    ("web1", "198.18.0.11"),
    ("web2", "198.18.0.12"),
    ("web3", "198.18.0.13"),
];
const SECRET: &str = "the scale-out lab's sync secret";

/// Whether the scale-out lab is the one up.
pub fn is_up() -> bool {
    Path::new(&format!("/var/run/netns/{}", ns("router"))).exists()
}

/// `examples/bird/NAME`, beside the lab's `examples/lab`.
fn bird_file(cli: &Cli, name: &str) -> PathBuf {
    cli.config_dir.join("../bird").join(name)
}

/// Bring the scale-out lab up: topology, servers, bird on the router and
/// every node, lbd on every node; wait until the router routes the VIP
/// through all three.
pub fn up(cli: &Cli) -> Res<()> {
    down();
    std::fs::create_dir_all(STATE).map_err(|e| e.to_string())?;
    topology()?;
    for (web, addr) in WEBS {
        start_nginx(web)?;
        start_echo(web)?;
        let ok = wait(Duration::from_secs(10), || {
            tcp_ok(&format!("{addr}:80")) && tcp_ok(&format!("{addr}:{ECHO_PORT}"))
        });
        if !ok {
            return Err(format!(
                "{web}: nginx or echo did not start (see {STATE}/{web}-*.log)"
            ));
        }
    }
    start_bird(cli, "router", "router.conf")?;
    for (node, _) in NODES {
        start_bird(cli, node, "lb-node.conf")?;
    }
    for (i, (node, _)) in NODES.iter().enumerate() {
        std::fs::write(config_path(node), config(i)).map_err(|e| e.to_string())?;
        start_lbd(cli, node)?;
    }
    if !wait(Duration::from_secs(30), || next_hops().len() == NODES.len()) {
        return Err(format!(
            "the router did not learn {SO_VIP} from all three nodes: next hops {:?}\n{}",
            next_hops(),
            log("lb1")
        ));
    }
    println!(
        "scale-out lab up: client 198.19.0.2 behind router 198.19.0.1/198.18.0.1 (bird2, ECMP), \
         lb1-3 198.18.0.2-4 (lbd + bird2, BGP), web1-3 198.18.0.11-13 (echo :{ECHO_PORT}, nginx :80); \
         VIP {SO_VIP} routed through {}",
        next_hops().join(", ")
    );
    println!(
        "try: ip netns exec {} curl http://{SO_VIP}/ ; ip -n {} route show {SO_VIP} ; \
         target/release/lbctl --socket {STATE}/lb1.sock status",
        ns("client"),
        ns("router")
    );
    Ok(())
}

/// Namespaces, links, addresses, routes and sysctls.
fn topology() -> Res<()> {
    let hosts: Vec<(&str, &str)> = [("router", ROUTER)]
        .into_iter()
        .chain(NODES)
        .chain(WEBS)
        .collect();
    super::bridge_with_hosts(&hosts)?;
    ip(&["netns", "add", &ns("client")])?;
    in_ns(
        "router",
        "ip",
        &[
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns("client"),
        ],
    )?;
    for (host, cidr) in [("router", "198.19.0.1/24"), ("client", "198.19.0.2/24")] {
        let dev = if host == "router" { "eth1" } else { "eth0" };
        in_ns(host, "ip", &["link", "set", "lo", "up"])?;
        in_ns(host, "ip", &["link", "set", dev, "up"])?;
        in_ns(host, "ip", &["addr", "add", cidr, "dev", dev])?;
    }
    in_ns(
        "client",
        "ip",
        &["route", "add", "default", "via", "198.19.0.1"],
    )?;
    // The client's kernel completes TCP checksums before XDP sees frames.
    in_ns("client", "ethtool", &["-K", "eth0", "tx", "off"])?;
    // The connection-rate rounds open tens of thousands of connections.
    for sysctl in [
        "net.ipv4.tcp_tw_reuse=1",
        "net.ipv4.ip_local_port_range=1024 65000",
    ] {
        in_ns("client", "sysctl", &["-qw", sysctl])?;
    }
    for sysctl in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.fib_multipath_hash_policy=1",
    ] {
        in_ns("router", "sysctl", &["-qw", sysctl])?;
    }
    for (web, _) in WEBS {
        Netns::existing(&ns(web))
            .and_then(|n| n.dsr_backend(SO_VIP))
            .map_err(|e| e.to_string())?;
        in_ns(web, "ip", &["route", "add", "default", "via", ROUTER])?;
    }
    Ok(())
}

fn start_bird(cli: &Cli, host: &str, file: &str) -> Res<()> {
    let conf = bird_file(cli, file);
    if !conf.exists() {
        return Err(format!("{} is missing", conf.display()));
    }
    let socket = bird_socket(host);
    let pid = Path::new(STATE).join(format!("{host}-bird.pid-file"));
    let args = [
        "-f",
        "-c",
        conf.to_str().unwrap_or_default(),
        "-s",
        socket.to_str().unwrap_or_default(),
        "-P",
        pid.to_str().unwrap_or_default(),
    ];
    let bird = spawn(
        host,
        &format!("{host}-bird"),
        Path::new("/usr/sbin/bird"),
        &args,
    )?;
    if bird.wait_path(&socket, Duration::from_secs(10)).is_err() {
        return Err(format!("bird on {host} did not start:\n{}", bird.log()));
    }
    detach(bird)
}

fn bird_socket(host: &str) -> PathBuf {
    Path::new(STATE).join(format!("{host}-bird.ctl"))
}

fn config_path(node: &str) -> PathBuf {
    Path::new(STATE).join(format!("{node}.toml"))
}

/// Node `i`'s lbd file: the echo and HTTP services announced by BGP, sync
/// with every node.
fn config(i: usize) -> String {
    let (node, _) = NODES[i];
    let ms = |ms| Dur(Duration::from_millis(ms));
    let service = |port| Service {
        mode: Mode::Dsr,
        announce: Announce::Bgp,
        health: Health {
            kind: HealthKind::Tcp,
            interval: ms(200),
            timeout: ms(150),
            ..Health::default()
        },
        ..Service::new(
            SO_VIP.parse().expect("an address"),
            port,
            WEBS.iter()
                .map(|(_, a)| BackendConfig::new(a.parse().expect("an address")))
                .collect(),
        )
    };
    Config {
        global: Global {
            router_id: Some(node.into()),
            bpf_pin_path: format!("/sys/fs/bpf/{}", ns(node)).into(),
            control_socket: Path::new(STATE).join(format!("{node}.sock")),
            metrics_listen: None,
        },
        dataplane: Some(Dataplane {
            xdp_mode: XdpMode::Generic,
            ..Dataplane::new("eth0")
        }),
        service: vec![service(ECHO_PORT), service(80)],
        sync: Some(Sync::new(
            SECRET,
            NODES
                .iter()
                .map(|(_, a)| a.parse().expect("an address"))
                .collect(),
        )),
        bgp: Some(Bgp::new(bird_socket(node))),
        ..Config::default()
    }
    .to_toml()
    .expect("the lab's configuration serializes")
}

fn start_lbd(cli: &Cli, node: &str) -> Res<()> {
    let conf = config_path(node);
    let lbd = spawn(
        node,
        node,
        &cli.bin_dir.join("lbd"),
        &["--config", conf.to_str().unwrap_or_default()],
    )?;
    if lbd
        .wait_log("running; SIGINT", Duration::from_secs(20))
        .is_err()
    {
        return Err(format!("lbd on {node} did not start:\n{}", lbd.log()));
    }
    detach(lbd)
}

/// The next hops of the router's route to the VIP.
fn next_hops() -> Vec<String> {
    lb_lab::scaleout::next_hops(
        &in_ns("router", "ip", &["route", "show", SO_VIP]).unwrap_or_default(),
    )
}

/// Wait until the route goes through `n` nodes; when it did.
fn wait_hops(n: usize, what: &str) -> Res<Instant> {
    if wait(Duration::from_secs(30), || next_hops().len() == n) {
        Ok(Instant::now())
    } else {
        Err(format!(
            "{what}: the router's next hops for {SO_VIP} are {:?}, want {n}",
            next_hops()
        ))
    }
}

/// `lab status` of the scale-out lab.
pub fn status(cli: &Cli) {
    println!("scale-out lab: {SO_VIP} routed through {:?}", next_hops());
    for (node, _) in NODES {
        match lbctl(cli, node, &["status"]) {
            Ok(out) => {
                for line in out
                    .lines()
                    .filter(|l| l.starts_with("bgp") || l.starts_with("sync"))
                {
                    println!("{node}: {line}");
                }
            }
            Err(e) => println!("{node}: lbd does not answer ({e})"),
        }
    }
}

/// `lb-lab scale-bench`: flows disrupted when a node leaves (SIGTERM),
/// joins, and dies (SIGKILL, link cut), with traffic flowing; then new
/// connections a second through three nodes against one, in alternating
/// rounds. Prints FIGURE lines. Leaves nothing behind.
pub fn bench(cli: &Cli, connections: usize, seconds: u64) -> Res<()> {
    up(cli)?;
    let result = bench_events(cli, connections).and_then(|()| bench_rate(cli, seconds));
    down();
    result
}

fn bench_events(cli: &Cli, connections: usize) -> Res<()> {
    let client = Netns::existing(&ns("client")).map_err(|e| e.to_string())?;
    let target: SocketAddr = format!("{SO_VIP}:{ECHO_PORT}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let opts = Options {
        long_lived: connections,
        ..Options::default()
    };
    println!(
        "scale-out: {connections} long-lived connections exchange a line every {} ms and {} new connections a second arrive through the three nodes",
        opts.interval.as_millis(),
        opts.new_per_sec
    );
    let traffic = Traffic::start(&client, target, opts).map_err(|e| e.to_string())?;
    let flow_on = |t: &Traffic| {
        t.wait_lines(10, Duration::from_secs(15))
            .map_err(|e| format!("traffic stalled: {e}"))
    };
    flow_on(&traffic)?;
    let t0 = Instant::now();
    kill_tag("lb3", libc::SIGTERM);
    let left = wait_hops(2, "lb3 stopped")?;
    flow_on(&traffic)?;
    std::thread::sleep(Duration::from_secs(2));
    let t1 = Instant::now();
    start_lbd(cli, "lb3")?;
    let joined = wait_hops(3, "lb3 back")?;
    flow_on(&traffic)?;
    std::thread::sleep(Duration::from_secs(2));
    let t2 = Instant::now();
    kill_tag("lb2", libc::SIGKILL);
    in_ns("lb2", "ip", &["link", "set", "eth0", "down"])?;
    let died = wait_hops(2, "lb2 killed")?;
    flow_on(&traffic)?;
    std::thread::sleep(Duration::from_secs(2));
    let t3 = Instant::now();
    in_ns("lb2", "ip", &["link", "set", "eth0", "up"])?;
    start_lbd(cli, "lb2")?;
    let returned = wait_hops(3, "lb2 back")?;
    flow_on(&traffic)?;
    std::thread::sleep(Duration::from_secs(2));
    let r = traffic.stop();
    println!("{r}");
    for (what, from, to, took) in [
        ("leaves (SIGTERM)", t0, t1, left - t0),
        ("joins (start, bulk sync)", t1, t2, joined - t1),
        ("dies (SIGKILL, link cut)", t2, t3, died - t2),
        (
            "returns (link up, lbd adopts)",
            t3,
            Instant::now(),
            returned - t3,
        ),
    ] {
        let (broken, new_failed) = event_failures(&r, from, to);
        println!(
            "node {what}: route changed after {} ms; established connections broken {broken} of {}, new connections failed {new_failed}",
            took.as_millis(),
            r.long_lived.len()
        );
    }
    let (leave_broken, _) = event_failures(&r, t0, t1);
    let (join_broken, _) = event_failures(&r, t1, t2);
    let (death_broken, death_new) = event_failures(&r, t2, t3);
    println!(
        "FIGURE scaleout_established_broken_on_leave={leave_broken} unit=connections target=0"
    );
    println!("FIGURE scaleout_established_broken_on_join={join_broken} unit=connections target=0");
    println!(
        "FIGURE scaleout_established_broken_on_death={death_broken} unit=connections target=0"
    );
    println!("FIGURE scaleout_new_failed_on_death={death_new} unit=connections");
    println!(
        "FIGURE scaleout_established_kept={} unit=connections of={}",
        r.kept(),
        r.long_lived.len()
    );
    Ok(())
}

/// Established connections broken and new connections failed between
/// `from` and `to`.
fn event_failures(r: &Report, from: Instant, to: Instant) -> (usize, usize) {
    let broken = r
        .long_lived
        .iter()
        .filter(|l| l.failure().is_some_and(|f| f.overlaps(from, to)))
        .count();
    let new_failed = r.new_failures().filter(|f| f.overlaps(from, to)).count();
    (broken, new_failed)
}

/// New connections a second (connect, one line each way, close; 16
/// clients in a closed loop) through three nodes and through one (the
/// other two's BGP sessions disabled in bird), alternating, `seconds` a
/// round, three rounds each.
fn bench_rate(cli: &Cli, seconds: u64) -> Res<()> {
    let mut three = Vec::new();
    let mut one = Vec::new();
    let mut busiest = (Vec::new(), Vec::new());
    for round in 0..3 {
        wait_hops(3, "three nodes")?;
        let (rate, share) = conn_rate(cli, seconds)?;
        three.push(rate);
        busiest.0.push(share);
        for node in ["lb2", "lb3"] {
            birdc(node, "disable uplink")?;
        }
        wait_hops(1, "one node")?;
        let (rate, share) = conn_rate(cli, seconds)?;
        one.push(rate);
        busiest.1.push(share);
        for node in ["lb2", "lb3"] {
            birdc(node, "enable uplink")?;
        }
        println!(
            "round {}: new connections/s through 3 nodes {:.0} (busiest node made {:.0}% of the new flows), through 1 node {:.0} ({:.0}%)",
            round + 1,
            three[round],
            100.0 * busiest.0[round],
            one[round],
            100.0 * busiest.1[round]
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / 3.0;
    println!(
        "FIGURE scaleout_busiest_node_share_3_nodes={:.2} unit=fraction",
        mean(&busiest.0)
    );
    println!(
        "FIGURE scaleout_busiest_node_share_1_node={:.2} unit=fraction",
        mean(&busiest.1)
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m3, m1) = (median(&mut three), median(&mut one));
    println!(
        "new connections/s, median of 3 rounds: 3 nodes {m3:.0}, 1 node {m1:.0} ({:.2} x); every namespace shares this machine's CPUs, so the clients and servers, not the nodes, set the rate here",
        m3 / m1
    );
    println!("FIGURE scaleout_conns_per_s_3_nodes={m3:.0} unit=conn/s");
    println!("FIGURE scaleout_conns_per_s_1_node={m1:.0} unit=conn/s");
    println!("FIGURE scaleout_conns_3_over_1={:.2} unit=x", m3 / m1);
    Ok(())
}

fn birdc(node: &str, command: &str) -> Res<String> {
    let socket = bird_socket(node);
    let mut cmd = std::process::Command::new("birdc");
    cmd.arg("-s").arg(&socket).args(command.split_whitespace());
    super::run(&mut cmd)
}

/// Every node's count of new flows (all its services).
fn new_flows(cli: &Cli) -> Vec<u64> {
    NODES
        .iter()
        .map(|(node, _)| {
            lbctl(cli, node, &["--json", "stats"])
                .ok()
                .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
                .and_then(|v| {
                    v["data"].as_array().map(|services| {
                        services
                            .iter()
                            .filter_map(|s| s["total"]["new_flows"].as_u64())
                            .sum()
                    })
                })
                .unwrap_or(0)
        })
        .collect()
}

/// Completed connections a second over `seconds`, 16 clients in a loop,
/// and the share of the new flows the busiest node made.
fn conn_rate(cli: &Cli, seconds: u64) -> Res<(f64, f64)> {
    let target: SocketAddr = format!("{SO_VIP}:{ECHO_PORT}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let before = new_flows(cli);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                with_ns("client", || {
                    while !stop.load(Ordering::Relaxed) {
                        if exchange_once(target) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let n = done.load(Ordering::Relaxed);
    let made: Vec<u64> = new_flows(cli)
        .iter()
        .zip(&before)
        .map(|(after, before)| after.saturating_sub(*before))
        .collect();
    let total = made.iter().sum::<u64>().max(1);
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    Ok((
        n as f64 / started.elapsed().as_secs_f64(),
        *made.iter().max().unwrap_or(&0) as f64 / total as f64,
    ))
}

/// Connect, send a line, read the answer, close.
fn exchange_once(target: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reader = BufReader::new(stream);
    if reader.get_mut().write_all(b"rate\n").is_err() {
        return false;
    }
    let mut line = String::new();
    reader.read_line(&mut line).is_ok_and(|n| n > 0)
}
