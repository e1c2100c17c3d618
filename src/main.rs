//! `svc`: parse the command line, start the chosen role, map errors to exit codes.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;
use svc::cli::{Cli, Command, ServeArgs};
use svc::config::Settings;
use svc::roles::{all, dashboard, gateway, load, worker};
use svc::{Error, Launch, http, service};

// jemalloc with a background thread returns freed pages to the system within a
// second or two (its configuration is set at build time in .cargo/config.toml), so a
// pod's memory falls back after a spike: 5,000 idle connections left glibc's malloc
// holding ~50 MiB for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, not clap's usage block: the first line says what is wrong.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("svc: {}", first.trim_start_matches("error: "));
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("svc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Work abandoned at shutdown (a CPU-bound job past the grace period) must not hold
    // the exit: its job is left for another replica.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svc: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Gateway(args) => {
            let config = args.limits.config()?;
            let (launch, listener) =
                start(&args.serve, service::Role::Gateway, gateway::DEFAULT_PORT)?;
            launch
                .serve(async |settings, store, shutdown| {
                    gateway::run(&settings, &config, store, listener, shutdown).await
                })
                .await
        }
        Command::Worker(args) => {
            let config = args
                .worker
                .config(args.gateway_url.clone(), args.dashboard_url.clone())?;
            let (launch, listener) =
                start(&args.serve, service::Role::Worker, worker::DEFAULT_PORT)?;
            launch
                .serve(async |settings, store, shutdown| {
                    worker::run(&settings, &config, store, listener, shutdown).await
                })
                .await
        }
        Command::Dashboard(args) => {
            let config = args.config()?;
            let (launch, listener) = start(
                &args.serve,
                service::Role::Dashboard,
                dashboard::DEFAULT_PORT,
            )?;
            launch
                .serve(async |settings, store, shutdown| {
                    dashboard::run(&settings, &config, store, listener, shutdown).await
                })
                .await
        }
        Command::All(args) => {
            let settings = args.common.settings(false)?;
            let ports = args.ports();
            // Validated before binding, then built from the ports actually bound.
            args.config(ports)?;
            let backlog = settings.limits.backlog;
            let listeners = all::Listeners {
                gateway: http::bind((args.host, ports.gateway).into(), backlog)?,
                worker: http::bind((args.host, ports.worker).into(), backlog)?,
                dashboard: http::bind((args.host, ports.dashboard).into(), backlog)?,
            };
            let config = args.config(listeners.ports().map_err(http::ServeError::Io)?)?;
            Launch::start(settings, &service::Role::ALL)?
                .serve(async |settings, store, shutdown| {
                    all::run(&settings, &config, store, listeners, shutdown).await
                })
                .await
        }
        Command::Healthcheck(args) => Ok(svc::healthcheck::check(&args.url, args.timeout).await?),
        Command::Load(args) => {
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let config = args.config(progress)?;
            // Ctrl-C ends the run early, with the summary so far.
            let (interrupt, _second) = http::shutdown::signal()
                .map_err(|e| Error::Startup(format!("cannot install signal handlers: {e}")))?;
            let summary = load::run(config, interrupt)
                .await
                .map_err(|e| Error::Load(e.to_string()))?;
            if args.json {
                let json = serde_json::to_string_pretty(&summary)
                    .map_err(|e| Error::Load(e.to_string()))?;
                println!("{json}");
            } else {
                print!("{summary}");
            }
            if summary.interrupted {
                return Err(Error::LoadInterrupted);
            }
            if summary.ok == 0 {
                return Err(Error::Load("no request succeeded".into()));
            }
            match args.max_error_rate {
                Some(max) if summary.error_rate > max => Err(Error::Load(format!(
                    "error rate {:.2}% is above --max-error-rate {:.2}%",
                    summary.error_rate * 100.0,
                    max * 100.0
                ))),
                _ => Ok(()),
            }
        }
    }
}

/// Validates a single-role command's flags, binds its port (`default_port` unless one
/// is given), then sets the process up for `role`: a bad flag or a taken port is
/// reported before anything else happens.
fn start(
    args: &ServeArgs,
    role: service::Role,
    default_port: u16,
) -> Result<(Launch, TcpListener), Error> {
    let settings: Settings = args.common.settings(true)?;
    let listener = http::bind(args.listen_addr(default_port), settings.limits.backlog)?;
    Ok((Launch::start(settings, &[role])?, listener))
}
