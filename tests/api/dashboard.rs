//! The dashboard in-process, against fake upstreams on loopback (healthy, slow, not
//! ready, closed, hung) and a store the test fills as the worker would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use svc::clock::{minute_of, unix_now};
use svc::config::StoreSettings;
use svc::roles::dashboard;
use svc::service::ServiceState;
use svc::service::{Role, Service};
use svc::store::memory::MemoryStore;
use svc::store::{HealthSample, Instance, SharedStore, keys, series};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use crate::helpers::{RedisServer, TestApp, free_port, svc_command, test_settings};
use crate::metrics::{promtool_check, sample};

const READY: &str = r#"{"status":"ready"}"#;

/// A fake service: answers every request with `status` and `body` after `delay`, and
/// counts the requests.
pub(crate) struct Upstream {
    pub(crate) url: Url,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(status: u16, body: &'static str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url =
            Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = conn.read(&mut request).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Upstream { url, hits, task }
    }

    pub(crate) async fn healthy() -> Self {
        Self::start(200, READY, Duration::ZERO).await
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL nobody listens on.
pub(crate) fn closed() -> Url {
    Url::parse(&format!("http://127.0.0.1:{}", free_port())).expect("url")
}

pub(crate) fn config(gateway: &Url, worker: &Url, refresh: Duration) -> dashboard::Config {
    dashboard::Config::new(gateway.clone(), worker.clone(), refresh).expect("valid config")
}

pub(crate) async fn start(
    gateway: &Url,
    worker: &Url,
    refresh: Duration,
    store: SharedStore,
) -> TestApp {
    let settings = test_settings(StoreSettings::Memory);
    TestApp::dashboard(settings, config(gateway, worker, refresh), store).await
}

pub(crate) fn memory() -> SharedStore {
    Arc::new(MemoryStore::new())
}

pub(crate) fn service<'a>(check: &'a Value, name: &str) -> &'a Value {
    check["services"]
        .as_array()
        .expect("services is an array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {check}"))
}

/// `samples` health samples for every service as the worker records them, one per
/// 10 s, the newest `age` seconds old; and 3 in 4 checks up in the last full minute,
/// so many that the dashboard's own few samples leave 75.0 %.
pub async fn record_history(store: &SharedStore, age: f64, samples: u32) {
    let now = unix_now();
    for name in Service::ALL {
        for i in (0..samples).rev() {
            let sample = HealthSample {
                service: name,
                timestamp: now - age - 10.0 * f64::from(i),
                status: ServiceState::Healthy,
                response_time_ms: Some(2.0 + f64::from(i * 7 % 11) * 0.6),
                error: None,
            };
            store.record_health(&sample, 100).await.expect("record");
        }
        let minute = minute_of(now);
        store
            .series_add(&series::checks(name.as_str()), minute - 1, 4000)
            .await
            .expect("checks");
        store
            .series_add(&series::up(name.as_str()), minute - 1, 3000)
            .await
            .expect("up");
    }
}

/// A heartbeat as a replica of `role` serving at `url` would write it.
pub(crate) async fn announce(
    store: &SharedStore,
    (role, url): (Role, &Url),
    id: &str,
    version: &str,
    started_at: f64,
) {
    let instance = Instance {
        role,
        id: id.into(),
        version: version.into(),
        started_at,
        address: Some(format!(
            "{}:{}",
            url.host_str().expect("host"),
            url.port().expect("port")
        )),
        faults: Vec::new(),
        location: None,
    };
    store
        .heartbeat(&instance, Duration::from_secs(60))
        .await
        .expect("heartbeat");
}

#[tokio::test]
async fn health_check_reports_every_service_with_the_original_fields() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), memory()).await;
    let (status, check) = app.get_json("/api/health-check").await;
    assert_eq!(status, 200);
    assert_eq!(check["system_status"], "healthy", "{check}");
    assert_eq!(check["reason"], "All services healthy");
    assert!(check["timestamp"].as_f64().expect("timestamp") > 1.7e9);
    let names: Vec<&str> = check["services"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    // The embedded store is part of the process, not a service: no entry.
    assert_eq!(names, ["api-gateway", "worker-service", "dashboard"]);
    for name in [Service::ApiGateway, Service::Worker].map(Service::as_str) {
        let s = service(&check, name);
        assert_eq!(s["status"], "healthy", "{s}");
        assert!(s["response_time_ms"].as_f64().is_some(), "{s}");
        assert!(s["error"].is_null(), "{s}");
        // No replica announces itself: the Service URL counts as one.
        assert_eq!(
            s["replicas"],
            serde_json::json!({"ready": 1, "total": 1}),
            "{s}"
        );
        // One round observed: up, and not yet written.
        assert_eq!(s["uptime_1h"], 100.0, "{s}");
    }
    let me = service(&check, "dashboard");
    assert_eq!(me["replicas"]["ready"], 1, "{me}");
    // The dashboard's card says what it does: one probe per Service URL, none to itself.
    let (_, page) = app.get("/partials/status").await;
    assert!(
        page.contains("Serving this page; sending 2 readiness probes every 5 s"),
        "{page}"
    );
}

