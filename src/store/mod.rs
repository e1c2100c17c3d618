//! The shared state every role reads and writes. [`Store`] is the one interface; it has
//! two backends: [`redis::RedisStore`] (deadpool-redis, for a cluster) and
//! [`memory::MemoryStore`] (in-process, for `svc all` on a laptop). Both pass the same
//! contract tests in `tests/api/store.rs`.

pub mod breaker;
pub mod memory;
pub mod redis;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::StoreSettings;
use crate::jobs::{JobRecord, TaskType};
use crate::service::{Role, Service, Watched};

pub use targets::{TargetReport, TargetSample, TargetState, Transition};

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

    /// Every series the system writes: what retention trims.
    pub fn all() -> Vec<String> {
        let mut names = vec![REQUESTS.to_owned(), QUEUE_DEPTH.to_owned()];
        names.extend(super::TaskType::ALL.iter().map(|t| tasks(t.as_str())));
        for service in super::Service::ALL {
            names.push(checks(service.as_str()));
            names.push(up(service.as_str()));
        }
        names
    }
}

/// Why a store operation failed. Callers degrade and retry later; they never crash.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (refused, authentication, reconnecting); the text
    /// says which.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the operation timeout.
    #[error("store timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store answered with an error.
    #[error("store command failed: {0}")]
    Command(String),
    /// A write reached the primary but not the replicas it had to reach in time: it
    /// may be lost if the primary fails now.
    #[error("not replicated: {0}")]
    NotReplicated(String),
    /// The value under `key` is not what this system writes there (another program's,
    /// a hand edit, or a version this build cannot read).
    #[error("unexpected value under {key}: {reason}")]
    Data {
        /// The full key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Whether this says the connection failed, rather than one command or value.
    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }

    /// A command's failure blamed on the value under `key` (wrong type, not a number).
    pub fn for_key(self, key: &str) -> Self {
        match self {
            StoreError::Command(reason) => StoreError::Data {
                key: key.to_owned(),
                reason,
            },
            other => other,
        }
    }
}

