//! The four task types, doing real work.
//!
//! - `data_processing`: CPU-bound batch work of a given size, on the blocking pool and
//!   at most one per core, so an HPA sees real CPU load;
//! - `health_check`: probes the gateway, the dashboard, every live worker and Redis,
//!   records status and latency in the health history (the dashboard counts uptime:
//!   it keeps observing when the workers or the store are gone);
//! - `metrics_collection`: rolls counters into per-minute series;
//! - `cleanup`: applies retention to the series and the dead-letter stream (records
//!   expire by TTL, history is trimmed on write, finished stream entries are deleted).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::clock::{minute_of, unix_now};
use crate::jobs::{DataSize, HoldMs, JobSpec, TaskType};
use crate::probe::{self, Probe};
use crate::service::{Role, Service, ServiceState};
use crate::store::{HealthSample, Instance, SharedStore, StoreError, keys, series};

/// Health samples kept per service: 24 h at the default 10 s interval.
pub const HEALTH_HISTORY: usize = 8640;
/// Minutes of series kept by `cleanup`.
pub const SERIES_RETENTION_MINUTES: i64 = 24 * 60;
/// Dead letters kept by `cleanup`.
pub const DEAD_LETTERS_KEPT: usize = 10_000;

/// Why an attempt did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task failed; the job will be retried or dead-lettered.
    #[error("{0}")]
    Failed(String),
    /// The worker is shutting down; the job stays unacknowledged for another replica.
    #[error("cancelled by shutdown")]
    Cancelled,
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        TaskError::Failed(e.to_string())
    }
}

/// What the tasks need from their worker.
pub struct TaskContext {
    /// This worker's instance id (named in the notifications it sends).
    pub instance: String,
    /// The shared store.
    pub store: SharedStore,
    /// HTTP client for probes ([`probe::client`]).
    pub http: reqwest::Client,
    /// Gateway base URL.
    pub gateway_url: url::Url,
    /// Dashboard base URL.
    pub dashboard_url: url::Url,
    /// Limits CPU-bound jobs to one per core.
    pub cpu: Arc<Semaphore>,
    /// Set when CPU-bound work must stop (shutdown past the grace period).
    pub cancel: Arc<AtomicBool>,
    /// The targets file in force, whose channels notifications go to.
    pub targets: Option<crate::targets::watch::Current>,
}

/// Runs one job.
pub async fn run(spec: &JobSpec, ctx: &TaskContext) -> Result<Value, TaskError> {
    match spec {
        JobSpec::DataProcessing {
            size,
            fail,
            hold_ms,
        } => {
            let result = data_processing(*size, *hold_ms, ctx).await?;
            match fail {
                Some(reason) => Err(TaskError::Failed(reason.clone())),
                None => Ok(result),
            }
        }
        JobSpec::HealthCheck {} => health_check(ctx).await,
        JobSpec::MetricsCollection {} => metrics_collection(ctx).await,
        JobSpec::Cleanup {} => cleanup(ctx).await,
        JobSpec::Notify {
            channel,
            url,
            body,
            key,
        } => notify(ctx, channel.as_deref(), url.as_deref(), body, key).await,
    }
}

/// Renders `event` for `channel` as the targets file has it now, and sends it; a job
/// of an older version goes as it was queued.
async fn notify(
    ctx: &TaskContext,
    channel: Option<&str>,
    url: Option<&str>,
    event: &Value,
    key: &str,
) -> Result<Value, TaskError> {
    use crate::targets::notify::{self, Event};
    let sent = match (channel, url) {
        (Some(name), _) => {
            let found = ctx.targets.as_ref().and_then(|targets| {
                targets
                    .borrow()
                    .notify
                    .iter()
                    .find(|c| c.name == name)
                    .cloned()
            });
            let Some(found) = found else {
                return Err(TaskError::Failed(format!(
                    "no channel {name:?} in the targets file"
                )));
            };
            let event: Event = serde_json::from_value(event.clone())
                .map_err(|e| TaskError::Failed(format!("not an event: {e}")))?;
            notify::send(
                &ctx.http,
                ctx.store.as_ref(),
                &found,
                &event,
                key,
                &ctx.instance,
            )
            .await
        }
        (None, Some(url)) => {
            notify::deliver_as_queued(&ctx.http, url, event, key, &ctx.instance).await
        }
        (None, None) => Err("a notification with no channel".to_owned()),
    };
    sent.map_err(TaskError::Failed)
}

