//! Everything the page shows, gathered at most once per refresh period.
//!
//! One background task builds a [`Snapshot`] every period: it probes the gateway, the
//! worker and the store ([`super::probe`]) and reads the history the worker writes. The
//! handlers read the newest snapshot from a `watch` channel, so however many browsers
//! are open the services see one probe per period, and a slow service never holds up a
//! page: it holds up only the next snapshot, by at most the probe timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::probe::{self, Probe, System, Target};
use crate::http::{Health, unix_now};
use crate::jobs::TaskType;
use crate::store::{
    HealthSample, Instance, QueueStats, ServiceState, SharedStore, StoreError, keys, minute_of,
    series, services,
};

/// Health samples behind a sparkline (one per worker interval: ten minutes at 10 s).
pub const SPARK_POINTS: usize = 60;
/// History is stale when three worker intervals have passed without a new health
/// sample; the interval is read off the samples' spacing, and never taken below 10 s.
pub const STALE_INTERVALS: f64 = 3.0;
/// The shortest interval assumed (the worker's default), so a quick worker does not
/// make a page that refreshes less often than it probes flicker "stale".
pub const MIN_INTERVAL: f64 = 10.0;

/// One service's recorded history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Share of probes that found it up over the last 60 minutes, in percent.
    pub uptime_1h: Option<f64>,
    /// The same over the last 1440 minutes.
    pub uptime_24h: Option<f64>,
    /// Response times of the last probes, oldest first (`None`: no answer).
    pub response_ms: Vec<Option<f64>>,
    /// Unix seconds of the newest sample.
    pub newest: Option<f64>,
    /// Median seconds between consecutive samples: the worker's interval.
    pub interval: Option<f64>,
}

/// Counters and gauges of the whole system, from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// `api:total_requests`.
    pub total_requests: Option<i64>,
    /// Gateway requests in each of the last 60 minutes, oldest first (the last one is
    /// the minute under way).
    pub requests_per_minute: Vec<i64>,
    /// Per task type: tasks done all time, and in the last full minute.
    pub tasks: Vec<(&'static str, i64, i64)>,
    /// The job queue.
    pub queue: Option<QueueStats>,
    /// Type of the last task finished.
    pub last_task: Option<String>,
    /// Unix seconds when it finished.
    pub last_task_at: Option<f64>,
}

impl Figures {
    /// Gateway requests in the last full minute (the one before the minute under way).
    pub fn requests_last_minute(&self) -> Option<i64> {
        let last_full = self.requests_per_minute.len().checked_sub(2)?;
        self.requests_per_minute.get(last_full).copied()
    }
}

/// What the page shows at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Unix seconds when it was gathered.
    pub taken_at: f64,
    /// One probe per service, in [`services::ALL`] order.
    pub services: Vec<Probe>,
    /// The system state that follows from them.
    pub system: System,
    /// History per service, in the same order.
    pub history: Vec<History>,
    /// Live replicas, by role then start time.
    pub instances: Vec<Instance>,
    /// System-wide figures.
    pub figures: Figures,
    /// Whether the store answered the dashboard.
    pub redis_connected: bool,
}

impl Snapshot {
    /// Unix seconds of the newest health sample of any service.
    pub fn newest_sample(&self) -> Option<f64> {
        self.history
            .iter()
            .filter_map(|h| h.newest)
            .max_by(f64::total_cmp)
    }

    /// Whether the history is too old to show as live at `now`.
    pub fn history_stale(&self, now: f64) -> bool {
        self.newest_sample()
            .is_none_or(|t| now - t > STALE_INTERVALS * self.sample_interval())
    }

    /// The worker's interval as the samples show it (at least [`MIN_INTERVAL`]).
    pub fn sample_interval(&self) -> f64 {
        self.history
            .iter()
            .filter_map(|h| h.interval)
            .max_by(f64::total_cmp)
            .map_or(MIN_INTERVAL, |i| i.max(MIN_INTERVAL))
    }
}

/// Where a snapshot's data comes from.
pub struct Sources {
    /// HTTP client for the probes, with [`probe::PROBE_TIMEOUT`].
    pub client: reqwest::Client,
    /// The gateway.
    pub gateway: Target,
    /// The worker.
    pub worker: Target,
    /// The store.
    pub store: SharedStore,
    /// The dashboard's own readiness.
    pub health: Health,
}

/// The newest snapshot; `None` until the first one is gathered.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// Gathers a snapshot now and every `period` until the task is aborted.
pub fn spawn(sources: Sources, period: Duration) -> (Latest, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        // A round slower than the period delays the next one: never two at once.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            tx.send_replace(Some(Arc::new(gather(&sources).await)));
        }
    });
    (rx, task)
}

/// Probes every service and reads the store once.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn gather(sources: &Sources) -> Snapshot {
    let (gateway, worker, redis) = tokio::join!(
        probe::http(&sources.client, &sources.gateway),
        probe::http(&sources.client, &sources.worker),
        probe::store(&sources.store),
    );
    let dashboard = match sources.health.readiness() {
        Ok(()) => Probe {
            name: services::DASHBOARD,
            status: ServiceState::Healthy,
            response_time_ms: None,
            error: None,
        },
        Err(reason) => Probe {
            name: services::DASHBOARD,
            status: ServiceState::Degraded,
            response_time_ms: None,
            error: Some(format!("not ready: {reason}")),
        },
    };
    let redis_connected = redis.status != ServiceState::Down;
    let probes = vec![gateway, worker, redis, dashboard];
    let now = unix_now();
    // With the store down every read would wait for its timeout: skip them.
    let stored = if redis_connected {
        read_store(&sources.store, now).await
    } else {
        Err(StoreError::Unavailable("store unreachable".into()))
    };
    if let Err(e) = &stored {
        tracing::debug!(error = %e, "no history this round");
    }
    let (history, instances, figures) = stored.unwrap_or_default();
    Snapshot {
        taken_at: now,
        system: probe::system(&probes),
        services: probes,
        history,
        instances,
        figures,
        redis_connected,
    }
}

