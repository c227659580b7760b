//! `lb-lab`: the built-in lab and the demo. Run by `cargo xtask lab ...` and
//! `cargo xtask demo` (release build, root).
//!
//! Topology, network namespaces on one bridge, addresses from
//! 198.18.0.0/15 (RFC 2544 benchmarking space):
//!
//! ```text
//!   lblab-client  198.18.0.1     curl-like HTTP and Redis clients
//!   lblab-lb1     198.18.0.2     lbd, VRRP priority 150
//!   lblab-lb2     198.18.0.3     lbd, VRRP priority 100
//!   lblab-web1..3 198.18.0.11-13 nginx :80, redis-server :6379 and an
//!                                echo server :9000 (`lb-lab echo`),
//!                                VIP 198.18.0.100 on lo (dsr backends)
//!   lblab-db1..2  198.18.1.21-22 redis-server :6379, nothing else: no VIP,
//!                                no route to the client (fullnat backends)
//!   VIP           198.18.0.100   :80 (HTTP), :6379 (Redis, dsr),
//!                                :9000 (echo), :6380 (Redis, fullnat)
//!   inside        198.18.1.1     the LBs' VRRP address on 198.18.1.0/24,
//!                                fullnat's source address (lb1 and lb2
//!                                have 198.18.1.2 and .3 of their own)
//! ```
//!
//! The LB failover (demo step 5, `bench`) happens under traffic from
//! `lb_lab::traffic`: long-lived connections exchanging a line with the
//! echo servers every 100 ms and new connections arriving, counted kept,
//! moved or broken.
//!
//! `up` cleans up first (after a crash too), `down` leaves nothing behind
//! (processes, namespaces, pins, the state directory).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt as _;

use clap::Parser;
use lb_lab::{
    daemon::{self, Daemon},
    netns::Netns,
    traffic::{EchoServer, FailKind, Options, Outcome, Report, Traffic},
};

const PREFIX: &str = "lblab-";
const STATE: &str = "/run/lb-lab";
const VIP: &str = "198.18.0.100";
const WEBS: [(&str, &str); 3] = [
    ("web1", "198.18.0.11"),
    ("web2", "198.18.0.12"),
    ("web3", "198.18.0.13"),
];
const LBS: [(&str, &str); 2] = [("lb1", "198.18.0.2"), ("lb2", "198.18.0.3")];
/// The dsr backends: the VIP on lo (never announced or answered for), then
/// nginx, Redis and the echo server.
fn start_webs() -> Res<()> {
    for (web, _) in WEBS {
        // LVS-DR backend: the VIP on lo, never announced or answered for.
        in_ns(
            web,
            "ip",
            &["addr", "add", &format!("{VIP}/32"), "dev", "lo"],
        )?;
        for k in ["all", "eth0"] {
            in_ns(
                web,
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{k}.arp_ignore=1")],
            )?;
            in_ns(
                web,
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{k}.arp_announce=2")],
            )?;
        }
        start_nginx(web)?;
        start_redis(web)?;
        start_echo(web)?;
    }
    Ok(())
}

/// The fullnat service's Redis servers, on another subnet.
const DBS: [(&str, &str); 2] = [("db1", "198.18.1.21"), ("db2", "198.18.1.22")];
/// The LBs' own addresses on the servers' subnet (health checks).
const LB_INSIDE: [(&str, &str); 2] = [("lb1", "198.18.1.2"), ("lb2", "198.18.1.3")];
/// fullnat's source address: a VRRP address of the LBs.
const SNAT: &str = "198.18.1.1";
/// The fullnat Redis service's port on the VIP.
const FULLNAT_PORT: u16 = 6380;
/// The echo servers' port (a service of `examples/lab/lb*.toml`).
const ECHO_PORT: u16 = 9000;

/// The lab (network namespaces on this machine) and the demo.
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Directory holding lbd and lbctl.
    #[arg(long, global = true, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Directory holding the lab's lbd configurations.
    #[arg(long, global = true, default_value = "examples/lab")]
    config_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Create the topology and start the backends' servers.
    Up {
        /// The scale-out topology instead: a router running bird2 (ECMP,
        /// BFD) in front of three lbd nodes announcing the VIP
        /// 198.18.100.1 over BGP, with bird and lbd started on each.
        #[arg(long)]
        scale_out: bool,
    },
    /// Remove everything the lab created.
    Down,
    /// What runs.
    Status,
    /// The narrated demo: up, lbd on both LB nodes, traffic, a backend
    /// failure, an LB failover under traffic, the old master's return,
    /// down.
    Demo,
    /// Flow benchmark on the lab: established connections kept across an
    /// LB failover; connections and 5-tuples moved when one of three
    /// backends leaves the pool; traffic flowing through both. Prints
    /// FIGURE lines.
    Bench {
        /// Long-lived connections exchanging lines through each event.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Fixed 5-tuples mapped before and after the removal.
        #[arg(long, default_value_t = 300)]
        tuples: u16,
    },
    /// Scale-out benchmark on the scale-out lab: established connections
    /// broken when a node leaves, joins, dies and returns, traffic
    /// flowing; new connections a second through three nodes against
    /// one. Prints FIGURE lines.
    ScaleBench {
        /// Long-lived connections exchanging lines through each event.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Seconds per connection-rate round.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Run an echo server (each line back, prefixed with NAME) on PORT of
    /// every address, in this process's network namespace, until killed;
    /// `up` starts one in each backend.
    Echo {
        /// The name it answers with.
        #[arg(long)]
        name: String,
        /// The port.
        #[arg(long, default_value_t = ECHO_PORT)]
        port: u16,
    },
}

