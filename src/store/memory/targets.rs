//! Targets' state, samples and tallies in memory.

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;

use async_trait::async_trait;

use super::MemoryStore;
use crate::store::{
    DAYS_KEPT, DELIVERIES_KEPT, DeliveryRecord, HOURS_KEPT, HourTally, Latency, MINUTES_KEPT,
    SAMPLES_KEPT, SampleRecord, StoreError, Tally, TargetRecord, Targets, latency_bucket,
};

/// What is kept of one target: its state and newest samples as stored (JSON), and
/// its tallies by absolute minute, hour (with response times) and day.
#[derive(Debug, Default)]
pub(super) struct TargetData {
    state: Option<String>,
    samples: VecDeque<String>,
    minutes: BTreeMap<i64, Tally>,
    hours: BTreeMap<i64, Tally>,
    latency: BTreeMap<i64, Latency>,
    days: BTreeMap<i64, Tally>,
}

/// Counts one probe in slot `at` of `tallies`, keeping the newest `kept` slots.
fn count(tallies: &mut BTreeMap<i64, Tally>, at: i64, up: i64, kept: u64) {
    let tally = tallies.entry(at).or_default();
    tally.checks += 1;
    tally.up += up;
    *tallies = tallies.split_off(&(at - i64::try_from(kept).unwrap_or(i64::MAX)));
}

#[async_trait]
impl Targets for MemoryStore {
    async fn target_state(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state().targets.get(name).and_then(|t| t.state.clone()))
    }

    async fn put_target_state(
        &self,
        name: &str,
        seen: Option<&str>,
        state: &str,
        sample: Option<&SampleRecord>,
    ) -> Result<bool, StoreError> {
        let mut all = self.state();
        let target = all.targets.entry(name.to_owned()).or_default();
        if target.state.as_deref() != seen {
            return Ok(false);
        }
        target.state = Some(state.to_owned());
        if let Some(sample) = sample {
            target.samples.push_front(sample.json.clone());
            target.samples.truncate(SAMPLES_KEPT);
            if sample.counts {
                let up = i64::from(sample.up);
                let minute = crate::clock::minute_of(sample.timestamp);
                count(&mut target.minutes, minute, up, MINUTES_KEPT.as_secs() / 60);
            }
            if sample.counts && !sample.minutes_only {
                let up = i64::from(sample.up);
                let hour = crate::clock::minute_of(sample.timestamp).div_euclid(60);
                let hours_kept = HOURS_KEPT.as_secs() / 3600;
                count(&mut target.hours, hour, up, hours_kept);
                count(
                    &mut target.days,
                    hour.div_euclid(24),
                    up,
                    DAYS_KEPT.as_secs() / 86400,
                );
                if let Some(ms) = sample.response_time_ms.filter(|_| sample.up) {
                    let latency = target.latency.entry(hour).or_default();
                    if let Some(n) = latency.0.get_mut(latency_bucket(ms)) {
                        *n += 1;
                    }
                    let oldest = hour - i64::try_from(hours_kept).unwrap_or(i64::MAX);
                    target.latency = target.latency.split_off(&oldest);
                }
            }
        }
        Ok(true)
    }

    async fn target_records(
        &self,
        names: &[String],
        now: f64,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        // The same window the Redis backend reads: this hour and the last, today and
        // yesterday.
        let hour = crate::clock::minute_of(now).div_euclid(60);
        let (minutes_from, hours_from) = ((hour - 1) * 60, (hour.div_euclid(24) - 1) * 24);
        let all = self.state();
        Ok(names
            .iter()
            .map(|name| match all.targets.get(name) {
                Some(t) => TargetRecord {
                    state: t.state.clone(),
                    samples: t.samples.iter().cloned().collect(),
                    minutes: t
                        .minutes
                        .range(minutes_from..)
                        .map(|(k, v)| (*k, *v))
                        .collect(),
                    hours: t.hours.range(hours_from..).map(|(k, v)| (*k, *v)).collect(),
                    error: None,
                },
                None => TargetRecord::default(),
            })
            .collect())
    }

    async fn target_days(
        &self,
        name: &str,
        days: RangeInclusive<i64>,
    ) -> Result<Vec<(i64, Tally)>, StoreError> {
        Ok(self
            .state()
            .targets
            .get(name)
            .map(|t| t.days.range(days).map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default())
    }

    async fn target_hours(
        &self,
        name: &str,
        hours: RangeInclusive<i64>,
    ) -> Result<Vec<HourTally>, StoreError> {
        let all = self.state();
        let Some(target) = all.targets.get(name) else {
            return Ok(Vec::new());
        };
        Ok(target
            .hours
            .range(hours)
            .map(|(hour, tally)| HourTally {
                hour: *hour,
                tally: *tally,
                latency: target.latency.get(hour).copied().unwrap_or_default(),
            })
            .collect())
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError> {
        let mut all = self.state();
        all.deliveries.push_front(delivery.clone());
        all.deliveries.truncate(DELIVERIES_KEPT);
        Ok(())
    }

    async fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(self
            .state()
            .deliveries
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }
}
