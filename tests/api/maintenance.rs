//! Maintenance windows with three workers on one Redis: a target that goes down and
//! up again inside a window, then down, tells nobody until the window ends, and then
//! exactly once; meanwhile the dashboard's API and page say `maintenance` with the
//! window's name and end, and the incident opened in it names the window. A bad
//! `maintenance:` entry is refused by name and the last good file stays.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::channels::Receiver;
use crate::helpers::{Dir, RedisServer, SvcProcess, all_args, eventually, try_json};
use crate::targets::Target;

/// The entry of target `name` in the dashboard's `/api/health-check`.
async fn entry(dashboard: &str, name: &str) -> Option<Value> {
    let answer = try_json(
        &crate::helpers::client(),
        &format!("{dashboard}/api/health-check"),
    )
    .await?;
    answer["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// Waits until target `name`'s entry has `key` = `want`; the entry.
async fn wait_for(dashboard: &str, name: &str, key: &str, want: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("{name} {key} {want}"),
        || async {
            entry(dashboard, name)
                .await
                .filter(|e| e[key].as_str() == Some(want))
        },
    )
    .await
}

/// Writes `text` as `dir`'s targets file by rename (as a ConfigMap update swaps it).
fn write(dir: &Dir, text: &str) -> String {
    let tmp = dir.path(".targets.yaml.new");
    std::fs::write(&tmp, text).expect("write");
    let path = dir.path("targets.yaml");
    std::fs::rename(&tmp, &path).expect("rename");
    path.display().to_string()
}

#[tokio::test]
async fn a_flip_inside_a_window_tells_nobody_and_its_end_tells_down_once() {
    let redis = RedisServer::start();
    let target = Target::start().await;
    let receiver = Receiver::start().await;
    let dir = Dir::new("maintenance");
    // A one-off window from now, long enough for three workers to start and the
    // target to go down, up and down again inside it.
    let start = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let path = write(
        &dir,
        &format!(
            "targets:\n  - {{name: web, url: '{}', interval: 1s, failure_threshold: 2}}\n\
             notify:\n  - {{name: hook, url: '{}/hook'}}\n\
             maintenance:\n  - {{name: deploy, targets: [web], start: '{start}', duration: 30s}}\n",
            target.url, receiver.base
        ),
    );
    let env = [
        ("TARGETS_FILE", path.as_str()),
        ("WORKER_INTERVAL", "1s"),
        ("VISIBILITY_TIMEOUT", "3s"),
    ];
    let (_workers, dashboard) = crate::targets::cluster(&redis, &path, &env).await;
    let base = dashboard.url("");
    let base = base.trim_end_matches('/');

    let first = wait_for(base, "web", "verdict", "healthy").await;
    assert_eq!(first["status"], "maintenance", "{first}");
    assert_eq!(first["maintenance"]["name"], "deploy", "{first}");
    let end = first["maintenance"]["end"]
        .as_f64()
        .expect("the window's end");

    // Down and up again, then down: all inside the window.
    for (code, verdict) in [(500, "down"), (200, "healthy"), (500, "down")] {
        target.set(code);
        let seen = wait_for(base, "web", "verdict", verdict).await;
        assert_eq!(
            seen["status"], "maintenance",
            "the window must still be in force: {seen}"
        );
    }
    assert!(
        receiver.to("/hook").is_empty(),
        "{:?}",
        receiver.to("/hook")
    );
    let page = crate::helpers::get_text(&dashboard.url("/")).await;
    assert!(
        page.contains(r#"data-target="web" data-state="maintenance""#) && page.contains("deploy"),
        "{page}"
    );
    let incidents = dashboard.get_json("/api/incidents").await;
    let marked = incidents["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter(|i| i["service"] == "web" && i["maintenance"] == "deploy")
        .count();
    assert!(marked >= 1, "{incidents}");

    // The window ends with the target down: one down, from one of the three workers.
    let posts = eventually(Duration::from_secs(40), "the window's end", || async {
        let posts = receiver.to("/hook");
        (!posts.is_empty()).then_some(posts)
    })
    .await;
    let body = posts[0].json();
    assert_eq!(body["state"], "down", "{body}");
    assert_eq!(body["maintenance"], "deploy", "{body}");
    assert!(
        svc::clock::unix_now() >= end - 1.0,
        "sent before the window's end"
    );
    wait_for(base, "web", "status", "down").await;
    // No other POST: the watch outlasts every path a repeat could take (another probe,
    // a retry, a rerun of the job after its visibility timeout).
    tokio::time::sleep(crate::targets::quiet_period()).await;
    let posts = receiver.to("/hook");
    assert_eq!(posts.len(), 1, "{posts:?}");
}

#[tokio::test]
async fn a_bad_maintenance_entry_is_named_and_the_last_good_file_stays() {
    let target = Target::start().await;
    let dir = Dir::new("maintenance-bad");
    let good = format!(
        "targets:\n  - {{name: web, url: '{}', interval: 1s, group: shop}}\n",
        target.url
    );
    let path = write(&dir, &good);
    let svc = SvcProcess::spawn(
        &all_args(&["--targets", &path]),
        &[("WORKER_INTERVAL", "1s"), ("REFRESH_PERIOD", "1s")],
    );
    let dashboard = format!("http://{}", svc.address_of("dashboard"));
    wait_for(&dashboard, "web", "status", "healthy").await;

    let bad = [
        (
            "{name: weekly, targets: [nobody], every: [sun], time: '03:00', duration: 1h}",
            "no target is named \"nobody\"",
        ),
        (
            "{name: weekly, groups: [shop], every: [sun], time: '03:00', timezone: Mars/Olympus, duration: 1h}",
            "timezone",
        ),
    ];
    for (n, (entry, reason)) in bad.iter().enumerate() {
        write(&dir, &format!("{good}maintenance:\n  - {entry}\n"));
        let line = eventually(Duration::from_secs(10), "the bad file refused", || async {
            svc.output()
                .lines()
                .filter(|l| l.contains("targets file refused"))
                .nth(n)
                .map(str::to_owned)
        })
        .await;
        assert!(
            line.contains("maintenance[0] (weekly)") && line.contains(reason),
            "{line}"
        );
    }
    // Still probed and shown by the last good file.
    let hits = target.hits.load(std::sync::atomic::Ordering::SeqCst);
    eventually(Duration::from_secs(10), "web probed again", || async {
        (target.hits.load(std::sync::atomic::Ordering::SeqCst) > hits + 1).then_some(())
    })
    .await;
    let shown = entry(&dashboard, "web").await.expect("web");
    assert_eq!(shown["status"], "healthy", "{shown}");
}
