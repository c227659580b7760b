//! Tracked objects for VRRP instances: keepalived's `vrrp_script` and
//! `track_interface`.
//!
//! - [`Hysteresis`]: the pure `rise`/`fall` result filter of a `vrrp_script`,
//!   with keepalived 2.2's initial states (`init_fail` or not);
//! - [`spawn_script`]: run a script every `interval` under `/bin/sh -c`, kill
//!   its whole process group when it exceeds `timeout`, and report state
//!   flips as [`TrackUpdate`]s;
//! - [`interface_up`] / [`spawn_interface`]: `IFF_UP` and `IFF_RUNNING` of an
//!   interface, polled with `SIOCGIFFLAGS`, reported the same way;
//! - [`ProcessSpec`] / [`scan_proc`] / [`spawn_process`]: keepalived's
//!   `vrrp_track_process`, the number of processes matching a name (and
//!   arguments) against a quorum, with `fork_delay` / `terminate_delay`
//!   ([`Debounce`]). keepalived follows processes with the netlink process
//!   connector; here `/proc` is polled ([`POLL`]), so a change is seen
//!   within one poll;
//! - [`parse_value`] / [`spawn_file`]: keepalived's `track_file`, an
//!   integer read from a file, polled ([`POLL`]) and reported as a
//!   [`ValueUpdate`] (keepalived uses inotify).
//!
//! The updates feed [`super::Event::Track`] (looked up by name with
//! [`super::Machine::track_index`]). Each task sends one update with its
//! initial state right away, then one per flip, and ends when the receiver
//! is dropped.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::config::ParamMatch;
use crate::sys::interface::interface_up;
use crate::sys::process::{GroupGuard, lookup_user};

/// keepalived `vrrp_script` result filter.
///
/// Mirrors keepalived's `vscript->result` counter (`vrrp_scheduler.c`,
/// `vrrp_script_child_thread`): while up, `fall` consecutive failures take
/// the script down; while down, `rise` consecutive successes bring it up; a
/// result of the other kind resets the count.
///
/// keepalived has three initial states, all available here:
/// - default (no `init_fail`), [`Hysteresis::new`]: reported up, but the
///   first result alone decides (keepalived's `SCRIPT_INIT_STATE_INIT`,
///   `result = rise - 1`, "one success is enough", and a failure takes it
///   down whatever `fall` is);
/// - `init_fail`, `with_initial(rise, fall, false)`: down, needs `rise`
///   successes;
/// - `with_initial(rise, fall, true)`: settled up, needs `fall` failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    /// Consecutive successes needed to go from down to up (>= 1).
    rise: u32,
    /// Consecutive failures needed to go from up to down (>= 1).
    fall: u32,
    /// The filtered state.
    up: bool,
    /// Consecutive results against `up` seen so far.
    streak: u32,
    /// No result yet in keepalived's default initial state: the first
    /// result decides on its own.
    pending: bool,
}

impl Hysteresis {
    /// keepalived's default initial state (no `init_fail`): up until the
    /// first result, which then decides on its own (a first failure takes
    /// the script down at once, a first success keeps it up). `rise` and
    /// `fall` of 0 are taken as 1.
    #[must_use]
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            pending: true,
            ..Self::with_initial(rise, fall, true)
        }
    }

    /// A settled initial state: `up = false` is keepalived's `init_fail`
    /// (`rise` successes to come up); `up = true` needs `fall` failures to
    /// go down. `rise` and `fall` of 0 are taken as 1.
    #[must_use]
    pub fn with_initial(rise: u32, fall: u32, up: bool) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            up,
            streak: 0,
            pending: false,
        }
    }

    /// Feed one result; returns `Some(new_state)` when the state flips.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if std::mem::take(&mut self.pending) {
            self.streak = 0;
            return self.flip_to(ok);
        }
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.streak = 0;
            self.flip_to(ok)
        } else {
            None
        }
    }

    /// The filtered state: `true` while the script counts as OK.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether no result has been recorded yet in keepalived's default
    /// initial state (keepalived holds unweighted instances back until the
    /// first result; here the state is reported up meanwhile).
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    fn flip_to(&mut self, up: bool) -> Option<bool> {
        (self.up != up).then(|| {
            self.up = up;
            up
        })
    }
}

/// One `vrrp_script`: what to run, how often, and how to filter results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSpec {
    /// The `vrrp_script` name, used in [`TrackUpdate::name`] and logs.
    pub name: String,
    /// The command line, run with `/bin/sh -c`; exit status 0 is success.
    pub script: String,
    /// Time between the starts of two runs; the first run is immediate.
    pub interval: Duration,
    /// A run still going after this long is killed and counts as a
    /// failure; zero means `interval` (as in keepalived).
    pub timeout: Duration,
    /// Consecutive successes needed to come up (0 is taken as 1).
    pub rise: u32,
    /// Consecutive failures needed to go down (0 is taken as 1).
    pub fall: u32,
    /// Run as this user (and its primary group); `None` runs as lbd.
    pub user: Option<String>,
    /// Start down instead of keepalived's default (see [`Hysteresis`]).
    pub init_fail: bool,
}

