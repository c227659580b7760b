//! `lbctl`: inspect and steer a running `lbd` through its control socket.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_user::api::control::{self, Request, Response};
use serde_json::Value;

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
///   lbctl --json vrrp | jq '.[].state'
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// lbd's control socket.
    #[arg(long, value_name = "PATH", default_value = control::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,

    /// Print lbd's answer as JSON.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
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
    /// What lb ignores or does differently is reported on stderr with its
    /// file and line; exit status 1 when the file does not convert.
    Convert {
        /// The keepalived.conf.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let request = match &cli.command {
        Command::Status => Request::Status,
        Command::Services => Request::Services,
        Command::Backends => Request::Backends,
        Command::Vrrp => Request::Vrrp,
        Command::Stats => Request::Stats,
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
        Command::Convert { file } => return convert(file),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lbctl: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let response = match runtime.block_on(control::request(&cli.socket, &request)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lbctl: {e}");
            return ExitCode::from(3);
        }
    };
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response).unwrap_or_default()
        );
        return if response.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    match response {
        Response {
            ok: true,
            data: Some(data),
            ..
        } => {
            print!("{}", render(&cli.command, &data));
            ExitCode::SUCCESS
        }
        Response { error, .. } => {
            eprintln!(
                "lbctl: {}",
                error.unwrap_or_else(|| "request failed".into())
            );
            ExitCode::from(1)
        }
    }
}

/// `lbctl convert FILE`: keepalived.conf → TOML on stdout, warnings on
/// stderr.
fn convert(file: &std::path::Path) -> ExitCode {
    match lb_user::config::keepalived::load(file) {
        Ok((config, warnings)) => {
            for w in &warnings {
                eprintln!("lbctl: {w}");
            }
            match lb_user::config::keepalived::to_toml(&config) {
                Ok(text) => {
                    print!(
                        "# converted from {} by lbctl convert\n\n{text}",
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

/// A value as table text.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
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

fn render(command: &Command, data: &Value) -> String {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match command {
        Command::Status => {
            let mut out = format!(
                "lbd {} (pid {})\n",
                cell(&data["router_id"]),
                cell(&data["pid"])
            );
            match data["data_plane"].as_object() {
                Some(dp) => {
                    out.push_str(&format!(
                        "data plane: {} ({} mode), maps under {}\n",
                        cell(&dp["interface"]),
                        cell(&dp["mode"]),
                        cell(&dp["pin_path"])
                    ));
                    let t = &dp["connection_table"];
                    if t.is_object() {
                        out.push_str(&format!(
                            "connection table: {} flows seen in the last 10 s, {} of {} ways in use; evicted {} recently seen, {} idle\n",
                            cell(&t["recent"]),
                            cell(&t["in_use"]),
                            cell(&t["capacity"]),
                            cell(&t["evicted_recent"]),
                            cell(&t["evicted_idle"])
                        ));
                    }
                }
                None => out.push_str("data plane: off\n"),
            }
            out.push_str(&format!(
                "services: {} ({} active here); backends: {} of {} healthy\n",
                cell(&data["services"]),
                cell(&data["services_active"]),
                cell(&data["backends_healthy"]),
                cell(&data["backends"])
            ));
            for i in list(&data["vrrp"]) {
                out.push_str(&format!(
                    "vrrp {}: {}\n",
                    cell(&i["name"]),
                    cell(&i["state"])
                ));
            }
            out
        }
        Command::Services => {
            let rows: Vec<Vec<String>> = list(data)
                .iter()
                .map(|s| {
                    let backends = list(&s["backends"]);
                    let in_pool = backends
                        .iter()
                        .filter(|b| b["in_pool"] == Value::Bool(true))
                        .count();
                    vec![
                        cell(&s["service"]),
                        cell(&s["mode"]),
                        cell(&s["vrrp_instance"]),
                        cell(&s["active"]),
                        format!("{in_pool}/{}", backends.len()),
                    ]
                })
                .collect();
            table(&["SERVICE", "MODE", "VRRP", "ACTIVE", "IN POOL"], &rows)
        }
        Command::Backends => {
            let mut rows = Vec::new();
            for s in list(data) {
                for b in list(&s["backends"]) {
                    rows.push(vec![
                        cell(&s["service"]),
                        format!("{}:{}", cell(&b["address"]), cell(&b["port"])),
                        cell(&b["weight"]),
                        if b["healthy"] == Value::Bool(true) {
                            "up"
                        } else {
                            "down"
                        }
                        .into(),
                        cell(&b["drained"]),
                        cell(&b["in_pool"]),
                        cell(&b["reason"]),
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
                    "LAST CHANGE",
                ],
                &rows,
            )
        }
        Command::Vrrp => {
            let rows: Vec<Vec<String>> = list(data)
                .iter()
                .map(|i| {
                    let rejected = i["rejected"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "-".into());
                    vec![
                        cell(&i["name"]),
                        cell(&i["interface"]),
                        cell(&i["vrid"]),
                        cell(&i["state"]),
                        format!("{}/{}", cell(&i["priority"]), cell(&i["base_priority"])),
                        cell(&i["master"]),
                        list(&i["vips"])
                            .iter()
                            .map(cell)
                            .collect::<Vec<_>>()
                            .join(","),
                        cell(&i["transitions"]),
                        rejected,
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
        Command::Stats => {
            let mut rows = Vec::new();
            for s in list(data) {
                let t = &s["total"];
                rows.push(vec![
                    cell(&s["service"]),
                    "(all)".into(),
                    cell(&t["packets"]),
                    cell(&t["bytes"]),
                    cell(&t["new_flows"]),
                ]);
                if let Some(bs) = s["backends"].as_object() {
                    for (addr, t) in bs {
                        rows.push(vec![
                            String::new(),
                            addr.clone(),
                            cell(&t["packets"]),
                            cell(&t["bytes"]),
                            cell(&t["new_flows"]),
                        ]);
                    }
                }
            }
            table(
                &["SERVICE", "BACKEND", "PACKETS", "BYTES", "NEW FLOWS"],
                &rows,
            )
        }
        Command::Drain { service, backend } => {
            format!("{backend} drained from {service}: no new flows; established flows continue\n")
        }
        Command::Enable { service, backend } => format!("{backend} enabled in {service}\n"),
        Command::Reload => "configuration reloaded\n".into(),
        Command::Convert { .. } => String::new(),
    }
}
