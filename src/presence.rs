//! Heartbeats: every running instance of every role announces itself in the store with
//! a TTL, so "which replicas exist right now" is one store query and an HPA scale-up
//! shows on the dashboard within seconds.

use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::unix_now;
use crate::service::Role;
use crate::store::{Instance, SharedStore};

/// How often an instance announces itself.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(2);
/// How long an announcement lasts: three missed beats and the instance is gone.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(6);

/// This process's identity: the pod name (Kubernetes sets `HOSTNAME` to it) or the
/// host name, and the pid, so two processes on one laptop differ.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// The announcement of `role` serving on `addr`.
pub fn describe(role: Role, addr: SocketAddr) -> Instance {
    // A pod's IP (from the downward API) says more than the 0.0.0.0 it listens on.
    let host = std::env::var("POD_IP")
        .ok()
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| addr.ip().to_string());
    Instance {
        role,
        id: instance_id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: unix_now(),
        address: format!("{host}:{}", addr.port()),
        faults: Vec::new(),
    }
}

/// Announces `instance` now and every [`HEARTBEAT_PERIOD`] until the task is aborted,
/// each beat with the faults `faults` says are active then. A failed beat is retried
/// at the next one: the store may be down for a while.
pub fn spawn_heartbeat<F>(
    store: SharedStore,
    instance: Instance,
    faults: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Vec<String> + Send + 'static,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut instance = instance;
        loop {
            ticks.tick().await;
            instance.faults = faults();
            if let Err(e) = store.heartbeat(&instance, HEARTBEAT_TTL).await {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
    })
}
