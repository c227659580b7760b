//! `lbctl`: inspect and steer a running `lbd` through its control socket.

use std::process::ExitCode;

use clap::Parser;
use lb_user::api::control::{
    self, DecodeError, InstanceStatus, Request, Response, ServiceStatus, ServiceTraffic,
    StatusReply, Traffic,
};
use lb_user::cli::lbctl::{Cli, Command};
use lb_user::dataplane::loader::error_chain;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let request = match &cli.command {
        Command::Status => Request::Status,
        Command::Services => Request::Services,
        Command::Backends => Request::Backends,
        Command::Vrrp => Request::Vrrp,
        Command::Stats { rate: false, .. } => Request::Stats,
        Command::Stats {
            rate: true,
            interval,
        } => return stats_rate(&cli.socket, cli.json, *interval),
        Command::Top { interval } => return top(&cli.socket, cli.json, *interval),
        Command::Flows { service, limit } => {
            if let Some(Err(e)) = service.as_deref().map(control::parse_service) {
                eprintln!("lbctl: {e}");
                return ExitCode::from(2);
            }
            Request::Flows {
                service: service.clone(),
                limit: *limit,
            }
        }
        Command::Drain { service, backend } | Command::Enable { service, backend } => {
            let checked = control::parse_service(service)
                .map(drop)
                .and_then(|()| control::parse_backend(backend).map(drop));
            if let Err(e) = checked {
                eprintln!("lbctl: {e}");
                return ExitCode::from(2);
            }
            if matches!(cli.command, Command::Drain { .. }) {
                Request::Drain {
                    service: service.clone(),
                    backend: backend.clone(),
                }
            } else {
                Request::Enable {
                    service: service.clone(),
                    backend: backend.clone(),
                }
            }
        }
        Command::Reload => Request::Reload,
        Command::Convert { keywords: true, .. } => {
            print!("{}", lb_user::config::keepalived::keywords::table());
            return ExitCode::SUCCESS;
        }
        Command::Convert {
            file: Some(file), ..
        } => return convert(file),
        Command::Convert { file: None, .. } => {
            eprintln!("lbctl: convert needs a keepalived.conf (or --keywords)");
            return ExitCode::from(2);
        }
        Command::Register { .. } => return register(&cli.command),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let response = match runtime.block_on(control::request(&cli.socket, &request)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lbctl: {e}");
            return ExitCode::from(3);
        }
    };
    if cli.json {
        // lbd sends its data as compact JSON text: indented as it is.
        let text = serde_json::to_string(&response).unwrap_or_default();
        println!("{}", control::indent_json(&text));
        return if response.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let ok = response.ok;
    match render(&cli.command, response) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lbctl: {}", error_chain(&e));
            // lbd's refusal, or an answer this lbctl cannot read.
            if ok {
                ExitCode::from(3)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `lbctl top`: the live view, until q, Esc or Ctrl-C.
fn top(socket: &std::path::Path, json: bool, interval: std::time::Duration) -> ExitCode {
    use std::io::IsTerminal as _;
    if json {
        eprintln!("lbctl top: no --json (rates for scripts: lbctl --json stats --rate)");
        return ExitCode::from(2);
    }
    if !std::io::stdout().is_terminal() {
        eprintln!("lbctl top: standard output is not a terminal (for scripts: lbctl stats --rate)");
        return ExitCode::from(2);
    }
    match lb_user::top::run(socket, interval) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbctl top: {e}");
            ExitCode::from(1)
        }
    }
}

