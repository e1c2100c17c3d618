//! `svc all`: every role in one process on one shared store, for a laptop. One shutdown
//! signal drains them all, and a role that fails stops the others.

use std::future::Future;
use std::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::http::ServeError;
use crate::store::SharedStore;

use super::gateway;
use super::worker::{self, WorkerConfig};

/// The listeners of the roles, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The gateway's.
    pub gateway: TcpListener,
    /// The worker's health server's.
    pub worker: TcpListener,
}

/// Runs every role until `shutdown` resolves; returns the first error.
pub async fn run(
    settings: &Settings,
    worker: &WorkerConfig,
    store: SharedStore,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let stop = crate::http::shutdown::cancel_on(shutdown);
    let (gateway, worker) = tokio::join!(
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
            worker::run(
                settings,
                worker,
                store.clone(),
                listeners.worker,
                stop.clone().cancelled_owned()
            ),
        ),
    );
    stop.cancel();
    gateway.and(worker)
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
