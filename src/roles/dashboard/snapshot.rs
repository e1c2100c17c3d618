//! Everything the page shows, gathered at most once per refresh period.
//!
//! One background task builds a [`Snapshot`] every period: it pings the store, probes
//! every replica of every role ([`super::replicas`]), records what it saw
//! ([`super::record`]) and reads the history back.
//! Each figure read from the store stands alone: a value this build cannot read under
//! one key blanks that figure and names the key in `errors`, and the rest still shows. The
//! handlers read the newest snapshot from a `watch` channel, so however many browsers
//! are open the services see one probe per period, and a slow service never holds up a
//! page: it holds up only the next snapshot, by at most the probe timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use url::Url;

use std::collections::VecDeque;

use super::days::DayUptimes;
use super::record::{Recorder, RecorderStatus};
use super::replicas::{self, Count, LOST_FOR, Replica};
use super::system::{self, System};
use crate::clock::{minute_of, unix_now};
use crate::http::Health;
use crate::jobs::TaskType;
use crate::probe::{self, Probe};
use crate::service::ServiceState;
use crate::service::{Role, Service};
use crate::store::{
    DELIVERIES_KEPT, DeliveryRecord, HealthSample, Incident, Instance, QueueStats, SharedStore,
    StoreError, keys, series,
};
use crate::targets::history::Uptimes;
use crate::targets::locations;
use crate::targets::maintenance::{self, Active};
use crate::targets::slo::{self, Slo, SloReport};
use crate::targets::state::TargetReport;
use crate::targets::watch::Current;
use crate::traces;

/// Incidents shown on the page and in `/api/incidents`.
pub const INCIDENTS_SHOWN: usize = 50;
/// The window of the request rate.
pub const RATE_WINDOW: f64 = 60.0;
/// The shortest span of counter readings a rate is given for.
pub const MIN_RATE_SPAN: f64 = 10.0;

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
    /// Per task type: tasks done all time (unknown when unreadable), and in the last
    /// full minute.
    pub tasks: Vec<(&'static str, Option<i64>, i64)>,
    /// The job queue.
    pub queue: Option<QueueStats>,
    /// Type of the last task finished.
    pub last_task: Option<String>,
    /// Unix seconds when it finished.
    pub last_task_at: Option<f64>,
    /// Gateway requests per minute over the last [`RATE_WINDOW`] seconds, from this
    /// dashboard's own readings of the counter (unknown until it has read it over
    /// [`MIN_RATE_SPAN`] seconds, or when the counter went down).
    pub request_rate: Option<f64>,
    /// Seconds the rate spans.
    pub rate_span: Option<f64>,
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
    /// One verdict per service, in [`Service::ALL`] order.
    pub services: Vec<Probe>,
    /// Ready and counted replicas per service, in the same order (`None` for the store).
    pub counts: Vec<Option<Count>>,
    /// Every replica probed this round, and the lost ones, by role then start time.
    pub replicas: Vec<Replica>,
    /// Whether the replica list is from this round (the store answered) rather than
    /// the last one it gave.
    pub replicas_current: bool,
    /// Newest incidents first; `None` when the store could not be read.
    pub incidents: Option<Vec<Incident>>,
    /// Newest notification deliveries first; `None` when the store could not be read.
    pub deliveries: Option<Vec<DeliveryRecord>>,
    /// What the recorder is doing.
    pub recorder: RecorderStatus,
    /// Readiness probes sent this round (replicas and Service URLs; not this dashboard,
    /// which answers for itself).
    pub probes_sent: usize,
    /// The system state that follows from them.
    pub system: System,
    /// History per service, in the same order.
    pub history: Vec<History>,
    /// Live replicas, by role then start time; `None` when unknown (the store did not
    /// answer).
    pub instances: Option<Vec<Instance>>,
    /// System-wide figures.
    pub figures: Figures,
    /// Whether the store answered the dashboard.
    pub redis_connected: bool,
    /// `"redis"` or `"memory"` (the embedded store of `svc all`).
    pub store_backend: &'static str,
    /// What could not be read from the store, each naming its key.
    pub errors: Vec<String>,
    /// The user's targets, in file order.
    pub targets: Vec<TargetRow>,
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
    /// HTTP client for the probes ([`probe::client`]).
    pub client: reqwest::Client,
    /// The gateway Service's readiness URL (probed when no replica can be).
    pub gateway: Url,
    /// The worker Service's readiness URL (the same).
    pub worker: Url,
    /// The store.
    pub store: SharedStore,
    /// The dashboard's own readiness.
    pub health: Health,
    /// This dashboard's instance id (answered from `health`, not probed).
    pub own_id: String,
    /// The targets in force, when a targets file is given.
    pub targets: Option<Current>,
}

