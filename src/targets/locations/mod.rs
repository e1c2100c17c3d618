//! Locations: where a target is probed from, and the verdict their results make
//! together.
//!
//! Every worker runs in one location (`--location`, a zone or a region). A target is
//! probed once per interval from each of its locations: those it lists
//! (`locations: [..]`), else every location with a live worker. Each location's
//! results go through the target's thresholds on their own (a location is down after
//! `failure_threshold` failures in a row from there), and the target's verdict
//! combines the latest of each ([`combine`]):
//! - *down* when at least `quorum` locations see it down (default: a majority of its
//!   locations);
//! - *degraded* when some do, but fewer: a partial failure, shown and not sent unless
//!   a channel asks for `partial`;
//! - *up* otherwise (degraded when a location sees it degraded, e.g. a certificate).
//!
//! A location with no live worker, or whose latest result is older than two intervals,
//! is "no data": it counts neither way, and the reason and the page say so.

use std::collections::BTreeMap;

use crate::service::ServiceState;
use crate::store::{SampleRecord, Store, StoreError};
use crate::targets::Target;
use crate::targets::maintenance::Active;
use crate::targets::state::{self, TargetReport, TargetSample, TargetState, Transition};

pub mod result;

pub use result::{FRESH_INTERVALS, LocationDetail, LocationResult};

/// The result of a location whose verdict is `state` after `sample`, of `tick`.
fn result_of(state: Option<ServiceState>, sample: &TargetSample, tick: u64) -> LocationResult {
    LocationResult {
        state,
        reason: sample.error.clone(),
        response_time_ms: sample.response_time_ms,
        cert_expires_at: sample.cert_expires_at,
        timestamp: sample.timestamp,
        tick,
    }
}

/// The location of a worker that names none.
pub const DEFAULT: &str = "default";
/// Longest location name.
pub const MAX_NAME: usize = 63;
/// A location silent this long leaves the target's state (seconds): after an hour of
/// "no data", a location taken down for good is no longer shown.
pub const FORGET_AFTER: f64 = 3600.0;

/// Whether `name` is a location name: 1 to [`MAX_NAME`] lowercase letters, digits and
/// `-` (it appears in metric labels and in keys).
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is no location name: 1 to {MAX_NAME} of a-z, 0-9 and '-'"
        ));
    }
    Ok(())
}

/// The name under which the store keeps what location `location` alone found of
/// target `target` (its own thresholds, samples and tallies). Target names have no
/// `@`, so it is never another target's.
pub fn series(target: &str, location: &str) -> String {
    format!("{target}@{location}")
}

/// The quorum of a target with `counted` locations that states none: a majority.
pub fn majority(counted: usize) -> usize {
    counted / 2 + 1
}

/// What a target's locations say together ([`combine`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    /// The verdict; `None` when no location counts.
    pub status: Option<ServiceState>,
    /// Whether it is a partial failure: down from fewer than the quorum.
    pub partial: bool,
    /// Names the locations: `down from eu-west and us-east: HTTP 503; up from ap-south`.
    pub reason: Option<String>,
    /// Each location's word and result, by name, the silent ones as `no data`.
    pub detail: BTreeMap<String, LocationDetail>,
    /// The median response time of the locations that count.
    pub response_time_ms: Option<f64>,
}

/// The rules of one verdict.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Where the target is probed from: its own list, else the live locations.
    pub expected: &'a [String],
    /// Locations with a live worker.
    pub live: &'a [String],
    /// Down from this many is down; `None`: a majority of `expected`.
    pub quorum: Option<usize>,
    /// The target's interval, in seconds.
    pub interval: f64,
}

