//! Every replica of every role, probed once per refresh period.
//!
//! The heartbeats say which replicas exist and where each can be probed; each live one
//! gets one readiness probe per period ([`crate::probe::http`]), at most
//! [`PROBE_CONCURRENCY`] at a time, and the dashboard answers for itself from its own
//! readiness. A replica whose heartbeat expired without a clean departure is *lost*: it
//! stays in the table, and counts as not ready, for [`LOST_FOR`]. A replica that
//! announces no address is *not probed*: it counts neither way and is named as such
//! ([`probe::NOT_PROBED`]). A role with no replica that can be probed (none advertises
//! an address, or the store never said) is probed once at its Service URL instead.
//!
//! A role is healthy when every replica is ready and quick, degraded when some are not
//! ("1 of 2 gateways ready") and down when none is.

use std::time::Duration;

use futures_util::StreamExt;

use crate::probe::{self, Probe};
use crate::service::Role;
use crate::service::ServiceState;
use crate::store::Instance;

/// How long a replica that vanished without a clean shutdown is shown as lost.
pub const LOST_FOR: Duration = Duration::from_secs(5 * 60);
/// Replica probes in flight at once.
pub const PROBE_CONCURRENCY: usize = 16;

/// One replica as the last round saw it.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its heartbeat.
    pub instance: Instance,
    /// This round's probe; `None` when lost, or when it announces no address.
    pub probe: Option<Probe>,
    /// Unix seconds its heartbeat expired, when it vanished without a clean shutdown.
    pub lost_since: Option<f64>,
}

impl Replica {
    /// Whether it said it is ready this round.
    pub fn ready(&self) -> bool {
        self.lost_since.is_none() && self.probe.as_ref().is_some_and(|p| p.ready)
    }

    /// Whether it counts in its role's total: probed this round, or lost.
    pub fn counted(&self) -> bool {
        self.probe.is_some() || self.lost_since.is_some()
    }

    /// `"ready"`, `"not ready"`, `"down"`, `"lost"` or `"not probed"` (no address).
    pub fn state_word(&self) -> &'static str {
        match (&self.probe, self.lost_since) {
            (_, Some(_)) => "lost",
            (Some(p), None) if p.ready => "ready",
            (Some(p), None) if p.status == ServiceState::Down => "down",
            (Some(_), None) => "not ready",
            (None, None) => "not probed",
        }
    }
}

pub use crate::probe::Count;

/// Probes every live replica that announces an address, at most
/// [`PROBE_CONCURRENCY`] at once; `own` (this dashboard's id and readiness) is answered
/// without a request. Lost replicas are listed after the live ones.
pub async fn probe_all(
    client: &reqwest::Client,
    live: &[Instance],
    lost: &[(Instance, f64)],
    own: (&str, &Probe),
) -> Vec<Replica> {
    let mut replicas: Vec<Replica> = futures_util::stream::iter(live.iter().cloned())
        .map(|instance| async move {
            // `svc all` runs every role under one id: only the dashboard is this one.
            let probe = if instance.id == own.0 && instance.role == Role::Dashboard {
                Some(own.1.clone())
            } else {
                probe::instance(client, &instance).await
            };
            Replica {
                instance,
                probe,
                lost_since: None,
            }
        })
        .buffered(PROBE_CONCURRENCY)
        .collect()
        .await;
    replicas.extend(lost.iter().map(|(instance, since)| Replica {
        instance: instance.clone(),
        probe: None,
        lost_since: Some(*since),
    }));
    replicas
}

/// Whether `role` has a replica to judge it by; otherwise its Service URL is probed.
pub fn has_replicas(role: Role, replicas: &[Replica]) -> bool {
    replicas
        .iter()
        .any(|r| r.instance.role == role && r.counted())
}