async fn data_processing(
    size: DataSize,
    hold: HoldMs,
    ctx: &TaskContext,
) -> Result<Value, TaskError> {
    let started = Instant::now();
    let checksum = {
        let _core = ctx.cpu.acquire().await.map_err(|_| TaskError::Cancelled)?;
        let cancel = ctx.cancel.clone();
        tokio::task::spawn_blocking(move || crunch(size, &cancel))
            .await
            .map_err(|e| TaskError::Failed(format!("worker thread failed: {e}")))?
            .ok_or(TaskError::Cancelled)?
    };
    // Slow work on demand: holds the job's slot, not a core.
    tokio::time::sleep(hold.duration()).await;
    Ok(json!({
        "size": u32::from(size),
        "checksum": format!("{checksum:016x}"),
        "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
    }))
}

/// Generates `size` pseudo-random numbers, sorts them in chunks and folds them into a
/// checksum; `None` when cancelled (checked between chunks, so a shutdown never waits
/// long for it). [`DataSize`] bounds the allocation to 40 MB.
fn crunch(size: DataSize, cancel: &AtomicBool) -> Option<u64> {
    const CHUNK: usize = 1 << 16;
    let size = size.get();
    let mut state = (size as u64) ^ 0x9e37_79b9_7f4a_7c15;
    let mut items = Vec::with_capacity(size);
    while items.len() < size {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let n = CHUNK.min(size - items.len());
        items.extend((0..n).map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }));
    }
    for chunk in items.chunks_mut(CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        chunk.sort_unstable();
    }
    Some(items.iter().enumerate().fold(0u64, |acc, (i, v)| {
        acc.rotate_left(5) ^ v.wrapping_add(i as u64)
    }))
}

/// Workers as a whole, each probed at the address it announces
/// ([`probe::instance`]) and judged by the dashboard's rule ([`probe::replicas`]): a
/// worker that announces no address is named as not probed and counted neither way;
/// when none can be probed, this one (which is running this very task) is up. When the
/// instances cannot be listed, this worker is up and the rest unknown: degraded,
/// saying why.
async fn probe_workers(ctx: &TaskContext) -> Result<Probe, TaskError> {
    let workers: Vec<_> = match ctx.store.instances().await {
        Ok(instances) => instances
            .into_iter()
            .filter(|i| i.role == Role::Worker)
            .collect(),
        Err(e) if e.is_connection() => return Err(e.into()),
        Err(e) => {
            let mut probe = Probe::new(Service::Worker, ServiceState::Degraded);
            probe.error = Some(format!("replicas unknown: {e}"));
            return Ok(probe);
        }
    };
    if workers.is_empty() {
        let mut probe = Probe::new(Service::Worker, ServiceState::Down);
        probe.error = Some("no live worker instance".into());
        return Ok(probe);
    }
    let probes = join_all(workers.iter().map(|w| probe::instance(&ctx.http, w))).await;
    Ok(judge_workers(&workers, &probes))
}

/// The state of the workers from each one's probe (`None`: not probed).
fn judge_workers(workers: &[Instance], probes: &[Option<Probe>]) -> Probe {
    let each: Vec<(&str, Option<&Probe>)> = workers
        .iter()
        .zip(probes)
        .map(|(w, p)| (w.id.as_str(), p.as_ref()))
        .collect();
    match probe::replicas(Role::Worker, &each) {
        Some((probe, _)) => probe,
        None => Probe {
            error: Some(format!(
                "only this worker is known to run; {} not probed: they announce no address",
                workers.len()
            )),
            ..Probe::new(Service::Worker, ServiceState::Healthy)
        },
    }
}

async fn probe_base(ctx: &TaskContext, service: Service, base: &url::Url) -> Probe {
    match probe::readiness_url(base) {
        Ok(url) => probe::http(&ctx.http, service, &url).await,
        Err(e) => {
            let mut probe = Probe::new(service, ServiceState::Down);
            probe.error = Some(format!("bad URL: {e}"));
            probe
        }
    }
}

async fn health_check(ctx: &TaskContext) -> Result<Value, TaskError> {
    let (gateway, dashboard, redis) = tokio::join!(
        probe_base(ctx, Service::ApiGateway, &ctx.gateway_url),
        probe_base(ctx, Service::Dashboard, &ctx.dashboard_url),
        probe::store(&ctx.store),
    );
    let workers = probe_workers(ctx).await?;
    let now = unix_now();
    let mut summary = serde_json::Map::new();
    for probe in [gateway, workers, redis, dashboard] {
        let service = probe.name;
        let sample = HealthSample {
            service,
            timestamp: now,
            status: probe.status,
            response_time_ms: probe.response_time_ms,
            error: probe.error,
        };
        // Uptime is counted by the dashboard, which keeps observing (and counting)
        // while the workers or the store are gone: these samples are the sparklines.
        ctx.store.record_health(&sample, HEALTH_HISTORY).await?;
        summary.insert(service.as_str().to_owned(), json!(sample.status));
    }
    Ok(Value::Object(summary))
}

