//! `GET /api/targets/{name}/history` on the dashboard: a target's history by the day
//! or the hour, as JSON and as CSV, from what the worker wrote; bad input is a 400
//! that says why, a target the file does not list a 404.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use svc::config::StoreSettings;
use svc::roles::dashboard;
use svc::store::SharedStore;
use svc::store::memory::MemoryStore;
use svc::targets::value::Credentials;
use svc::targets::watch::Loaded;
use url::Url;

use crate::helpers::{Dir, TestApp, free_port, test_settings};
use crate::status_pages::write_days;

#[tokio::test]
async fn history_is_exported_as_json_and_csv_and_bad_input_says_why() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let today = (svc::clock::unix_now() / 86400.0).floor() as i64;
    // Four probes a day; one of the second day's fails.
    write_days(&store, "shop-api", today - 2..today, &[(today - 1, 1)]).await;

    let dir = Dir::new("history");
    let file = dir.path("targets.yaml");
    let closed = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(
        &file,
        format!(
            "targets:\n  - name: shop-api\n    url: {closed}/healthz\n    group: shop\n\
             groups:\n  shop: {{slo: {{objective: 99%, window: 30d}}}}\n"
        ),
    )
    .expect("write");
    let url = Url::parse(&closed).expect("url");
    let mut config =
        dashboard::Config::new(url.clone(), url, Duration::from_secs(1)).expect("config");
    config.targets =
        Some(Loaded::read(&file, Duration::from_secs(10), Credentials::Optional).expect("file"));
    let app = TestApp::dashboard(test_settings(StoreSettings::Memory), config, store).await;

    let range = format!(
        "from={}&to={}&step=1d",
        (today - 2) * 86400,
        (today + 1) * 86400
    );
    let (status, json) = app
        .get_json(&format!("/api/targets/shop-api/history?{range}"))
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["step"], "1d");
    assert_eq!(json["uptime"]["7d"], 87.5, "7 of 8 probes up");
    let points = json["points"].as_array().expect("points");
    let figures = |p: &Value| {
        (
            p["start"].as_i64(),
            p["checks"].as_i64(),
            p["uptime"].as_f64(),
            p["p95_ms"].as_f64(),
        )
    };
    let figures: Vec<_> = points.iter().map(figures).collect();
    assert_eq!(
        figures,
        vec![
            (Some((today - 2) * 86400), Some(4), Some(100.0), Some(50.0)),
            (Some((today - 1) * 86400), Some(4), Some(75.0), Some(50.0)),
            (Some(today * 86400), Some(0), None, None),
        ]
    );

    let res = crate::helpers::client()
        .get(format!(
            "{}/api/targets/shop-api/history?{range}",
            app.address
        ))
        .header("Accept", "text/csv")
        .send()
        .await
        .expect("GET csv");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let csv = res.text().await.expect("body");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(lines[0], "start,checks,up,uptime,p50_ms,p95_ms,p99_ms");
    assert!(lines[2].ends_with("Z,4,3,75,50,50,50"), "{csv}");
    assert!(lines[3].ends_with("Z,0,0,,,,"), "{csv}");

    // RFC 3339, by the hour: a day with nothing kept is 24 empty steps.
    let (status, json) = app
        .get_json("/api/targets/shop-api/history?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00%2B00:00")
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["points"].as_array().map(Vec::len), Some(24));

    for (query, why) in [
        ("step=1w", "neither 1h nor 1d"),
        ("from=yesterday", "RFC 3339"),
        ("from=0&to=31536000&step=1h", "at most 744"),
        ("from=10&to=0", "not after"),
    ] {
        let (status, json) = app
            .get_json(&format!("/api/targets/shop-api/history?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {json}");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{query}: {message}");
    }
    let (status, json) = app.get_json("/api/targets/nobody/history").await;
    assert_eq!(status, 404, "{json}");

    // The group's objective on the target's entry: 1 of 8 probes failed where 1 %
    // may, so 12.5 times the budget is spent.
    let (_, health) = app.get_json("/api/health-check").await;
    let entry = health["services"]
        .as_array()
        .and_then(|s| s.iter().find(|e| e["name"] == "shop-api"))
        .expect("entry");
    assert_eq!(entry["slo"]["objective"], 99.0, "{entry}");
    assert_eq!(entry["slo"]["window_days"], 30);
    assert_eq!(entry["slo"]["uptime"], 87.5);
    let left = entry["slo"]["budget_left"].as_f64().expect("budget");
    assert!((left - -1150.0).abs() < 1e-6, "{left}");
    let (_, page) = app.get("/").await;
    assert!(
        page.contains("budget -1150 % left, burn 1 h"),
        "the page shows it too"
    );
}
