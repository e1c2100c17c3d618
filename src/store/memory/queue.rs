//! The job queue in memory: entries waiting, entries delivered and not finished (with
//! when each was last delivered, for the visibility timeout), dead letters, and the
//! job records with their expiry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::unix_now;
use crate::jobs::{JobRecord, JobState, RECORD_TTL, mark_dead};
use crate::store::{
    Delivery, MAX_QUEUE, Queue, QueueStats, RECLAIM_START, Reclaimed, StoreError, keys,
};

/// The job stream and its one consumer group, and the job records.
#[derive(Debug, Default)]
pub(super) struct QueueData {
    next_entry: u64,
    /// Entries never delivered, oldest first.
    waiting: VecDeque<Delivery>,
    /// Delivered and not finished: entry -> (delivery, when last delivered).
    pending: BTreeMap<u64, (Delivery, Instant)>,
    /// Job id and error of each dead letter, oldest first.
    dead: VecDeque<(String, String)>,
    /// Job records as stored, and when each expires.
    jobs: HashMap<String, (String, Instant)>,
}

fn entry_number(entry: &str) -> Option<u64> {
    entry.split('-').next()?.parse().ok()
}

impl QueueData {
    /// Frees the job records expired at `now`.
    pub(super) fn purge(&mut self, now: Instant) {
        self.jobs.retain(|_, (_, until)| *until > now);
    }

    /// Job records held, expired or not.
    pub(super) fn records(&self) -> usize {
        self.jobs.len()
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
}

#[async_trait]
impl Queue for MemoryStore {
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
                .queue
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
            cursor: next.map_or_else(|| RECLAIM_START.to_owned(), |n| format!("{n}-0")),
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
            .queue
            .jobs
            .insert(job.id.clone(), (job.encode(), Instant::now() + RECORD_TTL));
        Ok(())
    }

    async fn load_job(&self, id: &str) -> Result<Option<String>, StoreError> {
        let state = self.state();
        Ok(state
            .queue
            .jobs
            .get(id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(job, _)| job.clone()))
    }

    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        state
            .queue
            .jobs
            .insert(job.id.clone(), (job.encode(), Instant::now() + RECORD_TTL));
        match job.state() {
            JobState::Done => {
                let task = job.spec.task_type().as_str();
                let counter = keys::worker_tasks(task);
                let done = state.counter(&counter).unwrap_or(0).saturating_add(1);
                let finished = job.finished_at().unwrap_or_else(unix_now).to_string();
                for (key, value) in [
                    (counter, done.to_string()),
                    (keys::WORKER_LAST_TASK.to_owned(), task.to_owned()),
                    (keys::WORKER_LAST_TASK_TIME.to_owned(), finished),
                ] {
                    state.strings.insert(key, (value, None));
                }
            }
            JobState::Dead => {
                let error = job.error().unwrap_or_default().to_owned();
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
            && let Some((raw, _)) = state.queue.jobs.get(id)
            && let Some(marked) = mark_dead(raw, reason, unix_now())
        {
            state
                .queue
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
