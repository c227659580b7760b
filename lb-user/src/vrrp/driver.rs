//! Running VRRP instances: the state machine wired to the world.
//!
//! One tokio task per instance owns its [`Machine`], its sockets
//! ([`super::net`]) and its gratuitous-ARP schedule ([`super::garp`]), and
//! waits on whichever comes first: an advert, the machine's next deadline,
//! a tracked object changing ([`super::track`]), an announcement due, or
//! shutdown. The machine's [`Action`]s are carried out in order: adverts
//! sent, VIPs added or removed with rtnetlink ([`super::addr`]),
//! announcements scheduled, notify hooks run, transitions logged.
//!
//! Sync groups (`vrrp_sync_group`): one task per group ([`run_group`])
//! owns the pure [`super::sync::SyncGroup`]; its members report their
//! state to it and carry out its orders ([`Event::Sync`]); it runs the
//! group's notify scripts.
//!
//! Every instance tracks its own interface with weight 0 (down or not
//! running = FAULT), as keepalived does unless `dont_track_primary`.
//!
//! Logging: one line per transition with its cause; one warning per
//! rejection cause per instance (the first), later ones counted only; a
//! summary of the counters when the instance stops.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use super::garp::{self, FrameSender, GarpConfig, GarpSchedule};
use super::machine::{Action, Event, Machine, State, SyncOrder};
use super::net::{Dropped, Endpoint, Received, VrrpSocket};
use crate::dataplane::loader::error_chain;
use crate::sys::addr::{self, Added, Vip};
use crate::sys::interface::NoSuchInterface;
use crate::sys::process::run_hook;

/// Why VRRP instances could not be started or changed, or why a running
/// instance stopped by itself.
///
/// The messages are prefixes: print an error with its sources
/// ([`crate::dataplane::loader::error_chain`]), which gives e.g.
/// `vrrp_instance VI_1: eth1 has no IPv4 address to send adverts from
/// (set unicast_src_ip, or add one)` or `VI_1: opening VRRP sockets on eth1
/// from 198.18.0.2: Operation not permitted (os error 1)`.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The rtnetlink connection (for VIPs, addresses and the MAC) could
    /// not be opened.
    #[error("opening rtnetlink")]
    Netlink {
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The instance's VRRP sockets could not be opened (after retrying for
    /// a source address that is not usable yet).
    #[error("{instance}: opening VRRP sockets on {interface} from {primary}")]
    Socket {
        /// The instance.
        instance: String,
        /// Its interface.
        interface: String,
        /// The address adverts are sent from.
        primary: IpAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Reading the interface's MAC address (the source of gratuitous ARP
    /// and NA) over netlink failed. The message is the netlink error's.
    #[error(transparent)]
    InterfaceMac {
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// The state machine refused the instance's settings when the
    /// instance task started.
    #[error("{instance}")]
    Machine {
        /// The instance.
        instance: String,
        /// What the machine refused.
        #[source]
        source: super::machine::ConfigError,
    },
    /// An instance of the configuration cannot be set up; nothing was
    /// changed.
    #[error("vrrp_instance {instance}")]
    Instance {
        /// The instance.
        instance: String,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// An instance task ended without being asked to stop.
    #[error("stopped unexpectedly")]
    Stopped,
    /// An instance task panicked or was cancelled.
    #[error("task failed")]
    Task {
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Why an instance of the configuration cannot be set up (the source of
/// [`DriverError::Instance`]).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// `virtual_ipaddress` does not parse (the configuration's message).
    #[error("{reason}")]
    Vips {
        /// What is wrong.
        reason: String,
    },
    /// The instance's interface does not exist.
    #[error(transparent)]
    Interface {
        /// The name looked up.
        source: NoSuchInterface,
    },
    /// Listing the interface's addresses (to pick the advert source)
    /// failed.
    #[error("listing addresses of {interface}")]
    Addresses {
        /// The interface.
        interface: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// No `unicast_src_ip` is configured and the interface has no address
    /// of the VIPs' family (IPv6: link-local) to send adverts from.
    #[error(
        "{interface} has no {family} address to send adverts from (set unicast_src_ip, or add one)"
    )]
    NoSourceAddress {
        /// The interface.
        interface: String,
        /// `IPv4` or `IPv6 link-local`.
        family: &'static str,
    },
    /// The state machine refuses the settings (VRID, priority, interval,
    /// VIPs, track weights). The message is the machine's.
    #[error(transparent)]
    Machine {
        /// What the machine refused.
        source: super::machine::ConfigError,
    },
}

/// What a tracked object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// A `vrrp_script`.
    Script,
    /// A `track_interface` (or the instance's own interface).
    Interface,
    /// A `vrrp_track_process`.
    Process,
    /// A `track_file`: its updates carry a value.
    File,
}

/// A tracked object changed (sent to every instance; each picks its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEvent {
    /// Script or interface.
    pub kind: TrackKind,
    /// Its name.
    pub name: String,
    /// Whether it is now up (valued objects: whether the value is 0).
    pub up: bool,
    /// A `track_file`'s value (`None` for up/down objects).
    pub value: Option<i64>,
    /// What caused the change.
    pub reason: String,
}

/// A message to a sync group's task ([`run_group`]).
#[derive(Debug, Clone)]
pub enum GroupMsg {
    /// Member `index` (re)started: its orders go to `orders`.
    Attach {
        /// Index in the group's `instances`.
        index: usize,
        /// Where its orders go.
        orders: tokio::sync::mpsc::UnboundedSender<SyncOrder>,
    },
    /// Member `index` is now in `state`; `own_fault`: its own tracking
    /// faults it.
    State {
        /// Index in the group's `instances`.
        index: usize,
        /// Its state.
        state: State,
        /// Whether its own tracking puts it in FAULT.
        own_fault: bool,
    },
}

/// An instance's place in its sync group.
#[derive(Debug, Clone)]
pub struct SyncMember {
    /// The group's name.
    pub group: String,
    /// Index in the group's `instances`.
    pub index: usize,
    /// The group task's inbox.
    pub tx: tokio::sync::mpsc::UnboundedSender<GroupMsg>,
}

/// keepalived's notify hooks of one instance (`/bin/sh -c` command lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// On becoming master.
    pub master: Option<String>,
    /// On becoming backup.
    pub backup: Option<String>,
    /// On entering fault.
    pub fault: Option<String>,
    /// When the instance stops.
    pub stop: Option<String>,
    /// On every transition, with arguments `INSTANCE NAME STATE PRIORITY`.
    pub any: Option<String>,
}

/// Everything one instance needs.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Instance name.
    pub name: String,
    /// Interface, primary address, peers.
    pub endpoint: Endpoint,
    /// The state machine's configuration.
    pub machine: super::machine::Config,
    /// The VIPs with their prefixes (same order as `machine.vips`).
    pub vips: Vec<Vip>,
    /// Announcement timing.
    pub garp: GarpConfig,
    /// Hooks.
    pub notify: Notify,
    /// What each of `machine.tracks` is, by index.
    pub tracks: Vec<(TrackKind, String)>,
}

