//! lbd's event loop: everything between "the arguments are parsed" and
//! "stopped".
//!
//! [`run`] starts, in order, the data plane (load, attach, pin), the
//! service controller over its maps, the VRRP instances, the control
//! socket and the metrics listener; then it waits on one `select!` for
//! signals (SIGINT/SIGTERM stop, SIGHUP reloads), VRRP transitions, health
//! results, next-hop answers, control requests and metric scrapes. Every
//! event is handled to completion on this one task, so the controller and
//! the VRRP driver never see two events at once; anything slow (health
//! checks, MAC resolution, VRRP timers) runs in tasks of its own and comes
//! back here as an event.
//!
//! On the way out, masters release their VIPs (priority 0), the controller
//! stops its checks, and the data plane is detached and unpinned.
//!
//! - [`reload`]: SIGHUP / `lbctl reload`: re-read the file, apply only the
//!   difference, or refuse and keep running what runs;
//! - [`requests`]: answers to control-socket requests.
//!
//! Services with `backends_from` get their etcd members through
//! [`crate::services::etcd::Watchers`]: each membership change arrives as
//! an event and is applied as a reload of the running file would be
//! (`Daemon::apply_services`).

mod reload;
mod requests;

use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::api::{control, metrics};
use crate::config::{Config, ConfigError};
use crate::dataplane::balancer::{Balancer, BalancerError, EbpfMaps};
use crate::dataplane::loader::{
    AttachMode, Dataplane, LoadError, Options, Origin, Role, error_chain,
};
use crate::dataplane::stats;
use crate::services::controller::{self, Controller, NeighLookup};
use crate::services::etcd;
use crate::vrrp::driver;

