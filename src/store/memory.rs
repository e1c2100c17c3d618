//! The embedded store for `svc all`: the same semantics as the Redis backend, in one
//! process. Expiry is checked when a key is read, as Redis does lazily, and an index of
//! expiry times lets a background task free what nobody reads again (scheduler claims,
//! finished jobs), as Redis' active expiry does.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use tokio::sync::Notify;

use super::targets::{self, HOURS_KEPT, MINUTES_KEPT, SAMPLES_KEPT, Tally};
use super::{
    Delivery, HealthSample, INCIDENTS_KEPT, INCIDENTS_KEPT_DAYS, Incident, Instance, LOST_KEPT,
    MAX_QUEUE, QueueStats, Reclaimed, ServiceState, Store, StoreError, TargetReport, TargetSample,
    keys,
};
use crate::clock::unix_now;
use crate::jobs::{JobRecord, JobState, RECORD_TTL, mark_dead};
use crate::service::Service;

/// How often expired keys are freed.
pub const PURGE_PERIOD: Duration = Duration::from_secs(1);

/// In-process store. Its lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Wakes consumers waiting in `receive` when a job is enqueued.
    enqueued: Notify,
}

#[derive(Debug, Default)]
struct State {
    strings: HashMap<String, (String, Option<Instant>)>,
    /// When each expiring string expires, soonest first (entries may be stale: a key
    /// set again since has a later one).
    expiries: BTreeSet<(Instant, String)>,
    /// Instance -> Unix seconds its heartbeat expires.
    instances: Vec<(Instance, f64)>,
    health: HashMap<Service, VecDeque<HealthSample>>,
    /// Incidents, oldest first.
    incidents: VecDeque<Incident>,
    series: HashMap<String, BTreeMap<i64, i64>>,
    targets: HashMap<String, TargetData>,
    /// Job records as stored, and when each expires.
    jobs: HashMap<String, (String, Instant)>,
    queue: Queue,
}

/// The job stream and its one consumer group.
#[derive(Debug, Default)]
struct Queue {
    next_entry: u64,
    /// Entries never delivered, oldest first.
    waiting: VecDeque<Delivery>,
    /// Delivered and not finished: entry -> (delivery, when last delivered).
    pending: BTreeMap<u64, (Delivery, Instant)>,
    /// Job id and error of each dead letter, oldest first.
    dead: VecDeque<(String, String)>,
}

/// What is kept of one target: its state and newest samples as stored (JSON), and
/// its tallies by absolute minute and hour.
#[derive(Debug, Default)]
struct TargetData {
    state: Option<String>,
    samples: VecDeque<String>,
    minutes: BTreeMap<i64, Tally>,
    hours: BTreeMap<i64, Tally>,
}

/// Counts one probe in slot `at` of `tallies`, keeping the newest `kept` slots.
fn count(tallies: &mut BTreeMap<i64, Tally>, at: i64, up: i64, kept: u64) {
    let tally = tallies.entry(at).or_default();
    tally.checks += 1;
    tally.up += up;
    *tallies = tallies.split_off(&(at - i64::try_from(kept).unwrap_or(i64::MAX)));
}

fn entry_number(entry: &str) -> Option<u64> {
    entry.split('-').next()?.parse().ok()
}

impl State {
    fn set_expiring(&mut self, key: &str, value: String, until: Instant) {
        self.expiries.insert((until, key.to_owned()));
        self.strings.insert(key.to_owned(), (value, Some(until)));
    }

    /// Frees every string and job record expired at `now`.
    fn purge(&mut self, now: Instant) {
        while let Some((until, key)) = self.expiries.first().cloned() {
            if until > now {
                break;
            }
            self.expiries.pop_first();
            if self
                .strings
                .get(&key)
                .is_some_and(|(_, u)| u.is_some_and(|u| u <= now))
            {
                self.strings.remove(&key);
            }
        }
        self.jobs.retain(|_, (_, until)| *until > now);
    }

    /// The counter at `key`: 0 when absent, an error naming the key when it holds
    /// something else.
    fn counter(&mut self, key: &str) -> Result<i64, StoreError> {
        match self.live_string(key) {
            None => Ok(0),
            Some(v) => v.trim().parse::<i64>().map_err(|_| StoreError::Data {
                key: key.to_owned(),
                reason: "ERR value is not an integer or out of range".into(),
            }),
        }
    }

