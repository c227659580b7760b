//! Kernel test: `lbd --config` as an operator runs it. A client namespace,
//! an LB namespace running lbd (data plane in `dsr`, a VRRP instance
//! holding the VIP, HTTP health checks), three backend namespaces running
//! nginx (Debian, started by the test). Checks, through real HTTP:
//! - requests spread over the backends;
//! - a backend whose nginx stops leaves the pool within fall × interval,
//!   and rejoins within rise × interval when it starts again;
//! - `lbctl drain`: no new connections to it, an established keep-alive
//!   connection continues; `lbctl enable` undoes it;
//! - SIGHUP with a changed backend list: established connections continue;
//!   SIGHUP with a broken file: the error is logged, the old config serves;
//! - every lbctl command, human and `--json`;
//! - a sorry server answers while the quorum is lost (no backend up, or
//!   too little weight), and stops when it is back, under a steady stream
//!   of requests; the backends' and the quorum's notify commands run at
//!   each change and when lbd stops (`notify_on_stop`);
//! - checks per backend (HTTP on one, TCP on another, a command and HTTP
//!   on the third): each failure takes exactly its backend out while the
//!   others serve, each repair brings it back.
//!
//! Needs root; `cargo xtask test` refuses to run without it.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
};
use lb_user::config::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, Protocol, Quorum,
    Service, SorryServer, Url, VrrpInstance, XdpMode,
};

static LBD: std::sync::LazyLock<std::path::PathBuf> =
    std::sync::LazyLock::new(|| lb_lab::bin("lbd"));
static LBCTL: std::sync::LazyLock<std::path::PathBuf> =
    std::sync::LazyLock::new(|| lb_lab::bin("lbctl"));
const VIP: &str = "198.18.0.100";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "198.18.0.11"),
    ("b2", "198.18.0.12"),
    ("b3", "198.18.0.13"),
];
/// Health checks: every 200 ms, down after 2 failures, up after 2 passes.
const INTERVAL_MS: u64 = 200;
const FALL: u32 = 2;
const RISE: u32 = 2;

/// nginx in a backend namespace, serving its name at `/`.
struct Nginx {
    dir: PathBuf,
    process: Option<Daemon>,
}

impl Nginx {
    fn start(ns: &Netns, dir: PathBuf, name: &str) -> Self {
        lb_lab::netns::nginx_site(&dir, name).unwrap();
        let mut me = Self { dir, process: None };
        me.run(ns);
        me
    }

    fn run(&mut self, ns: &Netns) {
        let mut cmd = ns.command("nginx");
        cmd.arg("-c").arg(self.dir.join("nginx.conf"));
        let nginx = Daemon::spawn("nginx", &mut cmd, self.dir.join("nginx.log"))
            .expect("start nginx (apt-get install nginx)");
        self.process = Some(nginx);
    }

