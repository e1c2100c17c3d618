//! The worker against a real Redis and real `svc worker` processes: periodic tasks once
//! per interval cluster-wide, jobs shared and never lost, crashes, dead letters, Redis
//! restarts and SIGTERM.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use svc::jobs::JobRecord;

use crate::helpers::{RedisServer, SvcProcess, eventually, worker_process};
use crate::metrics::{promtool_check, sample};

use crate::helpers::ready_gateway as gateway;

/// Every job record in the store.
async fn job_records(redis: &RedisServer) -> Vec<JobRecord> {
    let mut conn = redis.client().await;
    let keys = redis.keys("svc:job:*").await;
    let mut records = Vec::new();
    for key in keys {
        let raw: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        records.push(serde_json::from_str(&raw).expect("job record"));
    }
    records
}

async fn counter(redis: &RedisServer, key: &str) -> i64 {
    let value: Option<i64> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut redis.client().await)
        .await
        .expect("GET");
    value.unwrap_or(0)
}

async fn instance(worker: &SvcProcess) -> String {
    worker.get_json("/status").await["instance"]
        .as_str()
        .expect("instance")
        .to_owned()
}

async fn metrics_text(worker: &SvcProcess) -> String {
    crate::helpers::client()
        .get(worker.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// A long interval: no periodic job gets in the way of what a test submits.
const QUIET: (&str, &str) = ("WORKER_INTERVAL", "24h");

#[tokio::test]
async fn three_workers_enqueue_each_periodic_task_once_per_tick() {
    let redis = RedisServer::start();
    // One second: a loaded two-core machine can stall three processes for a few
    // hundred milliseconds, which would skip a shorter tick everywhere at once.
    let env = [("WORKER_INTERVAL", "1s")];
    let _workers = join_all((0..3).map(|_| worker_process(&redis, &env))).await;
    let ticks_per_type = |records: &[JobRecord]| {
        let mut ticks: HashMap<&str, HashSet<u64>> = HashMap::new();
        for r in records {
            if let Some(t) = r.scheduled_for {
                ticks
                    .entry(r.spec.task_type().as_str())
                    .or_default()
                    .insert((t * 1000.0) as u64);
            }
        }
        ticks
    };
    eventually(
        Duration::from_secs(30),
        "4 ticks of every task type",
        || async {
            let records = job_records(&redis).await;
            let ticks = ticks_per_type(&records);
            (ticks.len() == 4 && ticks.values().all(|t| t.len() >= 4)).then_some(())
        },
    )
    .await;

    let records = job_records(&redis).await;
    let mut per_tick: HashMap<(&str, u64), usize> = HashMap::new();
    for r in &records {
        let tick = (r.scheduled_for.expect("only periodic jobs here") * 1000.0) as u64;
        *per_tick
            .entry((r.spec.task_type().as_str(), tick))
            .or_default() += 1;
    }
    let doubled: Vec<_> = per_tick.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "ticks enqueued more than once: {doubled:?}"
    );
    // Consecutive ticks: no replica skipped one that nobody else took.
    for (task, ticks) in ticks_per_type(&records) {
        let mut ticks: Vec<_> = ticks.into_iter().collect();
        ticks.sort_unstable();
        for pair in ticks.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                1000,
                "{task}: gap between ticks {pair:?}"
            );
        }
    }
}

