//! Logs and metrics.
//!
//! Logs: `tracing`, as JSON lines in production and readable text in development,
//! written by a background thread so a slow terminal or log pipe never stalls a request.
//! With traces on, the same subscriber exports spans ([`crate::traces`]) and a JSON
//! line written inside a traced span carries its `trace_id` and `span_id`.
//! Metrics: one global Prometheus recorder; every metric is declared once in [`metric`]
//! (name, kind, unit, HELP text and, for histograms, buckets), plus the process metrics
//! (CPU, memory, open files, start time) that the replaced system exported.

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Environment;

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution, in the given buckets.
    Histogram(&'static [f64]),
}

/// One metric: everything said about it, in one place.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name, fixed by the system this one replaces where it had it.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its unit, if it has one.
    pub unit: Option<Unit>,
    /// The HELP text.
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        unit: None,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        unit: None,
        help,
    }
}

const fn seconds(name: &'static str, buckets: &'static [f64], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram(buckets),
        unit: Some(Unit::Seconds),
        help,
    }
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

/// Every metric of every role. Dashboards and alerts depend on the names: they never
/// change.
pub mod metric {
    use super::{JOB_BUCKETS, LATENCY_BUCKETS, Metric, counter, gauge, seconds};

    /// Gateway HTTP requests by `method`, `endpoint` (route pattern) and `status`.
    pub const GATEWAY_REQUESTS: Metric = counter(
        "api_gateway_requests_total",
        "Total HTTP requests handled by the API gateway",
    );
    /// Gateway request latency by `method` and `endpoint`.
    pub const GATEWAY_REQUEST_DURATION: Metric = seconds(
        "api_gateway_request_duration_seconds",
        LATENCY_BUCKETS,
        "HTTP request latency of the API gateway",
    );
    /// Gateway requests being served right now.
    pub const GATEWAY_IN_PROGRESS: Metric = gauge(
        "api_gateway_requests_in_progress",
        "HTTP requests the API gateway is serving now",
    );
    /// 1 when the gateway's last store check succeeded, else 0.
    pub const GATEWAY_REDIS_STATUS: Metric = gauge(
        "api_gateway_redis_connection_status",
        "Redis connection status of the API gateway (1 connected, 0 not)",
    );

    /// Gateway requests refused by the per-client rate limit.
    pub const GATEWAY_RATE_LIMITED: Metric = counter(
        "api_gateway_rate_limited_total",
        "Gateway requests refused with 429 by the per-client rate limit",
    );

    /// 1 while the store's circuit breaker fails operations fast, else 0.
    pub const STORE_CIRCUIT_OPEN: Metric = gauge(
        "redis_circuit_open",
        "1 while Redis stopped answering and operations fail fast, else 0",
    );

    /// Jobs a worker finished, by `task_type` and `status` (`success` or `failure`).
    pub const WORKER_TASKS: Metric = counter(
        "worker_tasks_processed_total",
        "Jobs finished by this worker, by task type and status",
    );
    /// Jobs a worker is running right now.
    pub const WORKER_IN_PROGRESS: Metric = gauge(
        "worker_tasks_in_progress",
        "Jobs this worker is running now",
    );
    /// 1 when the worker's last store check succeeded, else 0.
    pub const WORKER_REDIS_STATUS: Metric = gauge(
        "worker_redis_connection_status",
        "Redis connection status of the worker (1 connected, 0 not)",
    );
    /// Unix seconds when this worker last finished a job.
    pub const WORKER_LAST_TASK: Metric = Metric {
        unit: Some(metrics::Unit::Seconds),
        ..gauge(
            "worker_last_task_timestamp",
            "Unix time this worker last finished a job",
        )
    };
    /// Queue entries not delivered yet (cluster-wide, as this worker last saw it).
    pub const WORKER_QUEUE_DEPTH: Metric = gauge(
        "worker_queue_depth",
        "Job-queue entries not yet delivered (cluster-wide)",
    );
    /// Queue entries delivered and not finished (cluster-wide).
    pub const WORKER_QUEUE_PENDING: Metric = gauge(
        "worker_queue_pending",
        "Job-queue entries delivered and not finished (cluster-wide)",
    );
    /// Jobs this worker took over from a consumer that did not finish them.
    pub const WORKER_REDELIVERIES: Metric = counter(
        "worker_queue_redeliveries_total",
        "Jobs taken over from a consumer that did not finish them",
    );
    /// Jobs this worker moved to the dead-letter stream.
    pub const WORKER_DEAD_LETTERED: Metric = counter(
        "worker_queue_dead_lettered_total",
        "Jobs moved to the dead-letter stream",
    );
    /// Run time of one job attempt, by `task_type`.
    pub const WORKER_JOB_DURATION: Metric = seconds(
        "worker_job_duration_seconds",
        JOB_BUCKETS,
        "Run time of one job attempt",
    );
    /// How late a scheduler tick ran after its planned time.
    pub const WORKER_SCHEDULE_LAG: Metric = seconds(
        "worker_schedule_lag_seconds",
        LATENCY_BUCKETS,
        "Delay of a scheduler tick after its planned time",
    );

