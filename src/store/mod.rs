//! The shared state every role reads and writes. [`Store`] is the one interface; it has
//! two backends: [`redis::RedisStore`] (deadpool-redis, for a cluster) and
//! [`memory::MemoryStore`] (in-process, for `svc all` on a laptop). Both pass the same
//! contract tests in `tests/api/store.rs`.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::StoreSettings;

/// Keys kept from the original system, so counters survive a migration.
pub mod keys {
    /// Gateway request counter, incremented by `GET /api/status`.
    pub const TOTAL_REQUESTS: &str = "api:total_requests";
}

/// Why a store operation failed. Every variant means "the store is unavailable right
/// now": callers degrade and retry later, they never crash.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (refused, pool exhausted, reconnecting).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the operation timeout.
    #[error("store timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store answered with an error.
    #[error("store command failed: {0}")]
    Command(String),
}

/// Operations the roles need from the shared state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"redis"` or `"memory"`, for logs and `/api/info`.
    fn backend(&self) -> &'static str;
    /// Round trip to the store.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Adds one to the integer at `key` (0 when absent) and returns the new value.
    async fn incr(&self, key: &str) -> Result<i64, StoreError>;
    /// The string at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
}

/// A store shared by the handlers and tasks of one process.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured store. This never waits for Redis: a role starts while Redis
/// is down and connects once it appears.
pub fn open(settings: &StoreSettings) -> Result<SharedStore, StoreError> {
    Ok(match settings {
        StoreSettings::Memory => Arc::new(memory::MemoryStore::new()),
        StoreSettings::Redis(redis) => Arc::new(redis::RedisStore::new(redis)?),
    })
}
