//! The embedded store for `svc all`: the same semantics as the Redis backend, in one
//! process, one file per concern. Expiry is checked when a key is read, as Redis does
//! lazily, and an index of expiry times lets a background task free what nobody reads
//! again (scheduler claims, finished jobs), as Redis' active expiry does.
//!
//! All of it sits behind one lock, never held across an `.await`, so an operation
//! that spans concerns (a finished job counted in the original's keys) is one step.

mod history;
mod presence;
mod queue;
mod targets;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{HealthSample, Incident, Instance, Store, StoreError};
use crate::service::Service;

/// How often expired keys are freed.
pub const PURGE_PERIOD: Duration = Duration::from_secs(1);

/// In-process store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    /// Wakes consumers waiting in `receive` when a job is enqueued.
    enqueued: Notify,
    /// Stops the purge task when the store is dropped.
    _purge: Option<DropGuard>,
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
    targets: HashMap<String, targets::TargetData>,
    /// Notification deliveries, newest first.
    deliveries: VecDeque<super::DeliveryRecord>,
    queue: queue::QueueData,
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
        self.queue.purge(now);
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
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose expired keys are freed in the background (when called on
    /// a runtime) until it is dropped.
    pub fn start() -> Arc<Self> {
        let mut store = Self::new();
        if tokio::runtime::Handle::try_current().is_ok() {
            let stop = CancellationToken::new();
            let state = Arc::clone(&store.state);
            crate::tasks::spawn_until(stop.clone(), "purge", async move {
                let mut ticks = tokio::time::interval(PURGE_PERIOD);
                loop {
                    ticks.tick().await;
                    lock(&state).purge(Instant::now());
                }
            });
            store._purge = Some(stop.drop_guard());
        }
        Arc::new(store)
    }

    /// Frees every key and job record that has expired.
    pub fn purge(&self) {
        self.state().purge(Instant::now());
    }

    /// Keys held (strings and job records), expired or not: what memory holds.
    pub fn key_count(&self) -> usize {
        let state = self.state();
        state.strings.len() + state.queue.records()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every operation leaves the state consistent before it could panic, so a
    // poisoned lock is still good to use.
    state.lock().unwrap_or_else(PoisonError::into_inner)
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
}