/// What an instance looks like now, for `lbctl vrrp` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    /// Configured priority.
    pub base_priority: u8,
    /// Priority after tracking.
    pub priority: u8,
    /// The master this node hears (in BACKUP), if any.
    pub master: Option<IpAddr>,
    /// The virtual addresses.
    pub vips: Vec<String>,
    /// Transitions since start.
    pub transitions: u64,
    /// Adverts accepted.
    pub adverts_accepted: u64,
    /// Adverts rejected or dropped, by cause.
    pub rejected: BTreeMap<String, u64>,
}

/// Shared view of every instance's status, updated by the instance tasks.
pub type StatusBoard = std::sync::Arc<std::sync::Mutex<BTreeMap<String, InstanceStatus>>>;

/// A state change, for the controller: services behind an instance forward
/// only while it is master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// Instance name.
    pub instance: String,
    /// New state.
    pub state: State,
}

/// Counters of a stopped instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Instance name.
    pub name: String,
    /// Final state before stopping.
    pub last_state: Option<State>,
    /// The machine's counters.
    pub stats: super::machine::Stats,
    /// Datagrams dropped before the machine, by cause label.
    pub dropped: BTreeMap<&'static str, u64>,
}

impl Report {
    /// One line: `rejected: bad_ttl=3 auth_failure=1 ...`.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .dropped
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for cause in super::machine::RejectCause::ALL {
            let n = self.stats.rejected(cause);
            if n > 0 {
                parts.push(format!("{}={n}", cause.label()));
            }
        }
        format!(
            "accepted={} became_master={} left_master={} rejected: {}",
            self.stats.adverts_accepted,
            self.stats.became_master,
            self.stats.left_master,
            if parts.is_empty() {
                "none".to_owned()
            } else {
                parts.join(" ")
            }
        )
    }
}

struct Instance {
    spec: InstanceSpec,
    machine: Machine,
    socket: VrrpSocket,
    netlink: rtnetlink::Handle,
    frames: Option<FrameSender>,
    mac: [u8; 6],
    garp: GarpSchedule,
    /// VIPs we added (tagged) and so may remove.
    added: HashSet<Vip>,
    dropped: BTreeMap<&'static str, u64>,
    logged: HashSet<&'static str>,
    /// Sending adverts fails (logged once until it works again).
    send_failing: bool,
    transitions: u64,
    board: StatusBoard,
    changes: Option<tokio::sync::mpsc::UnboundedSender<StateChange>>,
}

