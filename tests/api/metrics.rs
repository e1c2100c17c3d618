//! `/metrics` of a real `svc gateway` process: valid Prometheus text, exact counts with
//! the right labels, and no series per unknown path.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use svc::config::StoreSettings;

use crate::helpers::{
    RedisServer, TestApp, eventually, gateway_process, require_tool, test_settings,
};

/// Runs `promtool check metrics` on `text`; panics with its complaints.
pub fn promtool_check(text: &str) {
    let promtool = require_tool("promtool", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample whose line starts with `series` (name and labels).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_are_valid_and_count_requests_by_route() {
    let redis = RedisServer::start();
    let svc = gateway_process(&redis, &[]).await;
    let client = crate::helpers::client();
    for _ in 0..3 {
        let res = client
            .get(svc.url("/api/status"))
            .send()
            .await
            .expect("status");
        assert_eq!(res.status(), 200);
    }
    for path in ["/scan/a1", "/scan/b2", "/wp-admin.php", "/.env"] {
        let res = client.get(svc.url(path)).send().await.expect("scan");
        assert_eq!(res.status(), 404);
    }
    let res = client
        .get(svc.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = res.text().await.expect("body");
    promtool_check(&text);

    let status = r#"api_gateway_requests_total{method="GET",endpoint="/api/status",status="200"}"#;
    assert_eq!(sample(&text, status), Some(3.0), "{text}");
    let unmatched = r#"api_gateway_requests_total{method="GET",endpoint="unmatched",status="404"}"#;
    assert_eq!(sample(&text, unmatched), Some(4.0), "{text}");
    for raw in ["/scan", "wp-admin", "/.env"] {
        assert!(!text.contains(raw), "a raw path became a label: {raw}");
    }
    let count =
        r#"api_gateway_request_duration_seconds_count{method="GET",endpoint="/api/status"}"#;
    assert_eq!(sample(&text, count), Some(3.0));
    assert!(text.contains(r#"api_gateway_request_duration_seconds_bucket{method="GET",endpoint="/api/status",le="0.005"}"#));
    assert_eq!(
        sample(&text, "api_gateway_redis_connection_status"),
        Some(1.0)
    );
    // The scrape itself is the one request in progress.
    assert_eq!(sample(&text, "api_gateway_requests_in_progress"), Some(1.0));
    for name in [
        "api_gateway_requests_total",
        "api_gateway_request_duration_seconds",
        "api_gateway_requests_in_progress",
        "api_gateway_redis_connection_status",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
}

#[tokio::test]
async fn redis_status_gauge_follows_an_outage() {
    let mut redis = RedisServer::start();
    let svc = gateway_process(&redis, &[]).await;
    let client = crate::helpers::client();
    redis.stop();
    eventually(
        Duration::from_secs(5),
        "redis_connection_status 0",
        || async {
            let text = client
                .get(svc.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (sample(&text, "api_gateway_redis_connection_status") == Some(0.0)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn unknown_methods_share_one_label_and_process_metrics_are_exported() {
    let app = TestApp::gateway(test_settings(StoreSettings::Memory)).await;
    for method in ["A1", "A2", "PURGE", "A4"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        app.client
            .request(method, format!("{}/api/status", app.address))
            .send()
            .await
            .expect("request");
    }
    let (_, text) = app.get("/metrics").await;
    promtool_check(&text);
    for line in text
        .lines()
        .filter(|l| l.starts_with("api_gateway_requests_total{"))
    {
        assert!(
            [
                "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
                "other"
            ]
            .iter()
            .any(|m| line.contains(&format!("method=\"{m}\""))),
            "a method outside the standard set: {line}"
        );
    }
    let other = r#"api_gateway_requests_total{method="other",endpoint="/api/status",status="405"}"#;
    assert_eq!(sample(&text, other), Some(4.0), "{text}");
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics"
        );
    }
}
