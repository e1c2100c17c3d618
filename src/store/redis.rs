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

use super::{Store, StoreError};
use crate::config::RedisSettings;

/// Upper bound of one store operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis-backed store.
pub struct RedisStore {
    pool: Pool,
    shared: RwLock<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl RedisStore {
    /// Builds the pool; connects lazily.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
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

    /// Runs one command on the shared connection, within [`OP_TIMEOUT`].
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let run = async {
            let mut conn = self.shared().await?;
            cmd.query_async::<T>(&mut conn).await.map_err(classify)
        };
        let result = tokio::time::timeout(OP_TIMEOUT, run)
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
}
