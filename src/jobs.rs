//! Jobs: what the gateway enqueues and the workers run.
//!
//! A job is submitted as JSON `{"type": "<task type>", ...params}`; unknown types,
//! unknown fields and out-of-range parameters are rejected before anything is enqueued
//! ([`JobSpec::parse_submission`]). Its record (state, attempts, timings, result or
//! error) lives in the store under its id for [`RECORD_TTL`], so `GET /api/jobs/{id}` can
//! answer after the job is done.
//!
//! A record changes state only through its transitions ([`JobRecord::start`],
//! [`JobRecord::succeed`], [`JobRecord::fail`], [`JobRecord::kill`]), each of which
//! sets every field that goes with the new state, or refuses a change the life of a job
//! does not allow:
//!
//! ```text
//! queued --start--> running --succeed--> done
//!           ^          |
//!           |          +--fail--> failed (attempts left) --start--> running ...
//!           |          +--fail--> dead   (no attempt left)
//!           +- running (its worker died: delivered again)
//! queued | running | failed --kill--> dead
//! ```
//!
//! Records are read leniently, because replicas of two versions share one store during
//! a rolling update: fields this build does not know are kept and written back as they
//! were. The parameters are checked with the same rules as a submission, and the types
//! that carry them ([`DataSize`], [`HoldMs`]) cannot hold a value outside those rules,
//! so nothing read from the store can make a worker allocate or wait without bound.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How long a job record is kept after its last update.
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest `data_processing` size accepted: a few seconds of CPU at most.
pub const MAX_DATA_SIZE: u32 = 5_000_000;
/// `data_processing` size when none is given.
pub const DEFAULT_DATA_SIZE: u32 = 100_000;
/// Longest `hold_ms` accepted: one minute.
pub const MAX_HOLD_MS: u32 = 60_000;

/// The four task types of the original system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// CPU-bound batch work of a given size (what an HPA demo scales on).
    DataProcessing,
    /// Retention: trims history, series and the streams.
    Cleanup,
    /// Probes the gateway, dashboard, workers and Redis; records the results.
    HealthCheck,
    /// Rolls counters into per-minute series.
    MetricsCollection,
    /// Delivers one webhook notification of a target's change of state (queued by the
    /// worker that saw the change; never submitted).
    Notify,
}

impl TaskType {
    /// The original's four types, in its order: what the scheduler runs each tick and
    /// what a submission may name.
    pub const ALL: [TaskType; 4] = [
        TaskType::DataProcessing,
        TaskType::Cleanup,
        TaskType::HealthCheck,
        TaskType::MetricsCollection,
    ];

    /// The name used in JSON, keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::DataProcessing => "data_processing",
            TaskType::Cleanup => "cleanup",
            TaskType::HealthCheck => "health_check",
            TaskType::MetricsCollection => "metrics_collection",
            TaskType::Notify => "notify",
        }
    }

    /// The parameters a job of this type takes, besides `type`.
    fn params(self) -> &'static [&'static str] {
        match self {
            TaskType::DataProcessing => &["size", "fail", "hold_ms"],
            TaskType::Cleanup | TaskType::HealthCheck | TaskType::MetricsCollection => &[],
            TaskType::Notify => &["channel", "url", "body", "key"],
        }
    }
}

/// Items a `data_processing` job sorts: 1 to [`MAX_DATA_SIZE`], checked when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u32")]
pub struct DataSize(u32);

impl DataSize {
    /// The number of items.
    pub fn get(self) -> usize {
        // At most MAX_DATA_SIZE, so it fits every usize.
        self.0 as usize
    }
}

impl Default for DataSize {
    fn default() -> Self {
        DataSize(DEFAULT_DATA_SIZE)
    }
}

impl TryFrom<u64> for DataSize {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(n) if (1..=MAX_DATA_SIZE).contains(&n) => Ok(DataSize(n)),
            _ => Err(format!(
                "size must be between 1 and {MAX_DATA_SIZE}, not {n}"
            )),
        }
    }
}

impl From<DataSize> for u32 {
    fn from(size: DataSize) -> u32 {
        size.0
    }
}

/// How long a job holds its slot before finishing: 0 to [`MAX_HOLD_MS`] milliseconds.
/// Slow work on demand, for demos and for tests that need a job of known length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u32")]
pub struct HoldMs(u32);

impl HoldMs {
    /// The hold as a duration.
    pub fn duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }

    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl TryFrom<u64> for HoldMs {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(n) if n <= MAX_HOLD_MS => Ok(HoldMs(n)),
            _ => Err(format!(
                "hold_ms must be between 0 and {MAX_HOLD_MS}, not {n}"
            )),
        }
    }
}

impl From<HoldMs> for u32 {
    fn from(hold: HoldMs) -> u32 {
        hold.0
    }
}