    fn live_string(&mut self, key: &str) -> Option<&String> {
        let expired = self
            .strings
            .get(key)
            .is_some_and(|(_, until)| until.is_some_and(|t| t <= Instant::now()));
        if expired {
            self.strings.remove(key);
        }
        self.strings.get(key).map(|(v, _)| v)
    }
}

impl MemoryStore {
    /// Moves up to `max` waiting entries to pending; what was moved.
    fn deliver(&self, max: usize) -> Vec<Delivery> {
        let mut state = self.state();
        let now = Instant::now();
        let count = max.min(state.queue.waiting.len());
        let taken: Vec<Delivery> = state.queue.waiting.drain(..count).collect();
        for d in &taken {
            if let Some(n) = entry_number(&d.entry) {
                state.queue.pending.insert(n, (d.clone(), now));
            }
        }
        taken
    }

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose expired keys are freed in the background (when called on
    /// a runtime) until the last handle is dropped.
    pub fn start() -> Arc<Self> {
        let store = Arc::new(Self::new());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Self> = Arc::downgrade(&store);
            runtime.spawn(async move {
                let mut ticks = tokio::time::interval(PURGE_PERIOD);
                loop {
                    ticks.tick().await;
                    let Some(store) = weak.upgrade() else { return };
                    store.purge();
                }
            });
        }
        store
    }

    /// Frees every key and job record that has expired.
    pub fn purge(&self) {
        self.state().purge(Instant::now());
    }