/// Why lbd could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data plane did not start.
    #[error(transparent)]
    Dataplane(#[from] LoadError),
    /// Writing the data plane's global settings failed.
    #[error("data plane maps: {0}")]
    Maps(#[from] BalancerError),
    /// Building the data plane's global settings from `[dataplane]` failed
    /// (reading the interface's addresses, or a bad `ipip` source). The
    /// message includes the error's whole chain; it is not a source.
    #[error("[dataplane] settings: {}", error_chain(.0))]
    DataplaneSettings(controller::DataplaneConfigError),
    /// The VRRP instances did not start. The message includes the error's
    /// whole chain; it is not a source.
    #[error("VRRP: {}", error_chain(.0))]
    Vrrp(driver::DriverError),
    /// A VRRP instance failed while running. The message includes the
    /// error's whole chain; it is not a source (lbd's exit message, printed
    /// as a chain, says it once).
    #[error("VRRP instance {name}: {}", error_chain(.error.as_ref()))]
    InstanceFailed {
        /// The instance.
        name: String,
        /// What failed (boxed: it is large, and this error is rare).
        error: Box<driver::DriverError>,
    },
    /// The control socket or the metrics listener could not be opened.
    #[error("{what}: {source}")]
    Listen {
        /// `control socket PATH` or `metrics_listen ADDR`.
        what: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Installing a signal handler failed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    /// Nothing was asked of lbd.
    #[error("nothing to run: the configuration has no [dataplane] and no [[vrrp_instance]]")]
    NothingToRun,
    /// Connection sync did not start.
    #[error("[sync]: {}", error_chain(.0.as_ref()))]
    Sync(Box<dyn std::error::Error + Send + Sync>),
    /// BGP mode could not start (the speaker cannot be reached).
    #[error(transparent)]
    Bgp(#[from] crate::bgp::BgpError),
    /// The NAT table's expiry could not open the table.
    #[error("NAT table: {}", error_chain(.0.as_ref()))]
    Nat(Box<aya::maps::MapError>),
}

/// What lbd was started with, arguments and file merged.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// The configuration file, for reloads.
    pub config_path: Option<PathBuf>,
    /// Its contents as loaded at start.
    pub config: Option<Config>,
    /// The data plane to run, if any.
    pub dataplane: Option<Options>,
}

/// The command line's data-plane arguments, before the file has its say.
#[derive(Debug, Clone)]
pub struct DataplaneArgs {
    /// `--iface` (overrides the file's `[dataplane] interface`).
    pub iface: Option<String>,
    /// `--xdp-mode`.
    pub mode: AttachMode,
    /// `--replace`.
    pub replace: bool,
    /// `--pin-path`.
    pub pin_path: PathBuf,
    /// `--flow-entries`.
    pub flow_entries: u32,
}

impl Startup {
    /// Load `config_path` (TOML or keepalived.conf; keepalived keywords
    /// without effect are logged) and merge it with the command line: the
    /// file's `[global] bpf_pin_path`, `[dataplane] conntrack_entries` and
    /// a `native` or `generic` `xdp_mode` win over the arguments; an
    /// `--iface` wins over the file's interface. No interface anywhere: no
    /// data plane (VRRP only).
    ///
    /// # Errors
    /// The file does not load.
    pub fn balancer(config_path: Option<PathBuf>, args: DataplaneArgs) -> Result<Self, Error> {
        let config = match &config_path {
            Some(path) => Some(load(path)?),
            None => None,
        };
        let from_file = config.as_ref().and_then(|c| c.dataplane.as_ref());
        let dataplane = args
            .iface
            .or_else(|| from_file.map(|d| d.interface.clone()))
            .map(|iface| Options {
                iface,
                mode: from_file.map_or(args.mode, |d| d.xdp_mode.or_command_line(args.mode)),
                pin_path: config
                    .as_ref()
                    .map_or(args.pin_path, |c| c.global.bpf_pin_path.clone()),
                replace: args.replace,
                role: Role::Balancer,
                flow_entries: from_file.map_or(args.flow_entries, |d| d.conntrack_entries),
                backend_pairs: from_file
                    .map_or(lb_common::backend::MAX_BACKENDS, |d| d.backend_pairs),
                flow_events: config.as_ref().is_some_and(|c| c.sync.is_some()),
                nat_flows: config
                    .as_ref()
                    .map_or(lb_common::nat::DEFAULT_NAT_FLOWS, |c| c.nat.flows),
                backend_iface: from_file.and_then(|d| d.backend_interface.clone()),
            });
        Ok(Self {
            config_path,
            config,
            dataplane,
        })
    }
}

/// Load a TOML or keepalived.conf file, logging the keepalived keywords
/// that have no effect.
///
/// # Errors
/// The file does not load or does not validate.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let reading = std::time::Instant::now();
    let (config, warnings) = Config::load_any(path)?;
    for w in warnings {
        warn!("{w}");
    }
    info!(
        "configuration {} read in {} ms: {} service(s), {} VRRP instance(s)",
        path.display(),
        reading.elapsed().as_millis(),
        config.service.len(),
        config.vrrp_instance.len()
    );
    Ok(config)
}

/// What the loop owns: the running parts and the configuration they run.
struct Daemon {
    config_path: Option<PathBuf>,
    config: Option<Config>,
    dataplane: Option<Dataplane>,
    controller: Option<Controller>,
    /// Connection sync, with `[sync]`.
    sync: Option<crate::sync::node::Sync>,
    /// What the sync holds VRRP preemption with, for instances a reload
    /// starts.
    preempt_hold: Option<watch::Receiver<bool>>,
    /// The balancer version the sync last got ids and slots for.
    synced_version: u64,
    /// The sync has been told the services are settled.
    sync_ready: bool,
    vrrp: Option<driver::Running>,
    /// VRRP transitions, for a driver started by a later reload.
    changes: mpsc::UnboundedSender<driver::StateChange>,
    /// `router_id`, or `lbd`.
    name: String,
    /// NAT flow expiry, when this lbd balances.
    nat_gc: Option<NatGc>,
    /// BGP announcement of VIPs, with `[bgp]`.
    bgp: Option<crate::bgp::Announcer>,
    /// The etcd watchers of services with `backends_from`, and the last
    /// membership of each.
    etcd: etcd::Watchers,
}

/// The NAT table's expiry task, the timeouts it applies (a reload changes
/// them) and what its last pass counted.
struct NatGc {
    task: tokio::task::JoinHandle<()>,
    timeouts: watch::Sender<lb_common::nat::Timeouts>,
    census: std::sync::Arc<std::sync::Mutex<crate::dataplane::nat::Census>>,
}

impl Drop for NatGc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start expiring NAT flows of the balancer's pinned table.
fn start_nat_gc(
    config: Option<&Config>,
    dataplane: Option<&Dataplane>,
    balancer_role: bool,
) -> Result<Option<NatGc>, Error> {
    let Some(dp) = dataplane.filter(|_| balancer_role) else {
        return Ok(None);
    };
    let timeouts = config.map(|c| c.nat.timeouts()).unwrap_or_default();
    let (tx, rx) = watch::channel(timeouts);
    let census = std::sync::Arc::default();
    let task = crate::dataplane::nat::spawn_gc(dp.pin_dir(), rx, std::sync::Arc::clone(&census))
        .map_err(|e| Error::Nat(Box::new(e)))?;
    Ok(Some(NatGc {
        task,
        timeouts: tx,
        census,
    }))
}

/// Run lbd until SIGINT or SIGTERM (or a VRRP instance fails), then undo
/// what it set up; or until SIGUSR2, then undo all but the data plane,
/// which keeps forwarding for the next lbd to adopt.
///
/// # Errors
/// Start-up failed, or a VRRP instance failed while running.
pub async fn run(startup: Startup) -> Result<(), Error> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
    let mut sigusr2 = signal(SignalKind::user_defined2()).map_err(Error::Signal)?;
    let bgp = start_bgp(startup.config.as_ref().and_then(|c| c.bgp.as_ref())).await?;
    // `_control` and `_metrics` live until lbd returns, after "stopped":
    // dropping them closes the control socket and the metrics listener.
    let Started {
        daemon: mut d,
        mut events_rx,
        mut changes_rx,
        mut control_rx,
        control: _control,
        mut scrape_rx,
        metrics: _metrics,
        mut etcd_rx,
    } = start(startup, bgp).await?;
    d.publish_translation();
    d.publish_announcements();
    info!(
        "{} running; SIGINT or SIGTERM stops, SIGHUP reloads, SIGUSR2 exits leaving the data plane forwarding (restart)",
        d.name
    );
    // Retired Maglev tables are freed a second after they went out of use,
    // and the heap a burst of changes freed goes back to the kernel.
    let mut tidy = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut trimmed_version = 0;
    tidy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        let failed = async {
            match d.vrrp.as_mut() {
                Some(v) => v.failed().await,
                None => std::future::pending().await,
            }
        };
        let controller_event = async {
            match events_rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => break Ok(("SIGINT", Exit::Stop)),
            _ = sigterm.recv() => break Ok(("SIGTERM", Exit::Stop)),
            _ = sigusr2.recv() => break Ok(("SIGUSR2", Exit::LeaveDataplane)),
            _ = sighup.recv() => {
                info!("SIGHUP: reloading");
                if let Err(e) = d.reload().await {
                    error!("reload failed, still running the previous configuration: {e}");
                }
            }
            (name, error) = failed => break Err(Error::InstanceFailed { name, error: Box::new(error) }),
            Some(change) = changes_rx.recv() => {
                if let Some(ctl) = d.controller.as_mut() {
                    ctl.vrrp_state(&change.instance, change.state);
                }
            }
            Some(event) = controller_event => {
                if let Some(ctl) = d.controller.as_mut() {
                    ctl.handle(event);
                }
            }
            _ = tidy.tick() => {
                if let Some(ctl) = d.controller.as_mut() {
                    ctl.tidy();
                    let version = ctl.balancer().version();
                    if version != trimmed_version {
                        trimmed_version = version;
                        crate::sys::trim_heap();
                    }
                }
            }
            Some(update) = etcd_rx.recv() => d.etcd_update(update),
            Some(reply) = scrape_rx.recv() => {
                let _ = reply.send(metrics::render(&d.snapshot()));
            }
            Some((request, reply)) = control_rx.recv() => {
                let response = d.answer(request).await;
                let _ = reply.send(response);
            }
        }
        d.publish_translation();
        d.publish_announcements();
    };
    let exit = match &outcome {
        Ok((signal, exit)) => {
            info!("{signal} received, shutting down");
            *exit
        }
        Err(e) => {
            error!("{e}; shutting down");
            Exit::Stop
        }
    };
    d.stop(exit).await;
    info!("stopped");
    outcome.map(|_| ())
}

