//! The embedded store for `svc all`: the same semantics as the Redis backend, in one
//! process. Expiry is checked when a key is read, as Redis does lazily.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{HealthSample, Instance, Store, StoreError};
use crate::http::unix_now;

/// In-process store. Its lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    strings: HashMap<String, (String, Option<Instant>)>,
    /// Instance -> Unix seconds its heartbeat expires.
    instances: Vec<(Instance, f64)>,
    health: HashMap<String, VecDeque<HealthSample>>,
    series: HashMap<String, BTreeMap<i64, i64>>,
}

impl State {
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

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<i64, StoreError> {
        let mut state = self.state();
        let current = match state.live_string(key) {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| {
                StoreError::Command("ERR value is not an integer or out of range".into())
            })?,
        };
        let next = current.checked_add(1).ok_or_else(|| {
            StoreError::Command("ERR increment or decrement would overflow".into())
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
        state
            .strings
            .insert(key.to_owned(), ("1".to_owned(), Some(until)));
        Ok(true)
    }

    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError> {
        let now = unix_now();
        let mut state = self.state();
        state
            .instances
            .retain(|(i, until)| *until > now && i != instance);
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

    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError> {
        let mut state = self.state();
        let history = state.health.entry(sample.service.clone()).or_default();
        history.push_front(sample.clone());
        history.truncate(keep);
        Ok(())
    }

    async fn health_history(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError> {
        Ok(self
            .state()
            .health
            .get(service)
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
}
