//! Counters, strings and claims (first one wins until it expires).

use std::time::Duration;

use svc::store::SharedStore;
use svc::store::Store;
use svc::store::memory::MemoryStore;

async fn contract(store: SharedStore) {
    store.ping().await.expect("ping");

    assert_eq!(store.get("k").await.expect("get absent"), None);
    assert_eq!(store.incr("k").await.expect("incr"), 1);
    assert_eq!(store.incr("k").await.expect("incr"), 2);
    assert_eq!(store.get("k").await.expect("get").as_deref(), Some("2"));
    assert_eq!(store.incr("other").await.expect("incr other"), 1);
    store.set("s", "text").await.expect("set");
    assert_eq!(store.get("s").await.expect("get").as_deref(), Some("text"));
    assert!(
        store.incr("s").await.is_err(),
        "INCR of a non-integer must fail"
    );

    // Claims: first one wins until the claim expires.
    let claim = |key: &'static str, ms: u64| {
        let store = store.clone();
        async move {
            store
                .claim(key, Duration::from_millis(ms))
                .await
                .expect("claim")
        }
    };
    assert!(claim("tick:1", 150).await);
    assert!(!claim("tick:1", 150).await);
    assert!(claim("tick:2", 5000).await);
    // The claim's own expiry is what is tested: wait past it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(claim("tick:1", 5000).await);
}

crate::store::on_both_backends!(contract);

#[tokio::test]
async fn the_embedded_store_frees_expired_keys_nobody_reads() {
    let store = MemoryStore::start();
    for n in 0..1000 {
        assert!(
            store
                .claim(&format!("tick:{n}"), Duration::from_millis(50))
                .await
                .expect("claim")
        );
    }
    assert_eq!(store.key_count(), 1000);
    crate::helpers::eventually(Duration::from_secs(5), "expired keys freed", || async {
        (store.key_count() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_purge_task_does_not_keep_the_embedded_store_alive() {
    let store = MemoryStore::start();
    let weak = std::sync::Arc::downgrade(&store);
    drop(store);
    assert!(weak.upgrade().is_none(), "the purge task holds no handle");
}
