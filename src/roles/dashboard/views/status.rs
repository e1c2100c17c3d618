//! A public status page as maud markup: the overall state, each component with its
//! state and a 90-day bar of daily uptime, maintenance windows, incidents.
//!
//! It works without JavaScript and loads nothing but its own stylesheet (served under
//! `/status/`, so an Ingress that exposes only `/status/` serves it whole). A day of the
//! bar is a focusable list item whose figures and incidents show on hover and on
//! keyboard focus, by CSS alone. It links nowhere but to its own JSON and feed.

use maud::{DOCTYPE, Markup, html};

use super::super::assets;
use super::super::status::feed::rfc3339;
use super::super::status::report::{
    Component, Day, Maintenance, Overall, PublicIncident, Report, State,
};
use super::{duration, head_start};

/// Days of the bar shown on a narrow screen (the stylesheet hides the older ones).
pub const NARROW_DAYS: usize = 30;

/// Unix seconds as "2026-12-05 14:02 UTC".
fn when(at: f64) -> String {
    jiff::Timestamp::from_second(at.floor() as i64).map_or_else(
        |_| rfc3339(at),
        |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// An uptime as "99.95%", "100%", or "no data".
fn percent(uptime: Option<f64>) -> String {
    match uptime {
        Some(u) if u >= 100.0 => "100%".to_owned(),
        // Never rounded up to 100: a day with a failed probe is not a perfect day.
        Some(u) => format!("{:.2}%", (u * 100.0).floor() / 100.0),
        None => "no data".to_owned(),
    }
}

/// The colour class of a day by its uptime.
fn band(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => "none",
        Some(u) if u >= 100.0 => "full",
        Some(u) if u >= 99.0 => "high",
        Some(u) if u >= 95.0 => "mid",
        Some(_) => "low",
    }
}

fn state_class(state: State) -> &'static str {
    match state {
        State::Operational => "operational",
        State::Degraded => "degraded",
        State::Outage => "outage",
        State::Maintenance => "maintenance",
        State::Unknown => "unknown",
    }
}

fn overall_class(overall: Overall) -> &'static str {
    match overall {
        Overall::Operational => "operational",
        Overall::PartialOutage => "degraded",
        Overall::MajorOutage => "outage",
        Overall::Maintenance => "maintenance",
        Overall::Unknown => "unknown",
    }
}

/// A symbol beside each state, so no state is told by colour alone.
fn symbol(class: &str) -> &'static str {
    match class {
        "operational" => "✓",
        "degraded" => "!",
        "outage" => "✕",
        "maintenance" => "⚙",
        _ => "?",
    }
}

/// The whole page.
pub fn page(report: &Report) -> Markup {
    let overall = overall_class(report.status);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head_start(&report.title, &assets::STATUS_CSS.path))
                @if let Some(d) = &report.description { meta name="description" content=(d); }
                link rel="alternate" type="application/atom+xml" title="Incidents"
                    href={ "/status/" (report.slug) "/feed.atom" };
            }
            body {
                header.head {
                    h1 { (report.title) }
                    @if let Some(d) = &report.description { p.muted { (d) } }
                }
                main {
                    section.banner data-state=(overall) role="status" {
                        h2 { span.sym aria-hidden="true" { (symbol(overall)) } " " (report.headline) }
                        p.muted { "Updated " time datetime=(rfc3339(report.updated_at)) { (when(report.updated_at)) } }
                    }
                    @if !report.current_incidents.is_empty() {
                        section.panel.now aria-labelledby="current" {
                            h2 #current { "Current incidents" }
                            ul.incidents { @for i in &report.current_incidents { (incident(i)) } }
                        }
                    }
                    @if !report.active_maintenance.is_empty() || !report.upcoming_maintenance.is_empty() {
                        section.panel aria-labelledby="maintenance" {
                            h2 #maintenance { "Maintenance" }
                            ul.incidents {
                                @for m in &report.active_maintenance { (window(m, true)) }
                                @for m in &report.upcoming_maintenance { (window(m, false)) }
                            }
                        }
                    }
                    section.panel aria-labelledby="components" {
                        h2 #components { "Components" }
                        p.muted.legend {
                            "Daily uptime, last 90 days (30 on a narrow screen); "
                            "hover over or tab to a day for its figures."
                        }
                        @for section in &report.sections {
                            @if let Some(group) = &section.group { h3.group { (group) } }
                            @for c in &section.components { (component(c, report)) }
                        }
                    }
                    section.panel aria-labelledby="past" {
                        h2 #past { "Past incidents" }
                        @if report.past_incidents.is_empty() {
                            p.muted { "No incidents in the last 90 days." }
                        } @else {
                            ul.incidents { @for i in &report.past_incidents { (incident(i)) } }
                        }
                    }
                }
                footer.muted {
                    @if let Some(f) = &report.footer { p { (f) } }
                    p {
                        a href={ "/status/" (report.slug) "/feed.atom" } { "Atom feed" } " · "
                        a href={ "/status/" (report.slug) ".json" } { "JSON" }
                    }
                }
            }
        }
    }
}