/// Open the instance's sockets. The source address may not be usable yet
/// (an IPv6 link-local address is tentative for a second or two after the
/// link comes up): retry for up to 10 s before giving up.
///
/// # Errors
/// [`DriverError::Socket`].
async fn open_socket(spec: &InstanceSpec) -> Result<VrrpSocket, DriverError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut logged = false;
    loop {
        match VrrpSocket::open(spec.endpoint.clone()) {
            Ok(socket) => return Ok(socket),
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && Instant::now() < deadline =>
            {
                if !logged {
                    info!(instance = %spec.name, source = %spec.endpoint.primary, "source address not usable yet (duplicate address detection?); retrying");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(source) => {
                return Err(DriverError::Socket {
                    instance: spec.name.clone(),
                    interface: spec.endpoint.iface.clone(),
                    primary: spec.endpoint.primary,
                    source,
                });
            }
        }
    }
}

/// What the driver tells a running instance: stop (`shutdown` turns
/// true), or take a reload's new base priority in place.
#[derive(Debug)]
pub struct Control {
    /// Turns true to stop the instance.
    pub shutdown: watch::Receiver<bool>,
    /// The base priority; a new value is applied in place
    /// ([`Event::SetPriority`]).
    pub priority: watch::Receiver<u8>,
}

/// Run one instance until `control.shutdown` turns true; then release (priority-0
/// advert if master, VIPs removed, `notify_stop`) and report. A new value
/// in `control.priority` is a reload's new base priority, applied in
/// place ([`Event::SetPriority`]).
///
/// # Errors
/// [`DriverError::Netlink`], [`DriverError::Socket`],
/// [`DriverError::InterfaceMac`]: the sockets or netlink cannot be set up;
/// [`DriverError::Machine`]: the machine refuses `spec`.
#[allow(
    clippy::too_many_lines,
    reason = "one select! over the instance's event sources, each arm a call"
)]
pub async fn run_instance(
    spec: InstanceSpec,
    mut tracks: broadcast::Receiver<TrackEvent>,
    mut control: Control,
    mut preempt_hold: watch::Receiver<bool>,
    board: StatusBoard,
    changes: Option<tokio::sync::mpsc::UnboundedSender<StateChange>>,
    sync: Option<SyncMember>,
) -> Result<Report, DriverError> {
    let (mut inst, conn) = Instance::open(spec, board, changes).await?;
    let mut orders = attach(sync.as_ref());
    let mut reported: Option<(State, bool)> = None;
    inst.sweep_stale().await;
    let held = *preempt_hold.borrow_and_update();
    if held {
        info!(instance = %inst.spec.name, "not preempting until connection sync has the peers' flows");
    }
    inst.machine
        .handle(Event::PreemptHold(held), Instant::now());
    let mut hold_open = true;
    let mut priority_open = true;
    let actions = inst.machine.handle(Event::Startup, Instant::now());
    inst.apply(actions).await;
    loop {
        let now = (inst.machine.state(), inst.machine.own_fault());
        if reported != Some(now) {
            reported = Some(now);
            report_to_group(sync.as_ref(), now.0, now.1);
        }
        let deadline = [inst.machine.next_deadline(), inst.garp.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = inst.socket.recv() => match received {
                Ok(Received::Advert { source, advert }) => {
                    if advert.vrid != inst.spec.machine.vrid {
                        continue;
                    }
                    let actions = inst.machine.handle(Event::Advert { source, advert }, Instant::now());
                    inst.apply(actions).await;
                }
                Ok(Received::Dropped { source, cause }) => {
                    inst.dropped(source, cause);
                    inst.publish();
                }
                Err(e) => {
                    warn!(instance = %inst.spec.name, error = %e, "VRRP receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = sleep => {
                let now = Instant::now();
                let rounds = inst.garp.poll(now);
                inst.announce(rounds);
                if inst.machine.next_deadline().is_some_and(|d| d <= now) {
                    let actions = inst.machine.handle(Event::Timer, now);
                    inst.apply(actions).await;
                }
            }
            event = tracks.recv() => match event {
                Ok(event) => {
                    inst.tracked(&event).await;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(instance = %inst.spec.name, missed = n, "tracking updates lagged");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // No trackers: wait for the other events only.
                    tracks = broadcast::channel(1).1;
                }
            },
            Some(order) = orders.recv() => {
                let group = sync.as_ref().map(|m| m.group.clone()).unwrap_or_default();
                debug!(instance = %inst.spec.name, %group, ?order, "sync group order");
                let actions = inst.machine.handle(Event::Sync { group, order }, Instant::now());
                inst.apply(actions).await;
            }
            hold_changed = preempt_hold.changed(), if hold_open => {
                if hold_changed.is_err() {
                    // The sync task is gone: nothing holds preemption.
                    hold_open = false;
                }
                let held = hold_open && *preempt_hold.borrow_and_update();
                if !held {
                    info!(instance = %inst.spec.name, "connection sync done: preempting allowed");
                }
                inst.machine.handle(Event::PreemptHold(held), Instant::now());
            }
            got = control.priority.changed(), if priority_open => match got {
                Ok(()) => {
                    let new = *control.priority.borrow_and_update();
                    inst.set_priority(new).await;
                }
                Err(_) => priority_open = false,
            },
            _ = control.shutdown.changed() => break,
        }
    }
    let last_state = inst.machine.state();
    inst.release().await;
    report_to_group(sync.as_ref(), State::Initialize, false);
    conn.abort();
    let report = Report {
        name: inst.spec.name.clone(),
        last_state: Some(last_state),
        stats: inst.machine.stats().clone(),
        dropped: inst.dropped.clone(),
    };
    info!(instance = %report.name, "stopped: {}", report.summary());
    Ok(report)
}

/// Attach to the sync group of `sync`, if any: the receiver of its orders
/// (closed at once without a group).
fn attach(sync: Option<&SyncMember>) -> tokio::sync::mpsc::UnboundedReceiver<SyncOrder> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(member) = sync {
        let _ = member.tx.send(GroupMsg::Attach {
            index: member.index,
            orders: tx,
        });
    }
    rx
}

/// Tell the sync group of `sync`, if any, the member's state.
fn report_to_group(sync: Option<&SyncMember>, state: State, own_fault: bool) {
    if let Some(member) = sync {
        let _ = member.tx.send(GroupMsg::State {
            index: member.index,
            state,
            own_fault,
        });
    }
}

impl Instance {
    /// A tracked object changed: the machine hears of it if it is ours.
    async fn tracked(&mut self, event: &TrackEvent) {
        let index = self
            .spec
            .tracks
            .iter()
            .position(|(k, n)| *k == event.kind && *n == event.name);
        if let Some(index) = index {
            debug!(instance = %self.spec.name, track = %event.name, up = event.up, value = ?event.value, reason = %event.reason, "tracked object changed");
            let event = match event.value {
                Some(value) => Event::TrackValue { index, value },
                None => Event::Track {
                    index,
                    up: event.up,
                },
            };
            let actions = self.machine.handle(event, Instant::now());
            self.apply(actions).await;
        }
    }

    /// Set up instance `spec`: its netlink connection (the connection's
    /// task is returned, to abort when done), VRRP socket, interface MAC,
    /// frame sender (without one, a warning) and machine.
    ///
    /// # Errors
    /// As [`run_instance`].
    async fn open(
        spec: InstanceSpec,
        board: StatusBoard,
        changes: Option<tokio::sync::mpsc::UnboundedSender<StateChange>>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), DriverError> {
        let (conn, netlink, _) =
            rtnetlink::new_connection().map_err(|source| DriverError::Netlink { source })?;
        let conn = tokio::spawn(conn);
        let socket = open_socket(&spec).await?;
        let mac = interface_mac(&netlink, spec.endpoint.ifindex)
            .await
            .map_err(|source| DriverError::InterfaceMac { source })?;
        let frames = match FrameSender::open(spec.endpoint.ifindex) {
            Ok(f) => Some(f),
            Err(e) => {
                warn!(instance = %spec.name, error = %e, "cannot send gratuitous ARP / NA; VIP moves rely on the adverts alone");
                None
            }
        };
        let machine =
            Machine::new(spec.machine.clone()).map_err(|source| DriverError::Machine {
                instance: spec.name.clone(),
                source,
            })?;
        let inst = Instance {
            garp: GarpSchedule::new(spec.garp),
            spec,
            machine,
            socket,
            netlink,
            frames,
            mac,
            added: HashSet::new(),
            dropped: BTreeMap::new(),
            logged: HashSet::new(),
            send_failing: false,
            transitions: 0,
            board,
            changes,
        };
        Ok((inst, conn))
    }

    /// Shut the machine down (a master sends its priority-0 advert and
    /// removes its VIPs), remove whatever else we added, and run the stop
    /// hooks.
    async fn release(&mut self) {
        let actions = self.machine.handle(Event::Shutdown, Instant::now());
        self.apply(actions).await;
        // Anything we added and the machine did not remove (e.g. shutdown
        // from Fault) goes too: lbd leaves nothing behind.
        self.remove_added().await;
        if let Some(stop) = &self.spec.notify.stop {
            run_hook(&self.spec.name, stop, &[]);
        }
        if let Some(any) = &self.spec.notify.any {
            let prio = self.machine.effective_priority().to_string();
            run_hook(
                &self.spec.name,
                any,
                &["INSTANCE", &self.spec.name, "STOP", &prio],
            );
        }
    }

    async fn sweep_stale(&mut self) {
        // A previous lbd that crashed may have left our VIPs tagged on the
        // interface; we start as backup, so they must go.
        for vip in self.spec.vips.clone() {
            match addr::remove(&self.netlink, self.spec.endpoint.ifindex, vip).await {
                Ok(true) => {
                    info!(instance = %self.spec.name, %vip, "removed VIP left by an earlier run");
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(instance = %self.spec.name, %vip, error = %e, "cannot check for stale VIP");
                }
            }
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        self.apply_actions(actions).await;
        self.publish();
    }

    async fn apply_actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    let advert = self.machine.advertisement(priority);
                    match self.socket.send(&advert) {
                        Ok(()) if self.send_failing => {
                            info!(instance = %self.spec.name, "sending adverts works again");
                            self.send_failing = false;
                        }
                        Err(e) if !self.send_failing => {
                            warn!(instance = %self.spec.name, error = %e, "sending advert failed (logged again when it recovers)");
                            self.send_failing = true;
                        }
                        Ok(()) | Err(_) => {}
                    }
                }
                Action::AddVips => {
                    for vip in self.spec.vips.clone() {
                        match addr::add(&self.netlink, self.spec.endpoint.ifindex, vip).await {
                            Ok(Added::New | Added::Ours) => {
                                self.added.insert(vip);
                            }
                            Ok(Added::Foreign) => {
                                info!(instance = %self.spec.name, %vip, "VIP already configured on the interface; leaving it to its owner");
                            }
                            Err(e) => {
                                warn!(instance = %self.spec.name, %vip, error = %e, "adding VIP failed");
                            }
                        }
                    }
                }
                Action::RemoveVips => self.remove_added().await,
                Action::SendGratuitous => {
                    let now = Instant::now();
                    self.garp.start(now);
                    let rounds = self.garp.poll(now);
                    self.announce(rounds);
                }
                Action::Transition { from, to, reason } => {
                    info!(
                        instance = %self.spec.name,
                        %from,
                        %to,
                        priority = self.machine.effective_priority(),
                        "VRRP transition: {reason}"
                    );
                    if to != State::Master {
                        self.garp.stop();
                    }
                    self.transitions += 1;
                    if let Some(tx) = &self.changes {
                        let _ = tx.send(StateChange {
                            instance: self.spec.name.clone(),
                            state: to,
                        });
                    }
                    self.notify(to);
                }
                Action::PriorityChanged { from, to } => {
                    info!(instance = %self.spec.name, from, to, "effective priority changed");
                }
                Action::Rejected {
                    cause,
                    source,
                    first_time,
                } => {
                    if first_time {
                        warn!(instance = %self.spec.name, %source, cause = cause.label(), "rejected advert: {cause} (further ones are counted, not logged)");
                    }
                }
            }
        }
    }

    /// A reload's new base priority, in place.
    async fn set_priority(&mut self, priority: u8) {
        self.spec.machine.priority = priority;
        let actions = self
            .machine
            .handle(Event::SetPriority(priority), Instant::now());
        self.apply(actions).await;
        self.publish();
    }

    fn publish(&self) {
        let machine_stats = self.machine.stats();
        let mut rejected: BTreeMap<String, u64> = self
            .dropped
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        for cause in super::machine::RejectCause::ALL {
            let n = machine_stats.rejected(cause);
            if n > 0 {
                rejected.insert(cause.label().to_owned(), n);
            }
        }
        let status = InstanceStatus {
            name: self.spec.name.clone(),
            interface: self.spec.endpoint.iface.clone(),
            vrid: self.spec.machine.vrid,
            state: self.machine.state().to_string(),
            base_priority: self.spec.machine.priority,
            priority: self.machine.effective_priority(),
            master: self.machine.master().map(|p| p.address),
            vips: self.spec.vips.iter().map(ToString::to_string).collect(),
            transitions: self.transitions,
            adverts_accepted: machine_stats.adverts_accepted,
            rejected,
        };
        if let Ok(mut board) = self.board.lock() {
            board.insert(status.name.clone(), status);
        }
    }

    async fn remove_added(&mut self) {
        for vip in std::mem::take(&mut self.added) {
            if let Err(e) = addr::remove(&self.netlink, self.spec.endpoint.ifindex, vip).await {
                warn!(instance = %self.spec.name, %vip, error = %e, "removing VIP failed");
            }
        }
    }

    fn dropped(&mut self, source: IpAddr, cause: Dropped) {
        let label = cause.label();
        *self.dropped.entry(label).or_insert(0) += 1;
        if self.logged.insert(label) {
            let detail = match cause {
                Dropped::BadTtl(ttl) => format!("TTL {ttl}, VRRP requires 255"),
                Dropped::BadChecksum => "bad checksum".to_owned(),
                Dropped::Malformed => "malformed".to_owned(),
            };
            warn!(instance = %self.spec.name, %source, cause = label, "dropped VRRP packet: {detail} (further ones are counted, not logged)");
        }
    }

    fn announce(&self, rounds: u32) {
        let Some(frames) = &self.frames else {
            return;
        };
        for _ in 0..rounds {
            for vip in &self.spec.vips {
                let frame = match (vip.addr, self.spec.endpoint.primary) {
                    (IpAddr::V4(a), _) => garp::gratuitous_arp(self.mac, a),
                    (IpAddr::V6(a), IpAddr::V6(src)) => garp::unsolicited_na(self.mac, src, a),
                    (IpAddr::V6(_), IpAddr::V4(_)) => continue,
                };
                if let Err(e) = frames.send(&frame) {
                    debug!(instance = %self.spec.name, %vip, error = %e, "announcement not sent");
                }
            }
        }
    }

    fn notify(&self, to: State) {
        let hook = match to {
            State::Master => &self.spec.notify.master,
            State::Backup => &self.spec.notify.backup,
            State::Fault => &self.spec.notify.fault,
            State::Initialize => &None,
        };
        if let Some(cmd) = hook {
            run_hook(&self.spec.name, cmd, &[]);
        }
        if let Some(cmd) = &self.spec.notify.any
            && to != State::Initialize
        {
            let prio = self.machine.effective_priority().to_string();
            run_hook(
                &self.spec.name,
                cmd,
                &["INSTANCE", &self.spec.name, state_word(to), &prio],
            );
        }
    }
}