#[tokio::test]
async fn two_hundred_jobs_through_the_gateway_finish_exactly_once() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let workers = join_all((0..3).map(|_| worker_process(&redis, &[QUIET]))).await;
    let ids =
        join_all((0..200).map(|_| app.submit(r#"{"type":"data_processing","size":1000}"#))).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200);

    eventually(Duration::from_secs(60), "200 jobs done", || async {
        let done = job_records(&redis)
            .await
            .iter()
            .filter(|r| r.result().is_some())
            .count();
        (done == 200).then_some(())
    })
    .await;
    let records = job_records(&redis).await;
    assert_eq!(records.len(), 200);
    for r in &records {
        assert_eq!(
            serde_json::to_value(r.state()).expect("state"),
            "done",
            "{r:?}"
        );
        assert_eq!(r.attempts(), 1, "{r:?}");
    }
    assert_eq!(counter(&redis, "worker:tasks:data_processing").await, 200);
    let mut processed = 0.0;
    for w in &workers {
        let text = metrics_text(w).await;
        processed += sample(
            &text,
            r#"worker_tasks_processed_total{task_type="data_processing",status="success"}"#,
        )
        .unwrap_or(0.0);
    }
    assert_eq!(processed, 200.0, "each job counted once across the workers");
    let by: HashSet<_> = records
        .iter()
        .filter_map(|r| r.worker().map(str::to_owned))
        .collect();
    assert!(by.len() >= 2, "one worker took every job: {by:?}");
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_is_finished_by_another() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let env = [QUIET, ("VISIBILITY_TIMEOUT", "1s")];
    let mut first = worker_process(&redis, &env).await;
    let first_id = instance(&first).await;
    let id = app
        .submit(r#"{"type":"data_processing","size":1,"hold_ms":5000}"#)
        .await;
    let running = app
        .job_in_state(&id, "running", Duration::from_secs(10))
        .await;
    assert_eq!(running["worker"], first_id.as_str());

    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    let second = worker_process(&redis, &env).await;
    let second_id = instance(&second).await;
    let done = app.job_in_state(&id, "done", Duration::from_secs(60)).await;
    assert_eq!(done["worker"], second_id.as_str());
    assert_eq!(done["attempts"], 2);
    let text = metrics_text(&second).await;
    assert_eq!(sample(&text, "worker_queue_redeliveries_total"), Some(1.0));
}

#[tokio::test]
async fn a_job_that_always_fails_ends_in_the_dead_letter_stream() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let worker = worker_process(
        &redis,
        &[
            QUIET,
            ("VISIBILITY_TIMEOUT", "200ms"),
            ("MAX_ATTEMPTS", "3"),
        ],
    )
    .await;
    let id = app
        .submit(r#"{"type":"data_processing","size":10,"fail":"disk on fire"}"#)
        .await;
    let dead = app.job_in_state(&id, "dead", Duration::from_secs(20)).await;
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["error"], "disk on fire");

    let letters: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("svc:jobs:dead")
        .arg("-")
        .arg("+")
        .query_async(&mut redis.client().await)
        .await
        .expect("XRANGE");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1["job"], id);
    assert_eq!(letters[0].1["error"], "disk on fire");
    let status = worker.get_json("/status").await;
    assert_eq!(
        status["queue"],
        serde_json::json!({"depth": 0, "pending": 0, "dead_letters": 1})
    );
    let text = metrics_text(&worker).await;
    assert_eq!(sample(&text, "worker_queue_dead_lettered_total"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"worker_tasks_processed_total{task_type="data_processing",status="failure"}"#
        ),
        Some(3.0)
    );
    assert_eq!(counter(&redis, "worker:tasks:data_processing").await, 0);
}

#[tokio::test]
async fn worker_survives_a_redis_restart_and_never_reruns_a_finished_job() {
    let mut redis = RedisServer::start_persistent();
    let app = gateway(&redis).await;
    let mut worker = worker_process(&redis, &[QUIET]).await;
    let before = app
        .submit(r#"{"type":"data_processing","size":1000}"#)
        .await;
    let finished = app
        .job_in_state(&before, "done", Duration::from_secs(10))
        .await;

    redis.stop();
    eventually(
        Duration::from_secs(10),
        "worker to see Redis down",
        || async { (worker.get_json("/status").await["redis_connected"] == false).then_some(()) },
    )
    .await;
    let live = crate::helpers::client()
        .get(worker.url("/health/live"))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), 200);

    redis.resume();
    worker.wait_ready().await;
    app.wait_ready(200, Duration::from_secs(10)).await;
    let after = app
        .submit(r#"{"type":"data_processing","size":1000}"#)
        .await;
    app.job_in_state(&after, "done", Duration::from_secs(20))
        .await;
    assert_eq!(worker.get_json("/status").await["redis_connected"], true);

    let (_, again) = app.get_json(&format!("/api/jobs/{before}")).await;
    assert_eq!(again, finished, "a finished job was run again");
    assert_eq!(counter(&redis, "worker:tasks:data_processing").await, 2);
}

#[tokio::test]
async fn sigterm_during_a_long_job_exits_in_time_and_loses_nothing() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let env = [QUIET, ("VISIBILITY_TIMEOUT", "1s"), ("GRACE_PERIOD", "1s")];
    let mut first = worker_process(&redis, &env).await;
    let id = app
        .submit(r#"{"type":"data_processing","size":1,"hold_ms":5000}"#)
        .await;
    app.job_in_state(&id, "running", Duration::from_secs(10))
        .await;

    let signalled = std::time::Instant::now();
    first.signal("TERM");
    assert_eq!(
        first.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        first.output()
    );
    // Drain delay 0 + grace 1 s + the runtime's 0.5 s: well inside the 5 s hold.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(
        first.output().contains("left for another replica"),
        "{}",
        first.output()
    );

    let second = worker_process(&redis, &env).await;
    let done = app.job_in_state(&id, "done", Duration::from_secs(60)).await;
    assert_eq!(done["worker"], instance(&second).await.as_str());
}

