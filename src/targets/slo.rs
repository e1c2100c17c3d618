//! Service level objectives: `slo: {objective: 99.9%, window: 30d}` on a target or
//! on a group (its targets' unless they name their own). The error budget is the
//! share of probes the objective allows to fail over the window; what is left of it,
//! and how fast it burns (the failure rate over the last 5 minutes, hour and 6 hours,
//! in multiples of the rate that would spend exactly the budget over the window), come
//! from the target's tallies, so a maintenance window, which they leave out, is left
//! out of the SLO too.
//!
//! A fast burn, as in Google's SRE workbook (chapter "Alerting on SLOs"), is a burn
//! rate of at least [`FAST_BURN`] over the last hour and over the last 5 minutes: 2% of
//! a 30-day budget in an hour, still going on.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Tally};

/// The burn rate over both 1 h and 5 min that makes a fast burn.
pub const FAST_BURN: f64 = 14.4;

/// The longest window: what day tallies are kept.
pub const MAX_WINDOW_DAYS: i64 = 365;

/// An objective, checked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// Share of probes that must find the target up, in percent (`99.9`).
    pub objective: f64,
    /// Days it is measured over, today included.
    pub window_days: i64,
}

/// `slo:` as the file gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// `99.9%`, or a number of percent.
    objective: serde_json::Value,
    /// Whole days: `30d`, `4w`.
    window: String,
}

impl SloSpec {
    /// The objective it states, or why it states none.
    pub fn check(&self) -> Result<Slo, String> {
        let objective = match &self.objective {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().trim_end_matches('%').trim().parse().ok(),
            _ => None,
        }
        .filter(|p| *p > 0.0 && *p < 100.0)
        .ok_or_else(|| {
            format!(
                "slo.objective: {} is no percentage above 0 and below 100",
                self.objective
            )
        })?;
        let window = humantime::parse_duration(&self.window)
            .map_err(|e| format!("slo.window: {:?}: {e}", self.window))?;
        let days = window.as_secs() / 86400;
        if window.as_secs() % 86400 != 0 || !(1..=MAX_WINDOW_DAYS.unsigned_abs()).contains(&days) {
            return Err(format!(
                "slo.window: {:?} is not 1 to {MAX_WINDOW_DAYS} whole days",
                self.window
            ));
        }
        Ok(Slo {
            objective,
            window_days: i64::try_from(days).unwrap_or(MAX_WINDOW_DAYS),
        })
    }
}

/// Where a target stands against its objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SloReport {
    /// The objective.
    #[serde(flatten)]
    pub slo: Slo,
    /// Uptime over the window, in percent; `None` with no probe counted.
    pub uptime: Option<f64>,
    /// What is left of the error budget, in percent of it (negative once overspent);
    /// `None` with no probe counted.
    pub budget_left: Option<f64>,
    /// Burn rate over the last 5 minutes (1: the budget lasts exactly the window).
    pub burn_5m: Option<f64>,
    /// Burn rate over the last hour.
    pub burn_1h: Option<f64>,
    /// Burn rate over the last 6 hours.
    pub burn_6h: Option<f64>,
}

impl SloReport {
    /// Whether it burns fast: [`FAST_BURN`] over both the last hour and 5 minutes.
    pub fn fast_burn(&self) -> bool {
        self.burn_1h.is_some_and(|b| b >= FAST_BURN) && self.burn_5m.is_some_and(|b| b >= FAST_BURN)
    }
}

/// Sum of `tallies` (by slot number) from slot `since` on.
fn sum(tallies: &[(i64, Tally)], since: i64) -> Tally {
    tallies
        .iter()
        .filter(|(at, _)| *at >= since)
        .fold(Tally::default(), |sum, (_, t)| Tally {
            checks: sum.checks + t.checks,
            up: sum.up + t.up,
        })
}

impl Slo {
    /// The failure rate of `tally` in multiples of the rate the objective allows.
    fn burn(&self, tally: Tally) -> Option<f64> {
        let allowed = 1.0 - self.objective / 100.0;
        (tally.checks > 0).then(|| (tally.checks - tally.up) as f64 / tally.checks as f64 / allowed)
    }

