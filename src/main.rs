//! `svc`: parse the command line, start the chosen role, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use svc::cli::{Cli, Role};
use svc::config::{Settings, listen_addr};
use svc::roles::{all, dashboard, gateway};
use svc::{Error, Launch, http};

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
    match runtime.block_on(run(cli.role)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svc: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(role: Role) -> Result<(), Error> {
    match role {
        Role::Gateway(args) => {
            let settings = Settings::from_args(&args.common, true)?;
            let listener = http::bind(listen_addr(args.host, args.port, gateway::DEFAULT_PORT))?;
            let launch = Launch::start(settings, &args.common)?;
            gateway::run(&launch.settings, launch.store, listener, launch.shutdown).await?;
        }
        Role::Dashboard(args) => {
            let serve = &args.serve;
            let settings = Settings::from_args(&serve.common, true)?;
            let config = dashboard::Config::new(args.gateway_url, args.worker_url, args.refresh)?;
            let addr = listen_addr(serve.host, serve.port, dashboard::DEFAULT_PORT);
            let listener = http::bind(addr)?;
            let launch = Launch::start(settings, &serve.common)?;
            dashboard::run(
                &launch.settings,
                &config,
                launch.store,
                listener,
                launch.shutdown,
            )
            .await?;
        }
        Role::All(args) => {
            let settings = Settings::from_args(&args.common, false)?;
            let dashboard = all::dashboard_config(args.host, args.gateway_port, args.refresh)?;
            let listeners = all::Listeners {
                gateway: http::bind((args.host, args.gateway_port).into())?,
                dashboard: http::bind((args.host, args.dashboard_port).into())?,
            };
            let launch = Launch::start(settings, &args.common)?;
            all::run(
                &launch.settings,
                &dashboard,
                launch.store,
                listeners,
                launch.shutdown,
            )
            .await?;
        }
        Role::Healthcheck(args) => svc::healthcheck::check(&args.url, args.timeout).await?,
    }
    Ok(())
}
