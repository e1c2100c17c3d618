//! Heartbeats in memory: each instance with the Unix seconds its beat expires; expired
//! beats stay [`LOST_KEPT`] as the lost instances.

use std::time::Duration;

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::unix_now;
use crate::store::{Instance, LOST_KEPT, Presence, StoreError};

#[async_trait]
impl Presence for MemoryStore {
    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError> {
        let now = unix_now();
        let mut state = self.state();
        // Expired beats stay a while: they are the lost instances.
        let kept = now - LOST_KEPT.as_secs_f64();
        state
            .instances
            .retain(|(i, until)| *until > kept && i != instance);
        state
            .instances
            .push((instance.clone(), now + ttl.as_secs_f64()));
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let now = unix_now();
        Ok(self
            .state()
            .instances
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(i, _)| i.clone())
            .collect())
    }

    async fn depart(&self, instance: &Instance) -> Result<(), StoreError> {
        self.state().instances.retain(|(i, _)| i != instance);
        Ok(())
    }

    async fn lost_instances(&self, window: Duration) -> Result<Vec<(Instance, f64)>, StoreError> {
        let now = unix_now();
        let since = now - window.min(LOST_KEPT).as_secs_f64();
        Ok(self
            .state()
            .instances
            .iter()
            .filter(|(_, until)| *until >= since && *until <= now)
            .map(|(i, until)| (i.clone(), *until))
            .collect())
    }
}
