//! `lbctl`'s command line: the clap definitions `lbctl --help`, its man
//! page (lbctl(8)) and its shell completions are all made from.

use std::path::PathBuf;

use crate::api::control;

/// Inspect and steer a running lbd over its control socket.
///
/// Output is a human table; --json prints lbd's answer as JSON for scripts.
///
/// Exit status: 0 success; 1 lbd refused the request (no such service, a
/// reload whose file does not validate, ...); 2 bad usage; 3 lbd cannot be
/// reached (not running, or not root: the socket is mode 0600).
///
/// Examples:
///
///   lbctl status
///
///   lbctl backends
///
///   lbctl drain 198.18.0.100:80 198.18.0.11    no new flows to .11
///
///   lbctl enable 198.18.0.100:80 198.18.0.11
///
///   lbctl flows 198.18.0.100:80 --limit 20     its 20 most recent flows
///
///   lbctl --json vrrp | jq '.[].state'
///
///   lbctl register --etcd http://198.18.0.50:2379 --prefix /lb/web/ \
///       --address 198.18.0.11 --check 'curl -fs http://127.0.0.1/health'
///                                  on a backend: be in the pool while it runs
#[derive(Debug, clap::Parser)]
#[command(name = "lbctl", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// lbd's control socket.
    #[arg(long, value_name = "PATH", default_value = control::DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,

    /// Print lbd's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Overview: data plane, services, backends, VRRP instances.
    Status,
    /// Services: VIP:PORT/PROTO, mode, gating VRRP instance, active here.
    Services,
    /// Every service's backends: health, drain, in the pool.
    Backends,
    /// VRRP instances: state, priority, master heard, rejected adverts.
    Vrrp,
    /// Traffic per service and backend (packets, bytes, new flows).
    Stats,
    /// Flows, most recently seen first (as `ipvsadm -Lc`): client, VIP,
    /// backend, idle time; for nat / fullnat flows also the SNAT address
    /// and port, the TCP state and when the flow expires if idle.
    Flows {
        /// Only this service, VIP:PORT (IPv6: [ADDR]:PORT; add /udp for UDP).
        service: Option<String>,
        /// At most this many entries; 0 for all (a table may hold millions).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Drain a backend: no new flows; established flows continue.
    Drain {
        /// The service, VIP:PORT (IPv6: [ADDR]:PORT; add /udp for UDP).
        service: String,
        /// The backend's address.
        backend: String,
    },
    /// Put a drained backend back into service.
    Enable {
        /// The service, VIP:PORT.
        service: String,
        /// The backend's address.
        backend: String,
    },
    /// Re-read lbd's configuration file and apply the difference; a file
    /// that does not validate is refused and the running one stays.
    Reload,
    /// Print a keepalived.conf as lb's TOML (does not contact lbd).
    ///
    /// The output starts with the file's keywords, classified: honoured,
    /// not honoured, unknown. What lb ignores or does differently is
    /// reported on stderr with its file and line and why; exit status 1
    /// when the file does not convert. `--keywords` prints the table of
    /// every keepalived keyword lb knows instead (docs/keepalived.md).
    Convert {
        /// The keepalived.conf.
        #[arg(required_unless_present = "keywords")]
        file: Option<PathBuf>,
        /// Print every keepalived keyword lb knows, by block: honoured
        /// (the lb field, any difference in meaning, the tests that show
        /// it) or not (why), as Markdown.
        #[arg(long, conflicts_with = "file")]
        keywords: bool,
    },
    /// Run on a backend: register it in etcd for services whose
    /// `backends_from` names this prefix (does not contact lbd).
    ///
    /// Grants a lease of --ttl, puts the key PREFIX+ADDRESS (PREFIX+ADDRESS:PORT
    /// with --port; or --key) holding {"address": ..., "port": ..., "weight": ...}
    /// under it, and keeps the lease alive (a keep-alive every third of the
    /// TTL) while it runs. lbd adds the backend when the key appears (and
    /// health-checks it as any backend), removes it when the key goes.
    ///
    /// With --check, CMD runs (sh -c) every --check-interval: while it fails
    /// the lease is revoked (the backend leaves at once), and the key is put
    /// back when it passes again. SIGTERM or SIGINT revokes the lease (the
    /// backend leaves at once) and exits 0; if this agent dies without that
    /// (SIGKILL, a crash, the host down), etcd deletes the key when the
    /// lease expires, within --ttl. While etcd is unreachable it retries
    /// (0.5 s doubling to 5 s, at most a third of --ttl) and registers again
    /// once through.
    ///
    /// Examples:
    ///
    ///   lbctl register --etcd http://198.18.0.50:2379 --prefix /lb/web/ --address 198.18.0.11
    ///
    ///   lbctl register --etcd http://e1:2379,http://e2:2379 --prefix /lb/web/ \
    ///       --address 198.18.0.11 --weight 3 --ttl 5s \
    ///       --check 'curl -fs http://127.0.0.1/health' --check-interval 2s
    ///
    /// The matching service in lbd's file:
    ///
    ///   [[service]]
    ///   vip = "198.18.0.100"
    ///   port = 80
    ///   backends_from = { etcd = ["http://198.18.0.50:2379"], prefix = "/lb/web/" }
    ///   backend = []
    #[command(verbatim_doc_comment)]
    #[allow(
        clippy::doc_link_with_quotes,
        reason = "the help shows a TOML example, whose arrays of strings are not links"
    )]
    Register {
        /// etcd's client URLs, http://HOST:PORT, comma-separated.
        #[arg(long, value_name = "URL[,URL]", value_delimiter = ',', required = true)]
        etcd: Vec<String>,
        /// The key prefix the service's `backends_from` names.
        #[arg(long)]
        prefix: String,
        /// This backend's address, as lbd forwards to it.
        #[arg(long)]
        address: std::net::IpAddr,
        /// Its port (default: the service's; only nat and fullnat may differ).
        #[arg(long)]
        port: Option<u16>,
        /// Its weight: relative share of new flows; 0 = drained.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// The lease's time to live (whole seconds; etcd may raise very
        /// short ones): how long the key outlives this agent's death.
        #[arg(long, default_value = "5s", value_parser = duration)]
        ttl: std::time::Duration,
        /// A command (sh -c) that must succeed for the backend to stay registered.
        #[arg(long, value_name = "CMD")]
        check: Option<String>,
        /// How often --check runs (also its timeout).
        #[arg(long, default_value = "1s", value_parser = duration)]
        check_interval: std::time::Duration,
        /// The key (default: PREFIX + ADDRESS, + :PORT with --port).
        #[arg(long)]
        key: Option<String>,
    },
}

/// A duration argument: `5s`, `500ms`, `1m`.
///
/// # Errors
/// A message saying why it is not one.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s).map_err(|e| e.to_string())
}
