//! What the dashboard saw, written into the history: uptime samples and incidents.
//!
//! The dashboard counts uptime itself because it keeps running when the workers or the
//! store are gone, which are exactly the outages worth counting. Every round adds one
//! sample per service to its minute's tally (checks, and checks that found the service
//! up); every change of a service's state becomes an incident
//! ([`crate::store::Store::state_change`]). Both wait in memory while the store is
//! unreachable and are written once it answers again, so a Redis freeze is counted
//! once Redis is back. A minute nobody observed stays empty: "no data", never "up".
//!
//! With several dashboards, each minute has one writer for the whole cluster: the first
//! to claim `recorder:<minute>` in the store writes that minute's samples and the
//! incidents that began in it; the others drop theirs. A minute's tally is written once
//! the minute is over.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::clock::minute_of;
use crate::probe::Probe;
use crate::service::Service;
use crate::service::ServiceState;
use crate::store::{Incident, SharedStore, StoreError, keys, series};

/// How long a minute's claim lives: longer than the history it guards.
const CLAIM_TTL: Duration = Duration::from_secs(25 * 3600);
/// Most minutes of samples kept in memory while the store is unreachable.
pub const MAX_BUFFERED_MINUTES: usize = 24 * 60;
/// Most state changes kept in memory while the store is unreachable.
pub const MAX_BUFFERED_CHANGES: usize = 1000;

/// Checks and checks that found the service up.
type Tally = (i64, i64);

/// The dashboard's observations not yet in the store, and the states it last saw.
#[derive(Debug, Default)]
pub struct Recorder {
    states: HashMap<Service, ServiceState>,
    tallies: BTreeMap<i64, HashMap<Service, Tally>>,
    changes: VecDeque<Incident>,
    /// Minute -> whether this dashboard is its writer.
    claims: BTreeMap<i64, bool>,
}

/// What the recorder is doing, for the dashboard's own card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStatus {
    /// Minutes of samples waiting to be written (the minute under way included).
    pub buffered_minutes: usize,
    /// State changes waiting to be written.
    pub buffered_changes: usize,
    /// Whether this dashboard writes the minute under way (`None`: not known yet).
    pub writer: Option<bool>,
}

impl Recorder {
    /// Counts one round of `probes` taken at `now` and notes every change of state.
    /// The first round compares with healthy, so an outage under way when the
    /// dashboard starts is recorded too (the store ignores a change to the state an
    /// open incident already shows).
    pub fn observe(&mut self, now: f64, probes: &[Probe]) {
        let slot = self.tallies.entry(minute_of(now)).or_default();
        for probe in probes {
            let tally = slot.entry(probe.name).or_default();
            tally.0 += 1;
            tally.1 += i64::from(probe.status != ServiceState::Down);
            let before = self
                .states
                .insert(probe.name, probe.status)
                .unwrap_or(ServiceState::Healthy);
            if before != probe.status {
                self.changes.push_back(Incident {
                    service: probe.name.into(),
                    from: Some(before),
                    to: probe.status,
                    // Milliseconds: finer says nothing, and reads back the same.
                    started_at: (now * 1e3).round() / 1e3,
                    ended_at: None,
                    reason: probe.error.clone(),
                    maintenance: None,
                });
            }
        }
        while self.tallies.len() > MAX_BUFFERED_MINUTES {
            self.tallies.pop_first();
        }
        while self.changes.len() > MAX_BUFFERED_CHANGES {
            self.changes.pop_front();
        }
    }

    /// Writes every finished minute and every state change this dashboard is the writer
    /// of; stops at the first store error and tries again next time.
    pub async fn flush(&mut self, store: &SharedStore, now: f64) -> Result<(), StoreError> {
        let current = minute_of(now);
        while let Some(minute) = self.tallies.keys().next().copied() {
            if minute >= current {
                break;
            }
            if self.writer_of(store, minute).await? {
                let services: Vec<(Service, Tally)> = self.tallies[&minute]
                    .iter()
                    .map(|(s, t)| (*s, *t))
                    .collect();
                for (service, (checks, up)) in services {
                    store
                        .series_add(&series::checks(service.as_str()), minute, checks)
                        .await?;
                    store
                        .series_add(&series::up(service.as_str()), minute, up)
                        .await?;
                    // Written: never again, whatever fails next.
                    if let Some(slot) = self.tallies.get_mut(&minute) {
                        slot.remove(&service);
                    }
                }
            }
            self.tallies.remove(&minute);
        }
        while let Some(change) = self.changes.front().cloned() {
            if self.writer_of(store, minute_of(change.started_at)).await? {
                store.state_change(&change).await?;
            }
            self.changes.pop_front();
        }
        // Claims of minutes nothing waits for any more.
        let oldest = self
            .tallies
            .keys()
            .next()
            .copied()
            .unwrap_or(current)
            .min(current);
        self.claims.retain(|m, _| *m >= oldest);
        // Claim the minute under way now, so the card can say who writes it.
        self.writer_of(store, current).await.map(drop)
    }

