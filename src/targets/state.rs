//! A target's verdict: the state machine that turns probe results into states, with
//! thresholds ([`TargetState::apply`]), and [`observe`], which runs it as a
//! compare-and-set on the stored state so any number of workers may report, each
//! change of state happens once, and a probe overtaken by a newer one is dropped.
//!
//! A probe made in a maintenance window ([`observe_in`]) is applied like any other,
//! but a change it makes is marked with the window (nobody is told of it), it does not
//! count in the uptime tallies, and when the window ends with the target still down
//! the state holds the window as [`TargetState::ended`] until its one `down`
//! notification is queued ([`end_handed`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::service::{ServiceState, Watched};
use crate::store::{Incident, SampleRecord, Store, StoreError, Tally, TargetRecord, keys};
use crate::targets::locations::result::{LocationDetail, LocationResult};
use crate::targets::maintenance::Active;

/// Compare-and-set rounds before [`observe`] gives up on a busy target. A round lost
/// is a round another writer won, and a probe overtaken stops at its next round, so
/// this many writers of one target at once all get through.
const ROUNDS: usize = 16;

/// One probe of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSample {
    /// Unix seconds of the probe.
    pub timestamp: f64,
    /// What the probe found (before the thresholds).
    pub status: ServiceState,
    /// Round trip, when there was an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<f64>,
    /// What was wrong, when something was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds when the certificate presented expires (TLS only): stored with
    /// the state, so the cluster's one series of it comes from the shared state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expires_at: Option<f64>,
}

/// Consecutive results that change a target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failures before an up target is down.
    pub failure: u32,
    /// Successes before a down target is up.
    pub success: u32,
}

/// A change of a target's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Unique per change: the idempotency key of its notifications.
    pub id: String,
    /// The state before; `None` for a target's first verdict.
    pub from: Option<ServiceState>,
    /// The state from `at` on.
    pub to: ServiceState,
    /// Unix seconds of the probe that made the change.
    pub at: f64,
    /// Unix seconds when the state before began.
    pub previous_since: Option<f64>,
    /// What the probe said.
    pub reason: Option<String>,
    /// The maintenance window the change happened in: nobody is told of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    /// For a change to down in a window: Unix seconds when the window ended with the
    /// target still down, and it was told; its reminders count from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told_at: Option<f64>,
    /// A change between up and a partial failure ([`crate::targets::locations`]):
    /// shown, told only to channels that ask for `partial`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// What each location said at the change, when the target has several.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, LocationDetail>,
}

impl Transition {
    /// The incident this change of target `name` opens (or, back to healthy, ends).
    pub fn incident(&self, name: &str) -> Incident {
        Incident {
            service: Watched::Target(name.to_owned()),
            from: self.from,
            to: self.to,
            started_at: self.at,
            ended_at: None,
            reason: self.reason.clone(),
            maintenance: self.maintenance.clone(),
        }
    }

    /// Whether it is recorded as an incident: every change, except a target's first
    /// verdict when it is healthy (nothing happened).
    pub fn notifies(&self) -> bool {
        self.from.is_some() || self.to != ServiceState::Healthy
    }

    /// Whether anyone is told of it: [`Transition::notifies`], outside a maintenance
    /// window.
    pub fn tells(&self) -> bool {
        self.notifies() && self.maintenance.is_none()
    }
}

/// A target's tracked state, stored as JSON under its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// The verdict; `None` until the thresholds were first met.
    pub status: Option<ServiceState>,
    /// Unix seconds since the verdict holds.
    pub since: Option<f64>,
    /// Consecutive failed probes.
    pub fails: u32,
    /// Consecutive successful probes.
    pub oks: u32,
    /// Scheduler tick of the newest probe applied.
    pub tick: u64,
    /// The newest probe applied.
    pub last: Option<TargetSample>,
    /// The newest change of state.
    pub change: Option<Transition>,
    /// Whether that change's incident and notifications are queued.
    #[serde(default)]
    pub handed: bool,
    /// The maintenance window in force at the newest probe applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Active>,
    /// A window that ended with the target down, while its `down` notification is not
    /// queued yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Active>,
    /// The fast burn of its error budget going on, if one is ([`burning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn: Option<Burn>,
    /// The latest result of each location, when it is probed from several.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, LocationResult>,
    /// Whether the verdict is a partial failure: down from fewer than the quorum.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Whether that partial failure was told: it followed a down, so its end is told.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial_told: bool,
}

