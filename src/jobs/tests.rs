//! Job specs and records: parsing, encoding and the transitions of a record.

use super::*;

fn parse(json: &str) -> Result<JobSpec, String> {
    JobSpec::parse_submission(json.as_bytes())
}

#[test]
fn specs_parse_with_defaults() {
    assert_eq!(
        parse(r#"{"type":"data_processing"}"#),
        Ok(JobSpec::DataProcessing {
            size: DataSize(DEFAULT_DATA_SIZE),
            fail: None,
            hold_ms: HoldMs(0),
        })
    );
    assert_eq!(parse(r#"{"type":"cleanup"}"#), Ok(JobSpec::Cleanup {}));
}

#[test]
fn bad_submissions_are_rejected() {
    for bad in [
        r#"{"type":"mine_bitcoin"}"#,
        r#"{"type":"data_processing","size":"big"}"#,
        r#"{"type":"data_processing","size":-1}"#,
        r#"{"type":"data_processing","size":0}"#,
        r#"{"type":"data_processing","size":5000001}"#,
        r#"{"type":"data_processing","size":4294967295}"#,
        r#"{"type":"data_processing","hold_ms":60001}"#,
        r#"{"type":"cleanup","extra":1}"#,
        r#"{"type":"cleanup","size":1}"#,
        r#"{"size":10}"#,
        r#"[]"#,
    ] {
        assert!(parse(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn records_round_trip_with_flat_type() {
    let record = JobRecord::new(JobSpec::HealthCheck {}, 1.5);
    let json = serde_json::to_value(&record).expect("serialize");
    assert_eq!(json["type"], "health_check");
    assert_eq!(json["state"], "queued");
    assert_eq!(JobRecord::decode(&record.encode()), Ok(record));
}

#[test]
fn records_of_another_version_keep_their_fields() {
    let raw = r#"{"id":"a","type":"data_processing","size":10,"priority":"high",
                  "state":"queued","attempts":0,"created_at":1.0,"trace":{"x":1}}"#;
    let record = JobRecord::decode(raw).expect("lenient");
    assert_eq!(record.spec.task_type(), TaskType::DataProcessing);
    let written: Value = serde_json::from_str(&record.encode()).expect("json");
    assert_eq!(written["priority"], "high");
    assert_eq!(written["trace"]["x"], 1);
    assert_eq!(written["size"], 10);
}

#[test]
fn a_trace_parent_is_kept_and_records_without_one_still_read() {
    let mut record = JobRecord::new(JobSpec::Cleanup {}, 1.0);
    let old: Value = serde_json::from_str(&record.encode()).expect("json");
    assert!(old.get("traceparent").is_none());
    assert_eq!(JobRecord::decode(&record.encode()), Ok(record.clone()));
    record.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
    let decoded = JobRecord::decode(&record.encode()).expect("decodes");
    assert_eq!(decoded.traceparent, record.traceparent);
    assert!(decoded.other.is_empty());
}

#[test]
fn records_are_held_to_the_submission_rules() {
    for bad in [
        r#"{"id":"a","type":"data_processing","size":4294967295,"state":"queued","attempts":0,"created_at":1}"#,
        r#"{"id":"a","type":"teleport","state":"queued","attempts":0,"created_at":1}"#,
        r#"{"id":"a","state":"queued","attempts":0,"created_at":1}"#,
        r#"{"id":"a","type":"cleanup","state":"paused","attempts":0,"created_at":1}"#,
        r#"not json"#,
    ] {
        assert!(JobRecord::decode(bad).is_err(), "{bad} decoded");
    }
}

#[test]
fn a_job_runs_to_done_through_its_transitions() {
    let mut job = JobRecord::new(JobSpec::Cleanup {}, 1.0);
    job.start("w1", 2.0).expect("a queued job starts");
    assert_eq!(
        (
            job.state,
            job.attempts,
            job.started_at,
            job.worker.as_deref()
        ),
        (JobState::Running, 1, Some(2.0), Some("w1"))
    );
    job.succeed(serde_json::json!({"ok": 1}), 3.0)
        .expect("a running job succeeds");
    assert_eq!(job.state, JobState::Done);
    assert_eq!(job.finished_at, Some(3.0));
    assert_eq!(job.result, Some(serde_json::json!({"ok": 1})));
    assert_eq!(job.error, None);
}

#[test]
fn a_failed_job_is_retried_until_its_attempts_are_used_up() {
    let mut job = JobRecord::new(JobSpec::Cleanup {}, 1.0);
    job.start("w1", 2.0).expect("start");
    assert_eq!(job.fail("boom".into(), 2, 3.0), Ok(JobState::Failed));
    assert_eq!(
        (job.error.as_deref(), job.finished_at),
        (Some("boom"), None)
    );
    job.start("w2", 4.0).expect("a failed job is retried");
    assert_eq!((job.attempts, job.worker.as_deref()), (2, Some("w2")));
    assert_eq!(job.fail("again".into(), 2, 5.0), Ok(JobState::Dead));
    assert_eq!(job.error.as_deref(), Some("again"));
    assert_eq!(job.finished_at, Some(5.0));
}

#[test]
fn a_job_whose_workers_died_is_killed_saying_so() {
    let mut job = JobRecord::new(JobSpec::Cleanup {}, 1.0);
    job.start("w1", 2.0).expect("start");
    // Its worker died: the job is delivered again, still running.
    job.start("w2", 3.0).expect("a running job is redelivered");
    job.kill(4.0).expect("kill");
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.finished_at, Some(4.0));
    assert_eq!(job.error.as_deref(), Some("no attempt finished in 2 tries"));
}

#[test]
fn illegal_transitions_are_refused_and_leave_the_record_as_it_was() {
    let queued = JobRecord::new(JobSpec::Cleanup {}, 1.0);
    let mut job = queued.clone();
    let refused = job.succeed(Value::Null, 2.0).expect_err("never started");
    assert_eq!(refused.from, JobState::Queued);
    assert!(job.fail("x".into(), 3, 2.0).is_err());
    assert_eq!(job, queued);

    job.start("w1", 2.0).expect("start");
    job.succeed(Value::Null, 3.0).expect("succeed");
    let done = job.clone();
    assert!(job.start("w2", 4.0).is_err());
    assert!(job.kill(4.0).is_err());
    assert!(job.fail("x".into(), 3, 4.0).is_err());
    assert!(job.succeed(Value::Null, 4.0).is_err());
    assert_eq!(job, done);
}

#[test]
fn a_dead_mark_keeps_the_record() {
    let marked =
        mark_dead(r#"{"id":"a","size":4294967295}"#, "size too big", 2.0).expect("an object");
    let v: Value = serde_json::from_str(&marked).expect("json");
    assert_eq!(v["state"], "dead");
    assert_eq!(v["size"], 4_294_967_295u64);
    assert_eq!(mark_dead("[1]", "x", 2.0), None);
}