#[tokio::test]
async fn a_slow_worker_degrades_the_system() {
    let gateway = Upstream::healthy().await;
    let worker = Upstream::start(200, READY, Duration::from_millis(1300)).await;
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), memory()).await;
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(check["system_status"], "degraded", "{check}");
    let w = service(&check, Service::Worker.as_str());
    assert_eq!(w["status"], "degraded");
    assert!(w["response_time_ms"].as_f64().expect("answered") >= 1300.0);
    assert!(w["error"].as_str().expect("error").contains("slow"), "{w}");
    assert!(
        check["reason"]
            .as_str()
            .expect("reason")
            .starts_with("Worker degraded: slow"),
        "{check}"
    );
    assert_eq!(
        service(&check, Service::ApiGateway.as_str())["status"],
        "healthy"
    );
}

#[tokio::test]
async fn a_worker_that_is_not_ready_degrades_the_system() {
    let gateway = Upstream::healthy().await;
    let body = r#"{"status":"not_ready","reason":"redis unreachable"}"#;
    let worker = Upstream::start(503, body, Duration::ZERO).await;
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), memory()).await;
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(check["system_status"], "degraded", "{check}");
    let w = service(&check, Service::Worker.as_str());
    assert_eq!(w["status"], "degraded");
    assert_eq!(w["error"], "not ready (HTTP 503): redis unreachable");
}

#[tokio::test]
async fn an_unreachable_gateway_is_system_down_and_the_dashboard_stays_ready() {
    let worker = Upstream::healthy().await;
    let app = start(&closed(), &worker.url, Duration::from_secs(5), memory()).await;
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(check["system_status"], "down", "{check}");
    let g = service(&check, Service::ApiGateway.as_str());
    assert_eq!(g["status"], "down");
    assert!(g["response_time_ms"].is_null());
    assert!(
        g["error"]
            .as_str()
            .expect("error")
            .contains("cannot connect"),
        "{g}"
    );
    assert!(
        check["reason"]
            .as_str()
            .expect("reason")
            .starts_with("API gateway down"),
        "{check}"
    );
    app.wait_ready(200, Duration::from_secs(5)).await;
    let (status, page) = app.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"data-state="down""#), "{page}");
}

