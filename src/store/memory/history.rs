//! Probe results, per-minute series and incidents in memory.

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::unix_now;
use crate::service::{Service, ServiceState};
use crate::store::{
    HealthSample, History, INCIDENTS_KEPT, INCIDENTS_KEPT_DAYS, Incident, StoreError, keys,
};

#[async_trait]
impl History for MemoryStore {
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
        let seen_key = keys::rolled_up(counter);
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
}
