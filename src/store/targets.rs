//! What is kept of each target the user listed: its tracked state as the domain
//! encodes it ([`crate::targets::state`]), its newest samples, and tallies per minute
//! (kept a day), per hour with a response-time histogram (kept a month) and per day
//! (kept 400 days), so history does not grow with probes.
//! The state is written by compare-and-set, so any number of workers may report.
//! Beside them, the newest deliveries of notifications.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Newest samples kept per target: ten minutes at a 10 s interval.
pub const SAMPLES_KEPT: usize = 60;
/// How long per-minute tallies are kept.
pub const MINUTES_KEPT: Duration = Duration::from_secs(25 * 3600);
/// How long per-hour tallies (and a target's state) are kept.
pub const HOURS_KEPT: Duration = Duration::from_secs(31 * 86400);

/// How long per-day tallies are kept: uptime over a year, and a margin.
pub const DAYS_KEPT: Duration = Duration::from_secs(400 * 86400);

/// Upper bounds (milliseconds) of the response-time buckets of a [`Latency`]; a last
/// bucket holds what took longer. Roughly log-spaced, in round numbers, so an exported
/// percentile reads as it is: "p95 under 150 ms".
pub const LATENCY_BOUNDS_MS: [f64; 20] = [
    2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 750.0, 1000.0,
    1500.0, 2000.0, 3000.0, 5000.0, 10000.0,
];

/// Buckets of a [`Latency`]: one per bound and one above the last.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The bucket a response time of `ms` counts in.
pub fn latency_bucket(ms: f64) -> usize {
    LATENCY_BOUNDS_MS.partition_point(|bound| *bound < ms)
}

/// Probes by response time: counts per bucket of [`LATENCY_BOUNDS_MS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency(pub [i64; LATENCY_BUCKETS]);

impl Latency {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Latency) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// Probes counted.
    pub fn total(&self) -> i64 {
        self.0.iter().sum()
    }

    /// The `q`-quantile (`0.95` for p95) as the upper bound of the bucket it falls in,
    /// so the true figure is at most this; in the last bucket, the last bound (the
    /// figure is at least that). `None` with nothing counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0 {
            return None;
        }
        // Rank of the q-th probe, 1-based: the smallest count that reaches q.
        let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
        let mut seen = 0;
        let bucket = self.0.iter().position(|n| {
            seen += n;
            seen >= rank
        })?;
        LATENCY_BOUNDS_MS
            .get(bucket)
            .or(LATENCY_BOUNDS_MS.last())
            .copied()
    }
}

/// One hour of a target's history: its tally, and its response times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourTally {
    /// Hours since the epoch.
    pub hour: i64,
    /// Probes, and probes that found it up.
    pub tally: Tally,
    /// Response times of the probes that found it up.
    pub latency: Latency,
}

/// Probes and probes that found a target up: one minute's, hour's or day's tally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Probes.
    pub checks: i64,
    /// Probes that found it up (healthy or degraded).
    pub up: i64,
}

/// One probe's result as the store keeps it: the sample (JSON), and what its tallies
/// count.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    /// Unix seconds of the probe: which minute and hour it counts in.
    pub timestamp: f64,
    /// Whether it found the target up.
    pub up: bool,
    /// Whether it counts in the tallies: not in a maintenance window, whose minutes
    /// uptime leaves out.
    pub counts: bool,
    /// Its response time, counted in the hour's [`Latency`] when it found the target up.
    pub response_time_ms: Option<f64>,
    /// Whether it counts in its minute's tally only, not in the hour's, the day's or the
    /// hour's [`Latency`]: a location's own history, which serves its uptime over the
    /// last hour, while the target's full history holds the verdict.
    pub minutes_only: bool,
    /// The sample, encoded.
    pub json: String,
}

/// What the store holds of one target, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetRecord {
    /// Its tracked state (JSON), if any.
    pub state: Option<String>,
    /// Its newest samples (JSON), newest first.
    pub samples: Vec<String>,
    /// Tallies of the last two hours, by absolute minute.
    pub minutes: Vec<(i64, Tally)>,
    /// Tallies of the last two days, by absolute hour.
    pub hours: Vec<(i64, Tally)>,
    /// What could not be read of it, with the key.
    pub error: Option<String>,
}

/// Newest notification deliveries kept.
pub const DELIVERIES_KEPT: usize = 100;

/// One delivery of a notification to a channel, for `/api/notifications`: did the page
/// go out?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The notification job's id.
    pub id: String,
    /// The channel's name.
    pub channel: String,
    /// The target whose change it tells.
    pub target: String,
    /// The state it tells: `up`, `degraded` or `down`.
    pub state: String,
    /// Unix seconds when the delivery ended.
    pub at: f64,
    /// `sent` or `failed`.
    pub result: String,
    /// Why it failed (the receiver named by its origin only).
    #[serde(default)]
    pub error: Option<String>,
}

/// The targets' state, samples and tallies.
#[async_trait]
pub trait Targets: Send + Sync {
    /// Target `name`'s tracked state as stored, if any.
    async fn target_state(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Sets target `name`'s tracked state to `state` if it is still `seen` (`None`:
    /// absent) and, in the same step, adds `sample` (when given) to the target's
    /// newest samples and (when it [counts](SampleRecord::counts)) its minute, hour
    /// and day tallies and its hour's [`Latency`]. `false`, with nothing written,
    /// when the state changed meanwhile.
    async fn put_target_state(
        &self,
        name: &str,
        seen: Option<&str>,
        state: &str,
        sample: Option<&SampleRecord>,
    ) -> Result<bool, StoreError>;
    /// What is stored of each target of `names` at `now`, in that order.
    async fn target_records(
        &self,
        names: &[String],
        now: f64,
    ) -> Result<Vec<TargetRecord>, StoreError>;
    /// Target `name`'s day tallies of `days` (days since the epoch), oldest first;
    /// days with no probe counted are left out.
    async fn target_days(
        &self,
        name: &str,
        days: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<(i64, Tally)>, StoreError>;
    /// Target `name`'s hours of `hours` (hours since the epoch), oldest first; hours
    /// with no probe counted are left out.
    async fn target_hours(
        &self,
        name: &str,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<HourTally>, StoreError>;
    /// Notes one delivery; the newest [`DELIVERIES_KEPT`] are kept.
    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError>;
    /// The newest `limit` deliveries, newest first.
    async fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError>;
}
