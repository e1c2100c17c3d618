//! The shutdown signal: SIGTERM (what Kubernetes sends when it stops a pod) or SIGINT
//! (Ctrl-C on a laptop). The handlers are installed when [`signal`] is called, before
//! anything is served, so an early SIGTERM still drains instead of killing the process.
//! A second signal skips the drain, for a person at a terminal who does not want to
//! wait: the process still returns through `main`, so the log is flushed.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal as unix_signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled when `shutdown` resolves, for a role with several parts (server,
/// loops) that must all stop on the one signal.
pub fn cancel_on(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => cancel.cancel(),
            // Cancelled for another reason: stop waiting for the signal.
            () = cancel.cancelled() => {}
        }
    });
    token
}

/// A future that resolves on the first SIGTERM or SIGINT, and a token cancelled on the
/// second one.
pub fn signal() -> std::io::Result<(impl Future<Output = ()> + Send + 'static, CancellationToken)> {
    let mut term = unix_signal(SignalKind::terminate())?;
    let mut int = unix_signal(SignalKind::interrupt())?;
    let forced = CancellationToken::new();
    let force = forced.clone();
    let first = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting without draining");
            force.cancel();
        });
    };
    Ok((first, forced))
}
