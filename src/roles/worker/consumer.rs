//! The consumer: takes jobs from the queue and runs them.
//!
//! Every replica is a consumer of one group, so more replicas drain more work. A job
//! is acknowledged only when it has finished (done or dead-lettered); a job whose
//! worker died stays pending and is reclaimed by a live consumer after the visibility
//! timeout. Each delivery counts an attempt; a job that failed `max_attempts` times goes
//! to the dead-letter stream with its last error.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::tasks::{self, TaskContext, TaskError};
use crate::clock::{self, unix_now};
use crate::jobs::{IllegalTransition, JobRecord, JobState};
use crate::service::Role;
use crate::store::{Delivery, RECLAIM_START, StoreError};
use crate::telemetry::metric;
use crate::traces;

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
/// replica.
///
/// Nothing is taken from the queue without a free slot to run it in: a delivery that
/// waited for a slot would have no keep-alive and be taken over, and run twice.
pub async fn run(
    consumer: String,
    ctx: Arc<TaskContext>,
    config: ConsumerConfig,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut jobs = JoinSet::new();
    let reclaim_every = (config.visibility_timeout / 4).max(Duration::from_millis(100));
    let mut last_reclaim: Option<Instant> = None;
    // Where the scan of the pending list goes on: entries at its head never hide the
    // rest.
    let mut cursor = RECLAIM_START.to_owned();
    loop {
        // Reap finished jobs so the set stays small (their panics are caught inside).
        while jobs.try_join_next().is_some() {}

        let first = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let mut free: Vec<OwnedSemaphorePermit> = vec![first];
        free.extend(std::iter::from_fn(|| {
            slots.clone().try_acquire_owned().ok()
        }));

        let mut batch = Vec::new();
        if last_reclaim.is_none_or(|t| t.elapsed() >= reclaim_every) {
            last_reclaim = Some(Instant::now());
            match ctx
                .store
                .reclaim(&consumer, config.visibility_timeout, free.len(), &cursor)
                .await
            {
                Ok(reclaimed) => {
                    metrics::counter!(metric::WORKER_REDELIVERIES.name)
                        .increment(reclaimed.deliveries.len() as u64);
                    // More of the pending list to scan: go on at once.
                    if reclaimed.cursor != RECLAIM_START {
                        last_reclaim = None;
                    }
                    cursor = reclaimed.cursor;
                    batch = reclaimed.deliveries;
                }
                Err(e) => tracing::debug!(error = %e, "reclaim failed"),
            }
        }
        // Reclaimed jobs start now; only with nothing to do does the read wait.
        if batch.is_empty() {
            tokio::select! {
                () = stop.cancelled() => {}
                received = ctx.store.receive(&consumer, free.len(), Duration::from_secs(1)) => {
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
        // The store hands out at most one delivery per free slot; unused slots go
        // back when `free` is dropped.
        for (delivery, slot) in batch.into_iter().zip(free.drain(..)) {
            let ctx = ctx.clone();
            let consumer = consumer.clone();
            jobs.spawn(async move {
                let keep_alive = config.visibility_timeout / 3;
                let run = async {
                    // The record is read before the job's span opens, so that the span
                    // can continue the trace of whoever enqueued the job.
                    let record = read(&ctx, &delivery).await;
                    let span = job_span(&delivery, &record);
                    async {
                        tokio::select! {
                            () = process(&ctx, &consumer, &delivery, record, config.max_attempts) => {}
                            () = keep_alive_loop(&ctx, &consumer, &delivery, keep_alive) => {}
                        }
                    }
                    .instrument(span)
                    .await;
                };
                if let Err(panic) = AssertUnwindSafe(run).catch_unwind().await {
                    // The delivery stays pending: it is retried, and dead-lettered
                    // after the last attempt.
                    tracing::error!(
                        job = delivery.job_id.as_deref().unwrap_or(""),
                        entry = %delivery.entry,
                        panic = %super::panic_message(panic),
                        "job attempt panicked"
                    );
                }
                drop(slot);
            });
        }
    }

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

/// What the store holds for a delivery.
enum Record {
    /// The queue entry names no job.
    NoId,
    /// The record expired.
    Expired,
    /// The record cannot be run, and why.
    Unrunnable(String),
    /// The job to run.
    Job(Box<JobRecord>),
}

/// Reads the record of `delivery`'s job.
async fn read(ctx: &TaskContext, delivery: &Delivery) -> Result<Record, StoreError> {
    let Some(id) = &delivery.job_id else {
        return Ok(Record::NoId);
    };
    Ok(match ctx.store.load_job(id).await? {
        None => Record::Expired,
        Some(raw) => match JobRecord::decode(&raw) {
            Ok(job) => Record::Job(Box::new(job)),
            Err(reason) => Record::Unrunnable(reason),
        },
    })
}

/// The span of one attempt at a job: every line of it carries the job's id and the
/// submitting request's, and with traces on it continues the trace the job was
/// enqueued in.
fn job_span(delivery: &Delivery, record: &Result<Record, StoreError>) -> tracing::Span {
    let job = match record {
        Ok(Record::Job(job)) => Some(job),
        _ => None,
    };
    let span = tracing::info_span!(
        "job",
        job = delivery.job_id.as_deref().unwrap_or(""),
        request_id = job.and_then(|j| j.request_id.as_deref()),
        otel.name = tracing::field::Empty,
    );
    if let Some(job) = job
        && traces::enabled()
    {
        span.record(
            "otel.name",
            format!("job {}", job.spec.task_type().as_str()),
        );
    }
    traces::open(
        &span,
        Role::Worker,
        job.and_then(|j| j.traceparent.as_deref()),
    );
    span
}

/// Runs one delivery to its end (or leaves it pending on failure or shutdown).
async fn process(
    ctx: &TaskContext,
    consumer: &str,
    delivery: &Delivery,
    record: Result<Record, StoreError>,
    max_attempts: u32,
) {
    if let Err(e) = attempt(ctx, consumer, delivery, record, max_attempts).await {
        // The delivery stays pending and is reclaimed after the visibility timeout.
        tracing::warn!(
            job = delivery.job_id.as_deref().unwrap_or(""),
            error = %e,
            "job attempt could not be recorded; it will be retried"
        );
    }
}

/// Why an attempt could not be recorded; the delivery stays pending either way.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
}

async fn attempt(
    ctx: &TaskContext,
    consumer: &str,
    delivery: &Delivery,
    record: Result<Record, StoreError>,
    max_attempts: u32,
) -> Result<(), AttemptError> {
    let store = &ctx.store;
    let mut job = match record? {
        Record::NoId => {
            return Ok(reject(ctx, delivery, "the queue entry carries no job id").await?);
        }
        Record::Expired => {
            tracing::warn!(
                job = delivery.job_id.as_deref().unwrap_or(""),
                "job record expired: dropping the delivery"
            );
            return Ok(store.discard(delivery).await?);
        }
        Record::Unrunnable(reason) => {
            let reason = format!("the job record cannot be run: {reason}");
            return Ok(reject(ctx, delivery, &reason).await?);
        }
        Record::Job(job) => *job,
    };
    if job.state().is_final() {
        return Ok(store.discard(delivery).await?);
    }
    if job.attempts() >= max_attempts {
        // Every attempt so far died with its worker.
        job.kill(unix_now())?;
        return Ok(dead_letter(ctx, delivery, &job, consumer).await?);
    }
    job.start(consumer, unix_now())?;
    store.save_job(&job).await?;
    if job.attempts() == 1 {
        trace_queue_wait(&job);
    }

    let task = job.spec.task_type().as_str();
    metrics::gauge!(metric::WORKER_IN_PROGRESS.name).increment(1.0);
    let started = Instant::now();
    let outcome = tasks::run(&job.spec, ctx).await;
    metrics::gauge!(metric::WORKER_IN_PROGRESS.name).decrement(1.0);
    let took = started.elapsed();
    metrics::histogram!(metric::WORKER_JOB_DURATION.name, "task_type" => task)
        .record(took.as_secs_f64());

    match outcome {
        Ok(result) => {
            let now = unix_now();
            job.succeed(result, now)?;
            store.finish(delivery, &job).await?;
            metrics::counter!(metric::WORKER_TASKS.name, "task_type" => task, "status" => "success")
                .increment(1);
            metrics::gauge!(metric::WORKER_LAST_TASK.name).set(now);
            outcome_line(&job, consumer, took, "job done");
        }
        Err(TaskError::Cancelled) => {}
        Err(TaskError::Failed(error)) => {
            metrics::counter!(metric::WORKER_TASKS.name, "task_type" => task, "status" => "failure")
                .increment(1);
            if job.fail(error, max_attempts, unix_now())? == JobState::Dead {
                dead_letter(ctx, delivery, &job, consumer).await?;
            } else {
                store.save_job(&job).await?;
                outcome_line(&job, consumer, took, "job failed; it will be retried");
            }
        }
    }
    Ok(())
}

/// Records the job's wait in the queue, from enqueue to its first attempt, in the
/// trace it was enqueued in.
fn trace_queue_wait(job: &JobRecord) {
    let (Some(traceparent), Some(enqueued), Some(started)) = (
        job.traceparent.as_deref(),
        clock::system_time(job.created_at),
        job.started_at().and_then(clock::system_time),
    ) else {
        return;
    };
    traces::record("queue wait", Role::Worker, traceparent, enqueued, started);
}

/// One line per job outcome: at INFO for submitted jobs, at DEBUG for the periodic
/// ones (four per interval would drown the log).
fn outcome_line(job: &JobRecord, worker: &str, took: Duration, what: &'static str) {
    let task_type = job.spec.task_type().as_str();
    let duration_ms = took.as_secs_f64() * 1e3;
    let attempts = job.attempts();
    match job.error() {
        Some(error) => {
            tracing::info!(job = %job.id, task_type, attempts, duration_ms, worker, %error, "{what}");
        }
        None if job.scheduled_for.is_some() => {
            tracing::debug!(job = %job.id, task_type, attempts, duration_ms, worker, "{what}");
        }
        None => tracing::info!(job = %job.id, task_type, attempts, duration_ms, worker, "{what}"),
    }
}

/// Dead-letters a delivery that cannot run at all: nothing is deleted silently.
async fn reject(ctx: &TaskContext, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
    ctx.store.reject(delivery, reason).await?;
    metrics::counter!(metric::WORKER_DEAD_LETTERED.name).increment(1);
    tracing::warn!(
        job = delivery.job_id.as_deref().unwrap_or(""),
        entry = %delivery.entry,
        reason,
        "job dead-lettered unrun"
    );
    Ok(())
}

/// Finishes a job that was just killed: acknowledged, and in the dead-letter stream.
async fn dead_letter(
    ctx: &TaskContext,
    delivery: &Delivery,
    job: &JobRecord,
    worker: &str,
) -> Result<(), StoreError> {
    ctx.store.finish(delivery, job).await?;
    metrics::counter!(metric::WORKER_DEAD_LETTERED.name).increment(1);
    tracing::warn!(
        job = %job.id,
        task_type = job.spec.task_type().as_str(),
        attempts = job.attempts(),
        worker,
        error = job.error().unwrap_or(""),
        "job dead-lettered"
    );
    Ok(())
}
