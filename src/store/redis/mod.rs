//! The Redis backend, on deadpool-redis.
//!
//! Short commands share one multiplexed connection taken from the pool: redis-rs
//! pipelines concurrent commands on it, so a command costs one round trip. Blocking
//! reads (`XREADGROUP BLOCK`) and consumer-group scans take a pooled connection of their
//! own; the pool checks a connection with a PING only when it has sat idle, so the hot
//! path pays no extra round trip.
//!
//! Nothing here waits for Redis at start-up. A connection is made when first needed;
//! when a command finds it broken or unresponsive it is dropped and the next command
//! takes a fresh one, one reconnect at a time however many callers are waiting, so the
//! store reconnects by itself when Redis returns. Pooled connections are made on the
//! runtime that created the store (the process's), never on an HTTP worker's runtime
//! that ends before the process does; an HTTP worker thread's short commands go over a
//! connection of its own, which ends with it. Every operation is bounded by
//! [`OP_TIMEOUT`].

mod connection;
mod history;
mod presence;
mod queue;
mod targets;

use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use deadpool_redis::redis::aio::MultiplexedConnection;
use tokio::runtime::Handle;

use super::breaker::Breaker;
use super::{Store, StoreError};
use crate::clock::millis;
use crate::config::WaitReplicas;
pub use connection::OP_TIMEOUT;
use connection::Pool;

/// Redis-backed store.
pub struct RedisStore {
    pool: Pool,
    shared: RwLock<Option<MultiplexedConnection>>,
    /// Names this store among the connections a thread keeps.
    id: u64,
    /// Counts the drops of the shared connections: a thread's own connection of an
    /// older generation is not used again.
    generation: std::sync::atomic::AtomicU64,
    /// Held while one caller reconnects; the others wait for its connection.
    reconnect: tokio::sync::Mutex<()>,
    /// The runtime connections are made on (the one that created the store).
    runtime: Option<Handle>,
    /// The same server without the password, to tell "wrong password" from "no
    /// password needed" when a login fails.
    without_password: Option<connection::Server>,
    /// Replicas that must acknowledge an enqueued job, and how long to wait for them.
    wait: (WaitReplicas, Duration),
    /// When the primary's replica count was last read, and what it was (for
    /// `WaitReplicas::Auto`).
    replicas: std::sync::Mutex<Option<(std::time::Instant, u32)>>,
    /// `host:port`, for messages.
    target: String,
    /// Fails operations fast while the server does not answer.
    breaker: Breaker,
    prefix: String,
}

/// How long a series, a health history or the instance set outlives its last write:
/// longer than the longest window the dashboard shows (24 h).
const HISTORY_TTL_SECONDS: i64 = 25 * 3600;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("status", &self.pool.status())
            .finish()
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Command(e.to_string()))
}

/// Parses stored JSON; entries that do not parse (written by another version) are
/// skipped, with a debug line, rather than failing the whole read.
fn from_json<T: serde::de::DeserializeOwned>(key: &str, raw: Vec<String>) -> Vec<T> {
    raw.iter()
        .filter_map(|r| match serde_json::from_str(r) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::debug!(key, error = %e, "skipped an entry this version cannot read");
                None
            }
        })
        .collect()
}

/// A reply as `T`; `None` when it is not one (a value another program wrote).
fn parse<T: redis::FromRedisValue>(value: redis::Value) -> Option<T> {
    match value {
        redis::Value::Nil => None,
        value => T::from_redis_value(value).ok(),
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn incr(&self, key: &str) -> Result<i64, StoreError> {
        self.query_once(redis::cmd("INCR").arg(key))
            .await
            .map_err(|e| e.for_key(key))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(key))
            .await
            .map_err(|e| e.for_key(key))
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl)),
            )
            .await?;
        Ok(set.is_some())
    }
}