    async fn writer_of(&mut self, store: &SharedStore, minute: i64) -> Result<bool, StoreError> {
        if let Some(won) = self.claims.get(&minute) {
            return Ok(*won);
        }
        let won = store.claim(&keys::recorder(minute), CLAIM_TTL).await?;
        self.claims.insert(minute, won);
        Ok(won)
    }

    /// Checks and up-checks of `service` from minute `since` on that are not in the
    /// store yet.
    pub fn pending(&self, service: Service, since: i64) -> (i64, i64) {
        self.tallies
            .range(since..)
            .filter_map(|(_, slot)| slot.get(&service))
            .fold((0, 0), |(c, u), (dc, du)| (c + dc, u + du))
    }

    /// What the recorder is doing at `now`.
    pub fn status(&self, now: f64) -> RecorderStatus {
        RecorderStatus {
            buffered_minutes: self.tallies.len(),
            buffered_changes: self.changes.len(),
            writer: self.claims.get(&minute_of(now)).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn probe(service: Service, status: ServiceState) -> Probe {
        Probe::new(service, status)
    }

    #[tokio::test]
    async fn samples_wait_for_their_minute_to_end_and_changes_become_incidents() {
        let store: SharedStore = std::sync::Arc::new(MemoryStore::new());
        let mut recorder = Recorder::default();
        let m = minute_of(crate::clock::unix_now()) - 10;
        let t = 60.0 * m as f64;
        recorder.observe(t, &[probe(Service::Redis, ServiceState::Healthy)]);
        recorder.observe(t + 10.0, &[probe(Service::Redis, ServiceState::Down)]);
        recorder.observe(t + 20.0, &[probe(Service::Redis, ServiceState::Down)]);
        assert_eq!(recorder.pending(Service::Redis, 0), (3, 1));
        recorder.flush(&store, t + 30.0).await.expect("flush");
        // The minute is under way: nothing written yet, the incident is.
        let checks = store.series("checks:redis", 0).await.expect("series");
        assert!(checks.is_empty());
        let incidents = store.incidents(10).await.expect("incidents");
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].to, ServiceState::Down);
        assert_eq!(incidents[0].ended_at, None);

        recorder.observe(t + 70.0, &[probe(Service::Redis, ServiceState::Healthy)]);
        recorder.flush(&store, t + 70.0).await.expect("flush");
        assert_eq!(
            store.series("checks:redis", 0).await.expect("series"),
            vec![(m, 3)]
        );
        assert_eq!(
            store.series("up:redis", 0).await.expect("series"),
            vec![(m, 1)]
        );
        let incidents = store.incidents(10).await.expect("incidents");
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].ended_at, Some(t + 70.0));
        assert_eq!(recorder.pending(Service::Redis, 0), (1, 1));
    }

    #[tokio::test]
    async fn a_minute_claimed_by_another_dashboard_is_not_written_twice() {
        let store: SharedStore = std::sync::Arc::new(MemoryStore::new());
        let m = minute_of(crate::clock::unix_now()) - 10;
        let t = 60.0 * m as f64;
        let (mut a, mut b) = (Recorder::default(), Recorder::default());
        for r in [&mut a, &mut b] {
            r.observe(t, &[probe(Service::Worker, ServiceState::Down)]);
        }
        a.flush(&store, t + 61.0).await.expect("flush a");
        b.flush(&store, t + 61.0).await.expect("flush b");
        assert_eq!(
            store
                .series("checks:worker-service", 0)
                .await
                .expect("series"),
            vec![(m, 1)]
        );
        assert_eq!(store.incidents(10).await.expect("incidents").len(), 1);
    }
}
