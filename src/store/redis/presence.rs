//! Heartbeats: one sorted set of instances (JSON) scored by when each beat expires;
//! expired beats stay [`LOST_KEPT`] as the lost instances.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;

use super::{HISTORY_TTL_SECONDS, RedisStore, from_json, to_json};
use crate::clock::unix_now;
use crate::store::{Instance, LOST_KEPT, Presence, Store, StoreError, keys};

#[async_trait]
impl Presence for RedisStore {
    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(keys::INSTANCES);
        let now = unix_now();
        let mut pipe = redis::pipe();
        // Expired beats stay a while: they are the lost instances.
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - LOST_KEPT.as_secs_f64())
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
        let key = self.key(keys::INSTANCES);
        let raw: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(format!("({}", unix_now()))
                    .arg("+inf"),
            )
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(from_json(&key, raw))
    }

    async fn depart(&self, instance: &Instance) -> Result<(), StoreError> {
        let key = self.key(keys::INSTANCES);
        self.query(redis::cmd("ZREM").arg(&key).arg(to_json(instance)?))
            .await
            .map(|_: i64| ())
    }

    async fn lost_instances(&self, window: Duration) -> Result<Vec<(Instance, f64)>, StoreError> {
        let key = self.key(keys::INSTANCES);
        let now = unix_now();
        let raw: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(now - window.min(LOST_KEPT).as_secs_f64())
                    .arg(now)
                    .arg("WITHSCORES"),
            )
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(raw
            .into_iter()
            .filter_map(|(json, expired)| {
                from_json::<Instance>(&key, vec![json])
                    .pop()
                    .map(|i| (i, expired))
            })
            .collect())
    }
}
