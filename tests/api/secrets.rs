//! The Redis password never appears in logs, responses or metrics.

use std::time::Duration;

use crate::helpers::gateway_process;
use crate::helpers::{RedisServer, svc_command};

async fn everything_it_serves(svc: &crate::helpers::SvcProcess) -> String {
    let client = crate::helpers::client();
    let mut seen = String::new();
    for path in [
        "/",
        "/api/status",
        "/api/info",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/nope",
    ] {
        let res = client.get(svc.url(path)).send().await.expect(path);
        seen.push_str(&res.text().await.expect("body"));
    }
    seen
}

#[tokio::test]
async fn password_is_not_in_logs_responses_or_metrics() {
    let redis = RedisServer::start();
    let port = redis.port.to_string();
    for env in [
        // The original's variables, JSON logs, everything logged.
        vec![
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", port.as_str()),
            ("REDIS_PASSWORD", redis.password.as_str()),
            ("APP_ENV", "production"),
            ("RUST_LOG", "trace"),
        ],
        // The password inside REDIS_URL (gateway_process sets it), text logs.
        vec![("LOG_LEVEL", "debug")],
    ] {
        let mut svc = gateway_process(&redis, &env).await;
        let served = everything_it_serves(&svc).await;
        svc.signal("TERM");
        assert_eq!(svc.wait_exit(Duration::from_secs(10)), Some(0));
        let logs = svc.output();
        assert!(logs.contains("request"), "no access log lines: {logs}");
        assert!(!served.contains(&redis.password), "password in a response");
        assert!(
            !logs.contains(&redis.password),
            "password in the logs:\n{logs}"
        );
    }
}

#[test]
fn help_does_not_show_the_password_from_the_environment() {
    let out = svc_command(
        &["gateway", "--help"],
        &[("REDIS_PASSWORD", "hunter2-help")],
    )
    .output()
    .expect("svc --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("REDIS_PASSWORD"));
    assert!(!text.contains("hunter2-help"));
}

#[tokio::test]
async fn production_logs_are_json_lines_with_one_access_line_per_request() {
    let redis = RedisServer::start();
    let mut svc = gateway_process(&redis, &[("APP_ENV", "production")]).await;
    let client = crate::helpers::client();
    for _ in 0..3 {
        client
            .get(svc.url("/api/status"))
            .send()
            .await
            .expect("status");
    }
    svc.signal("TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(10)), Some(0));
    let logs = svc.output();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request" && l["route"] == "/api/status")
        .collect();
    assert_eq!(access.len(), 3, "{logs}");
    for line in access {
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 200);
        assert!(line["duration_ms"].is_f64(), "{line}");
        assert_eq!(line["level"], "INFO");
    }
}