/// A tracked object's new state, sent initially and on every flip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackUpdate {
    /// The script or interface name.
    pub name: String,
    /// Whether the object now counts as up.
    pub up: bool,
    /// The result that caused the flip, e.g. `"exit status 1"`,
    /// `"timed out after 2s"`, `"exited 0"`, `"no such interface"`.
    pub reason: String,
}

/// Spawn a task that runs the script every `interval` (first run
/// immediately), kills it (whole process group: spawn with `process_group(0)`
/// and `kill -pgid`) when it exceeds `timeout` (counts as failure), feeds
/// results through [`Hysteresis`] and sends a [`TrackUpdate`] on each flip,
/// and also one initial [`TrackUpdate`] with the initial state right away.
///
/// A run that cannot be spawned (or whose `user` cannot be looked up)
/// counts as a failure and is logged as a warning. A run still going when
/// the next is due delays it (keepalived skips it; the effect is the same).
/// The task ends when the receiver is dropped; dropping or aborting it
/// mid-run kills the run's process group.
#[must_use = "the task runs until the receiver is dropped or it is aborted"]
pub fn spawn_script(spec: ScriptSpec, tx: UnboundedSender<TrackUpdate>) -> JoinHandle<()> {
    tokio::spawn(run_script(spec, tx))
}

async fn run_script(spec: ScriptSpec, tx: UnboundedSender<TrackUpdate>) {
    let mut filter = if spec.init_fail {
        Hysteresis::with_initial(spec.rise, spec.fall, false)
    } else {
        Hysteresis::new(spec.rise, spec.fall)
    };
    let initial = TrackUpdate {
        name: spec.name.clone(),
        up: filter.is_up(),
        reason: if spec.init_fail {
            "initial state (init_fail)".to_owned()
        } else {
            "initial state".to_owned()
        },
    };
    if tx.send(initial).is_err() {
        return;
    }

    let creds = match spec.user.as_deref().map(lookup_user).transpose() {
        Ok(creds) => Ok(creds),
        Err(error) => {
            warn!(script = %spec.name, %error, "vrrp_script user lookup failed, counting every run as a failure");
            Err(error.to_string())
        }
    };
    let timeout = if spec.timeout.is_zero() {
        spec.interval
    } else {
        spec.timeout
    };
    // `interval` panics on zero.
    let mut ticker = tokio::time::interval(spec.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tx.closed() => return,
        }
        let (ok, reason) = match &creds {
            Ok(creds) => run_once(&spec, *creds, timeout).await,
            Err(reason) => (false, reason.clone()),
        };
        if let Some(up) = filter.record(ok) {
            info!(script = %spec.name, up, reason, "vrrp_script state changed");
            let update = TrackUpdate {
                name: spec.name.clone(),
                up,
                reason,
            };
            if tx.send(update).is_err() {
                return;
            }
        }
    }
}

/// One run: `(success, reason)`.
async fn run_once(
    spec: &ScriptSpec,
    creds: Option<(u32, u32)>,
    timeout: Duration,
) -> (bool, String) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&spec.script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a timeout kills what it started too
        // (keepalived: `kill(-pid, ...)`).
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = creds {
        cmd.uid(uid).gid(gid);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => {
            warn!(script = %spec.name, %error, "vrrp_script could not be spawned");
            return (false, format!("spawn failed: {error}"));
        }
    };
    // Declared after `child` so it drops first: an aborted task kills the
    // group before tokio reaps the leader.
    let mut group = GroupGuard::new(child.id());

    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            group.disarm();
            (status.success(), describe(status))
        }
        Ok(Err(error)) => (false, format!("waiting for the script failed: {error}")),
        Err(_elapsed) => {
            group.kill();
            if let Err(error) = child.wait().await {
                warn!(script = %spec.name, %error, "reaping a timed-out vrrp_script failed");
            }
            (false, format!("timed out after {timeout:?}"))
        }
    }
}