/// An episode of fast burn of a target's error budget
/// ([`crate::targets::slo::FAST_BURN`]): from the probe that found it until the burn
/// over the last hour falls below the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Burn {
    /// Unix seconds when it began: it names the episode, and so its notifications.
    pub since: f64,
    /// Whether its notifications are queued.
    pub handed: bool,
}

impl TargetState {
    /// Applies the probe of scheduler tick `tick`: `false` (nothing changed) when a
    /// newer tick was applied already, so a slow probe never overrides a newer one.
    /// Down after `failure` failures in a row; up again (healthy or degraded, as the
    /// probe says) after `success` successes; between healthy and degraded at once.
    pub fn apply(
        &mut self,
        name: &str,
        tick: u64,
        sample: TargetSample,
        thresholds: Thresholds,
    ) -> bool {
        if self.last.is_some() && tick <= self.tick {
            return false;
        }
        self.tick = tick;
        let failed = sample.status == ServiceState::Down;
        if failed {
            self.fails = self.fails.saturating_add(1);
            self.oks = 0;
        } else {
            self.oks = self.oks.saturating_add(1);
            self.fails = 0;
        }
        let verdict = if failed {
            (self.fails >= thresholds.failure).then_some(ServiceState::Down)
        } else if matches!(self.status, None | Some(ServiceState::Down)) {
            (self.oks >= thresholds.success).then_some(sample.status)
        } else {
            Some(sample.status)
        };
        if let Some(to) = verdict.filter(|to| Some(*to) != self.status) {
            self.change = Some(Transition {
                id: format!("{name}@{:.3}", sample.timestamp),
                from: self.status,
                to,
                at: sample.timestamp,
                previous_since: self.since,
                reason: sample.error.clone(),
                maintenance: None,
                told_at: None,
                partial: false,
                locations: BTreeMap::new(),
            });
            self.handed = false;
            self.status = Some(to);
            self.since = Some(sample.timestamp);
        }
        self.last = Some(sample);
        true
    }

    /// [`TargetState::apply`] for a probe made while `window` was in force (`None`:
    /// none was): a change it makes is marked with the window; leaving a window (for
    /// none) with the target down before and after this probe sets
    /// [`TargetState::ended`].
    pub fn apply_in(
        &mut self,
        name: &str,
        tick: u64,
        sample: TargetSample,
        thresholds: Thresholds,
        window: Option<Active>,
    ) -> bool {
        self.apply_with(window, |state| state.apply(name, tick, sample, thresholds))
    }

    /// Runs `apply` (which says whether it applied a probe) under maintenance window
    /// `window`, as [`TargetState::apply_in`] does.
    pub fn apply_with(
        &mut self,
        window: Option<Active>,
        apply: impl FnOnce(&mut Self) -> bool,
    ) -> bool {
        let before = self.status;
        let change = self.change.as_ref().map(|c| c.id.clone());
        // A down made in the window now in force: nobody was told of it.
        let unheard = match (&self.change, &self.window) {
            (Some(c), Some(w)) => {
                c.to == ServiceState::Down && c.maintenance.as_ref() == Some(&w.name)
            }
            _ => false,
        };
        if !apply(self) {
            return false;
        }
        let changed = self.change.as_ref().map(|c| &c.id) != change.as_ref();
        // The first probe after a window is of the window when it ends a change nobody
        // was told of: a recovery from a down in the window says nothing.
        let marked = window
            .as_ref()
            .or(self.window.as_ref().filter(|_| unheard))
            .map(|w| w.name.clone());
        if let (true, Some(w), Some(c)) = (changed, marked, self.change.as_mut()) {
            c.maintenance = Some(w);
        }
        let down = ServiceState::Down;
        if let Some(left) = self.window.take()
            && window.is_none()
            && before == Some(down)
            && self.status == Some(down)
        {
            if let Some(c) = self.change.as_mut().filter(|c| c.maintenance.is_some()) {
                c.told_at = Some(left.end);
            }
            self.ended = Some(left);
        }
        self.window = window;
        true
    }

