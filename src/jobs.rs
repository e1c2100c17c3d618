//! Jobs: what the gateway enqueues and the workers run.
//!
//! A job is submitted as JSON `{"type": "<task type>", ...params}`; unknown types,
//! unknown fields and out-of-range parameters are rejected before anything is enqueued
//! ([`JobSpec::parse_submission`]). Its record (state, attempts, timings, result or
//! error) lives in the store under its id for [`RECORD_TTL`], so `GET /api/jobs/{id}` can
//! answer after the job is done.
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

/// Everything known about one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredRecord")]
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
    pub result: Option<Value>,
    /// Why the last attempt failed.
    #[serde(default)]
    pub error: Option<String>,
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
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<JobSpec, String> {
        JobSpec::parse_submission(json.as_bytes())
    }

    #[test]
    fn specs_parse_with_defaults() {
        assert_eq!(
            parse(r#"{"type":"data_processing"}"#),
            Ok(JobSpec::DataProcessing {
                size: DataSize(DEFAULT_DATA_SIZE),
                fail: None,
                hold_ms: HoldMs(0),
            })
        );
        assert_eq!(parse(r#"{"type":"cleanup"}"#), Ok(JobSpec::Cleanup {}));
    }

    #[test]
    fn bad_submissions_are_rejected() {
        for bad in [
            r#"{"type":"mine_bitcoin"}"#,
            r#"{"type":"data_processing","size":"big"}"#,
            r#"{"type":"data_processing","size":-1}"#,
            r#"{"type":"data_processing","size":0}"#,
            r#"{"type":"data_processing","size":5000001}"#,
            r#"{"type":"data_processing","size":4294967295}"#,
            r#"{"type":"data_processing","hold_ms":60001}"#,
            r#"{"type":"cleanup","extra":1}"#,
            r#"{"type":"cleanup","size":1}"#,
            r#"{"size":10}"#,
            r#"[]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn records_round_trip_with_flat_type() {
        let record = JobRecord::new(JobSpec::HealthCheck {}, 1.5);
        let json = serde_json::to_value(&record).expect("serialize");
        assert_eq!(json["type"], "health_check");
        assert_eq!(json["state"], "queued");
        assert_eq!(JobRecord::decode(&record.encode()), Ok(record));
    }

    #[test]
    fn records_of_another_version_keep_their_fields() {
        let raw = r#"{"id":"a","type":"data_processing","size":10,"priority":"high",
                      "state":"queued","attempts":0,"created_at":1.0,"trace":{"x":1}}"#;
        let record = JobRecord::decode(raw).expect("lenient");
        assert_eq!(record.spec.task_type(), TaskType::DataProcessing);
        let written: Value = serde_json::from_str(&record.encode()).expect("json");
        assert_eq!(written["priority"], "high");
        assert_eq!(written["trace"]["x"], 1);
        assert_eq!(written["size"], 10);
    }

    #[test]
    fn a_trace_parent_is_kept_and_records_without_one_still_read() {
        let mut record = JobRecord::new(JobSpec::Cleanup {}, 1.0);
        let old: Value = serde_json::from_str(&record.encode()).expect("json");
        assert!(old.get("traceparent").is_none());
        assert_eq!(JobRecord::decode(&record.encode()), Ok(record.clone()));
        record.traceparent =
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
        let decoded = JobRecord::decode(&record.encode()).expect("decodes");
        assert_eq!(decoded.traceparent, record.traceparent);
        assert!(decoded.other.is_empty());
    }

    #[test]
    fn records_are_held_to_the_submission_rules() {
        for bad in [
            r#"{"id":"a","type":"data_processing","size":4294967295,"state":"queued","attempts":0,"created_at":1}"#,
            r#"{"id":"a","type":"teleport","state":"queued","attempts":0,"created_at":1}"#,
            r#"{"id":"a","state":"queued","attempts":0,"created_at":1}"#,
            r#"{"id":"a","type":"cleanup","state":"paused","attempts":0,"created_at":1}"#,
            r#"not json"#,
        ] {
            assert!(JobRecord::decode(bad).is_err(), "{bad} decoded");
        }
    }

    #[test]
    fn a_dead_mark_keeps_the_record() {
        let marked =
            mark_dead(r#"{"id":"a","size":4294967295}"#, "size too big", 2.0).expect("an object");
        let v: Value = serde_json::from_str(&marked).expect("json");
        assert_eq!(v["state"], "dead");
        assert_eq!(v["size"], 4_294_967_295u64);
        assert_eq!(mark_dead("[1]", "x", 2.0), None);
    }
}

/// Property tests: no input, however strange, makes a parser panic, and what parses is
/// within the rules.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// JSON-ish text: mostly the shapes a job takes, with arbitrary values in them.
    fn jobish() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[a-z_]{0,12}".prop_map(|s| format!("{s:?}")),
            Just("null".to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
        ];
        let key = prop_oneof![
            Just("type"),
            Just("size"),
            Just("fail"),
            Just("hold_ms"),
            Just("id"),
            Just("state"),
            Just("attempts"),
            Just("created_at"),
            Just("extra"),
        ];
        prop::collection::vec((key, value), 0..8).prop_map(|fields| {
            let body: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| format!("{k:?}:{v}"))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    }

    proptest! {
        #[test]
        fn submissions_never_panic_and_stay_in_range(text in prop_oneof![jobish(), ".{0,64}"]) {
            if let Ok(JobSpec::DataProcessing { size, hold_ms, .. }) =
                JobSpec::parse_submission(text.as_bytes())
            {
                prop_assert!((1..=MAX_DATA_SIZE as usize).contains(&size.get()));
                prop_assert!(hold_ms.duration() <= Duration::from_millis(u64::from(MAX_HOLD_MS)));
            }
        }

        #[test]
        fn stored_records_never_panic_and_round_trip(text in prop_oneof![jobish(), ".{0,64}"]) {
            if let Ok(record) = JobRecord::decode(&text) {
                prop_assert_eq!(JobRecord::decode(&record.encode()), Ok(record));
            }
            let _ = mark_dead(&text, "reason", 1.0);
        }
    }
}
