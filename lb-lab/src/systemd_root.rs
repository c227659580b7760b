//! A throwaway Debian system booted under real systemd, for tests of what an
//! operator does with lb's package: `apt-get install`, `systemctl start`,
//! `reload`, `stop`, `journalctl`, `man`, `apt-get purge`.
//!
//! The machines this project runs on (a developer's, CI's) have no systemd
//! as PID 1, so the test boots one itself:
//!
//! 1. [`Image::get`] makes a root file system with `debootstrap
//!    --variant=minbase` (the host's Debian release, from the host's apt
//!    mirror, with systemd, D-Bus, procps, iproute2 and man-db) and keeps
//!    it as a tarball (about 210 MB) in a cache directory, `target/pkgtest/`
//!    by default (`LB_PKGTEST_CACHE` overrides it). The first run on a
//!    machine bootstraps (50 to 100 s here); later runs find the tarball.
//!    Its name carries a hash of the recipe, so a changed package list
//!    makes a new one (and the old one is removed). A file lock serialises
//!    concurrent builders.
//! 2. [`Machine::boot`] unpacks it into a directory of its own and starts
//!    `systemd-nspawn --boot` on it: systemd runs as the container's PID 1
//!    in new PID, mount, UTS and IPC namespaces, with every capability
//!    (lbd needs `CAP_BPF`, `CAP_NET_ADMIN`, `CAP_PERFMON`...) and `bpf(2)`
//!    added to nspawn's system-call filter (which otherwise answers it with
//!    `EPERM` whatever the capabilities), inside a network namespace the
//!    caller made (a [`Lan`](crate::netns::Lan) host's, so its `eth0` is
//!    the machine's). No systemd, machined or D-Bus is needed on the host
//!    (`--register=no --keep-unit`). The image mounts a bpffs of its own
//!    at `/sys/fs/bpf` at boot (`lb-bpffs.service`), as systemd does on a
//!    real host. The boot is done when `systemctl is-system-running
//!    --wait` answers: 1 to 4 s here, unpacking included.
//! 3. [`Machine::sh`] runs a shell command inside: `nsenter` into every
//!    namespace of the container's PID 1, its root and working directory,
//!    with a clean environment. Its output and exit status come back as a
//!    [`std::process::Output`]. [`Machine::write`] and [`Machine::copy_in`]
//!    put files in through the root directory, which the host sees.
//! 4. [`Machine::shutdown`] powers the machine off (SIGTERM to nspawn,
//!    which asks systemd for an orderly halt), SIGKILLs it if that takes
//!    longer than 20 s, and removes its directory. Dropping a `Machine`
//!    does the same, also while unwinding from a panic; nspawn also gets
//!    SIGTERM if the thread that started it dies (a test killed outright).
//!    Every mount the machine makes lives in its own mount namespace and
//!    goes with it; the host gets no mount, interface or namespace from
//!    this module. What machines of dead test processes left (their
//!    directories, nspawn's `/run/systemd/nspawn/propagate/NAME`) is swept
//!    at the next boot.
//!
//! Cgroups: on this project's machines the host is in the hybrid layout
//! (cgroup v1 controllers, `name=systemd`, and cgroup2 at
//! `/sys/fs/cgroup/unified`); nspawn gives the container the same layout
//! and systemd 252 boots in it to `running` with no failed unit.
//!
//! Needs root, and Debian's `debootstrap` and `systemd-container`, which
//! `cargo xtask setup` installs.

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Packages the image holds beyond debootstrap's minimal base: systemd as
/// init, D-Bus and procps as every Debian server has them (`procps` is
/// Priority: important, outside minbase; it has `/bin/kill`), `ip` (to see
/// the XDP program on the interface), `man`, and bpftool, which lb's
/// package recommends: apt installs recommended packages, and the machine
/// has no network to fetch them from when the test installs lb.
const INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "procps",
    "iproute2",
    "man-db",
    "bpftool",
];
/// Bumped when the recipe changes in a way [`INCLUDE`] does not show.
const RECIPE: u32 = 1;
/// Every machine's name starts with this; the rest is `<pid>x<serial>`.
const FAMILY: &str = "lbpk";
/// How long a boot may take until `systemctl is-system-running` answers.
const BOOT_TIMEOUT: Duration = Duration::from_mins(1);
/// How long an orderly power-off may take before the machine is killed.
const HALT_TIMEOUT: Duration = Duration::from_secs(20);
/// `PATH` inside the machine.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// A bpffs at `/sys/fs/bpf`, which systemd mounts at boot on a host but
/// not in a container (and a `.mount` unit for it is refused: an API file
/// system): the image mounts it with this service, early, so lbd's pins
/// outlive its own mount namespace there as on a host.
const BPFFS_UNIT: &str = "\
[Unit]
Description=BPF file system at /sys/fs/bpf (systemd mounts it on a host, not in a container)
DefaultDependencies=no
Before=sysinit.target
ConditionPathIsMountPoint=!/sys/fs/bpf

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount -t bpf -o mode=700,nosuid,nodev,noexec bpf /sys/fs/bpf

