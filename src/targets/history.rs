//! A target's long history, for reports and export: uptime over the last 7, 30, 90
//! and 365 days from its day tallies, and per-hour or per-day steps (uptime, probes,
//! p50/p95/p99 response times) from its hour and day tallies
//! ([`crate::store::Targets`]). Probes in a maintenance window are not in the tallies,
//! so none of these figures counts them.
//!
//! Response-time percentiles come from the hour histograms, kept 31 days: a step
//! older than that has its uptime but no percentiles.

use serde::Serialize;

use crate::store::{HourTally, Latency, Store, StoreError, Tally};
use crate::targets::state::uptime;

/// Most hourly steps one export may ask for: 31 days, what hours are kept.
pub const MAX_HOURS: i64 = 744;
/// Most daily steps one export may ask for: what days are kept.
pub const MAX_DAYS: i64 = 400;

/// The length of one step of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Step {
    /// One hour (`1h`).
    #[serde(rename = "1h")]
    Hour,
    /// One day, UTC (`1d`).
    #[serde(rename = "1d")]
    Day,
}

impl Step {
    /// The step `text` names: `1h` or `1d`.
    pub fn parse(text: &str) -> Result<Step, String> {
        match text {
            "1h" => Ok(Step::Hour),
            "1d" => Ok(Step::Day),
            other => Err(format!("step {other:?} is neither 1h nor 1d")),
        }
    }

    /// Its length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Step::Hour => 3600,
            Step::Day => 86400,
        }
    }

    /// Most steps of this length one export may ask for.
    pub fn most(self) -> i64 {
        match self {
            Step::Hour => MAX_HOURS,
            Step::Day => MAX_DAYS,
        }
    }
}

/// One step of an export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds where the step starts.
    pub start: i64,
    /// Probes counted (maintenance left out).
    pub checks: i64,
    /// Of those, probes that found it up.
    pub up: i64,
    /// `up` in percent of `checks`; `None` with no probe.
    pub uptime: Option<f64>,
    /// Median response time of the probes that found it up, in ms (the upper bound
    /// of its histogram bucket); `None` without them.
    pub p50_ms: Option<f64>,
    /// The same, 95th percentile.
    pub p95_ms: Option<f64>,
    /// The same, 99th percentile.
    pub p99_ms: Option<f64>,
}

impl Point {
    fn new(start: i64, tally: Tally, latency: &Latency) -> Point {
        Point {
            start,
            checks: tally.checks,
            up: tally.up,
            uptime: uptime(&[(0, tally)], 0),
            p50_ms: latency.quantile(0.50),
            p95_ms: latency.quantile(0.95),
            p99_ms: latency.quantile(0.99),
        }
    }
}

/// Uptime in percent over the last 7, 30, 90 and 365 days (today counting as one of
/// them, so far); `None` for a window with no probe counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Uptimes {
    /// The last 7 days.
    #[serde(rename = "7d")]
    pub d7: Option<f64>,
    /// The last 30 days.
    #[serde(rename = "30d")]
    pub d30: Option<f64>,
    /// The last 90 days.
    #[serde(rename = "90d")]
    pub d90: Option<f64>,
    /// The last 365 days.
    #[serde(rename = "365d")]
    pub d365: Option<f64>,
}

/// Days since the epoch of unix second `at`.
pub fn day_of(at: f64) -> i64 {
    crate::clock::minute_of(at).div_euclid(24 * 60)
}

/// Target `name`'s uptime over the last 7, 30, 90 and 365 days at `now`.
pub async fn uptimes(store: &dyn Store, name: &str, now: f64) -> Result<Uptimes, StoreError> {
    let today = day_of(now);
    let days = store.target_days(name, today - 364..=today).await?;
    Ok(Uptimes::of(&days, today))
}

impl Uptimes {
    /// The uptimes of day tallies `days` (by day number) on day `today`.
    pub fn of(days: &[(i64, Tally)], today: i64) -> Uptimes {
        let over = |n: i64| uptime(days, today - (n - 1));
        Uptimes {
            d7: over(7),
            d30: over(30),
            d90: over(90),
            d365: over(365),
        }
    }
}

/// The steps of `step` that cover unix seconds `from` (inclusive) to `to`
/// (exclusive): the first and the last, numbered from the epoch. An empty or too
/// long range says why.
pub fn steps(from: i64, to: i64, step: Step) -> Result<(i64, i64), String> {
    if to <= from {
        return Err(format!("to ({to}) is not after from ({from})"));
    }
    let (first, last) = (
        from.div_euclid(step.seconds()),
        (to - 1).div_euclid(step.seconds()),
    );
    let count = last - first + 1;
    if count > step.most() {
        let step_name = match step {
            Step::Hour => "1h",
            Step::Day => "1d",
        };
        return Err(format!(
            "{count} steps of {step_name} asked for; at most {} per request",
            step.most()
        ));
    }
    Ok((first, last))
}

