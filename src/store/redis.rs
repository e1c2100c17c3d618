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

use super::{HealthSample, Instance, Store, StoreError};
use crate::config::RedisSettings;
use crate::http::unix_now;

/// Upper bound of one store operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis-backed store.
pub struct RedisStore {
    pool: Pool,
    shared: RwLock<Option<MultiplexedConnection>>,
    prefix: String,
}

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

    /// Runs one command on the shared connection.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.bounded(async {
            let mut conn = self.shared().await?;
            cmd.query_async::<T>(&mut conn).await.map_err(classify)
        })
        .await
    }

    /// Runs a pipeline on the shared connection.
    async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.bounded(async {
            let mut conn = self.shared().await?;
            pipe.query_async::<T>(&mut conn).await.map_err(classify)
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
        self.query(redis::cmd("INCR").arg(key)).await
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
        self.query_pipe(&pipe).await
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
        self.query_pipe(&pipe).await
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
        self.series_write("HINCRBY", series, minute, delta).await
    }

    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError> {
        self.series_write("HSET", series, minute, value).await
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
}

impl RedisStore {
    async fn series_write(
        &self,
        command: &str,
        series: &str,
        minute: i64,
        value: i64,
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
        self.query_pipe(&pipe).await
    }
}
