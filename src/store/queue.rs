//! The job queue: a stream with one consumer group, so every worker consumes and a
//! job whose worker died is delivered again after a visibility timeout; what cannot
//! run ends in a dead-letter stream. Job records live beside the stream; what a job is
//! and how its state moves is [`crate::jobs`]'s.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::jobs::JobRecord;

/// Most entries the job queue holds; beyond it `enqueue` refuses (nothing is dropped).
pub const MAX_QUEUE: usize = 100_000;

/// The cursor of a reclaim scan from the start of the pending list.
pub const RECLAIM_START: &str = "0-0";

/// One delivery of a queued job to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Queue entry id (what is acknowledged).
    pub entry: String,
    /// The job's id; `None` for an entry that carries none (not written by svc).
    pub job_id: Option<String>,
}

/// What one [`Queue::reclaim`] took over, and where the next scan goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Deliveries now this consumer's.
    pub deliveries: Vec<Delivery>,
    /// Cursor of the next scan; [`RECLAIM_START`] once the whole pending list was
    /// scanned.
    pub cursor: String,
}

/// How much work the queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Entries not delivered to any consumer yet.
    pub depth: u64,
    /// Entries delivered and not finished.
    pub pending: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
}

/// The job queue and the job records.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Saves `job`'s record and appends it to the job queue, unless the queue holds
    /// [`MAX_QUEUE`] entries already: then `Ok(false)` and nothing is written.
    async fn enqueue(&self, job: &JobRecord) -> Result<bool, StoreError>;
    /// Up to `max` jobs never delivered before, for `consumer`; waits up to `wait` for
    /// the first one.
    async fn receive(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Up to `max` jobs delivered to some consumer at least `idle` ago and never
    /// finished (their worker died or gave up), now delivered to `consumer`. The scan
    /// starts at `cursor` ([`RECLAIM_START`]: the start) and the answer says where the
    /// next one goes on, so entries at the head of the pending list never hide the
    /// rest.
    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
        cursor: &str,
    ) -> Result<Reclaimed, StoreError>;
    /// Tells the queue `consumer` is still working on `delivery`, so it is not
    /// reclaimed while a long job runs.
    async fn keep_alive(&self, consumer: &str, delivery: &Delivery) -> Result<(), StoreError>;
    /// Saves a job's record (state changes while it runs).
    async fn save_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// A job's record as stored (see [`JobRecord::decode`]), if it exists and has not
    /// expired.
    async fn load_job(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Ends a delivery in one atomic step: saves `job`'s record and acknowledges the
    /// delivery. A `Done` job also counts in the original's keys (`worker:tasks:<type>`,
    /// `worker:last_task`, `worker:last_task_time`); a `Dead` one goes to the
    /// dead-letter stream with its error.
    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError>;
    /// Acknowledges a delivery whose job record is gone (expired) or already final.
    async fn discard(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// Ends a delivery that cannot be run (no job id, or a record that cannot be read):
    /// it goes to the dead-letter stream with `reason`, and its record, when it is a
    /// JSON object, is marked dead with every field kept. Nothing is deleted silently.
    async fn reject(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError>;
    /// Depth, pending and dead-letter counts of the queue.
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;
    /// Trims the dead-letter stream to its newest `keep` entries; returns how many went.
    async fn trim_dead_letters(&self, keep: usize) -> Result<usize, StoreError>;
}
