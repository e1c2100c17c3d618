//! The operator's page at scale: the headline over svc and its targets, 1,000 targets
//! with problems first and groups collapsed, the filter and the paged replica table.

use std::time::Duration;

use svc::clock::unix_now;
use svc::config::StoreSettings;
use svc::service::{Role, ServiceState};
use svc::store::SharedStore;

use crate::dashboard::{Upstream, announce, closed, config, memory, service, start};
use crate::helpers::{TestApp, eventually, test_settings};

/// Groups of the fleet: `g00` .. `g19`.
pub const FLEET_GROUPS: usize = 20;

/// A targets file of `count` targets `t0000`... in [`FLEET_GROUPS`] groups, probing a
/// closed port (nothing probes them in these tests: their states are written).
pub fn fleet_yaml(count: usize) -> String {
    let mut text = String::from("targets:\n");
    for i in 0..count {
        text.push_str(&format!(
            "  - {{name: t{i:04}, group: g{:02}, url: 'http://127.0.0.1:9/t/{i}'}}\n",
            i * FLEET_GROUPS / count
        ));
    }
    text
}

/// Whether fleet target `i` is down: 11 of 1,000, spread over the groups.
pub fn fleet_down(i: usize) -> bool {
    i % 91 == 5
}

/// Writes `samples` probes of target `name` finding it `status`, as a worker applies
/// them (one failure makes it down, one success up), the newest now.
pub async fn judge(store: &dyn svc::store::Store, name: &str, status: ServiceState, samples: u32) {
    use svc::targets::state::{self, TargetSample, Thresholds};
    let now = unix_now();
    for k in (0..samples).rev() {
        let at = now - 10.0 * f64::from(k);
        let down = status == ServiceState::Down;
        let sample = TargetSample {
            timestamp: at,
            status,
            response_time_ms: (!down).then_some(1.0 + f64::from(k % 7)),
            error: down.then(|| "HTTP 503".to_owned()),
            cert_expires_at: None,
        };
        let thresholds = Thresholds {
            failure: 1,
            success: 1,
        };
        state::observe(store, name, (at * 1e3) as u64, sample, thresholds)
            .await
            .expect("observe");
    }
}

/// The dashboard on `store` with the targets of `yaml`, once `/api/health-check` counts
/// `total` targets of which none is unknown.
async fn with_targets(yaml: &str, store: SharedStore, total: usize) -> (TestApp, Upstreams) {
    let file = crate::targets::TargetsFile::new(yaml);
    let loaded = svc::targets::watch::Loaded::read(
        std::path::Path::new(&file.path()),
        Duration::from_secs(10),
        svc::targets::value::Credentials::Optional,
    )
    .expect("targets file");
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let mut config = config(&gateway.url, &worker.url, Duration::from_secs(1));
    config.targets = Some(loaded);
    let app = TestApp::dashboard(test_settings(StoreSettings::Memory), config, store).await;
    eventually(Duration::from_secs(10), "every target judged", || async {
        let (_, check) = app.get_json("/api/health-check").await;
        (check["targets"]["total"] == total && check["targets"]["unknown"] == 0).then_some(())
    })
    .await;
    (app, (gateway, worker, file))
}

/// What must outlive a test's dashboard.
type Upstreams = (Upstream, Upstream, crate::targets::TargetsFile);

