//! The consumer: takes jobs from the queue and runs them.
//!
//! Every replica is a consumer of one group, so more replicas drain more work. A job
//! is acknowledged only when it has finished (done or dead-lettered); a job whose
//! worker died stays pending and is reclaimed by a live consumer after the visibility
//! timeout. Each delivery counts an attempt; a job that failed `max_attempts` times goes
//! to the dead-letter stream with its last error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::tasks::{self, TaskContext, TaskError};
use crate::http::unix_now;
use crate::jobs::{JobRecord, JobState};
use crate::store::{Delivery, StoreError};
use crate::telemetry::names;

/// How the consumer behaves.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerConfig {
    /// A delivery unfinished this long is taken over by another consumer.
    pub visibility_timeout: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// After `stop`, how long running jobs may take to finish.
    pub grace: Duration,
}

/// Consumes until `stop` is cancelled, then lets running jobs finish within
/// `config.grace`; jobs still running then are left unacknowledged for another
/// replica. `running` is true while the loop takes jobs.
pub async fn run(
    consumer: String,
    ctx: Arc<TaskContext>,
    config: ConsumerConfig,
    running: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut jobs = JoinSet::new();
    let reclaim_every = (config.visibility_timeout / 4).max(Duration::from_millis(100));
    let mut last_reclaim: Option<Instant> = None;
    running.store(true, Ordering::Relaxed);
    while !stop.is_cancelled() {
        // Reap finished jobs so the set stays small.
        while jobs.try_join_next().is_some() {}

        let mut batch = Vec::new();
        if last_reclaim.is_none_or(|t| t.elapsed() >= reclaim_every) {
            last_reclaim = Some(Instant::now());
            match ctx
                .store
                .reclaim(&consumer, config.visibility_timeout, 16)
                .await
            {
                Ok(taken) => {
                    metrics::counter!(names::WORKER_REDELIVERIES).increment(taken.len() as u64);
                    batch = taken;
                }
                Err(e) => tracing::debug!(error = %e, "reclaim failed"),
            }
        }
        // Reclaimed jobs start now; only with nothing to do does the read wait.
        if batch.is_empty() {
            // Read no more than there are free slots: what is read but not run would
            // only sit pending.
            let free = slots.available_permits().clamp(1, 64);
            tokio::select! {
                () = stop.cancelled() => {}
                received = ctx.store.receive(&consumer, free, Duration::from_secs(1)) => {
                    match received {
                        Ok(deliveries) => batch = deliveries,
                        Err(e) => {
                            tracing::debug!(error = %e, "receive failed");
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                            }
                        }
                    }
                }
            }
        }
        for delivery in batch {
            // Deliveries not started before a shutdown stay pending for another replica.
            let slot = tokio::select! {
                () = stop.cancelled() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let ctx = ctx.clone();
            let consumer = consumer.clone();
            jobs.spawn(async move {
                let keep_alive = config.visibility_timeout / 3;
                tokio::select! {
                    () = process(&ctx, &consumer, &delivery, config.max_attempts) => {}
                    () = keep_alive_loop(&ctx, &consumer, &delivery, keep_alive) => {}
                }
                drop(slot);
            });
        }
    }
    running.store(false, Ordering::Relaxed);

    let in_flight = jobs.len();
    if in_flight > 0 {
        tracing::info!(in_flight, grace = ?config.grace, "waiting for running jobs");
    }
    let finished = tokio::time::timeout(config.grace, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            left = jobs.len(),
            "jobs still running after the grace period are left for another replica"
        );
        ctx.cancel.store(true, Ordering::Relaxed);
        jobs.abort_all();
    }
}

/// Renews the delivery every `period` while its job runs, so a live worker's long job
/// is never taken over; only a dead worker's deliveries go idle.
async fn keep_alive_loop(ctx: &TaskContext, consumer: &str, delivery: &Delivery, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = ctx.store.keep_alive(consumer, delivery).await {
            tracing::debug!(error = %e, "keep-alive failed");
        }
    }
}

/// Runs one delivery to its end (or leaves it pending on failure or shutdown).
#[tracing::instrument(level = "debug", skip_all, fields(job = %delivery.job_id))]
async fn process(ctx: &TaskContext, consumer: &str, delivery: &Delivery, max_attempts: u32) {
    if let Err(e) = attempt(ctx, consumer, delivery, max_attempts).await {
        // The delivery stays pending and is reclaimed after the visibility timeout.
        tracing::warn!(error = %e, "job attempt could not be recorded");
    }
}

async fn attempt(
    ctx: &TaskContext,
    consumer: &str,
    delivery: &Delivery,
    max_attempts: u32,
) -> Result<(), StoreError> {
    let store = &ctx.store;
    let Some(mut job) = store.load_job(&delivery.job_id).await? else {
        tracing::warn!("job record expired: dropping the delivery");
        return store.discard(delivery).await;
    };
    if matches!(job.state, JobState::Done | JobState::Dead) {
        return store.discard(delivery).await;
    }
    if job.attempts >= max_attempts {
        return dead_letter(ctx, delivery, job).await;
    }
    job.attempts += 1;
    job.state = JobState::Running;
    job.started_at = Some(unix_now());
    job.worker = Some(consumer.to_owned());
    store.save_job(&job).await?;

    let task = job.spec.task_type().as_str();
    metrics::gauge!(names::WORKER_IN_PROGRESS).increment(1.0);
    let started = Instant::now();
    let outcome = tasks::run(&job.spec, ctx).await;
    metrics::gauge!(names::WORKER_IN_PROGRESS).decrement(1.0);
    metrics::histogram!(names::WORKER_JOB_DURATION, "task_type" => task)
        .record(started.elapsed().as_secs_f64());

    match outcome {
        Ok(result) => {
            let now = unix_now();
            job.state = JobState::Done;
            job.finished_at = Some(now);
            job.result = Some(result);
            job.error = None;
            store.finish(delivery, &job).await?;
            metrics::counter!(names::WORKER_TASKS, "task_type" => task, "status" => "success")
                .increment(1);
            metrics::gauge!(names::WORKER_LAST_TASK).set(now);
            Ok(())
        }
        Err(TaskError::Cancelled) => Ok(()),
        Err(TaskError::Failed(error)) => {
            metrics::counter!(names::WORKER_TASKS, "task_type" => task, "status" => "failure")
                .increment(1);
            tracing::info!(%error, attempts = job.attempts, "job failed");
            job.error = Some(error);
            if job.attempts >= max_attempts {
                dead_letter(ctx, delivery, job).await
            } else {
                job.state = JobState::Failed;
                store.save_job(&job).await
            }
        }
    }
}

async fn dead_letter(
    ctx: &TaskContext,
    delivery: &Delivery,
    mut job: JobRecord,
) -> Result<(), StoreError> {
    job.state = JobState::Dead;
    job.finished_at = Some(unix_now());
    if job.error.is_none() {
        job.error = Some(format!("no attempt finished in {} tries", job.attempts));
    }
    ctx.store.finish(delivery, &job).await?;
    metrics::counter!(names::WORKER_DEAD_LETTERED).increment(1);
    tracing::warn!(
        error = job.error.as_deref().unwrap_or(""),
        "job dead-lettered"
    );
    Ok(())
}