/// keepalived's state words for notify scripts.
fn state_word(state: State) -> &'static str {
    match state {
        State::Master => "MASTER",
        State::Backup => "BACKUP",
        State::Fault => "FAULT",
        State::Initialize => "STOP",
    }
}

/// The MAC address of interface `ifindex` (all zeros when it has none).
///
/// # Errors
/// The netlink request fails.
async fn interface_mac(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<[u8; 6], rtnetlink::Error> {
    use futures::TryStreamExt as _;
    use rtnetlink::packet_route::link::LinkAttribute;
    let mut links = handle.link().get().match_index(ifindex).execute();
    while let Some(link) = links.try_next().await? {
        for attr in link.attributes {
            if let LinkAttribute::Address(a) = attr
                && let Ok(mac) = <[u8; 6]>::try_from(a.as_slice())
            {
                return Ok(mac);
            }
        }
    }
    Ok([0; 6])
}

/// The running VRRP side of lbd: instance tasks and trackers.
pub struct Running {
    /// Every instance's status.
    pub board: StatusBoard,
    /// True while the instances must not preempt (connection sync not
    /// done yet, [`Event::PreemptHold`]).
    preempt_hold: watch::Receiver<bool>,
    events: broadcast::Sender<TrackEvent>,
    changes: Option<tokio::sync::mpsc::UnboundedSender<StateChange>>,
    instances: Vec<RunningInstance>,
    trackers: Vec<tokio::task::JoinHandle<()>>,
    groups: Vec<RunningGroup>,
}

/// A sync group's task.
struct RunningGroup {
    cfg: crate::config::VrrpSyncGroup,
    tx: tokio::sync::mpsc::UnboundedSender<GroupMsg>,
    handle: tokio::task::JoinHandle<()>,
}

/// What an instance depends on besides its own table: a change restarts it.
#[derive(Debug, Clone, PartialEq)]
struct Deps {
    scripts: Vec<crate::config::VrrpScript>,
    processes: Vec<crate::config::VrrpTrackProcess>,
    files: Vec<crate::config::VrrpTrackFile>,
    group: Option<crate::config::VrrpSyncGroup>,
}

struct RunningInstance {
    name: String,
    cfg: crate::config::VrrpInstance,
    /// What it depends on, as configured (a change restarts it).
    deps: Deps,
    shutdown: watch::Sender<bool>,
    /// A reload's new base priority, applied in place.
    priority: watch::Sender<u8>,
    handle: tokio::task::JoinHandle<Result<Report, DriverError>>,
}

/// Whether `new` differs from `old` in its priority alone, neither being
/// an address owner's 255: applied in place, so a master that stays the
/// higher keeps its VIPs (restarting the instance would release them to
/// the peer and take them back; both nodes restarting at once would leave
/// the VIPs unheld for a master-down interval).
fn priority_only(old: &crate::config::VrrpInstance, new: &crate::config::VrrpInstance) -> bool {
    if old.priority == new.priority || old.priority == 255 || new.priority == 255 {
        return false;
    }
    let mut same = new.clone();
    same.priority = old.priority;
    same == *old
}

impl RunningInstance {
    async fn stop(self) -> Option<Report> {
        let _ = self.shutdown.send(true);
        match self.handle.await {
            Ok(Ok(report)) => Some(report),
            Ok(Err(e)) => {
                warn!(instance = %self.name, "instance had failed: {}", error_chain(&e));
                None
            }
            Err(e) => {
                warn!(instance = %self.name, "instance task failed: {e}");
                None
            }
        }
    }
}

fn deps_of(config: &crate::config::Config, inst: &crate::config::VrrpInstance) -> Deps {
    Deps {
        scripts: inst
            .track_script
            .iter()
            .filter_map(|t| {
                config
                    .vrrp_script
                    .iter()
                    .find(|s| s.name == t.name)
                    .cloned()
            })
            .collect(),
        processes: inst
            .track_process
            .iter()
            .filter_map(|t| {
                config
                    .vrrp_track_process
                    .iter()
                    .find(|p| p.name == t.name)
                    .cloned()
            })
            .collect(),
        files: inst
            .track_file
            .iter()
            .filter_map(|t| {
                config
                    .vrrp_track_file
                    .iter()
                    .find(|f| f.name == t.name)
                    .cloned()
            })
            .collect(),
        group: group_of(config, &inst.name).cloned(),
    }
}

/// The sync group instance `name` is in.
fn group_of<'c>(
    config: &'c crate::config::Config,
    name: &str,
) -> Option<&'c crate::config::VrrpSyncGroup> {
    config
        .vrrp_sync_group
        .iter()
        .find(|g| g.instances.iter().any(|i| i == name))
}

