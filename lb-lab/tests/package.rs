//! Kernel test: lb's Debian package as an operator uses it, under real
//! systemd. The package is the file `LB_DEB` names (`cargo xtask package`
//! makes it); without `LB_DEB` the test fails, it does not skip.
//!
//! A client, an LB host and a backend (nginx, DSR) on one LAN; the LB host
//! is a Debian system booted under systemd in a container
//! ([`lb_lab::systemd_root`]) whose `eth0` is the LAN's. In it, in order:
//! - `apt-get install ./lb.deb`: the binaries, the unit, the man pages and
//!   `/etc/lb/lb.toml` (a conffile) are there; the unit is neither enabled
//!   nor started; `systemd-analyze verify` passes it; every program the
//!   unit runs is the package's own or comes with a package it depends on
//!   (`/bin/kill`: procps); `lbd --version` names lbd and the package's
//!   upstream version; `man lbd`, `man lbctl`, `man 5 lb.toml`;
//! - the operator writes `/etc/lb/lb.toml` (XDP generic on `eth0`, a VRRP
//!   instance holding the VIP, a DSR service on port 80 whose backend is
//!   checked over TCP) and runs
//!   `systemctl start lbd`: the unit is active, its main process is lbd,
//!   the XDP program is on `eth0`, `lbctl status` answers, and a request
//!   from the client to the VIP is answered by the backend;
//! - `systemctl reload lbd`: the same process, and the journal shows that
//!   it reloaded;
//! - `systemctl restart lbd`: a new process adopts the data plane the old
//!   one left pinned on the machine's bpffs, and forwards;
//! - `systemctl stop lbd`: inactive, the XDP program gone from `eth0`, the
//!   pins removed;
//! - `apt-get purge lb`: the package's files and /etc/lb are gone.
//!
//! Needs root, debootstrap and systemd-nspawn (`cargo xtask setup`), and
//! the Debian mirror for the first run on a machine (the root file system
//! is then cached under `target/pkgtest/`).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use lb_lab::{
    daemon::Daemon,
    netns::{Lan, Netns, wait_for},
    systemd_root::{Image, Machine},
};
use lb_user::config::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, Mode, Protocol, Service, VrrpInstance,
    XdpMode,
};

const VIP: &str = "198.18.0.100";
const BACKEND: (&str, &str) = ("b1", "198.18.0.11");

/// The package under test, from `LB_DEB`.
fn package() -> PathBuf {
    let Some(path) = std::env::var_os("LB_DEB") else {
        panic!(
            "LB_DEB is not set: this test installs lb's Debian package and needs its path. \
             Build it with `cargo xtask package` and run with \
             LB_DEB=target/debian/lb_<version>_amd64.deb (cargo xtask test does)"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "LB_DEB={} is not a file: build the package with `cargo xtask package`",
        path.display()
    );
    path
}

/// A control field of the package (`dpkg-deb --field`).
fn field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(name)
        .output()
        .expect("dpkg-deb runs");
    assert!(out.status.success(), "dpkg-deb --field {name}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// What an operator would write: the data plane on `eth0` in generic
/// mode, `VI_1` holding the VIP, the service on port 80 (DSR, the backend
/// checked over TCP every 200 ms).
fn config() -> String {
    let ms = |ms| Dur(Duration::from_millis(ms));
    Config {
        global: Global {
            router_id: Some("lb-pkgtest".into()),
            ..Global::default()
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
                interval: ms(200),
                timeout: ms(150),
                rise: 1,
                fall: 2,
                ..Health::default()
            },
            ..Service::new(
                VIP.parse().unwrap(),
                80,
                vec![BackendConfig::new(BACKEND.1.parse().unwrap())],
            )
        }],
        ..Config::default()
    }
    .to_toml()
    .unwrap()
}

