//! The shared state every role reads and writes, split by concern: [`Presence`]
//! (heartbeats), [`History`] (probe results, per-minute series, incidents), [`Queue`]
//! (the job queue) and [`Targets`] (what is kept of the user's targets). [`Store`]
//! adds plain counters and claims and requires them all; roles hold a [`SharedStore`]
//! and bring into scope the concerns they use.
//!
//! Each concern is implemented twice, one file each: [`redis`] (deadpool-redis, for a
//! cluster) and [`memory`] (in-process, for `svc all` on a laptop). Both pass the same
//! contract tests, one per concern, in `tests/api/store/`. Every key name is built in
//! [`keys`]. The store keeps records; what they mean (a service's state, a target's
//! verdict, a job's life) belongs to the domain modules.

pub mod breaker;
mod history;
pub mod keys;
pub mod memory;
mod presence;
mod queue;
pub mod redis;
mod targets;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::StoreSettings;

pub use history::{HealthSample, History, INCIDENTS_KEPT, INCIDENTS_KEPT_DAYS, Incident, series};
pub use presence::{Instance, LOST_KEPT, Presence};
pub use queue::{Delivery, MAX_QUEUE, Queue, QueueStats, RECLAIM_START, Reclaimed};
pub use targets::{
    DAYS_KEPT, DELIVERIES_KEPT, DeliveryRecord, HOURS_KEPT, HourTally, LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS, Latency, MINUTES_KEPT, SAMPLES_KEPT, SampleRecord, Tally, TargetRecord,
    Targets, latency_bucket,
};

/// Why a store operation failed. Callers degrade and retry later; they never crash.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (refused, authentication, reconnecting); the text
    /// says which.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the operation timeout.
    #[error("store timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store answered with an error.
    #[error("store command failed: {0}")]
    Command(String),
    /// A write reached the primary but not the replicas it had to reach in time: it
    /// may be lost if the primary fails now.
    #[error("not replicated: {0}")]
    NotReplicated(String),
    /// The value under `key` is not what this system writes there (another program's,
    /// a hand edit, or a version this build cannot read).
    #[error("unexpected value under {key}: {reason}")]
    Data {
        /// The full key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Whether this says the connection failed, rather than one command or value.
    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }

    /// A command's failure blamed on the value under `key` (wrong type, not a number).
    pub fn for_key(self, key: &str) -> Self {
        match self {
            StoreError::Command(reason) => StoreError::Data {
                key: key.to_owned(),
                reason,
            },
            other => other,
        }
    }
}

/// The whole store: every concern, plus plain counters and claims.
#[async_trait]
pub trait Store: Presence + History + Queue + Targets + Send + Sync + 'static {
    /// `"redis"` or `"memory"`, for logs and `/api/info`.
    fn backend(&self) -> &'static str;
    /// The full key of `name` in this store: the prefix of keys this system adds
    /// goes first. For messages that name a key.
    fn key(&self, name: &str) -> String;
    /// Round trip to the store.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Adds one to the integer at `key` (0 when absent) and returns the new value.
    async fn incr(&self, key: &str) -> Result<i64, StoreError>;
    /// The string at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets `key` to `value`, with no expiry (the original's compatibility keys).
    async fn set(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Sets `key` only if it does not exist, expiring after `ttl`: `true` when this call
    /// set it. A cluster-wide "first one wins" (e.g. who enqueues a scheduler tick).
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;
}

/// A store shared by the handlers and tasks of one process.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured store; `prefix` starts every key this system adds. This never
/// waits for Redis: a role starts while Redis is down and connects once it appears.
pub fn open(settings: &StoreSettings, prefix: &str) -> Result<SharedStore, StoreError> {
    Ok(match settings {
        StoreSettings::Memory => memory::MemoryStore::start(),
        StoreSettings::Redis(redis) => Arc::new(redis::RedisStore::new(redis, prefix)?),
    })
}