/// The state of `role` from its replicas ([`probe::replicas`]: a lost one counts as
/// not ready); `fallback` is the Service URL's probe, used when no replica could be
/// probed (see [`has_replicas`]), and then counted as one.
pub fn judge(role: Role, replicas: &[Replica], fallback: Option<Probe>) -> (Probe, Count) {
    let service = role.service();
    let lost = Probe {
        error: Some("lost (heartbeat stopped)".to_owned()),
        ready: false,
        ..Probe::new(service, ServiceState::Down)
    };
    let mine: Vec<(&str, Option<&Probe>)> = replicas
        .iter()
        .filter(|r| r.instance.role == role)
        .map(|r| match r.lost_since {
            Some(_) => (r.instance.id.as_str(), Some(&lost)),
            None => (r.instance.id.as_str(), r.probe.as_ref()),
        })
        .collect();
    probe::replicas(role, &mine).unwrap_or_else(|| {
        let probe = fallback.unwrap_or_else(|| Probe {
            error: Some(format!("no live {} announces an address", role.as_str())),
            ..Probe::new(service, ServiceState::Down)
        });
        let count = Count {
            ready: usize::from(probe.ready),
            total: 1,
        };
        (probe, count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;

    fn replica(role: Role, id: &str, probe: Option<Probe>, lost: bool) -> Replica {
        Replica {
            instance: Instance {
                role,
                id: id.into(),
                version: "1".into(),
                started_at: 0.0,
                address: Some("127.0.0.1:1".into()),
                faults: Vec::new(),
                location: None,
            },
            probe,
            lost_since: lost.then_some(1.0),
        }
    }

    fn ok() -> Option<Probe> {
        Some(Probe::new(Service::ApiGateway, ServiceState::Healthy))
    }

    fn refused() -> Option<Probe> {
        Some(Probe {
            error: Some("cannot connect".into()),
            ..Probe::new(Service::ApiGateway, ServiceState::Down)
        })
    }

    #[test]
    fn a_role_is_as_healthy_as_its_replicas() {
        let g = Role::Gateway;
        let both = [replica(g, "a", ok(), false), replica(g, "b", ok(), false)];
        let (probe, count) = judge(g, &both, None);
        assert_eq!(
            (probe.status, count),
            (ServiceState::Healthy, Count { ready: 2, total: 2 })
        );

        let one = [
            replica(g, "a", ok(), false),
            replica(g, "b", refused(), false),
        ];
        let (probe, count) = judge(g, &one, None);
        assert_eq!(probe.status, ServiceState::Degraded);
        assert_eq!(count, Count { ready: 1, total: 2 });
        assert!(
            probe
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("1 of 2 gateways ready"))
        );

        let lost = [replica(g, "a", ok(), false), replica(g, "b", None, true)];
        let (probe, count) = judge(g, &lost, None);
        assert_eq!(
            (probe.status, count.ready, count.total),
            (ServiceState::Degraded, 1, 2)
        );

        let none = [
            replica(g, "a", None, true),
            replica(g, "b", refused(), false),
        ];
        assert_eq!(judge(g, &none, None).0.status, ServiceState::Down);
    }

    #[tokio::test]
    async fn only_the_dashboard_answers_for_itself_when_roles_share_an_id() {
        // `svc all`: three roles, one process id. The gateway is probed, and refuses.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut gateway = replica(Role::Gateway, "host-1", None, false).instance;
        gateway.address = Some(closed.to_string());
        let mut dashboard = gateway.clone();
        dashboard.role = Role::Dashboard;
        let own = Probe::new(crate::service::Service::Dashboard, ServiceState::Healthy);
        let client = probe::client().expect("client");
        let replicas = probe_all(&client, &[gateway, dashboard], &[], ("host-1", &own)).await;
        let states: Vec<&str> = replicas.iter().map(Replica::state_word).collect();
        assert_eq!(states, ["down", "ready"]);
    }

    #[tokio::test]
    async fn a_replica_without_an_address_is_named_not_probed_and_judged_neither_way() {
        let mut quiet = replica(Role::Gateway, "b", None, false).instance;
        quiet.address = None;
        let client = probe::client().expect("client");
        let own = Probe::new(Service::Dashboard, ServiceState::Healthy);
        let probed = probe_all(&client, &[quiet], &[], ("d", &own)).await;
        assert_eq!(probed[0].state_word(), "not probed");

        let both = [replica(Role::Gateway, "a", ok(), false), probed[0].clone()];
        let (probe, count) = judge(Role::Gateway, &both, None);
        assert_eq!(
            (probe.status, count),
            (ServiceState::Healthy, Count { ready: 1, total: 1 })
        );
        assert_eq!(
            probe.error.as_deref(),
            Some(format!("b: {}", probe::NOT_PROBED).as_str())
        );
    }

    #[test]
    fn with_no_replica_to_probe_the_service_url_decides() {
        let (probe, count) = judge(Role::Worker, &[], ok());
        assert_eq!(
            (probe.status, count),
            (ServiceState::Healthy, Count { ready: 1, total: 1 })
        );
        let (probe, _) = judge(Role::Worker, &[], None);
        assert_eq!(probe.status, ServiceState::Down);
    }
}
