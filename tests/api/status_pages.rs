//! Public status pages on the dashboard (`/status/{slug}`, `.json`, `/feed.atom`): a
//! page lists only its components, with uptime bars and figures from the day tallies,
//! its maintenance windows and incidents, and leaks nothing of the setup behind it (no
//! URL, host, port, path, reason, window name, instance id or address, and no target it
//! does not list); an unknown slug is a 404 that quotes nothing; the feed is well-formed Atom.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use svc::config::StoreSettings;
use svc::roles::dashboard;
use svc::service::{ServiceState, Watched};
use svc::store::memory::MemoryStore;
use svc::store::{Incident, SampleRecord, SharedStore};
use svc::targets::state::{TargetSample, TargetState};
use svc::targets::value::Credentials;
use svc::targets::watch::Loaded;
use url::Url;

use crate::helpers::{Dir, TestApp, free_port, test_settings};

/// The down target's reason: distinctive, so a leak of it cannot hide.
const REASON: &str = "xyzzy-refused-by-10.77.0.9";
const DAY: i64 = 86400;

/// Writes four probes (hours 1, 7, 13, 19; 40 ms each) of each day of `days` for
/// `name`; on the days of `down`, that many of them fail.
pub async fn write_days(
    store: &SharedStore,
    name: &str,
    days: impl Iterator<Item = i64>,
    down: &[(i64, usize)],
) {
    let mut seen = store.target_state(name).await.expect("state");
    for day in days {
        let failing = down.iter().find(|(d, _)| *d == day).map_or(0, |(_, n)| *n);
        for (n, hour) in [1, 7, 13, 19].into_iter().enumerate() {
            let probe = SampleRecord {
                timestamp: (day * DAY + hour * 3600) as f64,
                up: n >= failing,
                counts: true,
                response_time_ms: Some(40.0),
                minutes_only: false,
                json: "{}".to_owned(),
            };
            let written = store
                .put_target_state(name, seen.as_deref(), "s", Some(&probe))
                .await
                .expect("put");
            assert!(written, "no other writer");
            seen = Some("s".to_owned());
        }
    }
}

/// Sets `name`'s verdict to `status` since `since`; a down one's last probe says
/// [`REASON`].
async fn set_state(store: &SharedStore, name: &str, status: ServiceState, since: f64) {
    let down = status == ServiceState::Down;
    let state = TargetState {
        status: Some(status),
        since: Some(since),
        last: Some(TargetSample {
            timestamp: since,
            status,
            response_time_ms: (!down).then_some(40.0),
            error: down.then(|| REASON.to_owned()),
            cert_expires_at: None,
        }),
        handed: true,
        ..TargetState::default()
    };
    let json = serde_json::to_string(&state).expect("json");
    let seen = store.target_state(name).await.expect("state");
    assert!(
        store
            .put_target_state(name, seen.as_deref(), &json, None)
            .await
            .expect("put")
    );
}

async fn incident(store: &SharedStore, name: &str, from: f64, to: Option<f64>) {
    let down = Incident {
        service: Watched::Target(name.to_owned()),
        from: Some(ServiceState::Healthy),
        to: ServiceState::Down,
        started_at: from,
        ended_at: None,
        reason: Some(REASON.to_owned()),
        maintenance: None,
    };
    store.state_change(&down).await.expect("incident");
    if let Some(end) = to {
        let up = Incident {
            from: Some(ServiceState::Down),
            to: ServiceState::Healthy,
            started_at: end,
            reason: Some(format!("{REASON} no more")),
            ..down
        };
        store.state_change(&up).await.expect("recovery");
    }
}

