//! The worker: runs the periodic tasks and the job queue.
//!
//! Routes (besides the shared health and metrics surface of [`crate::http`]):
//! - `GET /status`: the original's fields (`service`, `status`, `environment`,
//!   `redis_connected`, `last_task_seconds_ago`, `task_stats`), plus the queue.
//! - `GET /probe?module=&target=`: the blackbox exporter's probe endpoint ([`probe`]).
//!
//! Readiness: not ready until the store answers, nor when no scheduler tick has run
//! for three intervals, nor for good once the consumer or scheduler loop has died. On SIGTERM the worker stops taking
//! jobs at once, lets running ones finish within the grace period, and leaves the rest
//! unacknowledged so another replica takes them.

pub mod consumer;
pub mod monitor;
pub mod probe;
pub mod scheduler;
pub mod tasks;

use std::future::Future;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::config::{ConfigError, Environment, Settings, invalid, within};
use crate::http::{self, Health, RoleServer, ServeError};
use crate::jobs::TaskType;
use crate::service::{Role, Service};
use crate::store::{SharedStore, keys};
use crate::telemetry::metric;

pub use consumer::ConsumerConfig;

/// Port the worker's health server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8081;
/// The location of a worker that names none.
pub const DEFAULT_LOCATION: &str = crate::targets::locations::DEFAULT;
/// The `service` field of every answer.
pub const SERVICE: Service = Service::Worker;

/// What a scheduler interval may be: ticks faster than 100 ms would flood the queue,
/// slower than a day would never show on the dashboard's 24 h window.
pub const INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);
/// What a visibility timeout may be: long enough for a keep-alive round trip, short
/// enough that a dead worker's job is taken over within the day.
pub const VISIBILITY_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);

/// What the worker does and where it probes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Time between scheduler ticks.
    pub interval: Duration,
    /// Gateway base URL, probed by `health_check`.
    pub gateway_url: url::Url,
    /// Dashboard base URL, probed by `health_check`.
    pub dashboard_url: url::Url,
    /// A delivery unfinished this long is taken over by another consumer.
    pub visibility_timeout: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// Where this worker probes from (`--location`).
    pub location: String,
    /// Source address of every target probe (`--probe-source-ip`).
    pub probe_source_ip: Option<std::net::IpAddr>,
    /// The targets file, as read at start (`--targets`).
    pub targets: Option<crate::targets::watch::Loaded>,
}

impl WorkerConfig {
    /// Checks every value's range; the URLs are checked where they are parsed.
    pub fn validate(self) -> Result<Self, ConfigError> {
        within("WORKER_INTERVAL", self.interval, INTERVAL_RANGE)?;
        within(
            "VISIBILITY_TIMEOUT",
            self.visibility_timeout,
            VISIBILITY_RANGE,
        )?;
        if !(1..=100).contains(&self.max_attempts) {
            return Err(invalid("MAX_ATTEMPTS", "must be between 1 and 100"));
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err(invalid("WORKER_CONCURRENCY", "must be between 1 and 1024"));
        }
        crate::targets::locations::check_name(&self.location)
            .map_err(|e| invalid("LOCATION", e))?;
        Ok(self)
    }
}

struct Worker {
    store: SharedStore,
    environment: Environment,
    instance: String,
    draining: CancellationToken,
}