/// What to run: the task type and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSpec {
    /// Hash `size` pseudo-random numbers and sort them.
    DataProcessing {
        /// Number of items.
        #[serde(default)]
        size: DataSize,
        /// Fail every attempt with this message: exercises retries and the
        /// dead-letter stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fail: Option<String>,
        /// Hold the slot this long after the work (slow work on demand).
        #[serde(default, skip_serializing_if = "HoldMs::is_zero")]
        hold_ms: HoldMs,
    },
    /// Apply retention.
    Cleanup {},
    /// Probe every service.
    HealthCheck {},
    /// Roll counters into minute series.
    MetricsCollection {},
    /// Tell a channel of a target's change, with the idempotency key `key`.
    Notify {
        /// The channel, by its name in the targets file: the worker that sends renders
        /// `body` (the event) for it then, so the job holds no credential. `None` in
        /// records of an older version, which hold `url` and the rendered body.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The receiver, in records of an older version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// The event (or, in an older record, the body as sent).
        body: Value,
        /// The same for every attempt: a receiver drops what it has seen.
        key: String,
    },
}

impl JobSpec {
    /// Parses a `POST /api/jobs` body: strict, every field known and in range.
    pub fn parse_submission(body: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice(body).map_err(|e| e.to_string())? {
            JobSpec::Notify { .. } => Err("notify jobs are queued by the workers only".into()),
            spec => Ok(spec),
        }
    }

    /// The spec a scheduler tick enqueues for `task` (`None`: not a periodic task).
    pub fn periodic(task: TaskType) -> Option<Self> {
        Some(match task {
            TaskType::DataProcessing => JobSpec::DataProcessing {
                size: DataSize::default(),
                fail: None,
                hold_ms: HoldMs::default(),
            },
            TaskType::Cleanup => JobSpec::Cleanup {},
            TaskType::HealthCheck => JobSpec::HealthCheck {},
            TaskType::MetricsCollection => JobSpec::MetricsCollection {},
            TaskType::Notify => return None,
        })
    }

    /// Its task type.
    pub fn task_type(&self) -> TaskType {
        match self {
            JobSpec::DataProcessing { .. } => TaskType::DataProcessing,
            JobSpec::Cleanup {} => TaskType::Cleanup,
            JobSpec::HealthCheck {} => TaskType::HealthCheck,
            JobSpec::MetricsCollection {} => TaskType::MetricsCollection,
            JobSpec::Notify { .. } => TaskType::Notify,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker is on it.
    Running,
    /// Finished; `result` says what it did.
    Done,
    /// The last attempt failed; it will be delivered again.
    Failed,
    /// Failed too often, or could not be read; it is in the dead-letter stream.
    Dead,
}

impl JobState {
    /// The name in records and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }

    /// Whether the job is over: done or dead.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Dead)
    }
}

/// A change of state the life of a job does not allow, e.g. success of a job that was
/// never started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} job cannot {to}", .from.as_str())]
pub struct IllegalTransition {
    /// The state the record was in (and is still in).
    pub from: JobState,
    /// The transition refused.
    pub to: &'static str,
}

/// Everything known about one job. Its state and the fields that go with it (attempts,
/// timings, worker, result, error) change through the transitions below, never one by
/// one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredRecord")]
pub struct JobRecord {
    /// Unique id.
    pub id: String,
    /// What to run.
    #[serde(flatten)]
    pub spec: JobSpec,
    /// Current state.
    state: JobState,
    /// Attempts started so far.
    attempts: u32,
    /// Unix seconds when it was enqueued.
    pub created_at: f64,
    /// For scheduled jobs, the tick (Unix seconds) it was planned for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<f64>,
    /// Unix seconds when the last attempt started.
    #[serde(default)]
    started_at: Option<f64>,
    /// Unix seconds when it finished (done or dead).
    #[serde(default)]
    finished_at: Option<f64>,
    /// Instance that ran the last attempt.
    #[serde(default)]
    worker: Option<String>,
    /// What the task returned.
    #[serde(default)]
    result: Option<Value>,
    /// Why the last attempt failed.
    #[serde(default)]
    error: Option<String>,
    /// The id of the request that submitted it, so its log lines can be followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the span that enqueued it, when traces are on: the
    /// worker's spans of the job continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Fields this build does not know (written by another version): kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A record as stored: the fields every version shares, and the rest, from which the
/// spec is taken with the submission's rules and the unknown fields are kept.
#[derive(Deserialize)]
struct StoredRecord {
    id: String,
    state: JobState,
    attempts: u32,
    created_at: f64,
    #[serde(default)]
    scheduled_for: Option<f64>,
    #[serde(default)]
    started_at: Option<f64>,
    #[serde(default)]
    finished_at: Option<f64>,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl TryFrom<StoredRecord> for JobRecord {
    type Error = String;

    fn try_from(stored: StoredRecord) -> Result<Self, String> {
        let mut rest = stored.rest;
        let task: TaskType = rest
            .get("type")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("type: {e}"))?
            .ok_or("no type")?;
        let mut spec = Map::new();
        for name in std::iter::once("type").chain(task.params().iter().copied()) {
            if let Some(value) = rest.remove(name) {
                spec.insert(name.to_owned(), value);
            }
        }
        let spec = serde_json::from_value(Value::Object(spec)).map_err(|e| e.to_string())?;
        Ok(JobRecord {
            id: stored.id,
            spec,
            state: stored.state,
            attempts: stored.attempts,
            created_at: stored.created_at,
            scheduled_for: stored.scheduled_for,
            started_at: stored.started_at,
            finished_at: stored.finished_at,
            worker: stored.worker,
            result: stored.result,
            error: stored.error,
            request_id: stored.request_id,
            traceparent: stored.traceparent,
            other: rest,
        })
    }
}

impl JobRecord {
    /// A new queued job.
    pub fn new(spec: JobSpec, now: f64) -> Self {
        JobRecord {
            id: uuid::Uuid::new_v4().to_string(),
            spec,
            state: JobState::Queued,
            attempts: 0,
            created_at: now,
            scheduled_for: None,
            started_at: None,
            finished_at: None,
            worker: None,
            result: None,
            error: None,
            request_id: None,
            traceparent: None,
            other: Map::new(),
        }
    }

