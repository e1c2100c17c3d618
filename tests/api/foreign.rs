//! Foreign values under the keys the roles read: each figure that depends on a wrong
//! key fails alone and names the key; `redis_connected` still means the connection.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use svc::config::StoreSettings;
use svc::roles::dashboard;
use svc::store::SharedStore;
use svc::store::redis::RedisStore;
use url::Url;

use crate::helpers::{RedisServer, TestApp, eventually, test_settings};

async fn poke(redis: &RedisServer, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd
        .query_async(&mut redis.client().await)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

#[tokio::test]
async fn a_counter_of_the_wrong_type_does_not_read_as_a_lost_connection() {
    let redis = RedisServer::start();
    poke(&redis, &["HSET", "api:total_requests", "a", "1"]).await;
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(10)).await;
    let (status, body) = app.get_json("/api/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redis_connected"], true, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("api:total_requests")),
        "the answer names the key: {body}"
    );
}

#[tokio::test]
async fn the_dashboard_shows_every_figure_it_can_and_names_the_wrong_keys() {
    let redis = RedisServer::start();
    poke(&redis, &["HSET", "api:total_requests", "a", "1"]).await;
    poke(
        &redis,
        &["HSET", "svc:series:requests", "not-a-minute", "x"],
    )
    .await;
    poke(&redis, &["SET", "svc:instances", "not a set"]).await;
    poke(&redis, &["SET", "worker:tasks:cleanup", "7"]).await;
    let store: SharedStore = Arc::new(RedisStore::new(&redis.settings(), "svc:").expect("store"));
    let closed = Url::parse("http://127.0.0.1:9").expect("url");
    let config =
        dashboard::Config::new(closed.clone(), closed, Duration::from_secs(1)).expect("config");
    let app = TestApp::dashboard(
        test_settings(StoreSettings::Redis(redis.settings())),
        config,
        store,
    )
    .await;
    let info: Value = eventually(Duration::from_secs(10), "system info", || async {
        let (status, info) = app.get_json("/api/system-info").await;
        (status == 200 && info["redis_connected"] == true).then_some(info)
    })
    .await;
    assert_eq!(info["task_stats"]["cleanup"], 7, "{info}");
    assert_eq!(info["total_requests"], Value::Null, "{info}");
    let errors = info["errors"].to_string();
    for key in ["api:total_requests", "svc:series:requests", "svc:instances"] {
        assert!(errors.contains(key), "{key} is not named: {info}");
    }
    let (_, page) = app.get("/").await;
    assert!(!page.contains("Is the worker running?"), "{page}");
    assert!(
        page.contains("api:total_requests"),
        "the page names the key: {page}"
    );
}

#[tokio::test]
async fn the_worker_rolls_and_probes_what_it_can_around_a_foreign_value() {
    let redis = RedisServer::start();
    poke(&redis, &["HSET", "api:total_requests", "a", "1"]).await;
    poke(&redis, &["SET", "svc:instances", "not a set"]).await;
    poke(&redis, &["SET", "worker:tasks:cleanup", "7"]).await;
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(10)).await;
    let _worker = crate::helpers::worker_process(&redis, &[("WORKER_INTERVAL", "24h")]).await;
    let rolled = app.submit(r#"{"type":"metrics_collection"}"#).await;
    let probed = app.submit(r#"{"type":"health_check"}"#).await;
    let rolled = app
        .job_in_state(&rolled, "done", Duration::from_secs(20))
        .await;
    assert_eq!(rolled["result"]["tasks"]["cleanup"], 7, "{rolled}");
    assert!(
        rolled["result"]["errors"]
            .to_string()
            .contains("api:total_requests"),
        "{rolled}"
    );
    let probed = app
        .job_in_state(&probed, "done", Duration::from_secs(20))
        .await;
    assert_eq!(probed["result"]["worker-service"], "degraded", "{probed}");
    let recorded: i64 = redis::cmd("LLEN")
        .arg("svc:health:redis")
        .query_async(&mut redis.client().await)
        .await
        .expect("LLEN");
    assert_eq!(recorded, 1);
}
