//! Logs and metrics.
//!
//! Logs: `tracing`, as JSON lines in production and readable text in development,
//! written by a background thread so a slow terminal or log pipe never stalls a request.
//! Metrics: one global Prometheus recorder; every metric name is a constant in
//! [`names`], described once (HELP text and unit) in [`describe`].

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::cli::Environment;

/// Metric names. They are fixed by the system this one replaces: dashboards and alerts
/// depend on them, so they never change.
pub mod names {
    /// Gateway HTTP requests by `method`, `endpoint` (route pattern) and `status`.
    pub const GATEWAY_REQUESTS: &str = "api_gateway_requests_total";
    /// Gateway request latency by `method` and `endpoint`.
    pub const GATEWAY_REQUEST_DURATION: &str = "api_gateway_request_duration_seconds";
    /// Gateway requests being served right now.
    pub const GATEWAY_IN_PROGRESS: &str = "api_gateway_requests_in_progress";
    /// 1 when the gateway's last store check succeeded, else 0.
    pub const GATEWAY_REDIS_STATUS: &str = "api_gateway_redis_connection_status";

    /// Jobs a worker finished, by `task_type` and `status` (`success` or `failure`).
    pub const WORKER_TASKS: &str = "worker_tasks_processed_total";
    /// Jobs a worker is running right now.
    pub const WORKER_IN_PROGRESS: &str = "worker_tasks_in_progress";
    /// 1 when the worker's last store check succeeded, else 0.
    pub const WORKER_REDIS_STATUS: &str = "worker_redis_connection_status";
    /// Unix seconds when this worker last finished a job.
    pub const WORKER_LAST_TASK: &str = "worker_last_task_timestamp";
    /// Queue entries not delivered yet (cluster-wide, as this worker last saw it).
    pub const WORKER_QUEUE_DEPTH: &str = "worker_queue_depth";
    /// Queue entries delivered and not finished (cluster-wide).
    pub const WORKER_QUEUE_PENDING: &str = "worker_queue_pending";
    /// Jobs this worker took over from a consumer that did not finish them.
    pub const WORKER_REDELIVERIES: &str = "worker_queue_redeliveries_total";
    /// Jobs this worker moved to the dead-letter stream.
    pub const WORKER_DEAD_LETTERED: &str = "worker_queue_dead_lettered_total";
    /// Run time of one job attempt, by `task_type`.
    pub const WORKER_JOB_DURATION: &str = "worker_job_duration_seconds";
    /// How late a scheduler tick ran after its planned time.
    pub const WORKER_SCHEDULE_LAG: &str = "worker_schedule_lag_seconds";
    /// Dashboard HTTP requests by `method`, `endpoint` (route pattern) and `status`.
    pub const DASHBOARD_REQUESTS: &str = "dashboard_requests_total";
    /// Dashboard request latency by `method` and `endpoint`.
    pub const DASHBOARD_REQUEST_DURATION: &str = "dashboard_request_duration_seconds";
    /// Dashboard requests being served right now.
    pub const DASHBOARD_IN_PROGRESS: &str = "dashboard_requests_in_progress";
    /// 1 when the dashboard's last store check succeeded, else 0.
    pub const DASHBOARD_REDIS_STATUS: &str = "dashboard_redis_connection_status";
    /// Probes the dashboard made, by `service` and `result` (healthy, degraded, down).
    pub const DASHBOARD_PROBES: &str = "dashboard_probes_total";
}

/// Upper bounds of the request-latency histogram buckets, in seconds: fine-grained
/// below 10 ms (where a healthy gateway answers) and up to 10 s (a stuck store).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the job-duration buckets, in seconds: trivial jobs take about a
/// millisecond, the largest `data_processing` jobs a few seconds.
pub const JOB_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = [
            (names::GATEWAY_REQUEST_DURATION, LATENCY_BUCKETS),
            (names::DASHBOARD_REQUEST_DURATION, LATENCY_BUCKETS),
            (names::WORKER_SCHEDULE_LAG, LATENCY_BUCKETS),
            (names::WORKER_JOB_DURATION, JOB_BUCKETS),
        ]
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                .expect("bucket lists are not empty")
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already, and then metrics
        // still render from this handle (just empty): never a reason to stop serving.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already");
        }
        describe();
        handle
    })
}

/// HELP text and unit of every metric, once.
fn describe() {
    use names::*;
    describe_counter!(
        GATEWAY_REQUESTS,
        "Total HTTP requests handled by the API gateway"
    );
    describe_histogram!(
        GATEWAY_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency of the API gateway"
    );
    describe_gauge!(
        GATEWAY_IN_PROGRESS,
        "HTTP requests the API gateway is serving now"
    );
    describe_gauge!(
        GATEWAY_REDIS_STATUS,
        "Redis connection status of the API gateway (1 connected, 0 not)"
    );
    describe_counter!(
        WORKER_TASKS,
        "Jobs finished by this worker, by task type and status"
    );
    describe_gauge!(WORKER_IN_PROGRESS, "Jobs this worker is running now");
    describe_gauge!(
        WORKER_REDIS_STATUS,
        "Redis connection status of the worker (1 connected, 0 not)"
    );
    describe_gauge!(
        WORKER_LAST_TASK,
        Unit::Seconds,
        "Unix time this worker last finished a job"
    );
    describe_gauge!(
        WORKER_QUEUE_DEPTH,
        "Job-queue entries not yet delivered (cluster-wide)"
    );
    describe_gauge!(
        WORKER_QUEUE_PENDING,
        "Job-queue entries delivered and not finished (cluster-wide)"
    );
    describe_counter!(
        WORKER_REDELIVERIES,
        "Jobs taken over from a consumer that did not finish them"
    );
    describe_counter!(WORKER_DEAD_LETTERED, "Jobs moved to the dead-letter stream");
    describe_histogram!(
        WORKER_JOB_DURATION,
        Unit::Seconds,
        "Run time of one job attempt"
    );
    describe_histogram!(
        WORKER_SCHEDULE_LAG,
        Unit::Seconds,
        "Delay of a scheduler tick after its planned time"
    );
    describe_counter!(
        DASHBOARD_REQUESTS,
        "Total HTTP requests handled by the dashboard"
    );
    describe_histogram!(
        DASHBOARD_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency of the dashboard"
    );
    describe_gauge!(
        DASHBOARD_IN_PROGRESS,
        "HTTP requests the dashboard is serving now"
    );
    describe_gauge!(
        DASHBOARD_REDIS_STATUS,
        "Redis connection status of the dashboard (1 connected, 0 not)"
    );
    describe_counter!(
        DASHBOARD_PROBES,
        "Health probes the dashboard made of the other services, by result"
    );
}

/// Keeps the log writer thread alive; drop it last so buffered lines are flushed.
pub type LogGuard = WorkerGuard;

/// Installs the log subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init_logs(environment: Environment, level: &str) -> Result<LogGuard, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(level.to_ascii_lowercase()),
    }
    .map_err(|e| format!("invalid LOG_LEVEL: {e}"))?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(writer);
    let installed = match environment {
        Environment::Production => builder.json().flatten_event(true).try_init(),
        Environment::Development => builder.try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(guard)
}
