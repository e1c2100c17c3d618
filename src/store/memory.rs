//! The embedded store for `svc all`: the same semantics as Redis, in one process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Store, StoreError};

/// In-process store. Its lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    strings: Mutex<HashMap<String, String>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn strings(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding the lock cannot leave a map half-written (each
        // operation is one insert), so a poisoned lock is still good to use.
        self.strings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<i64, StoreError> {
        let mut strings = self.strings();
        let current = match strings.get(key) {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| {
                StoreError::Command("ERR value is not an integer or out of range".into())
            })?,
        };
        let next = current.checked_add(1).ok_or_else(|| {
            StoreError::Command("ERR increment or decrement would overflow".into())
        })?;
        strings.insert(key.to_owned(), next.to_string());
        Ok(next)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.strings().get(key).cloned())
    }
}