/// The verdict of `results` under `rules` at `now`.
pub fn combine(results: &BTreeMap<String, LocationResult>, rules: Rules<'_>, now: f64) -> Combined {
    let quorum = rules
        .quorum
        .unwrap_or_else(|| majority(rules.expected.len()))
        .max(1);
    let mut names: Vec<&String> = rules.expected.iter().chain(results.keys()).collect();
    names.sort();
    names.dedup();
    let mut detail = BTreeMap::new();
    // Locations by what they say, each with its reason: the reason groups them.
    let mut by_word: BTreeMap<&'static str, Vec<(&str, Option<&str>)>> = BTreeMap::new();
    let mut times = Vec::new();
    for name in names {
        let counted = results.get(name).filter(|r| {
            r.state.is_some()
                && r.fresh(rules.interval, now)
                && rules.expected.contains(name)
                && rules.live.contains(name)
        });
        let word = match counted.and_then(|r| r.state) {
            Some(ServiceState::Down) => "down",
            Some(ServiceState::Degraded) => "degraded",
            Some(ServiceState::Healthy) => "up",
            None => "no data",
        };
        let reason = counted.and_then(|r| r.reason.as_deref());
        if let Some(ms) = counted.and_then(|r| r.response_time_ms) {
            times.push(ms);
        }
        by_word.entry(word).or_default().push((name, reason));
        detail.insert(
            name.clone(),
            LocationDetail {
                state: word.to_owned(),
                reason: reason.map(str::to_owned),
                response_time_ms: counted.and_then(|r| r.response_time_ms),
            },
        );
    }
    let count = |word: &str| by_word.get(word).map_or(0, Vec::len);
    let (down, degraded, up) = (count("down"), count("degraded"), count("up"));
    let partial = down > 0 && down < quorum;
    let status = if down >= quorum {
        Some(ServiceState::Down)
    } else if partial || degraded > 0 {
        Some(ServiceState::Degraded)
    } else if up > 0 {
        Some(ServiceState::Healthy)
    } else {
        None
    };
    let reason = (down + degraded > 0 || count("no data") > 0)
        .then(|| reason(&by_word, partial))
        .filter(|r| !r.is_empty());
    times.sort_by(f64::total_cmp);
    Combined {
        status,
        partial,
        reason,
        detail,
        response_time_ms: times.get(times.len() / 2).copied(),
    }
}

/// `down from eu-west and us-east: HTTP 503; up from ap-south; no data from sa-east`:
/// the locations by word (down first), those of one word grouped by reason.
fn reason(by_word: &BTreeMap<&'static str, Vec<(&str, Option<&str>)>>, partial: bool) -> String {
    let mut parts = Vec::new();
    for word in ["down", "degraded", "up", "no data"] {
        let Some(all) = by_word.get(word) else {
            continue;
        };
        let mut reasons: Vec<Option<&str>> = all.iter().map(|(_, r)| *r).collect();
        reasons.dedup();
        reasons.sort();
        reasons.dedup();
        for why in reasons {
            let names: Vec<&str> = all
                .iter()
                .filter(|(_, r)| *r == why)
                .map(|(n, _)| *n)
                .collect();
            let only = if word == "down" && partial {
                " only"
            } else {
                ""
            };
            let why = why.map(|w| format!(": {w}")).unwrap_or_default();
            parts.push(format!("{word} from {}{only}{why}", and(&names)));
        }
    }
    parts.join("; ")
}

