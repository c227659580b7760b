//! `lbd`: the lb daemon. This file parses the arguments and sets up
//! logging; the daemon itself is `lb_user::daemon` (the event loop, reload,
//! control requests).

use std::process::ExitCode;

use clap::Parser;
use lb_user::{
    cli::lbd::{Cli, Command, DetachArgs, LogFormat},
    config::Config,
    daemon::{self, DataplaneArgs, Startup},
    dataplane::loader::{Options, Role, error_chain},
};
use tracing::error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
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
        Some(Command::ConfigSchema) => {
            println!("{}", serde_json::to_string_pretty(&Config::schema())?);
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

/// Log lines to stderr at LB_LOG's level (default `info`), as `format` says.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        // Whole events as JSON objects, one a line, with their fields
        // at the top level beside the message.
        LogFormat::Json => fmt.json().flatten_event(true).init(),
        // Under systemd (JOURNAL_STREAM set), journald stamps every line:
        // ours would be noise.
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            fmt.with_ansi(false).without_time().init();
        }
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