/// The setup: a shop page of group `shop` (orders, payments) and target `search`;
/// `ledger` exists but is on no page. Returns the app, the secrets that must not show,
/// and today's day number.
pub async fn shop() -> (TestApp, Vec<String>, i64) {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let now = svc::clock::unix_now();
    let today = (now / DAY as f64).floor() as i64;
    // Orders: 89 full days before today, one bad probe 3 days ago, a whole day down
    // 40 days ago.
    write_days(
        &store,
        "orders",
        today - 89..today,
        &[(today - 3, 1), (today - 40, 4)],
    )
    .await;
    incident(
        &store,
        "orders",
        ((today - 3) * DAY + 3600) as f64,
        Some(((today - 3) * DAY + 5400) as f64),
    )
    .await;
    set_state(
        &store,
        "orders",
        ServiceState::Healthy,
        now - 3.0 * DAY as f64,
    )
    .await;
    set_state(&store, "payments", ServiceState::Down, now - 600.0).await;
    incident(&store, "payments", now - 600.0, None).await;

    let dir = Dir::new("status-pages");
    let file = dir.path("targets.yaml");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let rfc = |at: f64| {
        jiff::Timestamp::from_second(at as i64)
            .expect("time")
            .to_string()
    };
    let yaml = format!(
        "targets:\n\
         - {{name: orders, url: 'tcp://10.77.0.9:{p1}', group: shop}}\n\
         - {{name: payments, url: 'http://payments.internal.example:{p2}/healthz-qv7', group: shop}}\n\
         - {{name: search, url: 'https://search.internal.example/ping-zk4'}}\n\
         - {{name: ledger, url: 'http://ledger.internal.example:{p3}/', group: ops}}\n\
         maintenance:\n\
         - {{name: reindex-mw3, targets: [search], start: '{}', duration: 3h}}\n\
         - {{name: upgrade-mw4, groups: [shop], start: '{}', duration: 1h}}\n\
         status_pages:\n\
         - slug: shop\n  title: Example Shop status\n  description: Live status of the shop\n\
         \x20 groups: [shop]\n  targets: [search]\n  footer: Questions? Ask the shop.\n",
        rfc(now - 3600.0),
        rfc(now + 2.0 * DAY as f64),
    );
    std::fs::write(&file, yaml).expect("write");
    let url = Url::parse(&format!("http://127.0.0.1:{}", free_port())).expect("url");
    let mut config =
        dashboard::Config::new(url.clone(), url, Duration::from_secs(1)).expect("config");
    config.targets =
        Some(Loaded::read(&file, Duration::from_secs(10), Credentials::Optional).expect("file"));
    let app = TestApp::dashboard(test_settings(StoreSettings::Memory), config, store).await;

    let mut secrets: Vec<String> = vec![
        REASON.into(),
        "10.77.0.9".into(),
        "payments.internal.example".into(),
        "search.internal.example".into(),
        "ledger".into(),
        "healthz-qv7".into(),
        "ping-zk4".into(),
        "reindex-mw3".into(),
        "upgrade-mw4".into(),
        "127.0.0.1".into(),
    ];
    secrets.extend([p1, p2, p3].map(|p| p.to_string()));
    let (_, info) = app.get_json("/api/system-info").await;
    for instance in info["instances"].as_array().expect("instances") {
        for key in ["id", "address"] {
            if let Some(value) = instance[key].as_str().filter(|v| !v.is_empty()) {
                secrets.push(value.to_owned());
            }
        }
    }
    assert!(
        secrets.len() > 13,
        "the dashboard's own instance is listed: {info}"
    );
    // The operator's API has them all: a page that shows none of them filtered them.
    let (_, health) = app.get_json("/api/health-check").await;
    let health = health.to_string();
    for shown in [REASON, "payments.internal.example", "healthz-qv7", "ledger"] {
        assert!(
            health.contains(shown),
            "{shown} is in /api/health-check: {health}"
        );
    }
    (app, secrets, today)
}

/// Whether `needle` occurs in `hay` other than as part of a longer number (a port
/// inside a timestamp is no leak).
fn shows(hay: &str, needle: &str) -> bool {
    let digits = needle.chars().all(|c| c.is_ascii_digit());
    hay.match_indices(needle).any(|(at, _)| {
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        !digits
            || !(before.is_some_and(|c| c.is_ascii_digit())
                || after.is_some_and(|c| c.is_ascii_digit()))
    })
}