/// `lbctl stats --rate`: the counters read twice, `interval` apart, as
/// per-second rates (a table, or with `--json` the exact numbers).
fn stats_rate(socket: &std::path::Path, json: bool, interval: std::time::Duration) -> ExitCode {
    use lb_user::top::rates::{Sample, ServiceRates, human, rates};
    /// `lbctl --json stats --rate`'s data.
    #[derive(serde::Serialize)]
    struct RateReport {
        /// Seconds between the two readings, as measured.
        interval_s: f64,
        services: Vec<ServiceRates>,
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let sample = || -> Result<Sample, ExitCode> {
        let response = runtime
            .block_on(control::request(socket, &Request::Stats))
            .map_err(|e| {
                eprintln!("lbctl: {e}");
                ExitCode::from(3)
            })?;
        let at = std::time::Instant::now();
        let ok = response.ok;
        response
            .decode::<Vec<ServiceTraffic>>()
            .map(|traffic| Sample::new(at, traffic))
            .map_err(|e| {
                eprintln!("lbctl: {}", error_chain(&e));
                ExitCode::from(if ok { 3 } else { 1 })
            })
    };
    let first = match sample() {
        Ok(s) => s,
        Err(code) => return code,
    };
    std::thread::sleep(interval);
    let second = match sample() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let services = rates(Some(&first), &second);
    if json {
        let report = RateReport {
            interval_s: second.at.duration_since(first.at).as_secs_f64(),
            services,
        };
        let text = serde_json::to_string(&Response::data(report)).unwrap_or_default();
        println!("{}", control::indent_json(&text));
        return ExitCode::SUCCESS;
    }
    let row = |service: String, backend: String, r: &lb_user::top::rates::Rates| {
        vec![
            service,
            backend,
            human(r.packets),
            human(r.bytes),
            human(r.new_flows),
        ]
    };
    let mut rows = Vec::new();
    for s in &services {
        rows.push(row(s.service.clone(), "(all)".into(), &s.total));
        for (addr, r) in &s.backends {
            rows.push(row(String::new(), addr.clone(), r));
        }
    }
    print!(
        "{}",
        table(
            &["SERVICE", "BACKEND", "PKTS/S", "BYTES/S", "FLOWS/S"],
            &rows
        )
    );
    println!(
        "per second over the last {:.1} s; k, M, G, T = thousand, million, billion, trillion; \
         - = no rate (new, or counters restarted)",
        second.at.duration_since(first.at).as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// `lbctl register ...`: keep this backend's key in etcd until SIGTERM or
/// SIGINT.
fn register(command: &Command) -> ExitCode {
    use lb_user::services::{etcd::Member, etcd_register::Registration};
    let Command::Register {
        etcd,
        prefix,
        address,
        port,
        weight,
        ttl,
        check,
        check_interval,
        key,
    } = command
    else {
        return ExitCode::from(2);
    };
    for url in etcd {
        if let Some(m) = lb_user::config::etcd_url_problem(url) {
            eprintln!("lbctl register: --etcd {url:?} {m}");
            return ExitCode::from(2);
        }
    }
    if prefix.is_empty() || *port == Some(0) || ttl.is_zero() || check_interval.is_zero() {
        eprintln!(
            "lbctl register: --prefix, --port, --ttl and --check-interval must not be empty or 0"
        );
        return ExitCode::from(2);
    }
    let reg = Registration {
        endpoints: etcd.clone(),
        key: key
            .clone()
            .unwrap_or_else(|| Registration::default_key(prefix, *address, *port)),
        member: Member {
            address: *address,
            port: *port,
            weight: *weight,
        },
        ttl: *ttl,
        check: check.clone(),
        check_interval: *check_interval,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(lb_user::services::etcd_register::run(reg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbctl register: {e}");
            ExitCode::from(3)
        }
    }
}

/// `lbctl convert FILE`: keepalived.conf → TOML on stdout, warnings on
/// stderr.
fn convert(file: &std::path::Path) -> ExitCode {
    use lb_user::config::keepalived;
    match keepalived::load(file) {
        Ok((config, warnings)) => {
            for w in &warnings {
                eprintln!("lbctl: {w}");
            }
            // It loaded: it reads again (the classification parses only).
            let classified = std::fs::read_to_string(file)
                .ok()
                .and_then(|text| keepalived::keywords::classify(&text, file).ok())
                .map(|c| c.comments())
                .unwrap_or_default();
            match keepalived::to_toml(&config) {
                Ok(text) => {
                    print!(
                        "# converted from {} by lbctl convert\n# its keepalived keywords (every one: lbctl convert --keywords):\n{classified}\n{text}",
                        file.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lbctl: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("lbctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// `yes` / `no`.
fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// An optional value, `-` when absent.
fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// lbd's answer to `command` as text.
fn render(command: &Command, response: Response) -> Result<String, DecodeError> {
    Ok(match command {
        Command::Status => status(&response.decode()?),
        Command::Services => services(&response.decode::<Vec<_>>()?),
        Command::Backends => backends(&response.decode::<Vec<_>>()?),
        Command::Vrrp => vrrp(&response.decode::<Vec<_>>()?),
        Command::Stats { .. } => stats(&response.decode::<Vec<_>>()?),
        Command::Flows { .. } => flows(&response.decode()?),
        Command::Drain { service, backend } => {
            response.decode::<String>()?;
            format!("{backend} drained from {service}: no new flows; established flows continue\n")
        }
        Command::Enable { service, backend } => {
            response.decode::<String>()?;
            format!("{backend} enabled in {service}\n")
        }
        Command::Reload => {
            response.decode::<String>()?;
            "configuration reloaded\n".into()
        }
        Command::Convert { .. } | Command::Register { .. } | Command::Top { .. } => String::new(),
    })
}

fn status(s: &StatusReply) -> String {
    let mut out = format!("lbd {} (pid {})\n", s.router_id, s.pid);
    match &s.data_plane {
        Some(dp) => {
            let backend_side = dp
                .backend_interface
                .as_ref()
                .map(|(name, mode)| format!(", backends behind {name} ({mode} mode)"))
                .unwrap_or_default();
            out.push_str(&format!(
                "data plane: {} ({} mode){backend_side}, maps under {}\n",
                dp.interface,
                dp.mode,
                dp.pin_path.display()
            ));
            if let Some(t) = &dp.connection_table {
                out.push_str(&format!(
                    "connection table: {} flows seen in the last 10 s, {} of {} ways in use; evicted {} recently seen, {} idle\n",
                    t.recent, t.in_use, t.capacity, t.evicted_recent, t.evicted_idle
                ));
            }
            if let Some((c, capacity)) = &dp.nat_table {
                let states: Vec<String> = c
                    .by_state
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(state, n)| format!("{n} {state}"))
                    .collect();
                out.push_str(&format!(
                    "NAT table: {} of {capacity} flows{}; {} expired since start\n",
                    c.flows,
                    if states.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", states.join(", "))
                    },
                    c.expired_total
                ));
            }
        }
        None => out.push_str("data plane: off\n"),
    }
    out.push_str(&format!(
        "services: {} ({} active here); backends: {} of {} healthy\n",
        s.services, s.services_active, s.backends_healthy, s.backends
    ));
    for i in &s.vrrp {
        out.push_str(&format!("vrrp {}: {}\n", i.name, i.state));
    }
    if let Some(sync) = &s.sync {
        out.push_str(&format!(
            "sync: bulk {}; sent {} flows (+{} in bulk answers), received {}, applied {}, dropped {} (no service) {} (no backend, {} waiting for it), client templates {}; lag {} us (max {}); datagrams lost {}, auth failures {}\n",
            sync.bulk,
            sync.flows_sent,
            sync.bulk_flows_sent,
            sync.flows_received,
            sync.flows_applied,
            sync.dropped_no_service,
            sync.dropped_no_backend,
            sync.waiting_for_backend,
            sync.templates_written,
            sync.lag_last_us,
            sync.lag_max_us,
            sync.datagrams_lost,
            sync.auth_failures
        ));
        for p in &sync.peers {
            out.push_str(&format!(
                "sync peer {}: {}{}\n",
                p.address,
                p.heard_ms_ago.map_or_else(
                    || "never heard".to_owned(),
                    |ms| format!("heard {ms} ms ago")
                ),
                if p.bulk_done {
                    format!(", bulk sync done ({} flows)", p.bulk_flows)
                } else {
                    String::new()
                }
            ));
        }
    }
    if let Some(bgp) = &s.bgp {
        out.push_str(&bgp_status(bgp));
    }
    out
}

/// `lbctl status`'s BGP lines: the speaker, the VIPs announced, the
/// sessions.
fn bgp_status(bgp: &lb_user::bgp::BgpStatus) -> String {
    let mut out = String::new();
    let announced: Vec<String> = bgp.announced.iter().map(ToString::to_string).collect();
    out.push_str(&format!(
        "bgp: {} at {} ({}); table {}: announcing {}{}\n",
        if bgp.speaker.is_empty() {
            "speaker"
        } else {
            &bgp.speaker
        },
        bgp.socket.display(),
        if bgp.reachable {
            "answers"
        } else {
            "NOT ANSWERING"
        },
        bgp.table,
        if announced.is_empty() {
            "nothing".to_owned()
        } else {
            announced.join(", ")
        },
        bgp.error
            .as_ref()
            .map_or_else(String::new, |e| format!("; {e}"))
    ));
    for session in &bgp.sessions {
        out.push_str(&format!(
            "bgp session {}: {} {}\n",
            session.name, session.state, session.info
        ));
    }
    out
}

fn flows(reply: &lb_user::dataplane::flows::FlowsReply) -> String {
    // NAT flows carry their translation and state, as `ipvsadm -Lc` shows.
    let nat = reply.flows.iter().any(|f| f.mode.is_some());
    let rows: Vec<Vec<String>> = reply
        .flows
        .iter()
        .map(|f| {
            let backend = match f.backend_port {
                Some(p) => std::net::SocketAddr::new(f.backend, p).to_string(),
                None => f.backend.to_string(),
            };
            let mut row = vec![f.protocol.clone(), f.client.to_string(), f.vip.to_string()];
            if nat {
                let dash = || "-".to_owned();
                row.push(f.mode.clone().unwrap_or_else(|| "table".into()));
                row.push(f.snat.map_or_else(dash, |s| s.to_string()));
                row.push(backend);
                row.push(f.state.clone().unwrap_or_else(dash));
                row.push(
                    f.expires_ms
                        .map_or_else(dash, |ms| format!("{:.0} s", ms as f64 / 1000.0)),
                );
            } else {
                row.push(backend);
            }
            row.push(format!("{:.1} s", f.idle_ms as f64 / 1000.0));
            row
        })
        .collect();
    let mut out = if nat {
        table(
            &[
                "PRO", "CLIENT", "VIP", "MODE", "SNAT", "BACKEND", "STATE", "EXPIRES", "IDLE",
            ],
            &rows,
        )
    } else {
        table(&["PRO", "CLIENT", "VIP", "BACKEND", "IDLE"], &rows)
    };
    if reply.flows.len() < reply.total {
        out.push_str(&format!(
            "{} of {} flows shown, most recently seen first (--limit 0 for all)\n",
            reply.flows.len(),
            reply.total
        ));
    } else {
        out.push_str(&format!("{} flows\n", reply.total));
    }
    out
}

fn services(list: &[ServiceStatus]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let in_pool = s.backends.iter().filter(|b| b.in_pool).count();
            vec![
                s.service.clone(),
                s.mode.clone(),
                s.scheduler.clone(),
                or_dash(s.vrrp_instance.as_ref()),
                yes_no(s.active),
                format!("{in_pool}/{}", s.backends.len()),
                match s.table.last {
                    Some((size, changed, necessary)) if size > 0 => {
                        let pct = |n: u32| 100.0 * f64::from(n) / f64::from(size);
                        format!("{:.1}% ({:.1}% needed)", pct(changed), pct(necessary))
                    }
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "MODE",
            "SCHEDULER",
            "VRRP",
            "ACTIVE",
            "IN POOL",
            "LAST REWRITE MOVED",
        ],
        &rows,
    )
}

fn backends(list: &[ServiceStatus]) -> String {
    let mut rows = Vec::new();
    for s in list {
        for b in &s.backends {
            rows.push(vec![
                s.service.clone(),
                format!("{}:{}", b.address, b.port),
                b.weight.to_string(),
                if b.healthy { "up" } else { "down" }.into(),
                yes_no(b.drained),
                yes_no(b.in_pool),
                b.etcd_key
                    .as_ref()
                    .map_or_else(|| "file".to_owned(), |k| format!("etcd {k}")),
                b.reason.clone(),
            ]);
        }
    }
    table(
        &[
            "SERVICE",
            "BACKEND",
            "WEIGHT",
            "HEALTH",
            "DRAINED",
            "IN POOL",
            "FROM",
            "LAST CHANGE",
        ],
        &rows,
    )
}

fn vrrp(list: &[InstanceStatus]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let rejected = i
                .rejected
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                i.name.clone(),
                i.interface.clone(),
                i.vrid.to_string(),
                i.state.clone(),
                format!("{}/{}", i.priority, i.base_priority),
                or_dash(i.master),
                i.vips.join(","),
                i.transitions.to_string(),
                if rejected.is_empty() {
                    "-".into()
                } else {
                    rejected
                },
            ]
        })
        .collect();
    table(
        &[
            "INSTANCE",
            "IFACE",
            "VRID",
            "STATE",
            "PRIO",
            "MASTER HEARD",
            "VIPS",
            "TRANSITIONS",
            "REJECTED",
        ],
        &rows,
    )
}

fn stats(list: &[ServiceTraffic]) -> String {
    // NAT services also count their replies and refused flows.
    let nat = list
        .iter()
        .any(|s| s.total.replies > 0 || s.total.refused > 0);
    let row = |service: String, backend: String, t: &Traffic| {
        let mut row = vec![
            service,
            backend,
            t.packets.to_string(),
            t.bytes.to_string(),
            t.new_flows.to_string(),
        ];
        if nat {
            row.push(t.replies.to_string());
            row.push(t.reply_bytes.to_string());
            row.push(t.refused.to_string());
        }
        row
    };
    let mut rows = Vec::new();
    for s in list {
        let mut all = row(s.service.clone(), "(all)".into(), &s.total);
        all.push(format!("{}/{}", s.flows_off_table, s.flows_recent));
        rows.push(all);
        for (addr, t) in &s.backends {
            let mut r = row(String::new(), addr.clone(), t);
            r.push(String::new());
            rows.push(r);
        }
    }
    let mut head = vec!["SERVICE", "BACKEND", "PACKETS", "BYTES", "NEW FLOWS"];
    if nat {
        head.extend(["REPLIES", "REPLY BYTES", "REFUSED"]);
    }
    // Recent flows pinned to another backend than the table's choice now.
    head.push("OFF TABLE/RECENT");
    table(&head, &rows)
}

/// The single-threaded runtime lbctl's requests run on; exit status 3 (as
/// for an lbd that cannot be reached) if it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("lbctl: cannot start the async runtime: {e}");
            ExitCode::from(3)
        })
}
