//! One contract per concern of the store, each run on both backends: what the roles
//! rely on behaves the same on Redis and on the embedded store. Then what only the
//! Redis backend has: a key prefix with TTLs, and failures an operator can read.

mod history;
mod kv;
mod locations;
mod presence;
mod queue;
mod redis;
mod targets;

/// Runs the contract `$contract` (an `async fn(SharedStore)`) as two tests, one per
/// backend: `on_the_embedded_store` and `on_redis` (a `redis-server` of its own).
macro_rules! on_both_backends {
    ($contract:path) => {
        #[tokio::test]
        async fn on_the_embedded_store() {
            $contract(std::sync::Arc::new(svc::store::memory::MemoryStore::new())).await;
        }

        #[tokio::test]
        async fn on_redis() {
            let redis = crate::helpers::RedisServer::start();
            let store =
                svc::store::redis::RedisStore::new(&redis.settings(), "svc:").expect("store");
            $contract(std::sync::Arc::new(store)).await;
        }
    };
}
pub(crate) use on_both_backends;
