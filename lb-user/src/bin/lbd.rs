//! `lbd`: the lb daemon. Loads the XDP program, attaches it, pins its maps,
//! runs the VRRP instances of its configuration, and runs until
//! SIGINT/SIGTERM; then masters release their VIPs (priority 0) and the
//! program is detached and unpinned: nothing lbd created is left behind.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_user::{
    config::Config,
    loader::{
        AttachMode, DEFAULT_DECAP_PIN_PATH, DEFAULT_PIN_PATH, Dataplane, Options, Role, error_chain,
    },
    stats,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

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

    /// Connection-table size (LRU: a full table evicts the least recently
    /// used flow, it never refuses one).
    #[arg(long, value_name = "N", default_value_t = lb_common::flow::DEFAULT_FLOW_ENTRIES)]
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
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
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let opts = match cli.command {
        Some(Command::CheckConfig { file }) => {
            let c = Config::load(&file)?;
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
                    mode: match from_file.map(|d| d.xdp_mode.as_str()) {
                        Some("native") => AttachMode::Native,
                        Some("generic") => AttachMode::Generic,
                        _ => cli.attach.xdp_mode,
                    },
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
    let dataplane = match &opts {
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
    let mut vrrp = match config.as_ref().filter(|c| !c.vrrp_instance.is_empty()) {
        Some(c) => Some(lb_user::vrrp::driver::start(c).await?),
        None => None,
    };
    if dataplane.is_none() && vrrp.is_none() {
        return Err(
            "nothing to run: the configuration has no [dataplane] and no [[vrrp_instance]]".into(),
        );
    }
    info!("lbd running; SIGINT or SIGTERM stops");
    let failed = async {
        match vrrp.as_mut() {
            Some(v) => v.failed().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = sigint.recv() => Ok("SIGINT"),
        _ = sigterm.recv() => Ok("SIGTERM"),
        (name, e) = failed => Err(format!("VRRP instance {name}: {e:#}")),
    };
    match &outcome {
        Ok(signal) => info!("{signal} received, shutting down"),
        Err(e) => error!("{e}; shutting down"),
    }
    if let Some(vrrp) = vrrp {
        vrrp.stop().await;
    }
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
