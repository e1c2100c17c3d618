//! Credentials in the targets file: a password in a URL's userinfo, a token in its
//! query, a header from `${ENV}`, basic auth with the password in a file, and a
//! webhook URL from `${ENV}`. The targets really are checked with them (the server
//! answers 401 without), and none of them shows anywhere svc speaks: its logs at
//! TRACE, any `/api/*` answer, the page, `/metrics`, the badges, the job records and
//! the notification bodies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::helpers::{Dir, SvcProcess, all_args, client, eventually, try_json};
use crate::targets::read_request;

/// Every credential of the test, each distinct, so a leak names which one.
const USERINFO_PASSWORD: &str = "userinfo-pa55-7f3a";
const QUERY_TOKEN: &str = "query-t0ken-91bc";
const HEADER_TOKEN: &str = "header-t0ken-4d2e";
const BASIC_PASSWORD: &str = "basic-pa55-c81d";
const HOOK_SECRET: &str = "hook-s3cret-5e6f";

/// A server whose paths each want one credential: 401 without it, else 200 or 500
/// as the test sets. Remembers which paths were answered with the credential.
struct Guarded {
    base: String,
    up: Arc<AtomicBool>,
    authorized: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Guarded {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let basic = |user: &str, password: &str| {
            client()
                .get("http://127.0.0.1/")
                .basic_auth(user, Some(password))
                .build()
                .expect("request")
                .headers()[reqwest::header::AUTHORIZATION]
                .to_str()
                .expect("ascii")
                .to_owned()
        };
        let wanted: Arc<Vec<(&str, String)>> = Arc::new(vec![
            ("/userinfo", basic("alice", USERINFO_PASSWORD)),
            ("/header", format!("Bearer {HEADER_TOKEN}")),
            ("/basic", basic("bob", BASIC_PASSWORD)),
        ]);
        let up = Arc::new(AtomicBool::new(true));
        let authorized = Arc::new(Mutex::new(HashMap::new()));
        let (up2, seen) = (up.clone(), authorized.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (wanted, up, seen) = (wanted.clone(), up2.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some((head, _)) = read_request(&mut conn).await else {
                        return;
                    };
                    let target = head.split_whitespace().nth(1).unwrap_or_default();
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let authorization = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_owned())
                    });
                    let ok = match path {
                        "/query" => query
                            .split('&')
                            .any(|p| p == format!("token={QUERY_TOKEN}")),
                        _ => wanted
                            .iter()
                            .any(|(p, want)| *p == path && authorization.as_deref() == Some(want)),
                    };
                    let code = match (ok, up.load(Ordering::SeqCst)) {
                        (false, _) => 401,
                        (true, true) => 200,
                        (true, false) => 500,
                    };
                    if ok {
                        *seen
                            .lock()
                            .expect("seen")
                            .entry(path.to_owned())
                            .or_default() += 1;
                    }
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Guarded {
            base,
            up,
            authorized,
            task,
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const NAMES: [&str; 4] = ["userinfo", "query", "header", "basic"];

/// Each target's state in the dashboard's `/api/health-check`, by name.
async fn states(svc: &SvcProcess) -> HashMap<String, String> {
    let url = format!("http://{}/api/health-check", svc.address_of("dashboard"));
    let Some(answer) = try_json(&client(), &url).await else {
        return HashMap::new();
    };
    answer["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["name"].as_str()?.to_owned(),
                s["status"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

async fn wait_all(svc: &SvcProcess, want: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("every target {want}"),
        || async {
            let states = states(svc).await;
            NAMES
                .iter()
                .all(|n| states.get(*n).map(String::as_str) == Some(want))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn credentials_are_used_for_checks_and_never_shown() {
    let server = Guarded::start().await;
    let hook = crate::channels::Receiver::start().await;
    let hook_url = format!("{}/hooks/{HOOK_SECRET}", hook.base);
    let dir = Dir::new("credentials");
    let password_file = dir.path("basic-password");
    std::fs::write(&password_file, format!("{BASIC_PASSWORD}\n")).expect("write");
    let base = &server.base;
    let targets = format!(
        "targets:
  - {{name: userinfo, url: 'http://alice:{USERINFO_PASSWORD}@{base}/userinfo'}}
  - {{name: query, url: 'http://{base}/query?token={QUERY_TOKEN}&page=1'}}
  - name: header
    url: http://{base}/header
    headers: {{Authorization: 'Bearer ${{SVC_TEST_HEADER_TOKEN}}'}}
  - name: basic
    url: http://{base}/basic
    basic_auth: {{username: bob, password: {{file: '{}'}}}}
notify:
  - url: ${{SVC_TEST_HOOK_URL}}
",
        password_file.display()
    );
    let file = dir.path("targets.yaml");
    std::fs::write(&file, &targets).expect("write");
    let file = file.display().to_string();
    let svc = SvcProcess::spawn(
        &all_args(&["--targets", &file]),
        &[
            ("WORKER_INTERVAL", "1s"),
            ("REFRESH_PERIOD", "1s"),
            ("LOG_LEVEL", "trace"),
            ("SVC_TEST_HEADER_TOKEN", HEADER_TOKEN),
            ("SVC_TEST_HOOK_URL", &hook_url),
        ],
    );

    // Up only with the credentials (the server answers 401 without), then down, then
    // up again: two notifications a target.
    wait_all(&svc, "healthy").await;
    server.up.store(false, Ordering::SeqCst);
    wait_all(&svc, "down").await;
    server.up.store(true, Ordering::SeqCst);
    wait_all(&svc, "healthy").await;
    let authorized = server.authorized.lock().expect("seen").clone();
    for path in ["/userinfo", "/query", "/header", "/basic"] {
        assert!(
            authorized.get(path).is_some_and(|n| *n >= 3),
            "{authorized:?}"
        );
    }
    let bodies = eventually(
        Duration::from_secs(30),
        "two notifications a target",
        || async {
            let bodies: Vec<String> = hook.to("/hooks").into_iter().map(|r| r.body).collect();
            (bodies.len() >= 2 * NAMES.len()).then_some(bodies)
        },
    )
    .await;

    // Everything svc shows, from every role.
    let http = client();
    let mut shown: Vec<(String, String)> = Vec::new();
    let gateway = svc.address_of("api-gateway");
    let worker = svc.address_of("worker-service");
    let dashboard = svc.address_of("dashboard");
    let mut paths: Vec<String> = [
        format!("http://{gateway}/"),
        format!("http://{gateway}/api/status"),
        format!("http://{gateway}/api/info"),
        format!("http://{gateway}/metrics"),
        format!("http://{worker}/status"),
        format!("http://{worker}/metrics"),
        format!("http://{dashboard}/"),
        format!("http://{dashboard}/partials/status"),
        format!("http://{dashboard}/api/health-check"),
        format!("http://{dashboard}/api/system-info"),
        format!("http://{dashboard}/api/incidents"),
        format!("http://{dashboard}/metrics"),
    ]
    .into();
    paths.extend(
        NAMES
            .iter()
            .map(|n| format!("http://{dashboard}/badge/{n}.svg")),
    );
    // The notification jobs' records, as the gateway shows them.
    for body in &bodies {
        let id = serde_json::from_str::<serde_json::Value>(body).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        paths.push(format!("http://{gateway}/api/jobs/notify-{id}-webhook"));
    }
    for url in paths {
        let res = http.get(&url).send().await.expect("GET");
        assert!(res.status().is_success(), "{url}: {}", res.status());
        shown.push((url, res.text().await.expect("body")));
    }
    let page = &shown[6].1;
    assert!(page.contains("/userinfo"), "the page lists the targets");
    for body in bodies {
        shown.push(("a notification body".into(), body));
    }
    shown.push(("the logs".into(), svc.output()));

    let secrets = [
        USERINFO_PASSWORD,
        QUERY_TOKEN,
        HEADER_TOKEN,
        BASIC_PASSWORD,
        HOOK_SECRET,
    ];
    for (place, text) in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shows in {place}");
        }
    }
    // What is shown instead: the URL with its credentials masked.
    let health = &shown[8].1;
    assert!(
        health.contains(&format!("http://***@{base}/userinfo")),
        "{health}"
    );
    assert!(health.contains("token=***&page=1"), "{health}");
}

#[tokio::test]
async fn a_rotated_password_file_takes_effect_without_a_restart() {
    let server = Guarded::start().await;
    let dir = Dir::new("rotated");
    let password_file = dir.path("basic-password");
    std::fs::write(&password_file, "an-old-password\n").expect("write");
    let file = dir.path("targets.yaml");
    let text = format!(
        "targets:\n  - name: basic\n    url: http://{}/basic\n    failure_threshold: 1\n    \
         basic_auth: {{username: bob, password: {{file: '{}'}}}}\n",
        server.base,
        password_file.display()
    );
    std::fs::write(&file, text).expect("write");
    let file = file.display().to_string();
    let svc = SvcProcess::spawn(
        &all_args(&["--targets", &file]),
        &[("WORKER_INTERVAL", "1s"), ("REFRESH_PERIOD", "1s")],
    );
    let state = |want: &'static str| {
        let svc = &svc;
        async move {
            eventually(
                Duration::from_secs(30),
                &format!("basic {want}"),
                || async {
                    (states(svc).await.get("basic").map(String::as_str) == Some(want)).then_some(())
                },
            )
            .await;
        }
    };
    state("down").await;
    // The Secret is rotated: the file changes, the targets file does not.
    let rotated = dir.path(".basic-password.new");
    std::fs::write(&rotated, BASIC_PASSWORD).expect("write");
    std::fs::rename(&rotated, &password_file).expect("rename");
    state("healthy").await;
    assert!(
        svc.output().contains("targets reloaded"),
        "{}",
        svc.output()
    );
}

#[tokio::test]
async fn the_dashboard_needs_no_credentials_and_a_worker_names_the_one_it_lacks() {
    let dir = Dir::new("no-credentials");
    let file = dir.path("targets.yaml");
    std::fs::write(
        &file,
        "targets:\n  - name: api\n    url: 'http://svc:${SVC_TEST_API_PASSWORD}@127.0.0.1:9/health'\n    \
         headers: {X-Key: '${SVC_TEST_API_KEY}'}\nnotify:\n  - url: '${SVC_TEST_HOOK_URL}'\n",
    )
    .expect("write");
    let file = file.display().to_string();

    let out = crate::helpers::svc_command(&["worker", "--targets", &file], &[])
        .output()
        .expect("run svc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("SVC_TEST_API_PASSWORD") && stderr.contains("is not set"),
        "{stderr}"
    );

    let svc = SvcProcess::spawn(&["dashboard", "--port", "0", "--targets", &file], &[]);
    let shown = eventually(Duration::from_secs(10), "the target listed", || async {
        let answer = try_json(&client(), &svc.url("/api/health-check")).await?;
        answer["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "api")
            .cloned()
    })
    .await;
    assert_eq!(shown["url"], "http://***@127.0.0.1:9/health", "{shown}");
}
