//! The whole truth in one line: svc's own state and the targets'.
//!
//! [`Tally`] counts the targets by state (a target in a maintenance window is counted
//! apart, whatever its probes say); [`headline`] turns that and svc's own state into the
//! sentence the page opens with and `/api/health-check` carries ("svc healthy; 2 of 3
//! targets down: example-broken, redis-port"), naming at most [`NAMED`] targets of each
//! state and then "and N more". [`TargetRow::located`] says what each location of a
//! target probed from several says.

use serde::Serialize;

use super::snapshot::TargetRow;
use super::system::{System, state_name};
use crate::service::ServiceState;

/// Targets named per state in the headline before "and N more".
pub const NAMED: usize = 5;

/// A target's state word: `healthy`, `degraded`, `down`, `maintenance` (in a window,
/// whatever the probes say), `pending` (probed, not judged yet) or `unknown` (the store
/// could not be read).
pub fn word(row: &TargetRow) -> &'static str {
    if row.maintenance.is_some() {
        return "maintenance";
    }
    match &row.report {
        None => "unknown",
        Some(report) => report
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map_or("pending", state_name),
    }
}

/// Whether a target needs a look: down, degraded or in maintenance.
pub fn is_problem(row: &TargetRow) -> bool {
    matches!(word(row), "down" | "degraded" | "maintenance")
}

/// The targets counted by state; `up` + `degraded` + `down` + `maintenance` +
/// `unknown` = `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Every target of the file.
    pub total: usize,
    /// Healthy.
    pub up: usize,
    /// Degraded (some locations see it down).
    pub degraded: usize,
    /// Down.
    pub down: usize,
    /// In a maintenance window.
    pub maintenance: usize,
    /// Not judged yet, or unknown (the store could not be read).
    pub unknown: usize,
}

impl Tally {
    /// Counts `rows`.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a TargetRow>) -> Self {
        let mut tally = Tally::default();
        for row in rows {
            tally.total += 1;
            match word(row) {
                "healthy" => tally.up += 1,
                "degraded" => tally.degraded += 1,
                "down" => tally.down += 1,
                "maintenance" => tally.maintenance += 1,
                _ => tally.unknown += 1,
            }
        }
        tally
    }

    /// The worst state among them: down, degraded, or healthy (maintenance and unknown
    /// do not count against it).
    pub fn worst(&self) -> ServiceState {
        if self.down > 0 {
            ServiceState::Down
        } else if self.degraded > 0 {
            ServiceState::Degraded
        } else {
            ServiceState::Healthy
        }
    }

    /// "48 up, 2 down, 1 in maintenance": the non-zero counts, problems first.
    pub fn counts(&self) -> String {
        let parts = [
            (self.down, "down"),
            (self.degraded, "degraded"),
            (self.maintenance, "in maintenance"),
            (self.unknown, "not judged"),
        ];
        let mut text = format!("{} up", self.up);
        for (n, what) in parts.into_iter().filter(|(n, _)| *n > 0) {
            text.push_str(&format!(", {n} {what}"));
        }
        text
    }
}

/// The state the page's headline shows: the worse of svc's own and the targets'.
pub fn overall(system: &System, tally: &Tally) -> ServiceState {
    fn rank(s: ServiceState) -> u8 {
        match s {
            ServiceState::Healthy => 0,
            ServiceState::Degraded => 1,
            ServiceState::Down => 2,
        }
    }
    if rank(tally.worst()) > rank(system.status) {
        tally.worst()
    } else {
        system.status
    }
}

