//! The scheduler: enqueues every periodic task once per interval for the whole
//! cluster, whatever the replica count.
//!
//! Ticks are aligned to the wall clock (multiples of the interval since the Unix
//! epoch), so every replica agrees on tick numbers. At each tick every replica tries to
//! claim `tick:<task>:<n>` in the store (set-if-absent with an expiry); the one that
//! wins enqueues that task. No replica is special: if one dies, the others keep
//! claiming the next ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::unix_now;
use crate::jobs::{JobRecord, JobSpec, TaskType};
use crate::service::Role;
use crate::store::{SharedStore, keys};
use crate::telemetry::metric;
use crate::traces;

/// Runs ticks until `stop` is cancelled; each tick stores its Unix time (ms) in
/// `last_tick`, which readiness watches.
pub async fn run(
    store: SharedStore,
    interval: Duration,
    last_tick: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let period = interval.as_secs_f64();
    loop {
        let now = unix_now();
        // `as` saturates: a clock beyond u64 ticks stays in range.
        let tick = (now / period).floor() as u64 + 1;
        let planned = tick as f64 * period;
        let wait = Duration::from_secs_f64((planned - now).max(0.0));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let lag = (unix_now() - planned).max(0.0);
        metrics::histogram!(metric::WORKER_SCHEDULE_LAG.name).record(lag);
        last_tick.store((unix_now() * 1e3) as u64, Ordering::Relaxed);
        join_all(TaskType::ALL.map(|task| {
            let span = tracing::debug_span!("enqueue", task = task.as_str(), tick);
            traces::open(&span, Role::Worker, None);
            enqueue_once(&store, task, tick, planned, interval).instrument(span)
        }))
        .await;
        if let Ok(stats) = store.queue_stats().await {
            metrics::gauge!(metric::WORKER_QUEUE_DEPTH.name).set(stats.depth as f64);
            metrics::gauge!(metric::WORKER_QUEUE_PENDING.name).set(stats.pending as f64);
        }
    }
}

/// Claims `task`'s `tick` and, when this replica wins it, enqueues the task; the job
/// continues the trace of the caller's span (opened there, so traces can tell it is
/// the worker's).
async fn enqueue_once(
    store: &SharedStore,
    task: TaskType,
    tick: u64,
    planned: f64,
    interval: Duration,
) {
    let claim = keys::task_tick(task.as_str(), tick);
    // The claim outlives the tick so a replica whose clock lags cannot claim it again.
    let Some(spec) = JobSpec::periodic(task) else {
        return;
    };
    match store.claim(&claim, interval.saturating_mul(3)).await {
        Ok(true) => {
            let mut job = JobRecord::scheduled(spec, unix_now(), planned);
            job.traceparent = traces::traceparent(&tracing::Span::current());
            match store.enqueue(&job).await {
                Ok(true) => tracing::debug!(job = %job.id, "enqueued"),
                Ok(false) => tracing::warn!("job queue full: periodic task skipped"),
                Err(e) => tracing::debug!(error = %e, "enqueue failed"),
            }
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "tick claim failed"),
    }
}
