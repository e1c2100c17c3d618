//! The Redis backend, on deadpool-redis.
//!
//! Short commands share one multiplexed connection taken from the pool: redis-rs
//! pipelines concurrent commands on it, so a command costs one round trip and no pool
//! check-out (whose recycle check is a PING round trip of its own). The pool stays the
//! one place connections are made, with their timeouts.
//!
//! Nothing here waits for Redis at start-up. A connection is made when first needed; when
//! a command finds it broken or unresponsive it is dropped and the next command takes a
//! fresh one, so the store reconnects by itself when Redis returns. Every operation is
//! bounded by [`OP_TIMEOUT`].

use std::time::Duration;

use async_trait::async_trait;
use std::sync::{PoisonError, RwLock};

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig, IntoConnectionInfo};
use deadpool_redis::{Connection, Manager, Pool, Runtime};

use deadpool_redis::redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadReply,
};

use super::{Delivery, HealthSample, Instance, MAX_QUEUE, QueueStats, Store, StoreError, keys};
use crate::config::RedisSettings;
use crate::http::unix_now;
use crate::jobs::{JobRecord, JobState, RECORD_TTL};

/// Upper bound of one store operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis-backed store.
pub struct RedisStore {
    pool: Pool,
    shared: RwLock<Option<MultiplexedConnection>>,
    prefix: String,
}

/// A command or a pipeline.
trait Request: Sync {
    fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

impl Request for redis::Cmd {
    fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(conn)
    }
}

/// Whether an operation may run twice (a retry after a dropped connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Safe,
    Never,
}

/// The job stream, its consumer group and the dead-letter stream.
const JOBS: &str = "jobs";
const GROUP: &str = "workers";
const DEAD_LETTERS: &str = "jobs:dead";

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

