//! The facts of one public status page, gathered once per snapshot: what the HTML, the
//! JSON and the feed all show.
//!
//! A [`Report`] carries a component's name, its state word, its daily uptime and its
//! incidents' states and times: nothing else of a target (no URL, host, port, reason,
//! error, instance or replica) is ever copied into it, so none of the three renderings
//! can show one.

use futures_util::{StreamExt, stream};
use serde::Serialize;

use crate::service::{ServiceState, Watched};
use crate::store::{Incident, Store, Tally};
use crate::targets::Targets;
use crate::targets::history::{Uptimes, day_of};
use crate::targets::maintenance::Window;
use crate::targets::pages::StatusPage;
use crate::targets::state::uptime;

use super::super::snapshot::{Snapshot, TargetRow};
use super::super::summary;

/// Days of the uptime bar.
pub const DAYS: i64 = 90;
/// Newest incidents read from the store for a page; those of its components and the
/// last [`DAYS`] days are kept (the store itself keeps incidents 30 days).
pub const INCIDENTS_READ: usize = 2_000;
/// Maintenance windows starting within this many days are listed as upcoming.
pub const UPCOMING_DAYS: i64 = 14;
/// Components whose days are read from the store at once.
const READS_AT_ONCE: usize = 8;

/// A page's overall state, worded as status pages word it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every component with a known state is up.
    Operational,
    /// Some components are down or degraded.
    PartialOutage,
    /// At least half of the components are down.
    MajorOutage,
    /// Nothing is down, and some components are in a maintenance window.
    Maintenance,
    /// No component's state is known (the store could not be read).
    Unknown,
}

impl Overall {
    /// The banner's words.
    pub fn headline(self) -> &'static str {
        match self {
            Overall::Operational => "All systems operational",
            Overall::PartialOutage => "Partial outage",
            Overall::MajorOutage => "Major outage",
            Overall::Maintenance => "Under maintenance",
            Overall::Unknown => "Status unknown",
        }
    }
}

/// A component's state, as a status page says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Up.
    Operational,
    /// Degraded: slow, or down from some locations.
    Degraded,
    /// Down.
    Outage,
    /// In a maintenance window.
    Maintenance,
    /// Not judged yet, or unknown.
    Unknown,
}

impl State {
    fn of(row: Option<&TargetRow>) -> State {
        match row.map_or("unknown", summary::word) {
            "healthy" => State::Operational,
            "degraded" => State::Degraded,
            "down" => State::Outage,
            "maintenance" => State::Maintenance,
            _ => State::Unknown,
        }
    }

    /// The word shown beside the component.
    pub fn word(self) -> &'static str {
        match self {
            State::Operational => "Operational",
            State::Degraded => "Degraded",
            State::Outage => "Outage",
            State::Maintenance => "Maintenance",
            State::Unknown => "No data",
        }
    }
}

/// The facts of one page.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it is served.
    pub slug: String,
    /// Its title.
    pub title: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// Its footer, if any.
    pub footer: Option<String>,
    /// Overall state.
    pub status: Overall,
    /// The same in words.
    pub headline: &'static str,
    /// Unix seconds of the snapshot the page is drawn from.
    pub updated_at: f64,
    /// Its components, by section.
    pub sections: Vec<Section>,
    /// Incidents still open, newest first.
    pub current_incidents: Vec<PublicIncident>,
    /// Incidents of the last [`DAYS`] days that ended, newest first.
    pub past_incidents: Vec<PublicIncident>,
    /// Maintenance windows in force now.
    pub active_maintenance: Vec<Maintenance>,
    /// Maintenance windows starting within [`UPCOMING_DAYS`] days.
    pub upcoming_maintenance: Vec<Maintenance>,
}

/// A section of the page: a group's components, or those listed one by one.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// The group; `None` for the components listed one by one.
    pub group: Option<String>,
    /// Its components.
    pub components: Vec<Component>,
}

