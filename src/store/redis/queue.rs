//! The job queue: a stream with one consumer group, job records beside it with a TTL,
//! and a dead-letter stream. Enqueueing is one script (record and entry together);
//! with replicas it waits for one to acknowledge before it answers.

use std::sync::PoisonError;
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed;
use deadpool_redis::redis;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadReply,
};

use super::RedisStore;
use super::connection::{OP_TIMEOUT, Retry, classify};
use crate::clock::{millis, unix_now};
use crate::config::WaitReplicas;
use crate::jobs::{JobRecord, JobState, RECORD_TTL, mark_dead};
use crate::store::keys::{self, DEAD_LETTERS, JOBS, JOBS_GROUP as GROUP};
use crate::store::{Delivery, MAX_QUEUE, Queue, QueueStats, Reclaimed, Store, StoreError};

/// Adds a job unless the stream is full: record and stream entry in one step. A job
/// whose record exists was added already (this is a retry), so adding is idempotent.
static ENQUEUE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
          if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
          redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
          redis.call('XADD', KEYS[1], '*', 'job', ARGV[4])
          return 1",
    )
});

/// The delivery a stream entry stands for (`job_id` is `None` when it carries none).
fn delivery(entry: StreamId) -> Delivery {
    Delivery {
        job_id: entry.get::<String>("job"),
        entry: entry.id,
    }
}

#[async_trait]
impl Queue for RedisStore {
    async fn enqueue(&self, job: &JobRecord) -> Result<bool, StoreError> {
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(self.key(JOBS))
            .key(self.key(&keys::job(&job.id)))
            .arg(MAX_QUEUE)
            .arg(job.encode())
            .arg(millis(RECORD_TTL))
            .arg(&job.id);
        let invocation = &invocation;
        let needed = self.replicas_needed().await?;
        if needed == 0 {
            let added: i64 = self
                .run(Retry::Safe, |mut c| async move {
                    invocation.invoke_async(&mut c).await
                })
                .await?;
            return Ok(added == 1);
        }
        // WAIT blocks the connection it runs on until the replicas answer: a pooled
        // connection of its own, not the shared one every other command uses.
        let (_, timeout) = self.wait;
        let target = &self.target;
        let run = async {
            let mut pooled = self.pooled().await?;
            let conn: &mut MultiplexedConnection = &mut pooled;
            let outcome = async {
                let added: i64 = invocation.invoke_async(conn).await?;
                if added == 0 {
                    return Ok(None);
                }
                let acked: u32 = redis::cmd("WAIT")
                    .arg(needed)
                    .arg(millis(timeout))
                    .query_async(conn)
                    .await?;
                Ok(Some(acked))
            }
            .await
            .map_err(|e| classify(e, target));
            if outcome.as_ref().is_err_and(StoreError::is_connection) {
                drop(managed::Object::take(pooled));
            }
            outcome
        };
        match tokio::time::timeout(OP_TIMEOUT + timeout, run)
            .await
            .unwrap_or(Err(StoreError::Timeout(OP_TIMEOUT + timeout)))?
        {
            None => Ok(false),
            Some(acked) if acked >= needed => Ok(true),
            Some(acked) => Err(StoreError::NotReplicated(format!(
                "job {} reached the primary, but {acked} of {needed} replicas acknowledged it \
                 within {timeout:?}: it may be lost if the primary fails now",
                job.id
            ))),
        }
    }

