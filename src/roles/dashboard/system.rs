//! The state of the whole system, from one round of probes ([`crate::probe`]): down
//! when the gateway is (nothing reaches the API), degraded when any service is not
//! healthy, else healthy; [`System`] says which and why.

use serde::Serialize;

use crate::probe::Probe;
use crate::service::Service;
use crate::service::ServiceState;
use crate::telemetry::metric;

/// Counts one probe the dashboard made.
pub fn count(probe: &Probe) {
    metrics::counter!(
        metric::DASHBOARD_PROBES.name,
        "service" => probe.name.as_str(),
        "result" => state_name(probe.status)
    )
    .increment(1);
}

/// The lowercase name of `state`, as JSON carries it.
pub fn state_name(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Healthy => "healthy",
        ServiceState::Degraded => "degraded",
        ServiceState::Down => "down",
    }
}

/// The state of the whole system and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct System {
    /// Healthy, degraded or down.
    pub status: ServiceState,
    /// One sentence: which services and what failed.
    pub reason: String,
}

/// Down when the gateway is down, degraded when anything is not healthy.
pub fn system(probes: &[Probe]) -> System {
    let why = |p: &Probe| match &p.error {
        Some(e) => format!("{} {}: {e}", p.name.title(), state_name(p.status)),
        None => format!("{} {}", p.name.title(), state_name(p.status)),
    };
    if let Some(gateway) = probes
        .iter()
        .find(|p| p.name == Service::ApiGateway && p.status == ServiceState::Down)
    {
        return System {
            status: ServiceState::Down,
            reason: why(gateway),
        };
    }
    let unwell: Vec<String> = probes
        .iter()
        .filter(|p| p.status != ServiceState::Healthy)
        .map(why)
        .collect();
    if unwell.is_empty() {
        System {
            status: ServiceState::Healthy,
            reason: "All services healthy".into(),
        }
    } else {
        System {
            status: ServiceState::Degraded,
            reason: unwell.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(name: Service, status: ServiceState) -> Probe {
        Probe::new(name, status)
    }

    #[test]
    fn gateway_down_is_system_down_and_anything_else_degrades() {
        use ServiceState::*;
        let all = |g, w, r| {
            system(&[
                probe(Service::ApiGateway, g),
                probe(Service::Worker, w),
                probe(Service::Redis, r),
            ])
        };
        assert_eq!(all(Healthy, Healthy, Healthy).status, Healthy);
        assert_eq!(all(Down, Healthy, Healthy).status, Down);
        assert_eq!(all(Down, Down, Down).reason, "API gateway down");
        assert_eq!(all(Degraded, Healthy, Healthy).status, Degraded);
        let worker_down = all(Healthy, Down, Healthy);
        assert_eq!(worker_down.status, Degraded);
        assert_eq!(worker_down.reason, "Worker down");
    }
}
