//! What only the Redis backend has: every new key under its prefix with a TTL, and
//! failures (a wrong password, no server) that are errors, said plainly, not hangs.

use std::time::Duration;

use svc::service::Service;
use svc::store::redis::RedisStore;
use svc::store::{History, Presence, Store};

use super::history::sample;
use super::presence::instance;
use crate::helpers::RedisServer;

#[tokio::test]
async fn redis_store_keeps_new_keys_under_its_prefix_with_a_ttl() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.settings(), "test-prefix:").expect("store");
    store
        .heartbeat(&instance("a"), Duration::from_secs(30))
        .await
        .expect("beat");
    store
        .record_health(&sample(Service::Redis, 2), 10)
        .await
        .expect("record");
    store.series_add("requests", 1, 1).await.expect("add");
    store
        .claim("tick:9", Duration::from_secs(30))
        .await
        .expect("claim");
    let mut conn = redis.client().await;
    let keys = redis.keys("*").await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    for key in keys {
        assert!(
            key.starts_with("test-prefix:"),
            "{key} is outside the prefix"
        );
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TTL");
        assert!(ttl > 0, "{key} has no TTL");
    }
}

#[tokio::test]
async fn redis_store_with_a_wrong_password_is_an_error_not_a_hang() {
    let redis = RedisServer::start();
    let mut settings = redis.settings();
    settings.password = Some("wrong".parse().expect("infallible"));
    let store = RedisStore::new(&settings, "svc:").expect("store");
    let err = store.ping().await.expect_err("wrong password").to_string();
    assert!(err.contains("authentication"), "{err}");
    assert!(
        !err.contains("wrong"),
        "the password it tried is not shown: {err}"
    );
}

#[tokio::test]
async fn redis_store_reports_a_missing_server() {
    let redis = RedisServer::start();
    let settings = redis.settings();
    drop(redis);
    let store = RedisStore::new(&settings, "svc:").expect("building the pool never connects");
    assert!(store.incr("k").await.is_err());
}
