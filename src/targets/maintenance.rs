//! Maintenance windows: times when some targets are expected to be down, so nobody is
//! told of it and their uptime does not count it.
//!
//! A window is one-off (`start`, RFC 3339, + `duration`) or recurring (`every` listed
//! day, at `time` in `timezone`, + `duration`), for the targets it lists and the
//! targets of the groups it lists:
//!
//! ```yaml
//! maintenance:
//!   - name: db-upgrade
//!     targets: [orders]
//!     start: 2026-12-01T02:00:00Z
//!     duration: 2h
//!   - name: weekly
//!     groups: [shop]
//!     every: [sun]          # mon..sun, or [daily]
//!     time: "03:00"
//!     timezone: Europe/Berlin   # IANA name; UTC when left out
//!     duration: 30m
//! ```
//!
//! A recurring window starts at the local `time` of each listed day and lasts
//! `duration` of real time (a 2 h window over a change of clocks still lasts 2 h). On
//! the day clocks spring forward a `time` that does not exist (02:30 in Berlin on the
//! last Sunday of March) is read as the same time after the gap (03:30 summer time);
//! on the day they fall back a `time` that happens twice starts the window at the
//! first. This is the "compatible" rule of RFC 5545 and of JavaScript's Temporal.
//!
//! The time-zone rules are the system's (`/usr/share/zoneinfo`, which the container
//! image's distroless base carries), so they follow the image's tzdata updates.
//!
//! [`active`] says which window covers a target at an instant, and until when;
//! [`next_end`] when the next window of a target ends. Both are pure.

use std::time::Duration;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// What a window's duration may be.
pub const DURATION_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(31 * 86400);
/// Longest recurring window: one that lasts longer than a week would run into itself.
pub const RECURRING_MAX: Duration = Duration::from_secs(7 * 86400);

/// One maintenance window, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Unique in the file; shown on the page and in the APIs.
    pub name: String,
    /// The targets it covers, by name.
    pub targets: Vec<String>,
    /// The groups whose targets it covers.
    pub groups: Vec<String>,
    /// When it starts.
    pub schedule: Schedule,
    /// How long it lasts, in real time.
    pub duration: Duration,
}

/// When a window starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, at this instant.
    Once(Timestamp),
    /// At `time` in `zone` on each of `days`.
    Weekly {
        /// The days, Monday first (`days[0]`: Monday).
        days: [bool; 7],
        /// The local time it starts.
        time: Time,
        /// The time zone `time` is read in.
        zone: TimeZone,
    },
}

/// The window a target is in: its name and when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    /// The window's name.
    pub name: String,
    /// Unix seconds when it ends.
    pub end: f64,
}

impl Active {
    /// An id for this occurrence of the window: its name and end, unique per occurrence.
    pub fn occurrence(&self) -> String {
        format!("{}:{:.0}", self.name, self.end)
    }
}

impl Window {
    /// Whether it covers the target `name` of group `group`.
    pub fn applies_to(&self, name: &str, group: Option<&str>) -> bool {
        self.targets.iter().any(|t| t == name)
            || group.is_some_and(|g| self.groups.iter().any(|w| w == g))
    }

    /// The starts of its occurrences that could be in force at `at` or end after it,
    /// up to eight days later.
    fn starts_around(&self, at: Timestamp) -> Vec<Timestamp> {
        match &self.schedule {
            Schedule::Once(start) => vec![*start],
            Schedule::Weekly { days, time, zone } => {
                let today = at.to_zoned(zone.clone()).date();
                // A window lasts at most a week: one that started nine days ago is over.
                (-9..=8)
                    .filter_map(|offset| today.checked_add(jiff::Span::new().days(offset)).ok())
                    .filter(|day| days[usize::from(day.weekday().to_monday_zero_offset() as u8)])
                    .filter_map(|day| start_on(day, *time, zone))
                    .collect()
            }
        }
    }

    /// The end of its occurrence in force at `at`, if one is (the latest, should two
    /// overlap).
    pub fn covers(&self, at: Timestamp) -> Option<Timestamp> {
        let length = SignedDuration::try_from(self.duration).ok()?;
        self.starts_around(at)
            .into_iter()
            .filter(|start| *start <= at)
            .filter_map(|start| start.checked_add(length).ok())
            .filter(|end| *end > at)
            .max()
    }

