//! The shared state every role reads and writes. [`Store`] is the one interface; it has
//! two backends: [`redis::RedisStore`] (deadpool-redis, for a cluster) and
//! [`memory::MemoryStore`] (in-process, for `svc all` on a laptop). Both pass the same
//! contract tests in `tests/api/store.rs`.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::StoreSettings;

/// Keys kept from the original system, so counters survive a migration.
pub mod keys {
    /// Gateway request counter, incremented by `GET /api/status`.
    pub const TOTAL_REQUESTS: &str = "api:total_requests";
    /// Type of the last task a worker finished.
    pub const WORKER_LAST_TASK: &str = "worker:last_task";
    /// Unix seconds (float) when a worker last finished a task.
    pub const WORKER_LAST_TASK_TIME: &str = "worker:last_task_time";

    /// Tasks of `task_type` finished, all time.
    pub fn worker_tasks(task_type: &str) -> String {
        format!("worker:tasks:{task_type}")
    }
}

/// Names of the per-minute series the worker's tasks write and the dashboard reads.
pub mod series {
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
}

/// Service names used in health history and on the dashboard, as the original named them.
pub mod services {
    /// The gateway.
    pub const API_GATEWAY: &str = "api-gateway";
    /// The workers.
    pub const WORKER: &str = "worker-service";
    /// The shared Redis.
    pub const REDIS: &str = "redis";
    /// The dashboard.
    pub const DASHBOARD: &str = "dashboard";
    /// All of them, in display order.
    pub const ALL: [&str; 4] = [API_GATEWAY, WORKER, REDIS, DASHBOARD];
}

/// Why a store operation failed. Every variant means "the store is unavailable right
/// now": callers degrade and retry later, they never crash.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (refused, pool exhausted, reconnecting).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the operation timeout.
    #[error("store timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store answered with an error.
    #[error("store command failed: {0}")]
    Command(String),
}

/// Operations the roles need from the shared state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"redis"` or `"memory"`, for logs and `/api/info`.
    fn backend(&self) -> &'static str;
    /// Round trip to the store.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Adds one to the integer at `key` (0 when absent) and returns the new value.
    async fn incr(&self, key: &str) -> Result<i64, StoreError>;
    /// The string at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets `key` to `value`, with no expiry (the original's compatibility keys).
    async fn set(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Sets `key` only if it does not exist, expiring after `ttl`: `true` when this call
    /// set it. A cluster-wide "first one wins" (e.g. who enqueues a scheduler tick).
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Announces `instance` as alive until `ttl` from now; drops expired instances.
    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError>;
    /// Instances whose heartbeat has not expired.
    async fn instances(&self) -> Result<Vec<Instance>, StoreError>;

    /// Appends a probe result to its service's history, keeping the newest `keep`.
    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError>;
    /// The newest `limit` probe results of `service`, newest first.
    async fn health_history(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError>;

    /// Adds `delta` to minute `minute` of the per-minute series `series`.
    async fn series_add(&self, series: &str, minute: i64, delta: i64) -> Result<(), StoreError>;
    /// Sets minute `minute` of `series` to `value` (gauges such as queue depth).
    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError>;
    /// The points of `series` from minute `since` on, oldest first.
    async fn series(&self, series: &str, since: i64) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Removes the points of `series` before minute `before`; returns how many.
    async fn series_trim(&self, series: &str, before: i64) -> Result<usize, StoreError>;
}

/// A running instance of a role, as its heartbeat announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// `gateway`, `worker` or `dashboard`.
    pub role: String,
    /// Unique per process: pod name (or host name) and pid.
    pub id: String,
    /// Version of the binary.
    pub version: String,
    /// Unix seconds when the process started.
    pub started_at: f64,
    /// Where it serves HTTP (`host:port`).
    pub address: String,
}

/// Health of a service as a probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Answered, ready and fast.
    Healthy,
    /// Answered, but slowly or not ready.
    Degraded,
    /// No usable answer.
    Down,
}

/// One probe of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    /// Probed service (`api-gateway`, `worker-service`, `redis`, `dashboard`).
    pub service: String,
    /// Unix seconds of the probe.
    pub timestamp: f64,
    /// What the probe found.
    pub status: ServiceState,
    /// Round-trip time, when there was an answer.
    pub response_time_ms: Option<f64>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

/// A store shared by the handlers and tasks of one process.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured store; `prefix` starts every key this system adds. This never
/// waits for Redis: a role starts while Redis is down and connects once it appears.
pub fn open(settings: &StoreSettings, prefix: &str) -> Result<SharedStore, StoreError> {
    Ok(match settings {
        StoreSettings::Memory => Arc::new(memory::MemoryStore::new()),
        StoreSettings::Redis(redis) => Arc::new(redis::RedisStore::new(redis, prefix)?),
    })
}

/// The minute (Unix seconds / 60) that `unix_seconds` falls in.
pub fn minute_of(unix_seconds: f64) -> i64 {
    (unix_seconds / 60.0).floor() as i64
}
