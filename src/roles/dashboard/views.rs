//! The page, as maud markup: plain functions, one [`layout`], small components.
//!
//! [`page`] is the whole document; [`live`] is the part the script fetches again every
//! refresh period (`/partials/status`) and swaps in. Every value from the network or the
//! store goes through maud's `(...)`, which escapes it. States are shown by a word and a
//! symbol, never by colour alone.

use std::fmt::Write;
use std::time::Duration;

use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::filter::{Query, STATES};
use super::replicas::{Count, Replica};
use super::snapshot::{History, Snapshot, TargetRow};
use super::summary::{self, Tally};
use super::system::state_name;
use crate::config::Environment;
use crate::probe::Probe;
use crate::service::Service;
use crate::service::ServiceState;
use crate::store::{Incident, QueueStats};

pub mod status;
mod targets;
use targets::targets;

/// Deliveries of notifications the page lists.
const DELIVERIES_SHOWN: usize = 20;
/// Replicas per page of the replica table.
pub const REPLICAS_PER_PAGE: usize = 20;
/// Up to this many targets every group is open with full rows; past it groups are
/// collapsed and list their targets by name only, so a page of 1,000 targets stays
/// small (the full rows of a group are a link away: `?group=`).
pub const FULL_ROWS_UP_TO: usize = 60;
/// Full rows listed at most for problems, and for a filter.
pub const ROWS_SHOWN: usize = 100;

/// What one rendering needs.
pub struct View<'a> {
    /// The newest snapshot.
    pub snapshot: &'a Snapshot,
    /// Unix seconds now, for ages.
    pub now: f64,
    /// Deployment environment.
    pub environment: Environment,
    /// How often the page refreshes.
    pub refresh: Duration,
    /// What the page is asked to show.
    pub query: &'a Query,
}

/// What every document's head starts with: titled `title`, styled by `stylesheet`,
/// in both colour schemes, with no favicon to fetch.
pub fn head_start(title: &str, stylesheet: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        title { (title) }
        link rel="icon" href="data:,";
        link rel="stylesheet" href=(stylesheet);
    }
}

/// The document around `body`: the same head on every page.
pub fn layout(title: &str, refresh: Duration, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head_start(title, &assets::CSS.path))
                script src=(assets::JS.path) defer {}
                // Without JavaScript the whole page reloads instead.
                noscript { meta http-equiv="refresh" content=(refresh.as_secs().max(1)); }
            }
            body { (body) }
        }
    }
}

/// The whole dashboard page.
pub fn page(view: &View) -> Markup {
    let millis = view.refresh.as_millis();
    layout(
        "svc dashboard",
        view.refresh,
        html! {
            header.top {
                h1 { "svc " span.muted { "system health" } }
                p #conn .conn role="status" hidden { "Connection lost, retrying…" }
                @if !view.snapshot.targets.is_empty() { (filter_form(view.query)) }
            }
            main #live data-src={ "/partials/status" (view.query) } data-refresh=(millis) {
                (live(view))
            }
            footer.muted {
                "Refreshes every " (view.refresh.as_secs_f64()) " s · "
                // Not links: behind the Ingress every /api path goes to the gateway.
                "JSON on the dashboard service itself: "
                code { "/api/health-check" } ", " code { "/api/system-info" } ", "
                code { "/api/incidents" } ", " code { "/api/notifications" }
            }
        },
    )
}