    /// The first end of an occurrence after `at` (within eight days, for a recurring
    /// window).
    pub fn next_end(&self, at: Timestamp) -> Option<Timestamp> {
        let length = SignedDuration::try_from(self.duration).ok()?;
        self.starts_around(at)
            .into_iter()
            .filter_map(|start| start.checked_add(length).ok())
            .filter(|end| *end > at)
            .min()
    }
}

/// The instant `time` on `day` in `zone`: a time in a spring-forward gap is moved past
/// it, one that happens twice is the first.
fn start_on(day: Date, time: Time, zone: &TimeZone) -> Option<Timestamp> {
    zone.to_ambiguous_timestamp(day.to_datetime(time))
        .compatible()
        .ok()
}

/// Unix seconds as an instant (`None` beyond the range of either).
fn instant(unix: f64) -> Option<Timestamp> {
    if !unix.is_finite() {
        return None;
    }
    // `as` saturates; a value past the range is refused by jiff.
    Timestamp::from_millisecond((unix * 1e3).floor() as i64).ok()
}

fn unix(at: Timestamp) -> f64 {
    at.as_millisecond() as f64 / 1e3
}

/// The window of `windows` that covers target `name` (of `group`) at `at` (Unix
/// seconds), with its end; of several, the one that ends last.
pub fn active(windows: &[Window], name: &str, group: Option<&str>, at: f64) -> Option<Active> {
    let at = instant(at)?;
    windows
        .iter()
        .filter(|w| w.applies_to(name, group))
        .filter_map(|w| w.covers(at).map(|end| (end, w)))
        .max_by_key(|(end, _)| *end)
        .map(|(end, w)| Active {
            name: w.name.clone(),
            end: unix(end),
        })
}

/// The first time after `at` (Unix seconds) that a window of target `name` (of
/// `group`) ends.
pub fn next_end(windows: &[Window], name: &str, group: Option<&str>, at: f64) -> Option<f64> {
    let at = instant(at)?;
    windows
        .iter()
        .filter(|w| w.applies_to(name, group))
        .filter_map(|w| w.next_end(at))
        .min()
        .map(unix)
}

/// A `maintenance:` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowSpec {
    name: String,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    start: Option<String>,
    every: Option<Vec<String>>,
    time: Option<String>,
    timezone: Option<String>,
    duration: String,
}

/// Checks the `maintenance:` entries; `target` says whether a target of that name
/// exists, `group` whether a group of that name does. The error names the window.
pub(crate) fn windows(
    specs: Vec<WindowSpec>,
    target: &dyn Fn(&str) -> bool,
    group: &dyn Fn(&str) -> bool,
) -> Result<Vec<Window>, String> {
    let mut names = std::collections::HashSet::new();
    let mut checked = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let at = format!("maintenance[{i}] ({})", spec.name);
        let window = check(spec, target, group).map_err(|e| format!("{at}: {e}"))?;
        if !names.insert(window.name.clone()) {
            return Err(format!("{at}: name used twice"));
        }
        checked.push(window);
    }
    Ok(checked)
}

