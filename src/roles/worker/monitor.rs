//! Probes the user's targets: each one once per its interval for the whole cluster,
//! whatever the replica count.
//!
//! A target's ticks are aligned to the wall clock, offset by a phase taken from its
//! name, so a thousand targets of one interval are spread over it rather than probed
//! at once. At each tick every worker tries to claim `tick:target:<name>:<ms>`; the
//! one that wins probes it (at most [`MAX_PROBES`] at once per worker), applies the
//! result to the target's state ([`state::observe`]) and, when the state changed,
//! records the incident and queues one notification per webhook. A worker that dies
//! between the change and the queueing leaves the change unhanded: the next probe of
//! the target, by any worker, hands it on.
//!
//! In a maintenance window a change is recorded (its incident names the window) but
//! nobody is told, and no reminder goes out; the first probe after the window, with
//! the target still down, queues one `down` per channel, handed on the same way.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::service::ServiceState;
use crate::store::{SharedStore, StoreError, keys};
use crate::targets::state::{self, Transition};
use crate::targets::watch::Current;
use crate::targets::{Target, Targets, check, locations, maintenance, notify, slo};
use crate::telemetry::metric;

/// Probes one worker runs at once.
pub const MAX_PROBES: usize = 256;

struct Monitor {
    store: SharedStore,
    prober: check::Prober,
    probes: Arc<Semaphore>,
    reminded: Reminded,
    /// This worker's location.
    location: String,
    /// The locations with a live worker, sorted ([`live_locations`]).
    live: Arc<RwLock<Vec<String>>>,
}

/// Where this worker probes from.
#[derive(Debug, Clone)]
pub struct Place {
    /// Its location (`--location`).
    pub location: String,
    /// The source address of its probes (`--probe-source-ip`).
    pub source: Option<std::net::IpAddr>,
}

/// The reminders this worker has queued, by target: the ids of those due in the
/// target's current period. Every probe of a down target finds its period's reminders
/// due again; queueing them again would add nothing (their ids are their periods'), so
/// a worker offers each one until it is queued, not on every probe of the period (a
/// store round trip with the job's JSON per probe: 359 of 360 for nothing with
/// `repeat: 1h` at a 10 s interval). The other workers still offer theirs, so a worker
/// that dies after queueing changes nothing.
#[derive(Default)]
struct Reminded(Mutex<HashMap<String, Vec<String>>>);

impl Reminded {
    /// Whether `ids` are what this worker last queued for `target`.
    fn queued(&self, target: &str, ids: &[String]) -> bool {
        self.lock().get(target).is_some_and(|queued| queued == ids)
    }