/// How lbd leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// Undo everything: VIPs released, program detached, pins removed.
    Stop,
    /// For a restart or upgrade: VIPs released as in a stop (a VRRP peer
    /// takes over at once), but the data plane stays attached and pinned,
    /// forwarding on its last state until the next lbd adopts it.
    LeaveDataplane,
}

/// What [`start`] hands the loop: the running parts, the channels their
/// events arrive on, and the listeners (closed when dropped).
struct Started {
    daemon: Daemon,
    events_rx: Option<mpsc::UnboundedReceiver<controller::Event>>,
    changes_rx: mpsc::UnboundedReceiver<driver::StateChange>,
    control_rx: mpsc::Receiver<control::Pending>,
    control: Option<ControlGuard>,
    scrape_rx: mpsc::Receiver<metrics::Scrape>,
    metrics: Option<AbortOnDrop>,
    etcd_rx: mpsc::UnboundedReceiver<etcd::Update>,
}

/// Start, in order, the data plane, the service controller over its maps,
/// the VRRP instances, the control socket and the metrics listener. On
/// error, what had started is undone as it is dropped.
async fn start(startup: Startup, bgp: Option<crate::bgp::Announcer>) -> Result<Started, Error> {
    let Startup {
        config_path,
        config,
        dataplane: opts,
    } = startup;
    let mut dataplane = match &opts {
        Some(opts) => {
            let dataplane = Dataplane::start(opts).await?;
            let (iface, _) = dataplane.interface();
            info!(
                "data plane running on {iface} ({} mode); maps pinned under {}",
                dataplane.mode(),
                dataplane.pin_dir().display()
            );
            Some(dataplane)
        }
        None => None,
    };
    let balancer_role = opts.as_ref().is_some_and(|o| o.role == Role::Balancer);
    let (mut controller, events_rx) =
        start_controller(dataplane.as_mut(), config.as_ref(), balancer_role)
            .await?
            .unzip();
    let (sync, preempt_hold) = start_sync(config.as_ref(), dataplane.as_mut())?.unzip();
    let nat_gc = start_nat_gc(config.as_ref(), dataplane.as_ref(), balancer_role)?;
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let vrrp = match config.as_ref().filter(|c| !c.vrrp_instance.is_empty()) {
        Some(c) => Some(
            driver::start(c, Some(changes.clone()), preempt_hold.clone())
                .await
                .map_err(Error::Vrrp)?,
        ),
        None => None,
    };
    let (mut etcd, etcd_rx) = etcd::Watchers::new();
    if let (Some(ctl), Some(c)) = (controller.as_mut(), &config) {
        // Members arrive later, each change as an event.
        etcd.apply(c);
        ctl.reload(c);
    }
    if dataplane.is_none() && vrrp.is_none() {
        return Err(Error::NothingToRun);
    }
    let (control, control_rx) = open_control(config.as_ref()).await?;
    let (scrape_tx, scrape_rx) = mpsc::channel::<metrics::Scrape>(4);
    let metrics = match config.as_ref().and_then(|c| c.global.metrics_listen) {
        Some(addr) => {
            let server = metrics::serve(addr, scrape_tx)
                .await
                .map_err(|source| Error::Listen {
                    what: format!("metrics_listen {addr}"),
                    source,
                })?;
            info!("Prometheus metrics on http://{addr}/metrics");
            Some(AbortOnDrop(server))
        }
        None => None,
    };
    let name = config
        .as_ref()
        .and_then(|c| c.global.router_id.clone())
        .unwrap_or_else(|| "lbd".into());
    Ok(Started {
        daemon: Daemon {
            config_path,
            config,
            dataplane,
            controller,
            sync,
            preempt_hold,
            synced_version: u64::MAX,
            sync_ready: false,
            vrrp,
            changes,
            name,
            nat_gc,
            bgp,
            etcd,
        },
        events_rx,
        changes_rx,
        control_rx,
        control,
        scrape_rx,
        metrics,
        etcd_rx,
    })
}