type Res<T> = Result<T, String>;

#[path = "lb-lab/scaleout.rs"]
mod scaleout;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up { scale_out: false } => up(),
        Cmd::Up { scale_out: true } => scaleout::up(&cli),
        Cmd::Down => {
            down();
            println!("lab removed");
            Ok(())
        }
        Cmd::Status => {
            if scaleout::is_up() {
                scaleout::status(&cli);
            } else {
                status(&cli);
            }
            Ok(())
        }
        Cmd::ScaleBench {
            connections,
            seconds,
        } => scaleout::bench(&cli, connections, seconds),
        Cmd::Demo => demo(&cli),
        Cmd::Bench {
            connections,
            tuples,
        } => {
            let r = flow_bench(&cli, connections, tuples);
            down();
            r
        }
        Cmd::Echo { name, port } => echo(&name, port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ns(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn run(cmd: &mut Command) -> Res<String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Res<String> {
    run(Command::new("ip").args(args))
}

fn in_ns(name: &str, program: &str, args: &[&str]) -> Res<String> {
    run(Command::new("ip")
        .args(["netns", "exec", &ns(name), program])
        .args(args))
}

/// Start a daemon in a namespace (in a process group of its own, so the
/// terminal's Ctrl-C does not reach it), its output in the state dir.
fn spawn(name: &str, tag: &str, program: &Path, args: &[&str]) -> Res<Daemon> {
    // Only the network namespace, not `ip netns exec`'s private mount
    // namespace: lbd's pins must sit on the host's bpffs, or its data
    // plane goes with the process (the failover step kills lbd).
    let mut cmd = Netns::existing(&ns(name))
        .map_err(|e| e.to_string())?
        .command(program);
    cmd.args(args).process_group(0);
    Daemon::spawn(tag, &mut cmd, Path::new(STATE).join(format!("{tag}.log")))
        .map_err(|e| e.to_string())
}

/// Leave `daemon` running after this tool exits (`lab up`), its pid in the
/// state dir for `kill_tag` and `status`.
fn detach(daemon: Daemon) -> Res<()> {
    let pid_file = Path::new(STATE).join(format!("{}.pid", daemon.name()));
    let pid = daemon.detach();
    std::fs::write(pid_file, pid.to_string()).map_err(|e| e.to_string())
}

/// The pid a detached daemon left in the state dir.
fn tag_pid(tag: &str) -> Option<i32> {
    std::fs::read_to_string(Path::new(STATE).join(format!("{tag}.pid")))
        .ok()
        .and_then(|p| p.trim().parse().ok())
}

/// Send `signal` to the detached daemon `tag` and forget its pid.
fn kill_tag(tag: &str, signal: i32) {
    if let Some(pid) = tag_pid(tag) {
        let _gone = daemon::signal_pid(pid, signal);
        let _ = std::fs::remove_file(Path::new(STATE).join(format!("{tag}.pid")));
    }
}

fn lab_namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Remove everything: processes in lab namespaces, the namespaces, pins,
/// the state directory.
fn down() {
    for name in lab_namespaces() {
        for pid in ip(&["netns", "pids", &name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _gone = daemon::signal_pid(pid, libc::SIGKILL);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for name in lab_namespaces() {
        let _ = ip(&["netns", "del", &name]);
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(STATE);
}

fn up() -> Res<()> {
    down();
    std::fs::create_dir_all(STATE).map_err(|e| e.to_string())?;
    let hosts: Vec<(&str, &str)> = [("client", "198.18.0.1")]
        .into_iter()
        .chain(LBS)
        .chain(WEBS)
        .chain(DBS)
        .collect();
    bridge_with_hosts(&hosts)?;
    // The client's kernel completes TCP checksums before XDP sees frames;
    // so do the fullnat servers' (their replies go through XDP too). A veth
    // wiring detail: a NIC never hands XDP a partial checksum.
    for host in ["client", "db1", "db2"] {
        in_ns(host, "ethtool", &["-K", "eth0", "tx", "off"])?;
    }
    for (lb, addr) in LB_INSIDE {
        in_ns(
            lb,
            "ip",
            &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
    }
    start_webs()?;
    // Servers answering on their own addresses.
    for (web, addr) in WEBS {
        let ok = wait(Duration::from_secs(10), || {
            tcp_ok(&format!("{addr}:80"))
                && tcp_ok(&format!("{addr}:6379"))
                && tcp_ok(&format!("{addr}:{ECHO_PORT}"))
        });
        if !ok {
            return Err(format!(
                "{web}: nginx, redis or echo did not start (see {STATE}/{web}-*.log)"
            ));
        }
        in_ns(web, "redis-cli", &["-h", addr, "SET", "lab:name", web])?;
    }
    start_dbs()?;
    println!(
        "lab up: client 198.18.0.1, lb1 198.18.0.2, lb2 198.18.0.3, web1-3 198.18.0.11-13 (nginx :80, redis :6379, echo :{ECHO_PORT}), db1-2 198.18.1.21-22 (redis :6379); VIP {VIP}"
    );
    Ok(())
}

/// The lab's bridge (namespace `br`, multicast snooping off so VRRP floods
/// as on a plain switch) and `hosts` on it: each a namespace with `eth0`
/// on the bridge holding ADDR/24.
fn bridge_with_hosts(hosts: &[(&str, &str)]) -> Res<()> {
    ip(&["netns", "add", &ns("br")])?;
    in_ns(
        "br",
        "ip",
        &[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    in_ns("br", "ip", &["link", "set", "br0", "up"])?;
    for (i, (host, addr)) in hosts.iter().enumerate() {
        let port = format!("p{}", i + 1);
        ip(&["netns", "add", &ns(host)])?;
        in_ns(
            "br",
            "ip",
            &[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns(host),
            ],
        )?;
        in_ns("br", "ip", &["link", "set", &port, "master", "br0", "up"])?;
        // XDP_TX into a veth needs NAPI on the receiving peer.
        in_ns("br", "ethtool", &["-K", &port, "gro", "on"])?;
        in_ns(host, "ip", &["link", "set", "lo", "up"])?;
        in_ns(host, "ip", &["link", "set", "eth0", "up"])?;
        in_ns(
            host,
            "ip",
            &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
    }
    Ok(())
}

/// The fullnat service's Redis servers, each naming itself in `lab:name`.
fn start_dbs() -> Res<()> {
    for (db, addr) in DBS {
        start_redis(db)?;
        if !wait(Duration::from_secs(10), || {
            tcp_ok_from(db, &format!("{addr}:6379"))
        }) {
            return Err(format!(
                "{db}: redis did not start (see {STATE}/{db}-redis.log)"
            ));
        }
        in_ns(db, "redis-cli", &["-h", addr, "SET", "lab:name", db])?;
    }
    Ok(())
}

fn start_nginx(web: &str) -> Res<()> {
    let dir = Path::new(STATE).join(web);
    let conf_path =
        lb_lab::netns::nginx_site(&dir, &format!("{web}\n")).map_err(|e| e.to_string())?;
    detach(spawn(
        web,
        &format!("{web}-nginx"),
        Path::new("/usr/sbin/nginx"),
        &["-c", conf_path.to_str().unwrap_or_default()],
    )?)
}

fn start_redis(web: &str) -> Res<()> {
    detach(spawn(
        web,
        &format!("{web}-redis"),
        Path::new("/usr/bin/redis-server"),
        &[
            "--port",
            "6379",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
    )?)
}

/// `lb-lab echo` in `web`'s namespace: this program again.
fn start_echo(web: &str) -> Res<()> {
    let me = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    detach(spawn(
        web,
        &format!("{web}-echo"),
        &me,
        &["echo", "--name", web, "--port", &ECHO_PORT.to_string()],
    )?)
}

/// `lb-lab echo`: serve until killed (SIGTERM or SIGKILL; the kernel
/// closes the connections).
fn echo(name: &str, port: u16) -> Res<()> {
    let _server = EchoServer::bind(name, port).map_err(|e| e.to_string())?;
    println!("echo server {name} on port {port}");
    loop {
        std::thread::park();
    }
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Run `f` on a thread inside namespace `name`.
fn with_ns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Res<T> {
    let path = format!("/var/run/netns/{}", ns(name));
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd as _;
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: a valid namespace fd; only this thread changes.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| "thread panicked".to_owned())?
    })
}

/// Whether a TCP connect from this host's own namespace (the lab's
/// bridge is not reachable from here: probe from the client) works.
fn tcp_ok(addr: &str) -> bool {
    tcp_ok_from("client", addr)
}

/// A TCP connect from namespace `from` with a 300 ms timeout.
fn tcp_ok_from(from: &str, addr: &str) -> bool {
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => return false,
    };
    with_ns(from, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    })
    .unwrap_or(false)
}

/// A TCP connect from the client with a 20 ms timeout.
fn tcp_connect_fast(addr: &str) -> bool {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return false;
    };
    with_ns("client", || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(20)).is_ok()
    })
    .unwrap_or(false)
}

/// One HTTP GET through the VIP from the client: the backend's name.
fn http_get() -> Res<String> {
    with_ns("client", || -> Res<String> {
        let addr: SocketAddr = format!("{VIP}:80").parse().map_err(|_| "addr")?;
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        Ok(text
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or("")
            .trim()
            .to_owned())
    })?
}

/// One Redis GET lab:name through the VIP: the backend's name.
fn redis_get() -> Res<String> {
    redis_get_on(6379)
}

/// One Redis GET lab:name through VIP:`port`: the backend's name.
fn redis_get_on(port: u16) -> Res<String> {
    with_ns("client", || -> Res<String> {
        let addr: SocketAddr = format!("{VIP}:{port}").parse().map_err(|_| "addr")?;
        let s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let mut r = BufReader::new(s);
        r.get_mut()
            .write_all(b"GET lab:name\r\n")
            .map_err(|e| e.to_string())?;
        let mut len = String::new();
        r.read_line(&mut len).map_err(|e| e.to_string())?;
        let mut val = String::new();
        r.read_line(&mut val).map_err(|e| e.to_string())?;
        Ok(val.trim().to_owned())
    })?
}

/// Redis `CLIENT INFO` asked through the fullnat service: how the server
/// sees this very connection, `(addr, laddr)`: the client address it
/// sees and its own.
fn redis_client_info() -> Res<(String, String)> {
    with_ns("client", || -> Res<(String, String)> {
        let addr: SocketAddr = format!("{VIP}:{FULLNAT_PORT}")
            .parse()
            .map_err(|_| "addr")?;
        let s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let mut r = BufReader::new(s);
        r.get_mut()
            .write_all(b"CLIENT INFO\r\n")
            .map_err(|e| e.to_string())?;
        let mut len = String::new();
        r.read_line(&mut len).map_err(|e| e.to_string())?;
        let mut info = String::new();
        r.read_line(&mut info).map_err(|e| e.to_string())?;
        let field = |name: &str| {
            info.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name))
                .unwrap_or("?")
                .to_owned()
        };
        Ok((field("addr="), field("laddr=")))
    })?
}

fn holds(lb: &str) -> bool {
    in_ns(lb, "ip", &["-br", "addr", "show", "eth0"]).is_ok_and(|o| {
        o.split_whitespace()
            .any(|w| w.starts_with(&format!("{VIP}/")))
    })
}

/// The LB nodes holding the VIP (a killed master keeps its copy: nothing
/// ran to remove it; the survivor's gratuitous ARPs move the clients).
fn holders() -> Vec<&'static str> {
    LBS.iter().map(|(n, _)| *n).filter(|lb| holds(lb)).collect()
}

fn lbctl(cli: &Cli, lb: &str, args: &[&str]) -> Res<String> {
    run(Command::new(cli.bin_dir.join("lbctl"))
        .arg("--socket")
        .arg(Path::new(STATE).join(format!("{lb}.sock")))
        .args(args))
}

fn start_lbd(cli: &Cli, lb: &str) -> Res<()> {
    let conf = cli.config_dir.join(format!("{lb}.toml"));
    if !conf.exists() {
        return Err(format!("{} is missing", conf.display()));
    }
    let lbd = spawn(
        lb,
        lb,
        &cli.bin_dir.join("lbd"),
        &["--config", conf.to_str().unwrap_or_default()],
    )?;
    let sock = Path::new(STATE).join(format!("{lb}.sock"));
    if lbd.wait_path(&sock, Duration::from_secs(15)).is_err() {
        return Err(format!("lbd on {lb} did not start:\n{}", log(lb)));
    }
    detach(lbd)
}

fn log(tag: &str) -> String {
    std::fs::read_to_string(Path::new(STATE).join(format!("{tag}.log"))).unwrap_or_default()
}

fn status(cli: &Cli) {
    let names = lab_namespaces();
    if names.is_empty() {
        println!("lab is down");
        return;
    }
    println!("namespaces: {}", names.join(" "));
    for (tag, what) in [
        ("lb1", "lbd"),
        ("lb2", "lbd"),
        ("web1-nginx", "nginx"),
        ("web2-nginx", "nginx"),
        ("web3-nginx", "nginx"),
        ("db1-redis", "redis"),
        ("db2-redis", "redis"),
        ("web1-redis", "redis"),
        ("web2-redis", "redis"),
        ("web3-redis", "redis"),
        ("web1-echo", "echo"),
        ("web2-echo", "echo"),
        ("web3-echo", "echo"),
    ] {
        let alive = tag_pid(tag).is_some_and(|p| daemon::signal_pid(p, 0).is_ok());
        println!(
            "{tag:<11} {what:<6} {}",
            if alive { "running" } else { "stopped" }
        );
    }
    let h = holders();
    println!(
        "VIP {VIP} on: {}",
        if h.is_empty() {
            "nobody".into()
        } else {
            h.join(" ")
        }
    );
    for (lb, _) in LBS {
        if let Ok(out) = lbctl(cli, lb, &["vrrp"]) {
            print!("{lb}: {out}");
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

fn check_stop() -> Res<()> {
    if STOP.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

fn spread(requests: usize, get: fn() -> Res<String>) -> Res<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for _ in 0..requests {
        check_stop()?;
        let who = get()?;
        *counts.entry(who).or_insert(0) += 1;
    }
    Ok(counts)
}

fn print_counts(title: &str, counts: &BTreeMap<String, usize>) {
    let total: usize = counts.values().sum();
    println!("   {title}: {total} requests");
    for (who, n) in counts {
        println!(
            "     {who:<6} {n:>5}  {}",
            "#".repeat(n * 40 / total.max(1))
        );
    }
}

fn demo(cli: &Cli) -> Res<()> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let result = demo_steps(cli);
    step(9, "Cleaning up");
    down();
    println!("   lab removed: no namespaces, processes or pins left");
    result
}

/// Step 3b: Redis in fullnat, on servers that know nothing of the LB.
fn fullnat(cli: &Cli, summary: &mut Vec<(String, String)>) -> Res<()> {
    println!();
    println!(
        "   fullnat: {VIP}:{FULLNAT_PORT} -> db1, db2 (198.18.1.21-22:6379), Redis as Debian ships it;"
    );
    println!(
        "   no VIP on their lo, no ARP settings, no route to the client: lbd rewrites both ends"
    );
    let redis = spread(100, || redis_get_on(FULLNAT_PORT))?;
    print_counts("Redis GET lab:name on 198.18.0.100:6380 (fullnat)", &redis);
    let (seen_as, server) = redis_client_info()?;
    println!(
        "   Redis CLIENT INFO through the VIP: the server {server} sees the client as {seen_as}"
    );
    if !seen_as.starts_with(&format!("{SNAT}:")) {
        return Err(format!(
            "the server should see the SNAT address {SNAT}, not {seen_as}"
        ));
    }
    print!(
        "{}",
        lbctl(
            cli,
            "lb1",
            &["flows", &format!("{VIP}:{FULLNAT_PORT}"), "--limit", "3"]
        )?
    );
    summary.push((
        "fullnat Redis servers".into(),
        format!("{} of 2, seen as {SNAT}", redis.len()),
    ));
    Ok(())
}

fn demo_steps(cli: &Cli) -> Res<()> {
    let mut summary: Vec<(String, String)> = Vec::new();
    step(
        1,
        "Bringing up the lab (network namespaces on this machine)",
    );
    let t = Instant::now();
    up()?;
    println!("   took {:.1} s", t.elapsed().as_secs_f64());
    check_stop()?;

    step(
        2,
        "Starting lbd on lb1 (VRRP priority 150) and lb2 (priority 100)",
    );
    let t = Instant::now();
    start_lbd(cli, "lb1")?;
    start_lbd(cli, "lb2")?;
    if !wait(Duration::from_secs(10), || holders() == ["lb1"]) {
        return Err(format!("lb1 did not become master:\n{}", log("lb1")));
    }
    let took = t.elapsed();
    println!(
        "   lb1 is MASTER and holds {VIP} after {:.2} s; lb2 is BACKUP",
        took.as_secs_f64()
    );
    if !wait(Duration::from_secs(10), || http_get().is_ok()) {
        return Err(format!("the VIP does not answer:\n{}", log("lb1")));
    }
    print!("{}", lbctl(cli, "lb1", &["vrrp"])?);
    summary.push((
        "master elected".into(),
        format!("{:.2} s", took.as_secs_f64()),
    ));
    check_stop()?;

    step(
        3,
        "Requests from the client spread over the backends (Maglev, dsr)",
    );
    let http = spread(300, http_get)?;
    print_counts("HTTP GET http://198.18.0.100/", &http);
    let redis = spread(150, redis_get)?;
    print_counts("Redis GET lab:name on 198.18.0.100:6379", &redis);
    summary.push((
        "backends serving HTTP".into(),
        format!("{} of 3", http.len()),
    ));
    check_stop()?;

    fullnat(cli, &mut summary)?;
    check_stop()?;

    backend_fails(cli, &mut summary)?;
    check_stop()?;

    lb_fails(cli, &mut summary)?;
    check_stop()?;

    step(
        6,
        "lb1 returns: it clears the VIP it left behind, then takes over again (preempt)",
    );
    let t = Instant::now();
    start_lbd(cli, "lb1")?;
    if !wait(Duration::from_secs(10), || {
        holders() == ["lb1"] && http_get().is_ok()
    }) {
        return Err(format!("lb1 did not take back the VIP:\n{}", log("lb1")));
    }
    let back = t.elapsed();
    println!("   lb1 is MASTER again after {:.2} s", back.as_secs_f64());
    print!("{}", lbctl(cli, "lb1", &["vrrp"])?);
    summary.push((
        "old master back".into(),
        format!("{:.2} s", back.as_secs_f64()),
    ));
    check_stop()?;

    step(7, "web2's nginx returns and rejoins the pool");
    start_nginx("web2")?;
    let t = Instant::now();
    if !wait(Duration::from_secs(10), || tcp_ok("198.18.0.12:80")) {
        return Err("web2's nginx did not start".into());
    }
    if !wait(Duration::from_secs(10), || {
        lbctl(cli, "lb1", &["backends"]).is_ok_and(|o| {
            o.lines()
                .any(|l| l.contains("198.18.0.12:80") && l.contains(" up "))
        })
    }) {
        return Err("web2 did not rejoin".into());
    }
    println!(
        "   rejoined after {:.2} s (rise 2)",
        t.elapsed().as_secs_f64()
    );
    let http = spread(300, http_get)?;
    print_counts("HTTP spread again", &http);

    step(8, "Summary");
    for (what, value) in &summary {
        println!("   {what:<40} {value}");
    }
    println!("   traffic through lb1 since it came back:");
    print!("{}", lbctl(cli, "lb1", &["stats"])?);
    Ok(())
}

/// Step 4: a backend's server stops; lbd notices and takes it out.
fn backend_fails(cli: &Cli, summary: &mut Vec<(String, String)>) -> Res<()> {
    step(
        4,
        "web2's nginx stops: its health check fails and it leaves the pool",
    );
    kill_tag("web2-nginx", libc::SIGKILL);
    let t = Instant::now();
    let left = wait(Duration::from_secs(10), || {
        lbctl(cli, "lb1", &["--json", "backends"]).is_ok_and(|o| {
            serde_json::from_str::<serde_json::Value>(&o).is_ok_and(|v| {
                v["data"].as_array().into_iter().flatten().any(|s| {
                    s["service"] == "198.18.0.100:80/tcp"
                        && s["backends"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|b| b["address"] == "198.18.0.12" && b["in_pool"] == false)
                })
            })
        })
    });
    if !left {
        return Err(format!("web2 stayed in the pool:\n{}", log("lb1")));
    }
    let detect = t.elapsed();
    println!(
        "   detected and removed after {:.2} s (http check every 1 s, fall 2)",
        detect.as_secs_f64()
    );
    print!("{}", lbctl(cli, "lb1", &["backends"])?);
    let http = spread(120, http_get)?;
    print_counts("HTTP after the failure (every request succeeds)", &http);
    summary.push((
        "backend failure detected".into(),
        format!("{:.2} s", detect.as_secs_f64()),
    ));
    Ok(())
}

/// The backends of service `VIP:port`/tcp that `lb` sees healthy (none if
/// lbctl does not answer). Not "in pool": a backup's services are
/// inactive, its pools empty, but it checks health all the same.
fn healthy(cli: &Cli, lb: &str, port: u16) -> Vec<String> {
    let service = format!("{VIP}:{port}/tcp");
    let Some(v) = lbctl(cli, lb, &["--json", "backends"])
        .ok()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
    else {
        return Vec::new();
    };
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["service"] == service.as_str())
        .flat_map(|s| s["backends"].as_array().into_iter().flatten())
        .filter(|b| b["healthy"] == true)
        .filter_map(|b| b["address"].as_str().map(str::to_owned))
        .collect()
}

/// The lab's client namespace, for [`Traffic::start`].
fn client_ns() -> Res<Netns> {
    Netns::existing(&ns("client")).map_err(|e| e.to_string())
}

/// Traffic from the client to the echo servers through the VIP, started
/// and flowing (every long-lived connection has exchanged 3 lines).
fn start_traffic(client: &Netns, opts: Options) -> Res<Traffic> {
    let target: SocketAddr = format!("{VIP}:{ECHO_PORT}")
        .parse()
        .map_err(|e| format!("{VIP}:{ECHO_PORT}: {e}"))?;
    let traffic = Traffic::start(client, target, opts).map_err(|e| e.to_string())?;
    traffic
        .wait_lines(3, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(traffic)
}

/// Let the traffic flow on after an event that ended at `end`: every
/// long-lived connection still alive exchanges 5 more lines, and a second
/// passes, so that new connections over the new path count too.
fn flow_on(traffic: &Traffic, end: Instant) -> Res<()> {
    traffic
        .wait_lines(5, Duration::from_secs(10))
        .map_err(|e| format!("traffic did not flow on: {e}"))?;
    if let Some(rest) = (end + Duration::from_secs(1)).checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    Ok(())
}

/// Kill the master lb1 (SIGKILL) and wait until the VIP answers through
/// lb2: when it was killed, and when the VIP answered again.
fn fail_over() -> Res<(Instant, Instant)> {
    kill_tag("lb1", libc::SIGKILL);
    let killed = Instant::now();
    // Probe with short connects (a SYN that still went to the dead node
    // would otherwise wait a whole TCP retransmission), then a request.
    let moved = wait(Duration::from_secs(10), || {
        holds("lb2") && tcp_connect_fast(&format!("{VIP}:80")) && http_get().is_ok()
    });
    if !moved {
        return Err(format!("lb2 did not take over:\n{}", log("lb2")));
    }
    Ok((killed, Instant::now()))
}

/// The report, indented under a step.
fn print_report(report: &Report) {
    for line in report.to_string().lines() {
        println!("   {line}");
    }
}

/// `"40 of 40 kept"`, or what became of the others.
fn kept_text(r: &Report) -> String {
    let n = r.long_lived.len();
    if r.kept() == n {
        return format!("{n} of {n} kept");
    }
    let mut text = format!(
        "{} of {n} kept, {} moved, {} broken",
        r.kept(),
        r.moved(),
        r.broken()
    );
    if r.broken() > 0 {
        text += &format!(" ({})", kinds_text(&r.broken_by_kind()));
    }
    text
}

/// `"38 reset, 2 reply timeout"`.
fn kinds_text(kinds: &BTreeMap<FailKind, usize>) -> String {
    kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many new connections failed, and whether only during `event`
/// (an attempt under way at some moment of it counts as during it).
fn new_failures_text(r: &Report, event: std::ops::Range<Instant>) -> String {
    let mut text = format!("{} of {} failed", r.new_failed(), r.new.len());
    if r.new_failed() > 0 {
        text += &format!(" ({})", kinds_text(&r.new_failed_by_kind()));
    }
    let outside = r.failures_outside(event);
    match outside.first() {
        _ if r.new_failed() == 0 => text,
        None => format!("{text}, all during it"),
        Some(first) => format!(
            "{text}, {} outside it (the first began at +{} ms, {} at +{} ms)",
            outside.len(),
            r.ms(first.started),
            first.kind,
            r.ms(first.at)
        ),
    }
}

/// Step 5: the master dies under traffic; the backup takes over and the
/// connections carry on.
fn lb_fails(cli: &Cli, summary: &mut Vec<(String, String)>) -> Res<()> {
    let opts = Options::default();
    step(
        5,
        &format!(
            "Traffic flows ({} connections exchange a line every {} ms, {} new ones a second); \
             then lb1 is killed (SIGKILL)",
            opts.long_lived,
            opts.interval.as_millis(),
            opts.new_per_sec
        ),
    );
    // Both LBs hold the same pools (web2's nginx down on both), hence the
    // same Maglev tables: lb2 sends each connection's packets where lb1 did.
    let same = wait(Duration::from_secs(10), || {
        LBS.iter().all(|(lb, _)| {
            healthy(cli, lb, 80).len() == 2 && healthy(cli, lb, ECHO_PORT).len() == 3
        })
    });
    if !same {
        return Err("lb1 and lb2 do not see the same backends".into());
    }
    let client = client_ns()?;
    let traffic = start_traffic(&client, opts)?;
    let per_server: Vec<String> = traffic
        .snapshot()
        .long_lived_per_server()
        .iter()
        .map(|(server, n)| format!("{server} {n}"))
        .collect();
    println!(
        "   {} connections to {VIP}:{ECHO_PORT} (echo servers) exchanging lines: {}",
        opts.long_lived,
        per_server.join(", ")
    );
    let (killed, answered) = fail_over()?;
    let failover = answered - killed;
    println!(
        "   lb2 is MASTER; the VIP answers again after {:.2} s (adverts every 100 ms)",
        failover.as_secs_f64()
    );
    flow_on(&traffic, answered)?;
    let report = traffic.stop();
    println!(
        "   traffic through the failover (lb1 killed at +{} ms):",
        report.ms(killed)
    );
    print_report(&report);
    summary.push((
        "LB failover (SIGKILL to VIP answering)".into(),
        format!("{:.2} s", failover.as_secs_f64()),
    ));
    summary.push((
        "live connections across failover".into(),
        kept_text(&report),
    ));
    summary.push((
        "new connections during failover".into(),
        new_failures_text(&report, killed..answered),
    ));
    let http = spread(120, http_get)?;
    print_counts("HTTP through lb2", &http);
    Ok(())
}

/// The backend a fresh connection from client port `port` lands on; the
/// connection is closed with RST (linger 0) so the 5-tuple can be reused at
/// once on both ends.
fn tuple_owner(port: u16) -> Res<String> {
    with_ns("client", || -> Res<String> {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        s.bind(&SocketAddr::from(([198, 18, 0, 1], port)).into())
            .map_err(|e| format!("bind :{port}: {e}"))?;
        let vip: SocketAddr = format!("{VIP}:80").parse().map_err(|_| "addr")?;
        s.connect_timeout(&vip.into(), Duration::from_secs(3))
            .map_err(|e| e.to_string())?;
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .ok();
        Ok(text
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or("")
            .trim()
            .to_owned())
    })?
}

fn flow_bench(cli: &Cli, connections: usize, tuples: u16) -> Res<()> {
    up()?;
    start_lbd(cli, "lb1")?;
    start_lbd(cli, "lb2")?;
    if !wait(Duration::from_secs(10), || {
        holders() == ["lb1"] && http_get().is_ok()
    }) {
        return Err(format!("lb1 did not become master:\n{}", log("lb1")));
    }
    // Both nodes must see all three backends healthy (same Maglev tables).
    for lb in ["lb1", "lb2"] {
        let all_up = wait(Duration::from_secs(10), || {
            [80, 6379, ECHO_PORT]
                .into_iter()
                .all(|port| healthy(cli, lb, port).len() == 3)
        });
        if !all_up {
            return Err(format!("{lb}: backends not all up"));
        }
    }
    let opts = Options {
        long_lived: connections,
        ..Options::default()
    };
    println!(
        "flow benchmark on the lab: through each event, {connections} long-lived connections \
         exchange a line every {} ms and {} new connections a second arrive ({VIP}:{ECHO_PORT}, \
         echo servers); {tuples} fixed 5-tuples",
        opts.interval.as_millis(),
        opts.new_per_sec
    );
    let client = client_ns()?;
    bench_failover(&client, opts)?;
    bench_backend_removal(cli, &client, opts, tuples)
}

/// The flow benchmark's first part: an LB failover under traffic.
fn bench_failover(client: &Netns, opts: Options) -> Res<()> {
    let traffic = start_traffic(client, opts)?;
    let (killed, answered) = fail_over()?;
    flow_on(&traffic, answered)?;
    let r = traffic.stop();
    println!(
        "LB failover: lb1 killed at +{} ms, the VIP answered through lb2 at +{} ms",
        r.ms(killed),
        r.ms(answered)
    );
    for line in r.to_string().lines() {
        println!("  {line}");
    }
    let kept_pct = 100.0 * r.kept() as f64 / r.long_lived.len().max(1) as f64;
    println!(
        "established connections kept across LB failover: {}/{} ({kept_pct:.1}%), {} moved, {} broken; failover {:.0} ms",
        r.kept(),
        r.long_lived.len(),
        r.moved(),
        r.broken(),
        (answered - killed).as_secs_f64() * 1e3
    );
    println!(
        "new connections during the LB failover: {}",
        new_failures_text(&r, killed..answered)
    );
    println!("FIGURE flows_kept_across_failover={kept_pct:.1} unit=% target=100");
    println!(
        "FIGURE new_conns_failed_across_failover={} unit=connections",
        r.new_failed()
    );
    Ok(())
}

/// The flow benchmark's second part: one of three backends leaves the
/// pool (its nginx and echo server are killed) under traffic; which
/// 5-tuples move.
fn bench_backend_removal(cli: &Cli, client: &Netns, opts: Options, tuples: u16) -> Res<()> {
    // Below the ephemeral range (32768-60999), so no connection of the
    // traffic can hold one of these ports.
    let base = 20000u16;
    let mut before = Vec::new();
    for i in 0..tuples {
        before.push(tuple_owner(base + i)?);
    }
    let traffic = start_traffic(client, opts)?;
    kill_tag("web2-nginx", libc::SIGKILL);
    kill_tag("web2-echo", libc::SIGKILL);
    let killed = Instant::now();
    let left = wait(Duration::from_secs(10), || {
        [80, ECHO_PORT]
            .into_iter()
            .all(|port| !healthy(cli, "lb2", port).iter().any(|a| a == "198.18.0.12"))
    });
    if !left {
        return Err("web2 did not leave the pool".into());
    }
    let removed = Instant::now();
    flow_on(&traffic, removed)?;
    let r = traffic.stop();
    println!(
        "backend removal: web2's servers killed at +{} ms, web2 out of both pools at +{} ms",
        r.ms(killed),
        r.ms(removed)
    );
    for line in r.to_string().lines() {
        println!("  {line}");
    }
    let (web2, others): (Vec<_>, Vec<_>) =
        r.long_lived.iter().partition(|l| l.first_server == "web2");
    let kept_conns = others.iter().filter(|l| l.outcome == Outcome::Kept).count();
    let live_other = others.len();
    let web2_broken = web2.iter().filter(|l| l.is_broken()).count();
    println!(
        "new connections while web2 left: {}",
        new_failures_text(&r, killed..removed)
    );

    let mut moved_other = 0;
    let mut on_other = 0;
    let mut moved_total = 0;
    for (i, owner) in before.iter().enumerate() {
        let now = tuple_owner(base + u16::try_from(i).unwrap_or(0))?;
        if now != *owner {
            moved_total += 1;
        }
        if owner != "web2" {
            on_other += 1;
            if now != *owner {
                moved_other += 1;
            }
        }
    }
    let moved_pct = 100.0 * f64::from(moved_total) / f64::from(tuples);
    let moved_other_pct = 100.0 * f64::from(moved_other) / f64::from(on_other.max(1));
    println!(
        "5-tuples remapped when 1 of 3 backends left: {moved_total}/{tuples} ({moved_pct:.1}%; ideal {:.1}%, the removed backend's share); \
         of those on the remaining backends: {moved_other}/{on_other} ({moved_other_pct:.1}%)",
        100.0 * f64::from(tuples - u16::try_from(on_other).unwrap_or(0)) / f64::from(tuples)
    );
    println!(
        "established connections to the remaining backends kept: {kept_conns}/{live_other}; \
         to web2: {web2_broken}/{} broken",
        web2.len()
    );
    println!("FIGURE tuples_moved_on_backend_removal={moved_pct:.1} unit=%");
    println!("FIGURE tuples_moved_among_remaining={moved_other_pct:.1} unit=% target=0");
    println!(
        "FIGURE conns_kept_on_backend_removal={:.1} unit=% target=100",
        100.0 * kept_conns as f64 / live_other.max(1) as f64
    );
    Ok(())
}