/// The live part of the page: system state, service cards, replicas, figures.
pub fn live(view: &View) -> Markup {
    let snap = view.snapshot;
    let stale = snap.history_stale(view.now);
    html! {
        @let overall = summary::overall(&snap.system, &Tally::of(&snap.targets));
        section.system data-state=(state_name(overall)) {
            h2 {
                (badge(overall)) " "
                span #headline { (summary::headline(&snap.system, &snap.targets, snap.redis_connected)) }
            }
            p #reason { (snap.system.reason) }
        }
        (fault_banner(snap))
        @if !snap.redis_connected {
            p.notice #stale role="note" {
                "History, figures and incidents are unknown: the store is unreachable. "
                "Replicas are those it last listed. What the dashboard sees meanwhile is "
                "kept and recorded once the store is back."
            }
        } @else if !snap.errors.is_empty() {
            div.notice #store-errors role="note" {
                p { "Some figures cannot be read from the store; the rest are current:" }
                ul { @for e in &snap.errors { li { code { (e) } } } }
            }
        } @else if stale {
            p.notice #stale role="note" {
                "History is stale: "
                @match snap.newest_sample() {
                    Some(t) => { "the newest health sample is " (ago(view.now - t)) " old." }
                    None => { "no health samples recorded yet." }
                }
                " Is the worker running? Response-time charts are hidden until it records again."
            }
        }
        section.cards aria-labelledby="services-title" {
            h2 #services-title .sr-only { "Services" }
            @for (i, probe) in snap.services.iter().enumerate() {
                // The embedded store is part of this process: no card of its own.
                @if probe.name != Service::Redis || snap.store_backend == "redis" {
                    (card(probe, snap.counts.get(i).copied().flatten(), snap.history.get(i), stale, view))
                }
            }
        }
        @if !snap.targets.is_empty() {
            (targets(snap, view.query, view.now))
        }
        div.panels {
            (replicas(snap, view.query, view.now))
            (incidents(snap, view.now))
            @if !snap.targets.is_empty() {
                (notifications(snap))
            }
            (figures(view, stale))
        }
        p.muted.checked {
            "Checked " (ago(view.now - snap.taken_at)) " ago, at "
            time datetime=(clock(snap.taken_at)) { (clock(snap.taken_at)) " UTC" }
        }
    }
}

fn badge(state: ServiceState) -> Markup {
    let symbol = match state {
        ServiceState::Healthy => "✔",
        ServiceState::Degraded => "▲",
        ServiceState::Down => "✖",
    };
    html! {
        span class={ "badge " (state_name(state)) } {
            span aria-hidden="true" { (symbol) } " " (state_name(state))
        }
    }
}

fn card(
    probe: &Probe,
    count: Option<Count>,
    history: Option<&History>,
    stale: bool,
    view: &View,
) -> Markup {
    // Uptime is the dashboard's own record: current whether or not the worker is.
    let uptime = |h: fn(&History) -> Option<f64>| match history.and_then(h) {
        Some(p) => format!("{p:.1} %"),
        None if !view.snapshot.redis_connected => "unknown".into(),
        None => "no data".into(),
    };
    let fresh = history.filter(|_| !stale);
    html! {
        article.card data-service=(probe.name.as_str()) data-state=(state_name(probe.status)) {
            header {
                h3 { (probe.name.title()) }
                (badge(probe.status))
            }
            dl.facts {
                @if let Some(c) = count {
                    div { dt { "Ready" } dd.ready { (c.ready) " of " (c.total) } }
                }
                div { dt { "Response" } dd.response { (millis(probe.response_time_ms)) } }
                div { dt { "Uptime 1 h" } dd.uptime { (uptime(|h| h.uptime_1h)) } }
                div { dt { "Uptime 24 h" } dd { (uptime(|h| h.uptime_24h)) } }
            }
            @if let Some(error) = &probe.error {
                p.error { (error) }
            }
            @if probe.name == Service::Dashboard {
                p.muted.doing #doing { (doing(view)) }
            }
            @match fresh {
                Some(h) if h.response_ms.iter().flatten().count() > 1 => {
                    (sparkline(&h.response_ms))
                }
                // Stale: the notice above says so already.
                _ if stale => {}
                _ => { p.muted.spark-note { "No response-time history yet" } }
            }
        }
    }
}

/// What this dashboard is doing, in one sentence.
fn doing(view: &View) -> String {
    let snap = view.snapshot;
    let probed = snap.probes_sent;
    let mut text = format!(
        "Serving this page; sending {probed} readiness probe{} every {} s",
        if probed == 1 { "" } else { "s" },
        view.refresh.as_secs_f64()
    );
    let r = snap.recorder;
    if !snap.redis_connected {
        text.push_str(&format!(
            "; keeping {} minute{} of samples and {} state change{} until the store is back",
            r.buffered_minutes,
            if r.buffered_minutes == 1 { "" } else { "s" },
            r.buffered_changes,
            if r.buffered_changes == 1 { "" } else { "s" },
        ));
    } else {
        match r.writer {
            Some(true) => text.push_str("; recording uptime and incidents"),
            Some(false) => text.push_str("; another dashboard records this minute"),
            None => {}
        }
    }
    text.push('.');
    text
}