    /// Notes that `ids` are queued for `target` (`None`: it is not down any more).
    fn set(&self, target: &str, ids: Option<Vec<String>>) {
        let mut map = self.lock();
        match ids {
            Some(ids) => {
                map.insert(target.to_owned(), ids);
            }
            None => {
                map.remove(target);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        // A panic elsewhere leaves a map that is still a map: at worst an offer again.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Probes the targets in force until `stop`; a new file replaces the schedule at once
/// (probes under way finish).
pub async fn run(store: SharedStore, mut current: Current, place: Place, stop: CancellationToken) {
    let prober = match check::Prober::new(place.source) {
        Ok(prober) => prober,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for target probes");
            return;
        }
    };
    let live = Arc::new(RwLock::new(vec![place.location.clone()]));
    let monitor = Arc::new(Monitor {
        store: store.clone(),
        prober,
        probes: Arc::new(Semaphore::new(MAX_PROBES)),
        reminded: Reminded::default(),
        location: place.location.clone(),
        live: live.clone(),
    });
    tokio::spawn(live_locations(store, place.location, live, stop.clone()));
    loop {
        let targets = current.borrow_and_update().clone();
        let round = stop.child_token();
        for index in 0..targets.targets.len() {
            tokio::spawn(schedule(
                monitor.clone(),
                targets.clone(),
                index,
                round.clone(),
            ));
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = current.changed() => {
                round.cancel();
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps `live` the sorted locations of the live workers (this one's always among
/// them), read from their heartbeats every heartbeat period until `stop`; while the
/// store cannot say, the last known stand.
async fn live_locations(
    store: SharedStore,
    own: String,
    live: Arc<RwLock<Vec<String>>>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(crate::presence::HEARTBEAT_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Ok(instances) = store.instances().await else {
            continue;
        };
        let mut found: Vec<String> = instances
            .into_iter()
            .filter(|i| i.role == crate::service::Role::Worker)
            .map(|i| i.location.unwrap_or_else(|| locations::DEFAULT.to_owned()))
            .chain(std::iter::once(own.clone()))
            .collect();
        found.sort();
        found.dedup();
        *live.write().unwrap_or_else(PoisonError::into_inner) = found;
    }
}

/// A fixed offset within the interval, the same on every worker.
fn phase(name: &str, period_ms: u64) -> u64 {
    // FNV-1a: stable across processes and versions, unlike the std hasher's seed.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    name.hash(&mut hasher);
    hasher.finish() % period_ms.max(1)
}

/// Claims and probes target `index` of `targets` at each of its ticks until `stop`.
async fn schedule(
    monitor: Arc<Monitor>,
    targets: Arc<Targets>,
    index: usize,
    stop: CancellationToken,
) {
    let Some(target) = targets.targets.get(index) else {
        return;
    };
    // A target that lists its locations is probed from those only.
    if target
        .locations
        .as_ref()
        .is_some_and(|l| !l.contains(&monitor.location))
    {
        return;
    }
    // One claim per location and tick; the default location's is the claim of old.
    let claimed = match monitor.location.as_str() {
        locations::DEFAULT => target.name.clone(),
        location => locations::series(&target.name, location),
    };
    let period = u64::try_from(target.interval.as_millis()).unwrap_or(u64::MAX);
    let phase = phase(&target.name, period);
    loop {
        // `as` saturates; the clock is never negative here.
        let now = (unix_now() * 1e3) as u64;
        let planned = (now.saturating_sub(phase) / period + 1) * period + phase;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(planned - now)) => {}
        }
        let claim = keys::target_tick(&claimed, planned);
        match monitor
            .store
            .claim(&claim, target.interval.saturating_mul(3))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::debug!(target = %target.name, error = %e, "tick claim failed");
                continue;
            }
        }
        let Ok(permit) = monitor.probes.clone().acquire_owned().await else {
            return;
        };
        let lag = unix_now() - planned as f64 / 1e3;
        metrics::histogram!(metric::TARGET_PROBE_LAG.name).record(lag.max(0.0));
        let (monitor, targets) = (monitor.clone(), targets.clone());
        tokio::spawn(async move {
            let Some(target) = targets.targets.get(index) else {
                return;
            };
            let checked = check::check(&monitor.prober, target).await;
            drop(permit);
            record(&monitor, &targets, target, planned, checked).await;
        });
    }
}

async fn record(
    monitor: &Monitor,
    targets: &Targets,
    target: &Target,
    tick: u64,
    checked: check::Checked,
) {
    let name = target.name.as_str();
    let sample = &checked.sample;
    let window = maintenance::active(
        &targets.maintenance,
        name,
        target.group.as_deref(),
        sample.timestamp,
    );
    // A target's state is exported once for the cluster, from the shared state (the
    // dashboard's /metrics/targets); what this worker keeps is its probes' round trips.
    if let Some(ms) = sample.response_time_ms {
        let at = monitor.location.clone();
        metrics::histogram!(metric::TARGET_RESPONSE_TIME.name, "target" => name.to_owned(), "location" => at)
            .record(ms / 1e3);
    }
    let live = monitor
        .live
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let observed = if target.locations.is_none() && live.len() <= 1 {
        // One location: its results are the target's, as they always were.
        state::observe_in(
            monitor.store.as_ref(),
            name,
            tick,
            checked.sample,
            target.thresholds,
            window,
        )
        .await
    } else {
        let rules = locations::Rules {
            expected: target.locations.as_deref().unwrap_or(&live),
            live: &live,
            quorum: target.quorum,
            interval: target.interval.as_secs_f64(),
        };
        let store = monitor.store.as_ref();
        let here = (monitor.location.as_str(), tick);
        locations::observe(store, target, here, checked.sample, window, rules).await
    };
    let result = match observed {
        Ok(Some(state)) => {
            let handed = match state.unhanded() {
                Some(change) => hand_on(monitor, targets, target, change).await,
                None => remind(monitor, targets, target, &state).await,
            };
            match handed {
                Ok(()) => match window_end(monitor, targets, target, &state).await {
                    Ok(()) => burn(monitor, targets, target, &state).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(target = name, error = %e, "probe result not recorded; the next probe tries again");
    }
}

/// While `target` is down, queues the reminders due (see [`notify::reminders`]); a
/// reminder this worker queued already is not offered again ([`Reminded`]).
async fn remind(
    monitor: &Monitor,
    targets: &Targets,
    target: &Target,
    state: &state::TargetState,
) -> Result<(), StoreError> {
    let Some(change) = state.change.as_ref().filter(|c| {
        state.status == Some(ServiceState::Down)
            && c.to == ServiceState::Down
            && state.window.is_none()
    }) else {
        monitor.reminded.set(&target.name, None);
        return Ok(());
    };
    // A down from a maintenance window is reminded of from the window's end, when it
    // was told; one never told (the window is not over) is not reminded of.
    let since = match (&change.maintenance, change.told_at) {
        (None, _) => change.at,
        (Some(_), Some(told)) => told,
        (Some(_), None) => return Ok(()),
    };
    let channels = notify::route(target, &targets.groups, &targets.notify);
    let due = notify::reminders(target, change, &channels, since, unix_now());
    let ids: Vec<String> = due.iter().map(|job| job.id.clone()).collect();
    if ids.is_empty() || monitor.reminded.queued(&target.name, &ids) {
        return Ok(());
    }
    // Idempotent by id: another worker may have queued the same reminder.
    queue(monitor, due, "reminder").await?;
    monitor.reminded.set(&target.name, Some(ids));
    Ok(())
}

/// Queues `jobs` (notifications of kind `what`), each idempotent by id; how many.
async fn queue(
    monitor: &Monitor,
    jobs: Vec<crate::jobs::JobRecord>,
    what: &str,
) -> Result<usize, StoreError> {
    for job in &jobs {
        if !monitor.store.enqueue(job).await? {
            return Err(StoreError::Command(format!(
                "job queue full: {what} not queued"
            )));
        }
    }
    Ok(jobs.len())
}

/// When a maintenance window ended with `target` down ([`state::TargetState::ended`]),
/// queues its one `down` notification per channel, then notes it queued.
async fn window_end(
    monitor: &Monitor,
    targets: &Targets,
    target: &Target,
    state: &state::TargetState,
) -> Result<(), StoreError> {
    let Some(ended) = &state.ended else {
        return Ok(());
    };
    if let Some(change) = &state.change {
        let channels = notify::route(target, &targets.groups, &targets.notify);
        let reason = state.last.as_ref().and_then(|l| l.error.clone());
        // Idempotent by id: a worker that died before noting it queued it again.
        let jobs = notify::window_end(target, change, ended, reason, &channels, unix_now());
        queue(monitor, jobs, "notification").await?;
    }
    state::end_handed(monitor.store.as_ref(), &target.name, &ended.occurrence()).await?;
    tracing::warn!(target = %target.name, window = %ended.name, "maintenance window ended with the target down");
    Ok(())
}

/// For a target with an objective, out of maintenance: opens a burn episode when its
/// budget burns fast and queues its one notification per channel, or closes the
/// episode once the burn over the last hour is below the threshold. One read of its
/// recent tallies per probe, for targets with an objective only.
async fn burn(
    monitor: &Monitor,
    targets: &Targets,
    target: &Target,
    state: &state::TargetState,
) -> Result<(), StoreError> {
    let Some(objective) = target.slo.filter(|_| state.window.is_none()) else {
        return Ok(());
    };
    let store = monitor.store.as_ref();
    let now = unix_now();
    let record = store
        .target_records(std::slice::from_ref(&target.name), now)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let report = objective.report(&record.minutes, &record.hours, &[], now);
    let calm = report.burn_1h.is_none_or(|b| b < slo::FAST_BURN);
    let Some(episode) = state::burning(store, &target.name, report.fast_burn(), calm, now).await?
    else {
        return Ok(());
    };
    let channels = notify::route(target, &targets.groups, &targets.notify);
    let jobs = notify::burn(target, state.status, &report, episode.since, &channels, now);
    let queued = queue(monitor, jobs, "burn notification").await?;
    state::burn_handed(store, &target.name, episode.since).await?;
    tracing::warn!(target = %target.name, burn_1h = report.burn_1h, burn_5m = report.burn_5m, notifications = queued, "error budget burning fast");
    Ok(())
}

/// Records `change`'s incident and queues its notifications, then notes it handed on.
async fn hand_on(
    monitor: &Monitor,
    targets: &Targets,
    target: &Target,
    change: &Transition,
) -> Result<(), StoreError> {
    let store = &monitor.store;
    let mut queued = 0;
    if change.notifies() {
        store.state_change(&change.incident(&target.name)).await?;
    }
    if change.tells() {
        let channels = notify::route(target, &targets.groups, &targets.notify);
        let jobs = notify::jobs(target, change, &channels, unix_now());
        queued = queue(monitor, jobs, "notification").await?;
    }
    state::hand_off(store.as_ref(), &target.name, &change.id).await?;
    let (from, to) = (notify::word(change.from), notify::word(Some(change.to)));
    let reason = change.reason.as_deref().unwrap_or("");
    if change.to == ServiceState::Down {
        tracing::warn!(target = %target.name, from, to, reason, notifications = queued, "target state changed");
    } else {
        tracing::info!(target = %target.name, from, to, reason, notifications = queued, "target state changed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_queued_is_not_offered_again_until_the_next_period() {
        let reminded = Reminded::default();
        let r1 = vec!["notify-web@1.000-r1-hook".to_owned()];
        let r2 = vec!["notify-web@1.000-r2-hook".to_owned()];
        assert!(!reminded.queued("web", &r1));
        reminded.set("web", Some(r1.clone()));
        assert!(reminded.queued("web", &r1));
        assert!(!reminded.queued("api", &r1));
        assert!(!reminded.queued("web", &r2), "the next period's");
        reminded.set("web", None);
        assert!(
            !reminded.queued("web", &r1),
            "up again, then down: offered again"
        );
    }

    #[test]
    fn phases_are_stable_and_spread() {
        assert_eq!(phase("payments", 10_000), phase("payments", 10_000));
        let phases: std::collections::HashSet<u64> = (0..100)
            .map(|i| phase(&format!("t{i}"), 10_000) / 1000)
            .collect();
        assert!(phases.len() >= 8, "{phases:?}");
    }
}
