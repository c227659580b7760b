//! A daemon child process for kernel tests, the lab and the benchmarks:
//! `lbd`, `lbd decap`, keepalived, nginx, HAProxy, ...
//!
//! [`Daemon::spawn`] starts a [`Command`] (typically from
//! [`Netns::command`](crate::netns::Netns::command)) with stdin closed and
//! stdout and stderr in a log file, which [`Daemon::log`] reads back. The
//! waits ([`Daemon::wait_log`], [`Daemon::wait_path`], [`Daemon::wait_until`])
//! poll every 20 ms and fail fast, with the log, when the process exits
//! before the condition holds. [`Daemon::kill`] is a crash (SIGKILL, no
//! cleanup), [`Daemon::stop`] a clean stop (SIGTERM, SIGKILL after a grace
//! period); dropping a `Daemon` stops it, also while unwinding from a
//! panic. [`Daemon::detach`] leaves the process running instead (the lab's
//! `up`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use lb_lab::{daemon::Daemon, netns::Netns};
//!
//! let ns = Netns::create("lbt-doc")?;
//! let mut cmd = ns.command(lb_lab::bin("lbd"));
//! cmd.args(["--config", "/tmp/lb.toml"]);
//! let mut lbd = Daemon::spawn("lbd", &mut cmd, "/tmp/lbd.log")?;
//! lbd.wait_log("service active", Duration::from_secs(15))?;
//! let status = lbd.stop()?;
//! assert!(status.success(), "{}", lbd.log());
//! # Ok(())
//! # }
//! ```

