//! Detection with every role as a process of its own on a real Redis: each replica is
//! probed and counted, and an outage of the store or of the worker tier is counted in
//! uptime and kept as an incident once it is over.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    RedisServer, SvcProcess, eventually, gateway_process, role_process, worker_process,
};

/// How long the outages below last. The figures the test reads afterwards are about it.
const OUTAGE: Duration = Duration::from_secs(20);
/// Deadline of each wait: generous, the machine is shared.
const WITHIN: Duration = Duration::from_secs(60);

/// A `svc dashboard` process over `redis`, refreshing every second, whose Service URLs
/// name `gateway` and `worker`.
pub async fn dashboard_over(
    redis: &RedisServer,
    gateway: &SvcProcess,
    worker: &SvcProcess,
) -> SvcProcess {
    let gateway_url = format!("http://{}", gateway.address);
    let worker_url = format!("http://{}", worker.address);
    role_process(
        "dashboard",
        redis,
        &[
            ("API_GATEWAY_URL", &gateway_url),
            ("WORKER_SERVICE_URL", &worker_url),
            ("REFRESH_PERIOD", "1s"),
        ],
    )
    .await
}

/// The `services` entry named `name`.
pub fn entry<'a>(check: &'a Value, name: &str) -> Option<&'a Value> {
    check["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

async fn get_json(dashboard: &SvcProcess, path: &str) -> Option<Value> {
    crate::helpers::client()
        .get(dashboard.url(path))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Polls `/api/health-check` until the entry of `name` satisfies `ok`; returns the
/// whole answer.
pub async fn until_service(
    dashboard: &SvcProcess,
    name: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let ok = &ok;
    eventually(WITHIN, what, || async move {
        let check = get_json(dashboard, "/api/health-check").await?;
        entry(&check, name).is_some_and(ok).then_some(check)
    })
    .await
}

/// Polls `/api/incidents` until one of `service`, to `to`, has ended; returns it.
async fn until_incident_ended(dashboard: &SvcProcess, service: &str, to: &str) -> Value {
    eventually(WITHIN, &format!("a {service} incident ended"), || async {
        let answer = get_json(dashboard, "/api/incidents").await?;
        answer["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["service"] == service && i["to"] == to && !i["ended_at"].is_null())
            .cloned()
    })
    .await
}

fn uptime_below_100(s: &Value) -> bool {
    s["uptime_1h"].as_f64().is_some_and(|u| u < 100.0)
}

#[tokio::test]
async fn killing_one_of_two_gateways_is_degraded_and_both_is_down() {
    let redis = RedisServer::start();
    let mut first = gateway_process(&redis, &[]).await;
    let mut second = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[]).await;
    let _other_worker = worker_process(&redis, &[]).await;
    // The dashboard's Service URL names the first gateway: the one killed first.
    let dashboard = dashboard_over(&redis, &first, &worker).await;
    let both = json!({"ready": 2, "total": 2});
    until_service(&dashboard, "api-gateway", "both gateways ready", |s| {
        s["status"] == "healthy" && s["replicas"] == both
    })
    .await;
    until_service(&dashboard, "worker-service", "both workers ready", |s| {
        s["replicas"] == both
    })
    .await;

    first.child.kill().expect("kill the first gateway");
    let check = until_service(&dashboard, "api-gateway", "one gateway of two", |s| {
        s["status"] == "degraded" && s["replicas"]["ready"] == 1
    })
    .await;
    let gateway = entry(&check, "api-gateway").expect("gateway entry");
    assert_eq!(gateway["replicas"]["total"], 2, "{gateway}");
    assert!(
        gateway["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("1 of 2 gateways ready")),
        "{gateway}"
    );
    assert_eq!(check["system_status"], "degraded", "{check}");

    second.child.kill().expect("kill the second gateway");
    let check = until_service(&dashboard, "api-gateway", "no gateway", |s| {
        s["status"] == "down" && s["replicas"]["ready"] == 0
    })
    .await;
    assert_eq!(check["system_status"], "down", "{check}");
    // Killed, not shut down: both are still listed, as lost.
    let info = get_json(&dashboard, "/api/health-check")
        .await
        .expect("health check");
    let gateway = entry(&info, "api-gateway").expect("gateway entry");
    assert_eq!(gateway["replicas"]["total"], 2, "{gateway}");
}

#[tokio::test]
async fn a_gateway_shut_down_cleanly_leaves_the_count_and_is_not_lost() {
    let redis = RedisServer::start();
    let mut first = gateway_process(&redis, &[]).await;
    let second = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[]).await;
    let dashboard = dashboard_over(&redis, &second, &worker).await;
    until_service(&dashboard, "api-gateway", "both gateways ready", |s| {
        s["replicas"] == json!({"ready": 2, "total": 2})
    })
    .await;
    first.signal("TERM");
    assert_eq!(first.wait_exit(WITHIN), Some(0), "{}", first.output());
    let check = until_service(&dashboard, "api-gateway", "one gateway, healthy", |s| {
        s["status"] == "healthy" && s["replicas"] == json!({"ready": 1, "total": 1})
    })
    .await;
    assert_eq!(check["system_status"], "healthy", "{check}");
}

#[tokio::test]
async fn a_redis_freeze_is_counted_in_uptime_and_kept_as_an_incident() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[]).await;
    let dashboard = dashboard_over(&redis, &gateway, &worker).await;
    until_service(&dashboard, "redis", "Redis healthy", |s| {
        s["status"] == "healthy" && s["uptime_1h"] == 100.0
    })
    .await;

    redis.freeze();
    until_service(&dashboard, "redis", "Redis down", |s| s["status"] == "down").await;
    // The outage itself, not a wait for something: its length is what is checked below.
    tokio::time::sleep(OUTAGE).await;
    redis.thaw();

    let check = until_service(&dashboard, "redis", "the freeze counted", |s| {
        s["status"] == "healthy" && uptime_below_100(s)
    })
    .await;
    let incident = until_incident_ended(&dashboard, "redis", "down").await;
    let lasted = incident["duration_s"].as_f64().expect("duration");
    // It began before the wait above and ended after it.
    assert!(
        lasted >= OUTAGE.as_secs_f64() - 1.0 && lasted < 3.0 * OUTAGE.as_secs_f64(),
        "{incident}"
    );
    assert_eq!(incident["from"], "healthy", "{incident}");
    assert!(incident["reason"].is_string(), "{incident}");
    let redis_entry = entry(&check, "redis").expect("redis entry");
    assert!(redis_entry.get("replicas").is_none(), "{redis_entry}");
}