type Stored = (Vec<History>, Vec<Instance>, Figures);

async fn read_store(store: &SharedStore, now: f64) -> Result<Stored, StoreError> {
    let mut history = Vec::with_capacity(services::ALL.len());
    for service in services::ALL {
        history.push(read_history(store, service, now).await?);
    }
    let mut instances = store.instances().await?;
    instances.sort_by(|a, b| {
        a.role
            .cmp(&b.role)
            .then(a.started_at.total_cmp(&b.started_at))
    });
    Ok((history, instances, read_figures(store, now).await?))
}

async fn read_history(store: &SharedStore, service: &str, now: f64) -> Result<History, StoreError> {
    let samples: Vec<HealthSample> = store.health_history(service, SPARK_POINTS).await?;
    let minute = minute_of(now);
    let day_ago = minute - 1439;
    let checks = store.series(&series::checks(service), day_ago).await?;
    let up = store.series(&series::up(service), day_ago).await?;
    Ok(History {
        uptime_1h: uptime(&checks, &up, minute - 59),
        uptime_24h: uptime(&checks, &up, day_ago),
        response_ms: samples.iter().rev().map(|s| s.response_time_ms).collect(),
        newest: samples.first().map(|s| s.timestamp),
        interval: median_gap(&samples),
    })
}

/// Median time between consecutive samples (newest first), if there are two.
fn median_gap(samples: &[HealthSample]) -> Option<f64> {
    let mut gaps: Vec<f64> = samples
        .windows(2)
        .map(|pair| pair[0].timestamp - pair[1].timestamp)
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied()
}

/// Percent of probes from minute `since` on that found the service up.
fn uptime(checks: &[(i64, i64)], up: &[(i64, i64)], since: i64) -> Option<f64> {
    let total = |points: &[(i64, i64)]| -> i64 {
        points
            .iter()
            .filter(|(m, _)| *m >= since)
            .map(|(_, v)| v)
            .sum()
    };
    let checks = total(checks);
    (checks > 0).then(|| (100.0 * total(up) as f64 / checks as f64).clamp(0.0, 100.0))
}

async fn read_figures(store: &SharedStore, now: f64) -> Result<Figures, StoreError> {
    let minute = minute_of(now);
    let first = minute - 59;
    let mut requests_per_minute = vec![0; 60];
    for (m, v) in store.series(series::REQUESTS, first).await? {
        if let Some(slot) = usize::try_from(m - first)
            .ok()
            .and_then(|i| requests_per_minute.get_mut(i))
        {
            *slot = v;
        }
    }
    let mut tasks = Vec::with_capacity(TaskType::ALL.len());
    for task in TaskType::ALL.map(TaskType::as_str) {
        let total = number(store.get(&keys::worker_tasks(task)).await?).unwrap_or(0);
        let last_minute = store
            .series(&series::tasks(task), minute - 1)
            .await?
            .iter()
            .find(|(m, _)| *m == minute - 1)
            .map_or(0, |(_, v)| *v);
        tasks.push((task, total, last_minute));
    }
    Ok(Figures {
        // The store answered: a counter it does not hold is still zero.
        total_requests: Some(number(store.get(keys::TOTAL_REQUESTS).await?).unwrap_or(0)),
        requests_per_minute,
        tasks,
        queue: Some(store.queue_stats().await?),
        last_task: store.get(keys::WORKER_LAST_TASK).await?,
        last_task_at: number(store.get(keys::WORKER_LAST_TASK_TIME).await?),
    })
}

/// A stored number; a value that does not parse counts as absent.
fn number<T: std::str::FromStr>(raw: Option<String>) -> Option<T> {
    raw.and_then(|s| s.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_counts_only_the_window() {
        let checks = [(10, 6), (70, 6)];
        let up = [(10, 0), (70, 3)];
        assert_eq!(uptime(&checks, &up, 11), Some(50.0));
        assert_eq!(uptime(&checks, &up, 0), Some(25.0));
        assert_eq!(uptime(&checks, &up, 71), None);
    }

    fn sampled_every(gap: f64, newest: f64) -> History {
        let samples: Vec<HealthSample> = (0..5)
            .map(|i| HealthSample {
                service: services::REDIS.into(),
                timestamp: newest - f64::from(i) * gap,
                status: ServiceState::Healthy,
                response_time_ms: Some(1.0),
                error: None,
            })
            .collect();
        History {
            newest: Some(newest),
            interval: median_gap(&samples),
            ..History::default()
        }
    }

    fn stale(history: History, now: f64) -> bool {
        Snapshot {
            taken_at: now,
            services: Vec::new(),
            system: probe::system(&[]),
            history: vec![history],
            instances: Vec::new(),
            figures: Figures::default(),
            redis_connected: true,
        }
        .history_stale(now)
    }

    #[test]
    fn staleness_follows_the_workers_interval() {
        // The default 10 s interval: stale after 30 s.
        assert!(!stale(sampled_every(10.0, 1000.0), 1025.0));
        assert!(stale(sampled_every(10.0, 1000.0), 1035.0));
        // A 60 s interval: 100 s without a sample is not yet stale.
        assert!(!stale(sampled_every(60.0, 1000.0), 1100.0));
        assert!(stale(sampled_every(60.0, 1000.0), 1190.0));
        // A quick worker never makes it stricter than 30 s.
        assert!(!stale(sampled_every(0.2, 1000.0), 1020.0));
        // No sample at all is stale.
        assert!(stale(History::default(), 1000.0));
    }
}
