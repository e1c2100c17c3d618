//! Probe results (a capped list per service), per-minute series (a hash per series,
//! minute -> value) and incidents (a hash of records, a sorted set by start, a hash of
//! the open one per service).

use async_trait::async_trait;
use deadpool_redis::redis;

use super::connection::Retry;
use super::{HISTORY_TTL_SECONDS, RedisStore, from_json, to_json};
use crate::clock::unix_now;
use crate::service::{Service, ServiceState};
use crate::store::{
    HealthSample, History, INCIDENTS_KEPT, INCIDENTS_KEPT_DAYS, Incident, Store, StoreError, keys,
};

/// Rolls what a counter (KEYS[1]) gained since the last roll-up (seen in KEYS[2]) into
/// minute ARGV[1] of a series (KEYS[3]), in one step: a retry adds nothing twice.
static ROLL_UP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local raw = redis.call('GET', KEYS[1])
          local current = tonumber(raw or '0')
          if current == nil then
            return redis.error_reply('ERR counter ' .. KEYS[1] .. ' is not a number')
          end
          current = math.floor(current)
          local seen = math.floor(tonumber(redis.call('GET', KEYS[2]) or '0') or 0)
          local delta = current - seen
          if current < seen then delta = current end
          if delta > 0 then
            redis.call('HINCRBY', KEYS[3], ARGV[1], delta)
            redis.call('EXPIRE', KEYS[3], ARGV[2])
          end
          redis.call('SET', KEYS[2], current)
          return delta",
    )
});

#[async_trait]
impl History for RedisStore {
    async fn state_change(&self, change: &Incident) -> Result<(), StoreError> {
        let data = self.key(keys::INCIDENTS);
        let order = self.key(keys::INCIDENTS_BY_START);
        let open = self.key(keys::INCIDENTS_OPEN);
        let service = change.service.as_str();
        let open_id: Option<String> = self
            .query(redis::cmd("HGET").arg(&open).arg(service))
            .await
            .map_err(|e| e.for_key(&open))?;
        let current: Option<Incident> = match &open_id {
            Some(id) => {
                let raw: Option<String> = self
                    .query(redis::cmd("HGET").arg(&data).arg(id))
                    .await
                    .map_err(|e| e.for_key(&data))?;
                raw.and_then(|r| from_json(&data, vec![r]).pop())
            }
            None => None,
        };
        match &current {
            Some(open) if open.to == change.to => return Ok(()),
            None if change.to == ServiceState::Healthy => return Ok(()),
            _ => {}
        }
        let ttl = (INCIDENTS_KEPT_DAYS * 86400.0) as i64 + 86400;
        let mut pipe = redis::pipe();
        pipe.atomic();
        // The id as stored: one rebuilt from parsed JSON could differ in the last
        // digit of its time.
        if let (Some(mut ended), Some(id)) = (current, open_id) {
            ended.ended_at = Some(change.started_at.max(ended.started_at));
            pipe.cmd("HSET")
                .arg(&data)
                .arg(id)
                .arg(to_json(&ended)?)
                .ignore();
        }
        if change.to == ServiceState::Healthy {
            pipe.cmd("HDEL").arg(&open).arg(service).ignore();
        } else {
            let opened = Incident {
                ended_at: None,
                ..change.clone()
            };
            pipe.cmd("HSET")
                .arg(&data)
                .arg(opened.id())
                .arg(to_json(&opened)?)
                .ignore()
                .cmd("ZADD")
                .arg(&order)
                .arg(opened.started_at)
                .arg(opened.id())
                .ignore()
                .cmd("HSET")
                .arg(&open)
                .arg(service)
                .arg(opened.id())
                .ignore();
        }
        for key in [&data, &order, &open] {
            pipe.cmd("EXPIRE").arg(key).arg(ttl).ignore();
        }
        self.query_once::<()>(&pipe).await?;
        // Retention: older than the kept days, or beyond the kept count.
        let cutoff = unix_now() - INCIDENTS_KEPT_DAYS * 86400.0;
        let mut old: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&order)
                    .arg("-inf")
                    .arg(format!("({cutoff}")),
            )
            .await?;
        let count: usize = self.query(redis::cmd("ZCARD").arg(&order)).await?;
        if count > INCIDENTS_KEPT + old.len() {
            let extra: Vec<String> = self
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&order)
                        .arg(0)
                        .arg(count - INCIDENTS_KEPT - 1),
                )
                .await?;
            old.extend(extra);
        }
        if !old.is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("HDEL")
                .arg(&data)
                .arg(&old)
                .ignore()
                .cmd("ZREM")
                .arg(&order)
                .arg(&old)
                .ignore();
            self.query::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let data = self.key(keys::INCIDENTS);
        let order = self.key(keys::INCIDENTS_BY_START);
        let ids: Vec<String> = self
            .query(redis::cmd("ZREVRANGE").arg(&order).arg(0).arg(limit - 1))
            .await
            .map_err(|e| e.for_key(&order))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = self
            .query(redis::cmd("HMGET").arg(&data).arg(&ids))
            .await
            .map_err(|e| e.for_key(&data))?;
        Ok(from_json(&data, raw.into_iter().flatten().collect()))
    }

    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError> {
        let key = self.key(&keys::health(sample.service.as_str()));
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
        service: Service,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(&keys::health(service.as_str()));
        let raw: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(limit - 1))
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(from_json(&key, raw))
    }

    async fn series_add(&self, series: &str, minute: i64, delta: i64) -> Result<(), StoreError> {
        self.series_write("HINCRBY", series, minute, delta, Retry::Never)
            .await
    }

    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError> {
        self.series_write("HSET", series, minute, value, Retry::Safe)
            .await
    }

    async fn roll_up(&self, counter: &str, series: &str, minute: i64) -> Result<i64, StoreError> {
        let mut invocation = ROLL_UP.prepare_invoke();
        invocation
            .key(counter)
            .key(self.key(&keys::rolled_up(counter)))
            .key(self.key(&keys::series(series)))
            .arg(minute)
            .arg(HISTORY_TTL_SECONDS);
        let invocation = &invocation;
        // The script is idempotent: running it twice adds nothing twice.
        self.run(Retry::Safe, |mut c| async move {
            invocation.invoke_async(&mut c).await
        })
        .await
        .map_err(|e| e.for_key(counter))
    }

    async fn series(&self, series: &str, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let key = self.key(&keys::series(series));
        let all: Vec<(i64, i64)> = self
            .query(redis::cmd("HGETALL").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))?;
        let mut points: Vec<_> = all.into_iter().filter(|(m, _)| *m >= since).collect();
        points.sort_unstable();
        Ok(points)
    }

    async fn series_trim(&self, series: &str, before: i64) -> Result<usize, StoreError> {
        let key = self.key(&keys::series(series));
        let minutes: Vec<String> = self
            .query(redis::cmd("HKEYS").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))?;
        // A field that is no minute was not written by this system: it goes too.
        let old: Vec<String> = minutes
            .into_iter()
            .filter(|m| m.parse::<i64>().map_or(true, |m| m < before))
            .collect();
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
        retry: Retry,
    ) -> Result<(), StoreError> {
        let key = self.key(&keys::series(series));
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
