//! The user's targets on the page: problems first, then groups with their counts, or
//! the rows a filter matches.

use super::*;

/// The user's targets. Problems first (down, degraded, in maintenance) with their full
/// rows; then one `<details>` per group (targets of no group first, then groups in the
/// order they first appear) whose summary counts its states. Up to [`FULL_ROWS_UP_TO`]
/// targets the groups are open with full rows; past it they are collapsed and list
/// names only. A filter (`?q=`, `?state=`, `?group=`) lists the matching full rows.
pub(super) fn targets(snap: &Snapshot, query: &Query, now: f64) -> Markup {
    let tally = Tally::of(&snap.targets);
    html! {
        section.panel.wide.targets #targets aria-labelledby="targets-title" {
            h2 #targets-title {
                "Targets " span.muted { "(" (tally.total) ": " (tally.counts()) ")" }
            }
            @if !snap.redis_connected {
                p.muted { "The store is unreachable: the targets' states are unknown." }
            }
            @if query.filters() {
                (filtered(snap, query, now))
            } @else {
                (problems(snap, now))
                (groups(snap, now))
            }
        }
    }
}

/// The targets a filter selects, with their full rows.
fn filtered(snap: &Snapshot, query: &Query, now: f64) -> Markup {
    let selected: Vec<&TargetRow> = snap.targets.iter().filter(|r| query.selects(r)).collect();
    html! {
        p #matches {
            (selected.len()) " of " (snap.targets.len()) " targets match"
            @if !query.group.is_empty() { " in group " strong { (query.group) } }
            @if selected.len() > ROWS_SHOWN { "; the first " (ROWS_SHOWN) " are listed" }
            " · " a href="/" { "show all" }
        }
        @if !selected.is_empty() {
            (target_table("filtered", selected.into_iter().take(ROWS_SHOWN), now))
        }
    }
}

/// Down, degraded and in-maintenance targets, in that order, with their full rows.
fn problems(snap: &Snapshot, now: f64) -> Markup {
    let mut problems: Vec<&TargetRow> = snap
        .targets
        .iter()
        .filter(|r| summary::is_problem(r))
        .collect();
    let rank = |r: &TargetRow| match summary::word(r) {
        "down" => 0,
        "degraded" => 1,
        _ => 2,
    };
    problems.sort_by_key(|r| rank(r));
    html! {
        h3 #problems-title { "Problems " span.muted { "(" (problems.len()) ")" } }
        @if problems.is_empty() {
            p.muted #no-problems { "No target is down, degraded or in maintenance." }
        } @else {
            (target_table("problems", problems.iter().copied().take(ROWS_SHOWN), now))
            @if problems.len() > ROWS_SHOWN {
                p { a href="/?state=problems" { "All " (problems.len()) " problems" } }
            }
        }
    }
}