    /// A new queued job planned by the scheduler for the tick `planned`.
    pub fn scheduled(spec: JobSpec, now: f64, planned: f64) -> Self {
        JobRecord {
            scheduled_for: Some(planned),
            ..JobRecord::new(spec, now)
        }
    }

    fn refuse(&self, to: &'static str) -> IllegalTransition {
        IllegalTransition {
            from: self.state,
            to,
        }
    }

    /// `worker` starts an attempt at `now`: queued, failed (a retry) or running (its
    /// last worker died and the job was delivered again). The last attempt's error is
    /// kept until this one ends.
    pub fn start(&mut self, worker: &str, now: f64) -> Result<(), IllegalTransition> {
        if self.state.is_final() {
            return Err(self.refuse("start"));
        }
        self.state = JobState::Running;
        self.attempts = self.attempts.saturating_add(1);
        self.started_at = Some(now);
        self.worker = Some(worker.to_owned());
        Ok(())
    }

    /// The running attempt finished at `now` with `result`.
    pub fn succeed(&mut self, result: Value, now: f64) -> Result<(), IllegalTransition> {
        if self.state != JobState::Running {
            return Err(self.refuse("succeed"));
        }
        self.state = JobState::Done;
        self.finished_at = Some(now);
        self.result = Some(result);
        self.error = None;
        Ok(())
    }

    /// The running attempt failed at `now` with `error`: the job is failed, to be
    /// delivered again, or dead when `max_attempts` are used up. Returns the new state.
    pub fn fail(
        &mut self,
        error: String,
        max_attempts: u32,
        now: f64,
    ) -> Result<JobState, IllegalTransition> {
        if self.state != JobState::Running {
            return Err(self.refuse("fail"));
        }
        self.error = Some(error);
        if self.attempts >= max_attempts {
            self.kill(now)?;
        } else {
            self.state = JobState::Failed;
        }
        Ok(self.state)
    }

    /// Gives up on the job at `now`: dead, with the last attempt's error, or, when none
    /// ended with one, the number of attempts that never finished.
    pub fn kill(&mut self, now: f64) -> Result<(), IllegalTransition> {
        if self.state.is_final() {
            return Err(self.refuse("be killed"));
        }
        self.state = JobState::Dead;
        self.finished_at = Some(now);
        if self.error.is_none() {
            self.error = Some(format!("no attempt finished in {} tries", self.attempts));
        }
        Ok(())
    }

    /// Its state; it changes through [`JobRecord::start`], [`JobRecord::succeed`],
    /// [`JobRecord::fail`] and [`JobRecord::kill`] only.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Unix seconds when the last attempt started.
    pub fn started_at(&self) -> Option<f64> {
        self.started_at
    }

    /// Unix seconds when it finished (done or dead).
    pub fn finished_at(&self) -> Option<f64> {
        self.finished_at
    }

    /// The instance that ran the last attempt.
    pub fn worker(&self) -> Option<&str> {
        self.worker.as_deref()
    }

    /// What the task returned.
    pub fn result(&self) -> Option<&Value> {
        self.result.as_ref()
    }

    /// Why the last attempt failed.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Reads a stored record; the error says why it cannot be run.
    pub fn decode(raw: &str) -> Result<Self, String> {
        serde_json::from_str(raw).map_err(|e| e.to_string())
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        // A record is a map of strings, numbers and JSON values: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Marks a stored record that cannot be run as dead with `reason`, keeping every
/// field it has; `None` when it is not even a JSON object (it is then left as it is).
pub fn mark_dead(raw: &str, reason: &str, now: f64) -> Option<String> {
    let mut record: Map<String, Value> = serde_json::from_str(raw).ok()?;
    record.insert("state".into(), "dead".into());
    record.insert("error".into(), reason.into());
    record.insert("finished_at".into(), now.into());
    serde_json::to_string(&record).ok()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
