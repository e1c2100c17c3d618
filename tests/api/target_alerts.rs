//! The targets' alerts of the PrometheusRule, evaluated by a real Prometheus that
//! scrapes the dashboard's `/metrics/targets` as the monitoring component does: one
//! series per target for the cluster, `SvcTargetDown` for a target down and not for one
//! up, `SvcTargetCertificateExpiring` for a certificate that expires within 14 days.

use std::time::Duration;

use serde_json::Value;

use crate::alerts::Prometheus;
use crate::helpers::TlsServer;
use crate::helpers::{Dir, RedisServer, eventually, free_port, role_process};
use crate::targets::Target;

const WITHIN: Duration = Duration::from_secs(90);

/// The `target` label of each alert named `name` among `alerts`.
fn targets_of<'a>(alerts: &'a [Value], name: &str) -> Vec<&'a str> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .filter_map(|a| a["labels"]["target"].as_str())
        .collect()
}

#[tokio::test]
async fn a_target_down_and_a_certificate_expiring_fire_their_alerts_once_for_the_cluster() {
    let redis = RedisServer::start();
    let up = Target::start().await;
    let tls = TlsServer::start();
    let dir = Dir::new("target-alerts");
    let file = dir.path("targets.yaml");
    std::fs::write(
        &file,
        format!(
            "targets:\n  \
             - {{name: up, group: shop, url: '{}', interval: 1s, failure_threshold: 1}}\n  \
             - {{name: down, group: shop, url: 'http://127.0.0.1:{}/', interval: 1s, failure_threshold: 1}}\n  \
             - {{name: secure, url: 'https://localhost:{}/', interval: 1s}}\n",
            up.url,
            free_port(),
            tls.server.port
        ),
    )
    .expect("write targets");
    let file = file.display().to_string();
    let ca = tls.ca.display().to_string();
    let env = [
        ("TARGETS_FILE", file.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
    ];
    // Two workers: each probes some of the targets, and still each target is one series.
    let _workers = [
        role_process("worker", &redis, &env).await,
        role_process("worker", &redis, &env).await,
    ];
    let dashboard = role_process(
        "dashboard",
        &redis,
        &[("TARGETS_FILE", file.as_str()), ("REFRESH_PERIOD", "1s")],
    )
    .await;
    let prometheus = Prometheus::scraping(&format!(
        "  - job_name: dashboard-service\n    metrics_path: /metrics/targets\n    \
         static_configs:\n      - targets: ['{}']\n        \
         labels: {{namespace: microservices-demo, service: dashboard-service}}\n",
        dashboard.address
    ))
    .await;

    let firing = eventually(
        WITHIN,
        "SvcTargetDown and SvcTargetCertificateExpiring",
        || async {
            let firing = prometheus.firing().await?;
            let down = targets_of(&firing, "SvcTargetDown");
            let expiring = targets_of(&firing, "SvcTargetCertificateExpiring");
            (down.contains(&"down") && expiring.contains(&"secure")).then_some(firing)
        },
    )
    .await;
    assert_eq!(targets_of(&firing, "SvcTargetDown"), ["down"], "{firing:?}");
    assert_eq!(
        targets_of(&firing, "SvcTargetCertificateExpiring"),
        ["secure"],
        "{firing:?}"
    );
    let alert = firing
        .iter()
        .find(|a| a["labels"]["alertname"] == "SvcTargetDown")
        .expect("the alert");
    assert_eq!(
        (&alert["labels"]["group"], &alert["labels"]["type"]),
        (&Value::from("shop"), &Value::from("http")),
        "{alert}"
    );
    // One series per target, however many workers probed it.
    let series = prometheus
        .api("query?query=count%20by%20(target)%20(svc_target_up)")
        .await
        .expect("query");
    let counts: Vec<(&str, &str)> = series["result"]
        .as_array()
        .expect("result")
        .iter()
        .filter_map(|r| Some((r["metric"]["target"].as_str()?, r["value"][1].as_str()?)))
        .collect();
    assert_eq!(counts.len(), 3, "{series}");
    assert!(counts.iter().all(|(_, n)| *n == "1"), "{series}");
}
