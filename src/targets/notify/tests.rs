//! Each channel's wire format, routing and the `notify` section's rules.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::service::ServiceState;
use crate::targets::Targets;
use crate::targets::value::Credentials;

const TEN: Duration = Duration::from_secs(10);

fn env(name: &str) -> Option<String> {
    match name {
        "PD_KEY" => Some("pd-r0uting".into()),
        "GENIE" => Some("g3nie".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Targets, String> {
    Targets::parse_with(text, TEN, &env, Credentials::Required)
}

fn event(state: &str, previous: &str) -> Event {
    Event {
        id: "web@1.000".into(),
        target: "web".into(),
        state: state.into(),
        previous: previous.into(),
        since: 1_700_000_000.0,
        reason: (state != "up").then(|| "HTTP 503".into()),
        url: "https://***@web.internal/health".into(),
        duration_s: (state == "up").then_some(90.0),
        group: Some("shop".into()),
        reminder: false,
        down_for_s: None,
        maintenance: None,
        partial: false,
        locations: Default::default(),
    }
}

const FILE: &str = r#"
notify:
  - {name: hook, url: "http://127.0.0.1:9/hook"}
  - {kind: slack, url: "http://127.0.0.1:9/slack"}
  - {kind: discord, url: "http://127.0.0.1:9/discord"}
  - {kind: teams, url: "http://127.0.0.1:9/teams"}
  - {name: oncall, kind: pagerduty, routing_key: "${PD_KEY}", on: [down, up]}
  - {kind: opsgenie, api_key: "${GENIE}", url: "http://127.0.0.1:9/v2/alerts"}
  - {kind: ntfy, url: "http://127.0.0.1:9/svc-alerts", send_on_resolved: false}
"#;

fn channel(name: &str) -> Channel {
    let parsed = parse(FILE).expect("valid");
    parsed
        .notify
        .into_iter()
        .find(|c| c.name == name)
        .expect("channel")
}

/// The HTTP request of `channel` (of any kind but email) for `event`.
fn render(channel: &Channel, event: &Event) -> Outgoing {
    channel.request(event).expect("an HTTP kind")
}

fn json_of(outgoing: &Outgoing) -> Value {
    serde_json::from_slice(&outgoing.body).expect("json body")
}

fn header<'a>(outgoing: &'a Outgoing, name: &str) -> Option<&'a str> {
    outgoing
        .headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
}

#[test]
fn every_kind_has_its_default_name_and_url() {
    let parsed = parse(FILE).expect("valid");
    let names: Vec<&str> = parsed.notify.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hook", "slack", "discord", "teams", "oncall", "opsgenie", "ntfy"
        ]
    );
    assert_eq!(channel("oncall").url.as_str(), pagerduty::URL);
    let debug = format!("{:?}", parsed.notify);
    assert!(
        !debug.contains("pd-r0uting") && !debug.contains("g3nie"),
        "{debug}"
    );
    assert!(!debug.contains("/hook"), "{debug}");
}

#[test]
fn the_webhook_body_is_the_event() {
    let body = json_of(&render(&channel("hook"), &event("down", "up")));
    assert_eq!(
        body,
        json!({"id": "web@1.000", "target": "web", "state": "down", "previous": "up",
               "since": 1_700_000_000.0, "reason": "HTTP 503",
               "url": "https://***@web.internal/health", "group": "shop"})
    );
    let up = json_of(&render(&channel("hook"), &event("up", "down")));
    assert_eq!(up["duration_s"], 90.0);
}