#[tokio::test]
async fn the_headline_names_svc_and_the_targets_that_are_down() {
    let store = memory();
    judge(store.as_ref(), "example-ok", ServiceState::Healthy, 2).await;
    judge(store.as_ref(), "example-broken", ServiceState::Down, 2).await;
    judge(store.as_ref(), "redis-port", ServiceState::Down, 2).await;
    let yaml = "targets:\n\
                - {name: example-ok, url: 'http://127.0.0.1:9/ok'}\n\
                - {name: example-broken, url: 'http://127.0.0.1:9/broken'}\n\
                - {name: redis-port, url: 'tcp://127.0.0.1:9'}\n";
    let (app, _upstreams) = with_targets(yaml, store, 3).await;
    let headline = "svc healthy; 2 of 3 targets down: example-broken, redis-port";
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(check["headline"], headline, "{check}");
    // The original fields stay as they were: svc's own state.
    assert_eq!(check["system_status"], "healthy");
    assert_eq!(check["reason"], "All services healthy");
    let (_, page) = app.get("/").await;
    assert!(
        page.contains(&format!(r#"<span id="headline">{headline}</span>"#)),
        "{page}"
    );
    assert!(page.contains(r#"<section class="system" data-state="down">"#));
}

#[tokio::test]
async fn health_check_counts_the_targets_by_state_with_maintenance_apart() {
    let store = memory();
    for (name, status) in [
        ("a", ServiceState::Healthy),
        ("b", ServiceState::Healthy),
        ("c", ServiceState::Down),
        ("d", ServiceState::Down),
    ] {
        judge(store.as_ref(), name, status, 2).await;
    }
    let start = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let yaml = format!(
        "targets:\n\
         - {{name: a, url: 'http://127.0.0.1:9/a'}}\n\
         - {{name: b, url: 'http://127.0.0.1:9/b'}}\n\
         - {{name: c, url: 'http://127.0.0.1:9/c'}}\n\
         - {{name: d, url: 'http://127.0.0.1:9/d'}}\n\
         maintenance:\n\
         - {{name: upgrade, targets: [d], start: '{start}', duration: 1h}}\n"
    );
    let (app, _upstreams) = with_targets(&yaml, store, 4).await;
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(
        check["targets"],
        serde_json::json!({"total": 4, "up": 2, "degraded": 0, "down": 1, "maintenance": 1,
                           "unknown": 0}),
        "{check}"
    );
    assert_eq!(
        check["headline"],
        "svc healthy; 1 of 4 targets down: c; 1 in maintenance"
    );
    // Every target keeps its own entry in `services`.
    assert_eq!(service(&check, "d")["status"], "maintenance");
}

#[tokio::test]
async fn a_thousand_targets_list_problems_first_then_collapsed_groups_within_budget() {
    let store = memory();
    for i in 0..1000 {
        let (status, samples) = if fleet_down(i) {
            (ServiceState::Down, 60)
        } else {
            (ServiceState::Healthy, 2)
        };
        judge(store.as_ref(), &format!("t{i:04}"), status, samples).await;
    }
    let (app, _upstreams) = with_targets(&fleet_yaml(1000), store, 1000).await;
    let (_, check) = app.get_json("/api/health-check").await;
    assert_eq!(check["targets"]["down"], 11, "{check}");
    assert_eq!(
        check["headline"],
        "svc healthy; 11 of 1000 targets down: t0005, t0096, t0187, t0278, t0369 and 6 more"
    );

    let (_, page) = app.get("/").await;
    let at = |needle: &str| {
        page.find(needle)
            .unwrap_or_else(|| panic!("no {needle} in the page"))
    };
    // Problems first, each with its full row, then the groups.
    let groups = at(r#"<div id="groups">"#);
    for i in (0..1000).filter(|i| fleet_down(*i)) {
        assert!(at(&format!(r#"data-target="t{i:04}""#)) < groups, "t{i:04}");
    }
    assert!(at(r#"id="problems-title""#) < groups);
    // Groups collapsed, one line each with its counts.
    assert_eq!(
        page.matches(r#"<details class="group""#).count(),
        FLEET_GROUPS
    );
    assert!(!page.contains(r#"<details class="group" data-group="g00" data-state="down" open"#));
    assert!(
        page.contains("<summary><span class=\"name\">g00</span>: <span class=\"counts\">49 up, 1 down</span></summary>"),
        "{}",
        &page[groups..groups + 600]
    );
    assert!(page.contains(r#"<a class="rows" href="/?group=g00">"#));

    let mut weight = page.len();
    for prefix in [r#"href="/static/"#, r#"src="/static/"#] {
        let start = at(prefix) + prefix.len() - "/static/".len();
        let path = &page[start..start + page[start..].find('"').expect("quote")];
        weight += app.get(path).await.1.len();
    }
    assert!(weight < 150_000, "page, CSS and JS are {weight} bytes");
    let (_, fragment) = app.get("/partials/status").await;
    assert!(
        fragment.len() < 50_000,
        "the fragment is {} bytes",
        fragment.len()
    );
}

#[tokio::test]
async fn the_filter_works_without_javascript_as_a_query() {
    let store = memory();
    for i in 0..200 {
        let status = if fleet_down(i) {
            ServiceState::Down
        } else {
            ServiceState::Healthy
        };
        judge(store.as_ref(), &format!("t{i:04}"), status, 2).await;
    }
    let (app, _upstreams) = with_targets(&fleet_yaml(200), store, 200).await;
    let rows = |page: &str| -> Vec<String> {
        page.split(r#"data-target=""#)
            .skip(1)
            .filter_map(|rest| rest.split('"').next().map(str::to_owned))
            .collect()
    };
    let (status, page) = app.get("/?q=T01&state=").await;
    assert_eq!(status, 200);
    let expected: Vec<String> = (100..200).map(|i| format!("t{i:04}")).collect();
    assert_eq!(rows(&page), expected);
    assert!(page.contains("100 of 200 targets match"), "{page}");
    // The box shows what it filters by, and the refresh keeps the filter.
    assert!(page.contains(r#"value="T01""#));
    assert!(page.contains(r#"data-src="/partials/status?q=T01""#));

    let (_, down) = app.get("/partials/status?state=down").await;
    assert_eq!(rows(&down), ["t0005", "t0096", "t0187"]);
    let (_, group) = app.get("/?group=g01&state=up").await;
    assert_eq!(rows(&group).len(), 10, "{group}");
    assert!(
        rows(&group)
            .iter()
            .all(|name| name.as_str() >= "t0010" && name.as_str() < "t0020")
    );
    // A query that does not parse is the plain page.
    let (status, plain) = app.get("/?replicas=many").await;
    assert_eq!(status, 200);
    assert!(plain.contains(r#"<div id="groups">"#));
}

#[tokio::test]
async fn the_replica_table_is_paged_by_a_query() {
    let (gateway, worker) = (Upstream::healthy().await, Upstream::healthy().await);
    let store = memory();
    let now = unix_now();
    for i in 0..45 {
        let id = format!("gw-{i:02}");
        announce(
            &store,
            (Role::Gateway, &gateway.url),
            &id,
            "1",
            now - f64::from(i),
        )
        .await;
    }
    // The youngest, listed last of its role: shown first all the same, being down.
    announce(
        &store,
        (Role::Gateway, &closed()),
        "gw-gone",
        "1",
        now + 1.0,
    )
    .await;
    let app = start(&gateway.url, &worker.url, Duration::from_secs(1), store).await;
    let replicas_of = |page: &str| page.matches(r#"<td class="id">"#).count();
    let listed = eventually(Duration::from_secs(10), "46 gateways listed", || async {
        let (_, check) = app.get_json("/api/health-check").await;
        let gateways = service(&check, "api-gateway")["replicas"]["total"].as_u64()?;
        let dashboards = service(&check, "dashboard")["replicas"]["total"].as_u64()?;
        (gateways == 46).then_some(gateways + dashboards)
    })
    .await;
    let mut seen = 0_u64;
    for page in 1..=3 {
        let (_, html) = app.get(&format!("/?replicas={page}")).await;
        assert!(html.contains(&format!("page {page} of 3")), "{html}");
        let shown = replicas_of(&html);
        assert!(shown <= 20 && shown > 0, "page {page}: {shown}");
        seen += shown as u64;
    }
    // Every replica on one of the pages: 46 gateways and this dashboard.
    assert_eq!(seen, listed);
    let (_, first) = app.get("/").await;
    assert_eq!(replicas_of(&first), 20);
    let rows = first
        .split(r#"<td class="id">"#)
        .nth(1)
        .expect("a replica row");
    assert!(rows.starts_with("gw-gone<"), "{first}");
    assert!(
        first.contains(r#"<a rel="next" href="/?replicas=2">"#),
        "{first}"
    );
}
