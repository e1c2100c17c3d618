//! Heartbeats: every running instance of every role announces itself in the store with
//! a TTL, so "which replicas exist right now" is one store query and an HPA scale-up
//! shows on the dashboard within seconds. A clean shutdown departs at once
//! ([`crate::store::Store::depart`]); a process that dies without one leaves its last
//! beat to expire, and the dashboard shows it as lost.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

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

/// The announcement of `role` serving on `addr`, to be probed at `advertise`
/// ([`address`]).
pub fn describe(role: Role, addr: SocketAddr, advertise: Option<&str>) -> Instance {
    Instance {
        role,
        id: instance_id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: unix_now(),
        address: address(advertise, addr),
        faults: Vec::new(),
        location: None,
    }
}

/// Where a process listening on `listen` can be probed: `advertise` with its own port,
/// or with the listen port when it names only a host (a pod IP); else the listen
/// address, unless that is a wildcard (0.0.0.0 says nothing to another host): `None`.
pub fn address(advertise: Option<&str>, listen: SocketAddr) -> Option<String> {
    match advertise.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) if has_port(a) => Some(a.to_owned()),
        Some(host) => Some(format!("{host}:{}", listen.port())),
        None if listen.ip().is_unspecified() => None,
        None => Some(listen.to_string()),
    }
}

/// Whether `addr` (`host`, `host:port`, `[v6]`, `[v6]:port`) names a port.
fn has_port(addr: &str) -> bool {
    let after_host = match addr.rfind(']') {
        Some(i) => &addr[i + 1..],
        None if addr.matches(':').count() > 1 => return false,
        None => addr,
    };
    after_host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

/// Announces `instance` now and every [`HEARTBEAT_PERIOD`] until `stop` is cancelled,
/// each beat with the faults `faults` says are active then. A failed beat is retried
/// at the next one: the store may be down for a while.
pub fn spawn_heartbeat<F>(
    store: SharedStore,
    instance: Instance,
    faults: F,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Vec<String> + Send + 'static,
{
    crate::tasks::spawn_until(stop, "heartbeat", async move {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_wins_then_the_listen_address_unless_a_wildcard() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        assert_eq!(address(None, any), None);
        assert_eq!(address(None, local).as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(
            address(Some("10.1.2.3"), any).as_deref(),
            Some("10.1.2.3:8080")
        );
        assert_eq!(
            address(Some("gw-0.gw:9000"), any).as_deref(),
            Some("gw-0.gw:9000")
        );
        assert_eq!(
            address(Some("[fd00::1]"), any).as_deref(),
            Some("[fd00::1]:8080")
        );
        assert_eq!(
            address(Some("[fd00::1]:9"), any).as_deref(),
            Some("[fd00::1]:9")
        );
    }
}