#[test]
fn slack_discord_and_teams_say_it_in_their_formats() {
    let slack = json_of(&render(&channel("slack"), &event("down", "up")));
    assert_eq!(slack, json!({"text": "*web* is down (was up): HTTP 503"}));

    let discord = json_of(&render(&channel("discord"), &event("down", "up")));
    let embed = &discord["embeds"][0];
    assert_eq!(embed["color"], 0xD32F2F);
    assert_eq!(embed["title"], "web is down");
    assert_eq!(embed["timestamp"], "2023-11-14T22:13:20Z");
    let green = json_of(&render(&channel("discord"), &event("up", "down")));
    assert_eq!(green["embeds"][0]["color"], 0x2E7D32);

    let teams = json_of(&render(&channel("teams"), &event("degraded", "up")));
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    assert_eq!(attachment["content"]["version"], "1.4");
    assert_eq!(attachment["content"]["body"][0]["color"], "Warning");
}

#[test]
fn pagerduty_triggers_and_resolves_one_incident_per_target() {
    let oncall = channel("oncall");
    let trigger = json_of(&render(&oncall, &event("down", "up")));
    assert_eq!(trigger["routing_key"], "pd-r0uting");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "web");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(
        trigger["payload"]["source"],
        "https://***@web.internal/health"
    );
    assert!(trigger["payload"]["summary"].is_string());
    let resolve = json_of(&render(&oncall, &event("up", "down")));
    assert_eq!(
        resolve,
        json!({"routing_key": "pd-r0uting", "event_action": "resolve", "dedup_key": "web"})
    );
    assert!(!oncall.accepts(&event("degraded", "up")), "on: [down, up]");
}

#[test]
fn opsgenie_creates_by_alias_and_closes_it() {
    let genie = channel("opsgenie");
    let create = render(&genie, &event("down", "up"));
    assert_eq!(create.url.as_str(), "http://127.0.0.1:9/v2/alerts");
    assert_eq!(header(&create, "authorization"), Some("GenieKey g3nie"));
    let body = json_of(&create);
    assert_eq!(body["alias"], "web");
    assert_eq!(body["priority"], "P1");
    let close = render(&genie, &event("up", "down"));
    assert_eq!(
        close.url.as_str(),
        "http://127.0.0.1:9/v2/alerts/web/close?identifierType=alias"
    );
    assert!(format!("{close:?}").contains("Sensitive"), "{close:?}");
}

#[test]
fn ntfy_posts_text_with_a_priority_by_state() {
    let ntfy = channel("ntfy");
    let down = render(&ntfy, &event("down", "up"));
    assert_eq!(down.content_type, "text/plain");
    assert_eq!(header(&down, "x-priority"), Some("5"));
    assert_eq!(header(&down, "x-title"), Some("web is down"));
    assert_eq!(
        String::from_utf8_lossy(&down.body),
        "web is down (was up): HTTP 503"
    );
    assert!(
        !ntfy.accepts(&event("up", "down")),
        "send_on_resolved: false"
    );
    assert!(
        ntfy.accepts(&event("up", "unknown")),
        "a first verdict resolves nothing"
    );
}

#[test]
fn targets_and_groups_name_their_channels() {
    let text = format!(
        "{FILE}groups:\n  shop: {{notify: [slack]}}\ntargets:\n  \
         - {{name: a, url: 'http://x', notify: [oncall, hook]}}\n  \
         - {{name: b, url: 'http://x', group: shop}}\n  \
         - {{name: c, url: 'http://x', group: shop, notify: [ntfy]}}\n  \
         - {{name: d, url: 'http://x'}}\n"
    );
    let parsed = parse(&text).expect("valid");
    let routed = |name: &str| -> Vec<String> {
        let target = parsed.get(name).expect("target");
        route(target, &parsed.groups, &parsed.notify)
            .into_iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(routed("a"), ["hook", "oncall"]);
    assert_eq!(routed("b"), ["slack"]);
    assert_eq!(routed("c"), ["ntfy"]);
    assert_eq!(routed("d").len(), 7);
}

#[test]
fn mistakes_in_channels_are_named_and_keys_never_quoted() {
    let cases = [
        ("notify: [{kind: pager}]", "pager"),
        ("notify: [{kind: pagerduty}]", "routing_key"),
        ("notify: [{kind: slack}]", "needs a url"),
        (
            "notify: [{kind: slack, url: 'http://x', routing_key: k3y}]",
            "takes no routing_key",
        ),
        (
            "notify: [{name: a, url: 'http://x'}, {name: a, url: 'http://y'}]",
            "twice",
        ),
        ("notify: [{url: 'http://x', on: [sideways]}]", "sideways"),
        (
            "notify: [{url: 'http://x'}]\ntargets: [{name: t, url: 'http://x', notify: [nope]}]",
            "nope",
        ),
        (
            "notify: [{url: 'http://x'}]\ngroups: {g: {notify: [nope]}}",
            "groups.g",
        ),
    ];
    for (text, needle) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.contains(needle), "{text}: {err}");
        assert!(!err.contains("k3y"), "{text}: {err}");
    }
}