    /// The newest change, while its incident and notifications are not queued yet.
    pub fn unhanded(&self) -> Option<&Transition> {
        self.change.as_ref().filter(|_| !self.handed)
    }
}

/// What the page and the API show of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetReport {
    /// Its name.
    pub name: String,
    /// Its tracked state; `None` before its first probe.
    pub state: Option<TargetState>,
    /// Its newest samples, newest first.
    pub samples: Vec<TargetSample>,
    /// Share of probes that found it up over the last hour, in percent.
    pub uptime_1h: Option<f64>,
    /// The same over the last 24 hours.
    pub uptime_24h: Option<f64>,
    /// What could not be read of it.
    pub error: Option<String>,
    /// What each of its locations alone found, named by location, when it is probed
    /// from several (read with the locations' own state).
    pub locations: Vec<TargetReport>,
}

/// Percent of `tallies` (by minute or hour number) from `since` on that were up.
pub fn uptime(tallies: &[(i64, Tally)], since: i64) -> Option<f64> {
    let (checks, up) = tallies
        .iter()
        .filter(|(at, _)| *at >= since)
        .fold((0, 0), |(c, u), (_, t)| (c + t.checks, u + t.up));
    (checks > 0).then(|| 100.0 * up as f64 / checks as f64)
}

/// What the page and the API show of target `name`, from what the store holds of it.
pub fn report(name: &str, record: TargetRecord, now: f64) -> TargetReport {
    let minute = crate::clock::minute_of(now);
    let mut report = TargetReport {
        name: name.to_owned(),
        samples: record
            .samples
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect(),
        uptime_1h: uptime(&record.minutes, minute - 59),
        uptime_24h: uptime(&record.hours, minute.div_euclid(60) - 23),
        error: record.error,
        ..TargetReport::default()
    };
    match record
        .state
        .as_deref()
        .map(serde_json::from_str::<TargetState>)
    {
        Some(Ok(state)) => report.state = Some(state),
        Some(Err(e)) => {
            let unreadable = format!("state unreadable: {e}");
            report.error = Some(match report.error {
                Some(other) => format!("{other}; {unreadable}"),
                None => unreadable,
            });
        }
        None => {}
    }
    report
}

/// Applies `sample`, from scheduler tick `tick`, to target `name` and records it.
/// Returns the change whose incident and notifications are not queued yet (this one's,
/// or an earlier one whose worker died before queueing them), if any.
pub async fn observe(
    store: &dyn Store,
    name: &str,
    tick: u64,
    sample: TargetSample,
    thresholds: Thresholds,
) -> Result<Option<Transition>, StoreError> {
    observe_in(store, name, tick, sample, thresholds, None)
        .await
        .map(|state| state.and_then(|s| s.unhanded().cloned()))
}

/// [`observe`] of a probe made while `window` was in force ([`TargetState::apply_in`]),
/// returning the state written (`None` when the probe was overtaken). A probe in a
/// window is kept with the samples but not counted in the uptime tallies.
pub async fn observe_in(
    store: &dyn Store,
    name: &str,
    tick: u64,
    sample: TargetSample,
    thresholds: Thresholds,
    window: Option<Active>,
) -> Result<Option<TargetState>, StoreError> {
    let counts = window.is_none();
    update(store, name, Some((&sample, counts)), |state| {
        state.apply_in(name, tick, sample.clone(), thresholds, window.clone())
    })
    .await
}

/// Notes that the `down` notification of the end of window `ended` (its
/// [`Active::occurrence`]) of target `name` is queued.
pub async fn end_handed(store: &dyn Store, name: &str, ended: &str) -> Result<(), StoreError> {
    update(store, name, None, |state| {
        let ours = state
            .ended
            .as_ref()
            .is_some_and(|e| e.occurrence() == ended);
        if ours {
            state.ended = None;
        }
        ours
    })
    .await
    .map(|_| ())
}