/// Run sync group `cfg`: hear its members' states, send them the
/// group's orders ([`super::sync::SyncGroup`]), log the group's
/// transitions and run its notify scripts (`notify` with `GROUP NAME
/// STATE`). Ends when every sender of `rx` is gone.
pub async fn run_group(
    cfg: crate::config::VrrpSyncGroup,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<GroupMsg>,
) {
    let mut group = super::sync::SyncGroup::new(cfg.instances.len());
    let mut members: Vec<Option<tokio::sync::mpsc::UnboundedSender<SyncOrder>>> =
        vec![None; cfg.instances.len()];
    while let Some(msg) = rx.recv().await {
        let (index, state, own_fault) = match msg {
            GroupMsg::Attach { index, orders } => {
                if let Some(slot) = members.get_mut(index) {
                    *slot = Some(orders);
                }
                continue;
            }
            GroupMsg::State {
                index,
                state,
                own_fault,
            } => (index, state, own_fault),
        };
        let decision = group.report(index, state, own_fault);
        for to in decision.entered {
            let member = cfg.instances.get(index).map_or("?", String::as_str);
            info!(group = %cfg.name, %member, member_state = %state, own_fault, "VRRP sync group transition: to={to}");
            let hook = match to {
                State::Master => &cfg.notify_master,
                State::Backup => &cfg.notify_backup,
                State::Fault => &cfg.notify_fault,
                State::Initialize => &None,
            };
            if let Some(cmd) = hook {
                run_hook(&cfg.name, cmd, &[]);
            }
            if let Some(cmd) = &cfg.notify {
                run_hook(&cfg.name, cmd, &["GROUP", &cfg.name, state_word(to)]);
            }
        }
        for (to, order) in decision.orders {
            let member = cfg.instances.get(to).map_or("?", String::as_str);
            info!(group = %cfg.name, %member, "sync group order: {order}");
            if let Some(Some(tx)) = members.get(to) {
                let _ = tx.send(order);
            }
        }
    }
}

