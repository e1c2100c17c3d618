//! The job queue: delivered in order, finished jobs counted in the original's keys,
//! kept-alive deliveries kept, idle ones reclaimed by another consumer, dead ones
//! dead-lettered with their record kept, reclaim scans covering a long pending list.

use std::time::Duration;

use svc::jobs::{JobRecord, JobSpec, JobState};
use svc::store::{Delivery, QueueStats, RECLAIM_START, SharedStore};

async fn contract(store: SharedStore) {
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
    done.start("c1", 40.0).expect("start");
    done.succeed(serde_json::json!({}), 42.5).expect("succeed");
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
    dead.start("c2", 41.0).expect("start");
    assert_eq!(dead.fail("boom".into(), 1, 43.0), Ok(JobState::Dead));
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

crate::store::on_both_backends!(contract);
