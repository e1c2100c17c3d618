//! The worker: runs the periodic tasks and the job queue.
//!
//! Routes (besides the shared health and metrics surface of [`crate::http`]):
//! - `GET /status`: the original's fields (`service`, `status`, `environment`,
//!   `redis_connected`, `last_task_seconds_ago`, `task_stats`), plus the queue.
//!
//! Readiness: not ready until the store answers and the consumer loop runs, nor when
//! no scheduler tick has run for three intervals. On SIGTERM the worker stops taking
//! jobs at once, lets running ones finish within the grace period, and leaves the rest
//! unacknowledged so another replica takes them.

pub mod consumer;
pub mod scheduler;
pub mod tasks;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cli::Environment;
use crate::config::Settings;
use crate::http::{self, Drain, Health, ServeError, unix_now};
use crate::jobs::TaskType;
use crate::presence;
use crate::store::{SharedStore, keys};
use crate::telemetry::names;

pub use consumer::ConsumerConfig;

/// Port the worker's health server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8081;
/// The role's name in heartbeats.
pub const ROLE: &str = "worker";
/// The `service` field of every answer.
pub const SERVICE: &str = "worker-service";

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
    crate::telemetry::metrics();
    // Present from the first scrape, before anything happened.
    metrics::gauge!(names::WORKER_IN_PROGRESS).set(0.0);
    metrics::counter!(names::WORKER_REDELIVERIES).absolute(0);
    metrics::counter!(names::WORKER_DEAD_LETTERED).absolute(0);
    let instance = presence::describe(ROLE, listener.local_addr()?);
    let stop = http::shutdown::cancel_on(shutdown);

    let consuming = Arc::new(AtomicBool::new(false));
    let last_tick = Arc::new(AtomicU64::new((unix_now() * 1e3) as u64));
    let health = Health::with_check(
        SERVICE,
        settings.ready_without_store,
        Some(readiness(
            consuming.clone(),
            last_tick.clone(),
            config.interval,
        )),
    );
    let _upkeep = presence::Upkeep::start(
        &health,
        &store,
        settings.store_check_period,
        names::WORKER_REDIS_STATUS,
        instance.clone(),
    );
    let scheduler = tokio::spawn(scheduler::run(
        store.clone(),
        config.interval,
        last_tick,
        stop.clone(),
    ));
    let ctx = Arc::new(tasks::TaskContext {
        store: store.clone(),
        key_prefix: settings.key_prefix.clone(),
        http: reqwest::Client::new(),
        gateway_url: config.gateway_url.clone(),
        dashboard_url: config.dashboard_url.clone(),
        cpu: Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        cancel: Arc::new(AtomicBool::new(false)),
    });
    let consumer = tokio::spawn(consumer::run(
        instance.id.clone(),
        ctx,
        ConsumerConfig {
            visibility_timeout: config.visibility_timeout,
            max_attempts: config.max_attempts,
            concurrency: config.concurrency,
            grace: settings.grace_period,
        },
        consuming,
        stop.clone(),
    ));

    let state = web::Data::new(Worker {
        store,
        environment: settings.environment,
        instance: instance.id,
        draining: stop.clone(),
    });
    let routes = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .service(http::resource("/status").route(web::get().to(status)));
    };
    let drain = Drain {
        delay: settings.drain_delay,
        grace: settings.grace_period,
    };
    let served = http::serve(
        listener,
        health,
        None,
        drain,
        routes,
        stop.clone().cancelled_owned(),
    )
    .await;
    // The HTTP side has drained; the consumer bounds its own wait by the grace period.
    stop.cancel();
    let _ = tokio::join!(consumer, scheduler);
    served
}

/// Ready while the consumer loop runs and the scheduler ticked within 3 intervals.
fn readiness(
    consuming: Arc<AtomicBool>,
    last_tick: Arc<AtomicU64>,
    interval: Duration,
) -> http::health::RoleCheck {
    Box::new(move || {
        let since_tick = unix_now() * 1e3 - last_tick.load(Ordering::Relaxed) as f64;
        if !consuming.load(Ordering::Relaxed) {
            Err("consumer not running")
        } else if since_tick > 3.0 * interval.as_secs_f64() * 1e3 {
            Err("scheduler stalled")
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
    let mut connected = queue.is_ok() && last_task.is_ok();
    let mut task_stats = serde_json::Map::new();
    for (task, count) in counters {
        connected &= count.is_ok();
        let n: u64 = count
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        task_stats.insert(task.as_str().to_owned(), json!(n));
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
        "instance": worker.instance,
        "timestamp": now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_consuming_and_ticking() {
        let interval = Duration::from_secs(10);
        let now_ms = (unix_now() * 1e3) as u64;
        let consuming = Arc::new(AtomicBool::new(false));
        let last_tick = Arc::new(AtomicU64::new(now_ms));
        let check = readiness(consuming.clone(), last_tick.clone(), interval);
        assert_eq!(check(), Err("consumer not running"));
        consuming.store(true, Ordering::Relaxed);
        assert_eq!(check(), Ok(()));
        // Two intervals without a tick is still fine, three and a bit is not.
        last_tick.store(now_ms - 20_000, Ordering::Relaxed);
        assert_eq!(check(), Ok(()));
        last_tick.store(now_ms - 31_000, Ordering::Relaxed);
        assert_eq!(check(), Err("scheduler stalled"));
    }
}
