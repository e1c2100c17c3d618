//! Service-level objectives: a fast burn of a target's error budget is told once per
//! episode however many workers run, and a maintenance window is left out of it.

use serde_json::Value;

use crate::helpers::RedisServer;
use crate::targets::{
    Receiver, Target, TargetsFile, entry_of, notifying_cluster, quiet_period, wait_posts,
    wait_status,
};

#[tokio::test]
async fn three_workers_send_one_burn_notification_per_episode() {
    let redis = RedisServer::start();
    let target = Target::start().await;
    // Down as well, but in a maintenance window: left out of its objective.
    let resting = Target::start().await;
    resting.set(500);
    let receiver = Receiver::start(0, false).await;
    let start = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let text = format!(
        "targets:\n  - name: burner\n    url: {}\n    interval: 1s\n    timeout: 500ms\n    \
         expect: {{status: [200]}}\n    slo: {{objective: 99.9%, window: 30d}}\n  \
         - {{name: resting, url: '{}', interval: 1s, slo: {{objective: 99.9%, window: 30d}}}}\n\
         notify:\n  - url: {}\n\
         maintenance:\n  - {{name: deploy, targets: [resting], start: '{start}', duration: 1h}}\n",
        target.url, resting.url, receiver.url
    );
    let file = TargetsFile::new(&text);
    let path = file.path();
    let (_workers, dashboard) = notifying_cluster(&redis, &path).await;
    let base = dashboard.url("");
    let base = base.trim_end_matches('/');
    let client = crate::helpers::client();
    wait_status(&client, base, "burner", "healthy").await;

    // Down: every probe fails, far above 14.4 times the 0.1 % allowed over the last
    // hour and 5 minutes. Told once as down and once as a burn, however many probes
    // and workers see it.
    target.set(500);
    let posts = wait_posts(&receiver, 2).await;
    let burn = posts
        .iter()
        .find(|p| p.body["state"] == "burn")
        .map(|p| p.body.clone())
        .unwrap_or_else(|| panic!("a burn notification: {posts:#?}"));
    assert_eq!(burn["target"], "burner");
    assert!(
        burn["reason"]
            .as_str()
            .is_some_and(|r| r.contains("99.9 % over 30 d")),
        "{burn}"
    );
    wait_status(&client, base, "burner", "down").await;
    // Still burning, probed every second by the cluster: no second notification.
    tokio::time::sleep(quiet_period()).await;
    let posts = receiver.posts();
    let states: Vec<&str> = posts
        .iter()
        .filter_map(|p| p.body["state"].as_str())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "burn").count(),
        1,
        "{posts:#?}"
    );
    assert_eq!(
        states.len(),
        2,
        "down and burn of burner only, nothing of resting: {posts:#?}"
    );
    let entry = entry_of(&client, base, "burner").await.expect("entry");
    assert!(
        entry["slo"]["burn_1h"].as_f64().is_some_and(|b| b >= 14.4),
        "{entry}"
    );
    let resting = entry_of(&client, base, "resting").await.expect("entry");
    assert_eq!(resting["status"], "maintenance", "{resting}");
    assert_eq!(
        resting["verdict"], "down",
        "probed down all along: {resting}"
    );
    assert_eq!(
        (&resting["slo"]["burn_1h"], &resting["slo"]["budget_left"]),
        (&Value::Null, &Value::Null),
        "no probe of the window counted: {resting}"
    );
}