    /// Dashboard HTTP requests by `method`, `endpoint` (route pattern) and `status`.
    pub const DASHBOARD_REQUESTS: Metric = counter(
        "dashboard_requests_total",
        "Total HTTP requests handled by the dashboard",
    );
    /// Dashboard request latency by `method` and `endpoint`.
    pub const DASHBOARD_REQUEST_DURATION: Metric = seconds(
        "dashboard_request_duration_seconds",
        LATENCY_BUCKETS,
        "HTTP request latency of the dashboard",
    );
    /// Dashboard requests being served right now.
    pub const DASHBOARD_IN_PROGRESS: Metric = gauge(
        "dashboard_requests_in_progress",
        "HTTP requests the dashboard is serving now",
    );
    /// 1 when the dashboard's last store check succeeded, else 0.
    pub const DASHBOARD_REDIS_STATUS: Metric = gauge(
        "dashboard_redis_connection_status",
        "Redis connection status of the dashboard (1 connected, 0 not)",
    );
    /// Probes the dashboard made, by `service` and `result` (healthy, degraded, down).
    pub const DASHBOARD_PROBES: Metric = counter(
        "dashboard_probes_total",
        "Health probes the dashboard made of the other services, by result",
    );

    /// Fault-injection actions, by `fault` (`api`, `cpu`, `ready_disable`, ...).
    pub const FAULTS_INJECTED: Metric = counter(
        "svc_faults_injected_total",
        "Fault-injection actions taken on this instance, by fault",
    );
    /// Faults active on this instance now (only with fault injection on).
    pub const FAULTS_ACTIVE: Metric = gauge(
        "svc_faults_active",
        "Injected faults active on this instance now",
    );

    /// Round trip of target probes, by `target`.
    pub const TARGET_RESPONSE_TIME: Metric = seconds(
        "svc_target_response_time_seconds",
        LATENCY_BUCKETS,
        "Response time of target probes",
    );
    /// How late a target probe started after its planned time.
    pub const TARGET_PROBE_LAG: Metric = seconds(
        "svc_target_probe_lag_seconds",
        LATENCY_BUCKETS,
        "Delay of a target probe's start after its planned time",
    );
    /// Notification attempts, by `result` (`sent`, `failed`) and `channel`.
    pub const NOTIFICATIONS: Metric = counter(
        "svc_notifications_total",
        "Notification attempts, by result and channel",
    );
    /// Targets-file loads, by `result` (`ok`, `error`).
    pub const TARGETS_RELOADS: Metric = counter(
        "svc_targets_reloads_total",
        "Loads of the targets file, by result",
    );
    /// Targets in force.
    pub const TARGETS_CONFIGURED: Metric = gauge(
        "svc_targets_configured",
        "Targets listed in the targets file in force",
    );

    /// All of them.
    pub const ALL: &[Metric] = &[
        GATEWAY_REQUESTS,
        GATEWAY_REQUEST_DURATION,
        GATEWAY_IN_PROGRESS,
        GATEWAY_REDIS_STATUS,
        GATEWAY_RATE_LIMITED,
        STORE_CIRCUIT_OPEN,
        WORKER_TASKS,
        WORKER_IN_PROGRESS,
        WORKER_REDIS_STATUS,
        WORKER_LAST_TASK,
        WORKER_QUEUE_DEPTH,
        WORKER_QUEUE_PENDING,
        WORKER_REDELIVERIES,
        WORKER_DEAD_LETTERED,
        WORKER_JOB_DURATION,
        WORKER_SCHEDULE_LAG,
        DASHBOARD_REQUESTS,
        DASHBOARD_REQUEST_DURATION,
        DASHBOARD_IN_PROGRESS,
        DASHBOARD_REDIS_STATUS,
        DASHBOARD_PROBES,
        FAULTS_INJECTED,
        FAULTS_ACTIVE,
        TARGET_RESPONSE_TIME,
        TARGET_PROBE_LAG,
        NOTIFICATIONS,
        TARGETS_RELOADS,
        TARGETS_CONFIGURED,
    ];
}

