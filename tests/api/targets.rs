//! The user's own targets: probed once per interval for the whole cluster, one
//! notification per change of state however many workers run, retried when the
//! receiver fails, never duplicated when a worker dies mid-send, and the targets file
//! reloaded without a restart.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{
    Dir, RedisServer, SvcProcess, TlsServer, all_args, eventually, free_port, role_process,
    svc_command, try_json,
};

/// A target whose status the test sets: 200 `{"status":"UP"}`, or 500
/// `{"status":"DOWN"}`. Counts the probes.
pub struct Target {
    pub url: String,
    status: Arc<AtomicU16>,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Target {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (status.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    if read_request(&mut conn).await.is_none() {
                        return;
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let code = s.load(Ordering::SeqCst);
                    let body = if code == 200 {
                        r#"{"status":"UP"}"#
                    } else {
                        r#"{"status":"DOWN"}"#
                    };
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Target {
            url,
            status,
            hits,
            task,
        }
    }

    pub fn set(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Post {
    key: String,
    sender: String,
    pub(crate) body: Value,
    /// Answered 2xx.
    accepted: bool,
}

/// A webhook receiver: records every POST; fails the first `fail` with 500, and
/// holds the first one unanswered when `hang` is set.
pub(crate) struct Receiver {
    pub(crate) url: String,
    posts: Arc<Mutex<Vec<Post>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start(fail: usize, hang: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(fail));
        let hang = Arc::new(AtomicBool::new(hang));
        let log = posts.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (log, fail, hang) = (log.clone(), fail.clone(), hang.clone());
                tokio::spawn(async move {
                    let Some((headers, body)) = read_request(&mut conn).await else {
                        return;
                    };
                    let header = |name: &str| {
                        headers
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case(name)
                                    .then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default()
                    };
                    let mut post = Post {
                        key: header("idempotency-key"),
                        sender: header("svc-sender"),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        accepted: false,
                    };
                    if hang.swap(false, Ordering::SeqCst) {
                        log.lock().expect("log").push(post);
                        // Held until the sender goes away.
                        let mut rest = [0u8; 64];
                        while matches!(conn.read(&mut rest).await, Ok(n) if n > 0) {}
                        return;
                    }
                    let failing = fail
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let reply: &[u8] = if failing {
                        b"HTTP/1.1 500 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    };
                    post.accepted = !failing && conn.write_all(reply).await.is_ok();
                    if failing {
                        let _ = conn.write_all(reply).await;
                    }
                    log.lock().expect("log").push(post);
                });
            }
        });
        Receiver { url, posts, task }
    }

    pub(crate) fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("log").clone()
    }

    fn accepted(&self) -> Vec<Post> {
        self.posts().into_iter().filter(|p| p.accepted).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request: its head and its body (by Content-Length).
pub(crate) async fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}

/// A targets file in a directory of its own, rewritten by rename (as a ConfigMap
/// update swaps its files).
pub struct TargetsFile {
    dir: Dir,
}

impl TargetsFile {
    pub fn new(text: &str) -> Self {
        let file = TargetsFile {
            dir: Dir::new("targets"),
        };
        file.write(text);
        file
    }

    pub fn path(&self) -> String {
        self.dir.path("targets.yaml").display().to_string()
    }

    fn write(&self, text: &str) {
        let tmp = self.dir.path(".targets.yaml.new");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.dir.path("targets.yaml")).expect("rename");
    }
}

/// A target at `url` probed every second, down after two failures, notifying `hook`.
fn one_target(name: &str, url: &str, hook: &str) -> String {
    format!(
        "targets:\n  - name: {name}\n    url: {url}\n    interval: 1s\n    timeout: 500ms\n    \
         expect: {{status: [200], json: {{\"$.status\": UP}}}}\nnotify:\n  - url: {hook}\n"
    )
}

