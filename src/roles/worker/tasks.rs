//! The four task types, doing real work.
//!
//! - `data_processing`: CPU-bound batch work of a given size, on the blocking pool and
//!   at most one per core, so an HPA sees real CPU load;
//! - `health_check`: probes the gateway, the dashboard, every live worker and Redis,
//!   records status and latency in the health history and the uptime series;
//! - `metrics_collection`: rolls counters into per-minute series;
//! - `cleanup`: applies retention to the series and the dead-letter stream (records
//!   expire by TTL, history is trimmed on write, finished stream entries are deleted).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::http::unix_now;
use crate::jobs::{JobSpec, TaskType};
use crate::store::{
    HealthSample, ServiceState, SharedStore, StoreError, keys, minute_of, series, services,
};

/// Health samples kept per service: 24 h at the default 10 s interval.
pub const HEALTH_HISTORY: usize = 8640;
/// Minutes of series kept by `cleanup`.
pub const SERIES_RETENTION_MINUTES: i64 = 24 * 60;
/// Dead letters kept by `cleanup`.
pub const DEAD_LETTERS_KEPT: usize = 10_000;
/// A probe answered slower than this counts as degraded.
const SLOW: Duration = Duration::from_secs(1);
/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The shared store.
    pub store: SharedStore,
    /// Prefix of the keys this system adds (for the rollup bookkeeping).
    pub key_prefix: String,
    /// HTTP client for probes.
    pub http: reqwest::Client,
    /// Gateway base URL.
    pub gateway_url: url::Url,
    /// Dashboard base URL.
    pub dashboard_url: url::Url,
    /// Limits CPU-bound jobs to one per core.
    pub cpu: Arc<Semaphore>,
    /// Set when CPU-bound work must stop (shutdown past the grace period).
    pub cancel: Arc<AtomicBool>,
}

/// Runs one job.
pub async fn run(spec: &JobSpec, ctx: &TaskContext) -> Result<Value, TaskError> {
    match spec {
        JobSpec::DataProcessing { size, fail } => {
            let result = data_processing(*size, ctx).await?;
            match fail {
                Some(reason) => Err(TaskError::Failed(reason.clone())),
                None => Ok(result),
            }
        }
        JobSpec::HealthCheck {} => health_check(ctx).await,
        JobSpec::MetricsCollection {} => metrics_collection(ctx).await,
        JobSpec::Cleanup {} => cleanup(ctx).await,
    }
}

async fn data_processing(size: u32, ctx: &TaskContext) -> Result<Value, TaskError> {
    let _core = ctx.cpu.acquire().await.map_err(|_| TaskError::Cancelled)?;
    let cancel = ctx.cancel.clone();
    let started = Instant::now();
    let checksum = tokio::task::spawn_blocking(move || crunch(size, &cancel))
        .await
        .map_err(|e| TaskError::Failed(format!("worker thread failed: {e}")))?
        .ok_or(TaskError::Cancelled)?;
    Ok(json!({
        "size": size,
        "checksum": format!("{checksum:016x}"),
        "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
    }))
}

