//! Jobs: what the gateway enqueues and the workers run.
//!
//! A job is submitted as JSON `{"type": "<task type>", ...params}`; unknown types,
//! unknown fields and wrong parameter types are rejected before anything is enqueued.
//! Its record (state, attempts, timings, result or error) lives in the store under its
//! id for [`RECORD_TTL`], so `GET /api/jobs/{id}` can answer after the job is done.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a job record is kept after its last update.
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest `data_processing` size accepted: a few seconds of CPU at most.
pub const MAX_DATA_SIZE: u32 = 5_000_000;
/// `data_processing` size when none is given.
pub const DEFAULT_DATA_SIZE: u32 = 100_000;

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
}

impl TaskType {
    /// Every type, in the original's order.
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
        }
    }
}

/// What to run: the task type and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSpec {
    /// Hash `size` pseudo-random numbers and sort them.
    DataProcessing {
        /// Number of items, 1 to [`MAX_DATA_SIZE`].
        #[serde(default = "default_size")]
        size: u32,
        /// Fail every attempt with this message: exercises retries and the
        /// dead-letter stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fail: Option<String>,
    },
    /// Apply retention.
    Cleanup {},
    /// Probe every service.
    HealthCheck {},
    /// Roll counters into minute series.
    MetricsCollection {},
}

fn default_size() -> u32 {
    DEFAULT_DATA_SIZE
}

impl JobSpec {
    /// The spec a scheduler tick enqueues for `task`.
    pub fn periodic(task: TaskType) -> Self {
        match task {
            TaskType::DataProcessing => JobSpec::DataProcessing {
                size: DEFAULT_DATA_SIZE,
                fail: None,
            },
            TaskType::Cleanup => JobSpec::Cleanup {},
            TaskType::HealthCheck => JobSpec::HealthCheck {},
            TaskType::MetricsCollection => JobSpec::MetricsCollection {},
        }
    }

    /// Its task type.
    pub fn task_type(&self) -> TaskType {
        match self {
            JobSpec::DataProcessing { .. } => TaskType::DataProcessing,
            JobSpec::Cleanup {} => TaskType::Cleanup,
            JobSpec::HealthCheck {} => TaskType::HealthCheck,
            JobSpec::MetricsCollection {} => TaskType::MetricsCollection,
        }
    }

    /// Checks the parameters' ranges (their types are checked when parsing).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            JobSpec::DataProcessing { size, .. } if *size == 0 || *size > MAX_DATA_SIZE => Err(
                format!("size must be between 1 and {MAX_DATA_SIZE}, not {size}"),
            ),
            _ => Ok(()),
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
    /// Failed too often; it is in the dead-letter stream.
    Dead,
}

/// Everything known about one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Unique id.
    pub id: String,
    /// What to run.
    #[serde(flatten)]
    pub spec: JobSpec,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Unix seconds when it was enqueued.
    pub created_at: f64,
    /// For scheduled jobs, the tick (Unix seconds) it was planned for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<f64>,
    /// Unix seconds when the last attempt started.
    #[serde(default)]
    pub started_at: Option<f64>,
    /// Unix seconds when it finished (done or dead).
    #[serde(default)]
    pub finished_at: Option<f64>,
    /// Instance that ran the last attempt.
    #[serde(default)]
    pub worker: Option<String>,
    /// What the task returned.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Why the last attempt failed.
    #[serde(default)]
    pub error: Option<String>,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<JobSpec, String> {
        serde_json::from_str::<JobSpec>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn specs_parse_with_defaults() {
        assert_eq!(
            parse(r#"{"type":"data_processing"}"#),
            Ok(JobSpec::DataProcessing {
                size: DEFAULT_DATA_SIZE,
                fail: None
            })
        );
        assert_eq!(parse(r#"{"type":"cleanup"}"#), Ok(JobSpec::Cleanup {}));
    }

    #[test]
    fn bad_specs_are_rejected() {
        for bad in [
            r#"{"type":"mine_bitcoin"}"#,
            r#"{"type":"data_processing","size":"big"}"#,
            r#"{"type":"data_processing","size":-1}"#,
            r#"{"type":"cleanup","extra":1}"#,
            r#"{"size":10}"#,
            r#"[]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
        let too_big = JobSpec::DataProcessing {
            size: MAX_DATA_SIZE + 1,
            fail: None,
        };
        assert!(too_big.validate().is_err());
    }

    #[test]
    fn records_round_trip_with_flat_type() {
        let record = JobRecord::new(JobSpec::HealthCheck {}, 1.5);
        let json = serde_json::to_value(&record).expect("serialize");
        assert_eq!(json["type"], "health_check");
        assert_eq!(json["state"], "queued");
        let back: JobRecord = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, record);
    }
}
