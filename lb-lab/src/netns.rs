//! Network-namespace topologies for kernel tests and the lab.
//!
//! A [`Lan`] is one L2 segment: a bridge in a namespace of its own, and one
//! namespace per host, each joined to the bridge by a veth pair whose host end
//! is called `eth0`. Names carry a per-run prefix (`lbt<pid>x<n>-`), so
//! parallel or crashed runs never collide; namespaces left behind by a
//! process that no longer exists are swept the next time a `Lan` is built.
//! Everything is removed on drop, also while unwinding from a panic, and
//! processes started with [`Netns::spawn`] are killed first so no namespace
//! outlives the test.
//!
//! Addresses come from the caller; tests use 198.18.0.0/15 and 2001:db8::/32
//! only, so no traffic can leave the machine even by mistake.
//!
//! Commands run through `ip` (iproute2), which `cargo xtask setup` installs.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::Path,
    process::{Child, Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

const NETNS_DIR: &str = "/run/netns";
/// Every namespace this module creates starts with this.
const FAMILY: &str = "lbt";

/// Error from building or using a topology.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started.
    #[error("cannot run {cmd}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command exited non-zero.
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {name}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Loading or attaching a test XDP program failed.
    #[error("XDP program on {port}: {message}")]
    Xdp {
        /// The bridge port.
        port: String,
        /// What failed.
        message: String,
    },
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd`, capture its output, and fail unless it exits 0.
///
/// # Errors
/// [`NetnsError::Spawn`] or [`NetnsError::Failed`].
pub fn run(cmd: &mut Command) -> Result<Output, NetnsError> {
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        cmd: describe(cmd),
        source,
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(NetnsError::Failed {
            cmd: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A veth pair between namespaces `a` and `b`, `eth0` in each (up, no
/// addresses): a point-to-point link with nothing else on it.
///
/// # Errors
/// [`NetnsError`] when an `ip` command fails.
pub fn veth_between(left: &Netns, right: &Netns) -> Result<(), NetnsError> {
    // Temporary names in the root namespace: unique to this process and
    // call, within the 15 characters an interface name may have.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("v{}x{serial}", std::process::id() % 1_000_000);
    let (one, other) = (format!("{tag}a"), format!("{tag}b"));
    ip(&["link", "add", &one, "type", "veth", "peer", "name", &other])?;
    ip(&["link", "set", &one, "netns", left.name(), "name", "eth0"])?;
    ip(&["link", "set", &other, "netns", right.name(), "name", "eth0"])?;
    left.ip(&["link", "set", "eth0", "up"])?;
    right.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}

fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    run(Command::new("ip").args(args))
}

/// One network namespace, deleted on drop together with the processes
/// started in it through [`Netns::spawn`] (unless it is a handle on one
/// made elsewhere, [`Netns::existing`]).
pub struct Netns {
    name: String,
    children: std::sync::Mutex<Vec<Child>>,
    /// Created here (deleted on drop), or only a handle ([`Netns::existing`]).
    owned: bool,
}

impl Netns {
    /// Create namespace `name` with `lo` up.
    ///
    /// # Errors
    /// [`NetnsError`] if `ip netns add` fails (not root, name taken, ...).
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
            children: std::sync::Mutex::new(Vec::new()),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on namespace `name`, which exists already (made with
    /// `ip netns add`, as the lab's are): for [`Netns::run`],
    /// [`Netns::command`], [`Netns::ip`]. Dropping it leaves the namespace
    /// in place; processes started through [`Netns::spawn`] are still
    /// stopped.
    ///
    /// # Errors
    /// [`NetnsError::Enter`] if there is no such namespace.
    pub fn existing(name: &str) -> Result<Self, NetnsError> {
        let path = Path::new(NETNS_DIR).join(name);
        if !path.exists() {
            return Err(NetnsError::Enter {
                name: name.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} does not exist", path.display()),
                ),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            children: std::sync::Mutex::new(Vec::new()),
            owned: false,
        })
    }

    /// The namespace's name (as `ip netns` knows it).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    ///
    /// # Errors
    /// [`NetnsError`] when the command fails.
    pub fn ip(&self, args: &[&str]) -> Result<Output, NetnsError> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Whether interface `ifname` holds address `addr` (any prefix).
    #[must_use]
    pub fn has_address(&self, ifname: &str, addr: &str) -> bool {
        self.ip(&["-br", "addr", "show", ifname]).is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .any(|w| w.split('/').next() == Some(addr))
        })
    }

    /// A command that will run inside this namespace. Only the network
    /// namespace changes (not the mount namespace, unlike `ip netns exec`),
    /// so pins under the host's bpffs stay visible to it.
    ///
    /// # Panics
    /// If the namespace's name holds a NUL byte, which no namespace from
    /// [`Netns::create`] does (`ip netns add` could not be given one).
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let path = Path::new(NETNS_DIR).join(&self.name);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .expect("namespace names have no NUL");
        // SAFETY: between fork and exec we only call open(2), setns(2) and
        // close(2), which are async-signal-safe, and allocate nothing.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let rc = libc::setns(fd, libc::CLONE_NEWNET);
                libc::close(fd);
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Run a command inside the namespace to completion; fail unless it
    /// exits 0.
    ///
    /// # Errors
    /// [`NetnsError`].
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, NetnsError> {
        run(self.command(program).args(args))
    }

    /// Start a process inside the namespace; it is stopped (SIGTERM, then
    /// SIGKILL) when the namespace is dropped, if it has not exited.
    /// Returns its pid. For a process to wait for, signal or stop earlier,
    /// or with a log, use [`Daemon`](crate::daemon::Daemon) instead.
    ///
    /// # Errors
    /// [`NetnsError::Spawn`].
    ///
    /// # Panics
    /// If the lock on the namespace's child list is poisoned (a thread
    /// panicked while holding it).
    pub fn spawn(&self, cmd: &mut Command) -> Result<u32, NetnsError> {
        let child = cmd.spawn().map_err(|source| NetnsError::Spawn {
            cmd: describe(cmd),
            source,
        })?;
        let pid = child.id();
        self.children.lock().expect("poisoned").push(child);
        Ok(pid)
    }

    /// Run `f` on a thread that has entered this namespace: sockets it
    /// creates belong to the namespace (and stay there after `f` returns).
    ///
    /// # Errors
    /// [`NetnsError::Enter`] if the thread cannot enter the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        let enter_err = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        let file = File::open(Path::new(NETNS_DIR).join(&self.name)).map_err(enter_err)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a namespace fd we hold; affects this thread only.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(enter_err(io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// How long processes get to exit on SIGTERM before SIGKILL.
const TERM_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

impl Drop for Netns {
    fn drop(&mut self) {
        let mut children = self
            .children
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        // SIGTERM first: daemons clean up after themselves (lbd removes its
        // pins and VIPs) only when asked politely.
        let _statuses = crate::daemon::terminate(&mut children, TERM_GRACE);
        if !self.owned {
            return;
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns: cleanup of {} failed: {e}", self.name);
        }
    }
}

/// A host on a [`Lan`].
pub struct Host {
    /// The host's namespace; its interface on the LAN is `eth0`.
    pub ns: Netns,
    /// IPv4 address with prefix, e.g. `198.18.0.1/24`.
    pub ipv4: String,
    /// IPv6 address with prefix, e.g. `2001:db8::1/64`.
    pub ipv6: String,
}

impl Host {
    /// IPv4 address without the prefix length.
    ///
    /// # Panics
    /// If the IPv4 address given to [`Lan::add_host`] does not parse.
    #[must_use]
    pub fn addr4(&self) -> std::net::Ipv4Addr {
        strip_prefix(&self.ipv4)
            .parse()
            .expect("valid IPv4 given to Lan::add_host")
    }

    /// IPv6 address without the prefix length.
    ///
    /// # Panics
    /// If the IPv6 address given to [`Lan::add_host`] does not parse.
    #[must_use]
    pub fn addr6(&self) -> std::net::Ipv6Addr {
        strip_prefix(&self.ipv6)
            .parse()
            .expect("valid IPv6 given to Lan::add_host")
    }

    /// MAC address of `eth0`.
    ///
    /// # Errors
    /// [`NetnsError`] when `ip` fails.
    pub fn mac(&self) -> Result<[u8; 6], NetnsError> {
        // Not /sys/class/net: that shows the mount namespace's view.
        let out = self.ns.ip(&["-br", "link", "show", "eth0"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mac = text.split_whitespace().nth(2).unwrap_or_default();
        let mut bytes = [0u8; 6];
        for (b, part) in bytes.iter_mut().zip(mac.split(':')) {
            *b = u8::from_str_radix(part, 16).unwrap_or_default();
        }
        Ok(bytes)
    }
}

fn strip_prefix(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// One L2 segment: a bridge namespace plus host namespaces.
pub struct Lan {
    /// Pass-through XDP programs on bridge ports (detached on drop).
    pass_programs: Vec<aya::Ebpf>,
    prefix: String,
    hosts: Vec<(String, Host)>,
    ports: u32,
    // Dropped last: hosts first, so their veth pairs vanish with them.
    bridge: Netns,
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lan {
    /// Create an empty LAN (bridge `br0` in its own namespace, multicast
    /// snooping off so VRRP multicast floods like on a plain switch).
    ///
    /// # Errors
    /// [`NetnsError`].
    pub fn new() -> Result<Self, NetnsError> {
        Self::with_family(FAMILY)
    }

    /// [`Lan::new`] with names of another family: `<family><pid>x<n>-`
    /// instead of `lbt<pid>x<n>-`, so a tool's namespaces (the soak's
    /// `lbsk`) are told apart from the tests' at a glance. Namespaces and
    /// pins of that family left by a process that no longer exists are
    /// swept first, as [`Lan::new`] sweeps its own.
    ///
    /// # Errors
    /// [`NetnsError`].
    pub fn with_family(family: &str) -> Result<Self, NetnsError> {
        sweep_stale(family);
        let prefix = format!(
            "{family}{}x{}-",
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let bridge = Netns::create(&format!("{prefix}br"))?;
        bridge.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            pass_programs: Vec::new(),
            prefix,
            hosts: Vec::new(),
            ports: 0,
            bridge,
        })
    }

    /// The per-run prefix of every namespace name of this LAN.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Add host `role` with `eth0` on the bridge and the given addresses
    /// (IPv6 without duplicate-address detection, so it is usable at once).
    ///
    /// # Errors
    /// [`NetnsError`].
    ///
    /// # Panics
    /// Never: the host returned is the one just added.
    pub fn add_host(&mut self, role: &str, ipv4: &str, ipv6: &str) -> Result<&Host, NetnsError> {
        let ns = Netns::create(&format!("{}{role}", self.prefix))?;
        self.add_port(&ns, "eth0", ipv4, ipv6)?;
        self.hosts.push((
            role.to_owned(),
            Host {
                ns,
                ipv4: ipv4.to_owned(),
                ipv6: ipv6.to_owned(),
            },
        ));
        Ok(&self.hosts.last().expect("just pushed").1)
    }

    /// Plug namespace `host` (a host of this LAN, or of another: a
    /// two-armed host such as a load balancer between a client and a
    /// server LAN) into this LAN: interface `ifname` on this bridge, with
    /// the given addresses. The link goes with either namespace.
    ///
    /// # Errors
    /// [`NetnsError`].
    pub fn add_port(
        &mut self,
        host: &Netns,
        ifname: &str,
        ipv4: &str,
        ipv6: &str,
    ) -> Result<(), NetnsError> {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        self.bridge.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            host.name(),
        ])?;
        self.bridge
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        host.ip(&["link", "set", ifname, "up"])?;
        host.ip(&["addr", "add", ipv4, "dev", ifname])?;
        host.ip(&["-6", "addr", "add", ipv6, "dev", ifname, "nodad"])?;
        Ok(())
    }

    /// The host added as `role`, if there is one.
    #[must_use]
    pub fn find_host(&self, role: &str) -> Option<&Host> {
        self.hosts.iter().find(|(r, _)| r == role).map(|(_, h)| h)
    }

    /// The host added as `role`.
    ///
    /// # Panics
    /// If there is no such host: a bug in the test.
    #[must_use]
    pub fn host(&self, role: &str) -> &Host {
        self.hosts
            .iter()
            .find(|(r, _)| r == role)
            .map_or_else(|| panic!("no host {role:?} on this LAN"), |(_, h)| h)
    }

    /// The bridge namespace.
    #[must_use]
    pub const fn bridge(&self) -> &Netns {
        &self.bridge
    }

    /// The forwarding tests' topology: `client` (198.18.0.1), `lb`
    /// (198.18.0.2) and one host per `(name, IPv4)` backend (IPv6
    /// 2001:db8::11, ::12, ...), all on the bridge, prepared for XDP
    /// ([`Lan::prepare_xdp`]).
    ///
    /// # Errors
    /// [`NetnsError`] if a namespace or link cannot be set up.
    pub fn client_lb_backends(backends: &[(&str, &str)]) -> Result<Self, NetnsError> {
        let mut lan = Self::new()?;
        lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")?;
        lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")?;
        for (i, (name, addr)) in backends.iter().enumerate() {
            lan.add_host(
                name,
                &format!("{addr}/24"),
                &format!("2001:db8::{}/64", 11 + i),
            )?;
        }
        lan.prepare_xdp("client")?;
        Ok(lan)
    }

    /// Attach a pass-through XDP program (`lb_pass`, native mode) to bridge
    /// port `port` (`p1` is the first host added, and so on). Needed for a
    /// host whose XDP program runs in native mode and sends with `XDP_TX`:
    /// the kernel (veth) delivers those frames to the peer only when the
    /// peer has an XDP program. Detached when the LAN is dropped.
    ///
    /// # Errors
    /// [`NetnsError::Xdp`] if the program cannot be loaded or attached.
    pub fn xdp_pass_on_port(&mut self, port: &str) -> Result<(), NetnsError> {
        let ebpf = attach_pass(&self.bridge, port)?;
        self.pass_programs.push(ebpf);
        Ok(())
    }

    /// Prepare the LAN for traffic through an XDP program: host `client`'s
    /// kernel completes TCP checksums before sending (veth otherwise hands
    /// XDP `CHECKSUM_PARTIAL` packets), and every bridge port has GRO on
    /// (XDP_TX into a veth needs NAPI on the receiving peer).
    ///
    /// # Errors
    /// [`NetnsError`] when `ethtool` fails.
    pub fn prepare_xdp(&self, client: &str) -> Result<(), NetnsError> {
        self.host(client)
            .ns
            .exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        for port in 1..=self.ports {
            self.bridge
                .exec("ethtool", &["-K", &format!("p{port}"), "gro", "on"])?;
        }
        Ok(())
    }
}

/// Write a self-contained nginx site under `dir` that serves `body` at `/`
/// on port 80: one process running as root, logs, pid and temporary files
/// all inside `dir`, long keep-alive. Returns the configuration's path,
/// for `nginx -c`.
///
/// # Errors
/// Writing under `dir` fails.
pub fn nginx_site(dir: &Path, body: &str) -> io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir.join("html"))?;
    std::fs::write(dir.join("html/index.html"), body)?;
    let d = dir.display();
    let conf = format!(
        "master_process off;\nuser root;\ndaemon off;\nworker_rlimit_nofile 16384;\n\
         error_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  keepalive_timeout 120s;\n  keepalive_requests 1000000;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{ listen 80 backlog=4096; root {d}/html; location / {{ default_type text/plain; }} }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

impl Netns {
    /// Make this namespace an LVS-DR backend for `vip` (IPv4): the VIP on
    /// `lo`, never answered for or announced on `eth0` (`arp_ignore=1`,
    /// `arp_announce=2`).
    ///
    /// # Errors
    /// [`NetnsError`] when `ip` or `sysctl` fails.
    pub fn dsr_backend(&self, vip: &str) -> Result<(), NetnsError> {
        self.ip(&["addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
        for k in ["all", "eth0"] {
            self.exec(
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{k}.arp_ignore=1")],
            )?;
            self.exec(
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{k}.arp_announce=2")],
            )?;
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first (kills their processes, deletes their ends of the veths).
        self.hosts.clear();
    }
}

/// Whether `name` is of `family` (`<family><pid>x...`) and its creating
/// process is gone.
fn stale(family: &str, name: &str) -> bool {
    name.strip_prefix(family)
        .and_then(|rest| rest.split('x').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Delete namespaces of `family` whose creating process is gone, and the
/// pin directories (`/sys/fs/bpf/<prefix>*`) its killed daemons left.
fn sweep_stale(family: &str) {
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| stale(family, n))
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names(NETNS_DIR) {
        if let Err(e) = ip(&["netns", "del", &name]) {
            eprintln!("netns: sweeping stale {name} failed: {e}");
        }
    }
    for name in names(lb_user::dataplane::preflight::BPFFS_ROOT) {
        let path = Path::new(lb_user::dataplane::preflight::BPFFS_ROOT).join(&name);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            eprintln!("netns: sweeping stale pins {} failed: {e}", path.display());
        }
    }
}

/// Wait until `probe` returns `Some`, polling every 20 ms for at most
/// `timeout`.
pub fn wait_for<T>(
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Attach `lb_pass` (from [`crate::TEST_OBJ`]) in native mode to `port`
/// in namespace `ns`; it stays attached while the returned object lives.
/// See [`Lan::xdp_pass_on_port`] for why a veth needs it.
///
/// # Errors
/// [`NetnsError::Xdp`] if the program cannot be loaded or attached.
pub fn attach_pass(ns: &Netns, port: &str) -> Result<aya::Ebpf, NetnsError> {
    use aya::programs::{Xdp, XdpMode};
    ns.run(|| -> Result<aya::Ebpf, String> {
        let mut ebpf = aya::Ebpf::load(crate::TEST_OBJ).map_err(|e| e.to_string())?;
        let program: &mut Xdp = ebpf
            .program_mut("lb_pass")
            .ok_or("no lb_pass program")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        program.load().map_err(|e| e.to_string())?;
        program
            .attach(port, XdpMode::Driver)
            .map_err(|e| e.to_string())?;
        Ok(ebpf)
    })?
    .map_err(|message| NetnsError::Xdp {
        port: port.to_owned(),
        message,
    })
}
