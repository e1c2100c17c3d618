//! One contract, both backends: what the roles rely on behaves the same on Redis and
//! on the embedded store.

use std::sync::Arc;
use std::time::Duration;

use svc::jobs::{JobRecord, JobSpec, JobState};
use svc::service::{Role, Service};
use svc::store::redis::RedisStore;
use svc::store::{
    Delivery, HealthSample, Incident, Instance, QueueStats, RECLAIM_START, ServiceState,
    SharedStore, Store, memory::MemoryStore,
};

use crate::helpers::RedisServer;

fn instance(id: &str) -> Instance {
    Instance {
        role: Role::Worker,
        id: id.into(),
        version: "1.0.0".into(),
        started_at: 1.0e9,
        address: Some("10.0.0.1:8081".into()),
        faults: Vec::new(),
    }
}

fn sample(service: Service, n: u32) -> HealthSample {
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
    store.ping().await.expect("ping");

    // Strings and counters.
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
    assert!(
        store
            .claim("tick:1", Duration::from_millis(150))
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim("tick:1", Duration::from_millis(150))
            .await
            .expect("claim")
    );
    assert!(
        store
            .claim("tick:2", Duration::from_secs(5))
            .await
            .expect("other claim")
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        store
            .claim("tick:1", Duration::from_secs(5))
            .await
            .expect("reclaim")
    );

    // Heartbeats: expired instances vanish, a repeated beat is one instance.
    let (a, b) = (instance("a"), instance("b"));
    store
        .heartbeat(&a, Duration::from_secs(30))
        .await
        .expect("beat a");
    store
        .heartbeat(&b, Duration::from_millis(150))
        .await
        .expect("beat b");
    store
        .heartbeat(&a, Duration::from_secs(30))
        .await
        .expect("beat a again");
    let mut live = store.instances().await.expect("instances");
    live.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(live, vec![a.clone(), b]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.instances().await.expect("instances"), vec![a.clone()]);

    // Lost and departed: a beat that expired is lost for a while; a departure is gone.
    let lost = store
        .lost_instances(Duration::from_secs(60))
        .await
        .expect("lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].0.id, "b");
    assert!(
        store
            .lost_instances(Duration::ZERO)
            .await
            .expect("lost")
            .is_empty()
    );
    store.depart(&a).await.expect("depart");
    assert!(store.instances().await.expect("instances").is_empty());
    let lost = store
        .lost_instances(Duration::from_secs(60))
        .await
        .expect("lost");
    assert!(lost.iter().all(|(i, _)| i.id != "a"), "{lost:?}");

    // Incidents: each change ends the open one; a repeat is ignored; newest first.
    let change = |service: Service, from, to, at: f64| Incident {
        service: service.into(),
        from: Some(from),
        to,
        started_at: at,
        ended_at: None,
        reason: Some(format!("at {at}")),
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

    // Health history: newest first, bounded.
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
    assert_eq!(
        store
            .health_history(Service::ApiGateway, 1)
            .await
            .expect("history")
            .len(),
        1
    );
    assert!(
        store
            .health_history(Service::Dashboard, 10)
            .await
            .expect("history")
            .is_empty()
    );

    // Per-minute series.
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
    let err = store
        .roll_up("s", "x", 20)
        .await
        .expect_err("a counter that is no number");
    assert!(err.to_string().contains('s'), "{err}");
}

async fn queue_contract(store: SharedStore) {
    let empty = store.queue_stats().await.expect("stats of no queue");
    assert_eq!(empty, QueueStats::default());
    let jobs: Vec<JobRecord> = (0..3)
        .map(|_| JobRecord::new(JobSpec::HealthCheck {}, 1.0))
        .collect();
    for job in &jobs {
        assert!(store.enqueue(job).await.expect("enqueue"));
    }
    assert_eq!(store.queue_stats().await.expect("stats").depth, 3);
    let loaded = store.load_job(&jobs[0].id).await.expect("load");
    assert_eq!(
        loaded.as_deref().map(JobRecord::decode),
        Some(Ok(jobs[0].clone()))
    );
    assert_eq!(store.load_job("no-such-job").await.expect("load"), None);

    let first = store
        .receive("c1", 2, Duration::from_millis(10))
        .await
        .expect("receive");
    let ids: Vec<_> = first.iter().map(|d| d.job_id.clone()).collect();
    assert_eq!(
        ids,
        vec![Some(jobs[0].id.clone()), Some(jobs[1].id.clone())],
        "delivered in order"
    );
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!((stats.depth, stats.pending), (1, 2));

    // Done: acknowledged and counted in the original's keys.
    let mut done = jobs[0].clone();
    done.state = JobState::Done;
    done.finished_at = Some(42.5);
    store.finish(&first[0], &done).await.expect("finish done");
    assert_eq!(
        store
            .get("worker:tasks:health_check")
            .await
            .expect("get")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        store.get("worker:last_task").await.expect("get").as_deref(),
        Some("health_check")
    );
    assert_eq!(
        store
            .get("worker:last_task_time")
            .await
            .expect("get")
            .as_deref(),
        Some("42.5")
    );
    let loaded = store.load_job(&done.id).await.expect("load");
    assert_eq!(loaded.as_deref().map(JobRecord::decode), Some(Ok(done)));

    // A consumer that keeps its delivery alive keeps it.
    tokio::time::sleep(Duration::from_millis(120)).await;
    store.keep_alive("c1", &first[1]).await.expect("keep alive");
    assert!(
        store
            .reclaim("c2", Duration::from_millis(100), 10, RECLAIM_START)
            .await
            .expect("reclaim")
            .deliveries
            .is_empty()
    );

    // Unfinished deliveries come back after the idle time, to another consumer.
    assert!(
        store
            .reclaim("c2", Duration::from_secs(60), 10, RECLAIM_START)
            .await
            .expect("reclaim")
            .deliveries
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let again = store
        .reclaim("c2", Duration::from_millis(100), 10, RECLAIM_START)
        .await
        .expect("reclaim")
        .deliveries;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job_id.as_ref(), Some(&jobs[1].id));

    // Dead: acknowledged and in the dead-letter stream.
    let mut dead = jobs[1].clone();
    dead.state = JobState::Dead;
    dead.error = Some("boom".into());
    store.finish(&again[0], &dead).await.expect("finish dead");
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(
        stats,
        QueueStats {
            depth: 1,
            pending: 0,
            dead_letters: 1
        }
    );
    assert_eq!(
        store
            .get("worker:tasks:health_check")
            .await
            .expect("get")
            .as_deref(),
        Some("1")
    );

    // A waiting consumer gets a job enqueued while it waits.
    let rest = store
        .receive("c1", 10, Duration::from_millis(10))
        .await
        .expect("receive");
    assert_eq!(rest.len(), 1);
    let late = JobRecord::new(JobSpec::Cleanup {}, 2.0);
    let (received, ()) = tokio::join!(store.receive("c1", 10, Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(store.enqueue(&late).await.expect("enqueue late"));
    });
    assert_eq!(
        received.expect("receive")[0].job_id.as_ref(),
        Some(&late.id)
    );
    let start = std::time::Instant::now();
    let nothing = store
        .receive("c1", 10, Duration::from_millis(100))
        .await
        .expect("receive");
    assert!(nothing.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(90), "did not wait");

    assert_eq!(store.trim_dead_letters(0).await.expect("trim"), 1);
    assert_eq!(store.queue_stats().await.expect("stats").dead_letters, 0);

    // A delivery that cannot run is dead-lettered, its record marked and kept.
    let before = store.queue_stats().await.expect("stats");
    let odd = JobRecord::new(JobSpec::Cleanup {}, 3.0);
    assert!(store.enqueue(&odd).await.expect("enqueue"));
    let taken = store
        .receive("c1", 10, Duration::from_millis(10))
        .await
        .expect("receive");
    store.reject(&taken[0], "cannot run").await.expect("reject");
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.dead_letters),
        (before.pending, before.dead_letters + 1)
    );
    let marked = store.load_job(&odd.id).await.expect("load").expect("kept");
    let marked: serde_json::Value = serde_json::from_str(&marked).expect("json");
    assert_eq!(marked["state"], "dead");
    assert_eq!(marked["error"], "cannot run");
    let nameless = Delivery {
        entry: "999999-0".into(),
        job_id: None,
    };
    store
        .reject(&nameless, "no job id")
        .await
        .expect("reject nameless");

    // Reclaim scans go on from their cursor: a long pending list is covered in parts.
    let many: Vec<JobRecord> = (0..5)
        .map(|_| JobRecord::new(JobSpec::Cleanup {}, 4.0))
        .collect();
    for job in &many {
        assert!(store.enqueue(job).await.expect("enqueue"));
    }
    assert_eq!(
        store
            .receive("c1", 10, Duration::from_millis(10))
            .await
            .expect("receive")
            .len(),
        5
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let mut cursor = RECLAIM_START.to_owned();
    let mut reclaimed = Vec::new();
    for _ in 0..10 {
        let part = store
            .reclaim("c3", Duration::from_millis(100), 2, &cursor)
            .await
            .expect("reclaim");
        assert!(part.deliveries.len() <= 2);
        reclaimed.extend(part.deliveries);
        cursor = part.cursor;
        if cursor == RECLAIM_START {
            break;
        }
    }
    // Every pending delivery was reached (the five and two left from above), once.
    let ids: std::collections::HashSet<_> =
        reclaimed.iter().filter_map(|d| d.job_id.clone()).collect();
    assert_eq!(ids.len(), reclaimed.len(), "{reclaimed:?}");
    assert!(many.iter().all(|j| ids.contains(&j.id)), "{reclaimed:?}");
}

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
    tokio::time::sleep(Duration::from_millis(60)).await;
    crate::helpers::eventually(Duration::from_secs(5), "expired keys freed", || async {
        (store.key_count() == 0).then_some(())
    })
    .await;
}