/// How often queued histogram samples are folded into their buckets.
const UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

struct Recorder {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for m in metric::ALL {
            if let Kind::Histogram(buckets) = m.kind {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(m.name.into()), buckets)
                    // Never fails: every bucket list above is non-empty.
                    .unwrap_or_else(|_| PrometheusBuilder::new());
            }
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Histogram samples wait in a queue until a scrape or an upkeep folds them into
        // buckets: without upkeep an unscraped server under load grows by 8 bytes per
        // request. Every UPKEEP_PERIOD, as the exporter's own HTTP listener does.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_PERIOD);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread: histograms fold at scrapes only");
        }
        // Fails only when another recorder is installed already, and then metrics
        // still render from this handle (just empty): never a reason to stop serving.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already");
        }
        for m in metric::ALL {
            let name = m.name;
            match (m.kind, m.unit) {
                (Kind::Counter, Some(u)) => metrics::describe_counter!(name, u, m.help),
                (Kind::Counter, None) => metrics::describe_counter!(name, m.help),
                (Kind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, m.help),
                (Kind::Gauge, None) => metrics::describe_gauge!(name, m.help),
                (Kind::Histogram(_), Some(u)) => metrics::describe_histogram!(name, u, m.help),
                (Kind::Histogram(_), None) => metrics::describe_histogram!(name, m.help),
            }
        }
        let process = metrics_process::Collector::default();
        process.describe();
        Recorder { handle, process }
    })
}

/// Installs the process-wide Prometheus recorder (once; later calls do nothing).
pub fn install_metrics() {
    recorder();
}

/// Every metric of this process in Prometheus text format, process metrics read now.
pub fn render_metrics() -> String {
    let recorder = recorder();
    recorder.process.collect();
    recorder.handle.render()
}

/// Appends gauge `name` to `out` in the text format, rendered per request rather than
/// kept in the recorder: its HELP and TYPE lines, then one line per `(labels, value)`,
/// `labels` written as they are (`{a="b"}`, or empty).
pub fn write_gauge<L: AsRef<str>>(out: &mut String, name: &str, help: &str, samples: &[(L, f64)]) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{} {value}", labels.as_ref());
    }
}

/// `value` as a label value of the text format: backslash, quote and newline escaped.
pub fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Log lines queued for the writer thread at most.
const LOG_QUEUE_LINES: usize = 8_192;

/// Keeps the log writer thread alive; drop it last so buffered lines are flushed.
pub type LogGuard = WorkerGuard;

/// Installs the log subscriber. `RUST_LOG`, when set, wins over `level`. When traces
/// are on ([`crate::traces::start`]) spans are exported as well, and JSON lines written
/// inside a traced span carry its `trace_id` and `span_id`.
pub fn init_logs(environment: Environment, level: &str) -> Result<LogGuard, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(level.to_ascii_lowercase()),
    }
    .map_err(|e| format!("invalid LOG_LEVEL: {e}"))?;
    // The queue to the writer thread is allocated whole at start: the default 128,000
    // lines are 4 MiB resident in an idle process. 8,192 lines still absorb a burst
    // of about 0.2 s at 40,000 lines/s; past that lines are dropped, never a request
    // stalled.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .finish(stdout());
    let installed = match crate::traces::layer() {
        // The log level filters the log lines only: spans below it are still traced.
        Some(traces) => tracing_subscriber::registry()
            .with(lines(environment, writer).with_filter(filter))
            .with(traces)
            .try_init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(lines(environment, writer))
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(guard)
}

/// Where the writer thread writes: stdout behind a 64 KiB buffer. The thread flushes
/// whenever its queue is empty, so a quiet process writes each line at once and a busy
/// one writes many lines per system call (std's stdout flushes at every newline).
fn stdout() -> Box<dyn std::io::Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::fs::File::from(fd),
        )),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// The layer that writes log lines: JSON in production, text in development.
fn lines<S>(environment: Environment, writer: NonBlocking) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(writer);
    match environment {
        Environment::Production => lines
            .json()
            .flatten_event(true)
            .map_event_format(WithTraceIds)
            .boxed(),
        Environment::Development => lines.boxed(),
    }
}

/// An event format plus the `trace_id` and `span_id` of the traced span the event is
/// written in, as the last fields of the JSON object.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = crate::traces::current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // One JSON object and a newline: the ids go in before its closing brace.
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                r#"{object},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            ),
            None => writer.write_str(&line),
        }
    }
}
