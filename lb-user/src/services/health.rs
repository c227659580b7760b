//! Backend health checks.
//!
//! Pure part ([`Checker`]): when the next check is due, when a running check
//! has timed out, and the rise/fall hysteresis (the state flips only after
//! `rise` consecutive successes or `fall` consecutive failures). Driven by an
//! injected `now`, unit-tested without sleeping.
//!
//! Effects ([`probe`]): one check of one backend: `tcp` (connect), `http`
//! (GET, expected status), `exec` (exit 0 = healthy, run as a configured
//! user, killed with its process group on timeout), `none` (always up).
//!
//! A backend starts **up** (keepalived's checkers do the same): restarting
//! lbd must not take a working pool out of service while the first checks
//! run. The first check runs at once and its result decides on its own
//! (as keepalived's first script result does), so a backend that is dead
//! when lbd starts leaves the pool after one failed check, not `fall`;
//! after that, the hysteresis applies.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What to check and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// The probe.
    pub kind: Kind,
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// A check still running after this long fails.
    pub timeout: Duration,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// The backend starts down (`start_down`): its first passing check
    /// brings it up.
    pub starts_down: bool,
    /// After a failed check of a backend that is still up (counting
    /// towards `fall`), the next one starts this long after the failed
    /// one started instead of `interval` (keepalived's
    /// `delay_before_retry`); `None`: `interval`.
    pub retry_interval: Option<Duration>,
    /// The first check starts after a random delay of up to this long
    /// (keepalived's `warmup`), so many backends' checks do not start
    /// together; the driver picks the delay ([`warmup_delay`]).
    pub warmup: Duration,
}

/// A random delay in `0..upto` (zero for zero), for [`CheckSpec::warmup`].
#[must_use]
pub fn warmup_delay(upto: Duration) -> Duration {
    use std::hash::BuildHasher as _;
    if upto.is_zero() {
        return Duration::ZERO;
    }
    // std's randomly keyed hasher: random enough to spread start times.
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    upto.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
}

/// The probe of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// TCP connect to the port.
    Tcp,
    /// HTTP/1.0 GET `path`; healthy when the status is `expect_status`.
    Http {
        /// Request path.
        path: String,
        /// Expected status code.
        expect_status: u16,
    },
    /// `/bin/sh -c command` with `BACKEND` and `PORT` set; exit 0 = healthy.
    Exec {
        /// Command line.
        command: String,
        /// Run as this user.
        user: Option<String>,
    },
    /// No check: always healthy.
    None,
}

/// A state change reported by [`Checker::finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Came up after `rise` successes.
    Up,
    /// Went down after `fall` failures.
    Down,
}

/// What the driver should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Start a check.
    Start,
    /// The running check exceeded the timeout: count it as failed.
    TimedOut,
}

/// Schedule and hysteresis of one backend's checks.
#[derive(Debug, Clone)]
pub struct Checker {
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
    retry_interval: Option<Duration>,
    up: bool,
    /// No result yet: the first one decides alone.
    first: bool,
    /// Consecutive results disagreeing with `up`.
    streak: u32,
    next_start: Instant,
    running_since: Option<Instant>,
}

impl Checker {
    /// A checker whose first check is due at `now` (the driver adds the
    /// warmup delay); the backend starts up (down with `spec.starts_down`).
    #[must_use]
    pub fn new(spec: &CheckSpec, now: Instant) -> Self {
        Self {
            interval: spec.interval,
            timeout: spec.timeout,
            rise: spec.rise.max(1),
            fall: spec.fall.max(1),
            retry_interval: spec.retry_interval,
            up: !spec.starts_down,
            first: true,
            streak: 0,
            next_start: now,
            running_since: None,
        }
    }

    /// Whether the backend counts as healthy.
    #[must_use]
    pub const fn is_up(&self) -> bool {
        self.up
    }

    /// What is due at `now`, if anything.
    #[must_use]
    pub fn poll(&self, now: Instant) -> Option<Due> {
        match self.running_since {
            Some(since) if now.duration_since(since) >= self.timeout => Some(Due::TimedOut),
            None if now >= self.next_start => Some(Due::Start),
            Some(_) | None => None,
        }
    }