impl Running {
    /// How many instances run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether no instance runs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Wait until an instance task ends by itself (a setup failure); returns
    /// its name and error: the task's own, [`DriverError::Stopped`] if it
    /// returned without one, [`DriverError::Task`] if it panicked. Pending
    /// forever while all run.
    pub async fn failed(&mut self) -> (String, DriverError) {
        if self.instances.is_empty() {
            return std::future::pending().await;
        }
        let (result, index, _) =
            futures::future::select_all(self.instances.iter_mut().map(|i| &mut i.handle)).await;
        let inst = self.instances.remove(index);
        let error = match result {
            Ok(Ok(_)) => DriverError::Stopped,
            Ok(Err(e)) => e,
            Err(source) => DriverError::Task { source },
        };
        (inst.name, error)
    }

    /// Stop every instance (masters release with priority 0 and remove
    /// their VIPs) and the trackers; the instances' reports.
    pub async fn stop(self) -> Vec<Report> {
        let mut reports = Vec::new();
        for inst in self.instances {
            reports.extend(inst.stop().await);
        }
        for t in self.trackers {
            t.abort();
        }
        for g in self.groups {
            g.handle.abort();
        }
        reports
    }

    /// Bring the instances in line with `config`: unchanged instances keep
    /// running (and their mastership); ones whose priority alone changed
    /// take it in place (see [`Event::SetPriority`]); changed ones
    /// restart; removed ones
    /// stop (releasing their VIPs); new ones start. Nothing changes when
    /// an instance of `config` cannot be set up.
    ///
    /// # Errors
    /// [`DriverError::Netlink`]: no rtnetlink connection;
    /// [`DriverError::Instance`]: an interface does not exist, has no
    /// usable source address, or an instance's settings are invalid.
    #[allow(
        clippy::too_many_lines,
        reason = "each instance decided in turn (keep, retune, restart, start), then done in that order"
    )]
    pub async fn apply(&mut self, config: &crate::config::Config) -> Result<(), DriverError> {
        let (conn, netlink, _) =
            rtnetlink::new_connection().map_err(|source| DriverError::Netlink { source })?;
        let conn = tokio::spawn(conn);
        let mut start = Vec::new();
        let mut keep = Vec::new();
        let mut retune = Vec::new();
        for inst in &config.vrrp_instance {
            let scripts = deps_of(config, inst);
            let unchanged = self
                .instances
                .iter()
                .any(|r| r.cfg == *inst && r.deps == scripts);
            if unchanged {
                keep.push(inst.name.clone());
                continue;
            }
            let in_place = self
                .instances
                .iter()
                .any(|r| r.deps == scripts && priority_only(&r.cfg, inst));
            if in_place {
                keep.push(inst.name.clone());
                retune.push(inst.clone());
                continue;
            }
            let spec = instance_spec(config, inst, &netlink)
                .await
                .map_err(|source| DriverError::Instance {
                    instance: inst.name.clone(),
                    source,
                });
            match spec {
                Ok(spec) => start.push((spec, inst.clone(), scripts)),
                Err(e) => {
                    conn.abort();
                    return Err(e);
                }
            }
        }
        conn.abort();
        for inst in retune {
            if let Some(r) = self.instances.iter_mut().find(|r| r.name == inst.name) {
                info!(instance = %inst.name, from = r.cfg.priority, to = inst.priority, "priority changed: applied in place");
                let _ = r.priority.send(inst.priority);
                r.cfg = inst;
            }
        }
        let (stay, go): (Vec<_>, Vec<_>) = std::mem::take(&mut self.instances)
            .into_iter()
            .partition(|r| keep.contains(&r.name));
        self.instances = stay;
        for inst in go {
            info!(instance = %inst.name, "stopping VRRP instance (removed or changed)");
            if let Ok(mut board) = self.board.lock() {
                board.remove(&inst.name);
            }
            inst.stop().await;
        }
        self.apply_groups(config);
        let receivers: Vec<_> = start.iter().map(|_| self.events.subscribe()).collect();
        if !start.is_empty() {
            // Fresh trackers send every object's current state first, which
            // new instances need; running ones see a repeat of what they
            // know.
            for t in self.trackers.drain(..) {
                t.abort();
            }
            self.trackers = spawn_trackers(config, &self.events);
        }
        for ((spec, cfg, deps), rx) in start.into_iter().zip(receivers) {
            let name = spec.name.clone();
            let sync = deps.group.as_ref().and_then(|g| {
                let index = g.instances.iter().position(|i| *i == name)?;
                let running = self.groups.iter().find(|r| r.cfg.name == g.name)?;
                Some(SyncMember {
                    group: g.name.clone(),
                    index,
                    tx: running.tx.clone(),
                })
            });
            info!(
                instance = %name,
                interface = %spec.endpoint.iface,
                source = %spec.endpoint.primary,
                vrid = spec.machine.vrid,
                priority = spec.machine.priority,
                "starting VRRP instance ({})",
                if spec.endpoint.peers.is_empty() { "multicast" } else { "unicast" }
            );
            let (shutdown, shutdown_rx) = watch::channel(false);
            let (priority, priority_rx) = watch::channel(spec.machine.priority);
            let control = Control {
                shutdown: shutdown_rx,
                priority: priority_rx,
            };
            let handle = tokio::spawn(run_instance(
                spec,
                rx,
                control,
                self.preempt_hold.clone(),
                self.board.clone(),
                self.changes.clone(),
                sync,
            ));
            self.instances.push(RunningInstance {
                name,
                cfg,
                deps,
                shutdown,
                priority,
                handle,
            });
        }
        Ok(())
    }
}

impl Running {
    /// Keep the sync group tasks whose configuration is unchanged, stop
    /// the others, start the new ones. (A changed group changes its
    /// members' [`Deps`], so they restart and attach to the new task.)
    fn apply_groups(&mut self, config: &crate::config::Config) {
        let (keep, stop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.groups)
            .into_iter()
            .partition(|r| config.vrrp_sync_group.contains(&r.cfg));
        for g in stop {
            info!(group = %g.cfg.name, "stopping VRRP sync group (removed or changed)");
            g.handle.abort();
        }
        self.groups = keep;
        for cfg in &config.vrrp_sync_group {
            if self.groups.iter().any(|r| r.cfg == *cfg) {
                continue;
            }
            info!(group = %cfg.name, instances = ?cfg.instances, "starting VRRP sync group");
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let handle = tokio::spawn(run_group(cfg.clone(), rx));
            self.groups.push(RunningGroup {
                cfg: cfg.clone(),
                tx,
                handle,
            });
        }
    }
}

