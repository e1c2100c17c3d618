//! Targets: the state under `target:<name>`, the newest samples in a capped list, and
//! tallies in one hash per hour (field per minute), one per day (field per hour, with
//! the hour's response-time histogram) and one per [`keys::DAYS_PER_KEY`] days (field
//! per day), each with a TTL. The state is written by one script that compares and
//! sets and counts the sample in the same step: no round trip of its own for history.
//!
//! The hashes are sized for Redis' compact encoding (listpack: at most 128 fields of
//! at most 64 bytes): a minute hash holds 120 fields, a day hash 72 (`<h>c`, `<h>u` and
//! `<h>l`, the histogram as `bucket:count` pairs, a few buckets for most targets), a
//! block of days 64. An hour whose response times spread over ten or more buckets
//! makes a histogram longer than 64 bytes, and Redis keeps that day's hash in its
//! larger encoding: a few kilobytes more for that target-day.

use async_trait::async_trait;
use deadpool_redis::redis;

use super::connection::Retry;
use super::{RedisStore, from_json, parse, to_json};
use crate::store::{
    DAYS_KEPT, DELIVERIES_KEPT, DeliveryRecord, HOURS_KEPT, HourTally, MINUTES_KEPT, SAMPLES_KEPT,
    SampleRecord, Store, StoreError, Tally, TargetRecord, Targets, keys, latency_bucket,
};

/// Sets a target's state (KEYS[1]) if it is still ARGV[1] (empty: absent) and, when
/// ARGV[4] holds a sample, adds it to the newest samples (KEYS[2]) and, unless ARGV[10]
/// is 0 (a maintenance window), counts it in its minute (KEYS[3], field prefix ARGV[6])
/// and, unless ARGV[10] is 2 (minutes only), its hour (KEYS[4], prefix ARGV[7]; its
/// response time in bucket ARGV[13] unless that is empty) and day (KEYS[5], prefix
/// ARGV[11], kept ARGV[12] seconds).
static PUT_TARGET: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
          redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
          if ARGV[4] ~= '' then
            redis.call('LPUSH', KEYS[2], ARGV[4])
            redis.call('LTRIM', KEYS[2], 0, ARGV[5])
            redis.call('EXPIRE', KEYS[2], ARGV[3])
            if ARGV[10] ~= '0' then
              redis.call('HINCRBY', KEYS[3], ARGV[6] .. 'c', 1)
              redis.call('HINCRBY', KEYS[3], ARGV[6] .. 'u', ARGV[8])
              redis.call('EXPIRE', KEYS[3], ARGV[9])
            end
            if ARGV[10] == '1' then
              redis.call('HINCRBY', KEYS[4], ARGV[7] .. 'c', 1)
              redis.call('HINCRBY', KEYS[4], ARGV[7] .. 'u', ARGV[8])
              redis.call('EXPIRE', KEYS[4], ARGV[3])
              if ARGV[13] ~= '' then
                local field = ARGV[7] .. 'l'
                local counts = {}
                for b, n in string.gmatch(redis.call('HGET', KEYS[4], field) or '', '(%d+):(%d+)') do
                  counts[tonumber(b)] = tonumber(n)
                end
                local bucket = tonumber(ARGV[13])
                counts[bucket] = (counts[bucket] or 0) + 1
                local out = {}
                for b = 0, 31 do
                  if counts[b] then out[#out + 1] = b .. ':' .. counts[b] end
                end
                redis.call('HSET', KEYS[4], field, table.concat(out, ' '))
              end
              redis.call('HINCRBY', KEYS[5], ARGV[11] .. 'c', 1)
              redis.call('HINCRBY', KEYS[5], ARGV[11] .. 'u', ARGV[8])
              redis.call('EXPIRE', KEYS[5], ARGV[12])
            end
          end
          return 1",
    )
});

