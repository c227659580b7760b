//! Announcing VIPs over BGP through a speaker (bird2), for many active
//! lbd nodes behind routers that spread the flows over them (ECMP).
//!
//! lbd decides, the speaker speaks: a VIP of an `announce = "bgp"`
//! service is announced while the service is up (a real backend takes new
//! flows, the quorum holds) and this node is ready (every next hop
//! answered, the bulk sync of `[sync]` done, so a returning node never
//! takes flows with a cold table). lbd puts a host route to each such VIP
//! into a routing table of its own (`crate::sys::route`); bird's `kernel`
//! protocol learns the table and its BGP protocols export the routes with
//! this node as next hop. Withdrawn when the last backend fails, on
//! SIGTERM (then lbd keeps forwarding for `withdraw_grace` while the
//! routers move the flows), and, when the node dies, by the routers'
//! hold timer or BFD. A SIGKILLed or restarting lbd leaves the routes: its
//! pinned program still forwards, and the next lbd withdraws them until it
//! is ready.
//!
//! - [`bird`]: the control socket: the start-up check, the sessions'
//!   states for `lbctl status` and the log.

pub mod bird;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config;
use bird::{Bird, BirdError, Session};

/// How often the task asks bird for its sessions and checks the table.
const POLL: Duration = Duration::from_secs(2);

/// Why BGP mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    /// The speaker does not answer.
    #[error(
        "[bgp]: the BGP speaker cannot be reached ({source}); lbd announces its VIPs through it: start bird with a configuration like examples/bird/lb-node.conf, or set [bgp] socket to its control socket"
    )]
    Unreachable {
        /// Why.
        #[source]
        source: BirdError,
    },
    /// bird runs but has no BGP protocol.
    #[error(
        "[bgp]: bird at {socket} ({version}) has no BGP protocol, so no router would learn the VIPs lbd writes into table {table}; see examples/bird/lb-node.conf"
    )]
    NoSessions {
        /// The socket.
        socket: String,
        /// bird's version.
        version: String,
        /// `[bgp] table`.
        table: u32,
    },
    /// rtnetlink could not be opened.
    #[error("[bgp]: opening rtnetlink: {0}")]
    Netlink(std::io::Error),
}

/// BGP in `lbctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// bird's version, from its greeting.
    pub speaker: String,
    /// Its control socket.
    pub socket: PathBuf,
    /// The speaker answered the last poll.
    pub reachable: bool,
    /// Its BGP sessions at the last poll.
    pub sessions: Vec<Session>,
    /// The kernel table lbd writes into.
    pub table: u32,
    /// The VIPs whose routes are in the table now (announced while the
    /// speaker has a session up).
    pub announced: Vec<IpAddr>,
    /// The last failure to write the table, if the last attempt failed.
    pub error: Option<String>,
}

/// The running announcer: what lbd wants announced goes in through
/// [`Announcer::set`]; its task makes the kernel table match and polls
/// the speaker.
#[derive(Debug)]
pub struct Announcer {
    want: watch::Sender<BTreeSet<IpAddr>>,
    applied: watch::Receiver<BTreeSet<IpAddr>>,
    status: Arc<Mutex<BgpStatus>>,
    grace: Duration,
    /// This node has been ready (it stays so: a reload that asks for new
    /// next hops withdraws nothing).
    ready: bool,
    /// Services are up but this node is not ready: logged once.
    holding: bool,
    task: tokio::task::JoinHandle<()>,
}

/// Check that the speaker answers and has BGP sessions, then start the
/// announcer with nothing announced: routes an earlier lbd left in the
/// table are withdrawn until this node is ready.
///
/// # Errors
/// [`BgpError`]: the speaker cannot be reached or has no BGP protocol.
pub async fn start(cfg: &config::Bgp) -> Result<Announcer, BgpError> {
    let mut bird = Bird::connect(&cfg.socket)
        .await
        .map_err(|source| BgpError::Unreachable { source })?;
    let sessions = bird
        .sessions()
        .await
        .map_err(|source| BgpError::Unreachable { source })?;
    if sessions.is_empty() {
        return Err(BgpError::NoSessions {
            socket: cfg.socket.display().to_string(),
            version: bird.version,
            table: cfg.table,
        });
    }
    info!(
        "BGP speaker {} at {}: session(s) {}; lbd writes the VIPs to announce into table {}",
        bird.version,
        cfg.socket.display(),
        describe(&sessions),
        cfg.table
    );
    let (connection, handle, _) = rtnetlink::new_connection().map_err(BgpError::Netlink)?;
    tokio::spawn(connection);
    let status = Arc::new(Mutex::new(BgpStatus {
        speaker: bird.version.clone(),
        socket: cfg.socket.clone(),
        reachable: true,
        sessions,
        table: cfg.table,
        ..BgpStatus::default()
    }));
    let (want, want_rx) = watch::channel(BTreeSet::new());
    let (applied_tx, applied) = watch::channel(BTreeSet::new());
    let task = Task {
        handle,
        table: cfg.table,
        socket: cfg.socket.clone(),
        bird: Some(bird),
        status: Arc::clone(&status),
        applied: applied_tx,
        last_error: None,
        first: true,
    };
    Ok(Announcer {
        want,
        applied,
        status,
        grace: cfg.withdraw_grace.0,
        ready: false,
        holding: false,
        task: tokio::spawn(task.run(want_rx)),
    })
}