/// The entry of target `name` in the dashboard's `/api/health-check`.
pub(crate) async fn entry_of(
    client: &reqwest::Client,
    dashboard: &str,
    name: &str,
) -> Option<Value> {
    let answer = try_json(client, &format!("{dashboard}/api/health-check")).await?;
    answer["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// The `status` of target `name` in the dashboard's `/api/health-check`.
pub(crate) async fn status_of(
    client: &reqwest::Client,
    dashboard: &str,
    name: &str,
) -> Option<String> {
    let entry = entry_of(client, dashboard, name).await?;
    entry["status"].as_str().map(str::to_owned)
}

/// `svc all` watching the targets file at `path`, its workers probing and its
/// dashboard refreshing every second, `env` added; and the dashboard's URL.
fn all_watching(path: &str, env: &[(&str, &str)]) -> (SvcProcess, String) {
    let mut all_env = vec![("WORKER_INTERVAL", "1s"), ("REFRESH_PERIOD", "1s")];
    all_env.extend_from_slice(env);
    let svc = SvcProcess::spawn(&all_args(&["--targets", path]), &all_env);
    let dashboard = format!("http://{}", svc.address_of("dashboard"));
    (svc, dashboard)
}

/// Three workers with `env`, and a dashboard refreshing every second, both reading the
/// targets file at `path`.
pub async fn cluster(
    redis: &RedisServer,
    path: &str,
    env: &[(&str, &str)],
) -> ([SvcProcess; 3], SvcProcess) {
    let workers = [
        role_process("worker", redis, env).await,
        role_process("worker", redis, env).await,
        role_process("worker", redis, env).await,
    ];
    (workers, dashboard_of(redis, path).await)
}

/// A dashboard refreshing every second, reading the targets file at `path`.
pub(crate) async fn dashboard_of(redis: &RedisServer, path: &str) -> SvcProcess {
    role_process(
        "dashboard",
        redis,
        &[("TARGETS_FILE", path), ("REFRESH_PERIOD", "1s")],
    )
    .await
}

/// [`cluster`] as the notification tests run it: workers probing every second, with
/// their [`VISIBILITY`] timeout.
pub(crate) async fn notifying_cluster(
    redis: &RedisServer,
    path: &str,
) -> ([SvcProcess; 3], SvcProcess) {
    let visibility = humantime::format_duration(VISIBILITY).to_string();
    let env = [
        ("TARGETS_FILE", path),
        ("WORKER_INTERVAL", "1s"),
        ("VISIBILITY_TIMEOUT", visibility.as_str()),
    ];
    cluster(redis, path, &env).await
}

pub(crate) async fn wait_status(client: &reqwest::Client, dashboard: &str, name: &str, want: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{name} {want}"),
        || async {
            (status_of(client, dashboard, name).await.as_deref() == Some(want)).then_some(())
        },
    )
    .await;
}

pub(crate) async fn wait_posts(receiver: &Receiver, accepted: usize) -> Vec<Post> {
    eventually(
        Duration::from_secs(30),
        &format!("{accepted} accepted notifications"),
        || async {
            let got = receiver.accepted();
            (got.len() >= accepted).then_some(got)
        },
    )
    .await
}

/// The visibility timeout of the notification tests' workers: a notification job whose
/// attempt was not recorded as finished (its worker died, or the record failed) is run
/// again once its delivery has been idle this long.
const VISIBILITY: Duration = Duration::from_secs(3);

/// How long the notification tests watch, after the last POST they expect, for one
/// that must not come. An absence has no event to wait for, so the watch must outlast
/// every path by which a repeat of the same change could still arrive:
/// - another try of the same attempt comes at most the last backoff after a try
///   (`BACKOFF` doubled `TRIES - 2` times: 1 s);
/// - a rerun of the job by the queue comes once its delivery has been idle for
///   [`VISIBILITY`] and the next reclaim scan (every quarter of it) finds it: 3.75 s;
/// - the change handed on again comes with the target's next probe (every 1 s).
///
/// The longest of these, plus a second for the repeat to be sent and seen: 4.75 s.
pub(crate) fn quiet_period() -> Duration {
    use svc::targets::notify::{BACKOFF, TRIES};
    let last_backoff = BACKOFF * 2u32.pow(TRIES.saturating_sub(2));
    let rerun = VISIBILITY + VISIBILITY / 4;
    let next_probe = Duration::from_secs(1);
    last_backoff.max(rerun).max(next_probe) + Duration::from_secs(1)
}

#[tokio::test]
async fn three_workers_send_one_notification_per_change() {
    let redis = RedisServer::start();
    let target = Target::start().await;
    let receiver = Receiver::start(0, false).await;
    let file = TargetsFile::new(&one_target("flip", &target.url, &receiver.url));
    let path = file.path();
    let (_workers, dashboard) = notifying_cluster(&redis, &path).await;
    let base = dashboard.url("");
    let base = base.trim_end_matches('/');
    let client = crate::helpers::client();
    wait_status(&client, base, "flip", "healthy").await;

    // Probed once per interval for the cluster, not once per worker.
    let (hits, start) = (target.hits.load(Ordering::SeqCst), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probes = target.hits.load(Ordering::SeqCst) - hits;
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        probes as f64 <= seconds + 2.0 && probes >= 3,
        "{probes} probes in {seconds:.1} s by 3 workers at a 1 s interval"
    );

    for round in 1..=2 {
        target.set(500);
        let posts = wait_posts(&receiver, 2 * round - 1).await;
        let down = &posts[2 * round - 2].body;
        assert_eq!(down["state"], "down", "{down}");
        assert_eq!(down["previous"], "up", "{down}");
        assert_eq!(down["target"], "flip");
        assert!(
            down["reason"]
                .as_str()
                .is_some_and(|r| r.contains("HTTP 500")),
            "{down}"
        );
        wait_status(&client, base, "flip", "down").await;

        target.set(200);
        let posts = wait_posts(&receiver, 2 * round).await;
        let up = &posts[2 * round - 1].body;
        assert_eq!(
            (&up["state"], &up["previous"]),
            (&"up".into(), &"down".into()),
            "{up}"
        );
        assert!(up["duration_s"].as_f64().is_some_and(|d| d > 0.0), "{up}");
        wait_status(&client, base, "flip", "healthy").await;
    }
    // No other POST within the longest retry path (see `quiet_period`).
    tokio::time::sleep(quiet_period()).await;
    let posts = receiver.posts();
    assert_eq!(posts.len(), 4, "{posts:#?}");
    let mut keys: Vec<&str> = posts.iter().map(|p| p.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 4, "one key per change: {posts:#?}");
    for p in &posts {
        assert_eq!(p.body["id"], p.key.as_str(), "the body carries the key");
    }
    let incidents = dashboard.get_json("/api/incidents").await;
    let flips = incidents["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter(|i| i["service"] == "flip")
        .count();
    assert_eq!(flips, 2, "{incidents}");
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_exactly_one_delivery() {
    let redis = RedisServer::start();
    let target = Target::start().await;
    target.set(500);
    let receiver = Receiver::start(2, false).await;
    let file = TargetsFile::new(&one_target("flaky-hook", &target.url, &receiver.url));
    let path = file.path();
    let visibility = humantime::format_duration(VISIBILITY).to_string();
    let env = [
        ("TARGETS_FILE", path.as_str()),
        ("VISIBILITY_TIMEOUT", visibility.as_str()),
    ];
    let _worker = role_process("worker", &redis, &env).await;
    let accepted = wait_posts(&receiver, 1).await;
    assert_eq!(accepted[0].body["state"], "down");
    assert_eq!(accepted[0].body["previous"], "unknown", "the first verdict");
    // No other POST within the longest retry path (see `quiet_period`).
    tokio::time::sleep(quiet_period()).await;
    let posts = receiver.posts();
    assert_eq!(
        posts.len(),
        3,
        "two failures, then one delivery: {posts:#?}"
    );
    assert_eq!(receiver.accepted().len(), 1);
    assert!(posts.iter().all(|p| p.key == accepted[0].key), "{posts:#?}");
}

#[tokio::test]
async fn a_worker_killed_mid_send_causes_no_duplicate() {
    let redis = RedisServer::start();
    let target = Target::start().await;
    target.set(500);
    let receiver = Receiver::start(0, true).await;
    let file = TargetsFile::new(&one_target("crash", &target.url, &receiver.url));
    let path = file.path();
    let visibility = humantime::format_duration(VISIBILITY).to_string();
    let env = [
        ("TARGETS_FILE", path.as_str()),
        ("VISIBILITY_TIMEOUT", visibility.as_str()),
    ];
    let mut workers = [
        role_process("worker", &redis, &env).await,
        role_process("worker", &redis, &env).await,
    ];
    let held = eventually(Duration::from_secs(20), "a notification sent", || async {
        receiver.posts().first().cloned()
    })
    .await;
    let pid: u32 = held
        .sender
        .rsplit('-')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in sender {:?}", held.sender));
    let sender = workers
        .iter()
        .position(|w| w.child.id() == pid)
        .unwrap_or_else(|| panic!("sender {pid} is not one of the workers"));
    workers[sender].signal("KILL");
    let _ = workers[sender].wait_exit(Duration::from_secs(5));

    let accepted = wait_posts(&receiver, 1).await;
    assert_eq!(accepted[0].key, held.key, "the same change, the same key");
    assert_ne!(
        accepted[0].sender, held.sender,
        "taken over by the other worker"
    );
    // No other POST within the longest retry path (see `quiet_period`).
    tokio::time::sleep(quiet_period()).await;
    assert_eq!(receiver.accepted().len(), 1, "{:#?}", receiver.posts());
    assert!(receiver.posts().iter().all(|p| p.key == held.key));
}

#[tokio::test]
async fn the_targets_file_reloads_and_a_bad_one_keeps_the_last_good() {
    let (a, b) = (Target::start().await, Target::start().await);
    let receiver = Receiver::start(0, false).await;
    let file = TargetsFile::new(&one_target("alpha", &a.url, &receiver.url));
    let path = file.path();
    let (svc, dashboard) = all_watching(&path, &[]);
    let client = crate::helpers::client();
    wait_status(&client, &dashboard, "alpha", "healthy").await;

    let both = format!(
        "targets:\n  - name: alpha\n    url: {}\n    interval: 1s\n  \
         - name: beta\n    url: {}\n    interval: 1s\n    group: second\n",
        a.url, b.url
    );
    file.write(&both);
    wait_status(&client, &dashboard, "beta", "healthy").await;
    assert!(
        svc.output().contains("targets reloaded"),
        "{}",
        svc.output()
    );

    file.write("targets:\n  - name: gamma\n    url: ftp://nowhere\n");
    eventually(Duration::from_secs(10), "the bad file refused", || async {
        svc.output().contains("targets file refused").then_some(())
    })
    .await;
    let output = svc.output();
    let line = output
        .lines()
        .find(|l| l.contains("targets file refused"))
        .expect("the line");
    assert!(
        line.contains("targets[0] (gamma)") && line.contains("scheme"),
        "{line}"
    );
    // Both targets are still probed and shown.
    let hits = b.hits.load(Ordering::SeqCst);
    eventually(Duration::from_secs(10), "beta probed again", || async {
        (b.hits.load(Ordering::SeqCst) > hits + 1).then_some(())
    })
    .await;
    assert_eq!(
        status_of(&client, &dashboard, "alpha").await.as_deref(),
        Some("healthy")
    );
    assert_eq!(status_of(&client, &dashboard, "gamma").await, None);

    // The badge of a target, and of a name nobody listed.
    let badge = client
        .get(format!("{dashboard}/badge/beta.svg"))
        .send()
        .await
        .expect("badge");
    assert_eq!(badge.status(), 200);
    assert_eq!(
        badge.headers()["content-type"].to_str().ok(),
        Some("image/svg+xml")
    );
    let svg = badge.text().await.expect("svg");
    assert!(svg.contains("beta") && svg.contains("up"), "{svg}");
    let missing = client
        .get(format!("{dashboard}/badge/nobody.svg"))
        .send()
        .await
        .expect("badge");
    assert_eq!(missing.status(), 404);
}

#[test]
fn a_bad_targets_file_at_start_is_a_config_error() {
    let file = TargetsFile::new("targets:\n  - name: x\n    url: http://x\n    interval: soon\n");
    let out = svc_command(&["worker", "--targets", &file.path()], &[])
        .output()
        .expect("run svc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("TARGETS_FILE") && stderr.contains("interval") && stderr.contains("soon"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_tcp_target_is_up_while_its_port_listens_and_down_with_the_reason_when_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let open = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let closed = free_port();
    let file = TargetsFile::new(&format!(
        "targets:\n  - name: db\n    url: tcp://{open}\n    interval: 1s\n    timeout: 1s\n  \
         - name: cache\n    url: tcp://127.0.0.1:{closed}\n    interval: 1s\n    timeout: 1s\n"
    ));
    let path = file.path();
    let (_svc, dashboard) = all_watching(&path, &[]);
    let client = crate::helpers::client();
    wait_status(&client, &dashboard, "db", "healthy").await;
    wait_status(&client, &dashboard, "cache", "down").await;
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the probe of db never connected"
    );
    server.abort();

    let db = entry_of(&client, &dashboard, "db").await.expect("db");
    let cache = entry_of(&client, &dashboard, "cache").await.expect("cache");
    assert!(db["error"].is_null(), "{db}");
    // A reason a person can act on: what was tried and what the OS said.
    let reason = cache["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot connect") && reason.contains("refused"),
        "{cache}"
    );

    // Once for the cluster, from the shared state: the dashboard's, not the worker's.
    let metrics = crate::helpers::get_text(&format!("{dashboard}/metrics/targets")).await;
    let up = |name: &str| {
        let series = format!("svc_target_up{{target=\"{name}\",group=\"\",type=\"tcp\"}}");
        crate::metrics::sample(&metrics, &series)
    };
    assert_eq!((up("db"), up("cache")), (Some(1.0), Some(0.0)), "{metrics}");
}

#[tokio::test]
async fn an_https_target_whose_certificate_expires_soon_is_degraded() {
    let tls = TlsServer::start();
    let file = TargetsFile::new(&format!(
        "targets:\n  - name: secure\n    url: https://localhost:{}/\n    interval: 1s\n    \
         expect: {{cert_expires_in: 7d}}\n",
        tls.server.port
    ));
    let path = file.path();
    let ca = tls.ca.display().to_string();
    let (_svc, dashboard) = all_watching(&path, &[("SSL_CERT_FILE", ca.as_str())]);
    let client = crate::helpers::client();
    wait_status(&client, &dashboard, "secure", "degraded").await;
    let entry = entry_of(&client, &dashboard, "secure")
        .await
        .expect("the target");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.contains("certificate expires in"), "{entry}");

    let metrics = crate::helpers::get_text(&format!("{dashboard}/metrics/targets")).await;
    let expiry = crate::metrics::sample(
        &metrics,
        "svc_target_certificate_expiry_seconds{target=\"secure\",group=\"\",type=\"http\"}",
    )
    .unwrap_or_else(|| panic!("no expiry metric:\n{metrics}"));
    let left = expiry - svc::clock::unix_now();
    assert!((0.0..=2.0 * 86400.0).contains(&left), "{left} s left");
}