fn check(
    spec: WindowSpec,
    target: &dyn Fn(&str) -> bool,
    group: &dyn Fn(&str) -> bool,
) -> Result<Window, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if spec.name.is_empty() || spec.name.len() > 100 || !spec.name.chars().all(allowed) {
        return Err("name must be 1 to 100 letters, digits, '.', '_' or '-'".into());
    }
    if spec.targets.is_empty() && spec.groups.is_empty() {
        return Err("it lists no targets and no groups".into());
    }
    if let Some(unknown) = spec.targets.iter().find(|t| !target(t)) {
        return Err(format!("targets: no target is named {unknown:?}"));
    }
    if let Some(unknown) = spec.groups.iter().find(|g| !group(g)) {
        return Err(format!("groups: no group is named {unknown:?}"));
    }
    let duration = humantime::parse_duration(spec.duration.trim()).map_err(|e| {
        format!(
            "duration: {:?} is not a duration such as 30m or 2h ({e})",
            spec.duration
        )
    })?;
    let limit = if spec.every.is_some() {
        RECURRING_MAX
    } else {
        *DURATION_RANGE.end()
    };
    if duration < *DURATION_RANGE.start() || duration > limit {
        return Err(format!(
            "duration: {} is outside {} to {}",
            humantime::format_duration(duration),
            humantime::format_duration(*DURATION_RANGE.start()),
            humantime::format_duration(limit)
        ));
    }
    let schedule = match (spec.start, spec.every) {
        (Some(start), None) => {
            if spec.time.is_some() || spec.timezone.is_some() {
                return Err("a one-off window (start) takes no time or timezone".into());
            }
            let at: Timestamp = start.trim().parse().map_err(|e| {
                format!(
                    "start: {start:?} is not an RFC 3339 time such as 2026-12-01T02:00:00Z ({e})"
                )
            })?;
            Schedule::Once(at)
        }
        (None, Some(every)) => {
            let time = spec
                .time
                .ok_or("a recurring window (every) needs a time, such as \"03:00\"")?;
            let zone = match spec.timezone.as_deref().map(str::trim) {
                None => TimeZone::UTC,
                Some(name) => TimeZone::get(name).map_err(|_| {
                    format!("timezone: {name:?} is no IANA time zone such as Europe/Berlin")
                })?,
            };
            Schedule::Weekly {
                days: days(&every)?,
                time: clock_time(&time)?,
                zone,
            }
        }
        (Some(_), Some(_)) => {
            return Err("start (one-off) and every (recurring) exclude each other".into());
        }
        (None, None) => {
            return Err("it needs a start (one-off) or every (recurring)".into());
        }
    };
    Ok(Window {
        name: spec.name,
        targets: spec.targets,
        groups: spec.groups,
        schedule,
        duration,
    })
}

/// `[mon, thu]` or `[daily]`, as a set of days Monday first.
fn days(names: &[String]) -> Result<[bool; 7], String> {
    if names.is_empty() {
        return Err("every: lists no days".into());
    }
    let mut days = [false; 7];
    for name in names {
        let lower = name.trim().to_ascii_lowercase();
        if lower == "daily" {
            days = [true; 7];
            continue;
        }
        let day = match lower.as_str() {
            "mon" | "monday" => Weekday::Monday,
            "tue" | "tuesday" => Weekday::Tuesday,
            "wed" | "wednesday" => Weekday::Wednesday,
            "thu" | "thursday" => Weekday::Thursday,
            "fri" | "friday" => Weekday::Friday,
            "sat" | "saturday" => Weekday::Saturday,
            "sun" | "sunday" => Weekday::Sunday,
            _ => {
                return Err(format!(
                    "every: {name:?} is no day (mon, tue, wed, thu, fri, sat, sun or daily)"
                ));
            }
        };
        days[usize::from(day.to_monday_zero_offset() as u8)] = true;
    }
    Ok(days)
}

