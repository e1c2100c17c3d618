//! `svc`: parse the command line, start the chosen role, map errors to exit codes.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;
use svc::cli::{Cli, Role};
use svc::config::{ConfigError, Settings, listen_addr, worker_config};
use svc::roles::{all, gateway, load, worker};
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
    let result = runtime.block_on(run(cli.role));
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

async fn run(role: Role) -> Result<(), Error> {
    match role {
        Role::Gateway(args) => {
            let settings = Settings::from_args(&args.common, true)?;
            let listener = http::bind(listen_addr(args.host, args.port, gateway::DEFAULT_PORT))?;
            let launch = Launch::start(settings, &args.common)?;
            gateway::run(&launch.settings, launch.store, listener, launch.shutdown).await?;
        }
        Role::Worker(args) => {
            let settings = Settings::from_args(&args.serve.common, true)?;
            let config = worker_config(&args.worker, args.gateway_url, args.dashboard_url)?;
            let addr = listen_addr(args.serve.host, args.serve.port, worker::DEFAULT_PORT);
            let listener = http::bind(addr)?;
            let launch = Launch::start(settings, &args.serve.common)?;
            worker::run(
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
            let local = |port| url::Url::parse(&format!("http://{}:{port}", args.host));
            let worker = worker_config(
                &args.worker,
                local(args.gateway_port).map_err(|e| invalid_host(&e))?,
                // The dashboard is not part of `svc all` yet: its probe reports it down.
                local(3000).map_err(|e| invalid_host(&e))?,
            )?;
            let listeners = all::Listeners {
                gateway: http::bind((args.host, args.gateway_port).into())?,
                worker: http::bind((args.host, args.worker_port).into())?,
            };
            let launch = Launch::start(settings, &args.common)?;
            all::run(
                &launch.settings,
                &worker,
                launch.store,
                listeners,
                launch.shutdown,
            )
            .await?;
        }
        Role::Healthcheck(args) => svc::healthcheck::check(&args.url, args.timeout).await?,
        Role::Load(args) => {
            let report = load::run(load::LoadConfig {
                url: args.url,
                method: args.method,
                body: args.body,
                concurrency: usize::from(args.concurrency),
                duration: args.duration,
                max_requests: args.requests,
            })
            .await
            .map_err(|e| Error::Load(e.to_string()))?;
            println!("{report}");
            if report.ok == 0 {
                return Err(Error::Load("no request succeeded".into()));
            }
        }
    }
    Ok(())
}

fn invalid_host(e: &url::ParseError) -> ConfigError {
    ConfigError::Invalid {
        flag: "HOST",
        reason: e.to_string(),
    }
}
