//! Probing from several locations: three workers on loopback, each in a location of
//! its own whose probes leave from its own source address (127.0.0.2, .3 and .4), one
//! shared Redis, and a target that refuses the addresses the test names. A partial
//! failure is shown and not sent; a quorum pages once, with each location's detail;
//! a location whose worker dies ages out to "no data"; each location probes once per
//! interval.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::helpers::{RedisServer, SvcProcess, eventually, role_process};
use crate::targets::{
    Receiver, TargetsFile, dashboard_of, entry_of, quiet_period, read_request, wait_posts,
};

/// The locations of the tests and the source address each probes from.
const LOCATIONS: [(&str, &str); 3] = [
    ("eu-west", "127.0.0.2"),
    ("us-east", "127.0.0.3"),
    ("ap-south", "127.0.0.4"),
];

/// A target that answers 503 to the source addresses it is told to refuse and 200 to
/// the others, and counts the requests of each source address.
struct PerSource {
    url: String,
    refused: Arc<Mutex<HashSet<IpAddr>>>,
    hits: Arc<Mutex<HashMap<IpAddr, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PerSource {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        let refused = Arc::new(Mutex::new(HashSet::new()));
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (no, count) = (refused.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, peer)) = listener.accept().await {
                let source = peer.ip();
                *count.lock().expect("hits").entry(source).or_insert(0) += 1;
                let refuse = no.lock().expect("refused").contains(&source);
                tokio::spawn(async move {
                    if read_request(&mut conn).await.is_none() {
                        return;
                    }
                    let reply: &[u8] = if refuse {
                        b"HTTP/1.1 503 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    };
                    let _ = conn.write_all(reply).await;
                });
            }
        });
        PerSource {
            url,
            refused,
            hits,
            task,
        }
    }

    /// Refuses the locations named, and only those.
    fn refuse(&self, locations: &[&str]) {
        let mut refused = self.refused.lock().expect("refused");
        refused.clear();
        for (name, source) in LOCATIONS {
            if locations.contains(&name) {
                refused.insert(source.parse().expect("address"));
            }
        }
    }

    /// Requests so far, by location.
    fn hits(&self) -> HashMap<&'static str, usize> {
        let hits = self.hits.lock().expect("hits");
        LOCATIONS
            .iter()
            .map(|(name, source)| {
                let ip: IpAddr = source.parse().expect("address");
                (*name, hits.get(&ip).copied().unwrap_or(0))
            })
            .collect()
    }
}

