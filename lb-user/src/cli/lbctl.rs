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
    ///
    /// Without --rate: lbd's counters, cumulative since the service was
    /// set up in the data plane. With --rate: per-second rates, for
    /// scripts and a quick look (lbctl top shows them live): the counters
    /// are read twice, --interval apart, and each row shows
    ///
    ///   PKTS/S   packets forwarded per second
    ///   BYTES/S  bytes forwarded per second (of whole packets as they
    ///            arrived: 8 × this is the bit rate)
    ///   FLOWS/S  new flows (connections) per second
    ///
    /// for the service ("(all)", the VIP's counters) and for each backend
    /// (this service's traffic to it). Numbers are shortened: k, M, G, T
    /// = thousand, million, billion, trillion (powers of 1000). "-" means
    /// no rate: the service or backend is new since the first reading, or
    /// its counters went down (lbd restarted in between). With --json the
    /// exact rates, in the envelope of every --json answer: {"ok": true,
    /// "data": {"interval_s": ..., "services": [{"service": ..., "total":
    /// {"packets_per_s": ..., "bytes_per_s": ..., "new_flows_per_s": ...},
    /// "backends": {ADDRESS: {...}}}]}}, null for no rate; interval_s is
    /// the time measured between the two readings.
    ///
    /// Examples:
    ///
    ///   lbctl stats --rate
    ///
    ///   lbctl stats --rate --interval 10s      averaged over 10 s
    ///
    ///   lbctl --json stats --rate | jq '.data.services[].total.new_flows_per_s'
    #[command(verbatim_doc_comment)]
    Stats {
        /// Print per-second rates instead of the cumulative counters.
        #[arg(long)]
        rate: bool,
        /// With --rate: the time between the two readings (500ms, 1s,
        /// 10s, ...); the rates are averages over it.
        #[arg(long, default_value = "1s", value_parser = interval, requires = "rate")]
        interval: std::time::Duration,
    },
    /// A live view of services, backends, VRRP and sync, refreshed every
    /// --interval (as top does for processes).
    ///
    /// The services table has a row per service, then a row per backend
    /// (indented):
    ///
    ///   SERVICE / BACKEND  VIP:PORT/PROTO; a backend's ADDRESS:PORT
    ///   MODE      the service's forwarding mode (dsr, ipip, nat, fullnat);
    ///             "sorry" on a sorry server's row
    ///   HEALTH    service: "active" when it forwards here now, "standby"
    ///             while its VRRP instance is not MASTER; backend: its
    ///             health check's verdict, "up" or "down"
    ///   DRAINED   backend: "yes" after lbctl drain (no new flows, the
    ///             established ones continue) until lbctl enable
    ///   IN POOL   backend: "yes" when it is in the data plane's pool
    ///             (healthy, its next hop's MAC known; a drained backend
    ///             stays in it for its established flows, with no new
    ///             ones); service: backends in the pool / all
    ///   WEIGHT    backend: its share of new flows, relative to the others
    ///   PKTS/S    packets forwarded per second
    ///   BYTES/S   bytes forwarded per second (8 × this = bits per second)
    ///   FLOWS/S   new flows (connections) per second
    ///
    /// Rates are over the last interval: k, M, G, T = thousand, million,
    /// billion, trillion; "-" = no rate yet (the first refresh, a service
    /// or backend just added, lbd just restarted). Services of lbd without
    /// a data plane have no counters.
    ///
    /// The VRRP table: each instance's STATE (INIT, BACKUP, MASTER, FAULT),
    /// PRIO (now after tracking / configured), the MASTER HEARD while in
    /// BACKUP, and its VIPS. The last line, with [sync]: the lag of the
    /// last flow received from a peer (its send time to now) and the
    /// largest seen, the bulk sync's state and when each peer was last
    /// heard.
    ///
    /// Keys: q, Esc or Ctrl-C quits (the terminal is restored; so does
    /// SIGTERM, SIGINT or SIGHUP, with exit status 0). Resizing
    /// redraws. When lbd cannot be reached (restarting, stopped), the
    /// screen says "lbd unreachable: ..." over the last rows seen and keeps
    /// retrying every interval; it carries on once lbd answers. For
    /// scripts, use lbctl stats --rate.
    ///
    /// Examples:
    ///
    ///   lbctl top
    ///
    ///   lbctl top --interval 5s
    #[command(verbatim_doc_comment)]
    Top {
        /// Time between refreshes (500ms, 1s, 5s, ...).
        #[arg(long, default_value = "1s", value_parser = interval)]
        interval: std::time::Duration,
    },
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

/// A refresh or sampling interval: a [`duration`] of at least 100 ms.
///
/// # Errors
/// A message saying why it is not one.
pub fn interval(s: &str) -> Result<std::time::Duration, String> {
    let d = duration(s)?;
    if d < std::time::Duration::from_millis(100) {
        return Err(format!("{s}: at least 100ms"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("lbctl").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn the_definitions_hold_together() {
        Cli::command().debug_assert();
    }

    #[test]
    fn stats_rate_and_top_intervals() {
        assert!(matches!(
            parse(&["stats"]).unwrap(),
            Command::Stats { rate: false, .. }
        ));
        assert!(matches!(
            parse(&["stats", "--rate"]).unwrap(),
            Command::Stats { rate: true, interval } if interval == Duration::from_secs(1)
        ));
        assert!(matches!(
            parse(&["stats", "--rate", "--interval", "500ms"]).unwrap(),
            Command::Stats { rate: true, interval } if interval == Duration::from_millis(500)
        ));
        assert!(matches!(
            parse(&["top"]).unwrap(),
            Command::Top { interval } if interval == Duration::from_secs(1)
        ));
        assert!(matches!(
            parse(&["top", "--interval", "5s"]).unwrap(),
            Command::Top { interval } if interval == Duration::from_secs(5)
        ));
        // --interval means nothing without --rate; too short an interval
        // is refused, with why.
        assert!(parse(&["stats", "--interval", "2s"]).is_err());
        let e = parse(&["top", "--interval", "10ms"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 100ms"), "{e}");
        assert!(parse(&["top", "--interval", "fast"]).is_err());
    }
}