/// Notes where target `name`'s burn stands at `now`: `fast` opens an episode unless
/// one is open, `calm` (the burn over the last hour is below the threshold) closes it.
/// Returns the open episode whose notifications are not queued yet, if any: the
/// caller queues them (idempotent by the episode) and then calls [`burn_handed`]. Of
/// many workers at once, one opens the episode.
pub async fn burning(
    store: &dyn Store,
    name: &str,
    fast: bool,
    calm: bool,
    now: f64,
) -> Result<Option<Burn>, StoreError> {
    let mut open = None;
    update(store, name, None, |state| {
        open = None;
        match state.burn {
            Some(_) if calm => state.burn = None,
            Some(burn) => {
                open = Some(burn).filter(|b| !b.handed);
                return false;
            }
            None if fast && !calm => {
                let burn = Burn {
                    since: now,
                    handed: false,
                };
                state.burn = Some(burn);
                open = Some(burn);
            }
            None => return false,
        }
        true
    })
    .await?;
    Ok(open)
}

/// Notes that the notifications of burn episode `since` of target `name` are queued.
pub async fn burn_handed(store: &dyn Store, name: &str, since: f64) -> Result<(), StoreError> {
    update(store, name, None, |state| match &mut state.burn {
        Some(burn) if burn.since == since && !burn.handed => {
            burn.handed = true;
            true
        }
        _ => false,
    })
    .await
    .map(|_| ())
}

/// Notes that the incident and notifications of change `id` of target `name` are
/// queued.
pub async fn hand_off(store: &dyn Store, name: &str, id: &str) -> Result<(), StoreError> {
    update(store, name, None, |state| {
        let ours = state.unhanded().is_some_and(|c| c.id == id);
        state.handed |= ours;
        ours
    })
    .await
    .map(|_| ())
}

/// Runs `change` on `name`'s stored state and writes the result (with `sample` when
/// `change` says it applied, counted in the tallies when its flag says so) unless another writer came first; then tries again.
/// Returns the state written, or `None` when `change` left it alone (or a newer
/// one stands).
async fn update(
    store: &dyn Store,
    name: &str,
    sample: Option<(&TargetSample, bool)>,
    mut change: impl FnMut(&mut TargetState) -> bool,
) -> Result<Option<TargetState>, StoreError> {
    let record = sample
        .map(|(s, counts)| sample_record(s, counts))
        .transpose()?;
    update_with(store, name, |state| change(state).then(|| record.clone())).await
}

/// `sample` as the store keeps it, counted in the tallies when `counts`.
pub(crate) fn sample_record(s: &TargetSample, counts: bool) -> Result<SampleRecord, StoreError> {
    serde_json::to_string(s)
        .map(|json| SampleRecord {
            timestamp: s.timestamp,
            up: s.status != ServiceState::Down,
            counts,
            response_time_ms: s.response_time_ms,
            minutes_only: false,
            json,
        })
        .map_err(|e| StoreError::Command(e.to_string()))
}