    /// Keys held (strings and job records), expired or not: what memory holds.
    pub fn key_count(&self) -> usize {
        let state = self.state();
        state.strings.len() + state.jobs.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the state consistent before it could panic, so a
        // poisoned lock is still good to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn key(&self, name: &str) -> String {
        // The embedded store is this process's alone: names need no prefix.
        name.to_owned()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<i64, StoreError> {
        let mut state = self.state();
        let current = state.counter(key)?;
        let next = current.checked_add(1).ok_or_else(|| StoreError::Data {
            key: key.to_owned(),
            reason: "ERR increment or decrement would overflow".into(),
        })?;
        let expiry = state.strings.get(key).and_then(|(_, until)| *until);
        state
            .strings
            .insert(key.to_owned(), (next.to_string(), expiry));
        Ok(next)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state().live_string(key).cloned())
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.state()
            .strings
            .insert(key.to_owned(), (value.to_owned(), None));
        Ok(())
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.live_string(key).is_some() {
            return Ok(false);
        }
        let until = Instant::now() + ttl;
        state.set_expiring(key, "1".to_owned(), until);
        Ok(true)
    }

    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError> {
        let now = unix_now();
        let mut state = self.state();
        // Expired beats stay a while: they are the lost instances.
        let kept = now - LOST_KEPT.as_secs_f64();
        state
            .instances
            .retain(|(i, until)| *until > kept && i != instance);
        state
            .instances
            .push((instance.clone(), now + ttl.as_secs_f64()));
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let now = unix_now();
        Ok(self
            .state()
            .instances
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(i, _)| i.clone())
            .collect())
    }

    async fn depart(&self, instance: &Instance) -> Result<(), StoreError> {
        self.state().instances.retain(|(i, _)| i != instance);
        Ok(())
    }

    async fn lost_instances(&self, window: Duration) -> Result<Vec<(Instance, f64)>, StoreError> {
        let now = unix_now();
        let since = now - window.min(LOST_KEPT).as_secs_f64();
        Ok(self
            .state()
            .instances
            .iter()
            .filter(|(_, until)| *until >= since && *until <= now)
            .map(|(i, until)| (i.clone(), *until))
            .collect())
    }

    async fn state_change(&self, change: &Incident) -> Result<(), StoreError> {
        let mut state = self.state();
        let open = state
            .incidents
            .iter_mut()
            .rev()
            .find(|i| i.service == change.service && i.ended_at.is_none());
        match open {
            Some(open) if open.to == change.to => return Ok(()),
            Some(open) => open.ended_at = Some(change.started_at.max(open.started_at)),
            None if change.to == ServiceState::Healthy => return Ok(()),
            None => {}
        }
        if change.to != ServiceState::Healthy {
            let opened = Incident {
                ended_at: None,
                ..change.clone()
            };
            let at = state
                .incidents
                .partition_point(|i| i.started_at <= opened.started_at);
            state.incidents.insert(at, opened);
        }
        let cutoff = unix_now() - INCIDENTS_KEPT_DAYS * 86400.0;
        while state
            .incidents
            .front()
            .is_some_and(|i| i.started_at < cutoff)
            || state.incidents.len() > INCIDENTS_KEPT
        {
            state.incidents.pop_front();
        }
        Ok(())
    }

    async fn incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        Ok(self
            .state()
            .incidents
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError> {
        let mut state = self.state();
        let history = state.health.entry(sample.service).or_default();
        history.push_front(sample.clone());
        history.truncate(keep);
        Ok(())
    }

    async fn health_history(
        &self,
        service: Service,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError> {
        Ok(self
            .state()
            .health
            .get(&service)
            .map(|h| h.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn series_add(&self, series: &str, minute: i64, delta: i64) -> Result<(), StoreError> {
        *self
            .state()
            .series
            .entry(series.to_owned())
            .or_default()
            .entry(minute)
            .or_default() += delta;
        Ok(())
    }

    async fn roll_up(&self, counter: &str, series: &str, minute: i64) -> Result<i64, StoreError> {
        // One critical section: nothing can run between the read and the write.
        let mut state = self.state();
        let current = state.counter(counter)?;
        let seen_key = format!("rollup:{counter}");
        let seen = state.counter(&seen_key).unwrap_or(0);
        let delta = if current >= seen {
            current - seen
        } else {
            current
        };
        if delta > 0 {
            *state
                .series
                .entry(series.to_owned())
                .or_default()
                .entry(minute)
                .or_default() += delta;
        }
        state.strings.insert(seen_key, (current.to_string(), None));
        Ok(delta)
    }

    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError> {
        self.state()
            .series
            .entry(series.to_owned())
            .or_default()
            .insert(minute, value);
        Ok(())
    }

    async fn series(&self, series: &str, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(self
            .state()
            .series
            .get(series)
            .map(|points| points.range(since..).map(|(m, v)| (*m, *v)).collect())
            .unwrap_or_default())
    }

    async fn series_trim(&self, series: &str, before: i64) -> Result<usize, StoreError> {
        let mut state = self.state();
        let Some(points) = state.series.get_mut(series) else {
            return Ok(0);
        };
        let kept = points.split_off(&before);
        let removed = points.len();
        *points = kept;
        Ok(removed)
    }

    async fn target_state(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state().targets.get(name).and_then(|t| t.state.clone()))
    }

    async fn put_target_state(
        &self,
        name: &str,
        seen: Option<&str>,
        state: &str,
        sample: Option<&TargetSample>,
    ) -> Result<bool, StoreError> {
        let sample = sample
            .map(|s| serde_json::to_string(s).map(|json| (s, json)))
            .transpose()
            .map_err(|e| StoreError::Command(e.to_string()))?;
        let mut all = self.state();
        let target = all.targets.entry(name.to_owned()).or_default();
        if target.state.as_deref() != seen {
            return Ok(false);
        }
        target.state = Some(state.to_owned());
        if let Some((sample, json)) = sample {
            target.samples.push_front(json);
            target.samples.truncate(SAMPLES_KEPT);
            let up = i64::from(sample.status != ServiceState::Down);
            let minute = crate::clock::minute_of(sample.timestamp);
            count(&mut target.minutes, minute, up, MINUTES_KEPT.as_secs() / 60);
            count(
                &mut target.hours,
                minute.div_euclid(60),
                up,
                HOURS_KEPT.as_secs() / 3600,
            );
        }
        Ok(true)
    }

    async fn target_reports(
        &self,
        names: &[String],
        now: f64,
    ) -> Result<Vec<TargetReport>, StoreError> {
        let all = self.state();
        Ok(names
            .iter()
            .map(|name| match all.targets.get(name) {
                Some(t) => targets::report(
                    name,
                    t.state.as_deref(),
                    &t.samples.iter().cloned().collect::<Vec<_>>(),
                    &t.minutes.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
                    &t.hours.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
                    now,
                ),
                None => targets::report(name, None, &[], &[], &[], now),
            })
            .collect())
    }

    async fn enqueue(&self, job: &JobRecord) -> Result<bool, StoreError> {
        {
            let mut state = self.state();
            let queue = &mut state.queue;
            if queue.waiting.len() + queue.pending.len() >= MAX_QUEUE {
                return Ok(false);
            }
            queue.next_entry += 1;
            let entry = format!("{}-0", queue.next_entry);
            queue.waiting.push_back(Delivery {
                entry,
                job_id: Some(job.id.clone()),
            });
            state
                .jobs
                .insert(job.id.clone(), (job.encode(), Instant::now() + RECORD_TTL));
        }
        self.enqueued.notify_waiters();
        Ok(true)
    }

    async fn receive(
        &self,
        _consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so an enqueue in between is
            // not missed.
            let notified = self.enqueued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self.deliver(max);
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn reclaim(
        &self,
        _consumer: &str,
        idle: Duration,
        max: usize,
        cursor: &str,
    ) -> Result<Reclaimed, StoreError> {
        let mut state = self.state();
        let now = Instant::now();
        let from = entry_number(cursor).unwrap_or(0);
        let mut claimed = Vec::new();
        let mut next = None;
        for (n, (delivery, delivered_at)) in state.queue.pending.range_mut(from..) {
            if claimed.len() == max {
                next = Some(*n);
                break;
            }
            if now.duration_since(*delivered_at) >= idle {
                *delivered_at = now;
                claimed.push(delivery.clone());
            }
        }
        Ok(Reclaimed {
            deliveries: claimed,
            cursor: next.map_or_else(|| super::RECLAIM_START.to_owned(), |n| format!("{n}-0")),
        })
    }

    async fn keep_alive(&self, _consumer: &str, delivery: &Delivery) -> Result<(), StoreError> {
        if let Some(n) = entry_number(&delivery.entry)
            && let Some((_, delivered_at)) = self.state().queue.pending.get_mut(&n)
        {
            *delivered_at = Instant::now();
        }
        Ok(())
    }

    async fn save_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.state()
            .jobs
            .insert(job.id.clone(), (job.encode(), Instant::now() + RECORD_TTL));
        Ok(())
    }

    async fn load_job(&self, id: &str) -> Result<Option<String>, StoreError> {
        let state = self.state();
        Ok(state
            .jobs
            .get(id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(job, _)| job.clone()))
    }

    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        state
            .jobs
            .insert(job.id.clone(), (job.encode(), Instant::now() + RECORD_TTL));
        match job.state {
            JobState::Done => {
                let task = job.spec.task_type().as_str();
                let counter = keys::worker_tasks(task);
                let done = state.counter(&counter).unwrap_or(0).saturating_add(1);
                let finished = job.finished_at.unwrap_or_else(unix_now).to_string();
                for (key, value) in [
                    (counter, done.to_string()),
                    (keys::WORKER_LAST_TASK.to_owned(), task.to_owned()),
                    (keys::WORKER_LAST_TASK_TIME.to_owned(), finished),
                ] {
                    state.strings.insert(key, (value, None));
                }
            }
            JobState::Dead => {
                let error = job.error.clone().unwrap_or_default();
                state.queue.dead.push_back((job.id.clone(), error));
            }
            JobState::Queued | JobState::Running | JobState::Failed => {}
        }
        if let Some(n) = entry_number(&delivery.entry) {
            state.queue.pending.remove(&n);
        }
        Ok(())
    }

    async fn discard(&self, delivery: &Delivery) -> Result<(), StoreError> {
        if let Some(n) = entry_number(&delivery.entry) {
            self.state().queue.pending.remove(&n);
        }
        Ok(())
    }

    async fn reject(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(id) = &delivery.job_id
            && let Some((raw, _)) = state.jobs.get(id)
            && let Some(marked) = mark_dead(raw, reason, unix_now())
        {
            state
                .jobs
                .insert(id.clone(), (marked, Instant::now() + RECORD_TTL));
        }
        let id = delivery.job_id.clone().unwrap_or_default();
        state.queue.dead.push_back((id, reason.to_owned()));
        if let Some(n) = entry_number(&delivery.entry) {
            state.queue.pending.remove(&n);
        }
        Ok(())
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let state = self.state();
        Ok(QueueStats {
            depth: state.queue.waiting.len() as u64,
            pending: state.queue.pending.len() as u64,
            dead_letters: state.queue.dead.len() as u64,
        })
    }

    async fn trim_dead_letters(&self, keep: usize) -> Result<usize, StoreError> {
        let mut state = self.state();
        let dead = &mut state.queue.dead;
        let excess = dead.len().saturating_sub(keep);
        dead.drain(..excess);
        Ok(excess)
    }
}
