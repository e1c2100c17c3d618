//! History: incidents (each change ends the open one, a repeat is ignored, old ones
//! go), probe results (newest first, bounded), per-minute series and roll-ups (what a
//! counter gained, once); and retention covering every series the roles write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use svc::jobs::JobSpec;
use svc::probe::Probe;
use svc::roles::dashboard::record::Recorder;
use svc::roles::worker::tasks::{self, SERIES_RETENTION_MINUTES, TaskContext};
use svc::service::{Service, ServiceState};
use svc::store::{HealthSample, Incident, SharedStore, keys, series};

pub(super) fn sample(service: Service, n: u32) -> HealthSample {
    HealthSample {
        service,
        timestamp: f64::from(n),
        status: if n.is_multiple_of(2) {
            ServiceState::Healthy
        } else {
            ServiceState::Down
        },
        response_time_ms: Some(f64::from(n) / 2.0),
        error: (n % 2 == 1).then(|| format!("error {n}")),
    }
}

async fn contract(store: SharedStore) {
    incidents(&store).await;
    health_history(&store).await;
    series_and_roll_ups(&store).await;
}

crate::store::on_both_backends!(contract);

async fn incidents(store: &SharedStore) {
    let change = |service: Service, from, to, at: f64| Incident {
        service: service.into(),
        from: Some(from),
        to,
        started_at: at,
        ended_at: None,
        reason: Some(format!("at {at}")),
        maintenance: None,
    };
    // Whole seconds: JSON keeps them exactly.
    let now = svc::clock::unix_now().floor();
    use ServiceState::{Degraded, Down, Healthy};
    store
        .state_change(&change(Service::Redis, Healthy, Healthy, now - 50.0))
        .await
        .expect("no incident");
    assert!(store.incidents(10).await.expect("incidents").is_empty());
    for c in [
        change(Service::Redis, Healthy, Down, now - 40.0),
        change(Service::Redis, Down, Down, now - 35.0),
        change(Service::Worker, Healthy, Degraded, now - 30.0),
        change(Service::Redis, Down, Degraded, now - 20.0),
        change(Service::Redis, Degraded, Healthy, now - 10.0),
    ] {
        store.state_change(&c).await.expect("state change");
    }
    let incidents = store.incidents(10).await.expect("incidents");
    let seen: Vec<_> = incidents
        .iter()
        .map(|i| (i.service.as_str(), i.to, i.started_at, i.ended_at))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("redis", Degraded, now - 20.0, Some(now - 10.0)),
            ("worker-service", Degraded, now - 30.0, None),
            ("redis", Down, now - 40.0, Some(now - 20.0)),
        ]
    );
    assert_eq!(
        incidents[2].reason.as_deref(),
        Some(format!("at {}", now - 40.0).as_str())
    );
    assert_eq!(store.incidents(1).await.expect("incidents").len(), 1);
    // Older than the kept days: dropped on the next change.
    let old = now - 31.0 * 86400.0;
    store
        .state_change(&change(Service::Dashboard, Healthy, Down, old))
        .await
        .expect("old change");
    assert_eq!(store.incidents(10).await.expect("incidents").len(), 3);
}

async fn health_history(store: &SharedStore) {
    for n in 1..=5 {
        store
            .record_health(&sample(Service::ApiGateway, n), 3)
            .await
            .expect("record");
    }
    store
        .record_health(&sample(Service::Redis, 9), 3)
        .await
        .expect("record");
    let history = store
        .health_history(Service::ApiGateway, 10)
        .await
        .expect("history");
    assert_eq!(
        history,
        vec![
            sample(Service::ApiGateway, 5),
            sample(Service::ApiGateway, 4),
            sample(Service::ApiGateway, 3)
        ]
    );
    let newest = store
        .health_history(Service::ApiGateway, 1)
        .await
        .expect("history");
    assert_eq!(newest, vec![sample(Service::ApiGateway, 5)]);
    assert!(
        store
            .health_history(Service::Dashboard, 10)
            .await
            .expect("history")
            .is_empty()
    );
}

