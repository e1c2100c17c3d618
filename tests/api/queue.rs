//! The job queue under version skew, foreign data and concurrency: a record written by
//! another version or edited by hand never vanishes and never kills a worker, malformed
//! stream entries never starve redelivery, a delivery never waits unprotected, and a
//! rollup counts every request once.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{RedisServer, eventually, worker_process};

/// A long interval: no periodic job gets in the way of what a test submits.
const QUIET: (&str, &str) = ("WORKER_INTERVAL", "24h");

use crate::helpers::ready_gateway as gateway;

/// Writes a job record as raw JSON and puts it on the stream, as another version (or a
/// person with redis-cli) would.
async fn inject(redis: &RedisServer, record: &Value) -> String {
    let id = record["id"].as_str().expect("id").to_owned();
    let mut conn = redis.client().await;
    let () = redis::cmd("SET")
        .arg(format!("svc:job:{id}"))
        .arg(record.to_string())
        .query_async(&mut conn)
        .await
        .expect("SET");
    let _: String = redis::cmd("XADD")
        .arg("svc:jobs")
        .arg("*")
        .arg("job")
        .arg(&id)
        .query_async(&mut conn)
        .await
        .expect("XADD");
    id
}

fn queued(id: &str, spec: Value) -> Value {
    let mut record = json!({
        "id": id, "state": "queued", "attempts": 0, "created_at": 1.0,
    });
    if let (Some(r), Some(s)) = (record.as_object_mut(), spec.as_object()) {
        r.extend(s.clone());
    }
    record
}

async fn xlen(redis: &RedisServer, key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut redis.client().await)
        .await
        .expect("XLEN")
}

async fn dead_letter_errors(redis: &RedisServer) -> Vec<String> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("svc:jobs:dead")
        .arg("-")
        .arg("+")
        .query_async(&mut redis.client().await)
        .await
        .expect("XRANGE");
    entries
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter(|(k, _)| k == "error")
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test]
async fn a_record_from_a_newer_version_is_processed_and_keeps_its_fields() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let _worker = worker_process(&redis, &[QUIET]).await;
    let id = inject(
        &redis,
        &queued(
            "from-a-newer-version",
            json!({"type": "data_processing", "size": 10, "priority": "high", "labels": {"team": "a"}}),
        ),
    )
    .await;
    let job = app.job_in_state(&id, "done", Duration::from_secs(20)).await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["priority"], "high", "unknown fields are kept: {job}");
    assert_eq!(job["labels"]["team"], "a", "{job}");
}

#[tokio::test]
async fn a_record_edited_to_an_absurd_size_is_dead_lettered_and_the_worker_lives() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let mut worker = worker_process(&redis, &[QUIET]).await;
    let id = inject(
        &redis,
        &queued(
            "edited",
            json!({"type": "data_processing", "size": 4_294_967_295u64}),
        ),
    )
    .await;
    eventually(Duration::from_secs(20), "a dead letter", || async {
        (xlen(&redis, "svc:jobs:dead").await == 1).then_some(())
    })
    .await;
    assert!(
        worker.child.try_wait().expect("try_wait").is_none(),
        "the worker died: {}",
        worker.output()
    );
    let errors = dead_letter_errors(&redis).await;
    assert!(errors[0].contains("size"), "{errors:?}");
    let (status, body) = app.get_json(&format!("/api/jobs/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "dead", "{body}");
    // The worker goes on with good jobs.
    let good = app.submit(r#"{"type":"data_processing","size":10}"#).await;
    app.job_in_state(&good, "done", Duration::from_secs(20))
        .await;
    assert_eq!(xlen(&redis, "svc:jobs").await, 0, "nothing is left pending");
}

#[tokio::test]
async fn malformed_entries_do_not_starve_the_jobs_of_a_dead_worker() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let mut conn = redis.client().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("svc:jobs")
        .arg("workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .expect("XGROUP");
    // A hundred entries nobody can run, then forty jobs, all delivered to a consumer
    // that died before finishing any of them.
    for n in 0..100 {
        let _: String = redis::cmd("XADD")
            .arg("svc:jobs")
            .arg("*")
            .arg("garbage")
            .arg(n)
            .query_async(&mut conn)
            .await
            .expect("XADD");
    }
    let mut ids = Vec::new();
    for n in 0..40 {
        let id = format!("orphan-{n}");
        let mut record = queued(&id, json!({"type": "cleanup"}));
        record["state"] = json!("running");
        record["attempts"] = json!(1);
        let mut set = redis::cmd("SET");
        set.arg(format!("svc:job:{id}")).arg(record.to_string());
        let () = set.query_async(&mut conn).await.expect("SET");
        let _: String = redis::cmd("XADD")
            .arg("svc:jobs")
            .arg("*")
            .arg("job")
            .arg(&id)
            .query_async(&mut conn)
            .await
            .expect("XADD");
        ids.push(id);
    }
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("ghost")
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg("svc:jobs")
        .arg(">")
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| Value::Null)
        .expect("XREADGROUP");

    let _worker = worker_process(&redis, &[QUIET, ("VISIBILITY_TIMEOUT", "1s")]).await;
    for id in &ids {
        app.job_in_state(id, "done", Duration::from_secs(30)).await;
    }
    eventually(Duration::from_secs(10), "100 dead letters", || async {
        (xlen(&redis, "svc:jobs:dead").await == 100).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "an empty stream", || async {
        (xlen(&redis, "svc:jobs").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_busy_worker_takes_no_delivery_it_cannot_start() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let worker = worker_process(
        &redis,
        &[
            QUIET,
            ("WORKER_CONCURRENCY", "1"),
            ("VISIBILITY_TIMEOUT", "1s"),
        ],
    )
    .await;
    let ids = join_all(
        (0..4).map(|_| app.submit(r#"{"type":"data_processing","size":1,"hold_ms":1500}"#)),
    )
    .await;
    for id in &ids {
        let job = app.job_in_state(id, "done", Duration::from_secs(30)).await;
        assert_eq!(job["attempts"], 1, "ran more than once: {job}");
    }
    // One log line per outcome, with the job, its type, attempts, time and worker.
    let log = worker.output();
    for id in &ids {
        let line = log
            .lines()
            .find(|l| l.contains("job done") && l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no outcome line for {id}:\n{log}"));
        for field in [
            "task_type=\"data_processing\"",
            "attempts=1",
            "duration_ms=",
            "worker=",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    let metrics = crate::helpers::get_text(&worker.url("/metrics")).await;
    assert_eq!(
        crate::metrics::sample(&metrics, "worker_queue_redeliveries_total"),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn concurrent_rollups_count_every_request_once() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let mut conn = redis.client().await;
    let () = redis::cmd("SET")
        .arg("api:total_requests")
        .arg(1000)
        .query_async(&mut conn)
        .await
        .expect("SET");
    // Queued before the worker starts, so it takes them all at once and runs them
    // side by side.
    let ids = join_all((0..16).map(|_| app.submit(r#"{"type":"metrics_collection"}"#))).await;
    let _worker = worker_process(&redis, &[QUIET]).await;
    for id in &ids {
        app.job_in_state(id, "done", Duration::from_secs(30)).await;
    }
    let points: Vec<(i64, i64)> = redis::cmd("HGETALL")
        .arg("svc:series:requests")
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    let counted: i64 = points.iter().map(|(_, v)| v).sum();
    assert_eq!(counted, 1000, "{points:?}");
}
