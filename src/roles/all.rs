//! `svc all`: every role in one process on one shared store, for a laptop. One shutdown
//! signal drains them all, and a role that fails stops the others.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::http::ServeError;
use crate::store::SharedStore;

use super::{dashboard, gateway};

/// Where the dashboard of `svc all` looks for the worker: the worker role's own port.
pub const WORKER_PORT: u16 = 8081;

/// The listeners of the roles, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The gateway's.
    pub gateway: TcpListener,
    /// The dashboard's.
    pub dashboard: TcpListener,
}

/// The dashboard of `svc all` watches the roles of this process, on `host`.
pub fn dashboard_config(
    host: IpAddr,
    gateway_port: u16,
    refresh: Duration,
) -> Result<dashboard::Config, ConfigError> {
    // Listening on every address: reach the other roles on loopback.
    let host = if host.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host
    };
    let url = |port: u16| {
        url::Url::parse(&format!("http://{}", std::net::SocketAddr::new(host, port))).map_err(|e| {
            ConfigError::Invalid {
                flag: "HOST",
                reason: e.to_string(),
            }
        })
    };
    dashboard::Config::new(url(gateway_port)?, url(WORKER_PORT)?, refresh)
}

/// Runs every role until `shutdown` resolves; returns the first error.
pub async fn run(
    settings: &Settings,
    dashboard: &dashboard::Config,
    store: SharedStore,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let stop = CancellationToken::new();
    let on_signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let (gateway, dashboard) = tokio::join!(
        stop_all_on_error(
            &stop,
            gateway::run(
                settings,
                store.clone(),
                listeners.gateway,
                stop.clone().cancelled_owned()
            ),
        ),
        stop_all_on_error(
            &stop,
            dashboard::run(
                settings,
                dashboard,
                store.clone(),
                listeners.dashboard,
                stop.clone().cancelled_owned()
            ),
        ),
    );
    on_signal.abort();
    gateway.and(dashboard)
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
