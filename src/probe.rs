//! The one probe of a service, used by the worker's `health_check` and by the
//! dashboard, so both judge alike.
//!
//! An HTTP probe is one `GET <base>/health/ready` on a fresh connection. It finds a
//! service
//! - healthy: 2xx within [`DEGRADED_AFTER`];
//! - degraded: 2xx but slower than that, or any other answer (503 while not ready,
//!   with the service's own reason);
//! - down: no answer within [`PROBE_TIMEOUT`] (refused, unresolvable, timed out).
//!
//! A replica is probed at the address its heartbeat announces ([`instance`]); one that
//! announces none cannot be probed, which says nothing of its health: it is neither
//! ready nor unready, and is named as [`NOT_PROBED`] rather than skipped or judged.
//! A role is judged from its replicas' probes by one rule ([`replicas`]): healthy when
//! every replica is ready and quick, degraded when some are not ("1 of 2 gateways
//! ready"), down when none is.
//!
//! The store probe is one PING, judged by the same thresholds.

use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use crate::clock::millis_f64;
use crate::service::{Role, Service, ServiceState};
use crate::store::{Instance, SharedStore};
use crate::traces;

/// How long a probe waits for an answer before calling the service down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer slower than this makes a service degraded.
pub const DEGRADED_AFTER: Duration = Duration::from_secs(1);

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// The service probed.
    pub name: Service,
    /// Its state.
    pub status: ServiceState,
    /// Round trip of the probe, when the service answered.
    pub response_time_ms: Option<f64>,
    /// What was wrong, when something was.
    pub error: Option<String>,
    /// Whether it said it is ready (answered 2xx, however slowly): what counts a
    /// replica as ready.
    #[serde(skip)]
    pub ready: bool,
}

impl Probe {
    /// A probe result with no timing and no error.
    pub fn new(name: Service, status: ServiceState) -> Self {
        Probe {
            name,
            status,
            response_time_ms: None,
            error: None,
            ready: status == ServiceState::Healthy,
        }
    }
}

/// The client every probe uses: [`PROBE_TIMEOUT`], and a fresh connection per probe (a
/// pooled one the service closed while idle would fail the probe, and the connect
/// time is part of the answer anyway).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::http_client()
        .timeout(PROBE_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
}

/// The readiness URL of a service whose base URL is `base` (a base path is kept).
pub fn readiness_url(base: &Url) -> Result<Url, url::ParseError> {
    Url::parse(&format!(
        "{}/health/ready",
        base.as_str().trim_end_matches('/')
    ))
}

/// Probes `url` (a readiness URL) of `service` once; with traces on the request
/// carries its span's `traceparent`.
#[tracing::instrument(
    name = "probe",
    level = "debug",
    skip(client),
    fields(%service, %url, otel.kind = "client")
)]
pub async fn http(client: &reqwest::Client, service: Service, url: &Url) -> Probe {
    let mut request = client.get(url.clone());
    if let Some(traceparent) = traces::traceparent(&tracing::Span::current()) {
        request = request.header(traces::TRACEPARENT, traceparent);
    }
    let start = Instant::now();
    let answer = match request.send().await {
        // The reason a service gives for not being ready, when it gives one.
        Ok(res) => Ok((res.status(), res.text().await.unwrap_or_default())),
        Err(e) => Err(e),
    };
    let elapsed = start.elapsed();
    let mut probe = Probe::new(service, ServiceState::Healthy);
    match answer {
        Ok((status, _)) if status.is_success() => {
            probe.response_time_ms = Some(millis_f64(elapsed));
            probe.ready = true;
            if elapsed > DEGRADED_AFTER {
                probe.status = ServiceState::Degraded;
                probe.error = Some(format!("slow: answered in {} ms", elapsed.as_millis()));
            }
        }
        Ok((status, body)) => {
            probe.response_time_ms = Some(millis_f64(elapsed));
            probe.status = ServiceState::Degraded;
            probe.ready = false;
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
            probe.ready = false;
            probe.error = Some(describe(e));
        }
    }
    probe
}

/// What is said of a replica that announces no address: it cannot be probed.
pub const NOT_PROBED: &str = "not probed: announces no address (set ADVERTISE_ADDR or POD_IP)";

/// Probes `instance` at the address its heartbeat announces (`host:port`), as
/// [`http`] does. `None` when it announces no address: it cannot be probed, and is
/// then neither ready nor unready (see [`NOT_PROBED`]); an address that is no
/// `host:port` makes it down.
pub async fn instance(client: &reqwest::Client, instance: &Instance) -> Option<Probe> {
    let address = instance.address.as_deref()?;
    let service = instance.role.service();
    Some(
        match Url::parse(&format!("http://{address}/health/ready")) {
            Ok(url) => http(client, service, &url).await,
            Err(e) => Probe {
                error: Some(format!("bad address {address:?}: {e}")),
                ..Probe::new(service, ServiceState::Down)
            },
        },
    )
}