[Install]
WantedBy=sysinit.target
";

/// Error from building, booting or using a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A command failed.
    #[error("{cmd} failed ({status}):\n{output}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stdout and stderr (the end, when long).
        output: String,
    },
    /// The machine did not finish booting.
    #[error("machine {name} did not boot within {timeout:?}: {why}\n--- console ---\n{console}")]
    Boot {
        /// The machine.
        name: String,
        /// How long we waited.
        timeout: Duration,
        /// What was last seen.
        why: String,
        /// The end of its console output.
        console: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> MachineError {
    let what = what.into();
    move |source| MachineError::Io { what, source }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `max` bytes of `text` (on a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Run `cmd` to completion; fail unless it exits 0.
fn run(cmd: &mut Command) -> Result<Output, MachineError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("cannot run {}", describe(cmd))))?;
    if out.status.success() {
        return Ok(out);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(MachineError::Failed {
        cmd: describe(cmd),
        status: out.status,
        output: tail(&text, 4000).to_owned(),
    })
}

/// FNV-1a: a hash that stays the same across Rust releases, for the
/// image's name.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The host's Debian release (`VERSION_CODENAME` in /etc/os-release): the
/// image's, so binaries built on the host run in it.
fn host_codename() -> Result<String, MachineError> {
    let text =
        std::fs::read_to_string("/etc/os-release").map_err(io_err("read /etc/os-release"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MachineError::Io {
            what: "/etc/os-release".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "no VERSION_CODENAME"),
        })
}

/// The mirror the host's apt uses for `suite` (not its security archive),
/// from /etc/apt/sources.list and sources.list.d (one-line and deb822
/// formats); `None` leaves the choice to debootstrap.
fn host_mirror(suite: &str) -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.to_string_lossy();
        if name.ends_with(".sources") {
            // deb822 stanzas separated by blank lines.
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza.lines().find_map(|l| {
                        l.strip_prefix(key)
                            .and_then(|r| r.strip_prefix(':'))
                            .map(str::trim)
                    })
                };
                let enabled = field("Enabled").is_none_or(|v| v != "no");
                let debs = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
                let suites =
                    field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
                if enabled
                    && debs
                    && suites
                    && let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next())
                {
                    return Some(uri.to_owned());
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
                if words.next() == Some("deb")
                    && let (Some(uri), Some(s)) = (words.next(), words.next())
                    && s == suite
                {
                    return Some(uri.to_owned());
                }
            }
        }
    }
    None
}