/// One of the user's targets, as the page shows it.
#[derive(Debug, Clone)]
pub struct TargetRow {
    /// Its name.
    pub name: String,
    /// Its group, if the file gives one.
    pub group: Option<String>,
    /// What is probed.
    pub url: String,
    /// Its check type (`http`, `tcp`, `dns`, ...: [`crate::targets::check::kind`]).
    pub kind: &'static str,
    /// What the store knows of it; `None` when the store could not be read.
    pub report: Option<TargetReport>,
    /// The maintenance window it is in, if any: its state is then `maintenance`.
    pub maintenance: Option<Active>,
    /// Where it stands against its objective, when it has one and the store answered.
    pub slo: Option<SloReport>,
    /// Time between its probes: a location's result older than two is no data.
    pub interval: Duration,
    /// The locations it lists (none: every live one): shown even before they report.
    pub listed: Vec<String>,
    /// Its uptime over days ([`super::days`]), read every few minutes.
    pub uptime_days: Uptimes,
}

/// What the gatherer carries from one round to the next.
#[derive(Default)]
pub struct Memory {
    /// The last replica list the store gave: probed while the store is unreachable.
    live: Vec<Instance>,
    lost: Vec<(Instance, f64)>,
    /// Readings of the request counter: (Unix seconds, value), oldest first.
    readings: VecDeque<(f64, i64)>,
    recorder: Recorder,
    days: DayUptimes,
}

/// The newest snapshot; `None` until the first one is gathered.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// Gathers a snapshot now and every `period` until `stop` is cancelled.
pub fn spawn(sources: Sources, period: Duration, stop: CancellationToken) -> Latest {
    let (tx, rx) = watch::channel(None);
    crate::tasks::spawn_until(stop, "snapshot", async move {
        let mut ticks = tokio::time::interval(period);
        // A round slower than the period delays the next one: never two at once.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut memory = Memory::default();
        loop {
            ticks.tick().await;
            // Opened here rather than by `gather` so traces can tell it is the
            // dashboard's: the probes it sends carry its trace.
            let span = tracing::debug_span!("gather");
            traces::open(&span, Role::Dashboard, None);
            let snapshot = gather(&sources, &mut memory).instrument(span).await;
            tx.send_replace(Some(Arc::new(snapshot)));
        }
    });
    rx
}

