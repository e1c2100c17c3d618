//! Every gateway endpoint: status, content type, the original's fields and their types.

use std::time::Duration;

use serde_json::Value;
use svc::config::StoreSettings;

use crate::helpers::{RedisServer, TestApp, test_settings};

async fn redis_gateway() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    (redis, app)
}

fn assert_timestamp(v: &Value) {
    let t = v["timestamp"].as_f64().expect("timestamp is a float");
    assert!(t > 1.7e9, "timestamp {t} is not Unix seconds");
}

#[tokio::test]
async fn index_names_the_service() {
    let (_redis, app) = redis_gateway().await;
    let (status, body) = app.get_json("/").await;
    assert_eq!(status, 200);
    assert_eq!(body["service"], "api-gateway");
    assert_eq!(body["docs"], "/api/info");
    assert!(body["message"].is_string());
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn live_and_ready_have_the_original_fields() {
    let (_redis, app) = redis_gateway().await;
    let (status, live) = app.get_json("/health/live").await;
    assert_eq!(status, 200);
    assert_eq!(live["status"], "alive");
    assert_eq!(live["service"], "api-gateway");
    assert_timestamp(&live);

    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["service"], "api-gateway");
    assert_eq!(ready["redis_connected"], true);
    assert_timestamp(&ready);
}

#[tokio::test]
async fn status_counts_requests_in_redis() {
    let (redis, app) = redis_gateway().await;
    let res = app
        .client
        .get(format!("{}/api/status", app.address))
        .send()
        .await
        .expect("GET /api/status");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().expect("ascii"),
        "application/json"
    );
    let first: Value = res.json().await.expect("json");
    assert_eq!(first["service"], "api-gateway");
    assert_eq!(first["status"], "running");
    assert_eq!(first["environment"], "development");
    assert_eq!(first["redis_connected"], true);
    assert_eq!(first["total_requests"], 1);
    assert_timestamp(&first);

    let (_, second) = app.get_json("/api/status").await;
    assert_eq!(second["total_requests"], 2);
    // The original's key, readable by the same name.
    let stored: i64 = redis::cmd("GET")
        .arg("api:total_requests")
        .query_async(&mut redis.client().await)
        .await
        .expect("GET");
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn info_maps_the_endpoints() {
    let (_redis, app) = redis_gateway().await;
    let (status, info) = app.get_json("/api/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["service"], "api-gateway");
    assert!(info["version"].is_string());
    assert_eq!(info["environment"], "development");
    assert_eq!(info["endpoints"]["health"]["liveness"], "/health/live");
    assert_eq!(info["endpoints"]["health"]["readiness"], "/health/ready");
    assert_eq!(info["endpoints"]["api"]["status"], "/api/status");
    assert_eq!(info["endpoints"]["api"]["info"], "/api/info");
    assert_eq!(info["endpoints"]["metrics"], "/metrics");
}

#[tokio::test]
async fn unknown_path_and_wrong_method_answer_json_errors() {
    let app = TestApp::gateway(test_settings(StoreSettings::Memory)).await;
    let (status, body) = app.get_json("/no/such/thing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "Not Found");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("/no/such/thing"))
    );

    let res = app
        .client
        .delete(format!("{}/api/status", app.address))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 405);
    let allow = res
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(
        allow.as_deref(),
        Some("GET, HEAD"),
        "405 says what is allowed"
    );
    let body: Value = res.json().await.expect("405 body is JSON");
    assert_eq!(body["error"], "Method Not Allowed");
}

#[tokio::test]
async fn head_answers_on_every_get_route() {
    let app = TestApp::gateway(test_settings(StoreSettings::Memory)).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    for path in [
        "/",
        "/health/live",
        "/health/ready",
        "/api/status",
        "/api/info",
        "/metrics",
    ] {
        let res = app
            .client
            .head(format!("{}{path}", app.address))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(res.status(), 200, "HEAD {path}");
        assert!(
            res.text().await.expect("body").is_empty(),
            "HEAD {path} has no body"
        );
    }
}

#[tokio::test]
async fn memory_store_serves_the_same_api() {
    let app = TestApp::gateway(test_settings(StoreSettings::Memory)).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    for expected in 1..=3 {
        let (_, body) = app.get_json("/api/status").await;
        assert_eq!(body["total_requests"], expected);
        assert_eq!(body["redis_connected"], true);
    }
    let (_, info) = app.get_json("/api/info").await;
    assert_eq!(info["store"], "memory");
}

#[tokio::test]
async fn gateway_announces_itself_with_a_heartbeat() {
    let (redis, _app) = redis_gateway().await;
    let store = svc::store::redis::RedisStore::new(&redis.settings(), "svc:").expect("store");
    let instances = crate::helpers::eventually(Duration::from_secs(5), "a heartbeat", || async {
        let live = svc::store::Presence::instances(&store).await.ok()?;
        (!live.is_empty()).then_some(live)
    })
    .await;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].role, svc::service::Role::Gateway);
    assert_eq!(instances[0].version, env!("CARGO_PKG_VERSION"));
    assert!(
        instances[0]
            .id
            .ends_with(&format!("-{}", std::process::id()))
    );
}