/// The tallies one sample counts in: the hour and the day it falls in, and the field
/// prefix within each (minute of the hour, hour of the day).
fn buckets(timestamp: f64) -> (i64, i64, i64, i64) {
    let minute = crate::clock::minute_of(timestamp);
    let hour = minute.div_euclid(60);
    (
        hour,
        minute.rem_euclid(60),
        hour.div_euclid(24),
        hour.rem_euclid(24),
    )
}

/// Hours from a hash of `<n>c` / `<n>u` / `<n>l` fields, where `<n>` counts from
/// `base`; what is not a field of these is skipped.
fn hour_tallies(base: i64, fields: &[(String, String)]) -> Vec<HourTally> {
    let mut by_slot = std::collections::BTreeMap::<i64, HourTally>::new();
    for (field, value) in fields {
        let (slot, kind) = field.split_at(field.len().saturating_sub(1));
        let Ok(slot) = slot.parse::<i64>() else {
            continue;
        };
        let hour = by_slot.entry(base + slot).or_insert_with(|| HourTally {
            hour: base + slot,
            ..HourTally::default()
        });
        match kind {
            "c" => hour.tally.checks += value.parse::<i64>().unwrap_or(0),
            "u" => hour.tally.up += value.parse::<i64>().unwrap_or(0),
            "l" => {
                let pairs = value.split(' ').filter_map(|pair| pair.split_once(':'));
                for (bucket, count) in pairs {
                    let (Ok(bucket), Ok(count)) = (bucket.parse::<usize>(), count.parse::<i64>())
                    else {
                        continue;
                    };
                    if let Some(n) = hour.latency.0.get_mut(bucket) {
                        *n += count;
                    }
                }
            }
            _ => {}
        }
    }
    by_slot.into_values().collect()
}

/// Tallies from a hash of `<n>c` / `<n>u` fields, where `<n>` counts from `base`.
fn tallies(base: i64, fields: &[(String, String)]) -> Vec<(i64, Tally)> {
    hour_tallies(base, fields)
        .into_iter()
        .map(|h| (h.hour, h.tally))
        .collect()
}

impl RedisStore {
    /// The slots `first` to `last` from the hashes that hold them, `per_key` slots a
    /// hash, each named by `key` from its number: a pipeline of one read per hash.
    /// Slots come back as [`HourTally`] whatever they count (hours or days).
    async fn hashes(
        &self,
        first: &i64,
        last: &i64,
        per_key: i64,
        key: impl Fn(i64) -> String,
    ) -> Result<Vec<HourTally>, StoreError> {
        let numbers = first.div_euclid(per_key)..=last.div_euclid(per_key);
        let mut pipe = redis::pipe();
        for n in numbers.clone() {
            pipe.cmd("HGETALL").arg(self.key(&key(n)));
        }
        let replies: Vec<Vec<(String, String)>> = self.query(&pipe).await?;
        Ok(numbers
            .zip(replies)
            .flat_map(|(n, fields)| hour_tallies(n * per_key, &fields))
            .collect())
    }
}

