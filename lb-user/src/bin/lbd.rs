//! `lbd`: the lb daemon. Loads the XDP program, attaches it, pins its maps,
//! runs the VRRP instances of its configuration, and runs until
//! SIGINT/SIGTERM; then masters release their VIPs (priority 0) and the
//! program is detached and unpinned: nothing lbd created is left behind.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_user::{
    api::control,
    api::metrics,
    config::Config,
    dataplane::balancer::{Balancer, EbpfMaps},
    dataplane::loader::{
        AttachMode, DEFAULT_DECAP_PIN_PATH, DEFAULT_PIN_PATH, Dataplane, Options, Role, error_chain,
    },
    dataplane::stats,
    services::controller,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// lb daemon: XDP layer-4 load balancer.
///
/// Attaches lb's XDP program to an interface and pins its maps under bpffs,
/// where `bpftool map dump pinned <PIN_PATH>/<MAP>` shows them with named
/// fields. Runs in the foreground until SIGINT or SIGTERM, then detaches the
/// program and removes its pins.
///
/// With --config, also runs the file's VRRP instances (keepalived-compatible
/// failover of the VIPs); a file without [dataplane] runs VRRP only.
///
/// Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW). Examples:
///
///   lbd --config /etc/lb/lb.toml         everything the file says
///
///   lbd check-config /etc/lb/lb.toml     validate a file, touch nothing
///
///   lbd --iface eth0                     attach in native mode if possible
///
///   lbd --iface eth0 --xdp-mode generic  force generic (skb) mode
///
///   lbd decap --iface eth0               on an ipip backend: decapsulate
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about,
    verbatim_doc_comment,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Configuration file (TOML; see examples/lb.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Interface to attach the XDP program to (overrides the file's
    /// [dataplane] interface).
    #[arg(
        long,
        short = 'i',
        value_name = "IF",
        required_unless_present = "config"
    )]
    iface: Option<String>,

    #[command(flatten)]
    attach: AttachArgs,

    /// Connection-table size in flows, 8 to 67108864 (72 bytes each). Flows
    /// sit in sets of 8 chosen by hash; a full set evicts its least recently
    /// seen flow, it never refuses one. Give it about twice the concurrent
    /// flows you expect.
    #[arg(long, value_name = "N", default_value_t = lb_common::flow::DEFAULT_FLOW_ENTRIES,
          value_parser = parse_flow_entries)]
    flow_entries: u32,

    /// Directory on bpffs where the maps are pinned. bpffs is mounted at
    /// /sys/fs/bpf if nothing is mounted there yet.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_PATH)]
    pin_path: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate a configuration file without touching the kernel: prints
    /// what it would run, or the first error with its file, line and field.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Run the decapsulator on a backend: strips the outer header of `ipip`
    /// traffic in XDP and hands the inner packet to the stack (the VIP sits
    /// on `lo`). For backends whose kernel has no ipip tunnel module.
    Decap {
        /// Interface the encapsulated traffic arrives on.
        #[arg(long, short = 'i', value_name = "IF")]
        iface: String,

        #[command(flatten)]
        attach: AttachArgs,

        /// Directory on bpffs for the decapsulator's pins.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_DECAP_PIN_PATH)]
        pin_path: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// XDP attach mode: `auto` tries native (driver) mode and falls back to
    /// generic; `native` fails if the driver cannot; `generic` always works.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    xdp_mode: AttachMode,

    /// Take over the interface if another XDP program is attached to it
    /// (attached with netlink, e.g. by `ip link`; programs held by a BPF link
    /// belong to their process and cannot be taken over).
    #[arg(long)]
    replace: bool,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // Under systemd (JOURNAL_STREAM set), journald stamps every line: ours
    // would be noise.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = match &cli.config {
        Some(path) => Some(load(path)?),
        None => None,
    };
    let opts = match cli.command {
        Some(Command::CheckConfig { file }) => {
            let (c, warnings) = Config::load_any(&file)?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: OK ({} VRRP instance(s), {} script(s), data plane {})",
                file.display(),
                c.vrrp_instance.len(),
                c.vrrp_script.len(),
                c.dataplane
                    .as_ref()
                    .map_or("off".to_owned(), |d| format!("on {}", d.interface))
            );
            return Ok(());
        }
        Some(Command::Decap {
            iface,
            attach,
            pin_path,
        }) => Some(Options {
            iface,
            mode: attach.xdp_mode,
            pin_path,
            replace: attach.replace,
            role: Role::Decap,
            flow_entries: cli.flow_entries,
        }),
        None => {
            let from_file = config.as_ref().and_then(|c| c.dataplane.as_ref());
            match cli.iface.or_else(|| from_file.map(|d| d.interface.clone())) {
                Some(iface) => Some(Options {
                    iface,
                    mode: from_file.map_or(cli.attach.xdp_mode, |d| {
                        d.xdp_mode.or_command_line(cli.attach.xdp_mode)
                    }),
                    pin_path: config
                        .as_ref()
                        .map_or(cli.pin_path, |c| c.global.bpf_pin_path.clone()),
                    replace: cli.attach.replace,
                    role: Role::Balancer,
                    flow_entries: from_file.map_or(cli.flow_entries, |d| d.conntrack_entries),
                }),
                None => None,
            }
        }
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
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
    // The service controller runs whenever the data plane does and lbd
    // has a configuration (services may come with a reload).
    let (mut controller, mut health_rx) = match (&mut dataplane, &config) {
        (Some(dp), Some(c)) if opts.as_ref().is_some_and(|o| o.role == Role::Balancer) => {
            let (_, ifindex) = dp.interface();
            let balancer_maps = EbpfMaps::take(dp.ebpf_mut())?;
            let mut balancer = Balancer::new(balancer_maps);
            let dp_cfg = match &c.dataplane {
                Some(d) => controller::dataplane_config(d, ifindex).await?,
                None => lb_common::config::Config {
                    mtu: 1500,
                    ..Default::default()
                },
            };
            balancer.set_config(&dp_cfg)?;
            let (ctl, rx) = controller::Controller::new(balancer, ifindex);
            (Some(ctl), Some(rx))
        }
        _ => (None, None),
    };
    let (changes_tx, mut changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut vrrp = match config.as_ref().filter(|c| !c.vrrp_instance.is_empty()) {
        Some(c) => Some(lb_user::vrrp::driver::start(c, Some(changes_tx.clone())).await?),
        None => None,
    };
    if let (Some(ctl), Some(c)) = (controller.as_mut(), &config) {
        ctl.reload(c).await;
    }
    if dataplane.is_none() && vrrp.is_none() {
        return Err(
            "nothing to run: the configuration has no [dataplane] and no [[vrrp_instance]]".into(),
        );
    }
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<control::Pending>(16);
    let _control = match &config {
        Some(c) => {
            let server = control::serve(&c.global.control_socket, control_tx)
                .await
                .map_err(|e| {
                    format!("control socket {}: {e}", c.global.control_socket.display())
                })?;
            info!("control socket at {}", c.global.control_socket.display());
            Some(ControlGuard(c.global.control_socket.clone(), server))
        }
        None => None,
    };
    let (scrape_tx, mut scrape_rx) = tokio::sync::mpsc::channel::<metrics::Scrape>(4);
    let _metrics = match config.as_ref().and_then(|c| c.global.metrics_listen) {
        Some(addr) => {
            let server = metrics::serve(addr, scrape_tx)
                .await
                .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
            info!("Prometheus metrics on http://{addr}/metrics");
            Some(AbortOnDrop(server))
        }
        None => None,
    };
    let mut config = config;
    let name = config
        .as_ref()
        .and_then(|c| c.global.router_id.clone())
        .unwrap_or_else(|| "lbd".into());
    info!("{name} running; SIGINT or SIGTERM stops, SIGHUP reloads");
    let outcome = loop {
        let failed = async {
            match vrrp.as_mut() {
                Some(v) => v.failed().await,
                None => std::future::pending().await,
            }
        };
        let health = async {
            match health_rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => break Ok("SIGINT"),
            _ = sigterm.recv() => break Ok("SIGTERM"),
            _ = sighup.recv() => {
                info!("SIGHUP: reloading");
                if let Err(e) = reload(&cli.config, &mut config, &mut vrrp, controller.as_mut(), &changes_tx).await {
                    error!("reload failed, still running the previous configuration: {e}");
                }
            }
            (name, e) = failed => break Err(format!("VRRP instance {name}: {e:#}")),
            Some(change) = changes_rx.recv() => {
                if let Some(ctl) = controller.as_mut() {
                    ctl.vrrp_state(&change.instance, change.state);
                }
            }
            Some(event) = health => {
                if let Some(ctl) = controller.as_mut() {
                    ctl.health(event).await;
                }
            }
            Some(reply) = scrape_rx.recv() => {
                let snapshot = metrics::Snapshot {
                    services: controller.as_ref().map(|c| c.status()).unwrap_or_default(),
                    traffic: match (controller.as_ref(), dataplane.as_ref()) {
                        (Some(c), Some(d)) => controller::traffic_stats(c, d.ebpf()),
                        _ => Vec::new(),
                    },
                    vrrp: vrrp
                        .as_ref()
                        .and_then(|v| v.board.lock().ok().map(|b| b.values().cloned().collect()))
                        .unwrap_or_default(),
                    flows: dataplane
                        .as_ref()
                        .and_then(|d| lb_user::dataplane::stats::flow_table_usage(d.ebpf()).ok()),
                };
                let _ = reply.send(metrics::render(&snapshot));
            }
            Some((request, reply)) = control_rx.recv() => {
                let response = match request {
                    control::Request::Reload => {
                        match reload(&cli.config, &mut config, &mut vrrp, controller.as_mut(), &changes_tx).await {
                            Ok(()) => control::Response::data("reloaded"),
                            Err(e) => {
                                error!("reload failed, still running the previous configuration: {e}");
                                control::Response::error(format!("reload failed, still running the previous configuration: {e}"))
                            }
                        }
                    }
                    other => answer(other, controller.as_mut(), vrrp.as_ref(), dataplane.as_ref(), &name),
                };
                let _ = reply.send(response);
            }
        }
    };
    match &outcome {
        Ok(signal) => info!("{signal} received, shutting down"),
        Err(e) => error!("{e}; shutting down"),
    }
    if let Some(vrrp) = vrrp {
        vrrp.stop().await;
    }
    drop(controller);
    if let Some(dataplane) = dataplane {
        match stats::proto_stats_of(dataplane.ebpf()) {
            Ok(s) => info!(
                "packets seen:\n{}",
                stats::format_proto_stats(&s).trim_end()
            ),
            Err(e) => error!("reading counters failed: {}", error_chain(&e)),
        }
        drop(dataplane);
    }
    info!("stopped");
    outcome.map(|_| ()).map_err(Into::into)
}

