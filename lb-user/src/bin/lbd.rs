//! `lbd`: the lb daemon. This file parses the arguments and sets up
//! logging; the daemon itself is `lb_user::daemon` (the event loop, reload,
//! control requests).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_user::{
    config::Config,
    daemon::{self, DataplaneArgs, Startup},
    dataplane::loader::{
        AttachMode, DEFAULT_DECAP_PIN_PATH, DEFAULT_PIN_PATH, Options, Role, error_chain,
    },
};
use tracing::error;

/// lb daemon: XDP layer-4 load balancer.
///
/// Attaches lb's XDP program to an interface and pins its maps under bpffs,
/// where `bpftool map dump pinned <PIN_PATH>/<MAP>` shows them with named
/// fields. Runs in the foreground until SIGINT or SIGTERM, then detaches the
/// program and removes its pins.
///
/// The program is attached through a bpf_link pinned beside the maps, so it
/// keeps forwarding if lbd dies (crash, SIGKILL, OOM kill). The next lbd on
/// the same pin path adopts it: maps and connection table kept, its own
/// program swapped in atomically. SIGUSR2 makes lbd exit that way on
/// purpose, for a restart or an upgrade without a gap (the systemd unit's
/// restart does this); `lbd detach` removes a data plane nobody runs.
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
///
///   lbd detach                           stop a data plane left pinned
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
    /// Stop a data plane that an lbd left running (it was killed, or exited
    /// with SIGUSR2 for a restart that did not follow): detach the XDP
    /// program and remove its pins. Its connection table is lost. Refused
    /// while an lbd runs on that pin path (stop that one with SIGTERM).
    Detach(DetachArgs),
}

#[derive(Debug, clap::Args)]
struct DetachArgs {
    /// The pin directory of the data plane to remove.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_PATH)]
    pin_path: PathBuf,
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
    let args = DataplaneArgs {
        iface: cli.iface,
        mode: cli.attach.xdp_mode,
        replace: cli.attach.replace,
        pin_path: cli.pin_path,
        flow_entries: cli.flow_entries,
    };
    let startup = match cli.command {
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
        Some(Command::Detach(DetachArgs { pin_path })) => {
            let removed = lb_user::dataplane::loader::detach_pinned(&pin_path)?;
            println!(
                "detached the data plane pinned at {} ({} pins removed)",
                pin_path.display(),
                removed.len()
            );
            return Ok(());
        }
        Some(Command::Decap {
            iface,
            attach,
            pin_path,
        }) => {
            let mut startup = Startup::balancer(cli.config, args)?;
            startup.dataplane = Some(Options {
                iface,
                mode: attach.xdp_mode,
                pin_path,
                replace: attach.replace,
                role: Role::Decap,
                flow_entries: cli.flow_entries,
                // The decapsulator has no backend maps.
                backend_pairs: lb_common::backend::MAX_BACKENDS,
                flow_events: false,
                nat_flows: lb_common::nat::DEFAULT_NAT_FLOWS,
                backend_iface: None,
            });
            startup
        }
        None => Startup::balancer(cli.config, args)?,
    };
    daemon::run(startup).await.map_err(Into::into)
}

/// `--flow-entries`: a number in the range the config file accepts.
fn parse_flow_entries(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    lb_user::config::check_flow_entries(n)
        .map(|()| n)
        .map_err(|e| e.to_string())
}