async fn series_and_roll_ups(store: &SharedStore) {
    store.series_add("requests", 10, 1).await.expect("add");
    store.series_add("requests", 10, 2).await.expect("add");
    store.series_set("requests", 11, 5).await.expect("set");
    store.series_set("requests", 12, 7).await.expect("set");
    store
        .series_set("requests", 12, 6)
        .await
        .expect("overwrite");
    assert_eq!(
        store.series("requests", 0).await.expect("series"),
        vec![(10, 3), (11, 5), (12, 6)]
    );
    assert_eq!(
        store.series("requests", 11).await.expect("series"),
        vec![(11, 5), (12, 6)]
    );
    assert_eq!(store.series_trim("requests", 12).await.expect("trim"), 2);
    assert_eq!(
        store.series("requests", 0).await.expect("series"),
        vec![(12, 6)]
    );
    assert!(store.series("nothing", 0).await.expect("series").is_empty());

    // Roll-ups: what a counter gained, once, however often it is rolled.
    for _ in 0..5 {
        store.incr("rolled").await.expect("incr");
    }
    assert_eq!(
        store.roll_up("rolled", "rolled", 20).await.expect("roll"),
        5
    );
    assert_eq!(
        store.roll_up("rolled", "rolled", 20).await.expect("again"),
        0
    );
    store.incr("rolled").await.expect("incr");
    assert_eq!(
        store.roll_up("rolled", "rolled", 21).await.expect("roll"),
        1
    );
    assert_eq!(
        store.series("rolled", 0).await.expect("series"),
        vec![(20, 5), (21, 1)]
    );
    assert_eq!(
        store.roll_up("never-counted", "x", 20).await.expect("roll"),
        0
    );
    store.set("text", "not a number").await.expect("set");
    let err = store
        .roll_up("text", "x", 20)
        .await
        .expect_err("a counter that is no number");
    assert!(err.to_string().contains("text"), "{err}");
}

/// The series the worker's tasks and the dashboard's recorder really write (read back
/// from Redis, not from the list retention uses) are all trimmed by `cleanup`.
#[tokio::test]
async fn cleanup_trims_every_series_the_roles_write() {
    let redis = crate::helpers::RedisServer::start();
    let store: SharedStore =
        Arc::new(svc::store::redis::RedisStore::new(&redis.settings(), "svc:").expect("store"));
    let now = svc::clock::unix_now();

    // The dashboard's recorder: one round of probes two minutes ago, flushed.
    let mut recorder = Recorder::default();
    let probes: Vec<Probe> = Service::ALL
        .into_iter()
        .map(|s| Probe::new(s, ServiceState::Healthy))
        .collect();
    recorder.observe(now - 120.0, &probes);
    recorder.flush(&store, now).await.expect("flush");

    // The worker's metrics_collection, with every counter it rolls up moved.
    store.incr(keys::TOTAL_REQUESTS).await.expect("incr");
    for task in svc::jobs::TaskType::ALL {
        store
            .incr(&keys::worker_tasks(task.as_str()))
            .await
            .expect("incr");
    }
    let ctx = TaskContext {
        instance: "test".into(),
        store: store.clone(),
        http: svc::probe::client().expect("client"),
        gateway_url: "http://127.0.0.1:9/".parse().expect("url"),
        dashboard_url: "http://127.0.0.1:9/".parse().expect("url"),
        cpu: Arc::new(tokio::sync::Semaphore::new(1)),
        cancel: Arc::new(AtomicBool::new(false)),
        targets: None,
    };
    tasks::run(&JobSpec::MetricsCollection {}, &ctx)
        .await
        .expect("metrics_collection");

    let written: BTreeSet<String> = redis
        .keys("svc:series:*")
        .await
        .iter()
        .filter_map(|k| k.strip_prefix("svc:series:"))
        .map(str::to_owned)
        .collect();
    // Something of each writer, so the check below is about real writes.
    for expected in [
        series::REQUESTS.to_owned(),
        series::QUEUE_DEPTH.to_owned(),
        series::tasks("cleanup"),
        series::checks("redis"),
        series::up("api-gateway"),
    ] {
        assert!(written.contains(&expected), "{expected} in {written:?}");
    }

    // A point older than retention in each written series; cleanup removes them all.
    let old = svc::clock::minute_of(now) - SERIES_RETENTION_MINUTES - 10;
    for name in &written {
        store.series_set(name, old, 1).await.expect("old point");
    }
    tasks::run(&JobSpec::Cleanup {}, &ctx)
        .await
        .expect("cleanup");
    for name in &written {
        let left = store.series(name, 0).await.expect("series");
        assert!(
            left.iter().all(|(minute, _)| *minute > old),
            "cleanup left {name} older than retention: {left:?}"
        );
    }
}