/// Build every instance of `config` (interfaces and primary addresses
/// looked up now), start the trackers and the instances. State changes go
/// to `changes`, for the service controller. While `preempt_hold` reads
/// true the instances do not preempt (`None`: never held).
///
/// # Errors
/// As [`Running::apply`].
pub async fn start(
    config: &crate::config::Config,
    changes: Option<tokio::sync::mpsc::UnboundedSender<StateChange>>,
    preempt_hold: Option<watch::Receiver<bool>>,
) -> Result<Running, DriverError> {
    let mut running = Running {
        preempt_hold: preempt_hold.unwrap_or_else(|| watch::channel(false).1),
        board: StatusBoard::default(),
        events: broadcast::channel(256).0,
        changes,
        instances: Vec::new(),
        trackers: Vec::new(),
        groups: Vec::new(),
    };
    running.apply(config).await?;
    Ok(running)
}

fn spawn_trackers(
    config: &crate::config::Config,
    events: &broadcast::Sender<TrackEvent>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut trackers = Vec::new();
    let mut scripts: Vec<&str> = Vec::new();
    let mut interfaces: Vec<&str> = Vec::new();
    let mut processes: Vec<&str> = Vec::new();
    let mut files: Vec<&str> = Vec::new();
    for inst in &config.vrrp_instance {
        let own = std::iter::once(inst.interface.as_str());
        for name in own.chain(inst.track_interface.iter().map(|t| t.name.as_str())) {
            if !interfaces.contains(&name) {
                interfaces.push(name);
            }
        }
        for (list, tracks) in [
            (&mut scripts, &inst.track_script),
            (&mut processes, &inst.track_process),
            (&mut files, &inst.track_file),
        ] {
            for t in tracks {
                if !list.contains(&t.name.as_str()) {
                    list.push(&t.name);
                }
            }
        }
    }
    for name in processes {
        let Some(p) = config.vrrp_track_process.iter().find(|p| p.name == name) else {
            continue; // validation guarantees it exists
        };
        let spec = super::track::ProcessSpec {
            name: p.name.clone(),
            process: p.process.clone(),
            parameters: p.parameters.clone(),
            param_match: p.param_match,
            full_command: p.full_command,
            quorum: p.quorum,
            quorum_max: p.quorum_max,
            fork_delay: p.fork_delay.or(p.delay).map_or(Duration::ZERO, |d| d.0),
            terminate_delay: p
                .terminate_delay
                .or(p.delay)
                .map_or(Duration::ZERO, |d| d.0),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        trackers.push(super::track::spawn_process(spec, super::track::POLL, tx));
        trackers.push(forward(rx, TrackKind::Process, events.clone()));
    }
    for name in files {
        let Some(f) = config.vrrp_track_file.iter().find(|f| f.name == name) else {
            continue; // validation guarantees it exists
        };
        let spec = super::track::FileSpec {
            name: f.name.clone(),
            file: f.file.clone(),
            init: f.init_file.map(|v| (v, f.init_overwrite)),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<super::track::ValueUpdate>();
        trackers.push(super::track::spawn_file(spec, super::track::POLL, tx));
        let events = events.clone();
        trackers.push(tokio::spawn(async move {
            while let Some(u) = rx.recv().await {
                let _ = events.send(TrackEvent {
                    kind: TrackKind::File,
                    name: u.name,
                    up: u.value == 0,
                    value: Some(u.value),
                    reason: u.reason,
                });
            }
        }));
    }
    for name in scripts {
        let Some(s) = config.vrrp_script.iter().find(|s| s.name == name) else {
            continue; // validation guarantees it exists
        };
        let interval = s.interval.map_or(Duration::from_secs(1), |d| d.0);
        let spec = super::track::ScriptSpec {
            name: s.name.clone(),
            script: s.script.clone(),
            interval,
            timeout: s.timeout.map_or(interval, |d| d.0),
            rise: s.rise,
            fall: s.fall,
            user: s.user.clone(),
            init_fail: s.init_fail,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        trackers.push(super::track::spawn_script(spec, tx));
        trackers.push(forward(rx, TrackKind::Script, events.clone()));
    }
    for name in interfaces {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        trackers.push(super::track::spawn_interface(
            name.to_owned(),
            Duration::from_millis(100),
            tx,
        ));
        trackers.push(forward(rx, TrackKind::Interface, events.clone()));
    }
    trackers
}

fn forward(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<super::track::TrackUpdate>,
    kind: TrackKind,
    events: broadcast::Sender<TrackEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            let _ = events.send(TrackEvent {
                kind,
                name: u.name,
                up: u.up,
                value: None,
                reason: u.reason,
            });
        }
    })
}

/// Everything instance `inst` of `config` needs, its interface and
/// primary address looked up now.
///
/// # Errors
/// [`SpecError`]: the VIPs do not parse, the interface does not exist or
/// its addresses cannot be listed, no source address, or the machine
/// refuses the settings.
async fn instance_spec(
    config: &crate::config::Config,
    inst: &crate::config::VrrpInstance,
    netlink: &rtnetlink::Handle,
) -> Result<InstanceSpec, SpecError> {
    use super::wire::Version;
    let vips = inst.vips().map_err(|e| SpecError::Vips {
        reason: e.to_string(),
    })?;
    let index = crate::sys::interface::ifindex(&inst.interface)
        .map_err(|source| SpecError::Interface { source })?;
    let v6 = vips[0].addr.is_ipv6();
    let primary = match inst.unicast_src_ip {
        Some(a) => a,
        None => source_address(inst, &vips, v6, index, netlink).await?,
    };
    let (tracks, kinds) = instance_tracks(config, inst);
    let machine = super::machine::Config {
        vrid: inst.virtual_router_id,
        priority: inst.priority,
        advert_interval: inst.advert_interval.0,
        version: if inst.version == 2 {
            Version::V2
        } else {
            Version::V3
        },
        preempt: inst.preempt,
        preempt_delay: inst.preempt_delay.map_or(Duration::ZERO, |d| d.0),
        primary_address: primary,
        vips: vips.iter().map(|v| v.addr).collect(),
        auth_pass: inst.auth_pass.clone(),
        tracks,
    };
    machine
        .validate()
        .map_err(|source| SpecError::Machine { source })?;
    let defaults = GarpConfig::default();
    let garp = GarpConfig {
        master_delay: inst
            .garp_master_delay
            .map_or(defaults.master_delay, |d| d.0),
        master_repeat: inst.garp_master_repeat.unwrap_or(defaults.master_repeat),
        master_refresh: inst
            .garp_master_refresh
            .map_or(defaults.master_refresh, |d| d.0),
        master_refresh_repeat: inst
            .garp_master_refresh_repeat
            .unwrap_or(defaults.master_refresh_repeat),
        interval: inst.garp_interval.map_or(defaults.interval, |d| d.0),
    };
    Ok(InstanceSpec {
        name: inst.name.clone(),
        endpoint: Endpoint {
            iface: inst.interface.clone(),
            ifindex: index,
            primary,
            peers: inst.unicast_peer.clone(),
        },
        machine,
        vips,
        garp,
        notify: Notify {
            master: inst.notify_master.clone(),
            backup: inst.notify_backup.clone(),
            fault: inst.notify_fault.clone(),
            stop: inst.notify_stop.clone(),
            any: inst.notify.clone(),
        },
        tracks: kinds,
    })
}

