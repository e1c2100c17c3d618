//! Reminders: while a target stays down, one reminder per period for the whole
//! cluster, with how long it has been down, however many workers run, one of them
//! killed and Redis restarted in between; none once it is up again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::channels::Receiver;
use crate::helpers::{Dir, RedisServer, eventually, role_process};
use crate::targets::Target;

/// The reminders (their ids) and the other notifications the receiver got.
fn received(receiver: &Receiver) -> (BTreeMap<String, usize>, Vec<Value>) {
    let mut reminders = BTreeMap::new();
    let mut changes = Vec::new();
    for request in receiver.to("/hook") {
        let body = request.json();
        if body["reminder"] == true {
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            *reminders.entry(id).or_default() += 1;
        } else {
            changes.push(body);
        }
    }
    (reminders, changes)
}

#[tokio::test]
async fn a_target_down_three_periods_is_reminded_of_three_times_then_not() {
    let mut redis = RedisServer::start_persistent();
    let target = Target::start().await;
    target.set(500);
    let receiver = Receiver::start().await;
    let dir = Dir::new("reminders");
    let file = dir.path("targets.yaml");
    std::fs::write(
        &file,
        format!(
            "targets:\n  - {{name: web, url: '{}', interval: 1s, failure_threshold: 1}}\n\
             notify:\n  - {{name: hook, url: '{}/hook', repeat: 10s}}\n",
            target.url, receiver.base
        ),
    )
    .expect("write");
    let file = file.display().to_string();
    let env = [
        ("TARGETS_FILE", file.as_str()),
        ("WORKER_INTERVAL", "1s"),
        ("VISIBILITY_TIMEOUT", "3s"),
    ];
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(role_process("worker", &redis, &env).await);
    }

    // The first verdict, down, then the first reminder ten seconds later.
    let first = eventually(Duration::from_secs(30), "the first reminder", || async {
        let (reminders, changes) = received(&receiver);
        (!reminders.is_empty()).then_some(changes)
    })
    .await;
    assert_eq!(first.len(), 1, "one down: {first:?}");
    assert_eq!(first[0]["state"], "down");

    // A worker dies, and Redis restarts (its data on disk), before the next two.
    workers.remove(0).signal("KILL");
    redis.stop();
    redis.resume();
    eventually(Duration::from_secs(40), "three reminders", || async {
        (received(&receiver).0.len() >= 3).then_some(())
    })
    .await;

    // Up again: one recovery, and no reminder after it.
    target.set(200);
    eventually(Duration::from_secs(30), "the recovery", || async {
        let (_, changes) = received(&receiver);
        changes.iter().any(|c| c["state"] == "up").then_some(())
    })
    .await;
    let (before, _) = received(&receiver);
    // Longer than a period, and than a failed delivery's retries (0.5 s + 1 s) and
    // the visibility timeout (3 s) after which a lost one would be sent again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (reminders, changes) = received(&receiver);
    assert_eq!(reminders, before, "no reminder once up");
    assert!(
        reminders.values().all(|n| *n == 1),
        "each period once: {reminders:?}"
    );
    let periods: Vec<&str> = reminders
        .keys()
        .filter_map(|id| id.rsplit_once("-r").map(|(_, n)| n))
        .collect();
    assert!(periods.len() >= 3, "{reminders:?}");
    for (i, n) in periods.iter().enumerate() {
        assert_eq!(n.parse::<usize>().ok(), Some(i + 1), "{reminders:?}");
    }
    assert_eq!(
        changes.iter().filter(|c| c["state"] == "down").count(),
        1,
        "{changes:?}"
    );
    let last = receiver
        .to("/hook")
        .into_iter()
        .map(|r| r.json())
        .rfind(|b| b["reminder"] == true)
        .expect("a reminder");
    assert!(
        last["down_for_s"].as_f64().is_some_and(|s| s >= 30.0),
        "{last}"
    );
}