/// Load a TOML or keepalived.conf file, logging the keepalived keywords
/// that have no effect.
fn load(path: &std::path::Path) -> Result<Config, lb_user::config::ConfigError> {
    let (config, warnings) = Config::load_any(path)?;
    for w in warnings {
        warn!("{w}");
    }
    Ok(config)
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

/// Re-read the file and apply the difference; on any error nothing changes.
async fn reload(
    path: &Option<PathBuf>,
    config: &mut Option<Config>,
    vrrp: &mut Option<lb_user::vrrp::driver::Running>,
    controller: Option<&mut controller::Controller>,
    changes: &tokio::sync::mpsc::UnboundedSender<lb_user::vrrp::driver::StateChange>,
) -> Result<(), String> {
    let Some(path) = path else {
        return Err("lbd was started without --config: nothing to reload".into());
    };
    let new = load(path).map_err(|e| e.to_string())?;
    if let Some(old) = config.as_ref()
        && (old.dataplane != new.dataplane || old.global != new.global)
    {
        return Err(
            "[global] and [dataplane] changes need a restart of lbd; nothing was applied".into(),
        );
    }
    if !new.service.is_empty() && controller.is_none() {
        return Err(
            "services need the data plane, which this lbd does not run; restart lbd".into(),
        );
    }
    match vrrp.as_mut() {
        Some(v) => v.apply(&new).await.map_err(|e| format!("{e:#}"))?,
        None if !new.vrrp_instance.is_empty() => {
            *vrrp = Some(
                lb_user::vrrp::driver::start(&new, Some(changes.clone()))
                    .await
                    .map_err(|e| format!("{e:#}"))?,
            );
        }
        None => {}
    }
    if let Some(ctl) = controller {
        ctl.reload(&new).await;
    }
    info!("configuration {} applied", path.display());
    *config = Some(new);
    Ok(())
}

/// Answer a read-only or drain request.
fn answer(
    request: control::Request,
    controller: Option<&mut controller::Controller>,
    vrrp: Option<&lb_user::vrrp::driver::Running>,
    dataplane: Option<&Dataplane>,
    name: &str,
) -> control::Response {
    use control::{Request, Response};
    let vrrp_status = || -> Vec<lb_user::vrrp::driver::InstanceStatus> {
        vrrp.and_then(|v| v.board.lock().ok().map(|b| b.values().cloned().collect()))
            .unwrap_or_default()
    };
    match request {
        Request::Status => {
            let services = controller.as_ref().map(|c| c.status()).unwrap_or_default();
            Response::data(serde_json::json!({
                "router_id": name,
                "pid": std::process::id(),
                "data_plane": dataplane.map(|d| serde_json::json!({
                    "interface": d.interface().0,
                    "mode": d.mode(),
                    "pin_path": d.pin_dir(),
                    "connection_table": lb_user::dataplane::stats::flow_table_usage(d.ebpf()).ok(),
                })),
                "services": services.len(),
                "services_active": services.iter().filter(|s| s.active).count(),
                "backends_healthy": services.iter().flat_map(|s| &s.backends).filter(|b| b.healthy).count(),
                "backends": services.iter().map(|s| s.backends.len()).sum::<usize>(),
                "vrrp": vrrp_status().iter().map(|i| serde_json::json!({"name": i.name, "state": i.state})).collect::<Vec<_>>(),
            }))
        }
        Request::Services | Request::Backends => {
            Response::data(controller.map(|c| c.status()).unwrap_or_default())
        }
        Request::Vrrp => Response::data(vrrp_status()),
        Request::Stats => {
            let (Some(c), Some(dp)) = (controller, dataplane) else {
                return Response::error("no data plane runs here");
            };
            Response::data(controller::traffic_stats(c, dp.ebpf()))
        }
        Request::Drain { service, backend } | Request::Enable { service, backend }
            if controller.is_none() =>
        {
            let _ = (service, backend);
            Response::error("no data plane runs here")
        }
        Request::Drain { service, backend } => drain(controller, &service, &backend, true),
        Request::Enable { service, backend } => drain(controller, &service, &backend, false),
        Request::Reload => Response::error("handled by the main loop"),
    }
}

fn drain(
    controller: Option<&mut controller::Controller>,
    service: &str,
    backend: &str,
    on: bool,
) -> control::Response {
    let result = (|| {
        let key = control::parse_service(service)?;
        let addr = control::parse_backend(backend)?;
        controller
            .ok_or_else(|| "no data plane runs here".to_owned())?
            .set_drained(&key, addr, on)
    })();
    match result {
        Ok(()) => control::Response::data(if on { "drained" } else { "enabled" }),
        Err(e) => control::Response::error(e),
    }
}

/// `--flow-entries`: a number in the range the config file accepts.
fn parse_flow_entries(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    lb_user::config::check_flow_entries(n).map(|()| n)
}