/// Target `name`'s history from step `first` to step `last` (numbered from the
/// epoch, as [`steps`] gives them), one [`Point`] per step, empty steps included.
pub async fn export(
    store: &dyn Store,
    name: &str,
    step: Step,
    (first, last): (i64, i64),
) -> Result<Vec<Point>, StoreError> {
    let mut points: Vec<Point> = (first..=last)
        .map(|n| Point::new(n * step.seconds(), Tally::default(), &Latency::default()))
        .collect();
    let slot = |n: i64| usize::try_from(n - first).ok();
    match step {
        Step::Hour => {
            for hour in store.target_hours(name, first..=last).await? {
                if let Some(point) = slot(hour.hour).and_then(|i| points.get_mut(i)) {
                    *point = Point::new(point.start, hour.tally, &hour.latency);
                }
            }
        }
        Step::Day => {
            // Percentiles from the hours still kept: the last 31 days at most.
            let kept_from = last - (MAX_HOURS / 24);
            let hours: Vec<HourTally> = store
                .target_hours(name, first.max(kept_from) * 24..=last * 24 + 23)
                .await?;
            let mut latency = vec![Latency::default(); points.len()];
            for hour in &hours {
                if let Some(l) = slot(hour.hour.div_euclid(24)).and_then(|i| latency.get_mut(i)) {
                    l.add(&hour.latency);
                }
            }
            for (day, tally) in store.target_days(name, first..=last).await? {
                if let Some(i) = slot(day)
                    && let (Some(point), Some(latency)) = (points.get_mut(i), latency.get(i))
                {
                    *point = Point::new(point.start, tally, latency);
                }
            }
        }
    }
    Ok(points)
}

/// Unix seconds from `text`: an RFC 3339 timestamp or a number of seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let parsed = match text.parse::<f64>() {
        // `as` saturates; what jiff cannot hold is out of range.
        Ok(seconds) if seconds.is_finite() => jiff::Timestamp::from_second(seconds.floor() as i64)
            .map_err(|_| format!("{text} is out of range")),
        _ => text
            .parse::<jiff::Timestamp>()
            .map_err(|_| format!("{text:?} is neither RFC 3339 nor unix seconds")),
    };
    parsed.map(|t| t.as_second())
}

/// `points` as CSV with a header line: `start` in RFC 3339, empty cells for unknown
/// figures.
pub fn csv(points: &[Point]) -> String {
    use std::fmt::Write;
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    let mut out = String::from("start,checks,up,uptime,p50_ms,p95_ms,p99_ms\n");
    for p in points {
        let start = jiff::Timestamp::from_second(p.start)
            .map_or_else(|_| p.start.to_string(), |t| t.to_string());
        let _ = writeln!(
            out,
            "{start},{},{},{},{},{},{}",
            p.checks,
            p.up,
            cell(p.uptime),
            cell(p.p50_ms),
            cell(p.p95_ms),
            cell(p.p99_ms)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_bounds_of_their_buckets() {
        let mut latency = Latency::default();
        // 90 probes at 40 ms (bucket <= 50), 9 at 120 ms (<= 150), 1 at 20 s (above all).
        latency.0[crate::store::latency_bucket(40.0)] += 90;
        latency.0[crate::store::latency_bucket(120.0)] += 9;
        latency.0[crate::store::latency_bucket(20_000.0)] += 1;
        assert_eq!(latency.quantile(0.5), Some(50.0));
        assert_eq!(latency.quantile(0.95), Some(150.0));
        assert_eq!(latency.quantile(0.99), Some(150.0));
        assert_eq!(latency.quantile(1.0), Some(10_000.0));
        assert_eq!(Latency::default().quantile(0.5), None);
        assert_eq!(crate::store::latency_bucket(2.0), 0, "a bound is inclusive");
    }

    #[test]
    fn ranges_are_bounded_and_say_why() {
        assert_eq!(steps(3600, 7200, Step::Hour), Ok((1, 1)));
        assert_eq!(steps(3599, 7201, Step::Hour), Ok((0, 2)));
        assert!(steps(10, 10, Step::Day).is_err_and(|e| e.contains("not after")));
        let year = 366 * 86400;
        assert!(steps(0, year, Step::Day).is_ok());
        assert!(steps(0, year, Step::Hour).is_err_and(|e| e.contains("at most 744")));
        assert!(steps(0, 401 * 86400, Step::Day).is_err_and(|e| e.contains("at most 400")));
    }

    #[test]
    fn times_are_rfc_3339_or_unix_seconds() {
        assert_eq!(parse_time("86400"), Ok(86400));
        assert_eq!(parse_time("1970-01-02T00:00:00Z"), Ok(86400));
        assert_eq!(parse_time("1970-01-02T01:00:00+01:00"), Ok(86400));
        assert!(parse_time("yesterday").is_err_and(|e| e.contains("RFC 3339")));
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("-1e30").is_err_and(|e| e.contains("out of range")));
    }

    #[test]
    fn csv_leaves_unknown_figures_empty() {
        let points = [
            Point::new(0, Tally { checks: 4, up: 3 }, &Latency::default()),
            Point::new(3600, Tally::default(), &Latency::default()),
        ];
        assert_eq!(
            csv(&points),
            "start,checks,up,uptime,p50_ms,p95_ms,p99_ms\n\
             1970-01-01T00:00:00Z,4,3,75,,,\n\
             1970-01-01T01:00:00Z,0,0,,,,\n"
        );
    }
}