fn component(c: &Component, report: &Report) -> Markup {
    let class = state_class(c.status);
    let skipped = c.days.len().saturating_sub(NARROW_DAYS);
    html! {
        article.component data-state=(class) {
            header {
                h4 { (c.name) }
                span.state.(class) { span.sym aria-hidden="true" { (symbol(class)) } " " (c.status.word()) }
            }
            ol.days aria-label={ (c.name) ": daily uptime, oldest first" } {
                @for (n, day) in c.days.iter().enumerate() {
                    li.(band(day.uptime)).old[n < skipped] tabindex="0" {
                        span.tip { (day_text(day, report)) }
                    }
                }
            }
            p.range.muted {
                span.from { span.wide { "90 days ago" } span.narrow { "30 days ago" } }
                span.figures {
                    "7 d " b { (percent(c.uptime.d7)) } " · 30 d " b { (percent(c.uptime.d30)) }
                    " · 90 d " b { (percent(c.uptime.d90)) }
                }
                span.to { "Today" }
            }
        }
    }
}

/// What a day's tip says: its date, uptime and incidents.
fn day_text(day: &Day, report: &Report) -> Markup {
    let incidents: Vec<&PublicIncident> = day
        .incidents
        .iter()
        .filter_map(|(open, n)| {
            if *open {
                report.current_incidents.get(*n)
            } else {
                report.past_incidents.get(*n)
            }
        })
        .collect();
    html! {
        b { (day.date) } ": "
        @match day.uptime {
            Some(_) => { (percent(day.uptime)) " up" }
            None => { "no data" }
        }
        @if incidents.is_empty() {
            ", no incidents"
        } @else {
            @for i in incidents {
                br;
                (word(i.status)) " " (when(i.started_at))
                @match i.ended_at {
                    Some(end) => { " to " (when(end)) " (" (duration(i.duration_s)) ")" }
                    None => { ", ongoing" }
                }
            }
        }
    }
}

fn word(state: State) -> &'static str {
    match state {
        State::Degraded => "Degraded",
        _ => "Down",
    }
}

fn incident(i: &PublicIncident) -> Markup {
    let class = state_class(i.status);
    html! {
        li data-state=(class) {
            b { (i.component) } " " span.state.(class) { (word(i.status)) }
            br;
            span.muted {
                time datetime=(rfc3339(i.started_at)) { (when(i.started_at)) }
                @match i.ended_at {
                    Some(end) => {
                        " to " time datetime=(rfc3339(end)) { (when(end)) }
                        " · " (duration(i.duration_s))
                    }
                    None => { " · ongoing for " (duration(i.duration_s)) }
                }
            }
        }
    }
}

fn window(m: &Maintenance, active: bool) -> Markup {
    html! {
        li data-state="maintenance" {
            b { (m.components.join(", ")) } " "
            span.state.maintenance { @if active { "In maintenance" } @else { "Scheduled maintenance" } }
            br;
            span.muted {
                @if let Some(start) = m.starts_at { (when(start)) " to " } @else { "until " }
                (when(m.ends_at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_day_never_rounds_to_a_perfect_one() {
        assert_eq!(percent(Some(99.999)), "99.99%");
        assert_eq!(percent(Some(100.0)), "100%");
        assert_eq!(percent(None), "no data");
        assert_eq!(band(Some(99.999)), "high");
        assert_eq!(band(Some(50.0)), "low");
        assert_eq!(band(None), "none");
    }
}
