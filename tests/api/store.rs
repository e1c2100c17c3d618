//! One contract, both backends: what the roles rely on behaves the same on Redis and
//! on the embedded store.

use svc::store::redis::RedisStore;
use svc::store::{SharedStore, memory::MemoryStore};

use crate::helpers::RedisServer;

async fn contract(store: SharedStore) {
    store.ping().await.expect("ping");
    assert_eq!(store.get("k").await.expect("get absent"), None);
    assert_eq!(store.incr("k").await.expect("incr"), 1);
    assert_eq!(store.incr("k").await.expect("incr"), 2);
    assert_eq!(store.get("k").await.expect("get").as_deref(), Some("2"));
    assert_eq!(store.incr("other").await.expect("incr other"), 1);
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(std::sync::Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let redis = RedisServer::start();
    contract(std::sync::Arc::new(
        RedisStore::new(&redis.settings()).expect("store"),
    ))
    .await;
}

#[tokio::test]
async fn redis_store_with_a_wrong_password_is_an_error_not_a_hang() {
    let redis = RedisServer::start();
    let mut settings = redis.settings();
    settings.password = Some("wrong".parse().expect("infallible"));
    let store = RedisStore::new(&settings).expect("store");
    let err = svc::store::Store::ping(&store)
        .await
        .expect_err("wrong password");
    assert!(!err.to_string().contains(&redis.password));
}

#[tokio::test]
async fn redis_store_reports_a_missing_server() {
    let redis = RedisServer::start();
    let settings = redis.settings();
    drop(redis);
    let store = RedisStore::new(&settings).expect("building the pool never connects");
    assert!(svc::store::Store::incr(&store, "k").await.is_err());
}