#[test]
fn a_reminder_is_due_once_per_period_with_an_id_of_its_own() {
    let text = format!(
        "{FILE}targets:\n  - {{name: web, url: 'http://x', notify: [hook, slack], repeat: 10m}}\n"
    );
    let mut parsed = parse(&text).expect("valid");
    let slack = parsed
        .notify
        .iter_mut()
        .find(|c| c.name == "slack")
        .expect("slack");
    slack.repeat = Some(Duration::from_secs(3600));
    let web = parsed.get("web").expect("web");
    let change = crate::targets::state::Transition {
        id: "web@1000.000".into(),
        from: Some(ServiceState::Healthy),
        to: ServiceState::Down,
        at: 1000.0,
        previous_since: Some(0.0),
        reason: Some("HTTP 503".into()),
        maintenance: None,
        told_at: None,
        partial: false,
        locations: Default::default(),
    };
    let channels = route(web, &parsed.groups, &parsed.notify);
    let due = |now: f64| -> Vec<String> {
        reminders(web, &change, &channels, change.at, now)
            .into_iter()
            .map(|j| j.id)
            .collect()
    };
    assert!(
        due(1000.0 + 599.0).is_empty(),
        "not before the first period"
    );
    // The target's period wins over the channel's.
    assert_eq!(
        due(1000.0 + 600.0),
        [
            "notify-web@1000.000-r1-hook",
            "notify-web@1000.000-r1-slack"
        ]
    );
    assert_eq!(due(1000.0 + 1250.0)[0], "notify-web@1000.000-r2-hook");
    let job = reminders(web, &change, &channels, change.at, 1000.0 + 600.0).remove(0);
    let JobSpec::Notify { body, .. } = &job.spec else {
        panic!("not a notification: {job:?}");
    };
    assert_eq!(body["reminder"], true);
    assert_eq!(body["down_for_s"], 600.0);
    let event: Event = serde_json::from_value(body.clone()).expect("event");
    assert_eq!(event.headline(), "web is still down (for 10m): HTTP 503");
    // A period longer than a job record lives: offered only while the first offer's
    // record (its idempotency key) is surely still there.
    let days = |d: f64| 1000.0 + d * 86_400.0;
    let mut long = parsed.notify.clone();
    for c in &mut long {
        c.repeat = Some(Duration::from_secs(3 * 86_400));
    }
    let mut web = web.clone();
    web.repeat = None;
    let channels = route(&web, &parsed.groups, &long);
    let due = |now: f64| reminders(&web, &change, &channels, change.at, now).len();
    assert_eq!(due(days(3.0)), 2);
    assert_eq!(due(days(3.4)), 2);
    assert_eq!(due(days(3.6)), 0, "half a record's life into the period");
    assert_eq!(due(days(5.9)), 0);
    assert_eq!(due(days(6.0)), 2);
    assert!(
        parse("notify: [{url: 'http://x', repeat: 5s}]").is_err(),
        "under 10 s"
    );
}

const MAIL: &str = r#"
notify:
  - name: mail
    kind: email
    url: "smtp://svc:p%40ss-w0rd@127.0.0.1:2525?tls=required"
    from: "svc <svc@example.com>"
    to: [oncall@example.com, ops@example.com]
"#;

