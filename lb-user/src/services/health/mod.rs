//! Backend health checks.
//!
//! Pure part ([`Checker`]): when the next check is due, when a running check
//! has timed out, and the rise/fall hysteresis (the state flips only after
//! `rise` consecutive successes or `fall` consecutive failures). Driven by an
//! injected `now`, unit-tested without sleeping.
//!
//! Effects ([`probe`]): one check of one backend: `tcp` (connect), `http`
//! and `https` (GET of one or more URLs, status codes, body digest:
//! [`http`]), `dns` (a query over UDP: [`dns`]), `smtp` (greeting and
//! `HELO`: [`smtp`]), `exec` (exit 0 = healthy,
//! with `dynamic_weight` exit codes 2–255 setting the weight; run as a
//! configured user, killed with its process group on timeout), `none`
//! (always up). Connections of `tcp`, `http`, `https`, `dns` and `smtp` leave from
//! the check's `bind` address when it has one (keepalived's `bindto`).
//!
//! A backend starts **up** (keepalived's checkers do the same): restarting
//! lbd must not take a working pool out of service while the first checks
//! run. The first check runs at once and its result decides on its own
//! (as keepalived's first script result does), so a backend that is dead
//! when lbd starts leaves the pool after one failed check, not `fall`;
//! after that, the hysteresis applies.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub mod dns;
pub mod http;
pub mod smtp;