/// One `<details>` per group, summarised by its counts.
fn groups(snap: &Snapshot, now: f64) -> Markup {
    let mut groups: Vec<(Option<&str>, Vec<&TargetRow>)> = Vec::new();
    for row in &snap.targets {
        let group = row.group.as_deref();
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((group, vec![row])),
        }
    }
    groups.sort_by_key(|(group, _)| group.is_some());
    let full = snap.targets.len() <= FULL_ROWS_UP_TO;
    html! {
        h3 #groups-title { "By group" }
        div #groups {
            @for (group, rows) in &groups {
                @let tally = Tally::of(rows.iter().copied());
                @let name = group.unwrap_or("no group");
                details.group data-group=(name) data-state=(state_name(tally.worst())) open[full] {
                    summary { span.name { (name) } ": " span.counts { (tally.counts()) } }
                    @if full {
                        (target_table(name, rows.iter().copied(), now))
                    } @else {
                        ul.members {
                            @for row in rows {
                                @let word = summary::word(row);
                                @if word == "healthy" {
                                    li { (row.name) }
                                } @else {
                                    li class=(word) { (row.name) }
                                }
                            }
                        }
                        @if let Some(group) = group {
                            a.rows href={ "/?group=" (url::form_urlencoded::byte_serialize(group.as_bytes()).collect::<String>()) } {
                                "Full rows of " (group)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A table of full target rows.
fn target_table<'a>(label: &str, rows: impl Iterator<Item = &'a TargetRow>, now: f64) -> Markup {
    html! {
        div.scroll {
            table.target-rows data-rows=(label) {
                thead {
                    tr {
                        th { "Target" } th { "State" } th.num { "Response" }
                        th.num { "Uptime 1 h" } th.num { "Uptime 24 h" } th { "Response time" }
                        th { "Last change" }
                    }
                }
                tbody { @for row in rows { (target_row(row, now)) } }
            }
        }
    }
}

/// A target's verdict, when one is known.
fn target_state(row: &TargetRow) -> Option<ServiceState> {
    row.report.as_ref()?.state.as_ref()?.status
}

/// A target's objective in one line: what is left of its budget, and the burn rates
/// over 1 h and 6 h (1x spends the budget exactly over the window).
fn slo_note(slo: &crate::targets::slo::SloReport) -> Markup {
    let rate = |b: Option<f64>| b.map_or("no data".to_owned(), |b| format!("{b:.1}x"));
    let left = slo
        .budget_left
        .map_or("no data".to_owned(), |b| format!("{b:.0} %"));
    html! {
        span.muted.slo title={ "SLO " (slo.slo.objective) " % over " (slo.slo.window_days) " d" } {
            "budget " (left) " left, burn 1 h " (rate(slo.burn_1h)) ", 6 h " (rate(slo.burn_6h))
            @if slo.fast_burn() { " " span.error { "burning fast" } }
        }
    }
}

/// What each location of a target probed from several found: its own verdict (or
/// "no data" when its latest result is older than two intervals), response time,
/// uptime over the hour and its sparkline.
fn locations(row: &TargetRow, now: f64) -> Markup {
    let located = row.located(now);
    if located.is_empty() {
        return html! {};
    }
    let history = |name: &str| {
        row.report
            .as_ref()
            .and_then(|r| r.locations.iter().find(|l| l.name == name))
    };
    html! {
        ul.locations {
            @for (name, result, word) in &located {
                @let own = history(name);
                @let points: Vec<Option<f64>> = own
                    .map(|r| r.samples.iter().rev().map(|s| s.response_time_ms).collect())
                    .unwrap_or_default();
                li data-location=(name) data-state=(word) {
                    span.name { (name) } ": "
                    span class={ "badge " (word.replace(' ', "-")) } { (word) }
                    " " span.muted {
                        (millis(result.and_then(|r| r.response_time_ms)))
                        @if let Some(up) = own.and_then(|r| r.uptime_1h) {
                            " · " (format!("{up:.1} %")) " 1 h"
                        }
                    }
                    @if points.iter().flatten().count() > 1 { " " (sparkline(&points)) }
                }
            }
        }
    }
}

fn target_row(row: &TargetRow, now: f64) -> Markup {
    let report = row.report.as_ref();
    let state = report.and_then(|r| r.state.as_ref());
    let percent = |p: Option<f64>| match (report, p) {
        (None, _) => "unknown".to_owned(),
        (Some(_), Some(p)) => format!("{p:.1} %"),
        (Some(_), None) => "no data".to_owned(),
    };
    let points: Vec<Option<f64>> = report
        .map(|r| r.samples.iter().rev().map(|s| s.response_time_ms).collect())
        .unwrap_or_default();
    let verdict = match (report, target_state(row)) {
        (None, _) => "unknown",
        (Some(_), None) => "pending",
        (Some(_), Some(s)) => state_name(s),
    };
    let word = if row.maintenance.is_some() {
        "maintenance"
    } else {
        verdict
    };
    html! {
        tr data-target=(row.name) data-state=(word) {
            td {
                strong { (row.name) } br;
                span.muted.addr { (row.url) }
            }
            td {
                @match (&row.maintenance, target_state(row)) {
                    (Some(w), _) => {
                        span.badge.maintenance title=(w.name) {
                            span aria-hidden="true" { "‖" } " maintenance"
                        }
                        " " span.muted.window {
                            (w.name) " until " time datetime=(clock(w.end)) { (clock(w.end)) " UTC" }
                        }
                        br; span.muted.verdict { "probes: " (verdict) }
                    }
                    (None, Some(s)) => { (badge(s)) }
                    (None, None) => { span.badge.unknown { (word) } }
                }
                @if let Some(since) = state.and_then(|s| s.since).filter(|_| row.maintenance.is_none()) {
                    " " span.muted { "for " (ago(now - since)) }
                }
                (locations(row, now))
            }
            td.num { (millis(state.and_then(|s| s.last.as_ref()).and_then(|l| l.response_time_ms))) }
            td.num { (percent(report.and_then(|r| r.uptime_1h))) }
            td.num {
                (percent(report.and_then(|r| r.uptime_24h)))
                @if let Some(slo) = &row.slo { br; (slo_note(slo)) }
            }
            td.trend {
                @if points.iter().flatten().count() > 1 { (sparkline(&points)) }
            }
            td {
                @match state.and_then(|s| s.change.as_ref()) {
                    Some(c) => {
                        (c.from.map_or("unknown", state_name)) " → " (state_name(c.to))
                        " " span.muted { (ago(now - c.at)) " ago" }
                    }
                    None => { span.muted { "none" } }
                }
                @if let Some(error) = state.and_then(|s| s.last.as_ref()).and_then(|l| l.error.as_ref()) {
                    br; span.error.reason { (error) }
                }
                @if let Some(error) = report.and_then(|r| r.error.as_ref()) {
                    br; span.error.reason { (error) }
                }
            }
        }
    }
}
