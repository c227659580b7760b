//! `lbd`: the lb daemon. Loads the XDP program, attaches it, pins its maps,
//! and runs until SIGINT/SIGTERM, then detaches and unpins what it created.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_user::{
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
/// Needs root (CAP_BPF and CAP_NET_ADMIN). Example:
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

    /// Interface to attach the XDP program to.
    #[arg(long, short = 'i', value_name = "IF", required = true)]
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
    let opts = match cli.command {
        Some(Command::Decap {
            iface,
            attach,
            pin_path,
        }) => Options {
            iface,
            mode: attach.xdp_mode,
            pin_path,
            replace: attach.replace,
            role: Role::Decap,
            flow_entries: cli.flow_entries,
        },
        None => Options {
            iface: cli
                .iface
                .expect("clap requires --iface without a subcommand"),
            mode: cli.attach.xdp_mode,
            pin_path: cli.pin_path,
            replace: cli.attach.replace,
            role: Role::Balancer,
            flow_entries: cli.flow_entries,
        },
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let dataplane = Dataplane::start(&opts).await?;
    let (iface, _) = dataplane.interface();
    info!(
        "running on {iface} ({} mode); maps pinned under {}; SIGINT or SIGTERM stops",
        dataplane.mode(),
        dataplane.pin_dir().display()
    );
    let signal = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    info!("{signal} received, shutting down");
    match stats::proto_stats_of(dataplane.ebpf()) {
        Ok(s) => info!(
            "packets seen:\n{}",
            stats::format_proto_stats(&s).trim_end()
        ),
        Err(e) => error!("reading counters failed: {}", error_chain(&e)),
    }
    drop(dataplane);
    info!("stopped");
    Ok(())
}