#[tokio::test]
async fn stopping_every_worker_is_counted_in_uptime_and_kept_as_an_incident() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[]).await;
    let mut first = worker_process(&redis, &[]).await;
    let mut second = worker_process(&redis, &[]).await;
    let dashboard = dashboard_over(&redis, &gateway, &first).await;
    until_service(&dashboard, "worker-service", "both workers ready", |s| {
        s["status"] == "healthy" && s["replicas"] == json!({"ready": 2, "total": 2})
    })
    .await;

    for worker in [&mut first, &mut second] {
        worker.child.kill().expect("kill a worker");
        let _ = worker.child.wait();
    }
    until_service(&dashboard, "worker-service", "no worker", |s| {
        s["status"] == "down" && uptime_below_100(s)
    })
    .await;
    // The outage itself, not a wait for something: its length is what is checked below.
    tokio::time::sleep(OUTAGE).await;
    let _back = worker_process(&redis, &[]).await;

    until_service(&dashboard, "worker-service", "a worker back", |s| {
        s["replicas"]["ready"] == 1 && uptime_below_100(s)
    })
    .await;
    let incident = until_incident_ended(&dashboard, "worker-service", "down").await;
    let lasted = incident["duration_s"].as_f64().expect("duration");
    assert!(lasted >= OUTAGE.as_secs_f64() - 1.0, "{incident}");
}

#[tokio::test]
async fn svc_all_on_the_embedded_store_shows_no_redis() {
    let svc = SvcProcess::spawn(
        &crate::helpers::all_args(&["--refresh", "1s"]),
        &[("DRAIN_DELAY", "0s")],
    );
    let base = format!("http://{}", svc.address_of("dashboard"));
    let check: Value = eventually(WITHIN, "the dashboard to answer", || async {
        let res = crate::helpers::client()
            .get(format!("{base}/api/health-check"))
            .send()
            .await
            .ok()?;
        (res.status() == 200).then_some(res.json().await.ok()?)
    })
    .await;
    assert!(entry(&check, "redis").is_none(), "{check}");
    for role in ["api-gateway", "worker-service", "dashboard"] {
        assert!(entry(&check, role).is_some(), "{check}");
    }
    let page = crate::helpers::client()
        .get(format!("{base}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page text");
    assert!(!page.contains(r#"data-service="redis""#), "{page}");
    assert!(!page.contains("<dt>Redis</dt>"), "{page}");
    assert!(page.contains("embedded (in this process)"), "{page}");
}