/// Runs the worker until `shutdown` resolves, then drains.
pub async fn run(
    settings: &Settings,
    config: &WorkerConfig,
    store: SharedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Present from the first scrape, before anything happened.
    crate::telemetry::install_metrics();
    metrics::gauge!(metric::WORKER_IN_PROGRESS.name).set(0.0);
    metrics::counter!(metric::WORKER_REDELIVERIES.name).absolute(0);
    metrics::counter!(metric::WORKER_DEAD_LETTERED.name).absolute(0);
    let stop = http::shutdown::cancel_on(shutdown);

    let last_tick = Arc::new(AtomicU64::new(unix_millis()));
    let server = RoleServer::start_at(
        Role::Worker,
        settings,
        &store,
        listener,
        Some(readiness(last_tick.clone(), config.interval)),
        Some(config.location.clone()),
    )?;
    let instance = server.instance().id.clone();
    let scheduler = supervise(
        "scheduler",
        server.health(),
        &stop,
        scheduler::run(store.clone(), config.interval, last_tick, stop.clone()),
    );
    let targets = config
        .targets
        .clone()
        .map(|loaded| crate::targets::watch::keep(loaded, config.interval, stop.clone()));
    let targets_for_probe = targets.clone();
    let monitor = targets.clone().map(|current| {
        supervise(
            "monitor",
            server.health(),
            &stop,
            monitor::run(
                store.clone(),
                current,
                monitor::Place {
                    location: config.location.clone(),
                    source: config.probe_source_ip,
                },
                stop.clone(),
            ),
        )
    });
    let ctx = Arc::new(tasks::TaskContext {
        instance: instance.clone(),
        store: store.clone(),
        http: crate::probe::client().map_err(std::io::Error::other)?,
        gateway_url: config.gateway_url.clone(),
        dashboard_url: config.dashboard_url.clone(),
        cpu: Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        cancel: Arc::new(AtomicBool::new(false)),
        targets,
    });
    let consumer = supervise(
        "consumer",
        server.health(),
        &stop,
        consumer::run(
            instance.clone(),
            ctx,
            ConsumerConfig {
                visibility_timeout: config.visibility_timeout,
                max_attempts: config.max_attempts,
                concurrency: config.concurrency,
                grace: settings.grace_period,
            },
            stop.clone(),
        ),
    );

    let prober = web::Data::new(probe::Prober {
        targets: targets_for_probe,
        checks: crate::targets::check::Prober::new(config.probe_source_ip)
            .map_err(std::io::Error::other)?,
    });
    let state = web::Data::new(Worker {
        store,
        environment: settings.environment,
        instance,
        draining: stop.clone(),
    });
    let routes = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .app_data(prober.clone())
            .service(http::get("/status", status))
            .service(http::get("/probe", probe::probe));
    };
    let served = server.serve(routes, stop.clone().cancelled_owned()).await;
    // The HTTP side has drained; the consumer bounds its own wait by the grace period.
    stop.cancel();
    let _ = tokio::join!(consumer, scheduler);
    if let Some(monitor) = monitor {
        let _ = monitor.await;
    }
    served
}

fn unix_millis() -> u64 {
    // `as` saturates for floats; the clock is never negative here.
    (unix_now() * 1e3) as u64
}

/// Runs one of the worker's loops as a task of its own. A loop that ends before
/// `stop` (it panicked, or returned) makes the worker unready for good, with the
/// reason logged at ERROR: a worker that no longer consumes must not look healthy.
fn supervise(
    name: &'static str,
    health: &Health,
    stop: &CancellationToken,
    task: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let health = health.clone();
    let stop = stop.clone();
    let running = tokio::spawn(task);
    tokio::spawn(async move {
        let ended = running.await;
        if stop.is_cancelled() {
            return;
        }
        let why = match ended {
            Ok(()) => "stopped".to_owned(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            Err(e) => e.to_string(),
        };
        health.fail(format!("{name} loop {why}"));
    })
}

/// The text of a panic's payload, when it has one.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map_or_else(|_| "no message".to_owned(), |s| (*s).to_owned()),
    }
}

/// Ready while the scheduler ticked within 3 intervals (a loop that stopped is
/// caught by [`supervise`]).
fn readiness(last_tick: Arc<AtomicU64>, interval: Duration) -> http::health::RoleCheck {
    Box::new(move || {
        let since_tick = unix_millis().saturating_sub(last_tick.load(Ordering::Relaxed));
        let limit = interval.saturating_mul(3);
        if Duration::from_millis(since_tick) > limit {
            Err(format!(
                "scheduler stalled: no tick for {} s",
                since_tick / 1000
            ))
        } else {
            Ok(())
        }
    })
}

