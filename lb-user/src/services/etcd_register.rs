//! `lbctl register`: the agent a backend runs to be a member of a
//! `backends_from` prefix (`crate::services::etcd`). It grants a lease of
//! `ttl`, puts the backend's key under it, and keeps the lease alive (a
//! keep-alive every third of the TTL). With a check command, the command
//! runs every interval: while it fails the lease is revoked (the key goes:
//! the backend leaves), and the key is put back when it passes again.
//! SIGTERM or SIGINT revokes the lease (the key goes at once) and exits.
//! If the agent dies without that, the lease expires after `ttl` and etcd
//! deletes the key. An etcd outage is logged once and retried (0.5 s
//! doubling to 5 s, at most a third of the TTL); once through, a new lease
//! is granted and the key put again (over the old one, so the backend
//! never leaves while etcd restarts).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::signal::unix::{SignalKind, signal};

use super::etcd::{KEEPALIVE, MAX_BACKOFF, MIN_BACKOFF, Member, member_value};

/// What to register, from `lbctl register`'s arguments.
#[derive(Debug, Clone)]
pub struct Registration {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// The key; `prefix` + address (`:port` when given) by default.
    pub key: String,
    /// The backend.
    pub member: Member,
    /// The lease's time to live (whole seconds, at least 1).
    pub ttl: Duration,
    /// `sh -c` command whose success keeps the key; none: always.
    pub check: Option<String>,
    /// How often the check runs (also its timeout).
    pub check_interval: Duration,
}

impl Registration {
    /// The default key of `address` (and `port`) under `prefix`:
    /// `/lb/web/198.18.0.5`, `/lb/web/198.18.0.5:8080`,
    /// `/lb/web/[2001:db8::5]:8080`.
    #[must_use]
    pub fn default_key(prefix: &str, address: IpAddr, port: Option<u16>) -> String {
        match port {
            Some(p) => format!("{prefix}{}", SocketAddr::new(address, p)),
            None => format!("{prefix}{address}"),
        }
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs_f64().ceil() as u64)
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// A lease with the key under it and its keep-alive stream.
struct Lease {
    id: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

struct Agent {
    reg: Registration,
    client: Option<Client>,
    lease: Option<Lease>,
    /// The check passes (or there is none).
    healthy: bool,
    /// The check has run at least once.
    checked: bool,
    /// An outage is under way (logged once).
    out: bool,
    backoff: Duration,
}

/// How long one request to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer in {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

fn say(line: &str) {
    eprintln!("lbctl register: {line}");
}

impl Agent {
    /// Register when healthy and not registered: connect if needed, grant
    /// a lease, put the key under it, start its keep-alive. On failure,
    /// the outage is logged (once) and the next attempt waits the backoff.
    async fn ensure(&mut self) {
        if !self.healthy || self.lease.is_some() {
            return;
        }
        match self.register().await {
            Ok(lease) => {
                let again = if self.out {
                    " (etcd reachable again)"
                } else {
                    ""
                };
                say(&format!(
                    "{} registered as {} under lease {:x} (ttl {} s){again}",
                    self.reg.member,
                    self.reg.key,
                    lease.id,
                    self.reg.ttl_secs()
                ));
                self.lease = Some(lease);
                self.out = false;
                self.backoff = MIN_BACKOFF;
            }
            Err(e) => {
                self.client = None;
                if !self.out {
                    say(&format!(
                        "etcd at {} unreachable ({e}); retrying",
                        self.reg.endpoints.join(",")
                    ));
                    self.out = true;
                }
                // At most a third of the TTL: a lease that etcd kept
                // through its restart must be replaced before it expires.
                self.backoff = (self.backoff * 2)
                    .min(MAX_BACKOFF)
                    .min(self.reg.ttl / 3)
                    .max(Duration::from_millis(200));
            }
        }
    }

