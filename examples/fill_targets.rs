//! Fills a Redis with a day of history of N targets, as `svc worker` leaves it: the
//! memory benchmark of `tests/bench_targets.py` measures what that costs.
//!
//! Every target `t0000`, `t0001`... gets one probe a minute for the last 24 hours,
//! then one every 10 s for the last 10 minutes, each applied with
//! [`state::observe`], the worker's own compare-and-set. So the keys and encodings
//! are the live system's: the state, the newest 60 samples, the minute tallies of
//! each hour of the day, the hour tallies (with their response-time histograms) of
//! each day and the day tallies. A change of state is
//! recorded as an incident and handed off as the worker does it (no notifications:
//! no webhooks are configured). Most probes are healthy; one target in 100 is down
//! for the last 30 minutes, one in 20 had a 15 minute outage earlier in the day and
//! one probe in 500 fails alone.
//!
//! The minute tallies count one probe a minute where the live system counts six:
//! both are one-byte integers in Redis's listpack, so the memory is the same.
//!
//! Usage: `REDIS_URL=redis://:password@127.0.0.1:6379/0 \
//!         cargo run --release --example fill_targets -- [N] [CONCURRENCY]`
//! (N targets, default 1000; CONCURRENCY targets written at once, default 64).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use svc::clock::unix_now;
use svc::config::RedisSettings;
use svc::service::ServiceState;
use svc::store::redis::RedisStore;
use svc::store::{Store, StoreError};
use svc::targets::state::{self, TargetSample, Thresholds};

/// The thresholds a target that names none has.
const THRESHOLDS: Thresholds = Thresholds {
    failure: 2,
    success: 1,
};
/// History written: a day.
const DAY: f64 = 86_400.0;
/// The part of the day probed every 10 s rather than every minute.
const RECENT: f64 = 600.0;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let url = std::env::var("REDIS_URL").map_err(|_| "REDIS_URL is not set")?;
    let store = Arc::new(RedisStore::new(&RedisSettings::from_url(&url)?, "svc:")?);

    let started = Instant::now();
    let now = unix_now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (store, next) = (store.clone(), next.clone());
        writers.spawn(async move {
            let mut written = (0, 0);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<_, StoreError>(written);
                }
                let (samples, changes) = fill(store.as_ref(), index, now).await?;
                written = (written.0 + samples, written.1 + changes);
            }
        });
    }
    let (mut samples, mut changes) = (0, 0);
    while let Some(done) = writers.join_next().await {
        let (s, c) = done??;
        samples += s;
        changes += c;
    }
    println!(
        "{count} targets: {samples} samples, {changes} changes of state in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes target `index`'s day of probes, oldest first; returns the samples written
/// and the changes of state they made.
async fn fill(store: &dyn Store, index: usize, now: f64) -> Result<(usize, usize), StoreError> {
    let name = format!("t{index:04}");
    let start = now - DAY;
    let minutes = (0_u32..)
        .map(|k| start + 60.0 * f64::from(k))
        .take_while(|t| *t < now - RECENT);
    let recent = (0_u32..60).map(|k| now - RECENT + 10.0 * f64::from(k + 1));
    let (mut samples, mut changes) = (0, 0);
    for planned in minutes.chain(recent) {
        let sample = probe(index, planned, now);
        // The tick is the planned time in milliseconds, as the scheduler's.
        let tick = (planned * 1e3) as u64;
        samples += 1;
        if let Some(change) = state::observe(store, &name, tick, sample, THRESHOLDS).await? {
            changes += 1;
            if change.notifies() {
                store.state_change(&change.incident(&name)).await?;
            }
            state::hand_off(store, &name, &change.id).await?;
        }
    }
    Ok((samples, changes))
}

/// What a probe of target `index` planned at `planned` finds.
fn probe(index: usize, planned: f64, now: f64) -> TargetSample {
    let age = now - planned;
    let noise = mix(index as u64 ^ (planned as u64).rotate_left(20));
    // A probe starts a millisecond or two after its planned time.
    let timestamp = planned + 0.001 + (noise % 1000) as f64 / 1e6;
    // Round trips of 0.5 to 10.5 ms, to the nanosecond as measured.
    let response_time_ms = 0.5 + ((noise >> 10) % 10_000_000) as f64 / 1e6;
    let outage_start = 3600.0 * (2 + (index / 20) % 20) as f64;
    let (status, response_time_ms, error) = if index % 100 == 3 && age < 1800.0 {
        (
            ServiceState::Down,
            None,
            Some("no answer within 2s".to_owned()),
        )
    } else if index % 20 == 7 && (outage_start..outage_start + 900.0).contains(&age) {
        (
            ServiceState::Down,
            Some(response_time_ms),
            Some("HTTP 503".to_owned()),
        )
    } else if (noise >> 40).is_multiple_of(500) {
        (
            ServiceState::Down,
            Some(response_time_ms),
            Some("HTTP 502".to_owned()),
        )
    } else {
        (ServiceState::Healthy, Some(response_time_ms), None)
    };
    TargetSample {
        timestamp,
        status,
        response_time_ms,
        error,
        cert_expires_at: None,
    }
}

/// SplitMix64's finaliser: a well-spread number from a seed, the same on every run.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