async fn status(worker: web::Data<Worker>) -> HttpResponse {
    let store = &worker.store;
    let counters = futures_util::future::join_all(
        TaskType::ALL.map(|t| async move { (t, store.get(&keys::worker_tasks(t.as_str())).await) }),
    );
    let (counters, last_task, queue) = tokio::join!(
        counters,
        store.get(keys::WORKER_LAST_TASK_TIME),
        store.queue_stats(),
    );
    // Connected unless the connection failed: a foreign value under one key is an
    // error of that figure alone.
    let mut connected = [queue.as_ref().err(), last_task.as_ref().err()]
        .into_iter()
        .flatten()
        .all(|e| !e.is_connection());
    let mut errors = Vec::new();
    let mut task_stats = serde_json::Map::new();
    for (task, count) in counters {
        let key = keys::worker_tasks(task.as_str());
        let n = match count {
            Ok(v) => v.map(|v| v.trim().parse::<u64>().map_err(|_| key.clone())),
            Err(e) => {
                connected &= !e.is_connection();
                Some(Err(e.to_string()))
            }
        };
        match n {
            Some(Ok(n)) => task_stats.insert(task.as_str().to_owned(), json!(n)),
            None => task_stats.insert(task.as_str().to_owned(), json!(0)),
            Some(Err(e)) => {
                errors.push(e);
                task_stats.insert(task.as_str().to_owned(), json!(null))
            }
        };
    }
    let now = unix_now();
    let last_task_seconds_ago = last_task
        .ok()
        .flatten()
        .and_then(|t| t.parse::<f64>().ok())
        .map(|t| (now - t).max(0.0));
    HttpResponse::Ok().json(json!({
        "service": SERVICE,
        "status": if worker.draining.is_cancelled() { "draining" } else { "running" },
        "environment": worker.environment.as_str(),
        "redis_connected": connected,
        "last_task_seconds_ago": last_task_seconds_ago,
        "task_stats": task_stats,
        "queue": queue.ok(),
        "errors": errors,
        "instance": worker.instance,
        "timestamp": now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_ticking() {
        let interval = Duration::from_secs(10);
        let now_ms = unix_millis();
        let last_tick = Arc::new(AtomicU64::new(now_ms));
        let check = readiness(last_tick.clone(), interval);
        assert_eq!(check(), Ok(()));
        // Two intervals without a tick is still fine, three and a bit is not.
        last_tick.store(now_ms - 20_000, Ordering::Relaxed);
        assert_eq!(check(), Ok(()));
        last_tick.store(now_ms - 31_000, Ordering::Relaxed);
        assert!(check().is_err_and(|e| e.contains("scheduler stalled")));
    }

    #[tokio::test]
    async fn a_loop_that_dies_makes_the_worker_unready_and_says_why() {
        let health = Health::new(SERVICE, true, None);
        health.record_store_check(Ok(()), "test_gauge");
        assert_eq!(health.readiness(), Ok(()));
        let stop = CancellationToken::new();
        let watcher = supervise("consumer", &health, &stop, async {
            panic!("a bug");
        });
        watcher.await.expect("watcher");
        let reason = health.readiness().expect_err("unready");
        assert!(reason.contains("consumer loop panicked: a bug"), "{reason}");
    }

    #[tokio::test]
    async fn a_loop_that_ends_at_shutdown_is_no_failure() {
        let health = Health::new(SERVICE, true, None);
        health.record_store_check(Ok(()), "test_gauge");
        let stop = CancellationToken::new();
        stop.cancel();
        supervise("scheduler", &health, &stop, async {})
            .await
            .expect("watcher");
        assert_eq!(health.readiness(), Ok(()));
    }
}