/// `"exited 0"`, `"exit status 1"` or `"killed by signal 9"`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited 0".to_owned(),
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// Poll every `period`; send a [`TrackUpdate`] (name = interface name)
/// initially and on each change. A vanished interface counts as down.
///
/// The task ends when the receiver is dropped.
#[must_use = "the task runs until the receiver is dropped or it is aborted"]
pub fn spawn_interface(
    name: String,
    period: Duration,
    tx: UnboundedSender<TrackUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        poll(period, tx, move || {
            let (up, reason) = match interface_up(&name) {
                Ok(true) => (true, "up and running".to_owned()),
                Ok(false) => (false, "down or not running".to_owned()),
                Err(error) if error.raw_os_error() == Some(libc::ENODEV) => {
                    (false, "no such interface".to_owned())
                }
                Err(error) => (false, format!("SIOCGIFFLAGS failed: {error}")),
            };
            if last == Some(up) {
                return None;
            }
            if last.is_some() {
                info!(interface = %name, up, reason, "track_interface state changed");
            } else {
                info!(interface = %name, up, reason, "track_interface initial state");
            }
            last = Some(up);
            Some(TrackUpdate {
                name: name.clone(),
                up,
                reason,
            })
        })
        .await;
    })
}

/// Call `read` now and then every `period` (at least 1 ms; a late tick
/// delays the next ones), sending each `Some` it returns, until `tx`'s
/// receiver is dropped: the loop of every polled tracker.
async fn poll<T>(period: Duration, tx: UnboundedSender<T>, mut read: impl FnMut() -> Option<T>) {
    // `interval` panics on zero.
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tx.closed() => return,
        }
        if let Some(update) = read()
            && tx.send(update).is_err()
        {
            return;
        }
    }
}

/// How often tracked processes and files are polled.
pub const POLL: Duration = Duration::from_millis(500);

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcInfo {
    /// `/proc/PID/comm`: the name, at most 15 bytes.
    pub comm: String,
    /// `/proc/PID/cmdline`, split at the NULs (empty when not read).
    pub cmdline: Vec<String>,
}

/// One `vrrp_track_process`: what to match, and how many make it OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The `vrrp_track_process` name, used in updates and logs.
    pub name: String,
    /// The process name; the first command-line word when matching the
    /// command line ([`ProcessSpec::uses_cmdline`]).
    pub process: String,
    /// Arguments to match (see `param_match`).
    pub parameters: Vec<String>,
    /// How the arguments match; `Some` without parameters: none allowed.
    pub param_match: Option<ParamMatch>,
    /// Match the command line even without parameters.
    pub full_command: bool,
    /// Fewest matching processes for OK.
    pub quorum: u32,
    /// Most matching processes for OK.
    pub quorum_max: Option<u32>,
    /// How long OK must last before it is reported.
    pub fork_delay: Duration,
    /// How long not OK must last before it is reported.
    pub terminate_delay: Duration,
}

impl ProcessSpec {
    /// Whether the command line is matched (else the name, `comm`).
    #[must_use]
    pub fn uses_cmdline(&self) -> bool {
        self.full_command || !self.parameters.is_empty() || self.param_match.is_some()
    }

    /// Whether process `p` is one of ours: its name (the first 15 bytes,
    /// the kernel's `TASK_COMM_LEN` - 1) equals `process`; or, matching
    /// the command line, its first word equals `process` and its
    /// arguments match `parameters` as `param_match` says.
    #[must_use]
    pub fn matches(&self, p: &ProcInfo) -> bool {
        if !self.uses_cmdline() {
            let wanted = self.process.as_bytes();
            return p.comm.as_bytes() == &wanted[..wanted.len().min(15)];
        }
        let Some((argv0, args)) = p.cmdline.split_first() else {
            return false;
        };
        if *argv0 != self.process {
            return false;
        }
        let params = &self.parameters;
        match self.param_match {
            None if params.is_empty() => true,
            None | Some(ParamMatch::Exact) => args == params.as_slice(),
            Some(ParamMatch::Partial) => args.starts_with(params),
            Some(ParamMatch::Initial) => match params.split_last() {
                None => true,
                Some((last, init)) => {
                    args.len() >= params.len()
                        && args.starts_with(init)
                        && args[init.len()].starts_with(last.as_str())
                }
            },
        }
    }

    /// Whether `count` matching processes are OK: `quorum..=quorum_max`.
    #[must_use]
    pub fn ok(&self, count: usize) -> bool {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        count >= u64::from(self.quorum) && self.quorum_max.is_none_or(|max| count <= u64::from(max))
    }

    /// How many of `procs` match.
    #[must_use]
    pub fn count(&self, procs: &[ProcInfo]) -> usize {
        procs.iter().filter(|p| self.matches(p)).count()
    }
}

