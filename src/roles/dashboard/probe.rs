//! Probing the other services, and the system state that follows from the answers.
//!
//! A probe is one `GET /health/ready` with a short timeout. It finds a service
//! - healthy: 200 within [`SLOW_AFTER`];
//! - degraded: 200 but slower than that, or any other answer (503 while not ready);
//! - down: no answer at all (refused, unresolvable, timed out).
//!
//! The system is down when the gateway is (nothing reaches the API), degraded when any
//! service is not healthy, else healthy; [`System`] says which and why.

use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use crate::store::{ServiceState, SharedStore, services};
use crate::telemetry::names;

/// How long a probe waits for an answer before calling the service down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer slower than this makes a service degraded.
pub const SLOW_AFTER: Duration = Duration::from_secs(1);

/// A service probed over HTTP.
#[derive(Debug, Clone)]
pub struct Target {
    /// Service name (`api-gateway`, `worker-service`).
    pub name: &'static str,
    /// Its readiness URL.
    pub url: Url,
}

impl Target {
    /// The service `name` whose base URL is `base`: probed at `<base>/health/ready`.
    pub fn new(name: &'static str, base: &Url) -> Result<Self, url::ParseError> {
        let url = Url::parse(&format!(
            "{}/health/ready",
            base.as_str().trim_end_matches('/')
        ))?;
        Ok(Target { name, url })
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// Service name.
    pub name: &'static str,
    /// Its state.
    pub status: ServiceState,
    /// Round trip of the probe, when the service answered.
    pub response_time_ms: Option<f64>,
    /// What was wrong, when something was.
    pub error: Option<String>,
}

impl Probe {
    fn new(name: &'static str, status: ServiceState) -> Self {
        Probe {
            name,
            status,
            response_time_ms: None,
            error: None,
        }
    }
}

/// Probes `target` once.
pub async fn http(client: &reqwest::Client, target: &Target) -> Probe {
    let start = Instant::now();
    let answer = match client.get(target.url.clone()).send().await {
        Ok(res) => {
            let status = res.status();
            // The reason a service gives for not being ready, when it gives one.
            let body = res.text().await.unwrap_or_default();
            Ok((status, body))
        }
        Err(e) => Err(e),
    };
    let elapsed = start.elapsed();
    let mut probe = Probe::new(target.name, ServiceState::Healthy);
    match answer {
        Ok((status, _)) if status.is_success() => {
            probe.response_time_ms = Some(millis(elapsed));
            if elapsed > SLOW_AFTER {
                probe.status = ServiceState::Degraded;
                probe.error = Some(format!("slow: answered in {} ms", elapsed.as_millis()));
            }
        }
        Ok((status, body)) => {
            probe.response_time_ms = Some(millis(elapsed));
            probe.status = ServiceState::Degraded;
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned));
            probe.error = Some(match reason {
                Some(reason) => format!("not ready (HTTP {}): {reason}", status.as_u16()),
                None => format!("not ready (HTTP {})", status.as_u16()),
            });
        }
        Err(e) => {
            probe.status = ServiceState::Down;
            probe.error = Some(describe(&e));
        }
    }
    count(&probe);
    probe
}

/// Pings the store the dashboard reads.
pub async fn store(store: &SharedStore) -> Probe {
    let start = Instant::now();
    let result = store.ping().await;
    let mut probe = Probe::new(services::REDIS, ServiceState::Healthy);
    match result {
        Ok(()) => probe.response_time_ms = Some(millis(start.elapsed())),
        Err(e) => {
            probe.status = ServiceState::Down;
            probe.error = Some(e.to_string());
        }
    }
    count(&probe);
    probe
}

fn count(probe: &Probe) {
    metrics::counter!(
        names::DASHBOARD_PROBES,
        "service" => probe.name,
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

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A short, human reason for a failed request: the innermost cause says the most
/// ("Connection refused"), the outer layers only repeat the URL.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", PROBE_TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause.to_string()
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

/// Display name of a service.
pub fn title(service: &str) -> &str {
    match service {
        services::API_GATEWAY => "API gateway",
        services::WORKER => "Worker",
        services::REDIS => "Redis",
        services::DASHBOARD => "Dashboard",
        other => other,
    }
}

/// Down when the gateway is down, degraded when anything is not healthy.
pub fn system(probes: &[Probe]) -> System {
    let why = |p: &Probe| match &p.error {
        Some(e) => format!("{} {}: {e}", title(p.name), state_name(p.status)),
        None => format!("{} {}", title(p.name), state_name(p.status)),
    };
    if let Some(gateway) = probes
        .iter()
        .find(|p| p.name == services::API_GATEWAY && p.status == ServiceState::Down)
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

    fn probe(name: &'static str, status: ServiceState) -> Probe {
        Probe::new(name, status)
    }

    #[test]
    fn gateway_down_is_system_down_and_anything_else_degrades() {
        use ServiceState::*;
        let all = |g, w, r| {
            system(&[
                probe(services::API_GATEWAY, g),
                probe(services::WORKER, w),
                probe(services::REDIS, r),
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

    #[test]
    fn probe_url_keeps_a_base_path() {
        let base = Url::parse("http://gw:8080/prefix/").expect("url");
        let target = Target::new("x", &base).expect("target");
        assert_eq!(target.url.as_str(), "http://gw:8080/prefix/health/ready");
    }
}
