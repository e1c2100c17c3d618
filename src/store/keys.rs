//! Every key name the system uses, built in one place. The names here are what comes
//! after the store's prefix ([`crate::store::Store::key`]), except the original
//! system's keys, which keep their names with no prefix so counters survive a
//! migration.
//!
//! A target's keys all start with `target:<name>` and a job's with `job:<id>`.

/// Gateway request counter, incremented by `GET /api/status` (no prefix).
pub const TOTAL_REQUESTS: &str = "api:total_requests";
/// Type of the last task a worker finished (no prefix).
pub const WORKER_LAST_TASK: &str = "worker:last_task";
/// Unix seconds (float) when a worker last finished a task (no prefix).
pub const WORKER_LAST_TASK_TIME: &str = "worker:last_task_time";

/// Tasks of `task_type` finished, all time (no prefix).
pub fn worker_tasks(task_type: &str) -> String {
    format!("worker:tasks:{task_type}")
}

/// The sorted set of instance heartbeats, scored by when each expires.
pub const INSTANCES: &str = "instances";
/// Incidents by id (a hash of JSON records).
pub const INCIDENTS: &str = "incidents";
/// Incident ids by start time (a sorted set).
pub const INCIDENTS_BY_START: &str = "incidents:by_start";
/// The open incident's id of each service or target (a hash).
pub const INCIDENTS_OPEN: &str = "incidents:open";
/// The job stream.
pub const JOBS: &str = "jobs";
/// The job stream's consumer group.
pub const JOBS_GROUP: &str = "workers";
/// The dead-letter stream.
pub const DEAD_LETTERS: &str = "jobs:dead";
/// The newest notification deliveries (a capped list of JSON records).
pub const DELIVERIES: &str = "notifications";

/// A job's record.
pub fn job(id: &str) -> String {
    format!("job:{id}")
}

/// The newest probe results of one of svc's services.
pub fn health(service: &str) -> String {
    format!("health:{service}")
}

/// A per-minute series (a hash of minute -> value).
pub fn series(name: &str) -> String {
    format!("series:{name}")
}

/// What a counter held at its last roll-up into a series.
pub fn rolled_up(counter: &str) -> String {
    format!("rollup:{counter}")
}

/// A target's tracked state; its samples and tallies hang below it.
pub fn target(name: &str) -> String {
    format!("target:{name}")
}

/// A target's newest samples.
pub fn target_samples(name: &str) -> String {
    format!("target:{name}:samples")
}

/// A target's per-minute tallies of hour `hour` (hours since the epoch).
pub fn target_minutes(name: &str, hour: i64) -> String {
    format!("target:{name}:m:{hour}")
}

/// A target's per-hour tallies and response-time histograms of day `day` (days since
/// the epoch).
pub fn target_hours(name: &str, day: i64) -> String {
    format!("target:{name}:h:{day}")
}

/// A target's per-day tallies of block `block` of days (days since the epoch,
/// divided by [`DAYS_PER_KEY`]).
pub fn target_days(name: &str, block: i64) -> String {
    format!("target:{name}:d:{block}")
}

/// Days per key of [`target_days`]: a year in a dozen small hashes.
pub const DAYS_PER_KEY: i64 = 32;

/// The claim on scheduler tick `tick` of periodic task `task`: who enqueues it.
pub fn task_tick(task: &str, tick: u64) -> String {
    format!("tick:{task}:{tick}")
}

/// The claim on the probe of target `name` planned at `planned` (ms since the
/// epoch): who probes it.
pub fn target_tick(name: &str, planned: u64) -> String {
    format!("tick:target:{name}:{planned}")
}

/// The claim on recording minute `minute` of the dashboard's own observations.
pub fn recorder(minute: i64) -> String {
    format!("recorder:{minute}")
}