/// Probes every replica of every role and the store, records what it saw, and reads
/// the store once.
pub async fn gather(sources: &Sources, memory: &mut Memory) -> Snapshot {
    let store = &sources.store;
    let embedded = store.backend() != "redis";
    let redis = probe::store(store).await;
    let redis_connected = redis.status != ServiceState::Down;
    let mut read = Reads::default();
    // With the store down every read would wait for its timeout: skip them, and probe
    // the replicas it last listed.
    let replicas_current = redis_connected
        && match (
            read.ok(store.instances().await),
            read.ok(store.lost_instances(LOST_FOR).await),
        ) {
            (Some(live), Some(mut lost)) => {
                // A process that came back under the same id is not lost.
                lost.retain(|(gone, _)| {
                    live.iter()
                        .all(|i| (i.role, &i.id) != (gone.role, &gone.id))
                });
                memory.live = live;
                memory.lost = lost;
                true
            }
            _ => false,
        };
    let own = match sources.health.readiness() {
        Ok(()) => Probe::new(Service::Dashboard, ServiceState::Healthy),
        // Not ready (its store is gone) but serving this page: degraded, and counted
        // as answering.
        Err(reason) => Probe {
            error: Some(format!("not ready: {reason}")),
            ready: true,
            ..Probe::new(Service::Dashboard, ServiceState::Degraded)
        },
    };
    let mut replicas = replicas::probe_all(
        &sources.client,
        &memory.live,
        &memory.lost,
        (&sources.own_id, &own),
    )
    .await;
    replicas.sort_by(|a, b| {
        a.instance
            .role
            .cmp(&b.instance.role)
            .then(a.lost_since.is_some().cmp(&b.lost_since.is_some()))
            .then(a.instance.started_at.total_cmp(&b.instance.started_at))
    });
    // A role with no replica to probe: its Service URL (the dashboard: itself).
    let fallback = async |role: Role, url: &Url| {
        if replicas::has_replicas(role, &replicas) {
            None
        } else {
            Some(probe::http(&sources.client, role.service(), url).await)
        }
    };
    let (gateway, worker) = tokio::join!(
        fallback(Role::Gateway, &sources.gateway),
        fallback(Role::Worker, &sources.worker)
    );
    let probes_sent = replicas
        .iter()
        .filter(|r| r.probe.is_some())
        .filter(|r| !(r.instance.role == Role::Dashboard && r.instance.id == sources.own_id))
        .count()
        + usize::from(gateway.is_some())
        + usize::from(worker.is_some());
    let (gateway, gateways) = replicas::judge(Role::Gateway, &replicas, gateway);
    let (worker, workers) = replicas::judge(Role::Worker, &replicas, worker);
    let (dashboard, dashboards) = replicas::judge(Role::Dashboard, &replicas, Some(own));
    let probes = vec![gateway, worker, redis, dashboard];
    let counts = vec![Some(gateways), Some(workers), None, Some(dashboards)];
    for p in &probes {
        system::count(p);
    }
    let now = unix_now();
    // The embedded store is part of this process: not a service of its own.
    let observed: Vec<Probe> = probes
        .iter()
        .filter(|p| !(embedded && p.name == Service::Redis))
        .cloned()
        .collect();
    memory.recorder.observe(now, &observed);
    let file = sources.targets.as_ref().map(|t| t.borrow().clone());
    let listed = file
        .as_deref()
        .map(|t| t.targets.as_slice())
        .unwrap_or_default();
    let windows = file
        .as_deref()
        .map(|t| t.maintenance.as_slice())
        .unwrap_or_default();
    let mut reports = if redis_connected && !listed.is_empty() {
        let names: Vec<String> = listed.iter().map(|t| t.name.clone()).collect();
        memory.days.refresh(store.as_ref(), &names, now).await;
        read.ok(locations::reports(store.as_ref(), &names, now).await)
    } else {
        None
    }
    .map(Vec::into_iter);
    let objectives: Vec<(String, Slo)> = listed
        .iter()
        .filter_map(|t| Some((t.name.clone(), t.slo?)))
        .collect();
    let mut slos = if redis_connected && !objectives.is_empty() {
        read.ok(slo::reports(store.as_ref(), &objectives, now).await)
    } else {
        None
    }
    .map(Vec::into_iter);
    let targets = listed
        .iter()
        .map(|t| TargetRow {
            name: t.name.clone(),
            group: t.group.clone(),
            url: t.endpoint.shown(),
            kind: crate::targets::check::kind(&t.endpoint),
            report: reports.as_mut().and_then(Iterator::next),
            maintenance: maintenance::active(windows, &t.name, t.group.as_deref(), now),
            slo: t.slo.and_then(|_| slos.as_mut().and_then(Iterator::next)),
            interval: t.interval,
            listed: t.locations.clone().unwrap_or_default(),
            uptime_days: memory.days.of(&t.name),
        })
        .collect();
    let (history, instances, figures, incidents, deliveries) = if redis_connected {
        if let Err(e) = memory.recorder.flush(store, now).await {
            tracing::debug!(error = %e, "observations kept for later");
        }
        let (history, instances, mut figures) =
            read_store(store, now, &memory.recorder, &mut read).await;
        (figures.request_rate, figures.rate_span) =
            rate(&mut memory.readings, now, figures.total_requests);
        let incidents = read.ok(store.incidents(INCIDENTS_SHOWN).await);
        // Notifications go only to the channels of a targets file.
        let deliveries = if listed.is_empty() {
            Some(Vec::new())
        } else {
            read.ok(store.deliveries(DELIVERIES_KEPT).await)
        };
        (history, instances, figures, incidents, deliveries)
    } else {
        (Vec::new(), None, Figures::default(), None, None)
    };
    if !read.errors.is_empty() {
        tracing::debug!(errors = ?read.errors, "some figures could not be read");
    }
    Snapshot {
        taken_at: now,
        system: system::system(&probes),
        services: probes,
        counts,
        replicas,
        replicas_current,
        incidents,
        deliveries,
        recorder: memory.recorder.status(now),
        probes_sent,
        history,
        instances,
        figures,
        redis_connected,
        store_backend: store.backend(),
        errors: read.errors,
        targets,
    }
}