    async fn register(&mut self) -> Result<Lease, String> {
        if self.client.is_none() {
            let options = ConnectOptions::new()
                .with_connect_timeout(REQUEST_TIMEOUT)
                .with_keep_alive(KEEPALIVE, KEEPALIVE);
            self.client = Some(
                timed(
                    "connect",
                    Client::connect(self.reg.endpoints.clone(), Some(options)),
                )
                .await?,
            );
        }
        let ttl = self.reg.ttl_secs();
        let client = self.client.as_mut().expect("just connected");
        let id = timed("lease grant", client.lease_grant(ttl, None))
            .await?
            .id();
        timed(
            "put",
            client.put(
                self.reg.key.clone(),
                member_value(&self.reg.member),
                Some(PutOptions::new().with_lease(id)),
            ),
        )
        .await?;
        let (keeper, stream) = timed("keep-alive", client.lease_keep_alive(id)).await?;
        Ok(Lease { id, keeper, stream })
    }

    /// Revoke the lease (the key goes with it), if there is one.
    async fn revoke(&mut self, why: &str) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let Some(client) = self.client.as_mut() else {
            return;
        };
        match timed("lease revoke", client.lease_revoke(lease.id)).await {
            Ok(_) => say(&format!(
                "{}: key {} deleted ({why})",
                self.reg.member, self.reg.key
            )),
            Err(e) => say(&format!(
                "{}: revoking the lease failed ({e}); the key goes when it expires",
                self.reg.member
            )),
        }
    }

    /// The lease is lost (keep-alive failed, or etcd says it expired):
    /// register again at the next tick.
    fn lost(&mut self, why: &str) {
        if self.lease.take().is_some() {
            say(&format!("lease lost ({why}); registering again"));
        }
        self.client = None;
    }

    /// Run the check once; on a change, leave or join.
    async fn check(&mut self) {
        let Some(cmd) = self.reg.check.clone() else {
            return;
        };
        let run = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        let passed = matches!(
            tokio::time::timeout(self.reg.check_interval.max(Duration::from_millis(100)), run).await,
            Ok(Ok(s)) if s.success()
        );
        let first = !std::mem::replace(&mut self.checked, true);
        if passed == self.healthy {
            if first {
                say(&format!(
                    "check fails ({cmd}): not registered until it passes"
                ));
            }
            return;
        }
        self.healthy = passed;
        if passed {
            let again = if first { "" } else { " again" };
            say(&format!("check passes{again} ({cmd})"));
            self.ensure().await;
        } else {
            self.revoke(&format!("check failed: {cmd}")).await;
        }
    }
}

/// Register and keep registered until SIGTERM or SIGINT; then delete the
/// key and return.
///
/// # Errors
/// A signal handler cannot be installed.
pub async fn run(reg: Registration) -> Result<(), std::io::Error> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let keep_every = (reg.ttl / 3).max(Duration::from_millis(200));
    let mut keep = tokio::time::interval(keep_every);
    keep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checks = tokio::time::interval(reg.check_interval.max(Duration::from_millis(100)));
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut agent = Agent {
        healthy: reg.check.is_none(),
        checked: false,
        reg,
        client: None,
        lease: None,
        out: false,
        backoff: MIN_BACKOFF,
    };
    // A failed attempt waits the backoff before the next.
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let answer = async {
            match agent.lease.as_mut() {
                Some(l) => l.stream.message().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = checks.tick(), if agent.reg.check.is_some() => agent.check().await,
            _ = keep.tick() => {
                if let Some(l) = agent.lease.as_mut()
                    && let Err(e) = timed("keep-alive", l.keeper.keep_alive()).await
                {
                    agent.lost(&e);
                }
                if agent.lease.is_none() && tokio::time::Instant::now() >= retry_at {
                    agent.ensure().await;
                    if agent.lease.is_none() {
                        retry_at = tokio::time::Instant::now() + agent.backoff;
                    }
                }
            }
            answer = answer => match answer {
                Ok(Some(r)) if r.ttl() <= 0 => agent.lost("etcd says it expired"),
                Ok(Some(_)) => {}
                Ok(None) => agent.lost("the keep-alive stream ended"),
                Err(e) => agent.lost(&e.to_string()),
            },
        }
    }
    agent.revoke("lbctl register stopped").await;
    Ok(())
}