/// `a`, `a and b`, `a, b and c`.
fn and(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Applies `sample` of `target`, probed from location `at.0` at tick `at.1` (while
/// `window` was in force), to what that location alone found (its own thresholds,
/// samples and minute tallies, under [`series`]), then its result to the target's verdict
/// among all its locations under `rules` ([`TargetState::apply_location`]), in one
/// compare-and-set of the target's state. Returns the target's state written, `None`
/// when the probe was overtaken.
pub async fn observe(
    store: &dyn Store,
    target: &Target,
    at: (&str, u64),
    sample: TargetSample,
    window: Option<Active>,
    rules: Rules<'_>,
) -> Result<Option<TargetState>, StoreError> {
    let (location, tick) = at;
    let here = series(&target.name, location);
    let counts = window.is_none();
    // The location's own history counts its minutes only (its uptime over the hour):
    // the hours, days and response-time histograms are the target's, of its verdict.
    let own_record = SampleRecord {
        minutes_only: true,
        ..state::sample_record(&sample, counts)?
    };
    let Some(own) = state::update_with(store, &here, |own| {
        own.apply_in(
            &here,
            tick,
            sample.clone(),
            target.thresholds,
            window.clone(),
        )
        .then(|| Some(own_record.clone()))
    })
    .await?
    else {
        return Ok(None);
    };
    let result = result_of(own.status, &sample, tick);
    state::update_with(store, &target.name, |state| {
        let mut recorded = None;
        let applied = state.apply_with(window.clone(), |s| {
            let now = crate::clock::unix_now();
            recorded = s.apply_location(&target.name, location, result.clone(), rules, now);
            recorded.is_some()
        });
        applied.then(|| {
            recorded
                .flatten()
                .and_then(|s| state::sample_record(&s, counts).ok())
        })
    })
    .await
}

/// What is known of each target of `names` at `now`, in that order, each location's
/// own report included.
pub async fn reports(
    store: &dyn Store,
    names: &[String],
    now: f64,
) -> Result<Vec<TargetReport>, StoreError> {
    let records = store.target_records(names, now).await?;
    let mut reports: Vec<TargetReport> = names
        .iter()
        .zip(records)
        .map(|(name, record)| state::report(name, record, now))
        .collect();
    read(store, &mut reports, now).await?;
    Ok(reports)
}

/// Adds to each of `reports` whose state holds several locations what each location
/// alone found (samples and uptime, [`series`]): one more read of the store, for
/// those targets only.
pub async fn read(
    store: &dyn Store,
    reports: &mut [TargetReport],
    now: f64,
) -> Result<(), StoreError> {
    let mut wanted = Vec::new();
    let mut names = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        for location in report.state.iter().flat_map(|s| s.locations.keys()) {
            wanted.push((i, location.clone()));
            names.push(series(&report.name, location));
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let records = store.target_records(&names, now).await?;
    for ((i, location), record) in wanted.into_iter().zip(records) {
        if let Some(report) = reports.get_mut(i) {
            report
                .locations
                .push(crate::targets::state::report(&location, record, now));
        }
    }
    Ok(())
}

impl TargetState {
    /// Notes `result` of location `location` and applies the verdict of every
    /// location's latest result under `rules` at `now` ([`combine`]): a change of it is
    /// a change of the target, once, whichever location's worker finds it. `None` when a
    /// newer result of that location stands; else the sample to record in the target's
    /// history: the verdict at the first result of each tick, so the history holds one
    /// sample per interval, as with one location.
    pub fn apply_location(
        &mut self,
        name: &str,
        location: &str,
        result: LocationResult,
        rules: Rules<'_>,
        now: f64,
    ) -> Option<Option<TargetSample>> {
        if self
            .locations
            .get(location)
            .is_some_and(|r| r.tick >= result.tick)
        {
            return None;
        }
        let tick = result.tick;
        self.locations.insert(location.to_owned(), result);
        self.locations
            .retain(|_, r| now - r.timestamp <= FORGET_AFTER);
        let combined = combine(&self.locations, rules, now);
        let first = self.last.is_none() || tick > self.tick;
        self.tick = self.tick.max(tick);
        let Some(status) = combined.status else {
            // Nobody counts: the verdict stands until a location does.
            return Some(None);
        };
        let down = ServiceState::Down;
        if Some(status) != self.status {
            // Between up and a partial failure nobody is paged; into or out of down,
            // everybody is, and so the end of a partial failure that followed a down
            // is told too (it resolves what the down opened).
            let quiet = self.status != Some(down) && status != down;
            let partial = quiet
                && ((combined.partial && !self.partial) || (self.partial && !self.partial_told));
            if combined.partial {
                self.partial_told = self.status == Some(down);
            }
            self.change = Some(Transition {
                id: format!("{name}@{now:.3}"),
                from: self.status,
                to: status,
                at: now,
                previous_since: self.since,
                reason: combined.reason.clone(),
                maintenance: None,
                told_at: None,
                partial,
                locations: combined.detail.clone(),
            });
            self.handed = false;
            self.status = Some(status);
            self.since = Some(now);
        }
        self.partial = combined.partial;
        self.partial_told &= combined.partial;
        // The certificate that expires first, of those the locations saw.
        let cert_expires_at = self
            .locations
            .values()
            .filter_map(|r| r.cert_expires_at)
            .reduce(f64::min);
        let sample = TargetSample {
            timestamp: now,
            status,
            response_time_ms: combined.response_time_ms,
            error: combined.reason,
            cert_expires_at,
        };
        self.last = Some(sample.clone());
        Some(first.then_some(sample))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(state: ServiceState, at: f64, reason: Option<&str>) -> LocationResult {
        LocationResult {
            state: Some(state),
            reason: reason.map(str::to_owned),
            response_time_ms: Some(at),
            timestamp: at,
            tick: at as u64,
            cert_expires_at: None,
        }
    }

    fn three() -> Vec<String> {
        ["ap-south", "eu-west", "us-east"]
            .map(String::from)
            .to_vec()
    }

    fn verdict(results: &[(&str, LocationResult)], live: &[String]) -> Combined {
        let expected = three();
        let results = results
            .iter()
            .map(|(n, r)| ((*n).to_owned(), r.clone()))
            .collect();
        let rules = Rules {
            expected: &expected,
            live,
            quorum: None,
            interval: 10.0,
        };
        combine(&results, rules, 100.0)
    }

    use ServiceState::{Down, Healthy};

    #[test]
    fn down_takes_a_quorum_and_fewer_is_a_partial_failure() {
        let live = three();
        let refused = Some("HTTP 503");
        let both = verdict(
            &[
                ("eu-west", result(Down, 95.0, refused)),
                ("us-east", result(Down, 96.0, refused)),
                ("ap-south", result(Healthy, 97.0, None)),
            ],
            &live,
        );
        assert_eq!((both.status, both.partial), (Some(Down), false));
        assert_eq!(
            both.reason.as_deref(),
            Some("down from eu-west and us-east: HTTP 503; up from ap-south")
        );
        assert_eq!(both.detail["eu-west"].state, "down");
        let one = verdict(
            &[
                ("eu-west", result(Healthy, 95.0, None)),
                ("us-east", result(Down, 96.0, refused)),
                ("ap-south", result(Healthy, 97.0, None)),
            ],
            &live,
        );
        assert_eq!(
            (one.status, one.partial),
            (Some(ServiceState::Degraded), true)
        );
        assert_eq!(
            one.reason.as_deref(),
            Some("down from us-east only: HTTP 503; up from ap-south and eu-west")
        );
        let none = verdict(
            &[
                ("eu-west", result(Healthy, 95.0, None)),
                ("us-east", result(Healthy, 96.0, None)),
            ],
            &live,
        );
        assert_eq!(
            (none.status, none.reason.as_deref()),
            (
                Some(Healthy),
                Some("up from eu-west and us-east; no data from ap-south")
            )
        );
    }

    #[test]
    fn stale_results_and_dead_locations_are_no_data() {
        let live = ["eu-west", "us-east"].map(String::from).to_vec();
        let v = verdict(
            &[
                ("eu-west", result(Down, 95.0, None)),
                // Older than two intervals.
                ("us-east", result(Down, 70.0, None)),
                // Fresh, but its worker is gone.
                ("ap-south", result(Down, 99.0, None)),
            ],
            &live,
        );
        assert_eq!(v.status, Some(ServiceState::Degraded));
        assert_eq!(v.detail["us-east"].state, "no data");
        assert_eq!(v.detail["ap-south"].state, "no data");
        assert!(verdict(&[], &live).status.is_none());
    }

    #[test]
    fn a_change_of_the_verdict_happens_once_and_a_partial_one_is_marked() {
        let expected = three();
        let rules = Rules {
            expected: &expected,
            live: &expected,
            quorum: None,
            interval: 10.0,
        };
        let mut state = TargetState::default();
        let mut changes = Vec::new();
        let mut report = |state: &mut TargetState, loc: &str, status, tick: u64| {
            let r = result(
                status,
                tick as f64,
                Some("HTTP 503").filter(|_| status == Down),
            );
            let out =
                state.apply_location("t", loc, LocationResult { tick, ..r }, rules, tick as f64);
            if let Some(c) = state.unhanded() {
                changes.push((c.to, c.partial));
                state.handed = true;
            }
            out
        };
        for loc in ["ap-south", "eu-west", "us-east"] {
            assert!(report(&mut state, loc, Healthy, 10).is_some());
        }
        assert!(
            report(&mut state, "us-east", Down, 10).is_none(),
            "overtaken"
        );
        let recorded = report(&mut state, "us-east", Down, 20);
        assert!(recorded.is_some_and(|s| s.is_some()), "the tick's first");
        assert!(report(&mut state, "eu-west", Healthy, 20).is_some_and(|s| s.is_none()));
        report(&mut state, "eu-west", Down, 30);
        report(&mut state, "eu-west", Healthy, 40);
        report(&mut state, "us-east", Healthy, 40);
        // A partial failure from up again, and its end: neither told.
        report(&mut state, "eu-west", Down, 50);
        report(&mut state, "eu-west", Healthy, 60);
        let degraded = ServiceState::Degraded;
        assert_eq!(
            changes,
            vec![
                (Healthy, false),
                (degraded, true),
                (Down, false),
                (degraded, false),
                (Healthy, false),
                (degraded, true),
                (Healthy, true)
            ]
        );
    }

    #[test]
    fn location_names_are_checked() {
        assert!(check_name("eu-west-1").is_ok());
        for bad in ["", "EU", "eu_west", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
    }
}
