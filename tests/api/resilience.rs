//! Redis outages: the gateway keeps answering, reports them honestly, and recovers by
//! itself when Redis returns, with no restart.

use std::time::Duration;

use svc::config::StoreSettings;

use crate::helpers::{RedisServer, TestApp, test_settings};

/// A readiness probe period of the manifests: how fast readiness must follow Redis.
const PROBE_PERIOD: Duration = Duration::from_secs(5);

#[tokio::test]
async fn redis_outage_makes_the_gateway_unready_and_it_recovers() {
    let mut redis = RedisServer::start();
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, PROBE_PERIOD).await;
    let (_, before) = app.get_json("/api/status").await;
    assert_eq!(before["total_requests"], 1);

    redis.stop();
    assert_eq!(app.get("/health/live").await.0, 200);
    app.wait_ready(503, PROBE_PERIOD).await;
    let (_, ready) = app.get_json("/health/ready").await;
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["redis_connected"], false);
    let (status, down) = app.get_json("/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(down["redis_connected"], false);
    assert_eq!(down["total_requests"], 0);
    assert_eq!(app.get("/health/live").await.0, 200);

    redis.resume();
    app.wait_ready(200, PROBE_PERIOD).await;
    // The restarted server kept nothing (no persistence in tests): INCR starts over.
    let (_, after) = app.get_json("/api/status").await;
    assert_eq!(after["redis_connected"], true);
    assert_eq!(after["total_requests"], 1);
}

#[tokio::test]
async fn gateway_started_before_redis_turns_ready_when_redis_appears() {
    let mut redis = RedisServer::start();
    redis.stop();
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    assert_eq!(app.get("/health/live").await.0, 200);
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 503);
    assert_eq!(ready["redis_connected"], false);
    let (status, body) = app.get_json("/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["redis_connected"], false);

    redis.resume();
    app.wait_ready(200, PROBE_PERIOD).await;
    let (_, body) = app.get_json("/api/status").await;
    assert_eq!(body["redis_connected"], true);
    assert_eq!(body["total_requests"], 1);
}

#[tokio::test]
async fn ready_without_redis_keeps_serving_degraded() {
    let mut redis = RedisServer::start();
    let mut settings = test_settings(StoreSettings::Redis(redis.settings()));
    settings.ready_without_store = true;
    let app = TestApp::gateway(settings).await;
    app.wait_ready(200, PROBE_PERIOD).await;
    redis.stop();
    crate::helpers::eventually(PROBE_PERIOD, "redis_connected false", || async {
        let (_, ready) = app.get_json("/health/ready").await;
        (ready["redis_connected"] == false).then_some(ready)
    })
    .await;
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn a_hung_redis_does_not_hang_the_gateway() {
    let redis = RedisServer::start();
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, PROBE_PERIOD).await;
    redis.freeze();
    let start = std::time::Instant::now();
    let (status, body) = app.get_json("/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["redis_connected"], false);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let (live, _) = app.get("/health/live").await;
    assert_eq!(live, 200);
    redis.thaw();
}
