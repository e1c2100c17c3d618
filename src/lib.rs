//! `svc`: microservice health monitoring in one binary.
//!
//! One executable runs as the API gateway, the worker or the dashboard (or all three in
//! one process), chosen by a subcommand, so a single container image backs every
//! Deployment. Redis is the shared state; `svc all` falls back to an embedded store.
//!
//! Everything but argument parsing and exit codes lives in this library so tests can
//! start any role in-process on a port of their own.

pub mod cli;
pub mod clock;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod jobs;
pub mod presence;
pub mod probe;
pub mod redact;
pub mod roles;
pub mod service;
pub mod store;
pub mod targets;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod traces;

use std::future::Future;

use config::{ConfigError, Settings};
use tokio_util::sync::CancellationToken;

use store::SharedStore;

/// Everything that can stop `svc` with a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration: exit code 64 (EX_USAGE).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not start or failed.
    #[error(transparent)]
    Serve(#[from] http::ServeError),
    /// The store could not be set up.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// `svc healthcheck` found the target unhealthy.
    #[error("unhealthy: {0}")]
    Unhealthy(#[from] healthcheck::CheckError),
    /// `svc load` could not send, was interrupted (exit code 130), nothing it sent
    /// succeeded, or too much failed.
    #[error("load: {0}")]
    Load(#[from] roles::load::LoadError),
    /// Process set-up (signal handlers, logger) failed.
    #[error("{0}")]
    Startup(String),
    /// A second signal arrived during the drain: exit code 130.
    #[error("second signal: exited without draining")]
    Interrupted,
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 64,
            Error::Interrupted | Error::Load(roles::load::LoadError::Interrupted) => 130,
            _ => 1,
        }
    }
}

/// What a serving role needs from the process: validated settings, the store, the
/// shutdown signal and the running logger.
pub struct Launch {
    /// Validated settings.
    pub settings: Settings,
    /// The store (not connected yet: it connects when first used).
    pub store: SharedStore,
    /// Resolves on SIGTERM or SIGINT.
    pub shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Cancelled on a second signal: stop at once.
    pub forced: CancellationToken,
    /// Flushes the spans still buffered when dropped; `None` with traces off.
    pub traces: Option<traces::TraceGuard>,
    /// Keeps the log writer alive; dropped last, which flushes it.
    pub logs: telemetry::LogGuard,
}

impl Launch {
    /// Sets the process up for `roles` with validated `settings`: traces (when an
    /// OTLP endpoint is set), logger, signal handlers, store. Called after binding, so a
    /// taken port is reported before anything else happens.
    pub fn start(settings: Settings, roles: &[service::Role]) -> Result<Self, Error> {
        let traces = traces::start(roles).map_err(|e| Error::Startup(format!("traces: {e}")))?;
        let logs = telemetry::init_logs(settings.environment, &settings.log_level)
            .map_err(Error::Startup)?;
        let (shutdown, forced) = http::shutdown::signal()
            .map_err(|e| Error::Startup(format!("cannot install signal handlers: {e}")))?;
        let store = store::open(&settings.store, &settings.key_prefix)?;
        tracing::info!(store = %describe(&settings), version = env!("CARGO_PKG_VERSION"), "starting");
        Ok(Launch {
            settings,
            store,
            shutdown: Box::pin(shutdown),
            forced,
            traces,
            logs,
        })
    }
}

impl Launch {
    /// Runs `role` with the settings, store and shutdown signal until it ends, or until
    /// a second signal cuts the drain short; then sends the spans still buffered. The
    /// logger outlives both, so its last lines are flushed.
    pub async fn serve<F>(self, role: F) -> Result<(), Error>
    where
        F: AsyncFnOnce(
            Settings,
            SharedStore,
            std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
        ) -> Result<(), http::ServeError>,
    {
        let Launch {
            settings,
            store,
            shutdown,
            forced,
            traces,
            logs: _logs,
        } = self;
        let result = tokio::select! {
            result = role(settings, store, shutdown) => result.map_err(Error::from),
            () = forced.cancelled() => Err(Error::Interrupted),
        };
        drop(traces);
        result
    }
}

fn describe(settings: &Settings) -> String {
    match &settings.store {
        config::StoreSettings::Memory => "embedded".into(),
        config::StoreSettings::Redis(redis) => redis.to_string(),
    }
}