/// The address instance `inst`'s adverts go out from when it names none:
/// the first address of its interface (index `index`) in the VIPs' family
/// (IPv6 when `v6`) that is not one of `vips`; for IPv6, a link-local one.
///
/// # Errors
/// [`SpecError::Addresses`], [`SpecError::NoSourceAddress`].
async fn source_address(
    inst: &crate::config::VrrpInstance,
    vips: &[Vip],
    v6: bool,
    index: u32,
    netlink: &rtnetlink::Handle,
) -> Result<IpAddr, SpecError> {
    addr::list(netlink, index)
        .await
        .map_err(|source| SpecError::Addresses {
            interface: inst.interface.clone(),
            source,
        })?
        .into_iter()
        .map(|p| p.vip.addr)
        .find(|a| {
            a.is_ipv6() == v6
                && !vips.iter().any(|v| v.addr == *a)
                && match a {
                    IpAddr::V6(a) => a.is_unicast_link_local(),
                    IpAddr::V4(_) => true,
                }
        })
        .ok_or_else(|| SpecError::NoSourceAddress {
            interface: inst.interface.clone(),
            family: if v6 { "IPv6 link-local" } else { "IPv4" },
        })
}

/// Instance `inst`'s tracked objects, scripts, interfaces (its own
/// included, weight 0, unless listed), processes then files: each with
/// its weight (the object's own unless the instance sets one) for the
/// machine, and with its kind and name for the driver. In a sync group
/// without `tracking_weight`, every weight is 0 (keepalived: members'
/// tracking weights are ignored, so their priorities stay alike).
fn instance_tracks(
    config: &crate::config::Config,
    inst: &crate::config::VrrpInstance,
) -> (Vec<super::machine::Track>, Vec<(TrackKind, String)>) {
    use super::machine::Track;
    let mut tracks = Vec::new();
    let mut kinds = Vec::new();
    let mut push = |kind, name: &str, weight| {
        tracks.push(Track {
            name: name.to_owned(),
            weight,
        });
        kinds.push((kind, name.to_owned()));
    };
    for t in &inst.track_script {
        let own = config.vrrp_script.iter().find(|s| s.name == t.name);
        push(
            TrackKind::Script,
            &t.name,
            t.weight.unwrap_or(own.map_or(0, |s| s.weight)),
        );
    }
    for t in &inst.track_interface {
        push(TrackKind::Interface, &t.name, t.weight);
    }
    if !inst
        .track_interface
        .iter()
        .any(|t| t.name == inst.interface)
    {
        push(TrackKind::Interface, &inst.interface, 0);
    }
    for t in &inst.track_process {
        let own = config.vrrp_track_process.iter().find(|p| p.name == t.name);
        push(
            TrackKind::Process,
            &t.name,
            t.weight.unwrap_or(own.map_or(0, |p| p.weight)),
        );
    }
    for t in &inst.track_file {
        let own = config.vrrp_track_file.iter().find(|f| f.name == t.name);
        push(
            TrackKind::File,
            &t.name,
            t.weight.unwrap_or(own.map_or(0, |f| f.weight)),
        );
    }
    if let Some(group) = group_of(config, &inst.name).filter(|g| !g.tracking_weight) {
        let weighted: Vec<&str> = tracks
            .iter()
            .filter(|t| t.weight != 0)
            .map(|t| t.name.as_str())
            .collect();
        if !weighted.is_empty() {
            info!(instance = %inst.name, group = %group.name, tracks = ?weighted, "in a sync group: tracking weights count as 0 (set tracking_weight to keep them)");
        }
        for t in &mut tracks {
            t.weight = 0;
        }
    }
    (tracks, kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chains print as anyhow's `{:#}` did before the typed errors.
    #[test]
    fn error_chains_read_as_before() {
        let spec = DriverError::Instance {
            instance: "VI_1".into(),
            source: SpecError::NoSourceAddress {
                interface: "eth1".into(),
                family: "IPv4",
            },
        };
        assert_eq!(
            error_chain(&spec),
            "vrrp_instance VI_1: eth1 has no IPv4 address to send adverts from \
             (set unicast_src_ip, or add one)"
        );
        let missing = DriverError::Instance {
            instance: "VI_1".into(),
            source: SpecError::Interface {
                source: crate::sys::interface::ifindex("lbdrv-nonexist").unwrap_err(),
            },
        };
        assert_eq!(
            error_chain(&missing),
            "vrrp_instance VI_1: no interface named \"lbdrv-nonexist\""
        );
        let socket = DriverError::Socket {
            instance: "VI_1".into(),
            interface: "eth1".into(),
            primary: IpAddr::from([198, 18, 0, 2]),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            error_chain(&socket),
            "VI_1: opening VRRP sockets on eth1 from 198.18.0.2: \
             Operation not permitted (os error 1)"
        );
        let machine = DriverError::Machine {
            instance: "VI_1".into(),
            source: super::super::machine::ConfigError::Priority,
        };
        assert_eq!(error_chain(&machine), "VI_1: priority must be 1..=255");
    }
}