/// Rolls each counter on its own: a foreign value under one key is reported (and
/// logged) without holding up the others; a lost connection fails the job.
async fn metrics_collection(ctx: &TaskContext) -> Result<Value, TaskError> {
    let minute = minute_of(unix_now());
    let store = &ctx.store;
    let mut errors = Vec::new();
    let mut roll = async |counter: &str, series: &str| -> Result<Value, TaskError> {
        match store.roll_up(counter, series, minute).await {
            Ok(delta) => Ok(json!(delta)),
            Err(e) if e.is_connection() => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "counter not rolled up");
                errors.push(e.to_string());
                Ok(Value::Null)
            }
        }
    };
    let requests = roll(keys::TOTAL_REQUESTS, series::REQUESTS).await?;
    let mut tasks = serde_json::Map::new();
    for task in TaskType::ALL {
        let name = task.as_str();
        let delta = roll(&keys::worker_tasks(name), &series::tasks(name)).await?;
        tasks.insert(name.to_owned(), delta);
    }
    let depth = store.queue_stats().await?.depth;
    store
        .series_set(
            series::QUEUE_DEPTH,
            minute,
            i64::try_from(depth).unwrap_or(i64::MAX),
        )
        .await?;
    Ok(json!({"requests": requests, "tasks": tasks, "queue_depth": depth, "errors": errors}))
}

async fn cleanup(ctx: &TaskContext) -> Result<Value, TaskError> {
    let before = minute_of(unix_now()) - SERIES_RETENTION_MINUTES;
    let mut points = 0;
    for name in series::all() {
        points += ctx.store.series_trim(&name, before).await?;
    }
    let dead_letters = ctx.store.trim_dead_letters(DEAD_LETTERS_KEPT).await?;
    Ok(json!({"series_points_removed": points, "dead_letters_removed": dead_letters}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, address: Option<&str>) -> Instance {
        Instance {
            role: Role::Worker,
            id: id.into(),
            version: "1".into(),
            started_at: 0.0,
            address: address.map(str::to_owned),
            faults: Vec::new(),
            location: None,
        }
    }

    #[tokio::test]
    async fn a_worker_without_an_address_is_named_not_probed_and_judged_neither_way() {
        let client = probe::client().expect("client");
        let quiet = worker("w-2", None);
        assert_eq!(probe::instance(&client, &quiet).await, None);
        let workers = [worker("w-1", Some("127.0.0.1:1")), quiet];
        let ok = Probe::new(Service::Worker, ServiceState::Healthy);
        let judged = judge_workers(&workers, &[Some(ok), None]);
        assert_eq!(judged.status, ServiceState::Healthy);
        assert_eq!(
            judged.error.as_deref(),
            Some(format!("w-2: {}", probe::NOT_PROBED).as_str())
        );
        // None can be probed: this worker, running the check, is up.
        let judged = judge_workers(&workers[1..], &[None]);
        assert_eq!(judged.status, ServiceState::Healthy);
        assert!(judged.error.is_some_and(|e| e.contains("1 not probed")));
        // A worker that answers but is not ready is not up: as on the dashboard.
        let unready = Probe {
            ready: false,
            error: Some("not ready (HTTP 503)".into()),
            ..Probe::new(Service::Worker, ServiceState::Degraded)
        };
        let judged = judge_workers(&workers[..1], &[Some(unready)]);
        assert_eq!(judged.status, ServiceState::Down);
        assert_eq!(
            judged.error.as_deref(),
            Some("0 of 1 worker ready; w-1: not ready (HTTP 503)")
        );
    }

    #[test]
    fn crunch_is_deterministic_and_cancellable() {
        let run = AtomicBool::new(false);
        let size = |n: u64| DataSize::try_from(n).expect("in range");
        assert_eq!(crunch(size(1000), &run), crunch(size(1000), &run));
        assert_ne!(crunch(size(1000), &run), crunch(size(1001), &run));
        assert_eq!(crunch(size(1000), &AtomicBool::new(true)), None);
    }
}
