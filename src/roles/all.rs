//! `svc all`: every role in one process on one shared store, for a laptop. One shutdown
//! signal drains them all, and a role that fails stops the others.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, TcpListener};

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::http::ServeError;
use crate::store::SharedStore;

use super::worker::{self, WorkerConfig};
use super::{dashboard, gateway};

/// The ports of the roles.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The gateway's.
    pub gateway: u16,
    /// The worker's health server's.
    pub worker: u16,
    /// The dashboard's.
    pub dashboard: u16,
}

/// The listeners of the roles, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The gateway's.
    pub gateway: TcpListener,
    /// The worker's health server's.
    pub worker: TcpListener,
    /// The dashboard's.
    pub dashboard: TcpListener,
}

impl Listeners {
    /// The ports actually bound (port 0 asks the OS for one).
    pub fn ports(&self) -> std::io::Result<Ports> {
        Ok(Ports {
            gateway: self.gateway.local_addr()?.port(),
            worker: self.worker.local_addr()?.port(),
            dashboard: self.dashboard.local_addr()?.port(),
        })
    }
}

/// What the worker and the dashboard of `svc all` need: each other's and the
/// gateway's address in this process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway's.
    pub gateway: gateway::Config,
    /// The worker's.
    pub worker: WorkerConfig,
    /// The dashboard's.
    pub dashboard: dashboard::Config,
}

/// The host the roles of one process reach each other on: loopback when they listen
/// on every address.
pub fn watch_host(host: IpAddr) -> IpAddr {
    if host.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host
    }
}

/// Runs every role until `shutdown` resolves; returns the first error.
pub async fn run(
    settings: &Settings,
    config: &Config,
    store: SharedStore,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let stop = crate::http::shutdown::cancel_on(shutdown);
    let (gateway, worker, dashboard) = tokio::join!(
        stop_all_on_error(
            &stop,
            gateway::run(
                settings,
                &config.gateway,
                store.clone(),
                listeners.gateway,
                stop.clone().cancelled_owned()
            ),
        ),
        stop_all_on_error(
            &stop,
            worker::run(
                settings,
                &config.worker,
                store.clone(),
                listeners.worker,
                stop.clone().cancelled_owned()
            ),
        ),
        stop_all_on_error(
            &stop,
            dashboard::run(
                settings,
                &config.dashboard,
                store.clone(),
                listeners.dashboard,
                stop.clone().cancelled_owned()
            ),
        ),
    );
    stop.cancel();
    gateway.and(worker).and(dashboard)
}

async fn stop_all_on_error<T>(
    stop: &CancellationToken,
    role: impl Future<Output = Result<T, ServeError>>,
) -> Result<T, ServeError> {
    let result = role.await;
    if result.is_err() {
        stop.cancel();
    }
    result
}