#[test]
fn an_email_channel_checks_its_addresses_and_hides_its_password() {
    let parsed = parse(MAIL).expect("valid");
    let mail = &parsed.notify[0];
    let settings = mail.mail.as_ref().expect("email settings");
    assert_eq!(settings.security, email::Security::Required);
    assert_eq!(settings.to.len(), 2);
    assert!(mail.request(&event("down", "up")).is_none(), "not HTTP");
    let shown = format!("{mail:?}");
    assert!(shown.contains("smtp://127.0.0.1:2525"), "{shown}");
    assert!(!shown.contains("w0rd"), "{shown}");

    let smtps = "notify: [{kind: email, url: 'smtps://u:w0rd@mx', from: a@b.c, to: [d@e.f]}]";
    let settings = parse(smtps).expect("valid").notify[0].mail.clone();
    assert_eq!(
        settings.map(|m| m.security),
        Some(email::Security::Implicit)
    );

    let cases = [
        ("kind: email, from: a@b.c, to: [d@e.f]", "needs a url"),
        (
            "kind: email, url: 'smtp://u:w0rd@mx', to: [d@e.f]",
            "needs from",
        ),
        (
            "kind: email, url: 'smtp://u:w0rd@mx', from: a@b.c",
            "needs to",
        ),
        (
            "kind: email, url: 'smtp://u:w0rd@mx', from: not-an-address, to: [d@e.f]",
            "from: \"not-an-address\" is not an email address",
        ),
        (
            "kind: email, url: 'smtp://u:w0rd@mx', from: a@b.c, to: [d@e.f, 'x@']",
            "to: \"x@\" is not an email address",
        ),
        (
            "kind: email, url: 'http://u:w0rd@mx', from: a@b.c, to: [d@e.f]",
            "smtp:// or smtps://",
        ),
        (
            "kind: email, url: 'smtp://u:w0rd@mx?tls=maybe', from: a@b.c, to: [d@e.f]",
            "tls=required",
        ),
        ("kind: slack, url: 'http://x', to: [d@e.f]", "takes no to"),
    ];
    for (entry, needle) in cases {
        let text = format!("notify: [{{{entry}}}]");
        let err = parse(&text).expect_err(&text);
        assert!(err.contains(needle), "{text}: {err}");
        assert!(!err.contains("w0rd"), "{text}: {err}");
    }
}

#[test]
fn an_email_has_both_parts_a_subject_and_one_message_id_per_job() {
    let parsed = parse(MAIL).expect("valid");
    let settings = parsed.notify[0].mail.clone().expect("email settings");
    let down = event("down", "up");
    let message = email::message(&settings, &down, "notify-web@1.000-mail").expect("message");
    let text = String::from_utf8_lossy(&message.formatted()).into_owned();
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(
        text.contains("text/plain") && text.contains("text/html"),
        "{text}"
    );
    assert!(
        text.contains("Subject: web is down (was up): HTTP 503"),
        "{text}"
    );
    assert!(
        text.contains("Message-ID: <notify-web.1.000-mail@svc>"),
        "{text}"
    );
    assert!(
        text.contains("To: oncall@example.com, ops@example.com"),
        "{text}"
    );
    assert!(
        text.contains("Target: web") && text.contains("State: down (was up)"),
        "{text}"
    );
    assert!(!text.contains("w0rd"), "{text}");

    let mut fixed = settings;
    fixed.subject = Some("[shop] alert".into());
    let again = email::message(&fixed, &down, "notify-web@1.000-mail").expect("message");
    let again = String::from_utf8_lossy(&again.formatted()).into_owned();
    assert!(again.contains("Subject: [shop] alert"), "{again}");
    assert!(
        again.contains("Message-ID: <notify-web.1.000-mail@svc>"),
        "{again}"
    );
}