/// Operations the roles need from the shared state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"redis"` or `"memory"`, for logs and `/api/info`.
    fn backend(&self) -> &'static str;
    /// The full key of `name` in this store: the prefix of keys this system adds
    /// goes first. For messages that name a key.
    fn key(&self, name: &str) -> String;
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
    /// Removes `instance`'s heartbeat at once: it shut down cleanly, so it is gone,
    /// not lost.
    async fn depart(&self, instance: &Instance) -> Result<(), StoreError>;
    /// Instances whose heartbeat expired less than `window` ago (at most
    /// [`LOST_KEPT`]) without a [`Store::depart`]: they vanished. Each comes with the
    /// Unix seconds its heartbeat expired.
    async fn lost_instances(&self, window: Duration) -> Result<Vec<(Instance, f64)>, StoreError>;

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

    /// Target `name`'s tracked state as stored (JSON), if any.
    async fn target_state(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Sets target `name`'s tracked state to `state` if it is still `seen` (`None`:
    /// absent) and, in the same step, adds `sample` (when given) to the target's
    /// newest samples and its minute and hour tallies. `false`, with nothing written,
    /// when the state changed meanwhile (see [`targets::observe`]).
    async fn put_target_state(
        &self,
        name: &str,
        seen: Option<&str>,
        state: &str,
        sample: Option<&TargetSample>,
    ) -> Result<bool, StoreError>;
    /// What is known of each target of `names` at `now`, in that order.
    async fn target_reports(
        &self,
        names: &[String],
        now: f64,
    ) -> Result<Vec<TargetReport>, StoreError>;

    /// Saves `job`'s record and appends it to the job queue, unless the queue holds
    /// [`MAX_QUEUE`] entries already: then `Ok(false)` and nothing is written.
    async fn enqueue(&self, job: &JobRecord) -> Result<bool, StoreError>;
    /// Up to `max` jobs never delivered before, for `consumer`; waits up to `wait` for
    /// the first one.
    async fn receive(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Up to `max` jobs delivered to some consumer at least `idle` ago and never
    /// finished (their worker died or gave up), now delivered to `consumer`. The scan
    /// starts at `cursor` (`"0-0"`: the start) and the answer says where the next one
    /// goes on, so entries at the head of the pending list never hide the rest.
    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
        cursor: &str,
    ) -> Result<Reclaimed, StoreError>;
    /// Tells the queue `consumer` is still working on `delivery`, so it is not
    /// reclaimed while a long job runs.
    async fn keep_alive(&self, consumer: &str, delivery: &Delivery) -> Result<(), StoreError>;
    /// Saves a job's record (state changes while it runs).
    async fn save_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// A job's record as stored (see [`JobRecord::decode`]), if it exists and has not
    /// expired.
    async fn load_job(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Ends a delivery in one atomic step: saves `job`'s record and acknowledges the
    /// delivery. A `Done` job also counts in the original's keys (`worker:tasks:<type>`,
    /// `worker:last_task`, `worker:last_task_time`); a `Dead` one goes to the
    /// dead-letter stream with its error.
    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError>;
    /// Acknowledges a delivery whose job record is gone (expired) or already final.
    async fn discard(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// Ends a delivery that cannot be run (no job id, or a record that cannot be read):
    /// it goes to the dead-letter stream with `reason`, and its record, when it is a
    /// JSON object, is marked dead with every field kept. Nothing is deleted silently.
    async fn reject(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError>;
    /// Depth, pending and dead-letter counts of the queue.
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;
    /// Trims the dead-letter stream to its newest `keep` entries; returns how many went.
    async fn trim_dead_letters(&self, keep: usize) -> Result<usize, StoreError>;
}

/// How long expired heartbeats are kept for [`Store::lost_instances`].
pub const LOST_KEPT: Duration = Duration::from_secs(15 * 60);
/// Days incidents are kept.
pub const INCIDENTS_KEPT_DAYS: f64 = 30.0;
/// Most incidents kept, whatever their age.
pub const INCIDENTS_KEPT: usize = 10_000;

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

/// Most entries the job queue holds; beyond it `enqueue` refuses (nothing is dropped).
pub const MAX_QUEUE: usize = 100_000;

/// One delivery of a queued job to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Queue entry id (what is acknowledged).
    pub entry: String,
    /// The job's id; `None` for an entry that carries none (not written by svc).
    pub job_id: Option<String>,
}

/// What one [`Store::reclaim`] took over, and where the next scan goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Deliveries now this consumer's.
    pub deliveries: Vec<Delivery>,
    /// Cursor of the next scan; `"0-0"` once the whole pending list was scanned.
    pub cursor: String,
}

/// The cursor of a reclaim scan from the start of the pending list.
pub const RECLAIM_START: &str = "0-0";

/// How much work the queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Entries not delivered to any consumer yet.
    pub depth: u64,
    /// Entries delivered and not finished.
    pub pending: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
}

/// A running instance of a role, as its heartbeat announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The role it runs.
    pub role: Role,
    /// Unique per process: pod name (or host name) and pid.
    pub id: String,
    /// Version of the binary.
    pub version: String,
    /// Unix seconds when the process started.
    pub started_at: f64,
    /// Where it can be probed (`host:port`): `--advertise-addr`, else `POD_IP` and
    /// its port, else its listen address; `None` when it listens on a wildcard and
    /// knows no better.
    #[serde(default)]
    pub address: Option<String>,
    /// Faults injected in it and active now (empty for records written before
    /// faults existed).
    #[serde(default)]
    pub faults: Vec<String>,
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

/// A store shared by the handlers and tasks of one process.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured store; `prefix` starts every key this system adds. This never
/// waits for Redis: a role starts while Redis is down and connects once it appears.
pub fn open(settings: &StoreSettings, prefix: &str) -> Result<SharedStore, StoreError> {
    Ok(match settings {
        StoreSettings::Memory => memory::MemoryStore::start(),
        StoreSettings::Redis(redis) => Arc::new(redis::RedisStore::new(redis, prefix)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_written_before_faults_existed_still_parses() {
        let old = r#"{"role":"worker","id":"w-1","version":"0.1.0","started_at":1.0,"address":"10.0.0.1:8081"}"#;
        let instance: Instance = serde_json::from_str(old).expect("old record");
        assert!(instance.faults.is_empty());
    }

    #[test]
    fn retention_covers_every_series_the_tasks_write() {
        let all = series::all();
        for service in Service::ALL {
            assert!(all.contains(&series::checks(service.as_str())));
            assert!(all.contains(&series::up(service.as_str())));
        }
        for task in TaskType::ALL {
            assert!(all.contains(&series::tasks(task.as_str())));
        }
        assert!(all.contains(&series::REQUESTS.to_owned()));
        assert!(all.contains(&series::QUEUE_DEPTH.to_owned()));
    }
}