    /// When [`Checker::poll`] next has something.
    #[must_use]
    pub fn next_deadline(&self) -> Instant {
        match self.running_since {
            Some(since) => since + self.timeout,
            None => self.next_start,
        }
    }

    /// A check started at `now`; the next one is due one interval later.
    pub fn started(&mut self, now: Instant) {
        self.running_since = Some(now);
        self.next_start = now + self.interval;
    }

    /// The running check finished (`ok`), or timed out (`ok = false`).
    /// Returns the state change it caused, if any. A result arriving when
    /// no check runs (a late answer after a timeout) is ignored.
    pub fn finished(&mut self, ok: bool) -> Option<Change> {
        let since = self.running_since.take()?;
        if std::mem::take(&mut self.first) && ok != self.up {
            self.up = ok;
            self.streak = 0;
            return Some(if ok { Change::Up } else { Change::Down });
        }
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            if self.up
                && let Some(retry) = self.retry_interval
            {
                self.next_start = since + retry;
            }
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(if ok { Change::Up } else { Change::Down })
    }
}

/// Why one check of a backend failed: the reason `lbctl backends` shows
/// (LAST CHANGE) and the log prints.
///
/// The message includes its cause's message (`connect 198.18.1.11:80:
/// Connection refused (os error 111)`), as one reason string; the cause is
/// also kept as the error's source, so print it with `{}`, not as a chain.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The TCP connection (`tcp` check, or the `http` check's) failed:
    /// refused, unreachable, reset.
    #[error("connect {addr}: {source}")]
    Connect {
        /// The backend's address and checked port.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the HTTP request failed.
    #[error("send request: {source}")]
    SendRequest {
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the HTTP response failed.
    #[error("read response: {source}")]
    ReadResponse {
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The answer does not begin with an HTTP/1.x status line.
    #[error("no HTTP status line")]
    NoStatusLine,
    /// The HTTP status is not the expected one.
    #[error("HTTP status {status}, expected {expected}")]
    HttpStatus {
        /// The status the backend answered.
        status: u16,
        /// The configured `expect_status`.
        expected: u16,
    },
    /// The `exec` check's user does not resolve.
    #[error("user {user}: {source}")]
    User {
        /// The configured user.
        user: String,
        /// Why the lookup failed.
        #[source]
        source: crate::sys::process::UserError,
    },
    /// The `exec` check's command could not be started.
    #[error("spawn: {source}")]
    Spawn {
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the `exec` check's command failed.
    #[error("wait: {source}")]
    Wait {
        /// The wait error.
        #[source]
        source: std::io::Error,
    },
    /// The `exec` check's command exited non-zero or was killed by a
    /// signal.
    #[error("command {status}")]
    ExitStatus {
        /// How it ended (`exit status: 3`).
        status: std::process::ExitStatus,
    },
}

/// Run one check of `addr:port`; `Ok(())` = healthy. The caller enforces
/// the timeout (this future is dropped, and an `exec` check's process group
/// killed, when it fires).
///
/// # Errors
/// Why the backend is unhealthy ([`CheckError`]), for the log and
/// `lbctl backends`: the connection failed, the HTTP answer is not the
/// expected status, or the command could not run or exited non-zero.
pub async fn probe(kind: &Kind, addr: IpAddr, port: u16) -> Result<(), CheckError> {
    let sa = SocketAddr::new(addr, port);
    match kind {
        Kind::None => Ok(()),
        Kind::Tcp => tokio::net::TcpStream::connect(sa)
            .await
            .map(drop)
            .map_err(|source| CheckError::Connect { addr: sa, source }),
        Kind::Http {
            path,
            expect_status,
        } => {
            let mut s = tokio::net::TcpStream::connect(sa)
                .await
                .map_err(|source| CheckError::Connect { addr: sa, source })?;
            let host = match addr {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lbd-health\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|source| CheckError::SendRequest { source })?;
            let mut buf = [0u8; 64];
            let mut got = 0;
            while got < 12 {
                let n = s
                    .read(&mut buf[got..])
                    .await
                    .map_err(|source| CheckError::ReadResponse { source })?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            let status = parse_status(&buf[..got]).ok_or(CheckError::NoStatusLine)?;
            if status == *expect_status {
                Ok(())
            } else {
                Err(CheckError::HttpStatus {
                    status,
                    expected: *expect_status,
                })
            }
        }
        Kind::Exec { command, user } => run_exec(command, user.as_deref(), addr, port).await,
    }
}

/// The status code of an HTTP/1.x status line.
fn parse_status(bytes: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(bytes).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// `/bin/sh -c command` as `user`, in a process group of its own.
///
/// # Errors
/// [`CheckError::User`], [`CheckError::Spawn`], [`CheckError::Wait`], or
/// [`CheckError::ExitStatus`] when the command does not exit 0.
async fn run_exec(
    command: &str,
    user: Option<&str>,
    addr: IpAddr,
    port: u16,
) -> Result<(), CheckError> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env("BACKEND", addr.to_string())
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = user {
        let (uid, gid) =
            crate::sys::process::lookup_user(user).map_err(|source| CheckError::User {
                user: user.to_owned(),
                source,
            })?;
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().map_err(|source| CheckError::Spawn { source })?;
    // Killed with its whole process group if the caller's timeout drops us.
    let mut group = crate::sys::process::GroupGuard::new(child.id());
    let status = child
        .wait()
        .await
        .map_err(|source| CheckError::Wait { source })?;
    group.disarm();
    if status.success() {
        Ok(())
    } else {
        Err(CheckError::ExitStatus { status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rise: u32, fall: u32) -> CheckSpec {
        CheckSpec {
            kind: Kind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            rise,
            fall,
            starts_down: false,
            retry_interval: None,
            warmup: Duration::ZERO,
        }
    }

    /// Run one check at `t` with result `ok`.
    fn check(c: &mut Checker, t: Instant, ok: bool) -> Option<Change> {
        assert_eq!(c.poll(t), Some(Due::Start));
        c.started(t);
        c.finished(ok)
    }

    #[test]
    fn starts_up_and_goes_down_after_fall_failures_only() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let before = t0.checked_sub(s).expect("the monotonic clock is past 1 s");
        let mut c = Checker::new(&spec(2, 3), before);
        assert!(c.is_up());
        assert_eq!(
            check(&mut c, before, true),
            None,
            "first result: up, as assumed"
        );
        assert_eq!(check(&mut c, t0, false), None);
        assert_eq!(check(&mut c, t0 + s, false), None);
        // A success resets the streak.
        assert_eq!(check(&mut c, t0 + 2 * s, true), None);
        assert_eq!(check(&mut c, t0 + 3 * s, false), None);
        assert_eq!(check(&mut c, t0 + 4 * s, false), None);
        assert_eq!(check(&mut c, t0 + 5 * s, false), Some(Change::Down));
        assert!(!c.is_up());
        // Up again only after rise (2) consecutive successes.
        assert_eq!(check(&mut c, t0 + 6 * s, true), None);
        assert_eq!(check(&mut c, t0 + 7 * s, false), None);
        assert_eq!(check(&mut c, t0 + 8 * s, true), None);
        assert_eq!(check(&mut c, t0 + 9 * s, true), Some(Change::Up));
        assert!(c.is_up());
    }

    #[test]
    fn a_backend_dead_at_start_leaves_after_the_first_check() {
        let t0 = Instant::now();
        let mut c = Checker::new(&spec(2, 3), t0);
        assert_eq!(check(&mut c, t0, false), Some(Change::Down));
        // Then the hysteresis: up after rise (2) successes.
        let s = Duration::from_secs(1);
        assert_eq!(check(&mut c, t0 + s, true), None);
        assert_eq!(check(&mut c, t0 + 2 * s, true), Some(Change::Up));
    }

    #[test]
    fn schedule_and_timeouts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Checker::new(&spec(1, 1), t0);
        assert_eq!(c.poll(t0), Some(Due::Start));
        c.started(t0);
        // Running: nothing due until the timeout.
        assert_eq!(c.poll(t0 + ms(299)), None);
        assert_eq!(c.next_deadline(), t0 + ms(300));
        assert_eq!(c.poll(t0 + ms(300)), Some(Due::TimedOut));
        assert_eq!(
            c.finished(false),
            Some(Change::Down),
            "a timeout is a failure"
        );
        // A late answer after the timeout is ignored.
        assert_eq!(c.finished(true), None);
        assert!(!c.is_up());
        // Next start one interval after the previous start.
        assert_eq!(c.next_deadline(), t0 + ms(1000));
        assert_eq!(c.poll(t0 + ms(999)), None);
        assert_eq!(c.poll(t0 + ms(1000)), Some(Due::Start));
        // Polling late still starts one check, not a burst.
        c.started(t0 + ms(5000));
        assert_eq!(c.finished(true), Some(Change::Up));
        assert_eq!(c.next_deadline(), t0 + ms(6000));
    }

    #[test]
    fn a_failing_backend_is_retried_after_the_retry_interval_until_it_is_down() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis;
        let mut c = Checker::new(
            &CheckSpec {
                retry_interval: Some(ms(200)),
                ..spec(2, 3)
            },
            t0,
        );
        assert_eq!(check(&mut c, t0, true), None);
        assert_eq!(c.next_deadline(), t0 + s, "a pass: the interval");
        // Failures while up: retried 200 ms after each started.
        assert_eq!(check(&mut c, t0 + s, false), None);
        assert_eq!(c.next_deadline(), t0 + s + ms(200));
        assert_eq!(check(&mut c, t0 + s + ms(200), false), None);
        assert_eq!(c.next_deadline(), t0 + s + ms(400));
        assert_eq!(
            check(&mut c, t0 + s + ms(400), false),
            Some(Change::Down),
            "the third failure in a row"
        );
        // Down: back to the interval while it counts towards rise.
        assert_eq!(c.next_deadline(), t0 + 2 * s + ms(400));
        assert_eq!(check(&mut c, t0 + 2 * s + ms(400), false), None);
        assert_eq!(c.next_deadline(), t0 + 3 * s + ms(400));
    }

    #[test]
    fn warmup_delays_stay_within_the_warmup() {
        assert_eq!(warmup_delay(Duration::ZERO), Duration::ZERO);
        let upto = Duration::from_secs(5);
        let delays: Vec<Duration> = (0..50).map(|_| warmup_delay(upto)).collect();
        assert!(delays.iter().all(|d| *d < upto), "{delays:?}");
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 40, "random: {delays:?}");
    }

    #[test]
    fn http_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[tokio::test]
    async fn probes_against_local_listeners() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let listener = tokio::net::TcpListener::bind((lo, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "404 Not Found"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let http = Kind::Http {
            path: "/".into(),
            expect_status: 200,
        };
        assert!(probe(&http, lo, port).await.is_ok());
        let refused = probe(&http, lo, port).await.unwrap_err();
        assert!(matches!(
            refused,
            CheckError::HttpStatus {
                status: 404,
                expected: 200
            }
        ));
        assert_eq!(refused.to_string(), "HTTP status 404, expected 200");
        server.await.unwrap();
        // Nothing listens any more: tcp and http fail, none passes.
        assert!(probe(&Kind::Tcp, lo, port).await.is_err());
        assert!(probe(&Kind::None, lo, port).await.is_ok());
        let exec = |command: &str| Kind::Exec {
            command: command.into(),
            user: None,
        };
        assert!(
            probe(&exec("test \"$BACKEND:$PORT\" = 127.0.0.1:81"), lo, 81)
                .await
                .is_ok()
        );
        assert!(probe(&exec("exit 3"), lo, 81).await.is_err());
        assert_eq!(
            probe(&exec("exit 3"), lo, 81)
                .await
                .unwrap_err()
                .to_string(),
            "command exit status: 3"
        );
    }
}