/// The filter box: a plain GET form, so it works without the script; the script
/// refreshes the live part as it changes.
fn filter_form(query: &Query) -> Markup {
    html! {
        form #filter .filter method="get" action="/" role="search" {
            label for="filter-q" .sr-only { "Target name" }
            input #filter-q type="search" name="q" value=(query.q) placeholder="Filter targets"
                autocomplete="off";
            label for="filter-state" .sr-only { "State" }
            select #filter-state name="state" {
                @for (value, label) in STATES {
                    option value=(value) selected[query.state == value] { (label) }
                }
            }
            @if !query.group.is_empty() {
                input type="hidden" name="group" value=(query.group);
            }
            button type="submit" { "Filter" }
        }
    }
}

fn replicas(snap: &Snapshot, query: &Query, now: f64) -> Markup {
    let pages = snap.replicas.len().div_ceil(REPLICAS_PER_PAGE).max(1);
    let page = query.replicas.unwrap_or(1).clamp(1, pages);
    // Those that are not well first, so none hides on a later page; the rest by role.
    let mut ordered: Vec<&Replica> = snap.replicas.iter().collect();
    ordered.sort_by_key(|r| !matches!(r.state_word(), "lost" | "down" | "not ready"));
    let shown = ordered
        .into_iter()
        .skip((page - 1) * REPLICAS_PER_PAGE)
        .take(REPLICAS_PER_PAGE);
    html! {
        section.panel.wide aria-labelledby="replicas-title" {
            h2 #replicas-title {
                "Replicas "
                span.muted {
                    "(" (snap.replicas.len()) ")"
                    @if !snap.replicas_current { " as last listed" }
                }
            }
            @if !snap.replicas_current {
                p.muted {
                    @if snap.redis_connected {
                        "The list of instances cannot be read (see above): these are the last known."
                    } @else {
                        "The store is unreachable: these are the replicas it last listed."
                    }
                }
            }
            @if snap.replicas.is_empty() {
                p.muted { "No replicas known: no heartbeats in the store." }
            } @else {
                div.scroll {
                    table #replicas {
                        thead {
                            tr {
                                th { "Role" } th { "State" } th.num { "Response" }
                                th { "Address" } th { "Location" } th { "Instance" } th { "Version" }
                                th { "Age" }
                            }
                        }
                        tbody {
                            @for r in shown {
                                (replica_row(r, now))
                            }
                        }
                    }
                }
                @if pages > 1 {
                    nav.pager #replica-pages aria-label="Replica pages" {
                        @if page > 1 {
                            a rel="prev" href={ "/" (query.with_replicas(page - 1)) } { "← previous" }
                        }
                        span { "page " (page) " of " (pages) }
                        @if page < pages {
                            a rel="next" href={ "/" (query.with_replicas(page + 1)) } { "next →" }
                        }
                    }
                }
            }
        }
    }
}

fn replica_row(r: &Replica, now: f64) -> Markup {
    let word = r.state_word();
    let class = match word {
        "ready" => "healthy",
        "lost" | "down" => "down",
        _ => "degraded",
    };
    html! {
        tr data-state=(word) {
            td { (r.instance.role.as_str()) }
            td {
                span class={ "badge " (class) } { (word) }
                @if let Some(since) = r.lost_since {
                    " " span.muted { (ago(now - since)) " ago" }
                }
            }
            td.num { (millis(r.probe.as_ref().and_then(|p| p.response_time_ms))) }
            td.addr { (r.instance.address.as_deref().unwrap_or("none")) }
            td.location { (location(&r.instance)) }
            td.id { (r.instance.id) }
            td { (r.instance.version) }
            td { (ago(now - r.instance.started_at)) }
        }
    }
}

/// Where a replica probes from: a worker's location, a dash for the other roles.
fn location(instance: &crate::store::Instance) -> &str {
    match (&instance.location, instance.role) {
        (Some(at), _) => at,
        (None, crate::service::Role::Worker) => crate::targets::locations::DEFAULT,
        (None, _) => "\u{2013}",
    }
}