#[tokio::test]
async fn a_gateway_that_never_answers_is_down_after_the_probe_timeout_and_pages_do_not_wait() {
    let gateway = Upstream::start(200, READY, Duration::from_secs(60)).await;
    let worker = Upstream::healthy().await;
    let app = start(&gateway.url, &worker.url, Duration::from_secs(1), memory()).await;
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(check["system_status"], "down", "{check}");
    let g = service(&check, Service::ApiGateway.as_str());
    assert_eq!(g["error"], "no answer within 2 s");
    // Probe rounds now take the whole 2 s timeout; pages are served from the last
    // one, so none waits for a probe (a probe-bound page would take 2 s).
    for _ in 0..5 {
        let start = Instant::now();
        let (status, _) = app.get("/partials/status").await;
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn system_info_and_the_page_show_what_the_worker_wrote() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let store = memory();
    record_history(&store, 2.0, 5).await;
    let now = unix_now();
    store.set(keys::TOTAL_REQUESTS, "42").await.expect("set");
    store
        .set(&keys::worker_tasks("cleanup"), "7")
        .await
        .expect("set");
    store
        .set(keys::WORKER_LAST_TASK, "cleanup")
        .await
        .expect("set");
    store
        .set(keys::WORKER_LAST_TASK_TIME, &(now - 3.0).to_string())
        .await
        .expect("set");
    store
        .series_add(series::REQUESTS, minute_of(now) - 1, 30)
        .await
        .expect("series");
    announce(
        &store,
        (Role::Worker, &worker.url),
        "worker-7f9c",
        "0.1.0",
        now - 125.0,
    )
    .await;
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), store).await;

    let (status, info) = app.get_json("/api/system-info").await;
    assert_eq!(status, 200);
    assert_eq!(info["total_requests"], 42, "{info}");
    assert_eq!(info["task_stats"]["cleanup"], 7);
    assert_eq!(info["task_stats"]["data_processing"], 0);
    assert_eq!(info["last_task"], "cleanup");
    let ago = info["last_task_seconds_ago"].as_f64().expect("seconds");
    assert!((3.0..30.0).contains(&ago), "{ago}");
    assert_eq!(info["requests_last_minute"], 30);
    assert_eq!(info["history_stale"], false);
    assert_eq!(info["queue"]["dead_letters"], 0);
    assert_eq!(info["redis_connected"], true);
    assert_eq!(info["environment"], "development");
    let ids: Vec<&str> = info["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(ids.contains(&"worker-7f9c"), "{info}");

    let (_, page) = app.get("/").await;
    assert!(
        page.contains(r#"<dd id="total-requests">42</dd>"#),
        "{page}"
    );
    assert!(
        page.contains("75.0 %"),
        "uptime of 3 up in 4 checks: {page}"
    );
    // The embedded store is part of the process: no card (and no sparkline) of its own.
    assert_eq!(page.matches(r#"<svg class="spark""#).count(), 3);
    assert!(!page.contains(r#"data-service="redis""#), "{page}");
    assert!(page.contains("worker-7f9c") && page.contains("2 min"));
    assert!(page.contains(r#"<svg class="bars""#));
    assert!(!page.contains(r#"id="stale""#));
}

#[tokio::test]
async fn stale_history_is_labelled_not_shown_as_live() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let store = memory();
    record_history(&store, 120.0, 5).await;
    store
        .series_add(series::REQUESTS, minute_of(unix_now()) - 1, 30)
        .await
        .expect("series");
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), store).await;
    let (_, page) = app.get("/partials/status").await;
    assert!(page.contains(r#"id="stale""#), "{page}");
    assert!(
        page.contains("the newest health sample is 2 min old"),
        "{page}"
    );
    // Uptime is the dashboard's own record, not the worker's: still current.
    assert!(page.contains("75.0 %"), "{page}");
    assert!(!page.contains(r#"<svg class="spark""#));
    assert!(!page.contains(r#"<svg class="bars""#));
    let (_, info) = app.get_json("/api/system-info").await;
    assert_eq!(info["history_stale"], true);
    assert!(info["requests_last_minute"].is_null(), "{info}");
}

#[tokio::test]
async fn text_from_the_network_and_the_store_is_escaped() {
    let gateway = Upstream::healthy().await;
    let body = r#"{"status":"not_ready","reason":"<script>alert('reason')</script>"}"#;
    let worker = Upstream::start(503, body, Duration::ZERO).await;
    let store = memory();
    let id = "<script>alert('id')</script>";
    announce(
        &store,
        (Role::Worker, &worker.url),
        id,
        "\"><img src=x>",
        unix_now(),
    )
    .await;
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), store).await;
    for path in ["/", "/partials/status"] {
        let (_, page) = app.get(path).await;
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(
            !page.contains("<b>worker") && !page.contains("<img"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert('id')&lt;/script&gt;"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;alert('reason')"), "{page}");
    }
}

#[tokio::test]
async fn many_page_loads_cause_one_probe_per_service_per_period() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let app = start(&gateway.url, &worker.url, Duration::from_secs(60), memory()).await;
    app.get_json("/api/health-check").await;
    assert_eq!((gateway.hits(), worker.hits()), (1, 1));
    let paths = ["/", "/partials/status", "/api/health-check"];
    let statuses = load(&app, paths.into_iter().cycle().take(60)).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        (gateway.hits(), worker.hits()),
        (1, 1),
        "page loads caused probes"
    );
}

#[tokio::test]
async fn probes_repeat_once_per_period_under_load() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let period = Duration::from_secs(1);
    let app = start(&gateway.url, &worker.url, period, memory()).await;
    app.get_json("/api/health-check").await;
    let start = Instant::now();
    // Load for a while (not a wait: the requests are the point), then count.
    while start.elapsed() < Duration::from_millis(2500) {
        load(&app, std::iter::repeat_n("/partials/status", 8)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = (elapsed / period.as_secs_f64()).floor() as usize + 1;
    for upstream in [&gateway, &worker] {
        let hits = upstream.hits();
        assert!(hits >= 2, "the probes did not repeat: {hits}");
        assert!(hits <= allowed, "{hits} probes in {elapsed:.1} s");
    }
}

/// GETs every path at once; returns the statuses (0: no answer).
async fn load(app: &TestApp, paths: impl Iterator<Item = &'static str>) -> Vec<u16> {
    let mut requests = tokio::task::JoinSet::new();
    for path in paths {
        let (client, url) = (app.client.clone(), format!("{}{path}", app.address));
        requests.spawn(async move {
            client
                .get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        });
    }
    requests.join_all().await
}

#[tokio::test]
async fn the_page_has_security_headers_and_cacheable_assets_under_50_kb() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), memory()).await;
    let res = app
        .client
        .get(format!("{}/", app.address))
        .send()
        .await
        .expect("page");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(header("content-type").starts_with("text/html"));
    let page = res.text().await.expect("body");
    assert!(page.contains(r#"<noscript><meta http-equiv="refresh" content="5">"#));
    assert!(page.contains(r#"data-src="/partials/status""#));
    // No inline script or style for the CSP to block.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(
        !page.contains("style=") && !page.contains("<style"),
        "{page}"
    );

    let mut total = page.len();
    for prefix in [r#"href="/static/"#, r#"src="/static/"#] {
        let start = page.find(prefix).expect("asset link") + prefix.len() - "/static/".len();
        let path = &page[start..start + page[start..].find('"').expect("quote")];
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), 200, "{path}");
        let cache = res.headers()["cache-control"].to_str().expect("ascii");
        assert!(cache.contains("immutable"), "{cache}");
        let etag = res.headers()["etag"].clone();
        total += res.bytes().await.expect("body").len();
        let again = app
            .client
            .get(format!("{}{path}", app.address))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(again.status(), 304, "{path}");
    }
    assert!(total < 50_000, "page, CSS and JS are {total} bytes");
    let (status, _) = app.get("/static/dashboard-0000.css").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn dashboard_metrics_pass_promtool_and_count_probes_and_requests() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let app = start(&gateway.url, &worker.url, Duration::from_secs(5), memory()).await;
    for _ in 0..2 {
        assert_eq!(app.get("/partials/status").await.0, 200);
    }
    let (_, text) = app.get("/metrics").await;
    promtool_check(&text);
    let partials =
        r#"dashboard_requests_total{method="GET",endpoint="/partials/status",status="200"}"#;
    assert!(sample(&text, partials).is_some_and(|n| n >= 2.0), "{text}");
    let probes = r#"dashboard_probes_total{service="api-gateway",result="healthy"}"#;
    assert!(sample(&text, probes).is_some_and(|n| n >= 1.0), "{text}");
    assert!(text.contains(
        r#"dashboard_request_duration_seconds_bucket{method="GET",endpoint="/partials/status",le="0.005"}"#
    ));
    for name in [
        "dashboard_requests_total",
        "dashboard_request_duration_seconds",
        "dashboard_requests_in_progress",
        "dashboard_redis_connection_status",
        "dashboard_probes_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
}

#[tokio::test]
async fn losing_redis_makes_the_dashboard_unready_but_the_page_still_answers() {
    let mut redis = RedisServer::start();
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let settings = test_settings(StoreSettings::Redis(redis.settings()));
    let store = svc::store::open(&settings.store, "svc:").expect("store");
    let app = TestApp::dashboard(
        settings,
        config(&gateway.url, &worker.url, Duration::from_secs(1)),
        store,
    )
    .await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    redis.stop();
    app.wait_ready(503, Duration::from_secs(5)).await;
    crate::helpers::eventually(Duration::from_secs(10), "redis reported down", || async {
        let (status, check) = app.get_json("/api/health-check").await;
        (status == 200 && service(&check, Service::Redis.as_str())["status"] == "down")
            .then_some(())
    })
    .await;
    let (status, page) = app.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("not connected"), "{page}");
    assert!(page.contains("the store is unreachable"), "{page}");
}

#[test]
fn bad_dashboard_flags_are_usage_errors() {
    for args in [
        ["dashboard", "--refresh", "0s"],
        ["dashboard", "--gateway-url", "https://gw:8080"],
        ["dashboard", "--worker-url", "not a url"],
        ["dashboard", "--advertise-addr", "not an address"],
        ["gateway", "--advertise-addr", "gw:8080/path"],
    ] {
        let out = svc_command(&args, &[]).output().expect("run svc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