/// `"HH:MM"`, 24-hour.
fn clock_time(text: &str) -> Result<Time, String> {
    let bad = || format!("time: {text:?} is not a 24-hour time such as \"03:00\"");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = h.parse().map_err(|_| bad())?;
    let minute: i8 = m.parse().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(yaml: &str) -> Result<Vec<Window>, String> {
        let specs: Vec<WindowSpec> = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        windows(specs, &|t| t == "orders" || t == "db", &|g| g == "shop")
    }

    fn one(yaml: &str) -> Window {
        parse(yaml).expect("valid").remove(0)
    }

    fn at(text: &str) -> f64 {
        unix(text.parse::<Timestamp>().expect("time"))
    }

    #[test]
    fn a_one_off_window_covers_its_start_up_to_its_end() {
        let w = vec![one(
            "[{name: db-upgrade, targets: [orders], start: '2026-12-01T02:00:00Z', duration: 2h}]",
        )];
        let end = at("2026-12-01T04:00:00Z");
        assert_eq!(active(&w, "orders", None, at("2026-12-01T01:59:59Z")), None);
        assert_eq!(
            active(&w, "orders", None, at("2026-12-01T02:00:00Z")),
            Some(Active {
                name: "db-upgrade".into(),
                end
            })
        );
        assert_eq!(
            active(&w, "orders", None, at("2026-12-01T03:59:59Z")).map(|a| a.end),
            Some(end)
        );
        assert_eq!(active(&w, "orders", None, end), None);
        assert_eq!(active(&w, "db", None, at("2026-12-01T03:00:00Z")), None);
        assert_eq!(
            next_end(&w, "orders", None, at("2026-11-01T00:00:00Z")),
            Some(end)
        );
        assert_eq!(next_end(&w, "orders", None, end), None);
    }

    #[test]
    fn a_recurring_window_follows_its_days_in_its_zone() {
        // 2026-12-06 is a Sunday; Berlin is UTC+1 in winter.
        let w = vec![one(
            "[{name: weekly, groups: [shop], every: [sun, thu], time: '03:00', timezone: Europe/Berlin, duration: 30m}]",
        )];
        let sunday = active(&w, "x", Some("shop"), at("2026-12-06T02:10:00Z"));
        assert_eq!(sunday.map(|a| a.end), Some(at("2026-12-06T02:30:00Z")));
        assert_eq!(
            active(&w, "x", Some("shop"), at("2026-12-06T01:59:00Z")),
            None
        );
        assert_eq!(
            active(&w, "x", Some("other"), at("2026-12-06T02:10:00Z")),
            None
        );
        // Monday: not listed; Thursday is.
        assert_eq!(
            active(&w, "x", Some("shop"), at("2026-12-07T02:10:00Z")),
            None
        );
        assert!(active(&w, "x", Some("shop"), at("2026-12-10T02:10:00Z")).is_some());
        // In summer Berlin is UTC+2.
        assert!(active(&w, "x", Some("shop"), at("2026-07-05T01:10:00Z")).is_some());
        assert_eq!(
            next_end(&w, "x", Some("shop"), at("2026-12-06T02:30:00Z")),
            Some(at("2026-12-10T02:30:00Z"))
        );
    }

    #[test]
    fn a_window_may_span_midnight() {
        let w = vec![one(
            "[{name: nightly, targets: [db], every: [daily], time: '23:30', duration: 1h}]",
        )];
        assert!(active(&w, "db", None, at("2026-12-06T23:45:00Z")).is_some());
        let after_midnight = active(&w, "db", None, at("2026-12-07T00:15:00Z"));
        assert_eq!(
            after_midnight.map(|a| a.end),
            Some(at("2026-12-07T00:30:00Z"))
        );
        assert_eq!(active(&w, "db", None, at("2026-12-07T00:30:00Z")), None);
        // Saturday 23:30 to Sunday 00:30 for a window of Saturdays only.
        let w = vec![one(
            "[{name: sat, targets: [db], every: [sat], time: '23:30', duration: 1h}]",
        )];
        assert!(active(&w, "db", None, at("2026-12-06T00:15:00Z")).is_some());
        assert_eq!(active(&w, "db", None, at("2026-12-07T00:15:00Z")), None);
    }

    #[test]
    fn clock_changes_move_a_missing_start_forward_and_take_a_repeated_one_once() {
        let w = vec![one(
            "[{name: night, targets: [db], every: [sun], time: '02:30', timezone: Europe/Berlin, duration: 1h}]",
        )];
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist and is read
        // as 03:30 CEST (01:30 UTC); the window lasts one real hour.
        assert_eq!(active(&w, "db", None, at("2026-03-29T01:15:00Z")), None);
        let spring = active(&w, "db", None, at("2026-03-29T01:30:00Z"));
        assert_eq!(spring.map(|a| a.end), Some(at("2026-03-29T02:30:00Z")));
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice, the window
        // starts at the first (00:30 UTC) only.
        let autumn = active(&w, "db", None, at("2026-10-25T00:30:00Z"));
        assert_eq!(autumn.map(|a| a.end), Some(at("2026-10-25T01:30:00Z")));
        assert_eq!(active(&w, "db", None, at("2026-10-25T01:45:00Z")), None);
        // An ordinary Sunday: 02:30 CET is 01:30 UTC.
        assert!(active(&w, "db", None, at("2026-11-01T01:45:00Z")).is_some());
    }

    #[test]
    fn mistakes_name_the_window() {
        let cases = [
            (
                "[{name: w, targets: [orders], start: soon, duration: 1h}]",
                "start",
            ),
            (
                "[{name: w, targets: [nope], start: '2026-12-01T02:00:00Z', duration: 1h}]",
                "nope",
            ),
            (
                "[{name: w, groups: [nope], start: '2026-12-01T02:00:00Z', duration: 1h}]",
                "nope",
            ),
            (
                "[{name: w, start: '2026-12-01T02:00:00Z', duration: 1h}]",
                "no targets",
            ),
            (
                "[{name: w, targets: [db], every: [sun], time: '03:00', timezone: Mars/Olympus, duration: 1h}]",
                "timezone",
            ),
            (
                "[{name: w, targets: [db], every: [sunday, funday], time: '03:00', duration: 1h}]",
                "funday",
            ),
            (
                "[{name: w, targets: [db], every: [sun], time: '25:00', duration: 1h}]",
                "time",
            ),
            (
                "[{name: w, targets: [db], every: [sun], time: '3pm', duration: 1h}]",
                "time",
            ),
            (
                "[{name: w, targets: [db], every: [sun], duration: 1h}]",
                "needs a time",
            ),
            (
                "[{name: w, targets: [db], every: [sun], time: '03:00', duration: 8d}]",
                "duration",
            ),
            (
                "[{name: w, targets: [db], every: [sun], time: '03:00', duration: 0s}]",
                "duration",
            ),
            ("[{name: w, targets: [db], duration: 1h}]", "start"),
            (
                "[{name: w, targets: [db], start: '2026-12-01T02:00:00Z', every: [sun], duration: 1h}]",
                "exclude",
            ),
            (
                "[{name: w, targets: [db], start: '2026-12-01T02:00:00Z', timezone: UTC, duration: 1h}]",
                "takes no",
            ),
            (
                "[{name: w, targets: [db], start: '2026-12-01T02:00:00Z', duration: 1h, sometimes: true}]",
                "sometimes",
            ),
            (
                "[{name: w, targets: [db], start: '2026-12-01T02:00:00Z', duration: 1h}, {name: w, targets: [db], start: '2026-12-01T02:00:00Z', duration: 1h}]",
                "twice",
            ),
        ];
        for (yaml, needle) in cases {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.contains(needle), "{yaml}: {err}");
            if !err.contains("sometimes") {
                assert!(
                    err.contains("maintenance[") && err.contains("(w)"),
                    "{yaml}: {err}"
                );
            }
        }
    }

    proptest! {
        /// Whatever the instant: a window in force ends after it and started no more
        /// than its duration before; the next end is that end, or, outside, a later
        /// one, and the instant just before it is covered.
        #[test]
        fn covering_and_next_end_agree(
            minutes in 0i64..(2 * 366 * 24 * 60),
            day in 0usize..7,
            hour in 0i8..24,
            length in 1u64..(24 * 60),
        ) {
            let mut days = [false; 7];
            days[day] = true;
            let window = Window {
                name: "w".into(),
                targets: vec!["t".into()],
                groups: Vec::new(),
                schedule: Schedule::Weekly {
                    days,
                    time: Time::new(hour, 30, 0, 0).expect("time"),
                    zone: TimeZone::get("Europe/Berlin").expect("zone"),
                },
                duration: Duration::from_secs(length * 60),
            };
            let windows = [window];
            let now = 1_767_225_600.0 + 60.0 * minutes as f64; // from 2026-01-01
            let next = next_end(&windows, "t", None, now).expect("a window within a week");
            prop_assert!(next > now);
            match active(&windows, "t", None, now) {
                Some(a) => {
                    prop_assert_eq!(a.end, next);
                    prop_assert!(a.end - now <= (length * 60) as f64);
                }
                None => prop_assert!(next - now > (length * 60) as f64 - 1e-9),
            }
            prop_assert!(active(&windows, "t", None, next - 1.0).is_some());
        }
    }
}
