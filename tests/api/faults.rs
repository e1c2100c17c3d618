//! Fault injection: absent unless enabled; each fault does what it says, within its
//! bounds, is counted, and shows on the dashboard through the heartbeats.

use std::time::Duration;

use serde_json::Value;
use svc::config::StoreSettings;
use svc::roles::dashboard;
use url::Url;

use crate::helpers::{RedisServer, TestApp, eventually, free_port, test_settings, worker_process};
use crate::metrics::{promtool_check, sample};

async fn gateway(faults: bool) -> TestApp {
    let settings = svc::config::Settings {
        faults,
        ..test_settings(StoreSettings::Memory)
    };
    let app = TestApp::gateway(settings).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    app
}

impl TestApp {
    async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
        let res = self
            .client
            .request(method.clone(), format!("{}{path}", self.address))
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, json)
    }
}

fn active(body: &Value) -> Vec<String> {
    body["active"]
        .as_array()
        .unwrap_or_else(|| panic!("no active list: {body}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

#[tokio::test]
async fn fault_routes_are_404_unless_enabled() {
    let app = gateway(false).await;
    for (method, path) in [
        (reqwest::Method::GET, "/faults"),
        (reqwest::Method::GET, "/faults/status/500"),
        (reqwest::Method::GET, "/faults/delay/1s"),
        (reqwest::Method::POST, "/faults/ready/disable"),
        (reqwest::Method::POST, "/faults/api"),
        (reqwest::Method::POST, "/faults/cpu"),
    ] {
        let (status, body) = app.send(method.clone(), path, "{}").await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn status_and_delay_answer_as_asked_within_bounds() {
    let app = gateway(true).await;
    assert_eq!(app.get("/faults/status/503").await.0, 503);
    assert_eq!(app.get("/faults/status/418").await.0, 418);
    for bad in [
        "/faults/status/99",
        "/faults/status/600",
        "/faults/status/x",
    ] {
        assert_eq!(app.get(bad).await.0, 400, "{bad}");
    }
    let (status, body) = app.get_json("/faults/delay/100ms").await;
    assert_eq!(status, 200);
    assert_eq!(body["delayed_ms"], 100);
    for bad in ["/faults/delay/2h", "/faults/delay/soon"] {
        assert_eq!(app.get(bad).await.0, 400, "{bad}");
    }
    // The recorder is the test process's, shared with other tests: at least ours.
    let metrics = app.get("/metrics").await.1;
    for (fault, n) in [("status", 2.0), ("delay", 1.0)] {
        let series = format!(r#"svc_faults_injected_total{{fault="{fault}"}}"#);
        assert!(sample(&metrics, &series) >= Some(n), "{series}: {metrics}");
    }
}

#[tokio::test]
async fn readiness_and_liveness_can_be_turned_off_and_say_why() {
    let app = gateway(true).await;
    let (status, body) = app
        .send(reqwest::Method::POST, "/faults/ready/disable", "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(active(&body), ["readiness disabled"]);
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 503);
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fault")),
        "{ready}"
    );
    app.send(reqwest::Method::POST, "/faults/ready/enable", "")
        .await;
    app.wait_ready(200, Duration::from_secs(5)).await;

    assert_eq!(app.get("/health/live").await.0, 200);
    app.send(reqwest::Method::POST, "/faults/live/disable", "")
        .await;
    let (status, live) = app.get_json("/health/live").await;
    assert_eq!(status, 503, "{live}");
    assert_eq!(
        active(&app.get_json("/faults").await.1),
        ["liveness disabled"]
    );
    let (status, _) = app
        .send(reqwest::Method::POST, "/faults/disk/disable", "")
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.get("/faults/ready/disable").await.0, 405);

    let metrics = app.get("/metrics").await.1;
    for fault in ["ready_disable", "ready_enable", "live_disable"] {
        let series = format!(r#"svc_faults_injected_total{{fault="{fault}"}}"#);
        assert!(
            sample(&metrics, &series) >= Some(1.0),
            "{series}: {metrics}"
        );
    }
}

#[tokio::test]
async fn an_api_fault_fails_its_share_of_api_requests_until_cleared() {
    let app = gateway(true).await;
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/faults/api",
            r#"{"error_rate": 0.5, "latency": "20ms"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(active(&body)[0].contains("50% errors"), "{body}");
    let mut failed = 0;
    for _ in 0..10 {
        let (status, body) = app.get("/api/info").await;
        if status == 500 {
            assert!(body.contains("injected fault"), "{body}");
            failed += 1;
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert_eq!(failed, 5);
    // Only /api/* is touched.
    assert_eq!(app.get("/health/live").await.0, 200);
    // Injected errors are counted like real ones (other tests may add to the series).
    let metrics = app.get("/metrics").await.1;
    let series = r#"api_gateway_requests_total{method="GET",endpoint="/api/info",status="500"}"#;
    assert!(sample(&metrics, series) >= Some(5.0), "{metrics}");

    let (status, body) = app.send(reqwest::Method::DELETE, "/faults/api", "").await;
    assert_eq!(status, 200);
    assert!(active(&body).is_empty(), "{body}");
    for _ in 0..4 {
        assert_eq!(app.get("/api/info").await.0, 200);
    }
    for bad in [
        r#"{"error_rate": 1.5}"#,
        r#"{"error_rate": -0.1}"#,
        r#"{"latency": "1h"}"#,
        r#"{"latency": "later"}"#,
        r#"{"error_rate": 0.1, "colour": "red"}"#,
        "not json",
    ] {
        let (status, body) = app.send(reqwest::Method::POST, "/faults/api", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn cpu_and_memory_faults_are_bounded_and_listed_while_active() {
    let app = gateway(true).await;
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/faults/cpu",
            r#"{"duration": "300ms", "cores": 1}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(active(&body)[0].starts_with("cpu: 1 cores busy"), "{body}");
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/faults/memory",
            r#"{"mib": 8, "duration": "2s"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        active(&body)
            .iter()
            .any(|a| a.starts_with("memory: 8 MiB held")),
        "{body}"
    );
    for (path, bad) in [
        ("/faults/cpu", r#"{"duration": "2s", "cores": 100000}"#),
        ("/faults/cpu", r#"{"duration": "2s", "cores": 0}"#),
        ("/faults/cpu", r#"{"duration": "1d"}"#),
        ("/faults/memory", r#"{"mib": 1000000, "duration": "1s"}"#),
        ("/faults/memory", r#"{"mib": 0, "duration": "1s"}"#),
        ("/faults/memory", r#"{"mib": 8, "duration": "1d"}"#),
    ] {
        let (status, body) = app.send(reqwest::Method::POST, path, bad).await;
        assert_eq!(status, 400, "{path} {bad}: {body}");
    }
    // Both end by themselves.
    eventually(Duration::from_secs(10), "the faults to end", || async {
        active(&app.get_json("/faults").await.1)
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_fault_on_a_worker_shows_as_a_banner_on_the_dashboard() {
    let redis = RedisServer::start();
    let worker = worker_process(&redis, &[("FAULTS", "on")]).await;
    let closed = Url::parse(&format!("http://127.0.0.1:{}", free_port())).expect("url");
    let settings = test_settings(StoreSettings::Redis(redis.settings()));
    let store = svc::store::open(&settings.store, "svc:").expect("store");
    let config =
        dashboard::Config::new(closed.clone(), closed, Duration::from_secs(1)).expect("config");
    let page = TestApp::dashboard(settings, config, store).await;
    page.wait_ready(200, Duration::from_secs(5)).await;
    eventually(
        Duration::from_secs(10),
        "the worker on the page",
        || async {
            let (_, html) = page.get("/").await;
            html.contains("<td>worker</td>").then_some(())
        },
    )
    .await;
    assert!(!page.get("/").await.1.contains("Fault injection active"));

    let res = crate::helpers::client()
        .post(worker.url("/faults/ready/disable"))
        .send()
        .await
        .expect("POST to the worker");
    assert_eq!(res.status(), 200);
    let html = eventually(Duration::from_secs(15), "the fault banner", || async {
        let (_, html) = page.get("/").await;
        html.contains("Fault injection active").then_some(html)
    })
    .await;
    assert!(html.contains("readiness disabled"), "{html}");
    assert!(
        worker.output().contains("fault injected"),
        "{}",
        worker.output()
    );
    // The worker's own process: exact counts, and valid for Prometheus.
    let metrics = crate::helpers::client()
        .get(worker.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    promtool_check(&metrics);
    assert_eq!(
        sample(
            &metrics,
            r#"svc_faults_injected_total{fault="ready_disable"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "svc_faults_active"), Some(1.0));

    crate::helpers::client()
        .post(worker.url("/faults/ready/enable"))
        .send()
        .await
        .expect("POST to the worker");
    eventually(Duration::from_secs(15), "the banner to go", || async {
        let (_, html) = page.get("/").await;
        (!html.contains("Fault injection active")).then_some(())
    })
    .await;
}