/// [`update`] where `change` says what sample to record with the state: `None` leaves
/// the state alone, `Some(None)` writes it without a sample.
pub(crate) async fn update_with(
    store: &dyn Store,
    name: &str,
    mut change: impl FnMut(&mut TargetState) -> Option<Option<SampleRecord>>,
) -> Result<Option<TargetState>, StoreError> {
    for _ in 0..ROUNDS {
        let seen = store.target_state(name).await?;
        let mut state = match &seen {
            Some(raw) => serde_json::from_str(raw).map_err(|e| StoreError::Data {
                key: store.key(&keys::target(name)),
                reason: format!("not a target state: {e}"),
            })?,
            None => TargetState::default(),
        };
        let Some(record) = change(&mut state) else {
            return Ok(None);
        };
        let json = serde_json::to_string(&state).map_err(|e| StoreError::Command(e.to_string()))?;
        if store
            .put_target_state(name, seen.as_deref(), &json, record.as_ref())
            .await?
        {
            return Ok(Some(state));
        }
    }
    Err(StoreError::Command(format!(
        "target {name}: state changed under every one of {ROUNDS} writes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Thresholds = Thresholds {
        failure: 2,
        success: 1,
    };

    fn sample(at: f64, status: ServiceState) -> TargetSample {
        TargetSample {
            timestamp: at,
            status,
            response_time_ms: None,
            error: None,
            cert_expires_at: None,
        }
    }

    #[test]
    fn thresholds_decide_each_change_once() {
        use ServiceState::{Down, Healthy};
        let mut state = TargetState::default();
        let mut changes = Vec::new();
        let results = [Healthy, Down, Healthy, Down, Down, Down, Healthy, Healthy];
        for (tick, status) in results.into_iter().enumerate() {
            assert!(state.apply("t", tick as u64 + 1, sample(tick as f64, status), RULES));
            if let Some(c) = state.unhanded() {
                changes.push((c.from, c.to));
                state.handed = true;
            }
        }
        assert_eq!(
            changes,
            vec![
                (None, Healthy),
                (Some(Healthy), Down),
                (Some(Down), Healthy)
            ]
        );
    }

    #[test]
    fn an_overtaken_probe_changes_nothing() {
        let mut state = TargetState::default();
        assert!(state.apply("t", 5, sample(5.0, ServiceState::Healthy), RULES));
        let before = state.clone();
        assert!(!state.apply("t", 4, sample(4.0, ServiceState::Down), RULES));
        assert_eq!(state, before);
    }

    #[test]
    fn a_window_marks_its_changes_and_ends_once_with_the_target_down() {
        use ServiceState::{Down, Healthy};
        let window = |name: &str| {
            Some(Active {
                name: name.into(),
                end: 100.0,
            })
        };
        fn step(
            state: &mut TargetState,
            tick: u64,
            status: ServiceState,
            w: Option<Active>,
        ) -> (Option<Transition>, Option<Active>) {
            assert!(state.apply_in("t", tick, sample(tick as f64, status), RULES, w));
            let change = state.unhanded().cloned();
            state.handed = true;
            (change, state.ended.take())
        }
        let mut state = TargetState::default();
        let mut run = |tick: u64, status, w: Option<Active>| step(&mut state, tick, status, w);
        assert_eq!(run(1, Healthy, None).1, None);
        // Down and up again inside the window: marked, and nothing held at its end.
        run(2, Down, window("a"));
        let (down, _) = run(3, Down, window("a"));
        assert_eq!(down.and_then(|c| c.maintenance), Some("a".to_owned()));
        let (up, _) = run(4, Healthy, window("a"));
        assert!(up.is_some_and(|c| !c.tells()));
        assert_eq!(run(5, Healthy, None), (None, None));
        // Down through a window and on into the next: held at the last one's end only.
        run(6, Down, window("a"));
        run(7, Down, window("a"));
        assert_eq!(run(8, Down, window("b")).1, None);
        assert_eq!(run(9, Down, None).1, window("b"));
        let told = |state: &TargetState| state.change.as_ref().and_then(|c| c.told_at);
        assert_eq!(
            told(&state),
            Some(100.0),
            "reminders count from the window's end"
        );
        let mut run = |tick: u64, status, w: Option<Active>| step(&mut state, tick, status, w);
        assert_eq!(run(10, Down, None).1, None);
        // Down when the window starts, back up at its first probe after: told (the
        // down was), nothing held.
        run(11, Down, window("c"));
        let (up, ended) = run(12, Healthy, None);
        assert!(up.is_some_and(|c| c.tells()) && ended.is_none());
        // Down in a window, back up at its first probe after: nobody hears either.
        run(13, Down, window("d"));
        let (down, _) = run(14, Down, window("d"));
        assert!(down.is_some_and(|c| !c.tells()));
        let (up, ended) = run(15, Healthy, None);
        assert_eq!(up.and_then(|c| c.maintenance), Some("d".to_owned()));
        assert_eq!(ended, None);
        // Down and up in a window, down again at its first probe after: that is told.
        run(16, Down, window("e"));
        run(17, Down, window("e"));
        run(18, Healthy, window("e"));
        run(19, Down, None);
        let (down, ended) = run(20, Down, None);
        assert!(down.is_some_and(|c| c.tells()), "a down after the window");
        assert_eq!(ended, None);
    }

    #[test]
    fn uptime_counts_the_window_only() {
        let t = |checks, up| Tally { checks, up };
        let tallies = [(1, t(6, 0)), (10, t(6, 6)), (11, t(6, 3))];
        assert_eq!(uptime(&tallies, 10), Some(75.0));
        assert_eq!(uptime(&tallies, 12), None);
    }
}