/// What to check and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// The probe.
    pub kind: Kind,
    /// The source address of the check's connections (keepalived's
    /// `bindto`); `None`: the kernel's choice.
    pub bind: Option<IpAddr>,
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
    if upto.is_zero() {
        return Duration::ZERO;
    }
    upto.mul_f64((random_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// 64 random bits from std's randomly keyed hasher: enough to spread
/// start times and pick DNS query ids, not for secrets.
fn random_u64() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

/// The probe of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// TCP connect to the port.
    Tcp,
    /// GET each URL (over TLS for `https`); every one has to answer with
    /// one of its status codes (and its digest).
    Http(http::HttpCheck),
    /// A DNS query over UDP, answered without error.
    Dns(dns::DnsCheck),
    /// An SMTP greeting and `HELO`, answered 220 and 250.
    Smtp(smtp::SmtpCheck),
    /// `/bin/sh -c command` with `BACKEND` and `PORT` set; exit 0 = healthy.
    Exec {
        /// Command line.
        command: String,
        /// Run as this user.
        user: Option<String>,
        /// Exit codes 2–255 pass and set the backend's weight to the
        /// code − 2 (keepalived's `misc_dynamic`); without it they fail.
        dynamic_weight: bool,
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
    /// The TLS handshake of an `https` check failed.
    #[error("TLS: {source}")]
    Tls {
        /// The handshake error (rustls's, through the stream).
        #[source]
        source: std::io::Error,
    },
    /// The TLS client could not be set up.
    #[error("TLS setup: {source}")]
    TlsConfig {
        /// rustls's error.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    /// The `https` check's CA file cannot be used.
    #[error("CA file {}: {reason}", path.display())]
    CaFile {
        /// The configured `tls_ca`.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP exchange failed (connection closed, not HTTP, ...).
    #[error("HTTP: {source}")]
    Http {
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The request could not be built from the configured path.
    #[error("request {path:?}: {reason}")]
    BadRequest {
        /// The configured path (or DNS name).
        path: String,
        /// Why.
        reason: String,
    },
    /// Reading the body failed, or it is longer than [`http::MAX_BODY`].
    #[error("read body: {reason}")]
    Body {
        /// Why.
        reason: String,
    },
    /// The HTTP status is not one of the expected ones.
    #[error("GET {path}: HTTP status {status}, expected {expected}")]
    HttpStatus {
        /// The URL's path.
        path: String,
        /// The status the backend answered.
        status: u16,
        /// The expected codes (`200-299, 304`).
        expected: String,
    },
    /// The body's MD5 is not the configured digest.
    #[error("GET {path}: body digest {got}, expected {expected}")]
    Digest {
        /// The URL's path.
        path: String,
        /// MD5 of the body, hex.
        got: String,
        /// The configured digest, hex.
        expected: String,
    },
    /// The `dns` check's socket failed.
    #[error("DNS {addr}: {source}")]
    Dns {
        /// The backend's address and checked port.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The DNS answer has an error code (3: NXDOMAIN, 5: REFUSED, ...).
    #[error("DNS answer with RCODE {rcode}")]
    DnsRcode {
        /// The answer's RCODE.
        rcode: u8,
    },
    /// The SMTP server's answer at `step` (greeting, HELO) is not the
    /// expected one.
    #[error("SMTP {step}: {reply}")]
    Smtp {
        /// `greeting` or `HELO`.
        step: &'static str,
        /// The reply's last line, or what was wrong with it.
        reply: String,
    },
    /// The SMTP connection failed at `step`.
    #[error("SMTP {step}: {source}")]
    SmtpIo {
        /// `greeting`, `HELO` or `QUIT`.
        step: &'static str,
        /// The socket error.
        #[source]
        source: std::io::Error,
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

/// The result of a check that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Passed {
    /// The weight a `dynamic_weight` exec check set (exit code − 2);
    /// `None`: the weight stays as it is.
    pub weight: Option<u32>,
}

/// Run one check of `addr:port`, from `bind` if set; `Ok` = healthy. The
/// caller enforces the timeout (this future is dropped, and an `exec`
/// check's process group killed, when it fires).
///
/// # Errors
/// Why the backend is unhealthy ([`CheckError`]), for the log and
/// `lbctl backends`: the connection failed, an HTTP answer is not an
/// expected status or digest, the DNS answer has an error, or the command
/// could not run or exited with a failing code.
pub async fn probe(
    kind: &Kind,
    bind: Option<IpAddr>,
    addr: IpAddr,
    port: u16,
) -> Result<Passed, CheckError> {
    match kind {
        Kind::None => Ok(Passed::default()),
        Kind::Tcp => connect(bind, SocketAddr::new(addr, port))
            .await
            .map(|_| Passed::default()),
        Kind::Http(check) => http::probe(check, bind, addr, port)
            .await
            .map(|()| Passed::default()),
        Kind::Dns(check) => dns::probe(check, bind, addr, port)
            .await
            .map(|()| Passed::default()),
        Kind::Smtp(check) => smtp::probe(check, bind, addr, port)
            .await
            .map(|()| Passed::default()),
        Kind::Exec {
            command,
            user,
            dynamic_weight,
        } => run_exec(command, user.as_deref(), addr, port, *dynamic_weight).await,
    }
}

/// A TCP connection to `to`, from `bind` (port chosen by the kernel) if
/// set.
///
/// # Errors
/// [`CheckError::Connect`].
async fn connect(
    bind: Option<IpAddr>,
    to: SocketAddr,
) -> Result<tokio::net::TcpStream, CheckError> {
    let err = |source| CheckError::Connect { addr: to, source };
    let Some(from) = bind else {
        return tokio::net::TcpStream::connect(to).await.map_err(err);
    };
    let socket = match to {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(err)?;
    socket.bind(SocketAddr::new(from, 0)).map_err(err)?;
    socket.connect(to).await.map_err(err)
}

/// `/bin/sh -c command` as `user`, in a process group of its own.
///
/// # Errors
/// [`CheckError::User`], [`CheckError::Spawn`], [`CheckError::Wait`], or
/// [`CheckError::ExitStatus`] when the command does not exit 0 (nor 2–255
/// with `dynamic_weight`).
async fn run_exec(
    command: &str,
    user: Option<&str>,
    addr: IpAddr,
    port: u16,
    dynamic_weight: bool,
) -> Result<Passed, CheckError> {
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
    exit_verdict(status, dynamic_weight)
}

/// What an exec check's exit status means: 0 passes; with
/// `dynamic_weight`, 2–255 pass and set the weight to the code − 2; any
/// other code, or a signal, fails.
fn exit_verdict(
    status: std::process::ExitStatus,
    dynamic_weight: bool,
) -> Result<Passed, CheckError> {
    match status.code() {
        Some(0) => Ok(Passed::default()),
        Some(code @ 2..=255) if dynamic_weight => Ok(Passed {
            weight: Some(code as u32 - 2),
        }),
        _ => Err(CheckError::ExitStatus { status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rise: u32, fall: u32) -> CheckSpec {
        CheckSpec {
            kind: Kind::Tcp,
            bind: None,
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
    fn exit_codes_pass_fail_or_set_the_weight() {
        use std::os::unix::process::ExitStatusExt as _;
        let exit = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        assert_eq!(exit_verdict(exit(0), false).unwrap(), Passed::default());
        assert_eq!(exit_verdict(exit(0), true).unwrap(), Passed::default());
        assert!(exit_verdict(exit(1), true).is_err(), "1 fails");
        assert!(
            exit_verdict(exit(5), false).is_err(),
            "without dynamic_weight"
        );
        assert_eq!(exit_verdict(exit(2), true).unwrap().weight, Some(0));
        assert_eq!(exit_verdict(exit(12), true).unwrap().weight, Some(10));
        assert_eq!(exit_verdict(exit(255), true).unwrap().weight, Some(253));
        // Killed by a signal (SIGKILL): a failure.
        assert!(exit_verdict(std::process::ExitStatus::from_raw(9), true).is_err());
    }

    fn url(path: &str, status: &str) -> http::UrlCheck {
        http::UrlCheck {
            path: path.into(),
            status: status.parse().unwrap(),
            digest: None,
        }
    }

    /// A server answering each connection's request with the status its
    /// path asks for (`/204` → 204), counting requests and recording the
    /// Host headers and the peers' addresses.
    async fn http_server(
        lo: IpAddr,
    ) -> (
        u16,
        tokio::task::JoinHandle<()>,
        std::sync::Arc<std::sync::Mutex<Vec<(String, IpAddr)>>>,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind((lo, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let (mut s, peer) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let host = req
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap().push((host, peer.ip()));
                let status = path.trim_start_matches('/').parse::<u16>().unwrap_or(200);
                let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 5\r\n\r\nhello");
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (port, task, seen)
    }

    #[tokio::test]
    async fn http_checks_every_url_with_its_status_codes_and_digest() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let (port, server, seen) = http_server(lo).await;
        let check = |urls| {
            Kind::Http(http::HttpCheck {
                tls: None,
                urls,
                virtualhost: None,
            })
        };
        assert!(
            probe(
                &check(vec![url("/", "200"), url("/204", "200-299")]),
                None,
                lo,
                port
            )
            .await
            .is_ok()
        );
        let e = probe(
            &check(vec![url("/", "200"), url("/503", "200-299, 404")]),
            None,
            lo,
            port,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "GET /503: HTTP status 503, expected 200-299, 404"
        );
        // The digest of "hello" (md5sum), and a wrong one.
        let mut u = url("/", "200");
        u.digest = Some(http::parse_digest("5d41402abc4b2a76b9719d911017c592").unwrap());
        assert!(probe(&check(vec![u.clone()]), None, lo, port).await.is_ok());
        u.digest = Some([0; 16]);
        assert!(matches!(
            probe(&check(vec![u]), None, lo, port).await.unwrap_err(),
            CheckError::Digest { .. }
        ));
        // A virtual host is the Host header; bind sets the source address.
        let vhost = Kind::Http(http::HttpCheck {
            tls: None,
            urls: vec![url("/", "200")],
            virtualhost: Some("www.example".into()),
        });
        let from: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(probe(&vhost, Some(from), lo, port).await.is_ok());
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last, ("www.example".to_owned(), from));
        assert_eq!(seen.lock().unwrap()[0], ("127.0.0.1".to_owned(), lo));
        server.abort();
    }

    #[tokio::test]
    async fn probes_against_local_listeners() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let listener = tokio::net::TcpListener::bind((lo, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(probe(&Kind::Tcp, None, lo, port).await.is_ok());
        drop(listener);
        // Nothing listens any more: tcp fails, none passes.
        assert!(probe(&Kind::Tcp, None, lo, port).await.is_err());
        assert!(probe(&Kind::None, None, lo, port).await.is_ok());
        let exec = |command: &str, dynamic_weight| Kind::Exec {
            command: command.into(),
            user: None,
            dynamic_weight,
        };
        assert!(
            probe(
                &exec("test \"$BACKEND:$PORT\" = 127.0.0.1:81", false),
                None,
                lo,
                81
            )
            .await
            .is_ok()
        );
        assert_eq!(
            probe(&exec("exit 3", false), None, lo, 81)
                .await
                .unwrap_err()
                .to_string(),
            "command exit status: 3"
        );
        assert_eq!(
            probe(&exec("exit 7", true), None, lo, 81)
                .await
                .unwrap()
                .weight,
            Some(5)
        );
    }
}
