//! `lbd`'s command line: the clap definitions `lbd --help`, its man page
//! (lbd(8)) and its shell completions are all made from.

use std::path::PathBuf;

use crate::dataplane::loader::{AttachMode, DEFAULT_DECAP_PIN_PATH, DEFAULT_PIN_PATH};

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
#[derive(Debug, clap::Parser)]
#[command(
    name = "lbd",
    version,
    about,
    long_about,
    verbatim_doc_comment,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (TOML; see examples/lb.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Interface to attach the XDP program to (overrides the file's
    /// [dataplane] interface).
    #[arg(
        long,
        short = 'i',
        value_name = "IF",
        required_unless_present = "config"
    )]
    pub iface: Option<String>,

    #[command(flatten)]
    pub attach: AttachArgs,

    /// Connection-table size in flows, 8 to 67108864 (72 bytes each). Flows
    /// sit in sets of 8 chosen by hash; a full set evicts its least recently
    /// seen flow, it never refuses one. Give it about twice the concurrent
    /// flows you expect.
    #[arg(long, value_name = "N", default_value_t = lb_common::flow::DEFAULT_FLOW_ENTRIES,
          value_parser = parse_flow_entries)]
    pub flow_entries: u32,

    /// Directory on bpffs where the maps are pinned. bpffs is mounted at
    /// /sys/fs/bpf if nothing is mounted there yet.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_PATH)]
    pub pin_path: PathBuf,

    /// How log lines are written to stderr: `text`, one line a human
    /// reads (under systemd without a time stamp, which journald adds), or
    /// `json`, one JSON object a line for log pipelines (fields: timestamp,
    /// level, message and the event's own fields). LB_LOG sets the level
    /// (`debug`, `info` (default), `warn`), as RUST_LOG does.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line a human reads.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
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
    /// Print the configuration file's JSON Schema (keys, types, defaults
    /// and their descriptions, as lb.toml(5) lists them) for editors: save
    /// it and start lb.toml with `#:schema /path/to/lb.schema.json`
    /// (taplo, VS Code's Even Better TOML). The Debian package installs it
    /// as /usr/share/lb/lb.schema.json.
    ConfigSchema,
}

#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    /// The pin directory of the data plane to remove.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_PATH)]
    pub pin_path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// XDP attach mode: `auto` tries native (driver) mode and falls back to
    /// generic; `native` fails if the driver cannot; `generic` always works.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,

    /// Take over the interface if another XDP program is attached to it
    /// (attached with netlink, e.g. by `ip link`; programs held by a BPF link
    /// belong to their process and cannot be taken over).
    #[arg(long)]
    pub replace: bool,
}

/// `--flow-entries`: a number in the range the config file accepts.
///
/// # Errors
/// A message saying why it is not.
pub fn parse_flow_entries(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    crate::config::check_flow_entries(n)
        .map(|()| n)
        .map_err(|e| e.to_string())
}
