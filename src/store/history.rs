//! History: the newest probe results of svc's own services, per-minute series
//! (requests, tasks, probes, queue depth), and incidents, the periods a service or
//! target spent in a state other than healthy.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::service::{Service, ServiceState, Watched};

/// Days incidents are kept.
pub const INCIDENTS_KEPT_DAYS: f64 = 30.0;
/// Most incidents kept, whatever their age.
pub const INCIDENTS_KEPT: usize = 10_000;

/// Names of the per-minute series the worker's tasks write and the dashboard reads.
pub mod series {
    use crate::jobs::TaskType;
    use crate::service::Service;

    /// Gateway requests counted per minute.
    pub const REQUESTS: &str = "requests";
    /// Job-queue depth (entries not yet delivered), sampled each minute.
    pub const QUEUE_DEPTH: &str = "queue_depth";

    /// Tasks of `task_type` finished per minute.
    pub fn tasks(task_type: &str) -> String {
        format!("tasks:{task_type}")
    }

    /// Probes of `service` per minute.
    pub fn checks(service: &str) -> String {
        format!("checks:{service}")
    }

    /// Probes of `service` per minute that found it up (healthy or degraded).
    pub fn up(service: &str) -> String {
        format!("up:{service}")
    }

    /// Every series the system writes: what retention trims.
    pub fn all() -> Vec<String> {
        let mut names = vec![REQUESTS.to_owned(), QUEUE_DEPTH.to_owned()];
        names.extend(TaskType::ALL.iter().map(|t| tasks(t.as_str())));
        for service in Service::ALL {
            names.push(checks(service.as_str()));
            names.push(up(service.as_str()));
        }
        names
    }
}

/// A period a service spent in a state other than healthy: one state change and the
/// next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The service or target whose state changed.
    pub service: Watched,
    /// Its state before; `None` when it had none yet (a target's first verdict).
    pub from: Option<ServiceState>,
    /// Its state from `started_at` on.
    pub to: ServiceState,
    /// Unix seconds of the change.
    pub started_at: f64,
    /// Unix seconds of the next change; `None` while the incident is open.
    pub ended_at: Option<f64>,
    /// What the probe said at the change.
    pub reason: Option<String>,
    /// The maintenance window it opened in, by name: expected, and nobody was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
}

impl Incident {
    /// Seconds from start to end, or to `now` while open.
    pub fn duration_s(&self, now: f64) -> f64 {
        (self.ended_at.unwrap_or(now) - self.started_at).max(0.0)
    }

    /// This incident's id in the store: service and start time.
    pub fn id(&self) -> String {
        format!("{}@{}", self.service.as_str(), self.started_at)
    }
}

/// One probe of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    /// Probed service.
    pub service: Service,
    /// Unix seconds of the probe.
    pub timestamp: f64,
    /// What the probe found.
    pub status: ServiceState,
    /// Round-trip time, when there was an answer.
    pub response_time_ms: Option<f64>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

/// Probe results, per-minute series and incidents.
#[async_trait]
pub trait History: Send + Sync {
    /// Appends a probe result to its service's history, keeping the newest `keep`.
    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError>;
    /// The newest `limit` probe results of `service`, newest first.
    async fn health_history(
        &self,
        service: Service,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError>;

    /// Adds `delta` to minute `minute` of the per-minute series `series`.
    async fn series_add(&self, series: &str, minute: i64, delta: i64) -> Result<(), StoreError>;
    /// Adds to minute `minute` of `series` what the counter at `counter` gained since
    /// the last roll-up (all of it when the counter went down: it was reset), in one
    /// atomic step, so a retry or a concurrent roll-up never counts anything twice.
    /// Returns what was added.
    async fn roll_up(&self, counter: &str, series: &str, minute: i64) -> Result<i64, StoreError>;
    /// Sets minute `minute` of `series` to `value` (gauges such as queue depth).
    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError>;
    /// The points of `series` from minute `since` on, oldest first.
    async fn series(&self, series: &str, since: i64) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Removes the points of `series` before minute `before`; returns how many.
    async fn series_trim(&self, series: &str, before: i64) -> Result<usize, StoreError>;

    /// Records a state change of `change.service`: ends the service's open incident
    /// at `change.started_at` and, unless the service is healthy again, opens
    /// `change`. A change to the state the open incident already shows is ignored, so a
    /// repeated or second writer never splits an incident. Incidents older than
    /// [`INCIDENTS_KEPT_DAYS`] and beyond the newest [`INCIDENTS_KEPT`] are dropped.
    async fn state_change(&self, change: &Incident) -> Result<(), StoreError>;
    /// The newest `limit` incidents, newest first.
    async fn incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError>;
}