/// `uplink (up, Established), backup (start, Active)`.
fn describe(sessions: &[Session]) -> String {
    sessions
        .iter()
        .map(|s| format!("{} ({}, {})", s.name, s.state, s.info))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Announcer {
    /// Announce exactly `up` (the VIPs whose services are up) once this
    /// node has been `ready`; until then nothing. Logs each VIP announced
    /// or withdrawn and why.
    pub fn set(&mut self, up: BTreeSet<IpAddr>, ready: bool) {
        self.ready |= ready;
        let ready = self.ready;
        if !ready && !up.is_empty() && !self.holding {
            info!(
                "BGP: not announcing yet: waiting for every next hop and the peers' tables (bulk sync)"
            );
        }
        self.holding = !ready && !up.is_empty();
        let wanted = if ready { up } else { BTreeSet::new() };
        self.want.send_if_modified(|now| {
            if *now == wanted {
                return false;
            }
            for vip in wanted.difference(now) {
                info!("BGP: announcing {vip}: a service on it has a backend up");
            }
            for vip in now.difference(&wanted) {
                info!("BGP: withdrawing {vip}: no service on it has a backend up");
            }
            *now = wanted;
            true
        });
    }

    /// For `lbctl status`.
    #[must_use]
    pub fn status(&self) -> BgpStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stopping (SIGTERM): withdraw every VIP, wait until the table is
    /// empty, then keep forwarding for `withdraw_grace` while the routers
    /// move the flows to the other nodes.
    pub async fn withdraw_all(mut self) {
        let had = self.want.send_replace(BTreeSet::new());
        for vip in &had {
            info!("BGP: withdrawing {vip}: lbd is stopping");
        }
        // The guard `wait_for` returns holds the channel's read lock: it
        // must go at once, or the task's next write would block this
        // (single) thread for good.
        let emptied = tokio::time::timeout(
            Duration::from_secs(2),
            self.applied.wait_for(BTreeSet::is_empty),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !emptied {
            warn!(
                "BGP: the routes did not leave the table within 2 s; the routers' hold timer will withdraw them"
            );
        }
        if !had.is_empty() && !self.grace.is_zero() {
            info!(
                "BGP: withdrawn; forwarding {:?} more while the routers move the flows",
                self.grace
            );
            tokio::time::sleep(self.grace).await;
        }
    }

    /// Leaving the data plane forwarding (SIGUSR2): the VIPs stay
    /// announced, for the pinned program to serve until the next lbd.
    pub fn leave(self) {
        let announced = self.applied.borrow().len();
        if announced > 0 {
            info!(
                "BGP: {announced} VIP(s) stay announced: the data plane keeps forwarding for the next lbd"
            );
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The announcer's task: the kernel table made to match, bird polled.
struct Task {
    handle: rtnetlink::Handle,
    table: u32,
    socket: PathBuf,
    bird: Option<Bird>,
    status: Arc<Mutex<BgpStatus>>,
    applied: watch::Sender<BTreeSet<IpAddr>>,
    /// The last error writing the table, logged once.
    last_error: Option<String>,
    /// The first pass (it sweeps what an earlier lbd left).
    first: bool,
}

impl Task {
    async fn run(mut self, mut want: watch::Receiver<BTreeSet<IpAddr>>) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let wanted = want.borrow_and_update().clone();
            self.reconcile(&wanted).await;
            tokio::select! {
                changed = want.changed() => if changed.is_err() { return },
                _ = poll.tick() => self.poll_speaker().await,
            }
        }
    }

    /// Make lbd's routes in the table exactly `wanted`.
    async fn reconcile(&mut self, wanted: &BTreeSet<IpAddr>) {
        let result = async {
            let present: BTreeSet<IpAddr> = crate::sys::route::list(&self.handle, self.table)
                .await?
                .into_iter()
                .collect();
            for vip in present.difference(wanted) {
                crate::sys::route::remove(&self.handle, self.table, *vip).await?;
                if self.first {
                    info!("BGP: withdrew {vip}, left announced by an earlier lbd, until this node is ready");
                }
            }
            for vip in wanted.difference(&present) {
                crate::sys::route::add(&self.handle, self.table, *vip).await?;
            }
            Ok::<(), rtnetlink::Error>(())
        }
        .await;
        self.first = false;
        let error = result
            .err()
            .map(|e| format!("writing table {}: {e}", self.table));
        if error.is_some() && error != self.last_error {
            warn!("BGP: {}", error.as_deref().unwrap_or_default());
        }
        self.last_error.clone_from(&error);
        let now = if error.is_none() {
            wanted.clone()
        } else {
            crate::sys::route::list(&self.handle, self.table)
                .await
                .map(|v| v.into_iter().collect())
                .unwrap_or_default()
        };
        {
            let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            st.announced = now.iter().copied().collect();
            st.error = error;
        }
        self.applied.send_replace(now);
    }

    /// Ask bird for its sessions (reconnecting if needed); log what
    /// changed.
    async fn poll_speaker(&mut self) {
        if self.bird.is_none() {
            self.bird = Bird::connect(&self.socket).await.ok();
        }
        let sessions = match self.bird.as_mut() {
            Some(bird) => bird.sessions().await.ok(),
            None => None,
        };
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sessions) = sessions {
            if !st.reachable {
                info!(
                    "BGP: the speaker at {} answers again",
                    self.socket.display()
                );
            }
            for s in &sessions {
                let before = st.sessions.iter().find(|b| b.name == s.name);
                if before.is_none_or(|b| b.established() != s.established()) {
                    if s.established() {
                        info!("BGP session {}: established", s.name);
                    } else {
                        warn!("BGP session {}: {} ({})", s.name, s.state, s.info);
                    }
                }
            }
            st.reachable = true;
            st.sessions = sessions;
            if let Some(bird) = &self.bird {
                st.speaker.clone_from(&bird.version);
            }
        } else {
            if st.reachable {
                warn!(
                    "BGP: the speaker at {} does not answer: while it is down no router learns of this node's VIPs",
                    self.socket.display()
                );
            }
            st.reachable = false;
            self.bird = None;
        }
    }
}