/// `flock(2)` on a file, released when the returned file is closed.
fn lock(path: &Path) -> Result<File, MachineError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err(format!("lock {}", path.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(file)
}

/// The default cache directory: `LB_PKGTEST_CACHE` if set, else
/// `pkgtest/` in the target directory the running test or tool was built
/// in (`target/<profile>/deps/..` up two).
///
/// # Panics
/// When the running executable's path cannot be known.
#[must_use]
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LB_PKGTEST_CACHE") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("the running executable's path");
    let mut dir = exe.parent().expect("a directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop();
    dir.join("pkgtest")
}

/// A bootable root file system, kept as a tarball.
#[derive(Debug, Clone)]
pub struct Image {
    tarball: PathBuf,
    cache: PathBuf,
    /// Whether this call built it (false: found in the cache).
    pub built: bool,
    /// How long building or finding it took.
    pub took: Duration,
}

impl Image {
    /// The image in `cache` (see [`default_cache_dir`]), built first if it
    /// is not there.
    ///
    /// # Errors
    /// [`MachineError`] when debootstrap or tar fails (no network to the
    /// mirror, debootstrap not installed, not root).
    pub fn get(cache: &Path) -> Result<Self, MachineError> {
        let start = Instant::now();
        std::fs::create_dir_all(cache).map_err(io_err(format!("create {}", cache.display())))?;
        let suite = host_codename()?;
        let recipe = RECIPE.to_string();
        let mut parts = vec![suite.as_str(), recipe.as_str(), BPFFS_UNIT];
        parts.extend_from_slice(INCLUDE);
        let tarball = cache.join(format!("{suite}-{:016x}.tar", fnv1a(&parts)));
        let _lock = lock(&cache.join("image.lock"))?;
        let built = !tarball.exists();
        if built {
            Self::build(cache, &suite, &tarball)?;
            prune(cache, &tarball);
        }
        Ok(Self {
            tarball,
            cache: cache.to_owned(),
            built,
            took: start.elapsed(),
        })
    }

    fn build(cache: &Path, suite: &str, tarball: &Path) -> Result<(), MachineError> {
        let root = cache.join("bootstrap");
        if root.exists() {
            // A build that died half way.
            ensure_no_mounts_under(&root)?;
            std::fs::remove_dir_all(&root).map_err(io_err(format!("remove {}", root.display())))?;
        }
        eprintln!(
            "systemd_root: debootstrap {suite} into {} ...",
            root.display()
        );
        let mut cmd = Command::new("debootstrap");
        cmd.arg("--variant=minbase")
            .arg(format!("--include={}", INCLUDE.join(",")))
            .arg(suite)
            .arg(&root);
        if let Some(mirror) = host_mirror(suite) {
            cmd.arg(mirror);
        }
        run(&mut cmd).map_err(|e| match e {
            MachineError::Io { what, source } if source.kind() == io::ErrorKind::NotFound => {
                MachineError::Io {
                    what: format!("{what} (apt-get install debootstrap, or cargo xtask setup)"),
                    source,
                }
            }
            e => e,
        })?;
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(io_err(format!("create {}", dir.display())))?;
            }
            std::fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))
        };
        write("etc/systemd/system/lb-bpffs.service", BPFFS_UNIT)?;
        let wants = root.join("etc/systemd/system/sysinit.target.wants");
        std::fs::create_dir_all(&wants).map_err(io_err(format!("create {}", wants.display())))?;
        std::os::unix::fs::symlink("../lb-bpffs.service", wants.join("lb-bpffs.service"))
            .map_err(io_err("enable lb-bpffs.service"))?;
        // debootstrap copies the host's name; each machine writes its own.
        write("etc/hostname", "lb-pkgtest\n")?;
        // The downloaded packages are installed: drop them (about 45 MB).
        run(Command::new("find")
            .arg(root.join("var/cache/apt/archives"))
            .args(["-name", "*.deb", "-delete"]))?;
        let partial = tarball.with_extension("tar.partial");
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&partial)
            .arg("."))?;
        std::fs::rename(&partial, tarball)
            .map_err(io_err(format!("rename to {}", tarball.display())))?;
        std::fs::remove_dir_all(&root).map_err(io_err(format!("remove {}", root.display())))?;
        Ok(())
    }

    /// The tarball.
    #[must_use]
    pub fn tarball(&self) -> &Path {
        &self.tarball
    }
}