/// Notes the counter's `total` at `now` and gives the rate per minute over the last
/// [`RATE_WINDOW`] seconds and the seconds it spans. A counter that went down (reset)
/// starts the readings again.
fn rate(
    readings: &mut VecDeque<(f64, i64)>,
    now: f64,
    total: Option<i64>,
) -> (Option<f64>, Option<f64>) {
    let Some(total) = total else {
        return (None, None);
    };
    if readings.back().is_some_and(|(_, last)| *last > total) {
        readings.clear();
    }
    readings.push_back((now, total));
    while readings.len() > 2 && readings.get(1).is_some_and(|(t, _)| now - t >= RATE_WINDOW) {
        readings.pop_front();
    }
    let Some(&(first_at, first)) = readings.front() else {
        return (None, None);
    };
    let span = now - first_at;
    if span < MIN_RATE_SPAN {
        return (None, None);
    }
    (Some((total - first) as f64 * 60.0 / span), Some(span))
}

/// The errors of one round of store reads.
#[derive(Default)]
struct Reads {
    errors: Vec<String>,
}

impl Reads {
    /// The value, or `None` with the error noted.
    fn ok<T>(&mut self, result: Result<T, StoreError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e.to_string())).ok()
    }
}

async fn read_store(
    store: &SharedStore,
    now: f64,
    recorder: &Recorder,
    read: &mut Reads,
) -> (Vec<History>, Option<Vec<Instance>>, Figures) {
    let mut history = Vec::with_capacity(Service::ALL.len());
    for service in Service::ALL {
        history.push(read_history(store, service, now, recorder, read).await);
    }
    let instances = read.ok(store.instances().await).map(|mut instances| {
        instances.sort_by(|a, b| {
            a.role
                .cmp(&b.role)
                .then(a.started_at.total_cmp(&b.started_at))
        });
        instances
    });
    (history, instances, read_figures(store, now, read).await)
}

