//! `svc all`: every role in one process on one shared store, for a laptop. One shutdown
//! signal drains them all, and a role that fails stops the others.

use std::future::Future;
use std::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::http::ServeError;
use crate::store::SharedStore;

use super::gateway;

/// The listeners of the roles, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The gateway's.
    pub gateway: TcpListener,
}

/// Runs every role until `shutdown` resolves; returns the first error.
pub async fn run(
    settings: &Settings,
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
    let (gateway,) = tokio::join!(stop_all_on_error(
        &stop,
        gateway::run(
            settings,
            store.clone(),
            listeners.gateway,
            stop.clone().cancelled_owned()
        ),
    ));
    on_signal.abort();
    gateway
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
