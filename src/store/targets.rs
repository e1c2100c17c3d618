//! What is kept of each target the user listed: its tracked state as the domain
//! encodes it ([`crate::targets::state`]), its newest samples, and tallies per minute
//! (kept a day) and per hour (kept a month), so history does not grow with probes.
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

/// Probes and probes that found a target up: one minute's or one hour's tally.
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
    /// newest samples and (when it [counts](SampleRecord::counts)) its minute and hour
    /// tallies. `false`, with nothing written,
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
    /// Notes one delivery; the newest [`DELIVERIES_KEPT`] are kept.
    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError>;
    /// The newest `limit` deliveries, newest first.
    async fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError>;
}