impl Drop for PerSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One target probed every second from `locations` (a YAML list, or empty for every
/// location), notifying `hook`.
fn file(url: &str, hook: &str, locations: &str) -> TargetsFile {
    TargetsFile::new(&format!(
        "targets:\n  - name: web\n    url: {url}\n    interval: 1s\n    timeout: 500ms\n{locations}\
         notify:\n  - url: {hook}\n"
    ))
}

/// A worker per location, each probing from its own address, and a dashboard.
async fn located_cluster(redis: &RedisServer, path: &str) -> (Vec<SvcProcess>, SvcProcess) {
    let mut workers = Vec::new();
    for (location, source) in LOCATIONS {
        let env = [
            ("TARGETS_FILE", path),
            ("WORKER_INTERVAL", "1s"),
            ("VISIBILITY_TIMEOUT", "3s"),
            ("LOCATION", location),
            ("PROBE_SOURCE_IP", source),
        ];
        workers.push(role_process("worker", redis, &env).await);
    }
    (workers, dashboard_of(redis, path).await)
}

/// Waits until target `web` has verdict `status` and each location says what `want`
/// gives it; returns its entry.
async fn wait_web(dashboard: &SvcProcess, status: &str, want: &[(&str, &str)]) -> Value {
    let client = crate::helpers::client();
    let base = dashboard.url("");
    let base = base.trim_end_matches('/').to_owned();
    eventually(
        Duration::from_secs(30),
        &format!("web {status} with {want:?}"),
        || async {
            let entry = entry_of(&client, &base, "web").await?;
            let agree = entry["status"] == status
                && want
                    .iter()
                    .all(|(location, word)| entry["locations"][location]["state"] == *word);
            agree.then_some(entry)
        },
    )
    .await
}

/// Every location's word on the page's API: as the target's `status`.
const ALL_UP: [(&str, &str); 3] = [
    ("eu-west", "healthy"),
    ("us-east", "healthy"),
    ("ap-south", "healthy"),
];

#[tokio::test]
async fn a_partial_failure_is_shown_not_sent_and_a_quorum_pages_once_with_each_location() {
    let redis = RedisServer::start();
    let target = PerSource::start().await;
    let receiver = Receiver::start(0, false).await;
    let file = file(&target.url, &receiver.url, "");
    let (_workers, dashboard) = located_cluster(&redis, &file.path()).await;
    wait_web(&dashboard, "healthy", &ALL_UP).await;

    // Each location probes once per interval, from its own address.
    let (before, start) = (target.hits(), Instant::now());
    // A counting window, not a wait for a state: probes per location over ~5 intervals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (after, seconds) = (target.hits(), start.elapsed().as_secs_f64());
    for (location, _) in LOCATIONS {
        let probes = after[location] - before[location];
        assert!(
            probes as f64 <= seconds + 2.0 && probes >= 3,
            "{location}: {probes} probes in {seconds:.1} s at a 1 s interval: {after:?}"
        );
    }
    let strays = target.hits.lock().expect("hits").len();
    assert_eq!(strays, 3, "probes from other addresses: {:?}", target.hits);

    // One location refuses: degraded, named, and nobody told.
    target.refuse(&["us-east"]);
    let entry = wait_web(
        &dashboard,
        "degraded",
        &[
            ("eu-west", "healthy"),
            ("us-east", "down"),
            ("ap-south", "healthy"),
        ],
    )
    .await;
    let reason = entry["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("down from us-east only: HTTP 503"),
        "{entry}"
    );
    // Nothing is sent for a partial failure: the watch outlasts every path a
    // notification could take (a probe, a retry, a rerun; see `quiet_period`).
    tokio::time::sleep(quiet_period()).await;
    assert!(receiver.posts().is_empty(), "{:#?}", receiver.posts());

    // Two refuse: down, told once, with what each location said.
    target.refuse(&["us-east", "eu-west"]);
    let posts = wait_posts(&receiver, 1).await;
    let down = &posts[0].body;
    assert_eq!(down["state"], "down", "{down}");
    assert!(
        down["reason"].as_str().is_some_and(
            |r| r.starts_with("down from eu-west and us-east: HTTP 503; up from ap-south")
        ),
        "{down}"
    );
    for (location, word) in [("eu-west", "down"), ("us-east", "down"), ("ap-south", "up")] {
        let seen = &down["locations"][location];
        assert_eq!(seen["state"], word, "{down}");
        assert!(seen["response_time_ms"].is_number(), "{down}");
    }
    assert_eq!(down["locations"]["us-east"]["reason"], "HTTP 503", "{down}");
    wait_web(
        &dashboard,
        "down",
        &[
            ("eu-west", "down"),
            ("us-east", "down"),
            ("ap-south", "healthy"),
        ],
    )
    .await;
    // The page gives each location a line of its own.
    let page = crate::helpers::get_text(&dashboard.url("/")).await;
    for (location, word) in [
        ("eu-west", "down"),
        ("us-east", "down"),
        ("ap-south", "healthy"),
    ] {
        let line = format!(r#"<li data-location="{location}" data-state="{word}">"#);
        assert!(page.contains(&line), "{line} not in the page:\n{page}");
    }
    // The cluster's series: the verdict once, and each location's view of it.
    let metrics = crate::helpers::get_text(&dashboard.url("/metrics/targets")).await;
    let labels = r#"{target="web",group="",type="http""#;
    for line in [
        format!("svc_target_up{labels}}} 0"),
        format!(r#"svc_target_location_up{labels},location="eu-west"}} 0"#),
        format!(r#"svc_target_location_up{labels},location="us-east"}} 0"#),
        format!(r#"svc_target_location_up{labels},location="ap-south"}} 1"#),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    // No second POST within the longest retry path (see `quiet_period`).
    tokio::time::sleep(quiet_period()).await;
    let posts = receiver.posts();
    assert_eq!(posts.len(), 1, "one notification per change: {posts:#?}");
}

#[tokio::test]
async fn a_location_whose_worker_dies_is_no_data_and_the_verdict_follows_the_other_two() {
    let redis = RedisServer::start();
    let target = PerSource::start().await;
    let receiver = Receiver::start(0, false).await;
    // sa-east has no worker at all: no data from the start, and the quorum is stated.
    let listed = "    locations: [eu-west, us-east, ap-south, sa-east]\n    quorum: 2\n";
    let file = file(&target.url, &receiver.url, listed);
    let (mut workers, dashboard) = located_cluster(&redis, &file.path()).await;
    let entry = wait_web(&dashboard, "healthy", &ALL_UP).await;
    assert_eq!(entry["locations"]["sa-east"]["state"], "no data", "{entry}");

    // The whole of ap-south goes, without a word.
    let mut gone = workers.pop().expect("ap-south");
    gone.child.kill().expect("kill");
    let _ = gone.child.wait();
    let gone_at = target.hits()["ap-south"];
    wait_web(
        &dashboard,
        "healthy",
        &[
            ("eu-west", "healthy"),
            ("us-east", "healthy"),
            ("ap-south", "no data"),
        ],
    )
    .await;

    // Of the two left, one down is a partial failure; both are down.
    target.refuse(&["eu-west"]);
    wait_web(
        &dashboard,
        "degraded",
        &[
            ("eu-west", "down"),
            ("us-east", "healthy"),
            ("ap-south", "no data"),
        ],
    )
    .await;
    target.refuse(&["eu-west", "us-east"]);
    let posts = wait_posts(&receiver, 1).await;
    let down = &posts[0].body;
    assert_eq!(down["state"], "down", "{down}");
    assert_eq!(down["locations"]["ap-south"]["state"], "no data", "{down}");
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("no data from ap-south and sa-east")),
        "{down}"
    );
    assert_eq!(
        target.hits()["ap-south"],
        gone_at,
        "nobody probes for ap-south"
    );
}
