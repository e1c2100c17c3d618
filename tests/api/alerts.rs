//! The PrometheusRule's alerts, evaluated by a real Prometheus server (Debian
//! `prometheus`) that scrapes the real roles with the target labels the Prometheus
//! Operator gives them (job, namespace, service, pod, endpoint) and honours the app's own
//! labels as the ServiceMonitor does. The rule groups are read from the manifest with
//! every `for:` shortened, so an alert fires within seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::detection::dashboard_over;
use crate::helpers::{
    Announced, RedisServer, eventually, gateway_process, require_tool, worker_process,
};

const RULES: &str = include_str!("../../deploy/components/monitoring/prometheusrule.yaml");
/// Deadline of each wait: Prometheus starts, scrapes and evaluates every second.
const WITHIN: Duration = Duration::from_secs(90);

/// The manifest's rule groups as a Prometheus rules file: what is under `spec:`, two
/// columns to the left, with every `for:` shortened to 2 s.
fn rule_groups() -> String {
    let (_, spec) = RULES
        .split_once("\nspec:\n")
        .expect("a spec in the manifest");
    let mut out = String::new();
    for line in spec.lines() {
        let line = line.strip_prefix("  ").unwrap_or(line);
        let rest = line.trim_start();
        if rest.starts_with("for: ") {
            out.push_str(&line[..line.len() - rest.len()]);
            out.push_str("for: 2s\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A Prometheus server of this test's own; killed on drop.
pub(crate) struct Prometheus {
    server: Announced,
    dir: PathBuf,
}

impl Prometheus {
    /// Scrapes each `(Service name, pod, address)` every second as the Operator would
    /// label it, and evaluates the manifest's rules every second.
    async fn start(targets: &[(&str, &str, SocketAddr)]) -> Self {
        let mut jobs = String::new();
        for (service, pod, address) in targets {
            jobs.push_str(&format!(
                "  - job_name: {service}\n    honor_labels: true\n    static_configs:\n      \
                 - targets: ['{address}']\n        labels: {{namespace: microservices-demo, \
                 service: {service}, pod: {pod}, endpoint: http}}\n"
            ));
        }
        Self::scraping(&jobs).await
    }

    /// Scrapes with `jobs` (the items of `scrape_configs:`, YAML) every second, and
    /// evaluates the manifest's rules every second.
    pub(crate) async fn scraping(jobs: &str) -> Self {
        let binary = require_tool("prometheus", "prometheus");
        let dir = std::env::temp_dir().join(format!(
            "svc-prometheus-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let rules = dir.join("rules.yml");
        std::fs::write(&rules, rule_groups()).expect("write rules");
        let check = Command::new(require_tool("promtool", "prometheus"))
            .args(["check", "rules"])
            .arg(&rules)
            .output()
            .expect("run promtool");
        assert!(
            check.status.success(),
            "the manifest's rules do not load: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let mut config = String::from(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n\
             rule_files: [rules.yml]\nscrape_configs:\n",
        );
        config.push_str(jobs);
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write config");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0");
        // Port 0: Prometheus binds a free port and names it in its log
        // (`msg="Listening on" address=127.0.0.1:41234`).
        let server = Announced::spawn(command, |line| {
            let (_, address) = line.split_once("msg=\"Listening on\" address=")?;
            let address: SocketAddr = address.split_whitespace().next()?.parse().ok()?;
            Some(address.port())
        });
        let prometheus = Prometheus { server, dir };
        eventually(WITHIN, "prometheus to be ready", || async {
            let url = format!("http://127.0.0.1:{}/-/ready", prometheus.server.port);
            (crate::helpers::client()
                .get(url)
                .send()
                .await
                .ok()?
                .status()
                == 200)
                .then_some(())
        })
        .await;
        prometheus
    }

    pub(crate) async fn api(&self, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/{path}", self.server.port);
        let answer = crate::helpers::try_json(&crate::helpers::client(), &url).await?;
        (answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// The value of the instant query `expr`, when it has exactly one sample.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let data = self
            .api(&format!("query?query={}", urlencode(expr)))
            .await?;
        let result = data["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Names of the alerts firing now.
    pub(crate) async fn firing(&self) -> Option<Vec<Value>> {
        let data = self.api("alerts").await?;
        Some(
            data["alerts"]
                .as_array()?
                .iter()
                .filter(|a| a["state"] == "firing")
                .cloned()
                .collect(),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.server.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn names(alerts: &[Value]) -> Vec<&str> {
    alerts
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect()
}

#[tokio::test]
async fn killing_the_gateway_fires_its_alert_in_a_real_prometheus() {
    let redis = RedisServer::start();
    let mut gateway = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[]).await;
    let dashboard = dashboard_over(&redis, &gateway, &worker).await;
    let prometheus = Prometheus::start(&[
        ("api-gateway-service", "api-gateway-0", gateway.address),
        ("worker-service", "worker-0", worker.address),
        ("dashboard-service", "dashboard-0", dashboard.address),
    ])
    .await;
    eventually(WITHIN, "every role scraped", || async {
        (prometheus.scalar("sum(up)").await? == 3.0).then_some(())
    })
    .await;
    // The app's labels survive the Operator's: requests by route pattern, probes by
    // service, as the panels and alerts group them.
    eventually(WITHIN, "the app's endpoint label kept", || async {
        let n = prometheus
            .scalar(r#"count(dashboard_probes_total{service="api-gateway"})"#)
            .await?;
        (n >= 1.0).then_some(())
    })
    .await;
    // Before the first scrape no target exists, and with `for:` this short the
    // availability alerts fire for that moment: wait until every one has resolved.
    eventually(WITHIN, "no role alerted as down", || async {
        let firing = prometheus.firing().await?;
        let names = names(&firing);
        let down = ["SvcGatewayDown", "SvcWorkerDown", "SvcDashboardDown"];
        down.iter().all(|d| !names.contains(d)).then_some(())
    })
    .await;

    gateway.child.kill().expect("kill the gateway");
    let firing = eventually(WITHIN, "SvcGatewayDown to fire", || async {
        let firing = prometheus.firing().await?;
        names(&firing).contains(&"SvcGatewayDown").then_some(firing)
    })
    .await;
    let alert = firing
        .iter()
        .find(|a| a["labels"]["alertname"] == "SvcGatewayDown")
        .expect("the alert");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(
        alert["labels"]["namespace"], "microservices-demo",
        "{alert}"
    );
    for quiet in ["SvcWorkerDown", "SvcDashboardDown", "SvcRedisDisconnected"] {
        assert!(!names(&firing).contains(&quiet), "{firing:?}");
    }
}

#[tokio::test]
async fn losing_redis_fires_the_redis_alert_and_no_role_is_called_down() {
    let mut redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[]).await;
    let dashboard = dashboard_over(&redis, &gateway, &worker).await;
    let prometheus = Prometheus::start(&[
        ("api-gateway-service", "api-gateway-0", gateway.address),
        ("worker-service", "worker-0", worker.address),
        ("dashboard-service", "dashboard-0", dashboard.address),
    ])
    .await;
    eventually(WITHIN, "every role scraped", || async {
        (prometheus.scalar("sum(up)").await? == 3.0).then_some(())
    })
    .await;

    redis.stop();
    let firing = eventually(WITHIN, "SvcRedisDisconnected from every role", || async {
        let firing = prometheus.firing().await?;
        let jobs: Vec<&str> = firing
            .iter()
            .filter(|a| a["labels"]["alertname"] == "SvcRedisDisconnected")
            .filter_map(|a| a["labels"]["job"].as_str())
            .collect();
        (jobs.len() == 3).then_some(firing)
    })
    .await;
    // The roles keep serving their metrics: none is called down.
    for quiet in ["SvcGatewayDown", "SvcWorkerDown", "SvcDashboardDown"] {
        assert!(!names(&firing).contains(&quiet), "{firing:?}");
    }
}

const DASHBOARD: &str = include_str!("../../deploy/components/monitoring/grafana-dashboard.json");

#[tokio::test]
async fn every_grafana_panel_query_returns_data_while_the_system_runs() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[("WORKER_INTERVAL", "1s")]).await;
    let dashboard = dashboard_over(&redis, &gateway, &worker).await;
    let prometheus = Prometheus::start(&[
        ("api-gateway-service", "api-gateway-0", gateway.address),
        ("worker-service", "worker-0", worker.address),
        ("dashboard-service", "dashboard-0", dashboard.address),
    ])
    .await;
    let panels: Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let queries: Vec<(String, String)> = panels["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_owned())))
        })
        .collect();
    assert!(queries.len() > 10, "{queries:?}");
    let client = crate::helpers::client();
    let api = format!("http://{}/api/status", gateway.address);
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        // Traffic while the queries wait, as a running system has.
        let _ = client.get(&api).send().await;
        let mut missing = Vec::new();
        for (title, expr) in &queries {
            // Scrapes every second: a 30 s window holds plenty of them.
            let expr = expr.replace("$__rate_interval", "30s");
            let found = prometheus
                .api(&format!("query?query={}", urlencode(&expr)))
                .await
                .and_then(|data| {
                    let numbers = data["result"]
                        .as_array()?
                        .iter()
                        .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                        .filter(|v| v.is_finite())
                        .count();
                    (numbers > 0).then_some(())
                });
            if found.is_none() {
                missing.push(format!("{title}: {expr}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "panels with no data after {WITHIN:?}:\n{}",
            missing.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