/// The BGP announcer, with `[bgp]`. Started before anything else: a
/// speaker that cannot be reached refuses the start before anything
/// changed.
async fn start_bgp(
    config: Option<&crate::config::Bgp>,
) -> Result<Option<crate::bgp::Announcer>, Error> {
    Ok(match config {
        Some(b) => Some(crate::bgp::start(b).await?),
        None => None,
    })
}

/// The control socket of `config`'s `[global] control_socket`, and the
/// receiver of its requests.
async fn open_control(
    config: Option<&Config>,
) -> Result<(Option<ControlGuard>, mpsc::Receiver<control::Pending>), Error> {
    let (control_tx, control_rx) = mpsc::channel::<control::Pending>(16);
    let Some(c) = config else {
        return Ok((None, control_rx));
    };
    let path = &c.global.control_socket;
    let server = control::serve(path, control_tx)
        .await
        .map_err(|source| Error::Listen {
            what: format!("control socket {}", path.display()),
            source,
        })?;
    info!("control socket at {}", path.display());
    Ok((Some(ControlGuard(path.clone(), server)), control_rx))
}

/// The service controller over the data plane's maps, and the receiver
/// of its events. It runs whenever the data plane runs as a balancer and
/// lbd has a configuration (services may come with a reload).
async fn start_controller(
    dataplane: Option<&mut Dataplane>,
    config: Option<&Config>,
    balancer_role: bool,
) -> Result<Option<(Controller, mpsc::UnboundedReceiver<controller::Event>)>, Error> {
    let (Some(dp), Some(c), true) = (dataplane, config, balancer_role) else {
        return Ok(None);
    };
    let (_, ifindex) = dp.interface();
    let adopted = matches!(dp.origin(), Origin::Adopted { .. });
    let maps = EbpfMaps::take(dp.ebpf_mut())?;
    let mut balancer = if adopted {
        let balancer = Balancer::adopt(maps)?;
        info!(
            "the pinned maps hold {} service(s); they keep forwarding while the configuration is applied",
            balancer.services().count()
        );
        balancer
    } else {
        Balancer::new(maps)
    };
    let mut dp_cfg = match &c.dataplane {
        Some(d) => controller::dataplane_config(d, &c.nat, ifindex)
            .await
            .map_err(Error::DataplaneSettings)?,
        None => lb_common::config::Config {
            mtu: 1500,
            ..Default::default()
        },
    };
    // The source MACs of frames redirected to the other interface.
    if let Some((arm1, _, _)) = dp.backend_interface() {
        for (mac, iface) in dp_cfg.arm_mac.iter_mut().zip([dp.interface().0, arm1]) {
            *mac = crate::sys::interface::mac_address(iface).map_err(|source| {
                Error::DataplaneSettings(controller::DataplaneConfigError::Mac {
                    iface: iface.to_owned(),
                    source,
                })
            })?;
        }
    }
    balancer.set_config(&dp_cfg)?;
    let arm1 = dp.backend_interface().map_or(0, |(_, index, _)| index);
    Ok(Some(Controller::new(
        balancer,
        NeighLookup::default(),
        [ifindex, arm1],
    )))
}