/// How long a series, a health history or the instance set outlives its last write:
/// longer than the longest window the dashboard shows (24 h).
const HISTORY_TTL_SECONDS: i64 = 25 * 3600;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl RedisStore {
    /// Builds the pool; connects lazily. `prefix` starts every key this system adds.
    pub fn new(settings: &RedisSettings, prefix: &str) -> Result<Self, StoreError> {
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(settings.db);
        if let Some(user) = &settings.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password.expose());
        }
        let info = redis::ConnectionAddr::Tcp(settings.host.clone(), settings.port)
            .into_connection_info()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .set_redis_settings(redis_info);
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(None);
        let manager = Manager::new_with_config(info, connection)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(OP_TIMEOUT))
            .recycle_timeout(Some(OP_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(RedisStore {
            pool,
            shared: RwLock::new(None),
            prefix: prefix.to_owned(),
        })
    }

    /// The shared connection, taken from the pool when there is none.
    async fn shared(&self) -> Result<MultiplexedConnection, StoreError> {
        let current = self
            .shared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(conn) = current {
            return Ok(conn);
        }
        let pooled = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let conn = Connection::take(pooled);
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    fn drop_shared(&self) {
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs a command or pipeline that may safely run twice on the shared connection.
    async fn query<T: redis::FromRedisValue>(&self, req: &impl Request) -> Result<T, StoreError> {
        self.run(Retry::Safe, |mut c| async move { req.send(&mut c).await })
            .await
    }

    /// Runs a command or pipeline that must not run twice (INCR, LPUSH, ...).
    async fn query_once<T: redis::FromRedisValue>(
        &self,
        req: &impl Request,
    ) -> Result<T, StoreError> {
        self.run(Retry::Never, |mut c| async move { req.send(&mut c).await })
            .await
    }

    /// Runs `op` on the shared connection, within [`OP_TIMEOUT`].
    async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.bounded(async {
            match op(self.shared().await?).await {
                // The shared connection died while idle (Redis restarted between two
                // uses) and nothing noticed yet: a fresh one will do, when running the
                // operation twice is harmless.
                Err(e) if retry == Retry::Safe && e.is_connection_dropped() => {
                    self.drop_shared();
                    op(self.shared().await?).await.map_err(classify)
                }
                result => result.map_err(classify),
            }
        })
        .await
    }

    /// Bounds `op` by [`OP_TIMEOUT`]; a connection that failed or hung is dropped so
    /// the next operation reconnects.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(OP_TIMEOUT)));
        if matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ) {
            self.drop_shared();
        }
        result
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The delivery a stream entry stands for (entries without a job id are skipped).
fn delivery(entry: StreamId) -> Option<Delivery> {
    let job_id = entry.get::<String>("job")?;
    Some(Delivery {
        entry: entry.id,
        job_id,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Command(e.to_string()))
}

/// Parses stored JSON; entries that no longer parse (written by another version) are
/// skipped rather than failing the whole read.
fn from_json<T: serde::de::DeserializeOwned>(raw: Vec<String>) -> Vec<T> {
    raw.iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect()
}

/// Server-side errors (wrong type, ...) are command errors; the rest mean the
/// connection is gone.
fn classify(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Command(e.to_string())
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn incr(&self, key: &str) -> Result<i64, StoreError> {
        self.query_once(redis::cmd("INCR").arg(key)).await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let millis = ttl.as_millis().max(1) as u64;
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key("instances");
        let now = unix_now();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZADD")
            .arg(&key)
            .arg(now + ttl.as_secs_f64())
            .arg(to_json(instance)?)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HISTORY_TTL_SECONDS)
            .ignore();
        self.query(&pipe).await
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let raw: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.key("instances"))
                    .arg(format!("({}", unix_now()))
                    .arg("+inf"),
            )
            .await?;
        Ok(from_json(raw))
    }

    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError> {
        let key = self.key(&format!("health:{}", sample.service));
        let mut pipe = redis::pipe();
        pipe.cmd("LPUSH")
            .arg(&key)
            .arg(to_json(sample)?)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(keep.saturating_sub(1))
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HISTORY_TTL_SECONDS)
            .ignore();
        self.query_once(&pipe).await
    }

    async fn health_history(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<String> = self
            .query(
                redis::cmd("LRANGE")
                    .arg(self.key(&format!("health:{service}")))
                    .arg(0)
                    .arg(limit - 1),
            )
            .await?;
        Ok(from_json(raw))
    }

    async fn series_add(&self, series: &str, minute: i64, delta: i64) -> Result<(), StoreError> {
        self.series_write("HINCRBY", series, minute, delta, Retry::Never)
            .await
    }

    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError> {
        self.series_write("HSET", series, minute, value, Retry::Safe)
            .await
    }

    async fn series(&self, series: &str, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let all: Vec<(i64, i64)> = self
            .query(redis::cmd("HGETALL").arg(self.key(&format!("series:{series}"))))
            .await?;
        let mut points: Vec<_> = all.into_iter().filter(|(m, _)| *m >= since).collect();
        points.sort_unstable();
        Ok(points)
    }

    async fn series_trim(&self, series: &str, before: i64) -> Result<usize, StoreError> {
        let key = self.key(&format!("series:{series}"));
        let minutes: Vec<i64> = self.query(redis::cmd("HKEYS").arg(&key)).await?;
        let old: Vec<i64> = minutes.into_iter().filter(|m| *m < before).collect();
        if old.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("HDEL").arg(&key).arg(&old)).await
    }

    async fn enqueue(&self, job: &JobRecord) -> Result<bool, StoreError> {
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(self.key(JOBS))
            .key(self.key(&format!("job:{}", job.id)))
            .arg(MAX_QUEUE)
            .arg(to_json(job)?)
            .arg(RECORD_TTL.as_millis() as u64)
            .arg(&job.id);
        let invocation = &invocation;
        let added: i64 = self
            .run(Retry::Safe, |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(added == 1)
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
            .arg(wait.as_millis().max(1) as u64)
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
            .filter_map(delivery)
            .collect())
    }

    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(self.key(JOBS))
            .arg(GROUP)
            .arg(consumer)
            .arg(idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max);
        let reply: StreamAutoClaimReply = self.with_group(&claim, OP_TIMEOUT).await?;
        Ok(reply.claimed.into_iter().filter_map(delivery).collect())
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
                .arg(self.key(&format!("job:{}", job.id)))
                .arg(to_json(job)?)
                .arg("PX")
                .arg(RECORD_TTL.as_millis() as u64),
        )
        .await
    }

    async fn load_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let raw: Option<String> = self
            .query(redis::cmd("GET").arg(self.key(&format!("job:{id}"))))
            .await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(&format!("job:{}", job.id)))
            .arg(to_json(job)?)
            .arg("PX")
            .arg(RECORD_TTL.as_millis() as u64)
            .ignore();
        match job.state {
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
                    .arg(job.finished_at.unwrap_or_else(unix_now))
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
                    .arg(job.error.as_deref().unwrap_or(""))
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
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            match cmd.query_async::<T>(&mut conn).await {
                Err(e) if e.code() == Some("NOGROUP") => {
                    let created: Result<(), _> = redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(self.key(JOBS))
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async(&mut conn)
                        .await;
                    match created {
                        Err(e) if e.code() != Some("BUSYGROUP") => return Err(classify(e)),
                        _ => {}
                    }
                    cmd.query_async::<T>(&mut conn).await.map_err(classify)
                }
                result => result.map_err(classify),
            }
        };
        tokio::time::timeout(limit, run)
            .await
            .unwrap_or(Err(StoreError::Timeout(limit)))
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

    async fn series_write(
        &self,
        command: &str,
        series: &str,
        minute: i64,
        value: i64,
        retry: Retry,
    ) -> Result<(), StoreError> {
        let key = self.key(&format!("series:{series}"));
        let mut pipe = redis::pipe();
        pipe.cmd(command)
            .arg(&key)
            .arg(minute)
            .arg(value)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HISTORY_TTL_SECONDS)
            .ignore();
        self.run(retry, |mut c| {
            let pipe = &pipe;
            async move { pipe.query_async(&mut c).await }
        })
        .await
    }
}