    /// Where a target stands at `now`, from its minute, hour and day tallies (by
    /// absolute minute, hour and day), which must reach back 1 hour, 6 hours and the
    /// window.
    pub fn report(
        &self,
        minutes: &[(i64, Tally)],
        hours: &[(i64, Tally)],
        days: &[(i64, Tally)],
        now: f64,
    ) -> SloReport {
        let minute = crate::clock::minute_of(now);
        let (hour, day) = (minute.div_euclid(60), minute.div_euclid(1440));
        let window = sum(days, day - (self.window_days - 1));
        SloReport {
            slo: *self,
            uptime: crate::targets::state::uptime(&[(0, window)], 0),
            budget_left: self.burn(window).map(|b| 100.0 * (1.0 - b)),
            burn_5m: self.burn(sum(minutes, minute - 4)),
            burn_1h: self.burn(sum(minutes, minute - 59)),
            burn_6h: self.burn(sum(hours, hour - 5)),
        }
    }
}

/// Where each of `targets` (name and objective) stands at `now`, in that order: one
/// read of the recent tallies of them all, then one of each one's days.
pub async fn reports(
    store: &dyn Store,
    targets: &[(String, Slo)],
    now: f64,
) -> Result<Vec<SloReport>, StoreError> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = targets.iter().map(|(name, _)| name.clone()).collect();
    let records = store.target_records(&names, now).await?;
    let today = crate::clock::minute_of(now).div_euclid(1440);
    let mut out = Vec::with_capacity(targets.len());
    for ((name, slo), record) in targets.iter().zip(records) {
        let days = store
            .target_days(name, today - (slo.window_days - 1)..=today)
            .await?;
        out.push(slo.report(&record.minutes, &record.hours, &days, now));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(objective: serde_json::Value, window: &str) -> Result<Slo, String> {
        SloSpec {
            objective,
            window: window.into(),
        }
        .check()
    }

    #[test]
    fn objectives_are_percentages_over_whole_days() {
        assert_eq!(
            spec("99.9%".into(), "30d"),
            Ok(Slo {
                objective: 99.9,
                window_days: 30
            })
        );
        assert_eq!(spec(99.5.into(), "4w").map(|s| s.window_days), Ok(28));
        assert!(spec("100%".into(), "30d").is_err_and(|e| e.contains("below 100")));
        assert!(spec("high".into(), "30d").is_err_and(|e| e.contains("slo.objective")));
        assert!(spec("99%".into(), "36h").is_err_and(|e| e.contains("whole days")));
        assert!(spec("99%".into(), "400d").is_err_and(|e| e.contains("1 to 365")));
    }

    #[test]
    fn budget_and_burn_rates_come_from_the_tallies() {
        let slo = Slo {
            objective: 99.0,
            window_days: 30,
        };
        let now = 100.0 * 86400.0 + 3600.0 * 10.0;
        let minute = crate::clock::minute_of(now);
        let t = |checks, up| Tally { checks, up };
        // The last 10 minutes all down, the rest of the hour up: 10 of 60 down.
        let minutes: Vec<_> = (0..60)
            .map(|k| (minute - k, if k < 10 { t(1, 0) } else { t(1, 1) }))
            .collect();
        let hours = [(minute / 60, t(60, 50)), (minute / 60 - 5, t(540, 540))];
        // 30 days of 1,000 probes, 5 failed a day: half the budget (1%) spent.
        let days: Vec<_> = (0..40).map(|k| (100 - k, t(1000, 995))).collect();
        let report = slo.report(&minutes, &hours, &days, now);
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(close(report.budget_left, 50.0), "{report:?}");
        assert!(close(report.uptime, 99.5));
        assert!(close(report.burn_5m, 100.0));
        assert!(close(report.burn_1h, 100.0 * 10.0 / 60.0));
        assert!(close(report.burn_6h, 100.0 * 10.0 / 600.0));
        assert!(report.fast_burn(), "16.7x over 1 h, 100x over 5 min");
        let over = slo.report(&minutes[5..], &hours, &days, now);
        assert_eq!(over.burn_5m, None, "no probe in the last 5 minutes");
        assert!(!over.fast_burn());
        let slower = slo.report(&minutes[2..], &hours, &days, now);
        assert!(close(slower.burn_1h, 100.0 * 8.0 / 58.0));
        assert!(!slower.fast_burn(), "13.8x over 1 h is below the threshold");
    }
}