/// "svc healthy; 2 of 3 targets down: example-broken, redis-port". `known` is false
/// when the store could not be read: the targets' states are then unknown, and said so.
pub fn headline(system: &System, rows: &[TargetRow], known: bool) -> String {
    let mut text = format!("svc {}", state_name(system.status));
    if rows.is_empty() {
        return text;
    }
    let tally = Tally::of(rows);
    let total = tally.total;
    let plural = |n: usize| if n == 1 { "target" } else { "targets" };
    if !known {
        text.push_str(&format!(
            "; {total} {} unknown: the store is unreachable",
            plural(total)
        ));
        return text;
    }
    let names = |state: &str| {
        let matching: Vec<&str> = rows
            .iter()
            .filter(|r| word(r) == state)
            .map(|r| r.name.as_str())
            .collect();
        let mut list = matching
            .iter()
            .take(NAMED)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if matching.len() > NAMED {
            list.push_str(&format!(" and {} more", matching.len() - NAMED));
        }
        list
    };
    let mut parts = Vec::new();
    if tally.down > 0 {
        parts.push(format!(
            "{} of {total} {} down: {}",
            tally.down,
            plural(total),
            names("down")
        ));
    }
    if tally.degraded > 0 {
        parts.push(if parts.is_empty() {
            format!(
                "{} of {total} {} degraded: {}",
                tally.degraded,
                plural(total),
                names("degraded")
            )
        } else {
            format!("{} degraded: {}", tally.degraded, names("degraded"))
        });
    }
    if parts.is_empty() && tally.up > 0 {
        parts.push(if tally.up == total {
            format!("all {total} {} up", plural(total))
        } else {
            format!("{} of {total} {} up", tally.up, plural(total))
        });
    }
    // The first part says what is counted; the rest follow it.
    for (n, what) in [
        (tally.maintenance, "in maintenance"),
        (tally.unknown, "not judged yet"),
    ] {
        if n > 0 && parts.is_empty() {
            parts.push(format!("{n} of {total} {} {what}", plural(total)));
        } else if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    text.push_str("; ");
    text.push_str(&parts.join("; "));
    text
}

impl TargetRow {
    /// Each location to show of it, with its latest result if any and its word at
    /// `now`: `healthy`, `degraded`, `down`, or `no data` (none yet, or older than two
    /// intervals). Those its state holds, and those it lists that never reported.
    pub fn located(
        &self,
        now: f64,
    ) -> Vec<(
        &str,
        Option<&crate::targets::locations::LocationResult>,
        &'static str,
    )> {
        let held = self
            .report
            .as_ref()
            .and_then(|r| r.state.as_ref())
            .map(|s| &s.locations);
        let interval = self.interval.as_secs_f64();
        let mut names: Vec<&str> = held
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
            .chain(self.listed.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let result = held.and_then(|m| m.get(name));
                let word = result
                    .filter(|r| r.fresh(interval, now))
                    .and_then(|r| r.state)
                    .map_or("no data", state_name);
                (name, result, word)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::maintenance::Active;
    use crate::targets::state::{TargetReport, TargetState};

    fn row(name: &str, status: Option<ServiceState>) -> TargetRow {
        TargetRow {
            name: name.into(),
            group: None,
            url: format!("http://{name}.example/"),
            kind: "http",
            report: Some(TargetReport {
                name: name.into(),
                state: Some(TargetState {
                    status,
                    ..TargetState::default()
                }),
                samples: Vec::new(),
                uptime_1h: None,
                uptime_24h: None,
                error: None,
                locations: Vec::new(),
            }),
            maintenance: None,
            slo: None,
            interval: std::time::Duration::from_secs(10),
            listed: Vec::new(),
            uptime_days: Default::default(),
        }
    }

    fn healthy_svc() -> System {
        System {
            status: ServiceState::Healthy,
            reason: "All services healthy".into(),
        }
    }

    use ServiceState::{Degraded, Down, Healthy};

    #[test]
    fn two_of_three_down_are_named() {
        let rows = [
            row("example-ok", Some(Healthy)),
            row("example-broken", Some(Down)),
            row("redis-port", Some(Down)),
        ];
        assert_eq!(
            headline(&healthy_svc(), &rows, true),
            "svc healthy; 2 of 3 targets down: example-broken, redis-port"
        );
        assert_eq!(overall(&healthy_svc(), &Tally::of(&rows)), Down);
    }

    #[test]
    fn a_handful_are_named_then_the_rest_counted() {
        let mut rows: Vec<TargetRow> = (0..20)
            .map(|i| row(&format!("t{i:02}"), Some(Down)))
            .collect();
        rows.push(row("slow", Some(Degraded)));
        let mut window = row("db", Some(Down));
        window.maintenance = Some(Active {
            name: "upgrade".into(),
            end: 0.0,
        });
        rows.push(window);
        rows.push(row("new", None));
        assert_eq!(
            headline(&healthy_svc(), &rows, true),
            "svc healthy; 20 of 23 targets down: t00, t01, t02, t03, t04 and 15 more; \
             1 degraded: slow; 1 in maintenance; 1 not judged yet"
        );
        let tally = Tally::of(&rows);
        assert_eq!(
            (tally.total, tally.up, tally.down, tally.degraded),
            (23, 0, 20, 1)
        );
        assert_eq!((tally.maintenance, tally.unknown), (1, 1));
        assert_eq!(
            tally.counts(),
            "0 up, 20 down, 1 degraded, 1 in maintenance, 1 not judged"
        );
    }

    #[test]
    fn all_up_and_the_svc_state_first() {
        let rows = [row("a", Some(Healthy))];
        let degraded = System {
            status: Degraded,
            reason: "Worker down".into(),
        };
        assert_eq!(
            headline(&degraded, &rows, true),
            "svc degraded; all 1 target up"
        );
        assert_eq!(overall(&degraded, &Tally::of(&rows)), Degraded);
        assert_eq!(headline(&healthy_svc(), &[], true), "svc healthy");
        assert_eq!(
            headline(&healthy_svc(), &[row("new", None)], true),
            "svc healthy; 1 of 1 target not judged yet"
        );
        assert_eq!(
            headline(&healthy_svc(), &rows, false),
            "svc healthy; 1 target unknown: the store is unreachable"
        );
    }
}