/// The feed, parsed by Python's XML parser: `{id, title, updated, entries: [{id,
/// title, updated, content}]}` (Atom namespace checked on every element read).
pub fn parse_atom(xml: &str) -> Value {
    let script = r#"
import json, sys, xml.etree.ElementTree as ET
A = "{http://www.w3.org/2005/Atom}"
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == A + "feed", root.tag
def one(e, name):
    found = e.findall(A + name)
    assert len(found) == 1, (name, len(found))
    return found[0].text
print(json.dumps({
    "id": one(root, "id"), "title": one(root, "title"), "updated": one(root, "updated"),
    "author": root.find(A + "author/" + A + "name").text,
    "entries": [{"id": one(e, "id"), "title": one(e, "title"), "updated": one(e, "updated"),
                 "content": one(e, "content")} for e in root.findall(A + "entry")],
}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (Debian python3)");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), xml.as_bytes())
        .expect("feed to python");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "not well-formed Atom: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn close(actual: &Value, expected: f64) -> bool {
    actual.as_f64().is_some_and(|a| (a - expected).abs() < 1e-6)
}

#[tokio::test]
async fn a_status_page_shows_only_its_components_and_leaks_nothing() {
    let (app, secrets, _) = shop().await;
    let (status, html) = app.get("/status/shop").await;
    assert_eq!(status, 200, "{html}");
    let (status, json) = app.get("/status/shop.json").await;
    assert_eq!(status, 200, "{json}");
    let res = app
        .client
        .get(format!("{}/status/shop/feed.atom", app.address))
        .send()
        .await
        .expect("feed");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/atom+xml"),
        "{content_type}"
    );
    let atom = res.text().await.expect("body");

    for (what, body) in [("HTML", &html), ("JSON", &json), ("feed", &atom)] {
        for secret in &secrets {
            assert!(!shows(body, secret), "the {what} shows {secret:?}:\n{body}");
        }
        assert!(
            !body.contains("/api/") && !body.contains("href=\"/\""),
            "{what} links inward"
        );
    }
    let facts: Value = serde_json::from_str(&json).expect("json");
    let sections: Vec<(Value, Vec<&str>)> = facts["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .map(|s| {
            let names = s["components"]
                .as_array()
                .expect("components")
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            (s["group"].clone(), names)
        })
        .collect();
    assert_eq!(
        sections,
        vec![
            (Value::from("shop"), vec!["orders", "payments"]),
            (Value::Null, vec!["search"])
        ]
    );
    let component = |name: &str| -> Value {
        facts["sections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["components"].as_array().into_iter().flatten())
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(component("payments")["status"], "outage");
    assert_eq!(component("orders")["status"], "operational");
    assert_eq!(component("search")["status"], "maintenance");
    // One of three down: a partial outage.
    assert_eq!(facts["status"], "partial_outage");
    assert!(html.contains("Partial outage"), "{html}");
    for name in ["orders", "payments", "search"] {
        assert!(html.contains(&format!("<h4>{name}</h4>")), "{name}: {html}");
    }
    assert!(html.contains("Questions? Ask the shop.") && html.contains("Live status of the shop"));

    // The open incident is current, the ended one past; neither tells its reason.
    let current = &facts["current_incidents"];
    assert_eq!(current.as_array().map(Vec::len), Some(1), "{current}");
    assert_eq!(current[0]["component"], "payments");
    assert!(current[0]["ended_at"].is_null());
    let past = &facts["past_incidents"];
    assert_eq!(past.as_array().map(Vec::len), Some(1), "{past}");
    assert_eq!(past[0]["component"], "orders");
    assert!(close(&past[0]["duration_s"], 1800.0), "{past}");
    assert!(html.contains("Current incidents") && html.contains("ongoing for"));

    // The window in force, and the one to come, by their components only.
    assert_eq!(
        facts["active_maintenance"][0]["components"],
        serde_json::json!(["search"])
    );
    assert_eq!(
        facts["upcoming_maintenance"][0]["components"],
        serde_json::json!(["orders", "payments"])
    );
    assert!(html.contains("In maintenance") && html.contains("Scheduled maintenance"));

    // The feed: one entry per incident, titled "<component> down".
    let feed = parse_atom(&atom);
    assert_eq!(feed["title"], "Example Shop status");
    assert_eq!(feed["id"], "urn:svc:status:shop");
    let titles: Vec<&str> = feed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["title"].as_str())
        .collect();
    assert_eq!(titles, vec!["payments down", "orders down"], "{feed}");
    let ended = &feed["entries"][1]["content"];
    assert!(
        ended
            .as_str()
            .is_some_and(|c| c.starts_with("Down from ") && c.contains(" to ")),
        "{ended}"
    );
    assert!(
        feed["entries"][0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("since")),
        "{feed}"
    );

    // The page's own stylesheet is under /status/, the only path it needs.
    let sheet = html
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("stylesheet");
    assert!(sheet.starts_with("/status/static/"), "{sheet}");
    let (status, css) = app.get(sheet).await;
    assert_eq!(status, 200);
    assert!(css.contains("prefers-color-scheme: dark"));
    assert!(!html.contains("<script"), "works without JavaScript");
}

#[tokio::test]
async fn the_bars_and_figures_come_from_the_day_tallies() {
    let (app, _, today) = shop().await;
    let (_, facts) = app.get_json("/status/shop.json").await;
    let orders = facts["sections"][0]["components"][0].clone();
    assert_eq!(orders["name"], "orders");
    // 7 days: 6 full days counted (today has none), 1 of 24 probes failed; 30 days: 1
    // of 116; 90 days: 5 of 356 (the whole day down is 40 days ago).
    assert!(close(&orders["uptime"]["7d"], 2300.0 / 24.0), "{orders}");
    assert!(close(&orders["uptime"]["30d"], 11500.0 / 116.0), "{orders}");
    assert!(close(&orders["uptime"]["90d"], 35100.0 / 356.0), "{orders}");
    let days = orders["days"].as_array().expect("days");
    assert_eq!(days.len(), 90);
    let day = |ago: usize| &days[89 - ago];
    assert!(close(&day(40)["uptime"], 0.0), "{}", day(40));
    assert!(close(&day(3)["uptime"], 75.0), "{}", day(3));
    assert_eq!(day(3)["incidents"], 1);
    assert!(close(&day(4)["uptime"], 100.0));
    assert!(day(0)["uptime"].is_null(), "today has no probe: no data");
    let date = |ago: i64| {
        jiff::Timestamp::from_second((today - ago) * DAY)
            .expect("day")
            .strftime("%Y-%m-%d")
            .to_string()
    };
    assert_eq!(day(40)["date"], date(40));
    let payments = &facts["sections"][0]["components"][1];
    assert!(payments["uptime"]["90d"].is_null(), "no tallies: no figure");

    let (_, html) = app.get("/status/shop").await;
    // The figures floored to two decimals, never rounded up.
    for figure in ["95.83%", "99.13%", "98.59%"] {
        assert!(html.contains(figure), "{figure}");
    }
    // The outage day is red and says so; the bad day names its incident; a day without
    // probes says so.
    let tip = format!("<span class=\"tip\"><b>{}</b>: 0.00% up", date(40));
    let at = html.find(&tip).expect("the outage day's tip");
    let item = html[..at].rsplit("<li").next().unwrap_or_default();
    assert!(
        item.contains("low"),
        "an outage day is coloured low: {item}"
    );
    let bad_day = format!("<b>{}</b>: 75.00% up<br>Down ", date(3));
    assert!(html.contains(&bad_day), "{html}");
    assert!(html.contains(&format!("<b>{}</b>: no data", date(0))));

    // /api/health-check carries the same day figures, and the year's.
    let (_, health) = app.get_json("/api/health-check").await;
    let entry = health["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "orders")
        .cloned()
        .expect("orders");
    assert!(close(&entry["uptime_7d"], 2300.0 / 24.0), "{entry}");
    assert!(close(&entry["uptime_30d"], 11500.0 / 116.0), "{entry}");
    assert!(close(&entry["uptime_90d"], 35100.0 / 356.0), "{entry}");
    assert!(close(&entry["uptime_365d"], 35100.0 / 356.0), "{entry}");
}

#[tokio::test]
async fn an_unknown_slug_is_a_404_that_says_only_that() {
    let (app, _, _) = shop().await;
    for path in [
        "/status/nope",
        "/status/nope.json",
        "/status/nope/feed.atom",
        "/status/Shop",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["message"], "no status page here", "{path}");
    }
}

#[tokio::test]
async fn with_the_store_gone_a_page_says_unknown_at_once() {
    let mut redis = crate::helpers::RedisServer::start();
    let settings = test_settings(StoreSettings::Redis(redis.settings()));
    let store = svc::store::open(&settings.store, "svc:").expect("store");
    let dir = Dir::new("status-pages-no-store");
    let file = dir.path("targets.yaml");
    std::fs::write(
        &file,
        "targets:\n- {name: orders, url: 'tcp://127.0.0.1:9', group: shop}\n\
         status_pages:\n- {slug: shop, title: Shop, groups: [shop]}\n",
    )
    .expect("write");
    let url = Url::parse(&format!("http://127.0.0.1:{}", free_port())).expect("url");
    let mut config =
        dashboard::Config::new(url.clone(), url, Duration::from_secs(1)).expect("config");
    config.targets =
        Some(Loaded::read(&file, Duration::from_secs(10), Credentials::Optional).expect("file"));
    let app = TestApp::dashboard(settings, config, store).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    redis.stop();
    app.wait_ready(503, Duration::from_secs(5)).await;
    crate::helpers::eventually(Duration::from_secs(10), "the page says unknown", || async {
        let asked = std::time::Instant::now();
        let (status, facts) = app.get_json("/status/shop.json").await;
        assert_eq!(status, 200, "{facts}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the page waited {:?} on a store that is gone",
            asked.elapsed()
        );
        (facts["status"] == "unknown").then_some(())
    })
    .await;
    let (status, html) = app.get("/status/shop").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Status unknown") && html.contains("No data"),
        "{html}"
    );
}
