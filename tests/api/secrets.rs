//! The Redis password never appears in logs, responses or metrics, whether it comes in
//! `REDIS_URL` or in the original's `REDIS_PASSWORD`.

use std::time::Duration;

use crate::helpers::{RedisServer, SvcProcess, gateway_process, svc_command};

/// The bodies of every route `svc` serves, and of one it does not.
async fn everything_it_serves(svc: &SvcProcess) -> String {
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

/// Stops `svc` with SIGTERM and checks that the password is in nothing it served or
/// logged.
fn assert_password_kept(mut svc: SvcProcess, served: &str, password: &str) {
    svc.signal("TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(10)), Some(0));
    let logs = svc.output();
    assert!(logs.contains("request"), "no access log lines: {logs}");
    assert!(!served.contains(password), "password in a response");
    assert!(!logs.contains(password), "password in the logs:\n{logs}");
}

#[tokio::test]
async fn password_in_redis_url_is_not_in_logs_responses_or_metrics() {
    let redis = RedisServer::start();
    // gateway_process passes the password inside REDIS_URL; text logs.
    let svc = gateway_process(&redis, &[("LOG_LEVEL", "debug")]).await;
    let served = everything_it_serves(&svc).await;
    assert_password_kept(svc, &served, &redis.password);
}

#[tokio::test]
async fn the_originals_variables_alone_reach_a_password_protected_redis_and_its_db() {
    let redis = RedisServer::start();
    let port = redis.port.to_string();
    // No REDIS_URL: the original's variables only; JSON logs, everything logged.
    let mut svc = SvcProcess::spawn(
        &["gateway", "--host", "127.0.0.1", "--port", "0"],
        &[
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", &port),
            ("REDIS_PASSWORD", &redis.password),
            ("REDIS_DB", "3"),
            ("APP_ENV", "production"),
            ("RUST_LOG", "trace"),
            ("DRAIN_DELAY", "0s"),
        ],
    );
    svc.wait_ready().await;
    let served = everything_it_serves(&svc).await;
    let status = svc.get_json("/api/status").await;
    assert_eq!(status["redis_connected"], true, "{status}");
    assert_eq!(
        status["total_requests"], 2,
        "one INCR per /api/status: {status}"
    );

    // The counter is in database 3, and database 0 was not touched.
    let total = |db: u8| {
        let url = format!("redis://:{}@127.0.0.1:{}/{db}", redis.password, redis.port);
        async move {
            let mut conn = redis::Client::open(url)
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect to test redis");
            redis::cmd("GET")
                .arg("api:total_requests")
                .query_async::<Option<i64>>(&mut conn)
                .await
                .expect("GET")
        }
    };
    assert_eq!(total(3).await, Some(2));
    assert_eq!(total(0).await, None);
    assert_password_kept(svc, &served, &redis.password);
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