/// Targets: thresholds decide each change once, overtaken probes are dropped, and
/// reports read back state, samples and uptime.
async fn targets_contract(store: SharedStore) {
    use ServiceState::{Down, Healthy};
    use svc::store::targets::{self, TargetSample, Thresholds};
    let rules = Thresholds {
        failure: 2,
        success: 1,
    };
    let now = svc::clock::unix_now();
    let at = move |tick: u64, status| TargetSample {
        timestamp: now - 60.0 + tick as f64,
        status,
        response_time_ms: Some(tick as f64),
        error: (status == Down).then(|| "HTTP 500".to_owned()),
    };
    let observe = |tick, status| {
        let store = store.clone();
        async move {
            targets::observe(store.as_ref(), "web", tick, at(tick, status), rules)
                .await
                .expect("observe")
        }
    };
    let first = observe(1, Healthy).await.expect("a first verdict");
    assert_eq!(
        (first.from, first.to, first.notifies()),
        (None, Healthy, false)
    );
    // Not handed on yet: the next probe gives it again.
    assert_eq!(
        observe(2, Healthy).await.map(|c| c.id),
        Some(first.id.clone())
    );
    targets::hand_off(store.as_ref(), "web", &first.id)
        .await
        .expect("hand off");
    assert_eq!(observe(3, Healthy).await, None);
    assert_eq!(
        observe(4, Down).await,
        None,
        "one failure is below the threshold"
    );
    let down = observe(5, Down).await.expect("down after two failures");
    assert_eq!((down.from, down.to), (Some(Healthy), Down));
    assert_eq!(down.reason.as_deref(), Some("HTTP 500"));
    assert!(down.notifies());
    assert_eq!(
        observe(5, Healthy).await,
        None,
        "an overtaken probe is dropped"
    );

    let names = ["web".to_owned(), "never-probed".to_owned()];
    let reports = store.target_reports(&names, now).await.expect("reports");
    let web = &reports[0];
    let state = web.state.as_ref().expect("state");
    assert_eq!((state.status, state.tick), (Some(Down), 5));
    assert_eq!(web.samples.len(), 5);
    assert_eq!(web.samples[0].response_time_ms, Some(5.0), "newest first");
    assert_eq!(web.uptime_1h, Some(60.0));
    assert_eq!(web.uptime_24h, Some(60.0));
    assert_eq!(reports[1].state, None);
    assert!(reports[1].samples.is_empty());
    assert_eq!(reports[1].uptime_1h, None);

    // Concurrent writers: every one lands or is overtaken, none is lost to a race.
    let writers: Vec<_> = (100..110)
        .map(|tick| tokio::spawn(observe(tick, Healthy)))
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let reports = store
        .target_reports(&names[..1], now)
        .await
        .expect("reports");
    assert_eq!(reports[0].state.as_ref().map(|s| s.tick), Some(109));
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(Arc::new(MemoryStore::new())).await;
    queue_contract(Arc::new(MemoryStore::new())).await;
    targets_contract(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let redis = RedisServer::start();
    contract(Arc::new(
        RedisStore::new(&redis.settings(), "svc:").expect("store"),
    ))
    .await;
    queue_contract(Arc::new(
        RedisStore::new(&redis.settings(), "q:").expect("store"),
    ))
    .await;
    targets_contract(Arc::new(
        RedisStore::new(&redis.settings(), "t:").expect("store"),
    ))
    .await;
}

#[tokio::test]
async fn a_foreign_value_under_a_target_key_is_named_and_left_alone() {
    use svc::store::targets::{self, TargetSample, Thresholds};
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.settings(), "svc:").expect("store");
    let mut conn = redis.client().await;
    let _: () = redis::cmd("HSET")
        .arg("svc:target:web")
        .arg("a")
        .arg("b")
        .query_async(&mut conn)
        .await
        .expect("HSET");
    let sample = TargetSample {
        timestamp: svc::clock::unix_now(),
        status: ServiceState::Healthy,
        response_time_ms: None,
        error: None,
    };
    let rules = Thresholds {
        failure: 1,
        success: 1,
    };
    let err = targets::observe(&store, "web", 1, sample, rules)
        .await
        .expect_err("a hash is no target state");
    assert!(err.to_string().contains("svc:target:web"), "{err}");
    let reports = store
        .target_reports(&["web".to_owned(), "other".to_owned()], 0.0)
        .await
        .expect("the other targets still read");
    assert!(reports[0].error.is_some(), "{:?}", reports[0]);
    assert_eq!(reports[1].error, None);
    let kind: String = redis::cmd("TYPE")
        .arg("svc:target:web")
        .query_async(&mut conn)
        .await
        .expect("TYPE");
    assert_eq!(kind, "hash", "left as it was");
}

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
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
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