/// Ready and counted replicas of one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Replicas that answered ready.
    pub ready: usize,
    /// Replicas probed (or lost).
    pub total: usize,
}

/// How many of a role's replicas make "1 of 2 gateways".
fn plural(role: Role, n: usize) -> String {
    let noun = match role {
        Role::Gateway => "gateway",
        Role::Worker => "worker",
        Role::Dashboard => "dashboard",
    };
    if n == 1 {
        noun.to_owned()
    } else {
        format!("{noun}s")
    }
}

/// The state of `role` from its replicas: each one's id and probe, `None` for one
/// that could not be probed (named, counted neither way). `None` when no replica could
/// be probed: the caller decides then (a Service URL, or what it knows of itself).
pub fn replicas(role: Role, replicas: &[(&str, Option<&Probe>)]) -> Option<(Probe, Count)> {
    let probed: Vec<(&str, &Probe)> = replicas
        .iter()
        .filter_map(|(id, probe)| Some((*id, (*probe)?)))
        .collect();
    if probed.is_empty() {
        return None;
    }
    let count = Count {
        ready: probed.iter().filter(|(_, p)| p.ready).count(),
        total: probed.len(),
    };
    let slowest = |ready_only: bool| {
        probed
            .iter()
            .filter(|(_, p)| !ready_only || p.ready)
            .filter_map(|(_, p)| p.response_time_ms)
            .max_by(f64::total_cmp)
    };
    let problems: Vec<String> = probed
        .iter()
        .filter_map(|(id, p)| p.error.as_ref().map(|e| format!("{id}: {e}")))
        .collect();
    // Said, but no verdict on the role either way.
    let unprobed = replicas
        .iter()
        .filter(|(_, probe)| probe.is_none())
        .map(|(id, _)| format!("{id}: {NOT_PROBED}"));
    let status = if count.ready == 0 {
        ServiceState::Down
    } else if count.ready < count.total || !problems.is_empty() {
        ServiceState::Degraded
    } else {
        ServiceState::Healthy
    };
    let summary = format!(
        "{} of {} {} ready",
        count.ready,
        count.total,
        plural(role, count.total)
    );
    let said: Vec<String> = match status {
        ServiceState::Healthy => unprobed.collect(),
        _ => std::iter::once(summary)
            .chain(problems)
            .chain(unprobed)
            .collect(),
    };
    let probe = Probe {
        name: role.service(),
        status,
        response_time_ms: slowest(true).or_else(|| slowest(false)),
        error: (!said.is_empty()).then(|| said.join("; ")),
        ready: count.ready > 0,
    };
    Some((probe, count))
}

/// Pings `store`.
pub async fn store(store: &SharedStore) -> Probe {
    let start = Instant::now();
    let result = store.ping().await;
    let elapsed = start.elapsed();
    let mut probe = Probe::new(Service::Redis, ServiceState::Healthy);
    match result {
        Ok(()) => {
            probe.response_time_ms = Some(millis_f64(elapsed));
            if elapsed > DEGRADED_AFTER {
                probe.status = ServiceState::Degraded;
                probe.error = Some(format!("slow: answered in {} ms", elapsed.as_millis()));
            }
        }
        Err(e) => {
            probe.status = ServiceState::Down;
            probe.ready = false;
            probe.error = Some(e.to_string());
        }
    }
    probe
}

/// A short, human reason for a failed request: the innermost cause says the most
/// ("Connection refused"), the outer layers only repeat the URL.
pub fn describe(e: reqwest::Error) -> String {
    // Without the URL: it may carry a credential, and the caller knows it anyway.
    let e = e.without_url();
    if e.is_timeout() {
        return format!("no answer within {} s", PROBE_TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Role;

    fn worker_at(address: Option<&str>) -> Instance {
        Instance {
            role: Role::Worker,
            id: "w-1".into(),
            version: "1".into(),
            started_at: 0.0,
            address: address.map(str::to_owned),
            faults: Vec::new(),
            location: None,
        }
    }

    #[tokio::test]
    async fn an_instance_is_probed_at_its_address_unless_it_announces_none() {
        let client = client().expect("client");
        assert_eq!(instance(&client, &worker_at(None)).await, None);

        let bad = instance(&client, &worker_at(Some("no such:host")))
            .await
            .expect("probed");
        assert_eq!(
            (bad.name, bad.status),
            (Service::Worker, ServiceState::Down)
        );
        assert!(bad.error.is_some_and(|e| e.starts_with("bad address")));

        // Port 1 (tcpmux) has no listener here: refused at once.
        let refused = instance(&client, &worker_at(Some("127.0.0.1:1")))
            .await
            .expect("probed");
        assert_eq!(refused.status, ServiceState::Down);
        assert!(!refused.ready);
    }

    #[test]
    fn readiness_url_keeps_a_base_path() {
        let base = Url::parse("http://gw:8080/prefix/").expect("url");
        let url = readiness_url(&base).expect("url");
        assert_eq!(url.as_str(), "http://gw:8080/prefix/health/ready");
    }
}