#[tokio::test]
async fn bad_job_submissions_are_rejected_and_nothing_is_enqueued() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let oversize = format!(r#"{{"type":"cleanup","pad":"{}"}}"#, "x".repeat(20_000));
    for (body, status) in [
        (r#"{"type":"mine_bitcoin"}"#.to_owned(), 400),
        (r#"{"type":"data_processing","size":"big"}"#.to_owned(), 400),
        (r#"{"type":"data_processing","size":0}"#.to_owned(), 400),
        (
            r#"{"type":"data_processing","size":99999999}"#.to_owned(),
            400,
        ),
        (r#"{"type":"cleanup","extra":true}"#.to_owned(), 400),
        (r#"{"size":10}"#.to_owned(), 400),
        (r#"{"type":"cleanup""#.to_owned(), 400),
        ("".to_owned(), 400),
        (oversize, 413),
    ] {
        let (got, json) = app.post("/api/jobs", body.clone()).await;
        assert_eq!(got, status, "{body:.60}: {json}");
        assert!(
            json["error"].is_string() && json["message"].is_string(),
            "{json}"
        );
    }
    let (status, json) = app.get_json("/api/jobs/no-such-job").await;
    assert_eq!(status, 404);
    assert_eq!(json["error"], "Not Found");
    let mut conn = redis.client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("svc:job*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(keys.is_empty(), "something was enqueued: {keys:?}");
}

#[tokio::test]
async fn job_record_has_the_documented_fields() {
    let redis = RedisServer::start();
    let app = gateway(&redis).await;
    let _worker = worker_process(&redis, &[QUIET]).await;
    let res = app
        .client
        .post(format!("{}/api/jobs", app.address))
        .body(r#"{"type":"data_processing","size":100}"#)
        .send()
        .await
        .expect("POST without content type");
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["state"], "queued");
    assert_eq!(
        location,
        format!("/api/jobs/{}", body["id"].as_str().expect("id"))
    );
    let id = body["id"].as_str().expect("id");
    let job = app.job_in_state(id, "done", Duration::from_secs(10)).await;
    assert_eq!(job["type"], "data_processing");
    assert_eq!(job["size"], 100);
    assert_eq!(job["attempts"], 1);
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(job[field].is_f64(), "{field}: {job}");
    }
    assert_eq!(job["result"]["size"], 100);
    assert!(job["error"].is_null());
}

#[tokio::test]
async fn worker_status_metrics_and_readiness() {
    let redis = RedisServer::start();
    let worker = worker_process(&redis, &[("WORKER_INTERVAL", "300ms")]).await;
    let status = eventually(Duration::from_secs(10), "tasks to run", || async {
        let s = worker.get_json("/status").await;
        (s["task_stats"]["health_check"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert_eq!(status["service"], "worker-service");
    assert_eq!(status["status"], "running");
    assert_eq!(status["environment"], "development");
    assert_eq!(status["redis_connected"], true);
    assert!(status["last_task_seconds_ago"].is_f64());
    for task in [
        "data_processing",
        "cleanup",
        "health_check",
        "metrics_collection",
    ] {
        assert!(status["task_stats"][task].is_u64(), "{task}: {status}");
    }
    let ready = worker.get_json("/health/ready").await;
    assert_eq!(ready["status"], "ready");

    let text = metrics_text(&worker).await;
    promtool_check(&text);
    for name in [
        "worker_tasks_processed_total",
        "worker_tasks_in_progress",
        "worker_redis_connection_status",
        "worker_last_task_timestamp",
        "worker_queue_depth",
        "worker_queue_pending",
        "worker_queue_redeliveries_total",
        "worker_queue_dead_lettered_total",
        "worker_job_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        text.contains(r#"worker_tasks_processed_total{task_type="health_check",status="success"}"#)
    );
}

#[tokio::test]
async fn svc_all_runs_jobs_on_the_embedded_store() {
    let mut all = SvcProcess::spawn(
        &crate::helpers::all_args(&["--interval", "300ms"]),
        &[("DRAIN_DELAY", "0s")],
    );
    all.wait_ready().await;
    let client = crate::helpers::client();
    let res = client
        .post(all.url("/api/jobs"))
        .body(r#"{"type":"data_processing","size":1000}"#)
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually(Duration::from_secs(10), "the job to be done", || async {
        let job: Value = client
            .get(all.url(&format!("/api/jobs/{id}")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (job["state"] == "done").then_some(())
    })
    .await;
    let worker_status: Value = client
        .get(format!(
            "http://{}/status",
            all.address_of("worker-service")
        ))
        .send()
        .await
        .expect("worker status")
        .json()
        .await
        .expect("json");
    assert!(worker_status["task_stats"]["data_processing"].as_u64() >= Some(1));
}