#[async_trait]
impl Targets for RedisStore {
    async fn target_state(&self, name: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(&keys::target(name));
        self.query(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))
    }

    async fn put_target_state(
        &self,
        name: &str,
        seen: Option<&str>,
        state: &str,
        sample: Option<&SampleRecord>,
    ) -> Result<bool, StoreError> {
        let key = self.key(&keys::target(name));
        let (hour, minute_field, day, hour_field) = buckets(sample.map_or(0.0, |s| s.timestamp));
        let latency = sample
            .filter(|s| s.up)
            .and_then(|s| s.response_time_ms)
            .map_or(String::new(), |ms| latency_bucket(ms).to_string());
        let mut invocation = PUT_TARGET.prepare_invoke();
        invocation
            .key(&key)
            .key(self.key(&keys::target_samples(name)))
            .key(self.key(&keys::target_minutes(name, hour)))
            .key(self.key(&keys::target_hours(name, day)))
            .key(self.key(&keys::target_days(name, day.div_euclid(keys::DAYS_PER_KEY))))
            .arg(seen.unwrap_or(""))
            .arg(state)
            .arg(HOURS_KEPT.as_secs())
            .arg(sample.map_or("", |s| s.json.as_str()))
            .arg(SAMPLES_KEPT - 1)
            .arg(minute_field)
            .arg(hour_field)
            .arg(i64::from(sample.is_some_and(|s| s.up)))
            .arg(MINUTES_KEPT.as_secs())
            .arg(match sample {
                Some(s) if !s.counts => 0,
                Some(s) if s.minutes_only => 2,
                _ => 1,
            })
            .arg(day.rem_euclid(keys::DAYS_PER_KEY))
            // The block's first day is kept as long as its last.
            .arg(DAYS_KEPT.as_secs() + 86400 * keys::DAYS_PER_KEY.unsigned_abs())
            .arg(latency);
        let invocation = &invocation;
        // A compare-and-set: run twice, the second finds the state changed and
        // writes nothing.
        let written: i64 = self
            .run(Retry::Safe, |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(written == 1)
    }

    async fn target_records(
        &self,
        names: &[String],
        now: f64,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        let (hour, _, day, _) = buckets(now);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for name in names {
            pipe.cmd("GET").arg(self.key(&keys::target(name)));
            pipe.cmd("LRANGE")
                .arg(self.key(&keys::target_samples(name)))
                .arg(0)
                .arg(-1);
            for h in [hour - 1, hour] {
                pipe.cmd("HGETALL")
                    .arg(self.key(&keys::target_minutes(name, h)));
            }
            for d in [day - 1, day] {
                pipe.cmd("HGETALL")
                    .arg(self.key(&keys::target_hours(name, d)));
            }
        }
        let replies: Vec<redis::RedisResult<redis::Value>> = self.query(&pipe).await?;
        let mut replies = replies.into_iter();
        let mut records = Vec::with_capacity(names.len());
        for name in names {
            let mut errors = Vec::new();
            let mut next = |what: &str| -> redis::Value {
                match replies.next() {
                    Some(Ok(value)) => value,
                    Some(Err(e)) => {
                        errors.push(format!("{what}: {e}"));
                        redis::Value::Nil
                    }
                    None => redis::Value::Nil,
                }
            };
            let mut record = TargetRecord {
                state: parse(next("state")),
                samples: parse(next("samples")).unwrap_or_default(),
                ..TargetRecord::default()
            };
            for h in [hour - 1, hour] {
                let fields: Vec<(String, String)> = parse(next("minutes")).unwrap_or_default();
                record.minutes.extend(tallies(h * 60, &fields));
            }
            for d in [day - 1, day] {
                let fields: Vec<(String, String)> = parse(next("hours")).unwrap_or_default();
                record.hours.extend(tallies(d * 24, &fields));
            }
            if !errors.is_empty() {
                let key = self.key(&keys::target(name));
                record.error = Some(format!("{key}: {}", errors.join("; ")));
            }
            records.push(record);
        }
        Ok(records)
    }

    async fn target_days(
        &self,
        name: &str,
        days: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<(i64, Tally)>, StoreError> {
        let per_key = keys::DAYS_PER_KEY;
        let hours = self
            .hashes(days.start(), days.end(), per_key, |block| {
                keys::target_days(name, block)
            })
            .await?;
        Ok(hours
            .into_iter()
            .map(|h| (h.hour, h.tally))
            .filter(|(day, _)| days.contains(day))
            .collect())
    }

    async fn target_hours(
        &self,
        name: &str,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<HourTally>, StoreError> {
        let all = self
            .hashes(hours.start(), hours.end(), 24, |day| {
                keys::target_hours(name, day)
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|h| hours.contains(&h.hour))
            .collect())
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError> {
        let key = self.key(keys::DELIVERIES);
        let mut pipe = redis::pipe();
        pipe.cmd("LPUSH")
            .arg(&key)
            .arg(to_json(delivery)?)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(DELIVERIES_KEPT - 1)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HOURS_KEPT.as_secs())
            .ignore();
        self.query_once(&pipe).await
    }

    async fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(keys::DELIVERIES);
        let raw: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(limit - 1))
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(from_json(&key, raw))
    }
}