/// One HTTP request to the VIP from `client`: the body.
fn get(client: &Netns) -> Result<String, String> {
    client
        .run(|| {
            let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
                .map_err(|e| format!("send: {e}"))?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)
                .map_err(|e| format!("read: {e}"))?;
            reply
                .rsplit("\r\n\r\n")
                .next()
                .map(str::to_owned)
                .ok_or_else(|| "no body".to_owned())
        })
        .unwrap()
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The LAN and the machine; the machine is declared first so it is
/// dropped (powered off) before the LAN's namespaces go.
struct Rig {
    machine: Machine,
    _nginx: Daemon,
    lan: Lan,
    _dir: TempDir,
}

impl Rig {
    /// `script` in the machine, which must exit 0: its stdout. On failure,
    /// the output and lbd's journal.
    fn sh(&self, script: &str) -> String {
        self.machine.sh_ok(script).unwrap_or_else(|e| {
            panic!("{e}\n--- journal of lbd ---\n{}", self.journal());
        })
    }

    /// `script` in the machine, whatever its status: stdout and stderr.
    fn sh_any(&self, script: &str) -> (Option<i32>, String) {
        let out = self.machine.sh(script).unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn journal(&self) -> String {
        self.sh_any("journalctl --no-pager -o short-monotonic -u lbd")
            .1
    }

    fn is_active(&self) -> String {
        self.sh_any("systemctl is-active lbd").1.trim().to_owned()
    }

    /// The XDP program lines of `ip link show eth0` inside the machine.
    fn xdp_on_eth0(&self) -> bool {
        self.sh("ip -d link show eth0").contains("xdpgeneric")
    }

    fn main_pid(&self) -> u32 {
        self.sh("systemctl show -P MainPID lbd")
            .trim()
            .parse()
            .unwrap()
    }
}

/// Every program the unit runs (`Exec*=`) is the package's own, or comes
/// with a package it depends on, or with an essential one: a host without
/// it could install lb and then fail to start or reload it.
fn unit_commands_come_with_the_package(rig: &Rig, name: &str, depends: &str) {
    let found = rig.sh(
        r#"sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' /lib/systemd/system/lbd.service |
        sort -u | while read -r cmd; do
            p=$cmd; case $p in /*) ;; *) p=$(which "$p" || echo "$p") ;; esac
            pkg=$( (dpkg -S "$p" || dpkg -S "${p#/usr}" || dpkg -S "/usr$p") 2>/dev/null |
                head -1 | cut -d: -f1)
            essential=$(dpkg-query -W -f='${Essential}' "$pkg" 2>/dev/null)
            echo "$cmd ${pkg:-NONE} ${essential:-no}"
        done"#,
    );
    let depends: Vec<&str> = depends
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d))
        .collect();
    assert!(!found.trim().is_empty(), "the unit runs no command?");
    for line in found.lines() {
        let mut words = line.split_whitespace();
        let (cmd, pkg, essential) = (
            words.next().unwrap(),
            words.next().unwrap_or("NONE"),
            words.next().unwrap_or("no"),
        );
        assert!(
            pkg == name || essential == "yes" || depends.contains(&pkg),
            "lbd.service runs {cmd}, from package {pkg}, which {name} does not depend on \
             (Depends: {depends:?})"
        );
    }
}

/// The LAN (client, LB, backend with nginx) and the machine booted on the
/// LB host's `eth0`.
fn rig() -> Rig {
    let image = Image::get(&lb_lab::systemd_root::default_cache_dir()).expect("root file system");
    eprintln!(
        "package: image {} ({} in {:.1?})",
        image.tarball().display(),
        if image.built { "built" } else { "cached" },
        image.took
    );
    let lan = Lan::client_lb_backends(&[BACKEND]).expect("create LAN (run as root)");
    let dir = std::env::temp_dir().join(format!("{}package", lan.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = &lan.host(BACKEND.0).ns;
    backend.dsr_backend(VIP).unwrap();
    lb_lab::netns::nginx_site(&dir, BACKEND.0).unwrap();
    let mut cmd = backend.command("nginx");
    cmd.arg("-c").arg(dir.join("nginx.conf"));
    // SAFETY: prctl(2) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            // A test killed outright takes its backend along, as it does
            // the machine (whose nspawn gets SIGTERM the same way).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let nginx = Daemon::spawn("nginx", &mut cmd, dir.join("nginx.log"))
        .expect("start nginx (apt-get install nginx)");
    let machine = Machine::boot(&image, lan.host("lb").ns.name()).expect("boot the machine");
    eprintln!(
        "package: {} booted in {:.1?}",
        machine.name(),
        machine.boot_took
    );
    Rig {
        machine,
        _nginx: nginx,
        lan,
        _dir: TempDir(dir),
    }
}

/// `apt-get install`, and what it must and must not have done.
fn install(rig: &Rig, deb: &Path, name: &str, version: &str) {
    rig.machine.copy_in(deb, "/root/lb.deb").unwrap();
    rig.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/lb.deb");
    let status = rig.sh(&format!(
        "dpkg-query -W -f='${{Status}} ${{Version}}' {name}"
    ));
    assert_eq!(status, format!("install ok installed {version}"));
    for file in [
        "/usr/sbin/lbd",
        "/usr/sbin/lbctl",
        "/lib/systemd/system/lbd.service",
        "/etc/lb/lb.toml",
    ] {
        rig.sh(&format!("test -f {file}"));
    }
    let conffiles = rig.sh(&format!("dpkg-query -W -f='${{Conffiles}}' {name}"));
    assert!(
        conffiles.contains("/etc/lb/lb.toml"),
        "/etc/lb/lb.toml is a conffile: {conffiles}"
    );
    // Installed, not enabled nor started: the operator edits the file first.
    assert_eq!(rig.sh_any("systemctl is-enabled lbd").1.trim(), "disabled");
    assert_eq!(rig.is_active(), "inactive");
    rig.sh("systemd-analyze verify /lib/systemd/system/lbd.service");
    let depends = format!("{}, {}", field(deb, "Pre-Depends"), field(deb, "Depends"));
    unit_commands_come_with_the_package(rig, name, &depends);
    let upstream = version.rsplit_once('-').map_or(version, |(u, _)| u);
    let lbd_version = rig.sh("lbd --version");
    assert!(
        lbd_version.starts_with("lbd ") && lbd_version.contains(upstream),
        "lbd --version names lbd and version {upstream}: {lbd_version}"
    );
    for (page, says) in [("lbd", "lbd"), ("lbctl", "lbctl"), ("5 lb.toml", "lb.toml")] {
        let text = rig.sh(&format!("MANPAGER=cat MANWIDTH=80 man {page}"));
        assert!(
            text.contains(says) && text.lines().count() > 10,
            "man {page}:\n{text}"
        );
    }
}

/// The operator's configuration, `systemctl start`: lbd runs, attached,
/// master, answering `lbctl` and forwarding to the backend. Its PID.
fn start(rig: &Rig) -> u32 {
    rig.machine
        .write("/etc/lb/lb.toml", config().as_bytes(), 0o644)
        .unwrap();
    rig.sh("lbd check-config /etc/lb/lb.toml");
    rig.sh("systemctl start lbd");
    let active = wait_for(Duration::from_secs(20), || {
        rig.sh_any("lbctl status")
            .1
            .contains("vrrp VI_1: MASTER")
            .then_some(())
    });
    assert!(
        active.is_some(),
        "lbd under systemd became master: {}\n{}",
        rig.sh_any("systemctl status --no-pager lbd").1,
        rig.journal()
    );
    assert_eq!(rig.is_active(), "active");
    let pid = rig.main_pid();
    assert_eq!(rig.sh(&format!("cat /proc/{pid}/comm")).trim(), "lbd");
    assert!(rig.xdp_on_eth0(), "{}", rig.sh("ip -d link show eth0"));
    rig.sh("test -d /sys/fs/bpf/lb");
    let status = rig.sh("lbctl status");
    assert!(
        status.contains("lbd lb-pkgtest") && status.contains("services: 1 (1 active here)"),
        "{status}"
    );
    let client = &rig.lan.host("client").ns;
    let answered = wait_for(Duration::from_secs(10), || get(client).ok());
    assert_eq!(
        answered.as_deref(),
        Some(BACKEND.0),
        "the backend answers through the VIP: {:?}\n{}",
        get(client),
        rig.journal()
    );
    pid
}

/// `systemctl reload`: the same process, systemd and lbd log it, still
/// forwarding.
fn reload(rig: &Rig, pid: u32) {
    rig.sh("systemctl reload lbd");
    let reloaded = wait_for(Duration::from_secs(10), || {
        let journal = rig.journal();
        (journal.contains("SIGHUP: reloading") && journal.contains("Reloaded lbd.service"))
            .then_some(())
    });
    assert!(reloaded.is_some(), "{}", rig.journal());
    assert_eq!(rig.main_pid(), pid, "a reload keeps the process");
    assert_eq!(rig.is_active(), "active");
    assert_eq!(get(&rig.lan.host("client").ns).as_deref(), Ok(BACKEND.0));
}

/// `systemctl restart` (the unit's `RestartKillSignal=SIGUSR2`): a new
/// process adopts the data plane the old one left pinned, and forwards.
fn restart(rig: &Rig, pid: u32) {
    rig.sh("systemctl restart lbd");
    let new = wait_for(Duration::from_secs(20), || {
        let now = rig.main_pid();
        (now != 0 && now != pid && rig.sh_any("lbctl status").1.contains("vrrp VI_1: MASTER"))
            .then_some(now)
    });
    assert!(
        new.is_some(),
        "lbd came back after a restart:\n{}",
        rig.journal()
    );
    assert!(
        rig.journal()
            .contains("adopted the data plane pinned at /sys/fs/bpf/lb"),
        "the new lbd adopted the pinned data plane: {}",
        rig.journal()
    );
    assert!(rig.xdp_on_eth0(), "{}", rig.sh("ip -d link show eth0"));
    let client = &rig.lan.host("client").ns;
    let answered = wait_for(Duration::from_secs(10), || get(client).ok());
    assert_eq!(answered.as_deref(), Some(BACKEND.0), "{}", rig.journal());
}

/// `systemctl stop`: inactive, the program detached, the pins gone.
fn stop(rig: &Rig) {
    rig.sh("systemctl stop lbd");
    assert_eq!(rig.is_active(), "inactive");
    assert!(!rig.xdp_on_eth0(), "{}", rig.sh("ip -d link show eth0"));
    assert_ne!(rig.sh_any("test -e /sys/fs/bpf/lb").0, Some(0), "pins left");
    let journal = rig.journal();
    assert!(
        !journal.contains("mounted bpffs"),
        "the machine had bpffs mounted at boot, as a host has: {journal}"
    );
}

/// `apt-get purge`: the package, its files and /etc/lb gone.
fn purge(rig: &Rig, name: &str) {
    rig.sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q {name}"
    ));
    // dpkg -s succeeds while anything of the package is known, even only
    // its conffiles (state "rc").
    let (code, out) = rig.sh_any(&format!("dpkg -s {name}"));
    assert_ne!(code, Some(0), "the package is gone: {out}");
    for file in [
        "/usr/sbin/lbd",
        "/usr/sbin/lbctl",
        "/lib/systemd/system/lbd.service",
        "/etc/lb",
    ] {
        assert!(
            !rig.machine.host_path(file).exists(),
            "{file} is still there after purge"
        );
    }
    let pages =
        rig.sh("find /usr/share/man -name 'lbd.8*' -o -name 'lbctl.8*' -o -name 'lb.toml.5*'");
    assert!(
        pages.trim().is_empty(),
        "man pages left after purge: {pages}"
    );
}

#[test]
fn the_debian_package_installs_runs_under_systemd_and_purges() {
    let deb = package();
    let t0 = Instant::now();
    let name = field(&deb, "Package");
    let version = field(&deb, "Version");
    let rig = rig();
    install(&rig, &deb, &name, &version);
    let pid = start(&rig);
    reload(&rig, pid);
    restart(&rig, pid);
    stop(&rig);
    purge(&rig, &name);
    let Rig { machine, .. } = rig;
    let orderly = machine.shutdown().expect("remove the machine");
    assert!(orderly, "the machine powered off in time");
    eprintln!("package: whole test {:.1?}", t0.elapsed());
}