/// One component: a target by its name.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Its name.
    pub name: String,
    /// Its state.
    pub status: State,
    /// Uptime over the last 7, 30, 90 and 365 days, in percent; `null` without probes.
    pub uptime: Uptimes,
    /// The last [`DAYS`] days, oldest first, today last.
    pub days: Vec<Day>,
}

/// One day of a component's bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    /// The day, UTC (`2026-12-05`).
    pub date: String,
    /// Its uptime in percent; `null` when no probe was counted that day.
    pub uptime: Option<f64>,
    /// Its incidents' indices in `current_incidents` then `past_incidents` (the
    /// component's incidents that overlap the day), as `(current, index)`.
    #[serde(skip)]
    pub incidents: Vec<(bool, usize)>,
    /// How many incidents overlap the day.
    #[serde(rename = "incidents")]
    pub incident_count: usize,
}

/// An incident as a status page tells it: whose, which state, when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicIncident {
    /// Unique per incident: the component and its start.
    pub id: String,
    /// The component.
    pub component: String,
    /// `outage` or `degraded`.
    pub status: State,
    /// Unix seconds when it began.
    pub started_at: f64,
    /// Unix seconds when it ended; `null` while open.
    pub ended_at: Option<f64>,
    /// Seconds it lasted (so far, while open).
    pub duration_s: f64,
}

/// A maintenance window, by the components it covers (its name stays internal).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Maintenance {
    /// Unix seconds when it starts (`null` for one in force, whose start the
    /// snapshot does not carry).
    pub starts_at: Option<f64>,
    /// Unix seconds when it ends.
    pub ends_at: f64,
    /// The page's components it covers.
    pub components: Vec<String>,
}

/// `day` (days since the epoch) as `2026-12-05`.
pub fn date(day: i64) -> String {
    jiff::Timestamp::from_second(day * 86400)
        .map_or_else(|_| day.to_string(), |t| t.strftime("%Y-%m-%d").to_string())
}

