//! `svc`: parse the command line, run the command, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use svc::cli::{Cli, Command};
use svc::roles::{all, dashboard, gateway, load, worker};
use svc::service::Role;
use svc::{Error, Launch, http};

// jemalloc with a background thread returns freed pages to the system within a
// second or two (its configuration is set at build time in .cargo/config.toml), so a
// pod's memory falls back after a spike: 5,000 idle connections left glibc's malloc
// holding ~50 MiB for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
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
            let (settings, listener) = args.serve.bind(gateway::DEFAULT_PORT)?;
            Launch::start(settings, &[Role::Gateway])?
                .serve(async |s, store, stop| {
                    gateway::run(&s, &config, store, listener, stop).await
                })
                .await
        }
        Command::Worker(args) => {
            let config = args.config()?;
            let (settings, listener) = args.serve.bind(worker::DEFAULT_PORT)?;
            Launch::start(settings, &[Role::Worker])?
                .serve(async |s, store, stop| worker::run(&s, &config, store, listener, stop).await)
                .await
        }
        Command::Dashboard(args) => {
            let config = args.config()?;
            let (settings, listener) = args.serve.bind(dashboard::DEFAULT_PORT)?;
            Launch::start(settings, &[Role::Dashboard])?
                .serve(async |s, store, stop| {
                    dashboard::run(&s, &config, store, listener, stop).await
                })
                .await
        }
        Command::All(args) => {
            let (settings, config, listeners) = args.bind()?;
            Launch::start(settings, &Role::ALL)?
                .serve(async |s, store, stop| all::run(&s, &config, store, listeners, stop).await)
                .await
        }
        Command::Healthcheck(args) => Ok(svc::healthcheck::check(&args.url, args.timeout).await?),
        Command::Load(args) => {
            let config = args.config(std::io::stderr().is_terminal())?;
            // Ctrl-C ends the run early, with the summary so far.
            let (interrupt, _second) = http::shutdown::signal()
                .map_err(|e| Error::Startup(format!("cannot install signal handlers: {e}")))?;
            load::report(config, interrupt).await?;
            Ok(())
        }
    }
}