/// The processes under `root` (normally `/proc`): every numeric directory
/// whose process is not a zombie (keepalived does not count zombies),
/// with its `comm`, and its `cmdline` when `cmdline` is set. Processes
/// that vanish while being read are skipped.
#[must_use]
pub fn scan_proc(root: &Path, cmdline: bool) -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let path = entry.path();
        let zombie = std::fs::read_to_string(path.join("stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .is_some_and(|s| s == "Z")
        });
        if zombie {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let cmdline = if cmdline {
            std::fs::read(path.join("cmdline"))
                .map(|raw| {
                    raw.split(|&b| b == 0)
                        .map(|w| String::from_utf8_lossy(w).into_owned())
                        .collect::<Vec<_>>()
                })
                .map(|mut words| {
                    if words.last().is_some_and(String::is_empty) {
                        words.pop();
                    }
                    words
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(ProcInfo {
            comm: comm.trim_end_matches('\n').to_owned(),
            cmdline,
        });
    }
    out
}

/// A state that must hold for a delay before it is reported
/// (`fork_delay` / `terminate_delay`): pure, time injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    reported: bool,
    pending: Option<(bool, Instant)>,
}

impl Debounce {
    /// Reporting `initial`.
    #[must_use]
    pub fn new(initial: bool) -> Self {
        Self {
            reported: initial,
            pending: None,
        }
    }

    /// The state seen at `now`; `Some(new)` when the reported state flips:
    /// to up once it was seen up for `up_delay`, to down once seen down
    /// for `down_delay` (zero: at once). Seeing the reported state again
    /// cancels a pending flip.
    pub fn observe(
        &mut self,
        ok: bool,
        now: Instant,
        up_delay: Duration,
        down_delay: Duration,
    ) -> Option<bool> {
        if ok == self.reported {
            self.pending = None;
            return None;
        }
        let due = match self.pending {
            Some((state, due)) if state == ok => due,
            _ => {
                let due = now + if ok { up_delay } else { down_delay };
                self.pending = Some((ok, due));
                due
            }
        };
        (now >= due).then(|| {
            self.pending = None;
            self.reported = ok;
            ok
        })
    }
}

/// Poll `/proc` every `period`; send a [`TrackUpdate`] (name = the
/// `vrrp_track_process` name) with the first count's state right away,
/// then on each flip after the spec's delays. Ends when the receiver is
/// dropped.
#[must_use = "the task runs until the receiver is dropped or it is aborted"]
pub fn spawn_process(
    spec: ProcessSpec,
    period: Duration,
    tx: UnboundedSender<TrackUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let root = Path::new("/proc");
        let mut filter: Option<Debounce> = None;
        poll(period, tx, move || {
            let count = spec.count(&scan_proc(root, spec.uses_cmdline()));
            let ok = spec.ok(count);
            let quorum = match spec.quorum_max {
                Some(max) => format!("{}..={max}", spec.quorum),
                None => format!("at least {}", spec.quorum),
            };
            let reason = format!("{count} running, quorum {quorum}");
            let flipped = match &mut filter {
                None => {
                    filter = Some(Debounce::new(ok));
                    info!(track_process = %spec.name, up = ok, reason, "track_process initial state");
                    Some(ok)
                }
                Some(f) => {
                    let flipped =
                        f.observe(ok, Instant::now(), spec.fork_delay, spec.terminate_delay);
                    if let Some(up) = flipped {
                        info!(track_process = %spec.name, up, reason, "track_process state changed");
                    }
                    flipped
                }
            };
            flipped.map(|up| TrackUpdate {
                name: spec.name.clone(),
                up,
                reason,
            })
        })
        .await;
    })
}

/// A tracked file's new value, sent initially and on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueUpdate {
    /// The `vrrp_track_file` name.
    pub name: String,
    /// The value now.
    pub value: i64,
    /// Where it came from, e.g. `"read 5"`, `"no such file (counts as 0)"`.
    pub reason: String,
}

/// One `track_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The `vrrp_track_file` name.
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// `init_file`: written at start if the file does not exist (or always,
    /// with `overwrite`).
    pub init: Option<(i64, bool)>,
}