    async fn receive(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let key = self.key(JOBS);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(wait))
            .arg("STREAMS")
            .arg(&key)
            .arg(">");
        // A blocking read holds its connection: it gets a pooled one of its own, not
        // the shared connection every short command uses.
        let reply: Option<StreamReadReply> = self.with_group(&read, wait + OP_TIMEOUT).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(delivery)
            .collect())
    }

    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
        cursor: &str,
    ) -> Result<Reclaimed, StoreError> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(self.key(JOBS))
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(idle))
            .arg(cursor)
            .arg("COUNT")
            .arg(max.max(1));
        let reply: StreamAutoClaimReply = self.with_group(&claim, OP_TIMEOUT).await?;
        Ok(Reclaimed {
            deliveries: reply.claimed.into_iter().map(delivery).collect(),
            cursor: reply.next_stream_id,
        })
    }

    async fn keep_alive(&self, consumer: &str, delivery: &Delivery) -> Result<(), StoreError> {
        // XCLAIM to the same consumer with JUSTID resets the entry's idle time without
        // counting a delivery.
        let mut claim = redis::cmd("XCLAIM");
        claim
            .arg(self.key(JOBS))
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&delivery.entry)
            .arg("JUSTID");
        self.query::<Vec<String>>(&claim).await.map(drop)
    }

    async fn save_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.query(
            redis::cmd("SET")
                .arg(self.key(&keys::job(&job.id)))
                .arg(job.encode())
                .arg("PX")
                .arg(millis(RECORD_TTL)),
        )
        .await
    }

    async fn load_job(&self, id: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(&keys::job(id));
        self.query(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))
    }

    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(&keys::job(&job.id)))
            .arg(job.encode())
            .arg("PX")
            .arg(millis(RECORD_TTL))
            .ignore();
        match job.state() {
            JobState::Done => {
                let task = job.spec.task_type().as_str();
                pipe.cmd("INCR")
                    .arg(keys::worker_tasks(task))
                    .ignore()
                    .cmd("SET")
                    .arg(keys::WORKER_LAST_TASK)
                    .arg(task)
                    .ignore()
                    .cmd("SET")
                    .arg(keys::WORKER_LAST_TASK_TIME)
                    .arg(job.finished_at().unwrap_or_else(unix_now))
                    .ignore();
            }
            JobState::Dead => {
                pipe.cmd("XADD")
                    .arg(self.key(DEAD_LETTERS))
                    .arg("*")
                    .arg("job")
                    .arg(&job.id)
                    .arg("type")
                    .arg(job.spec.task_type().as_str())
                    .arg("error")
                    .arg(job.error().unwrap_or(""))
                    .ignore();
            }
            JobState::Queued | JobState::Running | JobState::Failed => {}
        }
        self.acknowledge(&mut pipe, delivery);
        self.query_once(&pipe).await
    }

    async fn discard(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        self.acknowledge(&mut pipe, delivery);
        self.query(&pipe).await
    }

    async fn reject(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(id) = &delivery.job_id {
            let key = self.key(&keys::job(id));
            // Only this consumer holds the delivery, so nothing writes the record
            // between this read and the write below.
            let raw: Result<Option<String>, StoreError> =
                self.query(redis::cmd("GET").arg(&key)).await;
            if let Some(marked) = raw
                .ok()
                .flatten()
                .and_then(|r| mark_dead(&r, reason, unix_now()))
            {
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(marked)
                    .arg("PX")
                    .arg(millis(RECORD_TTL))
                    .ignore();
            }
        }
        pipe.cmd("XADD")
            .arg(self.key(DEAD_LETTERS))
            .arg("*")
            .arg("job")
            .arg(delivery.job_id.as_deref().unwrap_or(""))
            .arg("entry")
            .arg(&delivery.entry)
            .arg("error")
            .arg(reason)
            .ignore();
        self.acknowledge(&mut pipe, delivery);
        self.query_once(&pipe).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let stream = self.key(JOBS);
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN")
            .arg(&stream)
            .cmd("XLEN")
            .arg(self.key(DEAD_LETTERS))
            .cmd("EXISTS")
            .arg(&stream);
        let (len, dead, exists): (u64, u64, bool) = self.query(&pipe).await?;
        let pending = if exists {
            let summary: Result<StreamPendingReply, _> = self
                .query(redis::cmd("XPENDING").arg(&stream).arg(GROUP))
                .await;
            match summary {
                Ok(reply) => reply.count() as u64,
                // No consumer group yet: nothing was ever delivered.
                Err(StoreError::Command(e)) if e.contains("NOGROUP") => 0,
                Err(e) => return Err(e),
            }
        } else {
            0
        };
        Ok(QueueStats {
            depth: len.saturating_sub(pending),
            pending,
            dead_letters: dead,
        })
    }

    async fn trim_dead_letters(&self, keep: usize) -> Result<usize, StoreError> {
        self.query(
            redis::cmd("XTRIM")
                .arg(self.key(DEAD_LETTERS))
                .arg("MAXLEN")
                .arg(keep),
        )
        .await
    }
}

impl RedisStore {
    /// Runs a consumer-group command on a pooled connection of its own, creating the
    /// group (and stream) first when Redis lost it, e.g. after a restart without
    /// persistence.
    async fn with_group<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<T, StoreError> {
        let run = async {
            let mut pooled = self.pooled().await?;
            let result = self.group_command(&mut pooled, cmd).await;
            // A connection that failed goes, rather than back to the pool.
            if result.as_ref().is_err_and(StoreError::is_connection) {
                drop(managed::Object::take(pooled));
            }
            result
        };
        tokio::time::timeout(limit, run)
            .await
            .unwrap_or(Err(StoreError::Timeout(limit)))
    }

    async fn group_command<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        {
            match cmd.query_async::<T>(conn).await {
                Err(e) if e.code() == Some("NOGROUP") => {
                    let created: Result<(), _> = redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(self.key(JOBS))
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async(conn)
                        .await;
                    match created {
                        Err(e) if e.code() != Some("BUSYGROUP") => {
                            return Err(classify(e, &self.target));
                        }
                        _ => {}
                    }
                    cmd.query_async::<T>(conn)
                        .await
                        .map_err(|e| classify(e, &self.target))
                }
                result => result.map_err(|e| classify(e, &self.target)),
            }
        }
    }

    /// Replicas an enqueued job must reach: with `auto`, one when the primary has a
    /// replica connected (read at most once a second), else none.
    async fn replicas_needed(&self) -> Result<u32, StoreError> {
        match self.wait.0 {
            WaitReplicas::Count(n) => Ok(n),
            WaitReplicas::Auto => {
                let fresh = *self.replicas.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((at, n)) = fresh
                    && at.elapsed() < Duration::from_secs(1)
                {
                    return Ok(n.min(1));
                }
                let info: String = self.query(redis::cmd("INFO").arg("replication")).await?;
                let connected = info
                    .lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .unwrap_or(0);
                *self.replicas.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((std::time::Instant::now(), connected));
                Ok(connected.min(1))
            }
        }
    }

    /// Adds to `pipe` what ends a delivery: acknowledged, and deleted from the stream so
    /// it holds only unfinished work.
    fn acknowledge(&self, pipe: &mut redis::Pipeline, delivery: &Delivery) {
        let stream = self.key(JOBS);
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(&delivery.entry)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(&delivery.entry)
            .ignore();
    }
}