fn incidents(snap: &Snapshot, now: f64) -> Markup {
    html! {
        section.panel aria-labelledby="incidents-title" {
            h2 #incidents-title { "Incidents " span.muted { "(newest first)" } }
            @match &snap.incidents {
                None => { p.muted { "Unknown: the store cannot be read." } }
                Some(list) if list.is_empty() => { p.muted { "No incidents recorded." } }
                Some(list) => {
                    ol.timeline #incidents {
                        @for i in list.iter().take(20) { (incident(i, now)) }
                    }
                }
            }
        }
    }
}

/// Did the page go out? The newest deliveries of notifications, a failed one with its
/// reason.
fn notifications(snap: &Snapshot) -> Markup {
    html! {
        section.panel aria-labelledby="notifications-title" {
            h2 #notifications-title { "Notifications " span.muted { "(newest first)" } }
            @match &snap.deliveries {
                None => { p.muted { "Unknown: the store cannot be read." } }
                Some(list) if list.is_empty() => { p.muted { "None sent yet." } }
                Some(list) => {
                    ol.timeline #notifications {
                        @for d in list.iter().take(DELIVERIES_SHOWN) {
                            li data-state=(if d.result == "sent" { "healthy" } else { "down" }) {
                                time datetime=(clock(d.at)) { (clock(d.at)) }
                                " " strong { (d.target) } " " (d.state) " → " (d.channel) ": "
                                @if d.result == "sent" { "sent" } @else { strong { "failed" } }
                                @if let Some(error) = &d.error { br; span.muted.reason { (error) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn incident(i: &Incident, now: f64) -> Markup {
    html! {
        li data-state=(if i.maintenance.is_some() { "maintenance" } else { state_name(i.to) })
            .open[i.ended_at.is_none() && i.maintenance.is_none()] {
            time datetime=(clock(i.started_at)) { (clock(i.started_at)) }
            " " strong { (i.service.title()) } " "
            (i.from.map_or("unknown", state_name)) " → " (badge(i.to)) " "
            @match i.ended_at {
                Some(_) => span.muted { "for " (duration(i.duration_s(now))) },
                None => strong { "ongoing, " (duration(i.duration_s(now))) },
            }
            @if let Some(window) = &i.maintenance {
                " " span.badge.maintenance { "in maintenance: " (window) }
            }
            @if let Some(reason) = &i.reason { br; span.muted.reason { (reason) } }
        }
    }
}

/// Seconds as "42 s", "3 min 5 s", "2 h 10 min".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

fn figures(view: &View, stale: bool) -> Markup {
    let snap = view.snapshot;
    let f = &snap.figures;
    html! {
        section.panel aria-labelledby="system-title" {
            h2 #system-title { "System information" }
            dl.facts {
                div { dt { "Environment" } dd { (view.environment.as_str()) } }
                div {
                    @if snap.store_backend == "redis" {
                        dt { "Redis" }
                        dd { @if snap.redis_connected { "connected" } @else { "not connected" } }
                    } @else {
                        dt { "Store" }
                        dd { "embedded (in this process)" }
                    }
                }
                div { dt { "Gateway requests" } dd #total-requests { (count(f.total_requests)) } }
                div {
                    dt { "Requests / min (last 60 s)" }
                    dd #request-rate {
                        @match f.request_rate {
                            Some(n) => { (format!("{n:.0}")) }
                            None if !snap.redis_connected => { "unknown" }
                            None => { "measuring…" }
                        }
                    }
                }
                div {
                    dt { "Last task" }
                    dd {
                        @match (&f.last_task, f.last_task_at) {
                            (kind, Some(at)) => {
                                (kind.as_deref().unwrap_or("task")) ", " (ago(view.now - at)) " ago"
                            }
                            _ if !snap.redis_connected => { "unknown" }
                            _ => { "none yet" }
                        }
                    }
                }
                @let queue = |n: fn(&QueueStats) -> u64| f.queue.as_ref().map(|q| n(q) as i64);
                div { dt { "Queued jobs" } dd #queue-depth { (count(queue(|q| q.depth))) } }
                div { dt { "Pending" } dd { (count(queue(|q| q.pending))) } }
                div { dt { "Dead-lettered" } dd { (count(queue(|q| q.dead_letters))) } }
            }
            @if !stale && f.requests_per_minute.iter().any(|n| *n > 0) {
                (bars(&f.requests_per_minute))
                p.muted.caption { "Gateway requests per minute, last hour" }
            }
            div.scroll {
                table #tasks {
                    thead { tr { th { "Task" } th.num { "Total" } th.num { "Last min" } } }
                    tbody {
                        @for (task, total, last) in &f.tasks {
                            tr { td { (task) } td.num { (count(*total)) } td.num { (last) } }
                        }
                    }
                }
            }
        }
    }
}

/// Response times as an inline SVG line; an unanswered probe breaks the line.
/// Coordinates are whole numbers on a 1000 x 300 grid: as sharp as any screen shows a
/// chart this small, and integers format several times faster than floats, which is most
/// of the cost of a render.
fn sparkline(points: &[Option<f64>]) -> Markup {
    let answered = || points.iter().flatten().copied();
    let max = answered().fold(1.0, f64::max);
    let min = answered().fold(f64::INFINITY, f64::min);
    let last = points.len().saturating_sub(1).max(1);
    let mut path = String::with_capacity(points.len() * 10);
    let mut drawing = false;
    for (i, point) in points.iter().enumerate() {
        match point {
            Some(ms) => {
                let pen = if drawing { 'L' } else { 'M' };
                let x = i * 1000 / last;
                let y = 290 - (ms / max * 270.0).round() as i64;
                let _ = write!(path, "{pen}{x} {y}");
                drawing = true;
            }
            None => drawing = false,
        }
    }
    let label = format!(
        "Response time of the last {} probes: {} to {}",
        points.len(),
        millis(Some(min)),
        millis(Some(max))
    );
    html! {
        svg.spark viewBox="0 0 1000 300" preserveAspectRatio="none" role="img" aria-label=(label) {
            path d=(path) vector-effect="non-scaling-stroke" {}
        }
    }
}

/// Requests per minute as an inline SVG bar chart, on a 600 x 200 grid.
fn bars(per_minute: &[i64]) -> Markup {
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let label = format!("Gateway requests per minute over the last hour, at most {max}");
    html! {
        svg.bars viewBox="0 0 600 200" preserveAspectRatio="none" role="img" aria-label=(label) {
            @for (i, n) in per_minute.iter().enumerate() {
                @if *n > 0 {
                    @let h = (n * 200 / max).max(1);
                    rect x=(i * 10) y=(200 - h) width="8" height=(h) {}
                }
            }
        }
    }
}

fn millis(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.0} ms"),
        None => "—".into(),
    }
}

fn count(value: Option<i64>) -> String {
    value.map_or_else(|| "unknown".into(), |n| n.to_string())
}

/// A duration in seconds as "12 s", "3 min", "5 h", "2 d".
pub fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// Unix seconds as HH:MM:SS (UTC).
fn clock(unix: f64) -> String {
    let s = unix.max(0.0) as u64 % 86400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

// Fault injection ---------------------------------------------------------------------

/// A banner while any instance reports an injected fault (its heartbeat carries them),
/// so nobody mistakes a demo for an incident; nothing otherwise.
fn fault_banner(snap: &Snapshot) -> Markup {
    let faulty: Vec<_> = snap
        .instances
        .iter()
        .flatten()
        .filter(|i| !i.faults.is_empty())
        .collect();
    html! {
        @if !faulty.is_empty() {
            div.notice #faults role="alert" {
                p { strong { "Fault injection active" } ": what you see below is a demo, not an incident." }
                ul {
                    @for i in faulty {
                        li { (i.role.as_str()) " " code { (i.id) } ": " (i.faults.join("; ")) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_clock() {
        assert_eq!(ago(-3.0), "0 s");
        assert_eq!(ago(59.9), "59 s");
        assert_eq!(ago(61.0), "1 min");
        assert_eq!(ago(7300.0), "2 h");
        assert_eq!(clock(3661.5), "01:01:01");
        assert_eq!(duration(21.4), "21 s");
        assert_eq!(duration(185.0), "3 min 5 s");
    }

    #[test]
    fn sparkline_breaks_at_unanswered_probes() {
        let svg = sparkline(&[Some(1.0), Some(2.0), None, Some(2.0)]).into_string();
        assert!(svg.contains(r#"d="M0 155L333 20M1000 20""#), "{svg}");
    }
}