/// A track file's text as keepalived reads it (`strtol` with base 0): the
/// first word, an optional sign, then decimal, `0x` hexadecimal or
/// `0`-prefixed octal digits; an empty file is 0.
///
/// # Errors
/// The first word is not such a number (keepalived ignores the file's
/// value then; so does [`spawn_file`], keeping the last one).
pub fn parse_value(text: &str) -> Result<i64, String> {
    let Some(word) = text.split_whitespace().next() else {
        return Ok(0);
    };
    let bad = || format!("{word:?} is not a number");
    let (negative, digits) = match word.as_bytes().first() {
        Some(b'-') => (true, &word[1..]),
        Some(b'+') => (false, &word[1..]),
        _ => (false, word),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(bad());
    }
    let magnitude = i64::from_str_radix(digits, radix).map_err(|_| bad())?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// The value of `path` now: a missing or unreadable file is 0 (as if
/// nothing were wrong: the file is how an operator asks for a change, and
/// no file means no request); `Err` when its text is not a number.
fn read_file_value(path: &Path) -> Result<(i64, String), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_value(&text).map(|v| (v, format!("read {v}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((0, "no such file (counts as 0)".to_owned()))
        }
        Err(e) => Ok((0, format!("unreadable, counts as 0: {e}"))),
    }
}

/// Write `init_file`'s value if asked, then poll `spec.file` every `period`
/// and send a [`ValueUpdate`] with the first value right away, then on
/// each change. A text that is not a number is logged (once until the
/// file changes) and the last value kept. Ends when the receiver is
/// dropped.
#[must_use = "the task runs until the receiver is dropped or it is aborted"]
pub fn spawn_file(
    spec: FileSpec,
    period: Duration,
    tx: UnboundedSender<ValueUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Some((value, overwrite)) = spec.init
            && (overwrite || !spec.file.exists())
        {
            match std::fs::write(&spec.file, format!("{value}\n")) {
                Ok(()) => {
                    info!(track_file = %spec.name, file = %spec.file.display(), value, "init_file written");
                }
                Err(error) => {
                    warn!(track_file = %spec.name, file = %spec.file.display(), %error, "init_file could not be written");
                }
            }
        }
        let mut last: Option<i64> = None;
        let mut bad: Option<String> = None;
        poll(period, tx, move || {
            let (value, reason) = match read_file_value(&spec.file) {
                Ok(read) => {
                    bad = None;
                    read
                }
                Err(error) => {
                    if bad.as_ref() != Some(&error) {
                        warn!(track_file = %spec.name, file = %spec.file.display(), %error, "track_file value ignored, keeping the last one");
                        bad = Some(error);
                    }
                    return None;
                }
            };
            if last == Some(value) {
                return None;
            }
            info!(track_file = %spec.name, value, reason, "track_file value");
            last = Some(value);
            Some(ValueUpdate {
                name: spec.name.clone(),
                value,
                reason,
            })
        })
        .await;
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use tokio::sync::mpsc::{self, UnboundedReceiver};

    use super::*;

    // ---- Hysteresis (pure) ----

    fn feed(h: &mut Hysteresis, results: &[bool]) -> Vec<Option<bool>> {
        results.iter().map(|&ok| h.record(ok)).collect()
    }

    #[test]
    fn zero_rise_and_fall_are_one() {
        let mut h = Hysteresis::with_initial(0, 0, true);
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.record(true), Some(true));
    }

    #[test]
    fn default_first_result_decides_alone() {
        // keepalived SCRIPT_INIT_STATE_INIT: result = rise - 1.
        let mut h = Hysteresis::new(3, 3);
        assert!(h.is_up() && h.is_pending());
        assert_eq!(h.record(false), Some(false));
        assert!(!h.is_up() && !h.is_pending());
        // Now settled down: rise successes.
        assert_eq!(feed(&mut h, &[true, true, true]), [None, None, Some(true)]);

        let mut h = Hysteresis::new(3, 3);
        assert_eq!(h.record(true), None);
        assert!(h.is_up() && !h.is_pending());
        // Settled up: fall failures.
        assert_eq!(
            feed(&mut h, &[false, false, false]),
            [None, None, Some(false)]
        );
    }

    #[test]
    fn init_fail_needs_rise_successes() {
        let mut h = Hysteresis::with_initial(2, 5, false);
        assert!(!h.is_up() && !h.is_pending());
        assert_eq!(h.record(false), None);
        assert_eq!(feed(&mut h, &[true, true]), [None, Some(true)]);
    }

    #[test]
    fn fall_counts_consecutive_failures_only() {
        let mut h = Hysteresis::with_initial(1, 3, true);
        assert_eq!(
            feed(&mut h, &[false, false, true, false, false]),
            [None, None, None, None, None]
        );
        assert!(h.is_up());
        assert_eq!(h.record(false), Some(false));
    }

    #[test]
    fn rise_counts_consecutive_successes_only() {
        let mut h = Hysteresis::with_initial(3, 1, false);
        assert_eq!(
            feed(&mut h, &[true, true, false, true, true]),
            [None, None, None, None, None]
        );
        assert!(!h.is_up());
        assert_eq!(h.record(true), Some(true));
        // Back up: a single failure (fall 1) takes it down again.
        assert_eq!(h.record(false), Some(false));
    }

    #[test]
    fn no_flip_for_results_agreeing_with_state() {
        let mut h = Hysteresis::with_initial(2, 2, true);
        assert_eq!(feed(&mut h, &[true; 10]), [None; 10]);
        let mut h = Hysteresis::with_initial(2, 2, false);
        assert_eq!(feed(&mut h, &[false; 10]), [None; 10]);
    }

    // ---- script runner (real processes) ----

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("lb-track-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn spec(script: &str, rise: u32, fall: u32) -> ScriptSpec {
        ScriptSpec {
            name: "chk".to_owned(),
            script: script.to_owned(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
            rise,
            fall,
            user: None,
            init_fail: false,
        }
    }

    async fn next(rx: &mut UnboundedReceiver<TrackUpdate>) -> TrackUpdate {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no TrackUpdate within 5s")
            .expect("tracking task ended")
    }

    async fn assert_quiet(rx: &mut UnboundedReceiver<TrackUpdate>, for_: Duration) {
        if let Ok(update) = tokio::time::timeout(for_, rx.recv()).await {
            panic!("unexpected update {update:?}");
        }
    }

    /// Poll `cond` for up to 5s.
    async fn wait_until(mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "condition not met in 5s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn set_atomically(path: &Path, content: &str) {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn exit_0_stays_up() {
        let scratch = Scratch::new("exit0");
        let log = scratch.path("log");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_script(spec(&format!("echo run >> {}", log.display()), 2, 2), tx);
        let initial = next(&mut rx).await;
        assert_eq!((initial.name.as_str(), initial.up), ("chk", true));
        wait_until(|| lines(&log).len() >= 4).await;
        assert_quiet(&mut rx, Duration::from_millis(200)).await;
        task.abort();
    }

    #[tokio::test]
    async fn exit_1_goes_down_on_first_result_by_default() {
        // keepalived's default initial state: the first failure decides,
        // whatever `fall` is.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_script(spec("exit 1", 1, 2), tx);
        assert!(next(&mut rx).await.up);
        let down = next(&mut rx).await;
        assert!(!down.up);
        assert_eq!(down.reason, "exit status 1");
        assert_quiet(&mut rx, Duration::from_millis(200)).await;
        task.abort();
    }

    #[tokio::test]
    async fn exit_1_with_init_fail_starts_and_stays_down() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_script(
            ScriptSpec {
                init_fail: true,
                ..spec("exit 1", 1, 2)
            },
            tx,
        );
        let initial = next(&mut rx).await;
        assert!(!initial.up);
        assert_quiet(&mut rx, Duration::from_millis(300)).await;
        task.abort();
    }

    #[tokio::test]
    async fn toggling_script_falls_after_fall_and_rises_after_rise() {
        let scratch = Scratch::new("toggle");
        let (ctl, log) = (scratch.path("ctl"), scratch.path("log"));
        set_atomically(&ctl, "ok");
        let script = format!(
            r#"r=$(cat {ctl}); echo "$r" >> {log}; [ "$r" = ok ]"#,
            ctl = ctl.display(),
            log = log.display()
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_script(spec(&script, 3, 2), tx);
        assert!(next(&mut rx).await.up);
        wait_until(|| lines(&log).len() >= 2).await;
        assert!(rx.is_empty(), "successes must not flip an up script");

        set_atomically(&ctl, "fail");
        let down = next(&mut rx).await;
        assert!(!down.up);
        assert_eq!(down.reason, "exit status 1");
        let failures = lines(&log).iter().rev().take_while(|l| *l != "ok").count();
        assert!(failures >= 2, "down after {failures} failures, fall is 2");

        set_atomically(&ctl, "ok");
        let up = next(&mut rx).await;
        assert!(up.up);
        assert_eq!(up.reason, "exited 0");
        let successes = lines(&log).iter().rev().take_while(|l| *l == "ok").count();
        assert!(successes >= 3, "up after {successes} successes, rise is 3");
        task.abort();
    }

    /// Whether `pid` is gone: no such process, or a zombie nobody reaped
    /// yet (PID 1 in a container may not reap orphans).
    fn gone(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let after_comm = &stat[stat.rfind(')')? + 1..];
                after_comm.split_whitespace().next().map(|s| s == "Z")
            })
            .unwrap_or(true)
    }

    #[tokio::test]
    async fn timeout_is_a_failure_and_kills_the_process_group() {
        let scratch = Scratch::new("timeout");
        let pid_file = scratch.path("pid");
        // The sleep is a child of the shell: killing only the shell would
        // leave it running.
        let script = format!("sleep 5 & echo $! > {}; wait", pid_file.display());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let task = spawn_script(
            ScriptSpec {
                interval: Duration::from_mins(1),
                timeout: Duration::from_millis(100),
                ..spec(&script, 1, 1)
            },
            tx,
        );
        assert!(next(&mut rx).await.up);
        let down = next(&mut rx).await;
        assert!(!down.up);
        assert_eq!(down.reason, "timed out after 100ms");
        assert!(start.elapsed() < Duration::from_secs(3));

        let pid: i32 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_until(|| gone(pid)).await;
        task.abort();
    }

    #[tokio::test]
    async fn missing_user_counts_as_failure() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_script(
            ScriptSpec {
                user: Some("lb-no-such-user-x".to_owned()),
                ..spec("exit 0", 1, 1)
            },
            tx,
        );
        assert!(next(&mut rx).await.up);
        let down = next(&mut rx).await;
        assert!(!down.up);
        assert!(down.reason.contains("not found"), "{}", down.reason);
        task.abort();
    }

    /// Needs root (setuid), like the crate's other privileged tests.
    #[tokio::test]
    async fn runs_as_the_configured_user() {
        let (uid, _) = lookup_user("nobody").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_script(
            ScriptSpec {
                user: Some("nobody".to_owned()),
                init_fail: true,
                ..spec(&format!(r#"[ "$(id -u)" = {uid} ]"#), 1, 1)
            },
            tx,
        );
        assert!(!next(&mut rx).await.up);
        let up = next(&mut rx).await;
        assert!(up.up, "{}", up.reason);
        task.abort();
    }

    #[tokio::test]
    async fn task_ends_when_receiver_is_dropped() {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = spawn_script(spec("exit 0", 1, 1), tx);
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("task still running")
            .unwrap();
    }

    // ---- track_process (pure, against a fake /proc) ----

    fn proc_spec(process: &str) -> ProcessSpec {
        ProcessSpec {
            name: "p".into(),
            process: process.into(),
            parameters: Vec::new(),
            param_match: None,
            full_command: false,
            quorum: 1,
            quorum_max: None,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
        }
    }

    /// A fake /proc: `(pid, comm, cmdline, state)`.
    fn fake_proc(scratch: &Scratch, procs: &[(u32, &str, &[&str], char)]) -> PathBuf {
        let root = scratch.path("proc");
        for (pid, comm, cmdline, state) in procs {
            let dir = root.join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            let mut raw = cmdline.join("\0");
            raw.push('\0');
            fs::write(dir.join("cmdline"), raw).unwrap();
            fs::write(dir.join("stat"), format!("{pid} ({comm}) {state} 1 1 1")).unwrap();
        }
        // Not processes.
        fs::create_dir_all(root.join("net")).unwrap();
        fs::write(root.join("uptime"), "1.0 1.0\n").unwrap();
        root
    }

    #[test]
    fn processes_match_by_name_and_zombies_do_not_count() {
        let scratch = Scratch::new("fakeproc");
        let root = fake_proc(
            &scratch,
            &[
                (1, "init", &["/sbin/init"], 'S'),
                (
                    10,
                    "nginx",
                    &["nginx: master process", "-g", "daemon off;"],
                    'S',
                ),
                (11, "nginx", &["nginx: worker process"], 'S'),
                (12, "nginx", &["nginx"], 'Z'),
                (13, "nginx-exporter", &["nginx-exporter"], 'R'),
                (
                    14,
                    "averyveryverylo",
                    &["/usr/bin/averyveryverylongname"],
                    'S',
                ),
            ],
        );
        let procs = scan_proc(&root, true);
        assert_eq!(procs.len(), 5, "{procs:?}");
        let nginx = proc_spec("nginx");
        assert_eq!(nginx.count(&procs), 2);
        // Exact names: no prefix match (pgrep "^nginx$").
        assert_eq!(proc_spec("ngin").count(&procs), 0);
        // comm holds 15 bytes: a longer configured name matches on those.
        assert_eq!(proc_spec("averyveryverylongname").count(&procs), 1);
        // quorum and quorum_max.
        assert!(nginx.ok(2) && !nginx.ok(0));
        let two = ProcessSpec {
            quorum: 2,
            quorum_max: Some(2),
            ..proc_spec("nginx")
        };
        assert!(!two.ok(1) && two.ok(2) && !two.ok(3));
        let none = ProcessSpec {
            quorum: 0,
            quorum_max: Some(0),
            ..proc_spec("nginx")
        };
        assert!(none.ok(0) && !none.ok(1));
        // Without cmdline reading, names still match.
        assert_eq!(nginx.count(&scan_proc(&root, false)), 2);
        assert!(scan_proc(&scratch.path("nowhere"), false).is_empty());
    }

    #[test]
    fn processes_match_by_command_line() {
        let p = |cmdline: &[&str]| ProcInfo {
            comm: "x".into(),
            cmdline: cmdline.iter().map(|s| (*s).to_owned()).collect(),
        };
        let spec = |params: &[&str], m| ProcessSpec {
            parameters: params.iter().map(|s| (*s).to_owned()).collect(),
            param_match: m,
            ..proc_spec("/usr/sbin/haproxy")
        };
        let run = p(&["/usr/sbin/haproxy", "-f", "/etc/haproxy.cfg", "-D"]);
        assert!(spec(&["-f", "/etc/haproxy.cfg", "-D"], None).matches(&run));
        assert!(!spec(&["-f", "/etc/haproxy.cfg"], None).matches(&run));
        assert!(spec(&["-f", "/etc/haproxy.cfg"], Some(ParamMatch::Partial)).matches(&run));
        assert!(!spec(&["-f", "/etc/hap"], Some(ParamMatch::Partial)).matches(&run));
        assert!(spec(&["-f", "/etc/hap"], Some(ParamMatch::Initial)).matches(&run));
        assert!(!spec(&["-x"], Some(ParamMatch::Initial)).matches(&run));
        // param_match without parameters: no arguments allowed.
        assert!(!spec(&[], Some(ParamMatch::Exact)).matches(&run));
        assert!(spec(&[], Some(ParamMatch::Exact)).matches(&p(&["/usr/sbin/haproxy"])));
        // full_command alone: the first word, any arguments.
        let full = ProcessSpec {
            full_command: true,
            ..proc_spec("/usr/sbin/haproxy")
        };
        assert!(full.matches(&run));
        assert!(!full.matches(&p(&["haproxy"])));
        assert!(!full.matches(&p(&[])));
    }

    #[test]
    fn debounce_waits_for_the_delays() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(true);
        assert_eq!(d.observe(true, t0, ms(100), ms(300)), None);
        // Down seen, terminate_delay 300 ms.
        assert_eq!(d.observe(false, t0, ms(100), ms(300)), None);
        assert_eq!(d.observe(false, t0 + ms(200), ms(100), ms(300)), None);
        // Up again before the delay: nothing, and the delay restarts.
        assert_eq!(d.observe(true, t0 + ms(250), ms(100), ms(300)), None);
        assert_eq!(d.observe(false, t0 + ms(400), ms(100), ms(300)), None);
        assert_eq!(
            d.observe(false, t0 + ms(700), ms(100), ms(300)),
            Some(false)
        );
        // Up, fork_delay 100 ms.
        assert_eq!(d.observe(true, t0 + ms(800), ms(100), ms(300)), None);
        assert_eq!(d.observe(true, t0 + ms(900), ms(100), ms(300)), Some(true));
        // Zero delays: at once.
        assert_eq!(d.observe(false, t0 + ms(900), ms(0), ms(0)), Some(false));
    }

    #[test]
    fn file_values_parse_as_keepalived_reads_them() {
        assert_eq!(parse_value(""), Ok(0));
        assert_eq!(parse_value("  \n"), Ok(0));
        assert_eq!(parse_value("5\n"), Ok(5));
        assert_eq!(parse_value("-12"), Ok(-12));
        assert_eq!(parse_value("+7 trailing words"), Ok(7));
        assert_eq!(parse_value("0x1f"), Ok(31));
        assert_eq!(parse_value("-0X10"), Ok(-16));
        assert_eq!(parse_value("010"), Ok(8));
        assert_eq!(parse_value("0"), Ok(0));
        for bad in ["abc", "5x", "0x", "--1", "09", "-"] {
            assert!(parse_value(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn spawn_file_reports_values_and_writes_init_file() {
        let scratch = Scratch::new("file");
        let path = scratch.path("prio");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_file(
            FileSpec {
                name: "f".into(),
                file: path.clone(),
                init: Some((3, false)),
            },
            Duration::from_millis(20),
            tx,
        );
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.name.as_str(), first.value), ("f", 3));
        assert_eq!(fs::read_to_string(&path).unwrap(), "3\n");
        set_atomically(&path, "not a number");
        set_atomically(&path, "-4\n");
        let next = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.value, -4);
        fs::remove_file(&path).unwrap();
        let gone = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gone.value, 0);
        assert_eq!(gone.reason, "no such file (counts as 0)");
        task.abort();
    }

    #[tokio::test]
    async fn spawn_process_follows_a_real_process() {
        let scratch = Scratch::new("proc");
        // A sleep under a name of its own.
        let exe = scratch.path("lbtrk-sleeper");
        fs::copy("/bin/sleep", &exe).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_process(proc_spec("lbtrk-sleeper"), Duration::from_millis(20), tx);
        let initial = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!initial.up, "{initial:?}");
        let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
        let up = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(up.up);
        assert_eq!(up.reason, "1 running, quorum at least 1");
        child.kill().unwrap();
        child.wait().unwrap();
        let down = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!down.up);
        task.abort();
    }

    #[tokio::test]
    async fn spawn_interface_reports_initial_state() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let lo = spawn_interface("lo".to_owned(), Duration::from_millis(20), tx.clone());
        let missing = spawn_interface("lbtrk-nonexist".to_owned(), Duration::from_millis(20), tx);
        let mut updates = [next(&mut rx).await, next(&mut rx).await];
        updates.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            (updates[0].name.as_str(), updates[0].up),
            ("lbtrk-nonexist", false)
        );
        assert_eq!(updates[0].reason, "no such interface");
        assert_eq!((updates[1].name.as_str(), updates[1].up), ("lo", true));
        assert_quiet(&mut rx, Duration::from_millis(100)).await;
        lo.abort();
        missing.abort();
    }
}