/// Gathers page `page` of `file` at the time of `snapshot`.
pub async fn gather(
    page: &StatusPage,
    file: &Targets,
    snapshot: &Snapshot,
    store: &dyn Store,
) -> Report {
    let now = snapshot.taken_at;
    let today = day_of(now);
    let sections = page.sections(&file.targets);
    let names: Vec<String> = sections.iter().flat_map(|(_, n)| n.clone()).collect();
    // With the store down every read would wait for its timeout: the page then says
    // what it knows (nothing), at once.
    let reachable = snapshot.redis_connected;
    // The store's day tallies of a year (for the figures; the bar shows the last
    // DAYS); a component whose days cannot be read shows none.
    let days: Vec<Vec<(i64, Tally)>> = stream::iter(names.iter().filter(|_| reachable))
        .map(|name| async move {
            store
                .target_days(name, today - 364..=today)
                .await
                .unwrap_or_default()
        })
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let incidents = if reachable {
        store.incidents(INCIDENTS_READ).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let (current, past) = public_incidents(&incidents, &names, now);
    let mut tallies = names
        .iter()
        .zip(days.into_iter().chain(std::iter::repeat(Vec::new())));
    let sections: Vec<Section> = sections
        .into_iter()
        .map(|(group, members)| Section {
            group,
            components: members
                .iter()
                .filter_map(|name| {
                    let (_, days) = tallies.next()?;
                    let row = snapshot.targets.iter().find(|t| t.name == *name);
                    Some(component(
                        name,
                        row,
                        &days,
                        (&current[..], &past[..]),
                        today,
                    ))
                })
                .collect(),
        })
        .collect();
    let states: Vec<State> = sections
        .iter()
        .flat_map(|s| s.components.iter().map(|c| c.status))
        .collect();
    let status = overall(&states);
    let (active_maintenance, upcoming_maintenance) =
        maintenance(&file.maintenance, &file.targets, &names, snapshot, now);
    Report {
        slug: page.slug.clone(),
        title: page.title.clone(),
        description: page.description.clone(),
        footer: page.footer.clone(),
        status,
        headline: status.headline(),
        updated_at: now,
        sections,
        current_incidents: current,
        past_incidents: past,
        active_maintenance,
        upcoming_maintenance,
    }
}

fn component(
    name: &str,
    row: Option<&TargetRow>,
    tallies: &[(i64, Tally)],
    (current, past): (&[PublicIncident], &[PublicIncident]),
    today: i64,
) -> Component {
    let overlapping = |day: i64| {
        let (start, end) = ((day * 86400) as f64, ((day + 1) * 86400) as f64);
        let hits = |list: &[PublicIncident], open: bool| {
            list.iter()
                .enumerate()
                .filter(|(_, i)| i.component == name)
                .filter(|(_, i)| i.started_at < end && i.ended_at.is_none_or(|e| e >= start))
                .map(|(n, _)| (open, n))
                .collect::<Vec<_>>()
        };
        let mut all = hits(current, true);
        all.extend(hits(past, false));
        all
    };
    let days = (today - (DAYS - 1)..=today)
        .map(|day| {
            let tally: Vec<(i64, Tally)> =
                tallies.iter().filter(|(d, _)| *d == day).copied().collect();
            let incidents = overlapping(day);
            Day {
                date: date(day),
                uptime: uptime(&tally, day),
                incident_count: incidents.len(),
                incidents,
            }
        })
        .collect();
    Component {
        name: name.to_owned(),
        status: State::of(row),
        uptime: Uptimes::of(tallies, today),
        days,
    }
}

/// The overall state of components in `states`.
pub fn overall(states: &[State]) -> Overall {
    let count = |s: State| states.iter().filter(|x| **x == s).count();
    let (down, degraded) = (count(State::Outage), count(State::Degraded));
    if down > 0 && down * 2 >= states.len() {
        Overall::MajorOutage
    } else if down + degraded > 0 {
        Overall::PartialOutage
    } else if count(State::Maintenance) > 0 {
        Overall::Maintenance
    } else if count(State::Unknown) == states.len() {
        Overall::Unknown
    } else {
        Overall::Operational
    }
}

/// The incidents of `names` of the last [`DAYS`] days: open ones, then ended ones,
/// each newest first. A change back to healthy ends an incident rather than being one;
/// one opened in a maintenance window was expected, and is left out.
fn public_incidents(
    incidents: &[Incident],
    names: &[String],
    now: f64,
) -> (Vec<PublicIncident>, Vec<PublicIncident>) {
    let since = now - (DAYS * 86400) as f64;
    let mut current = Vec::new();
    let mut past = Vec::new();
    for i in incidents {
        let Watched::Target(name) = &i.service else {
            continue;
        };
        let status = match i.to {
            ServiceState::Down => State::Outage,
            ServiceState::Degraded => State::Degraded,
            ServiceState::Healthy => continue,
        };
        if i.maintenance.is_some() || !names.contains(name) || i.ended_at.is_some_and(|e| e < since)
        {
            continue;
        }
        let public = PublicIncident {
            id: format!("{name}@{:.0}", i.started_at),
            component: name.clone(),
            status,
            started_at: i.started_at,
            ended_at: i.ended_at,
            duration_s: i.duration_s(now),
        };
        if i.ended_at.is_none() {
            current.push(public);
        } else {
            past.push(public);
        }
    }
    let newest_first =
        |a: &PublicIncident, b: &PublicIncident| b.started_at.total_cmp(&a.started_at);
    current.sort_by(newest_first);
    past.sort_by(newest_first);
    (current, past)
}

/// Windows in force now (from the snapshot, which judged them) and windows starting
/// within [`UPCOMING_DAYS`] days (from the file), each with the page's components it
/// covers.
fn maintenance(
    windows: &[Window],
    targets: &[crate::targets::Target],
    names: &[String],
    snapshot: &Snapshot,
    now: f64,
) -> (Vec<Maintenance>, Vec<Maintenance>) {
    let mut active: Vec<Maintenance> = Vec::new();
    for row in snapshot.targets.iter().filter(|t| names.contains(&t.name)) {
        let Some(window) = &row.maintenance else {
            continue;
        };
        match active.iter_mut().find(|m| m.ends_at == window.end) {
            Some(m) => m.components.push(row.name.clone()),
            None => active.push(Maintenance {
                starts_at: None,
                ends_at: window.end,
                components: vec![row.name.clone()],
            }),
        }
    }
    let mut upcoming: Vec<Maintenance> = Vec::new();
    let horizon = now + (UPCOMING_DAYS * 86400) as f64;
    for w in windows {
        let covered: Vec<String> = names
            .iter()
            .filter(|n| {
                let group = targets
                    .iter()
                    .find(|t| t.name == **n)
                    .and_then(|t| t.group.as_deref());
                w.applies_to(n, group)
            })
            .cloned()
            .collect();
        if covered.is_empty() {
            continue;
        }
        if let Some((start, end)) = next_start(w, now).filter(|(start, _)| *start <= horizon) {
            upcoming.push(Maintenance {
                starts_at: Some(start),
                ends_at: end,
                components: covered,
            });
        }
    }
    upcoming.sort_by(|a, b| {
        a.starts_at
            .unwrap_or(0.0)
            .total_cmp(&b.starts_at.unwrap_or(0.0))
    });
    (active, upcoming)
}

/// The start and end (Unix seconds) of `window`'s first occurrence starting after `now`.
fn next_start(window: &Window, now: f64) -> Option<(f64, f64)> {
    let seconds = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1e3;
    let length = window.duration.as_secs_f64();
    let mut at = jiff::Timestamp::from_millisecond((now * 1e3) as i64).ok()?;
    // The first end after now may be that of the occurrence in force: then the next.
    for _ in 0..2 {
        let end = window.next_end(at)?;
        let start = seconds(end) - length;
        if start > now {
            return Some((start, seconds(end)));
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_state_is_worded_as_status_pages_word_it() {
        use State::*;
        assert_eq!(overall(&[Operational, Operational]), Overall::Operational);
        assert_eq!(overall(&[Operational, Unknown]), Overall::Operational);
        assert_eq!(overall(&[Operational, Degraded]), Overall::PartialOutage);
        assert_eq!(
            overall(&[Operational, Operational, Outage]),
            Overall::PartialOutage
        );
        assert_eq!(overall(&[Operational, Outage]), Overall::MajorOutage);
        assert_eq!(overall(&[Operational, Maintenance]), Overall::Maintenance);
        assert_eq!(overall(&[Maintenance, Outage]), Overall::MajorOutage);
        assert_eq!(overall(&[Unknown, Unknown]), Overall::Unknown);
        assert_eq!(Overall::Operational.headline(), "All systems operational");
    }

    #[test]
    fn days_are_dates_and_incidents_keep_no_reason() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(day_of(86400.0 * 3.0 + 5.0), 3);
        let incident = Incident {
            service: Watched::Target("payments".into()),
            from: Some(ServiceState::Healthy),
            to: ServiceState::Down,
            started_at: 1000.0,
            ended_at: Some(1600.0),
            reason: Some("connection refused by 10.0.0.7:5432".into()),
            maintenance: None,
        };
        let recovered = Incident {
            to: ServiceState::Healthy,
            started_at: 1600.0,
            ended_at: None,
            ..incident.clone()
        };
        let other = Incident {
            service: Watched::Target("internal".into()),
            ..incident.clone()
        };
        let (current, past) = public_incidents(
            &[recovered, incident, other],
            &["payments".to_owned()],
            2000.0,
        );
        assert!(current.is_empty());
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].duration_s, 600.0);
        let json = serde_json::to_string(&past).expect("json");
        assert!(
            !json.contains("10.0.0.7") && !json.contains("refused"),
            "{json}"
        );
    }
}
