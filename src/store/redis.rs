//! The Redis backend: a deadpool-redis pool of multiplexed connections.
//!
//! Nothing here waits for Redis at start-up. A connection is made when first needed; one
//! that breaks fails its recycle check and is replaced, so the store reconnects by itself
//! when Redis returns. Every operation is bounded by [`OP_TIMEOUT`].

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncConnectionConfig, IntoConnectionInfo};
use deadpool_redis::{Manager, Pool, Runtime};

use super::{Store, StoreError};
use crate::config::RedisSettings;

/// Upper bound of one store operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis-backed store.
pub struct RedisStore {
    pool: Pool,
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
            .set_response_timeout(Some(OP_TIMEOUT));
        let manager = Manager::new_with_config(info, connection)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(OP_TIMEOUT))
            .recycle_timeout(Some(OP_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(RedisStore { pool })
    }

    /// Runs one command on a pooled connection, within [`OP_TIMEOUT`].
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let run = async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            cmd.query_async::<T>(&mut conn).await.map_err(classify)
        };
        tokio::time::timeout(OP_TIMEOUT, run)
            .await
            .map_err(|_| StoreError::Timeout(OP_TIMEOUT))?
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