async fn read_history(
    store: &SharedStore,
    service: Service,
    now: f64,
    recorder: &Recorder,
    read: &mut Reads,
) -> History {
    let samples: Vec<HealthSample> = read
        .ok(store.health_history(service, SPARK_POINTS).await)
        .unwrap_or_default();
    let minute = minute_of(now);
    let day_ago = minute - 1439;
    let checks = read.ok(store
        .series(&series::checks(service.as_str()), day_ago)
        .await);
    let up = read.ok(store.series(&series::up(service.as_str()), day_ago).await);
    let (mut checks, mut up) = (checks.unwrap_or_default(), up.unwrap_or_default());
    // What this dashboard saw and has not written yet (the minute under way).
    let (pending_checks, pending_up) = recorder.pending(service, day_ago);
    checks.push((minute, pending_checks));
    up.push((minute, pending_up));
    History {
        uptime_1h: uptime(&checks, &up, minute - 59),
        uptime_24h: uptime(&checks, &up, day_ago),
        response_ms: samples.iter().rev().map(|s| s.response_time_ms).collect(),
        newest: samples.first().map(|s| s.timestamp),
        interval: median_gap(&samples),
    }
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

async fn read_figures(store: &SharedStore, now: f64, read: &mut Reads) -> Figures {
    let minute = minute_of(now);
    let first = minute - 59;
    let mut requests_per_minute = vec![0; 60];
    for (m, v) in read
        .ok(store.series(series::REQUESTS, first).await)
        .unwrap_or_default()
    {
        if let Some(slot) = usize::try_from(m - first)
            .ok()
            .and_then(|i| requests_per_minute.get_mut(i))
        {
            *slot = v;
        }
    }
    let mut tasks = Vec::with_capacity(TaskType::ALL.len());
    for task in TaskType::ALL.map(TaskType::as_str) {
        let key = keys::worker_tasks(task);
        let total = read
            .ok(store.get(&key).await)
            .and_then(|v| read.ok(number(&key, v)));
        let last_minute = read
            .ok(store.series(&series::tasks(task), minute - 1).await)
            .unwrap_or_default()
            .iter()
            .find(|(m, _)| *m == minute - 1)
            .map_or(0, |(_, v)| *v);
        tasks.push((task, total, last_minute));
    }
    let total_requests = read
        .ok(store.get(keys::TOTAL_REQUESTS).await)
        .and_then(|v| read.ok(number(keys::TOTAL_REQUESTS, v)));
    let last_task_at = read
        .ok(store.get(keys::WORKER_LAST_TASK_TIME).await)
        .flatten()
        .and_then(|v| read.ok(number::<f64>(keys::WORKER_LAST_TASK_TIME, Some(v))));
    Figures {
        total_requests,
        requests_per_minute,
        tasks,
        queue: read.ok(store.queue_stats().await),
        last_task: read.ok(store.get(keys::WORKER_LAST_TASK).await).flatten(),
        last_task_at,
        request_rate: None,
        rate_span: None,
    }
}

/// A stored number: absent counts as zero (the store answered: a counter it does not
/// hold is still zero); a value that does not parse is an error naming its key.
fn number<T: std::str::FromStr + Default>(key: &str, raw: Option<String>) -> Result<T, StoreError> {
    match raw {
        None => Ok(T::default()),
        Some(s) => s.trim().parse().map_err(|_| StoreError::Data {
            key: key.to_owned(),
            reason: format!("{s:?} is not a number"),
        }),
    }
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
                service: Service::Redis,
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
            counts: Vec::new(),
            replicas: Vec::new(),
            replicas_current: true,
            incidents: Some(Vec::new()),
            deliveries: Some(Vec::new()),
            recorder: RecorderStatus::default(),
            probes_sent: 0,
            system: system::system(&[]),
            history: vec![history],
            instances: Some(Vec::new()),
            figures: Figures::default(),
            redis_connected: true,
            store_backend: "redis",
            errors: Vec::new(),
            targets: Vec::new(),
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

    #[test]
    fn the_request_rate_spans_the_last_minute_of_readings() {
        let mut readings = VecDeque::new();
        assert_eq!(rate(&mut readings, 0.0, Some(100)), (None, None));
        assert_eq!(rate(&mut readings, 5.0, Some(200)), (None, None));
        assert_eq!(
            rate(&mut readings, 30.0, Some(400)),
            (Some(600.0), Some(30.0))
        );
        // Readings older than the window no longer count.
        rate(&mut readings, 60.0, Some(1000));
        let (per_minute, span) = rate(&mut readings, 90.0, Some(1000));
        assert_eq!(span, Some(60.0));
        assert_eq!(per_minute, Some(600.0));
        // A reset counter starts again.
        assert_eq!(rate(&mut readings, 95.0, Some(3)), (None, None));
        assert_eq!(rate(&mut readings, 95.0, None), (None, None));
    }
}