/// Remove the cache's other images (older recipes).
fn prune(cache: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep && path.extension().is_some_and(|e| e == "tar") {
            eprintln!("systemd_root: removing the older image {}", path.display());
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Whether any mount point lies at or under `dir` (in this process's mount
/// namespace).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Refuse to delete a tree with something mounted in it: removing it would
/// reach into the mounted file system.
fn ensure_no_mounts_under(dir: &Path) -> Result<(), MachineError> {
    let mounts = mounts_under(dir);
    if mounts.is_empty() {
        Ok(())
    } else {
        Err(MachineError::Io {
            what: format!("remove {}", dir.display()),
            source: io::Error::other(format!("mounts inside it: {mounts:?}; unmount them first")),
        })
    }
}

/// A Debian system booted under systemd in a container: see the module
/// documentation.
pub struct Machine {
    name: String,
    root: PathBuf,
    console: PathBuf,
    nspawn: Option<Child>,
    leader: u32,
    /// How long the boot took (unpacking, then until systemd is up).
    pub boot_took: Duration,
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The children of process `pid` (from its main thread).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl Machine {
    /// Unpack `image` into a new directory under its cache and boot it in
    /// network namespace `netns` (a name under /run/netns).
    ///
    /// # Errors
    /// [`MachineError`] when unpacking or nspawn fails, or systemd does not
    /// reach `running` (or `degraded`) within a minute; the machine is
    /// stopped and removed then.
    pub fn boot(image: &Image, netns: &str) -> Result<Self, MachineError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let start = Instant::now();
        let machines = image.cache.join("machines");
        std::fs::create_dir_all(&machines)
            .map_err(io_err(format!("create {}", machines.display())))?;
        sweep(&machines);
        let name = format!(
            "{FAMILY}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let root = machines.join(&name);
        let console = machines.join(format!("{name}.console"));
        let mut machine = Self {
            name: name.clone(),
            root: root.clone(),
            console: console.clone(),
            nspawn: None,
            leader: 0,
            boot_took: Duration::ZERO,
        };
        std::fs::create_dir(&root).map_err(io_err(format!("create {}", root.display())))?;
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-xf")
            .arg(&image.tarball))?;
        std::fs::write(root.join("etc/hostname"), format!("{name}\n"))
            .map_err(io_err("write /etc/hostname"))?;
        let log =
            File::create(&console).map_err(io_err(format!("create {}", console.display())))?;
        let log2 = log.try_clone().map_err(io_err("dup console log"))?;
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("--boot")
            .arg("--quiet")
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--machine={name}"))
            .args(["--register=no", "--keep-unit"])
            .arg(format!("--network-namespace-path=/run/netns/{netns}"))
            .arg("--capability=all")
            // nspawn's seccomp filter refuses bpf(2) with EPERM even with
            // CAP_BPF: lbd could not create a map under systemd.
            .arg("--system-call-filter=bpf perf_event_open")
            .args(["--console=read-only", "--link-journal=no"])
            .args(["--resolv-conf=off", "--timezone=off"])
            .env("SYSTEMD_LOG_COLOR", "0")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: prctl(2) is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                // A test process that dies (SIGKILL, abort) takes the
                // machine down with it: nspawn halts it on SIGTERM.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io_err(
            "cannot run systemd-nspawn (apt-get install systemd-container, or cargo xtask setup)",
        ))?;
        let nspawn_pid = child.id();
        machine.nspawn = Some(child);
        if let Err(why) = machine.wait_booted(nspawn_pid, start) {
            return Err(MachineError::Boot {
                name,
                timeout: BOOT_TIMEOUT,
                why,
                console: tail(&machine.console(), 6000).to_owned(),
            });
        }
        machine.boot_took = start.elapsed();
        Ok(machine)
    }

    /// Find the container's PID 1 (nspawn's child once it runs systemd),
    /// then wait for `systemctl is-system-running --wait`.
    fn wait_booted(&mut self, nspawn_pid: u32, start: Instant) -> Result<(), String> {
        let deadline = start + BOOT_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(child) = self.nspawn.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("systemd-nspawn exited: {status}"));
            }
            if self.leader == 0 {
                self.leader = children(nspawn_pid)
                    .into_iter()
                    .find(|p| {
                        std::fs::read_link(format!("/proc/{p}/exe"))
                            .is_ok_and(|e| e.file_name() == Some(OsStr::new("systemd")))
                    })
                    .unwrap_or(0);
            }
            if self.leader != 0 {
                match self.sh("timeout 20 systemctl is-system-running --wait") {
                    Ok(out) => {
                        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                        if state == "running" || state == "degraded" {
                            return Ok(());
                        }
                        last = format!(
                            "is-system-running: {state} {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        );
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(if last.is_empty() {
            "systemd never started".into()
        } else {
            last
        })
    }

    /// The machine's name (also its host name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PID (on the host) of the machine's systemd.
    #[must_use]
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// What the machine printed on its console so far (systemd's boot and
    /// shutdown messages).
    #[must_use]
    pub fn console(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The host path of `path` inside the machine.
    #[must_use]
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// A command that runs `program` inside the machine, in all its
    /// namespaces and its root, with a clean environment (`PATH`,
    /// `LANG=C.UTF-8`, `TERM=dumb`).
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.leader.to_string())
            .args(["--all", "--root", "--wd", "--"])
            .args(["env", "-i"])
            .arg(format!("PATH={PATH}"))
            .args(["LANG=C.UTF-8", "TERM=dumb", "HOME=/root"])
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `script` with `/bin/sh -c` inside the machine; its output and
    /// status, whatever the status.
    ///
    /// # Errors
    /// [`MachineError::Io`] if nsenter cannot be started.
    pub fn sh(&self, script: &str) -> Result<Output, MachineError> {
        self.command("/bin/sh")
            .args(["-c", script])
            .output()
            .map_err(io_err(format!("nsenter into {}", self.name)))
    }

    /// Run `script` inside the machine; its stdout, or an error with its
    /// output unless it exits 0.
    ///
    /// # Errors
    /// [`MachineError::Failed`] on a non-zero exit.
    pub fn sh_ok(&self, script: &str) -> Result<String, MachineError> {
        let out = self.sh(script)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Err(MachineError::Failed {
            cmd: format!("{}: {script}", self.name),
            status: out.status,
            output: tail(&text, 4000).to_owned(),
        })
    }

    /// Write `contents` to `path` inside the machine (parents created),
    /// owned by root, with mode `mode`.
    ///
    /// # Errors
    /// [`MachineError::Io`].
    pub fn write(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), MachineError> {
        use std::os::unix::fs::PermissionsExt as _;
        let host = self.host_path(path);
        if let Some(dir) = host.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {path}")))?;
        }
        std::fs::write(&host, contents).map_err(io_err(format!("write {path}")))?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {path}")))
    }

    /// Copy host file `from` to `to` inside the machine (mode 0644).
    ///
    /// # Errors
    /// [`MachineError::Io`].
    pub fn copy_in(&self, from: &Path, to: &str) -> Result<(), MachineError> {
        let bytes = std::fs::read(from).map_err(io_err(format!("read {}", from.display())))?;
        self.write(to, &bytes, 0o644)
    }

    /// Power off (orderly, killed after 20 s), then remove the machine's
    /// directory. Returns whether the power-off was orderly.
    ///
    /// # Errors
    /// [`MachineError`] if something could not be removed.
    pub fn shutdown(mut self) -> Result<bool, MachineError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<bool, MachineError> {
        let mut orderly = true;
        if let Some(mut child) = self.nspawn.take() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: signalling our own child, which we have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + HALT_TIMEOUT;
            let mut exited = false;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !exited {
                orderly = false;
                eprintln!(
                    "systemd_root: {} did not halt within {HALT_TIMEOUT:?}: killing it",
                    self.name
                );
                if self.leader != 0 && alive(self.leader) {
                    // PID 1 of its PID namespace: the kernel kills the rest.
                    // SAFETY: plain kill(2).
                    unsafe { libc::kill(self.leader as libc::pid_t, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        remove_machine(&self.root, &self.name)?;
        let _ = std::fs::remove_file(&self.console);
        Ok(orderly)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("systemd_root: cleanup of {} failed: {e}", self.name);
        }
    }
}

/// Where nspawn keeps, on the host, what it leaves behind when it is
/// killed: a directory per machine (`propagate/NAME`) and a lock file per
/// image directory (`locks/inode-DEV:INO`).
const NSPAWN_RUN: &str = "/run/systemd/nspawn";

/// Remove a stopped machine's root directory `root` and what nspawn may
/// have left of it under [`NSPAWN_RUN`].
fn remove_machine(root: &Path, name: &str) -> Result<(), MachineError> {
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(meta) = std::fs::metadata(root) {
        let lock = Path::new(NSPAWN_RUN).join("locks").join(format!(
            "inode-{}:{}",
            meta.dev(),
            meta.ino()
        ));
        let _ = std::fs::remove_file(lock);
        ensure_no_mounts_under(root)?;
        std::fs::remove_dir_all(root).map_err(io_err(format!("remove {}", root.display())))?;
    }
    let propagate = Path::new(NSPAWN_RUN).join("propagate").join(name);
    if propagate.exists() && ensure_no_mounts_under(&propagate).is_ok() {
        let _ = std::fs::remove_dir_all(&propagate);
    }
    Ok(())
}

/// Whether `name` is a machine of a test process that no longer runs.
fn orphan(name: &str) -> bool {
    name.strip_prefix(FAMILY)
        .and_then(|r| r.split('x').next())
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && !alive(pid))
}

/// Remove what machines of test processes that no longer run left: their
/// directories and console logs under `machines`, and nspawn's
/// `propagate/` directories on the host.
fn sweep(machines: &Path) {
    for entry in std::fs::read_dir(machines).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !orphan(&name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            if let Err(e) = remove_machine(&path, &name) {
                eprintln!("systemd_root: sweeping {} failed: {e}", path.display());
            }
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    let propagate = Path::new(NSPAWN_RUN).join("propagate");
    for entry in std::fs::read_dir(propagate).into_iter().flatten().flatten() {
        let path = entry.path();
        if orphan(&entry.file_name().to_string_lossy()) && ensure_no_mounts_under(&path).is_ok() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_name_changes_with_the_recipe() {
        assert_eq!(fnv1a(&["bookworm", "1"]), fnv1a(&["bookworm", "1"]));
        assert_ne!(fnv1a(&["bookworm", "1"]), fnv1a(&["bookworm", "2"]));
        // Parts are delimited: moving a character between them matters.
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
    }

    #[test]
    fn only_machines_of_dead_test_processes_are_orphans() {
        let me = std::process::id();
        assert!(!orphan(&format!("{FAMILY}{me}x0")), "ours");
        // PID 1 always runs.
        assert!(!orphan(&format!("{FAMILY}1x3")));
        // Above the kernel's PID limit (2^22): no such process.
        assert!(orphan(&format!("{FAMILY}99999999x0")));
        assert!(!orphan("lbt123x0-lb"), "not ours at all");
        assert!(!orphan(&format!("{FAMILY}x0")), "no PID");
    }

    #[test]
    fn tail_keeps_the_end_on_a_character_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
        assert_eq!(tail("aé", 1), "");
    }
}