#[test]
fn an_email_colours_a_burn_as_a_warning_not_as_a_recovery() {
    let settings = parse(MAIL).expect("valid").notify[0]
        .mail
        .clone()
        .expect("email settings");
    let html = |state: &str| {
        let message = email::message(&settings, &event(state, "down"), "notify-web@1.000-mail")
            .expect("message");
        String::from_utf8_lossy(&message.formatted()).into_owned()
    };
    let (burn, degraded, up) = (html("burn"), html("degraded"), html("up"));
    let colour = |text: &str| ["#d32f2f", "#f9a825", "#2e7d32"].map(|c| text.contains(c));
    assert_eq!(colour(&degraded), [false, true, false], "{degraded}");
    assert_eq!(colour(&burn), colour(&degraded), "{burn}");
    assert_eq!(colour(&up), [false, false, true], "{up}");
}

#[test]
fn a_burn_is_one_job_per_channel_that_takes_it_with_the_episode_as_id() {
    let text = format!(
        "{FILE}targets:\n  - {{name: web, url: 'http://x', notify: [hook, oncall], \
         slo: {{objective: 99.9%, window: 30d}}}}\n"
    );
    let parsed = parse(&text).expect("valid");
    let web = parsed.get("web").expect("web");
    let report = crate::targets::slo::SloReport {
        slo: web.slo.expect("an objective"),
        uptime: Some(99.0),
        budget_left: Some(-900.0),
        burn_5m: Some(1000.0),
        burn_1h: Some(20.0),
        burn_6h: Some(3.5),
    };
    let channels = route(web, &parsed.groups, &parsed.notify);
    let jobs = burn(
        web,
        Some(ServiceState::Down),
        &report,
        1000.0,
        &channels,
        1001.0,
    );
    // `oncall` takes down and up only.
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["notify-web-burn-1000000-hook"]);
    let JobSpec::Notify { body, .. } = &jobs[0].spec else {
        panic!("not a notification: {:?}", jobs[0]);
    };
    let event: Event = serde_json::from_value(body.clone()).expect("event");
    assert_eq!(
        (event.state.as_str(), event.previous.as_str()),
        ("burn", "down")
    );
    assert_eq!(
        event.headline(),
        "web is burning its error budget fast (is down): error budget of 99.9 % over 30 d \
         burning 20.0x over 1 h, 1000.0x over 5 min"
    );
    let again = burn(
        web,
        Some(ServiceState::Down),
        &report,
        1000.0,
        &channels,
        1005.0,
    );
    assert_eq!(again[0].id, jobs[0].id, "the same episode, the same job");
    let ntfy = render(&channel("ntfy"), &event);
    assert_eq!(header(&ntfy, "x-priority"), Some("4"), "a burn warns");
}

#[test]
fn a_partial_failure_goes_only_to_channels_that_ask_for_it_with_each_location() {
    use crate::targets::locations::LocationDetail;
    let text = r#"
notify:
  - {name: hook, url: "http://127.0.0.1:9/hook"}
  - {name: watch, url: "http://127.0.0.1:9/watch", on: [down, partial]}
"#;
    let parsed = parse(text).expect("valid");
    let (hook, watch) = (&parsed.notify[0], &parsed.notify[1]);
    let mut partial = event("degraded", "up");
    partial.partial = true;
    partial.locations.insert(
        "us-east".into(),
        LocationDetail {
            state: "down".into(),
            reason: Some("HTTP 503".into()),
            response_time_ms: Some(3.0),
        },
    );
    assert!(
        !hook.accepts(&partial),
        "a partial failure is shown, not sent"
    );
    assert!(watch.accepts(&partial));
    assert!(watch.accepts(&event("down", "up")));
    assert!(
        !watch.accepts(&event("degraded", "up")),
        "on: [down, partial]"
    );
    let body = json_of(&render(watch, &partial));
    assert_eq!(body["partial"], true);
    assert_eq!(body["locations"]["us-east"]["state"], "down", "{body}");
    assert_eq!(
        body["locations"]["us-east"]["response_time_ms"], 3.0,
        "{body}"
    );
    assert!(parse("notify: [{url: 'http://x', on: [partly]}]").is_err());
}