    fn stop(&mut self) {
        if let Some(mut nginx) = self.process.take() {
            let _ = nginx.kill();
        }
        // master_process off: the one process we killed was the server.
        let _ = std::fs::remove_file(self.dir.join("nginx.pid"));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Lab {
    lan: Lan,
    dir: PathBuf,
    nginx: HashMap<&'static str, Nginx>,
    lbd: Option<Daemon>,
}

impl Lab {
    fn ns(&self, role: &str) -> &Netns {
        &self.lan.host(role).ns
    }

    /// lbd's file: the data plane, `VI_1` holding the VIP, and the HTTP
    /// service over `backends`.
    fn config(&self, backends: &[&str]) -> String {
        let ms = |ms| Dur(Duration::from_millis(ms));
        let backends = backends
            .iter()
            .map(|a| BackendConfig::new(a.parse().unwrap()))
            .collect();
        Config {
            global: Global {
                router_id: Some("lb-test".into()),
                bpf_pin_path: format!("/sys/fs/bpf/{}lb", self.lan.prefix()).into(),
                control_socket: self.dir.join("run/lbd.sock"),
                metrics_listen: Some("127.0.0.1:9678".parse().unwrap()),
            },
            dataplane: Some(Dataplane {
                xdp_mode: XdpMode::Generic,
                conntrack_entries: 65536,
                ..Dataplane::new("eth0")
            }),
            vrrp_instance: vec![VrrpInstance {
                priority: 150,
                advert_interval: ms(100),
                ..VrrpInstance::new("VI_1", "eth0", 50, vec![format!("{VIP}/24")])
            }],
            service: vec![Service {
                protocol: Protocol::Tcp,
                mode: Mode::Dsr,
                health: Health {
                    kind: HealthKind::Http,
                    path: "/".into(),
                    expect_status: lb_user::config::Statuses::one(200),
                    interval: ms(INTERVAL_MS),
                    timeout: ms(150),
                    rise: RISE,
                    fall: FALL,
                    ..Health::default()
                },
                ..Service::new(VIP.parse().unwrap(), 80, backends)
            }],
            ..Config::default()
        }
        .to_toml()
        .unwrap()
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.dir.join("lb.toml"), text).unwrap();
    }

    fn log(&self) -> String {
        self.lbd.as_ref().map(Daemon::log).unwrap_or_default()
    }

    fn lbctl(&self, args: &[&str]) -> Output {
        self.ns("lb")
            .command(&*LBCTL)
            .arg("--socket")
            .arg(self.dir.join("run/lbd.sock"))
            .args(args)
            .output()
            .unwrap()
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

    fn hup(&self) {
        self.lbd.as_ref().unwrap().signal(libc::SIGHUP).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // lbd first (stopped on drop), then the backends.
        self.lbd = None;
        self.nginx.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab() -> Lab {
    let all: Vec<&str> = BACKENDS.iter().map(|(_, a)| *a).collect();
    lab_with(|lab| lab.config(&all))
}

/// The lab with lbd started on the file `config` writes.
fn lab_with(config: impl FnOnce(&Lab) -> String) -> Lab {
    lab_with_args(&[], config)
}

/// The lab with lbd started on the file `config` writes, with `args` too.
fn lab_with_args(args: &[&str], config: impl FnOnce(&Lab) -> String) -> Lab {
    let lan = Lan::client_lb_backends(&BACKENDS).expect("create LAN (run as root)");
    let dir = std::env::temp_dir().join(format!("{}daemon", lan.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut nginx = HashMap::new();
    for (name, _) in BACKENDS {
        let ns = &lan.host(name).ns;
        ns.dsr_backend(VIP).unwrap();
        nginx.insert(name, Nginx::start(ns, dir.join(name), name));
    }
    let mut lab = Lab {
        lan,
        dir,
        nginx,
        lbd: None,
    };
    lab.write_config(&config(&lab));
    let mut cmd = lab.ns("lb").command(&*LBD);
    cmd.arg("--config").arg(lab.dir.join("lb.toml")).args(args);
    let lbd = Daemon::spawn("lbd", &mut cmd, lab.dir.join("lbd.log")).unwrap();
    if let Err(e) = lbd.wait_log("service active", Duration::from_secs(15)) {
        panic!("lbd did not activate the service: {e}");
    }
    lab.lbd = Some(lbd);
    lab
}

/// One HTTP request on a fresh connection: the backend's name.
fn get(ns: &Netns) -> Result<String, String> {
    ns.run(|| {
        let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
        // 3 s: room for one SYN retransmission (the first connection after
        // the service activates occasionally needs one).
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut body = String::new();
        s.read_to_string(&mut body)
            .map_err(|e| format!("read: {e}"))?;
        body.rsplit("\r\n\r\n")
            .next()
            .map(str::to_owned)
            .ok_or_else(|| "no body".to_owned())
    })
    .unwrap()
}

/// A keep-alive HTTP connection from the client namespace.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(ns: &Netns) -> Self {
        let s = ns
            .run(|| {
                let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
                TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            })
            .unwrap()
            .expect("keep-alive connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    /// One request on the connection: the backend's name.
    fn get(&mut self) -> String {
        self.reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
            .expect("keep-alive send");
        let mut len = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("keep-alive read");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("keep-alive body");
        String::from_utf8(body).unwrap()
    }
}

fn spread(lab: &Lab, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let who =
            get(lab.ns("client")).unwrap_or_else(|e| panic!("request failed: {e}\n{}", lab.log()));
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

fn in_pool(lab: &Lab, backend: &str) -> bool {
    pool(lab).contains(&backend.to_owned())
}

/// The backends in the pool (addresses), and every backend's reason.
fn pool_and_reasons(lab: &Lab) -> (Vec<String>, HashMap<String, String>) {
    let out = lab.lbctl_ok(&["--json", "backends"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let backends = v["data"][0]["backends"].as_array().unwrap();
    let name = |b: &serde_json::Value| b["address"].as_str().unwrap_or_default().to_owned();
    let pool = backends
        .iter()
        .filter(|b| b["in_pool"] == true)
        .map(name)
        .collect();
    let reasons = backends
        .iter()
        .map(|b| (name(b), b["reason"].as_str().unwrap_or_default().to_owned()))
        .collect();
    (pool, reasons)
}

fn pool(lab: &Lab) -> Vec<String> {
    pool_and_reasons(lab).0
}

/// Sets its flag when dropped: stops a request thread however the scope
/// around it ends (a failed assertion included), so the scope can join it.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A sorry server (b3) behind b1 (weight 2) and b2 (weight 1), with a
/// quorum of 2: requests go on (fresh connections every 50 ms) while both
/// backends' nginx stop and b1 starts again; once the checks have seen it,
/// every request is answered by the sorry server, and then by b1 alone
/// (its weight alone makes the quorum). The backends' and the quorum's
/// notify commands run at each change, and once more when lbd stops
/// (`notify_on_stop`, keepalived's `omega`).
#[test]
fn a_sorry_server_stands_in_while_no_backend_is_up() {
    let hooks = std::env::temp_dir().join(format!("lb-sorry-hooks-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&hooks);
    let echo = |word: &str| Some(format!("echo {word} >> {}", hooks.display()));
    let mut lab = lab_with(|lab| {
        let mut config = Config::parse(
            &lab.config(&["198.18.0.11", "198.18.0.12"]),
            std::path::Path::new("lb.toml"),
        )
        .unwrap();
        let svc = &mut config.service[0];
        svc.sorry_server = Some(SorryServer {
            address: "198.18.0.13".parse().unwrap(),
            port: None,
            inhibit: false,
        });
        svc.quorum = Some(Quorum {
            weight: 2,
            hysteresis: 0,
            notify_up: echo("quorum-up"),
            notify_down: echo("quorum-down"),
        });
        svc.notify_on_stop = true;
        for (b, name) in svc.backend.iter_mut().zip(["b1", "b2"]) {
            b.weight = if name == "b1" { 2 } else { 1 };
            b.notify_up = echo(&format!("{name}-up"));
            b.notify_down = echo(&format!("{name}-down"));
        }
        config.to_toml().unwrap()
    });
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Out of the lab while the request thread borrows it; back after.
    let mut nginx = std::mem::take(&mut lab.nginx);
    let (log, steps) = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let requests = scope.spawn(|| {
            let mut log = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                log.push((Instant::now(), get(lab.ns("client"))));
                std::thread::sleep(Duration::from_millis(50));
            }
            log
        });
        let wait_pool = |want: &[&str]| {
            let got = wait_for(Duration::from_secs(5), || {
                let mut p = pool(&lab);
                p.sort();
                (p == want).then_some(())
            });
            assert!(
                got.is_some(),
                "pool {:?}, want {want:?}\n{}",
                pool(&lab),
                lab.log()
            );
            Instant::now()
        };
        let start = wait_pool(&["198.18.0.11", "198.18.0.12"]);
        std::thread::sleep(Duration::from_millis(500));
        for name in ["b1", "b2"] {
            nginx.get_mut(name).unwrap().stop();
        }
        let sorry = wait_pool(&["198.18.0.13"]);
        std::thread::sleep(Duration::from_secs(1));
        // The sorry window ends when b1's nginx starts: its checks may
        // bring it back before this thread sees the pool change.
        let restart = Instant::now();
        nginx.get_mut("b1").unwrap().run(&lab.lan.host("b1").ns);
        let back = wait_pool(&["198.18.0.11"]);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (requests.join().unwrap(), [start, sorry, restart, back])
    });
    lab.nginx = nginx;
    let [start, sorry, restart, back] = steps;
    // Who answered in each settled window (a request in flight when the
    // pool changed may go either way: 200 ms of slack).
    let slack = Duration::from_millis(200);
    let answered = |from: Instant, to: Instant| {
        let mut who: HashMap<String, usize> = HashMap::new();
        for (at, r) in &log {
            if *at > from + slack && *at < to {
                let name = r.clone().unwrap_or_else(|e| format!("failed: {e}"));
                *who.entry(name).or_default() += 1;
            }
        }
        who
    };
    let before = answered(start, start + Duration::from_millis(500));
    let on_sorry = answered(sorry, restart);
    let after = answered(back, log.last().unwrap().0 + slack);
    println!("before {before:?}, on the sorry server {on_sorry:?}, after {after:?}");
    assert!(
        before.keys().all(|k| k == "b1" || k == "b2") && !before.is_empty(),
        "{before:?}"
    );
    assert_eq!(on_sorry.keys().collect::<Vec<_>>(), ["b3"], "{on_sorry:?}");
    assert_eq!(after.keys().collect::<Vec<_>>(), ["b1"], "{after:?}");
    assert!(
        lab.log()
            .contains("new flows go to the sorry server 198.18.0.13")
    );
    hooks_ran_and_run_on_stop(&mut lab, &hooks);
    let _ = std::fs::remove_file(&hooks);
}

/// The notify commands of the sorry-server test ran, each once per change
/// (`hooks` is their log), and run once more when lbd stops.
fn hooks_ran_and_run_on_stop(lab: &mut Lab, hooks: &std::path::Path) {
    // The hooks (each in the background: the two of one change may land
    // in either order).
    let lines = |n: usize| {
        let got = wait_for(Duration::from_secs(3), || {
            let text = std::fs::read_to_string(hooks).unwrap_or_default();
            let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
            (l.len() >= n).then(|| {
                l.sort();
                l
            })
        });
        got.unwrap_or_else(|| panic!("{:?}", std::fs::read_to_string(hooks)))
    };
    assert_eq!(
        lines(5),
        ["b1-down", "b1-up", "b2-down", "quorum-down", "quorum-up"]
    );
    assert!(lab.log().contains("quorum lost: the up backends weigh"));
    // lbd stops: b1's notify_down and the quorum's run once more.
    drop(lab.lbd.take());
    assert_eq!(
        lines(7),
        [
            "b1-down",
            "b1-down",
            "b1-up",
            "b2-down",
            "quorum-down",
            "quorum-down",
            "quorum-up"
        ]
    );
}

/// Wait (up to 5 s) until the pool is exactly `want`, then check that
/// requests are served by exactly those backends.
fn settled(lab: &Lab, want: &[&str]) {
    let got = wait_for(Duration::from_secs(5), || {
        let mut p = pool(lab);
        p.sort();
        (p == want).then_some(())
    });
    assert!(
        got.is_some(),
        "pool {:?}, want {want:?}\n{}",
        pool_and_reasons(lab),
        lab.log()
    );
    let counts = spread(lab, 30);
    let mut served: Vec<&str> = counts.keys().map(String::as_str).collect();
    served.sort_unstable();
    let names: Vec<&str> = BACKENDS
        .iter()
        .filter(|(_, a)| want.contains(a))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(served, names, "{counts:?}");
}

/// A test CA and a certificate for `b.lb.test` it signed, made with
/// `openssl` under `dir`: (CA file, certificate, key).
fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
                "-days",
                "2",
                "-subj",
                "/CN=lb test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                &p("b.key"),
                "-out",
                &p("b.csr"),
                "-subj",
                "/CN=b.lb.test",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("b.ext"),
        "subjectAltName=DNS:b.lb.test\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("b.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("b.ext"),
        "-out",
        &p("b.pem"),
    ]);
    (dir.join("ca.pem"), dir.join("b.pem"), dir.join("b.key"))
}

/// nginx serving `site`'s `html` over TLS on port 443 (beside the site's
/// own nginx on 80), with `cert` and `key`.
fn tls_nginx(
    ns: &Netns,
    site: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Nginx {
    let dir = site.with_extension("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let conf = format!(
        "master_process off;\nuser root;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{ listen 443 ssl; ssl_certificate {}; ssl_certificate_key {};\n\
         root {}/html; location / {{ default_type text/plain; }} }}\n}}\n",
        cert.display(),
        key.display(),
        site.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut nginx = Nginx { dir, process: None };
    nginx.run(ns);
    nginx
}

/// `https` checks (keepalived's SSL_GET) against nginx with certificates
/// the test made: b1 unverified (as keepalived) with two URLs, one with a
/// body digest; b2 verified against the test CA under its name; b3
/// verified under a name its certificate does not have, so it never
/// passes. A changed body takes b1 out and its old body brings it back;
/// b2's TLS server stopping takes it out (its plain HTTP still answers).
#[test]
fn https_checks_judge_urls_digests_and_certificates() {
    let ms = |ms| Dur(Duration::from_millis(ms));
    let mut tls = Vec::new();
    let lab = lab_with(|lab| {
        let (ca, cert, key) = test_certificates(&lab.dir.join("pki"));
        for (name, _) in BACKENDS {
            let site = lab.dir.join(name);
            tls.push(tls_nginx(lab.ns(name), &site, &cert, &key));
        }
        std::fs::write(lab.dir.join("b1/html/d.txt"), "hello").unwrap();
        let mut config = Config::parse(&lab.config(&[]), std::path::Path::new("lb.toml")).unwrap();
        let https = |virtualhost: Option<&str>, ca: Option<&std::path::Path>| Health {
            kind: HealthKind::Https,
            port: Some(443),
            interval: ms(INTERVAL_MS),
            timeout: ms(500),
            rise: RISE,
            fall: FALL,
            virtualhost: virtualhost.map(str::to_owned),
            tls_ca: ca.map(std::path::Path::to_path_buf),
            ..Health::default()
        };
        let b1 = Health {
            urls: vec![
                Url {
                    path: "/".into(),
                    expect_status: Some("200-299".parse().unwrap()),
                    digest: None,
                },
                Url {
                    path: "/d.txt".into(),
                    expect_status: None,
                    // MD5 of "hello".
                    digest: Some("5d41402abc4b2a76b9719d911017c592".into()),
                },
            ],
            ..https(None, None)
        };
        let own = [
            b1,
            https(Some("b.lb.test"), Some(&ca)),
            https(Some("wrong.lb.test"), Some(&ca)),
        ];
        config.service[0].backend = BACKENDS
            .iter()
            .zip(own)
            .map(|((_, addr), health)| BackendConfig {
                health: vec![health],
                ..BackendConfig::new(addr.parse().unwrap())
            })
            .collect();
        config.to_toml().unwrap()
    });
    settled(&lab, &["198.18.0.11", "198.18.0.12"]);
    let (_, reasons) = pool_and_reasons(&lab);
    let b3 = &reasons["198.18.0.13"];
    assert!(
        b3.starts_with("TLS: ") && b3.contains("certificate"),
        "{reasons:?}"
    );

    // b1's body changes: its digest no longer matches.
    std::fs::write(lab.dir.join("b1/html/d.txt"), "changed").unwrap();
    settled(&lab, &["198.18.0.12"]);
    let (_, reasons) = pool_and_reasons(&lab);
    assert!(
        reasons["198.18.0.11"].contains("GET /d.txt: body digest"),
        "{reasons:?}"
    );
    std::fs::write(lab.dir.join("b1/html/d.txt"), "hello").unwrap();
    settled(&lab, &["198.18.0.11", "198.18.0.12"]);

    // b2's TLS server stops; its plain nginx (the traffic's) still runs.
    tls[1].stop();
    settled(&lab, &["198.18.0.11"]);
    tls[1].run(lab.ns("b2"));
    settled(&lab, &["198.18.0.11", "198.18.0.12"]);
    drop(tls);
}

/// Every backend its own checks: b1 HTTP on `/ready`, b2 TCP, b3 a
/// command (a file exists) and HTTP. Each failure takes exactly its
/// backend out, while requests keep being served by the others; each
/// repair brings it back.
/// lbd's log, run with `--log-format json`: every line one JSON object
/// with a time stamp, a level and a message; the lines whose message
/// contains `needle`.
fn json_log_lines(log: &str, needle: &str) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "message"] {
            assert!(v[field].is_string(), "no {field} in {line}");
        }
        if v["message"].as_str().unwrap().contains(needle) {
            found.push(v);
        }
    }
    found
}

/// Also: lbd runs with `--log-format json` here, and its state changes
/// are JSON objects carrying their fields.
#[test]
fn per_backend_checks_take_out_exactly_the_failing_backend() {
    let ms = |ms| Dur(Duration::from_millis(ms));
    let check = |kind| Health {
        kind,
        interval: ms(INTERVAL_MS),
        timeout: ms(150),
        rise: RISE,
        fall: FALL,
        ..Health::default()
    };
    let mut lab = lab_with_args(&["--log-format", "json"], |lab| {
        let ok_file = lab.dir.join("b3/ok");
        std::fs::write(lab.dir.join("b1/html/ready"), "ready").unwrap();
        std::fs::write(&ok_file, "").unwrap();
        let mut config = Config::parse(&lab.config(&[]), std::path::Path::new("lb.toml")).unwrap();
        let own = [
            vec![Health {
                path: "/ready".into(),
                ..check(HealthKind::Http)
            }],
            vec![check(HealthKind::Tcp)],
            vec![
                Health {
                    command: Some(format!("test -e {}", ok_file.display())),
                    ..check(HealthKind::Exec)
                },
                check(HealthKind::Http),
            ],
        ];
        config.service[0].backend = BACKENDS
            .iter()
            .zip(own)
            .map(|((_, addr), health)| BackendConfig {
                health,
                ..BackendConfig::new(addr.parse().unwrap())
            })
            .collect();
        config.to_toml().unwrap()
    });
    settled(&lab, &["198.18.0.11", "198.18.0.12", "198.18.0.13"]);

    // b1's HTTP check fails (404 on /ready; its TCP port still answers).
    std::fs::remove_file(lab.dir.join("b1/html/ready")).unwrap();
    settled(&lab, &["198.18.0.12", "198.18.0.13"]);
    std::fs::write(lab.dir.join("b1/html/ready"), "ready").unwrap();
    settled(&lab, &["198.18.0.11", "198.18.0.12", "198.18.0.13"]);

    // b2's TCP check fails: its nginx stops.
    lab.nginx.get_mut("b2").unwrap().stop();
    settled(&lab, &["198.18.0.11", "198.18.0.13"]);
    let ns = &lab.lan.host("b2").ns;
    lab.nginx.get_mut("b2").unwrap().run(ns);
    settled(&lab, &["198.18.0.11", "198.18.0.12", "198.18.0.13"]);

    // b3's command fails; its HTTP check still passes, and the reason
    // says which of its two checks took it out.
    std::fs::remove_file(lab.dir.join("b3/ok")).unwrap();
    settled(&lab, &["198.18.0.11", "198.18.0.12"]);
    let (_, reasons) = pool_and_reasons(&lab);
    assert!(
        reasons["198.18.0.13"].starts_with("check 1 of 2 (exec)"),
        "{reasons:?}"
    );
    std::fs::write(lab.dir.join("b3/ok"), "").unwrap();
    settled(&lab, &["198.18.0.11", "198.18.0.12", "198.18.0.13"]);

    // The log: JSON, one object a line; b2's fall a WARN with the
    // service and backend as fields of their own.
    let downs = json_log_lines(&lab.log(), "backend down");
    let b2 = downs
        .iter()
        .find(|v| {
            v["backend"]
                .as_str()
                .is_some_and(|b| b.contains("198.18.0.12"))
        })
        .unwrap_or_else(|| panic!("no JSON line for b2 going down: {downs:?}"));
    assert_eq!(b2["level"], "WARN", "{b2}");
    assert!(
        b2["service"].as_str().is_some_and(|s| s.contains(VIP)),
        "{b2}"
    );
    assert_eq!(json_log_lines(&lab.log(), "service active").len(), 1);
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario (health, drain, reload, lbctl) that reads top to bottom"
)]
fn daemon_health_drain_reload_and_lbctl() {
    let mut lab = lab();

    // Spread over all three.
    let counts = spread(&lab, 60);
    assert_eq!(counts.len(), 3, "all backends serve: {counts:?}");

    // b1's nginx stops: it leaves the pool within fall × interval (plus a
    // check's timeout and scheduling slack).
    lab.nginx.get_mut("b1").unwrap().stop();
    let start = Instant::now();
    let left = wait_for(Duration::from_secs(5), || {
        (!in_pool(&lab, "198.18.0.11")).then_some(())
    });
    let took = start.elapsed();
    assert!(left.is_some(), "b1 still in the pool:\n{}", lab.log());
    let bound = Duration::from_millis(u64::from(FALL) * INTERVAL_MS + 150 + 400);
    assert!(took <= bound, "b1 left after {took:?} (bound {bound:?})");
    assert!(lab.log().contains("backend down"), "{}", lab.log());
    // From then on every request succeeds, on b2 and b3.
    let counts = spread(&lab, 40);
    assert!(
        !counts.contains_key("b1") && counts.len() == 2,
        "{counts:?}"
    );

    // nginx back: b1 rejoins within rise × interval.
    let ns = &lab.lan.host("b1").ns;
    lab.nginx.get_mut("b1").unwrap().run(ns);
    let start = Instant::now();
    let back = wait_for(Duration::from_secs(5), || {
        in_pool(&lab, "198.18.0.11").then_some(())
    });
    let took = start.elapsed();
    assert!(back.is_some(), "b1 did not rejoin:\n{}", lab.log());
    let bound = Duration::from_millis(u64::from(RISE) * INTERVAL_MS + 150 + 600);
    assert!(
        took <= bound,
        "b1 rejoined after {took:?} (bound {bound:?})"
    );
    assert_eq!(spread(&lab, 60).len(), 3);

    // Drain the backend an established keep-alive connection uses: the
    // connection keeps being served by it, new connections never go there.
    let mut conn = KeepAlive::open(lab.ns("client"));
    let owner = conn.get();
    let owner_addr = BACKENDS.iter().find(|(n, _)| *n == owner).unwrap().1;
    let out = lab.lbctl_ok(&["drain", &format!("{VIP}:80"), owner_addr]);
    assert!(out.contains("drained"), "{out}");
    for _ in 0..5 {
        assert_eq!(conn.get(), owner, "established connection continues");
    }
    // The drain rewrote the table: the owner's third of the slots moved
    // (no more than had to), and the keep-alive connection, pinned to it,
    // is one of the recent flows the table no longer chooses.
    let v: serde_json::Value = serde_json::from_str(&lab.lbctl_ok(&["--json", "stats"])).unwrap();
    let (off, recent) = (
        v["data"][0]["flows_off_table"].as_u64().unwrap(),
        v["data"][0]["flows_recent"].as_u64().unwrap(),
    );
    assert!(
        off >= 1 && off <= recent,
        "off table {off} of {recent} recent"
    );
    let v: serde_json::Value =
        serde_json::from_str(&lab.lbctl_ok(&["--json", "services"])).unwrap();
    let last = &v["data"][0]["table"]["last"];
    let (size, changed, necessary) = (
        last[0].as_u64().unwrap(),
        last[1].as_u64().unwrap(),
        last[2].as_u64().unwrap(),
    );
    let share = necessary as f64 / size as f64;
    assert!(
        (0.28..0.39).contains(&share) && changed >= necessary && changed <= necessary + size / 50,
        "drain moved {changed} of {size} slots, {necessary} had to"
    );
    println!(
        "drain: {changed} of {size} slots moved ({necessary} had to); {off} of {recent} recent flows off the table"
    );
    let counts = spread(&lab, 40);
    assert!(
        !counts.contains_key(&owner),
        "drained {owner} got new connections: {counts:?}"
    );
    lab.lbctl_ok(&["enable", &format!("{VIP}:80"), owner_addr]);
    assert_eq!(spread(&lab, 60).len(), 3, "enabled again");

    // SIGHUP with a changed backend list: one backend removed, not the
    // one the keep-alive connection uses.
    let keep_on = conn.get();
    let keep_addr = BACKENDS.iter().find(|(n, _)| *n == keep_on).unwrap().1;
    let other = BACKENDS.iter().find(|(n, _)| *n != keep_on).unwrap().1;
    let remaining = [keep_addr, other];
    lab.write_config(&lab.config(&remaining));
    lab.hup();
    let applied = wait_for(Duration::from_secs(5), || {
        lab.log()
            .contains("configuration")
            .then_some(())
            .filter(|()| lab.log().contains("applied"))
    });
    assert!(applied.is_some(), "{}", lab.log());
    assert_eq!(
        conn.get(),
        keep_on,
        "established connection unaffected by reload"
    );
    let counts = spread(&lab, 40);
    assert_eq!(counts.len(), 2, "pool follows the new list: {counts:?}");

    // SIGHUP with a broken file: refused, logged, old config keeps serving.
    lab.write_config("[[service]]\nvip = \"not an address\"\n");
    lab.hup();
    let refused = wait_for(Duration::from_secs(5), || {
        lab.log().contains("reload failed").then_some(())
    });
    assert!(refused.is_some(), "{}", lab.log());
    assert!(
        lab.log().contains("lb.toml:2"),
        "the error names file and line:\n{}",
        lab.log()
    );
    assert_eq!(spread(&lab, 20).len(), 2, "old config still serves");
    assert_eq!(conn.get(), keep_on);
    // lbctl reload reports the same error, exit status 1.
    let out = lab.lbctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still running the previous configuration")
    );
    lab.write_config(&lab.config(&remaining));
    assert!(lab.lbctl_ok(&["reload"]).contains("reloaded"));

    // Every command, human and JSON.
    let status = lab.lbctl_ok(&["status"]);
    assert!(
        status.contains("lbd lb-test") && status.contains("vrrp VI_1: MASTER"),
        "{status}"
    );
    assert!(status.contains("services: 1 (1 active here)"), "{status}");
    assert!(status.contains("of 65536 ways in use"), "{status}");
    let services = lab.lbctl_ok(&["services"]);
    assert!(
        services.starts_with("SERVICE")
            && services.contains("198.18.0.100:80/tcp  dsr   maglev     VI_1  yes     2/2"),
        "{services}"
    );
    let backends = lab.lbctl_ok(&["backends"]);
    assert!(
        backends.contains("HEALTH") && backends.matches(" up ").count() == 2,
        "{backends}"
    );
    let vrrp = lab.lbctl_ok(&["vrrp"]);
    assert!(
        vrrp.contains("VI_1") && vrrp.contains("MASTER") && vrrp.contains("150/150"),
        "{vrrp}"
    );
    let traffic = lab.lbctl_ok(&["stats"]);
    assert!(
        traffic.contains("NEW FLOWS") && traffic.contains("(all)"),
        "{traffic}"
    );
    let flows = lab.lbctl_ok(&["flows", "198.18.0.100:80"]);
    assert!(
        flows.starts_with("PRO  CLIENT") && flows.contains(" flows"),
        "{flows}"
    );
    let refused = lab.lbctl(&["flows", "198.18.0.100"]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("198.18.0.100"),
        "a service without a port is refused"
    );
    for cmd in ["status", "services", "backends", "vrrp", "stats", "flows"] {
        let out = lab.lbctl_ok(&["--json", cmd]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{cmd}: {e}: {out}"));
        assert_eq!(v["ok"], true, "{cmd}: {out}");
    }
    let v: serde_json::Value = serde_json::from_str(&lab.lbctl_ok(&["--json", "stats"])).unwrap();
    let packets = v["data"][0]["total"]["packets"].as_u64().unwrap();
    assert!(packets > 100, "the VIP forwarded our requests: {v}");
    let v: serde_json::Value = serde_json::from_str(&lab.lbctl_ok(&["--json", "status"])).unwrap();
    let table = &v["data"]["data_plane"]["connection_table"];
    assert_eq!(table["capacity"], 65536, "{v}");
    let (in_use, recent) = (
        table["in_use"].as_u64().unwrap(),
        table["recent"].as_u64().unwrap(),
    );
    assert!(
        in_use >= 1 && recent <= in_use,
        "our connections are in the table: {v}"
    );
    // Prometheus metrics (in the LB's namespace).
    let metrics = lab
        .ns("lb")
        .run(|| {
            let mut s = TcpStream::connect("127.0.0.1:9678").unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        })
        .unwrap();
    for want in [
        "HTTP/1.1 200 OK",
        "lb_service_active{service=\"198.18.0.100:80/tcp\"} 1",
        "lb_vrrp_state{vrrp_instance=\"VI_1\",state=\"MASTER\"} 1",
        "lb_backend_healthy{service=\"198.18.0.100:80/tcp\",backend=",
        "lb_vip_packets_total{service=\"198.18.0.100:80/tcp\"}",
        "lb_vrrp_transitions_total{vrrp_instance=\"VI_1\"} 2",
        // A handful of connections in a 65,536-flow table: nothing evicted.
        "lb_flows_evicted_total{age=\"recent\"} 0",
        "lb_flows_capacity 65536",
    ] {
        assert!(metrics.contains(want), "metrics lack {want:?}:\n{metrics}");
    }

    // Errors mean something: no such service (1), bad usage (2).
    let out = lab.lbctl(&["drain", "198.18.0.100:81", "198.18.0.11"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = lab.lbctl(&["drain", "nonsense", "198.18.0.11"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = Command::new(&*LBCTL)
        .args(["--socket", "/nonexistent/lbd.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// Send `bytes` on a fresh control connection and read the answer line.
fn raw_control(path: &std::path::Path, bytes: &[u8]) -> String {
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(path).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    // lbd may answer (and close) before it has read everything.
    let _ = s.write_all(bytes);
    let mut answer = String::new();
    let _ = BufReader::new(s).read_line(&mut answer);
    answer
}

/// The control socket under abuse: bad requests each get an error answer;
/// 300 clients connecting and sending nothing take the 64 slots (the rest
/// are told "too many" at once) while lbd's main loop goes on (a backend
/// failing is seen and logged, requests through the VIP are answered,
/// lbctl is refused with that message instead of hanging); the idle
/// clients are closed after the request timeout, with an error answer,
/// and lbctl works again. lbd never exits or panics.
#[test]
fn the_control_socket_under_abuse_leaves_lbd_working() {
    use std::os::unix::net::UnixStream;
    let mut lab = lab();
    let sock = lab.dir.join("run/lbd.sock");
    let is_error = |a: &str| {
        serde_json::from_str::<serde_json::Value>(a)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
    };
    let big = vec![b'x'; 100 * 1024];
    let mut big_line = big.clone();
    big_line.push(b'\n');
    for (what, bytes) in [
        ("not JSON", b"hello\n".as_slice()),
        ("not UTF-8", b"\xff\xfe\xfd\n".as_slice()),
        (
            "JSON, not a request",
            b"{\"cmd\":\"nonsense\"}\n".as_slice(),
        ),
        ("100 KiB, no newline", big.as_slice()),
        ("100 KiB line", big_line.as_slice()),
    ] {
        let answer = raw_control(&sock, bytes);
        let error = is_error(&answer);
        println!("{what}: {error:?}");
        assert!(error.is_some(), "{what}: answer {answer:?}");
    }

    let started = Instant::now();
    let idle: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    // Those beyond the slots are told at once (after lbd's 100 ms drain
    // of what they might send).
    std::thread::sleep(Duration::from_millis(700));
    let mut refused = 0;
    let mut held = Vec::new();
    for s in idle {
        s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        let mut line = String::new();
        let mut r = BufReader::new(s);
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => {
                assert!(line.contains("too many"), "{line}");
                refused += 1;
            }
            _ => held.push(r),
        }
    }
    println!(
        "300 idle clients: {refused} refused at once, {} held",
        held.len()
    );
    assert_eq!(held.len(), 64, "64 slots held, {refused} refused");

    // The main loop goes on: lbctl is refused quickly, traffic flows, a
    // failing backend is seen.
    let t = Instant::now();
    let out = lab.lbctl(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && stderr.contains("too many"),
        "{stderr}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "lbctl took {:?}",
        t.elapsed()
    );
    assert_eq!(spread(&lab, 20).values().sum::<usize>(), 20);
    lab.nginx.get_mut("b1").unwrap().stop();
    let seen = wait_for(Duration::from_secs(4), || {
        lab.log().contains("backend down").then_some(())
    });
    assert!(seen.is_some(), "b1's failure not seen:\n{}", lab.log());

    // The idle clients are closed after the request timeout (5 s), each
    // told why.
    for mut r in held {
        r.get_ref()
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).expect("an answer");
        assert!(
            is_error(&line).is_some_and(|e| e.contains("no complete request")),
            "{line}"
        );
    }
    println!("idle clients closed after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(9));
    let status = lab.lbctl_ok(&["status"]);
    assert!(!status.is_empty());
    let ns = &lab.lan.host("b1").ns;
    lab.nginx.get_mut("b1").unwrap().run(ns);
    let back = wait_for(Duration::from_secs(5), || {
        in_pool(&lab, "198.18.0.11").then_some(())
    });
    assert!(back.is_some(), "b1 did not rejoin:\n{}", lab.log());
    assert!(lab.lbd.as_ref().unwrap().exited().is_none(), "lbd exited");
    assert!(!lab.log().contains("panicked"), "{}", lab.log());
}
