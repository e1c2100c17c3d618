//! The Redis connection layer: one reconnect at a time after an outage, connections
//! that outlive the HTTP servers' runtimes, and errors that say what failed.

use std::time::Duration;

use futures_util::future::join_all;
use svc::config::StoreSettings;
use svc::store::redis::RedisStore;
use svc::store::{Queue, Store};

use crate::helpers::{RedisServer, SvcProcess, TestApp, eventually, loopback, test_settings};

async fn info_field(redis: &RedisServer, section: &str, field: &str) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut redis.client().await)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

#[tokio::test]
async fn many_requests_after_a_redis_restart_open_few_connections() {
    let mut redis = RedisServer::start();
    let store = RedisStore::new(&redis.settings(), "svc:").expect("store");
    store.ping().await.expect("connected");
    redis.stop();
    assert!(store.ping().await.is_err(), "Redis is down");
    redis.resume();
    // 64 callers find the connection gone at the same moment.
    let counted = join_all((0..64).map(|_| store.incr("after-restart"))).await;
    assert!(counted.iter().all(Result::is_ok), "{counted:?}");
    // Our own INFO connection counts as one.
    let opened = info_field(&redis, "stats", "total_connections_received").await;
    assert!(
        opened <= 3,
        "{opened} connections were opened for 64 commands after a restart"
    );
    // The gateway, too, answers every request after a restart.
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(10)).await;
    let statuses = join_all((0..64).map(|_| app.get_json("/api/status"))).await;
    assert!(
        statuses
            .iter()
            .all(|(s, b)| *s == 200 && b["redis_connected"] == true)
    );
}

#[tokio::test]
async fn a_job_running_at_sigterm_in_svc_all_is_finished_and_recorded() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut svc = SvcProcess::spawn(
        &crate::helpers::all_args(&[]),
        &[
            ("REDIS_URL", url.as_str()),
            ("DRAIN_DELAY", "0s"),
            ("GRACE_PERIOD", "15s"),
            ("WORKER_INTERVAL", "24h"),
        ],
    );
    svc.wait_ready().await;
    // After a Redis restart the first command to reconnect comes from a request, on
    // one of the HTTP server's threads.
    redis.stop();
    redis.resume();
    let client = crate::helpers::client();
    eventually(
        Duration::from_secs(10),
        "the gateway to count again",
        || async {
            let res = client.get(svc.url("/api/status")).send().await.ok()?;
            let body: serde_json::Value = res.json().await.ok()?;
            (body["redis_connected"] == true).then_some(())
        },
    )
    .await;
    let submitted: serde_json::Value = client
        .post(svc.url("/api/jobs"))
        .body(r#"{"type":"data_processing","size":1,"hold_ms":2000}"#)
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let id = submitted["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(10), "the job to run", || async {
        let res = client
            .get(svc.url(&format!("/api/jobs/{id}")))
            .send()
            .await
            .ok()?;
        let job: serde_json::Value = res.json().await.ok()?;
        (job["state"] == "running").then_some(())
    })
    .await;
    svc.signal("TERM");
    assert_eq!(
        svc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.output()
    );
    let raw: String = redis::cmd("GET")
        .arg(format!("svc:job:{id}"))
        .query_async(&mut redis.client().await)
        .await
        .expect("GET");
    let job: serde_json::Value = serde_json::from_str(&raw).expect("record");
    assert_eq!(job["state"], "done", "{job}\n{}", svc.output());
}

/// Readiness of a gateway whose Redis login is `url`.
async fn not_ready_reason(url: &str) -> (String, String) {
    let svc = SvcProcess::spawn(
        &["gateway", "--host", "127.0.0.1", "--port", "0"],
        &[("REDIS_URL", url), ("DRAIN_DELAY", "0s")],
    );
    let client = crate::helpers::client();
    let reason = crate::helpers::not_ready_reason(&client, &svc.url("/health/ready")).await;
    let output = eventually(Duration::from_secs(5), "a warning", || async {
        let out = svc.output();
        out.contains("WARN").then_some(out)
    })
    .await;
    (reason, output)
}

#[tokio::test]
async fn readiness_and_the_log_say_why_redis_refused_the_login() {
    let redis = RedisServer::start();
    let wrong = format!("redis://:not-the-password@127.0.0.1:{}/0", redis.port);
    let (reason, log) = not_ready_reason(&wrong).await;
    assert!(reason.contains("authentication"), "{reason}");
    assert!(log.contains("authentication"), "{log}");
    assert!(!log.contains("not-the-password"), "{log}");

    let missing = format!("redis://127.0.0.1:{}/0", redis.port);
    let (reason, _) = not_ready_reason(&missing).await;
    assert!(reason.contains("authentication"), "{reason}");

    let refused = format!("redis://127.0.0.1:{}/0", loopback().port());
    let (reason, _) = not_ready_reason(&refused).await;
    assert!(reason.contains("refused"), "{reason}");
}

#[tokio::test]
async fn a_password_the_server_does_not_need_is_reported_as_such() {
    let redis = RedisServer::start();
    let mut conn = redis.client().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let store = RedisStore::new(&redis.settings(), "svc:").expect("store");
    let err = store
        .ping()
        .await
        .expect_err("AUTH without a configured password");
    assert!(err.to_string().contains("no password"), "{err}");
}

#[tokio::test]
async fn pooled_connections_in_steady_use_cost_no_extra_round_trip() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.settings(), "svc:").expect("store");
    // Each reclaim scan takes a pooled connection of its own.
    for _ in 0..20 {
        store
            .reclaim("c", Duration::from_secs(60), 10, svc::store::RECLAIM_START)
            .await
            .expect("reclaim");
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis.client().await)
        .await
        .expect("INFO");
    let calls = |command: &str| -> i64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(calls("xautoclaim") >= 20, "{stats}");
    assert!(calls("ping") <= 1, "a PING per check-out: {stats}");
}