/// Connection sync over the data plane, when `[sync]` asks for it, and
/// the flag it holds VRRP preemption with until its bulk sync is done.
fn start_sync(
    config: Option<&Config>,
    dataplane: Option<&mut Dataplane>,
) -> Result<Option<(crate::sync::node::Sync, watch::Receiver<bool>)>, Error> {
    let (Some(c), Some(dp)) = (config, dataplane) else {
        return Ok(None);
    };
    if c.sync.is_none() {
        return Ok(None);
    }
    let (hold_tx, hold_rx) = watch::channel(false);
    let sync = crate::sync::node::start(sync_spec(c)?, dp.ebpf_mut(), hold_tx)
        .map_err(|e| Error::Sync(Box::new(e)))?;
    Ok(Some((sync, hold_rx)))
}

/// `[sync]` resolved: peers (defaulted), the secret read from its file.
fn sync_spec(c: &Config) -> Result<crate::sync::node::SyncSpec, Error> {
    let sync = c.sync.as_ref().expect("called with [sync]");
    let secret = match (&sync.secret, &sync.secret_file) {
        (Some(s), _) => s.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Error::Sync(format!("secret_file {}: {e}", path.display()).into()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        (None, None) => String::new(),
    };
    if secret.chars().count() < 16 {
        return Err(Error::Sync(
            "the secret is shorter than 16 characters".into(),
        ));
    }
    // Every node may list every node, itself included: the file is then
    // the same on all of them.
    let (own, peers): (Vec<_>, Vec<_>) =
        c.sync_peers().into_iter().partition(|p| is_own_address(*p));
    for p in own {
        info!("[sync] peer {p} is an address of this node: not a peer");
    }
    Ok(crate::sync::node::SyncSpec {
        peers,
        port: sync.port,
        listen: sync.listen,
        secret: secret.into_bytes(),
        bulk_timeout: sync.bulk_timeout.0,
    })
}

/// `addr` is one of this host's addresses (a socket can be bound to it).
fn is_own_address(addr: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind(std::net::SocketAddr::new(addr, 0)).is_ok()
}

impl Daemon {
    /// A watcher's new membership: when it changed, apply the services
    /// again with it.
    fn etcd_update(&mut self, update: etcd::Update) {
        if self.etcd.update(update) {
            self.apply_services();
        }
    }

    /// Apply the file's services with their etcd members (only the
    /// difference: backends that stay keep their health and MAC), logging
    /// the members that cannot be backends of their service.
    fn apply_services(&mut self) {
        let (Some(ctl), Some(c)) = (self.controller.as_mut(), self.config.as_ref()) else {
            return;
        };
        let (effective, skipped) = self.etcd.effective(c);
        for line in skipped {
            warn!("{line}");
        }
        ctl.reload(&effective);
    }

    /// Give the sync this node's ids and slots when the balancer changed.
    fn publish_translation(&mut self) {
        let (Some(sync), Some(ctl)) = (self.sync.as_ref(), self.controller.as_ref()) else {
            return;
        };
        let version = ctl.balancer().version();
        if version != self.synced_version {
            sync.publish(ctl.balancer().translation());
            self.synced_version = version;
        }
        if !self.sync_ready && ctl.settled() {
            sync.ready();
            self.sync_ready = true;
        }
    }

    /// Tell the announcer which VIPs are up, and whether this node is
    /// ready to take flows: every next hop answered, bulk sync done.
    fn publish_announcements(&mut self) {
        let (Some(bgp), Some(ctl)) = (self.bgp.as_mut(), self.controller.as_ref()) else {
            return;
        };
        let holding = self.preempt_hold.as_ref().is_some_and(|h| *h.borrow());
        bgp.set(ctl.announced(), ctl.settled() && !holding);
    }

    /// Withdraw the BGP-announced VIPs (then forward a little longer while
    /// the routers move the flows), release the VRRP VIPs, stop the
    /// checks, log the counters, then detach and unpin the data plane, or
    /// leave it running ([`Exit`]).
    async fn stop(self, exit: Exit) {
        if let Some(bgp) = self.bgp {
            match exit {
                Exit::Stop => bgp.withdraw_all().await,
                Exit::LeaveDataplane => bgp.leave(),
            }
        }
        if let Some(vrrp) = self.vrrp {
            vrrp.stop().await;
        }
        drop(self.sync);
        drop(self.nat_gc);
        if let (Some(ctl), Exit::Stop) = (&self.controller, exit) {
            ctl.run_stop_hooks();
        }
        drop(self.controller);
        if let Some(dataplane) = self.dataplane {
            match stats::proto_stats_of(dataplane.ebpf()) {
                Ok(s) => info!(
                    "packets seen:\n{}",
                    stats::format_proto_stats(&s).trim_end()
                ),
                Err(e) => error!("reading counters failed: {}", error_chain(&e)),
            }
            match exit {
                Exit::Stop => drop(dataplane),
                Exit::LeaveDataplane => dataplane.leave(),
            }
        }
    }

    /// What a Prometheus scrape shows.
    fn snapshot(&self) -> metrics::Snapshot {
        metrics::Snapshot {
            services: self
                .controller
                .as_ref()
                .map(Controller::status)
                .unwrap_or_default(),
            traffic: match (self.controller.as_ref(), self.dataplane.as_ref()) {
                (Some(c), Some(d)) => controller::traffic_stats(c, d.ebpf()),
                _ => Vec::new(),
            },
            vrrp: self.vrrp_status(),
            flows: self
                .dataplane
                .as_ref()
                .and_then(|d| stats::flow_table_usage(d.ebpf()).ok()),
            sync: self.sync.as_ref().map(crate::sync::node::Sync::status),
            nat: self.nat_census(),
            program: self
                .dataplane
                .as_ref()
                .and_then(|d| stats::program_runs(d.ebpf())),
            cpus: stats::cpu_times(),
            bgp: self.bgp.as_ref().map(crate::bgp::Announcer::status),
        }
    }

    /// What the NAT table's last expiry pass counted.
    fn nat_census(&self) -> Option<crate::dataplane::nat::Census> {
        self.nat_gc.as_ref().map(|gc| {
            gc.census
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// The VRRP instances' status board.
    fn vrrp_status(&self) -> Vec<driver::InstanceStatus> {
        self.vrrp
            .as_ref()
            .and_then(|v| v.board.lock().ok().map(|b| b.values().cloned().collect()))
            .unwrap_or_default()
    }
}

/// Stops a background server when lbd stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes the control socket file when lbd stops.
struct ControlGuard(PathBuf, tokio::task::JoinHandle<()>);

impl Drop for ControlGuard {
    fn drop(&mut self) {
        self.1.abort();
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lbd's exit messages (printed as chains) read as they did when
    /// these variants held `anyhow::Error`s printed with `{:#}`.
    #[test]
    fn vrrp_errors_print_their_whole_chain() {
        let netlink = || driver::DriverError::Netlink {
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            error_chain(&Error::Vrrp(netlink())),
            "VRRP: opening rtnetlink: Operation not permitted (os error 1)"
        );
        let failed = Error::InstanceFailed {
            name: "VI_1".into(),
            error: Box::new(driver::DriverError::Stopped),
        };
        assert_eq!(
            failed.to_string(),
            "VRRP instance VI_1: stopped unexpectedly"
        );
        // Not a source: lbd's exit line says it once.
        assert_eq!(
            error_chain(&failed),
            "VRRP instance VI_1: stopped unexpectedly"
        );
    }
}