/// Generates `size` pseudo-random numbers, sorts them in chunks and folds them into a
/// checksum; `None` when cancelled (checked between chunks, so a shutdown never waits
/// long for it).
fn crunch(size: u32, cancel: &AtomicBool) -> Option<u64> {
    const CHUNK: usize = 1 << 16;
    let mut state = u64::from(size) ^ 0x9e37_79b9_7f4a_7c15;
    let mut items = Vec::with_capacity(size as usize);
    while items.len() < size as usize {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let n = CHUNK.min(size as usize - items.len());
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

/// Result of one HTTP probe.
struct Probe {
    status: ServiceState,
    latency: Option<Duration>,
    error: Option<String>,
}

async fn probe_http(http: &reqwest::Client, base: &str) -> Probe {
    let url = format!("{}/health/ready", base.trim_end_matches('/'));
    let started = Instant::now();
    match http.get(&url).timeout(PROBE_TIMEOUT).send().await {
        Ok(res) => {
            let latency = started.elapsed();
            let (status, error) = if !res.status().is_success() {
                (
                    ServiceState::Degraded,
                    Some(format!("answered {}", res.status())),
                )
            } else if latency > SLOW {
                (ServiceState::Degraded, Some(format!("slow: {latency:?}")))
            } else {
                (ServiceState::Healthy, None)
            };
            Probe {
                status,
                latency: Some(latency),
                error,
            }
        }
        Err(e) => Probe {
            status: ServiceState::Down,
            latency: None,
            error: Some(probe_error(&e)),
        },
    }
}

/// A short reason: reqwest's own message plus the innermost cause.
fn probe_error(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() {
        format!("no answer within {PROBE_TIMEOUT:?}")
    } else {
        format!("unreachable: {source}")
    }
}

async fn probe_redis(ctx: &TaskContext) -> Probe {
    let started = Instant::now();
    match ctx.store.ping().await {
        Ok(()) => {
            let latency = started.elapsed();
            Probe {
                status: if latency > SLOW / 10 {
                    ServiceState::Degraded
                } else {
                    ServiceState::Healthy
                },
                latency: Some(latency),
                error: None,
            }
        }
        Err(e) => Probe {
            status: ServiceState::Down,
            latency: None,
            error: Some(e.to_string()),
        },
    }
}

/// Workers as a whole: healthy when every live instance is, down when none answers.
async fn probe_workers(ctx: &TaskContext) -> Result<Probe, TaskError> {
    let workers: Vec<_> = ctx
        .store
        .instances()
        .await?
        .into_iter()
        .filter(|i| i.role == "worker")
        .collect();
    if workers.is_empty() {
        return Ok(Probe {
            status: ServiceState::Down,
            latency: None,
            error: Some("no live worker instance".into()),
        });
    }
    let probes = join_all(
        workers
            .iter()
            .map(|w| async move { probe_http(&ctx.http, &format!("http://{}", w.address)).await }),
    )
    .await;
    let healthy = probes
        .iter()
        .filter(|p| p.status == ServiceState::Healthy)
        .count();
    let latency = probes.iter().filter_map(|p| p.latency).max();
    let failing: Vec<String> = workers
        .iter()
        .zip(&probes)
        .filter_map(|(w, p)| p.error.as_ref().map(|e| format!("{}: {e}", w.id)))
        .collect();
    let status = if healthy == probes.len() {
        ServiceState::Healthy
    } else if probes.iter().any(|p| p.status != ServiceState::Down) {
        ServiceState::Degraded
    } else {
        ServiceState::Down
    };
    Ok(Probe {
        status,
        latency,
        error: (!failing.is_empty()).then(|| failing.join("; ")),
    })
}

async fn health_check(ctx: &TaskContext) -> Result<Value, TaskError> {
    let (gateway, dashboard, redis) = tokio::join!(
        probe_http(&ctx.http, ctx.gateway_url.as_str()),
        probe_http(&ctx.http, ctx.dashboard_url.as_str()),
        probe_redis(ctx),
    );
    let workers = probe_workers(ctx).await?;
    let now = unix_now();
    let minute = minute_of(now);
    let mut summary = serde_json::Map::new();
    for (service, probe) in [
        (services::API_GATEWAY, gateway),
        (services::WORKER, workers),
        (services::REDIS, redis),
        (services::DASHBOARD, dashboard),
    ] {
        let sample = HealthSample {
            service: service.to_owned(),
            timestamp: now,
            status: probe.status,
            response_time_ms: probe.latency.map(|l| l.as_secs_f64() * 1e3),
            error: probe.error,
        };
        ctx.store.record_health(&sample, HEALTH_HISTORY).await?;
        ctx.store
            .series_add(&series::checks(service), minute, 1)
            .await?;
        let up = i64::from(probe.status != ServiceState::Down);
        ctx.store
            .series_add(&series::up(service), minute, up)
            .await?;
        summary.insert(service.to_owned(), json!(sample.status));
    }
    Ok(Value::Object(summary))
}

/// Adds what a counter gained since the last collection to this minute's point.
async fn roll(
    ctx: &TaskContext,
    counter: &str,
    series: &str,
    minute: i64,
) -> Result<i64, TaskError> {
    let current = read_i64(ctx, counter).await?;
    let seen_key = format!("{}rollup:{counter}", ctx.key_prefix);
    let seen = read_i64(ctx, &seen_key).await?;
    // A counter below what was seen was reset (Redis lost its data): count it whole.
    let delta = if current >= seen {
        current - seen
    } else {
        current
    };
    if delta > 0 {
        ctx.store.series_add(series, minute, delta).await?;
    }
    ctx.store.set(&seen_key, &current.to_string()).await?;
    Ok(delta)
}

async fn read_i64(ctx: &TaskContext, key: &str) -> Result<i64, TaskError> {
    Ok(ctx
        .store
        .get(key)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn metrics_collection(ctx: &TaskContext) -> Result<Value, TaskError> {
    let minute = minute_of(unix_now());
    let requests = roll(ctx, keys::TOTAL_REQUESTS, series::REQUESTS, minute).await?;
    let mut tasks = serde_json::Map::new();
    for task in TaskType::ALL {
        let name = task.as_str();
        let delta = roll(ctx, &keys::worker_tasks(name), &series::tasks(name), minute).await?;
        tasks.insert(name.to_owned(), json!(delta));
    }
    let depth = ctx.store.queue_stats().await?.depth;
    ctx.store
        .series_set(
            series::QUEUE_DEPTH,
            minute,
            i64::try_from(depth).unwrap_or(i64::MAX),
        )
        .await?;
    Ok(json!({"requests": requests, "tasks": tasks, "queue_depth": depth}))
}

/// Every series the tasks write.
fn all_series() -> Vec<String> {
    let mut names = vec![series::REQUESTS.to_owned(), series::QUEUE_DEPTH.to_owned()];
    names.extend(TaskType::ALL.iter().map(|t| series::tasks(t.as_str())));
    for service in services::ALL {
        names.push(series::checks(service));
        names.push(series::up(service));
    }
    names
}

async fn cleanup(ctx: &TaskContext) -> Result<Value, TaskError> {
    let before = minute_of(unix_now()) - SERIES_RETENTION_MINUTES;
    let mut points = 0;
    for name in all_series() {
        points += ctx.store.series_trim(&name, before).await?;
    }
    let dead_letters = ctx.store.trim_dead_letters(DEAD_LETTERS_KEPT).await?;
    Ok(json!({"series_points_removed": points, "dead_letters_removed": dead_letters}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crunch_is_deterministic_and_cancellable() {
        let run = AtomicBool::new(false);
        assert_eq!(crunch(1000, &run), crunch(1000, &run));
        assert_ne!(crunch(1000, &run), crunch(1001, &run));
        assert_eq!(crunch(1000, &AtomicBool::new(true)), None);
    }
}