use std::{
    io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use crate::netns::wait_for;

/// How long [`Daemon::stop`] waits after SIGTERM before SIGKILL, unless
/// [`Builder::grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Error from starting, waiting for or stopping a [`Daemon`].
///
/// `Debug` shows the same text as `Display`, so a test's `unwrap()` prints
/// the daemon's log readably.
#[derive(thiserror::Error)]
pub enum DaemonError {
    /// The log file could not be created.
    #[error("cannot create log file {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// The daemon's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process exited while it was waited for, or before it could be
    /// signalled.
    #[error("{name} exited ({status}); log:\n{log}")]
    Exited {
        /// The daemon's name.
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its log, as it was then.
        log: String,
    },
    /// A wait timed out.
    #[error("{name}: no {what} within {timeout:?}; log:\n{log}")]
    Timeout {
        /// The daemon's name.
        name: String,
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The daemon's log, as it was then.
        log: String,
    },
    /// Signalling or reaping the process failed.
    #[error("{name}: {source}")]
    Process {
        /// The daemon's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl std::fmt::Debug for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Send signal `sig` to process `pid` (0: only check that it exists).
///
/// For processes that are not (or no longer) a [`Daemon`]: one started by
/// an earlier run and known by a pid file, or one a daemon forked.
///
/// # Errors
/// `kill(2)` fails: no such process (`ESRCH`), not ours (`EPERM`).
pub fn signal_pid(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGTERM every child still running, wait until all have exited or
/// `grace` has passed, then SIGKILL and reap the rest. The exit status of
/// each, in order.
pub(crate) fn terminate(children: &mut [Child], grace: Duration) -> Vec<io::Result<ExitStatus>> {
    let mut done: Vec<Option<ExitStatus>> = children
        .iter_mut()
        .map(|c| c.try_wait().ok().flatten())
        .collect();
    for (child, _) in children.iter().zip(&done).filter(|(_, d)| d.is_none()) {
        if let Ok(pid) = i32::try_from(child.id()) {
            // Not reaped yet (at worst a zombie): the pid is still ours.
            let _exited_meanwhile = signal_pid(pid, libc::SIGTERM);
        }
    }
    let _all_exited = wait_for(grace, || {
        for (child, d) in children.iter_mut().zip(&mut done) {
            if d.is_none() {
                *d = child.try_wait().ok().flatten();
            }
        }
        done.iter().all(Option::is_some).then_some(())
    });
    children
        .iter_mut()
        .zip(done)
        .map(|(child, d)| {
            if let Some(status) = d {
                Ok(status)
            } else {
                let _exited_meanwhile = child.kill();
                child.wait()
            }
        })
        .collect()
}

/// How to start a [`Daemon`]; from [`Daemon::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    name: String,
    log: PathBuf,
    grace: Duration,
    parent_death_signal: Option<i32>,
}

impl Builder {
    /// How long [`Daemon::stop`] (and drop) waits after SIGTERM before
    /// SIGKILL; [`DEFAULT_GRACE`] unless set.
    pub const fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Have the kernel send `sig` (typically SIGKILL) to the daemon when
    /// the thread that starts it exits (`PR_SET_PDEATHSIG`), so it does not
    /// outlive a tool killed without unwinding. Start it from a thread that
    /// lives as long as the daemon should, e.g. the main thread.
    pub const fn parent_death_signal(mut self, sig: i32) -> Self {
        self.parent_death_signal = Some(sig);
        self
    }

    /// Start `cmd` with stdin from `/dev/null` and stdout and stderr into
    /// the log file (created, or truncated).
    ///
    /// # Errors
    /// [`DaemonError::Log`] if the log file cannot be created,
    /// [`DaemonError::Spawn`] if the process cannot be started.
    pub fn spawn(self, cmd: &mut Command) -> Result<Daemon, DaemonError> {
        let log_err = |source| DaemonError::Log {
            path: self.log.clone(),
            source,
        };
        let file = std::fs::File::create(&self.log).map_err(log_err)?;
        let stdout = file.try_clone().map_err(log_err)?;
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(file);
        if let Some(sig) = self.parent_death_signal {
            let sig = libc::c_ulong::try_from(sig).map_err(|_| DaemonError::Spawn {
                name: self.name.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "negative signal number"),
            })?;
            // SAFETY: between fork and exec we only call prctl(2), which is
            // async-signal-safe, and allocate nothing.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, sig) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|source| DaemonError::Spawn {
            name: self.name.clone(),
            source,
        })?;
        Ok(Daemon {
            pid: child.id(),
            child: Mutex::new(child),
            name: self.name,
            log: self.log,
            grace: self.grace,
            detached: false,
        })
    }
}

/// A daemon child process with its output in a log file; stopped on drop
/// (SIGTERM, SIGKILL after the grace period) unless detached.
#[derive(Debug)]
pub struct Daemon {
    /// Locked only for `try_wait`/`wait`, so that waits and signals work
    /// through `&self`.
    child: Mutex<Child>,
    pid: u32,
    name: String,
    log: PathBuf,
    grace: Duration,
    detached: bool,
}

impl Daemon {
    /// Options for starting daemon `name` (used in messages) with its
    /// output in file `log`.
    pub fn builder(name: impl Into<String>, log: impl Into<PathBuf>) -> Builder {
        Builder {
            name: name.into(),
            log: log.into(),
            grace: DEFAULT_GRACE,
            parent_death_signal: None,
        }
    }

    /// Start `cmd` as daemon `name` with its output in file `log`, with
    /// the default options (see [`Builder::spawn`]).
    ///
    /// # Errors
    /// [`DaemonError::Log`] or [`DaemonError::Spawn`].
    pub fn spawn(
        name: impl Into<String>,
        cmd: &mut Command,
        log: impl Into<PathBuf>,
    ) -> Result<Self, DaemonError> {
        Self::builder(name, log).spawn(cmd)
    }

    /// The name given at start.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    #[must_use]
    pub const fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the daemon has written so far (empty if the log cannot
    /// be read).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exit status if the process has exited (it is reaped then),
    /// `None` while it runs.
    #[must_use]
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// Poll `probe` with the log so far every 20 ms until it returns
    /// `Some`, for at most `timeout`. `what` names the condition in the
    /// error.
    ///
    /// # Errors
    /// [`DaemonError::Exited`] as soon as the process has exited without
    /// the condition holding, [`DaemonError::Timeout`] after `timeout`;
    /// both carry the log.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, DaemonError> {
        let mut exited = None;
        let found = wait_for(timeout, || {
            let status = self.exited();
            // The log after the status: a line written just before the
            // exit still counts.
            if let Some(v) = probe(&self.log()) {
                return Some(Ok(v));
            }
            exited = status;
            exited.map(Err)
        });
        match found {
            Some(Ok(v)) => Ok(v),
            Some(Err(status)) => Err(DaemonError::Exited {
                name: self.name.clone(),
                status,
                log: self.log(),
            }),
            None => Err(DaemonError::Timeout {
                name: self.name.clone(),
                what: what.to_owned(),
                timeout,
                log: self.log(),
            }),
        }
    }

    /// Wait until the log contains `needle`.
    ///
    /// # Errors
    /// As [`Daemon::wait_until`].
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<(), DaemonError> {
        self.wait_until(&format!("{needle:?} in the log"), timeout, |log| {
            log.contains(needle).then_some(())
        })
    }

    /// Wait until `path` exists (a pin, a socket, a pid file).
    ///
    /// # Errors
    /// As [`Daemon::wait_until`].
    pub fn wait_path(&self, path: &Path, timeout: Duration) -> Result<(), DaemonError> {
        self.wait_until(&path.display().to_string(), timeout, |_| {
            path.exists().then_some(())
        })
    }

    /// Send signal `sig` to the process.
    ///
    /// # Errors
    /// [`DaemonError::Exited`] if it has exited and been reaped (its pid
    /// may belong to another process by now), [`DaemonError::Process`] if
    /// `kill(2)` fails.
    pub fn signal(&self, sig: i32) -> Result<(), DaemonError> {
        // The lock keeps the process from being reaped under us.
        let mut child = self.child();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DaemonError::Exited {
                name: self.name.clone(),
                status,
                log: self.log(),
            });
        }
        let pid = i32::try_from(self.pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        pid.and_then(|pid| signal_pid(pid, sig))
            .map_err(|source| DaemonError::Process {
                name: self.name.clone(),
                source,
            })
    }

    /// SIGKILL (a crash: no release, no cleanup) and reap; the exit status
    /// (the earlier one if the process had already exited).
    ///
    /// # Errors
    /// [`DaemonError::Process`] if it cannot be reaped.
    pub fn kill(&mut self) -> Result<ExitStatus, DaemonError> {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _exited_already = child.kill();
        child.wait().map_err(|source| DaemonError::Process {
            name: self.name.clone(),
            source,
        })
    }

    /// A clean stop: SIGTERM, wait up to the grace period, then SIGKILL;
    /// the exit status (the earlier one if the process had already exited).
    ///
    /// # Errors
    /// [`DaemonError::Process`] if it cannot be reaped.
    ///
    /// # Panics
    /// Never: `terminate` returns one status per child.
    pub fn stop(&mut self) -> Result<ExitStatus, DaemonError> {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let status = terminate(std::slice::from_mut(child), self.grace)
            .pop()
            .expect("one child, one status");
        status.map_err(|source| DaemonError::Process {
            name: self.name.clone(),
            source,
        })
    }

    /// Leave the process running (drop will not stop it): for a lab that
    /// outlives the tool starting it. Returns its pid, for a pid file. If
    /// it exits while this process runs, it stays a zombie until this
    /// process exits too and init reaps it.
    #[must_use = "the pid is the only handle left on the process"]
    pub fn detach(mut self) -> u32 {
        self.detached = true;
        self.pid
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.detached {
            let _status = self.stop();
        }
    }
}
