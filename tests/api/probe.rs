//! The worker's blackbox-compatible `GET /probe`: what it answers for targets that are
//! up, failing and closed, what it refuses (outside `allow:`, unknown module, missing
//! target), that promtool reads its answer, and that a real Prometheus scraping it with
//! blackbox's relabelling sees what the Debian blackbox exporter sees of the same targets.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::alerts::{Prometheus, urlencode};
use crate::helpers::{
    Announced, Dir, RedisServer, SvcProcess, client, eventually, free_port, require_tool,
    worker_process,
};
use crate::metrics::{promtool_check as promtool_reads, sample};
use crate::targets::Target;

const WITHIN: Duration = Duration::from_secs(90);

/// A worker whose targets file declares `modules` (the YAML under `modules:`).
async fn worker_with(redis: &RedisServer, dir: &Dir, modules: &str) -> SvcProcess {
    let file = dir.path("targets.yaml");
    std::fs::write(&file, format!("targets: []\nmodules:\n{modules}")).expect("write targets");
    let file = file.display().to_string();
    worker_process(redis, &[("TARGETS_FILE", file.as_str())]).await
}

/// GET /probe with `query`, and an optional scrape timeout header: status and body.
async fn probe(worker: &SvcProcess, query: &str, scrape_timeout: Option<&str>) -> (u16, String) {
    let mut request = client().get(worker.url(&format!("/probe?{query}")));
    if let Some(secs) = scrape_timeout {
        request = request.header("X-Prometheus-Scrape-Timeout-Seconds", secs);
    }
    let res = request.send().await.expect("GET /probe");
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

/// The loopback targets probed (one answering 200, one 503, and a closed port), and a
/// worker with [`MODULES`].
struct Peers {
    up: Target,
    failing: Target,
    closed: String,
    worker: SvcProcess,
    dir: Dir,
    _redis: RedisServer,
}

impl Peers {
    async fn start(name: &str) -> Self {
        let redis = RedisServer::start();
        let dir = Dir::new(name);
        let worker = worker_with(&redis, &dir, MODULES).await;
        let failing = Target::start().await;
        failing.set(503);
        Peers {
            up: Target::start().await,
            failing,
            closed: format!("http://127.0.0.1:{}/", free_port()),
            worker,
            dir,
            _redis: redis,
        }
    }
}

const MODULES: &str = "  http_2xx: {type: http, timeout: 3s, allow: ['127.0.0.0/8', '::1']}\n  \
     tcp_connect: {type: tcp, allow: ['127.0.0.0/8', '::1']}\n  \
     elsewhere: {type: http, allow: ['10.0.0.0/8', 'status.example.com']}\n";

#[tokio::test]
async fn probe_answers_blackbox_gauges_for_up_failing_and_closed_targets() {
    let peers = Peers::start("probe-direct").await;
    let worker = &peers.worker;
    let (up, failing, closed) = (&peers.up, &peers.failing, &peers.closed);

    let (status, text) = probe(worker, &format!("module=http_2xx&target={}", up.url), None).await;
    assert_eq!(status, 200, "{text}");
    promtool_reads(&text);
    assert_eq!(sample(&text, "probe_success"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "probe_http_status_code"),
        Some(200.0),
        "{text}"
    );
    assert_eq!(sample(&text, "probe_ip_protocol"), Some(4.0), "{text}");
    assert_eq!(sample(&text, "probe_http_ssl"), Some(0.0), "{text}");
    assert!(sample(&text, r#"probe_http_duration_seconds{phase="processing"}"#).is_some());

    let (_, text) = probe(
        worker,
        &format!("module=http_2xx&target={}", failing.url),
        None,
    )
    .await;
    assert_eq!(sample(&text, "probe_success"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "probe_http_status_code"),
        Some(503.0),
        "{text}"
    );
    let (_, text) = probe(worker, &format!("module=http_2xx&target={closed}"), None).await;
    promtool_reads(&text);
    assert_eq!(sample(&text, "probe_success"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "probe_http_status_code"), Some(0.0), "{text}");

    // tcp takes host:port, as blackbox's tcp_connect does.
    let host_port = up
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/health");
    let (_, text) = probe(
        worker,
        &format!("module=tcp_connect&target={host_port}"),
        None,
    )
    .await;
    promtool_reads(&text);
    assert_eq!(sample(&text, "probe_success"), Some(1.0), "{text}");
    assert!(!text.contains("probe_http_"), "{text}");

    // A name admitted by the networks its addresses lie in is probed at those
    // addresses, by name (Host header and all), over http and tcp alike.
    let port = host_port.rsplit_once(':').map(|(_, p)| p).expect("port");
    for query in [
        format!("module=http_2xx&target=http://localhost:{port}/health"),
        format!("module=tcp_connect&target=localhost:{port}"),
    ] {
        let (status, text) = probe(worker, &query, None).await;
        assert_eq!(status, 200, "{query}: {text}");
        assert_eq!(sample(&text, "probe_success"), Some(1.0), "{query}: {text}");
    }

    // debug=true says why, in words.
    let query = format!("module=http_2xx&target={}&debug=true", failing.url);
    let (_, text) = probe(worker, &query, None).await;
    assert!(
        text.contains("HTTP 503") && text.contains("probe_success 0"),
        "{text}"
    );
}

#[tokio::test]
async fn probe_refuses_what_it_may_not_or_cannot_probe() {
    let redis = RedisServer::start();
    let dir = Dir::new("probe-refusals");
    let worker = worker_with(&redis, &dir, MODULES).await;
    let up = Target::start().await;
    for (query, want, says) in [
        (
            format!("module=elsewhere&target={}", up.url),
            403,
            "does not allow 127.0.0.1",
        ),
        // A name is resolved: localhost is a loopback address, outside 10.0.0.0/8.
        (
            "module=elsewhere&target=http://localhost:1/".to_owned(),
            403,
            "resolves to",
        ),
        (
            "module=http_2xx&target=http://10.1.2.3/".to_owned(),
            403,
            "does not allow 10.1.2.3",
        ),
        (
            "module=nope&target=127.0.0.1:1".to_owned(),
            400,
            "unknown module \\\"nope\\\"",
        ),
        (
            "target=127.0.0.1:1".to_owned(),
            400,
            "module parameter is missing",
        ),
        (
            "module=http_2xx".to_owned(),
            400,
            "target parameter is missing",
        ),
        (
            "module=tcp_connect&target=127.0.0.1".to_owned(),
            400,
            "tcp://host:port",
        ),
    ] {
        let (status, text) = probe(&worker, &query, None).await;
        assert_eq!(status, want, "{query}: {text}");
        assert!(text.contains(says), "{query}: {text}");
    }
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused target was probed"
    );

    // Prometheus's scrape timeout bounds the probe, less half a second.
    let query = format!("module=http_2xx&target={}", up.url);
    let (status, text) = probe(&worker, &query, Some("0.4")).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = probe(&worker, &query, Some("10")).await;
    assert_eq!(
        (status, sample(&text, "probe_success")),
        (200, Some(1.0)),
        "{text}"
    );

    // A worker whose file declares no module has no /probe to offer.
    let bare = crate::helpers::worker_process(&redis, &[]).await;
    let (status, text) = probe(&bare, &query, None).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no module is declared"), "{text}");
}

/// The classic blackbox scrape config: each target a `__param_target`, the prober as
/// `__address__`, the target as `instance`.
fn blackbox_job(job: &str, prober: &str, targets: &[&str]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "  - job_name: {job}\n    metrics_path: /probe\n    params: {{module: [http_2xx]}}\n    \
         static_configs:\n      - targets: [{}]\n    relabel_configs:\n      \
         - {{source_labels: [__address__], target_label: __param_target}}\n      \
         - {{source_labels: [__param_target], target_label: instance}}\n      \
         - {{target_label: __address__, replacement: '{prober}'}}\n",
        list.join(", ")
    )
}

/// `metric` of each instance of `job`, through Prometheus's query API.
async fn by_instance(prometheus: &Prometheus, metric: &str, job: &str) -> BTreeMap<String, f64> {
    let query = urlencode(&format!("{metric}{{job=\"{job}\"}}"));
    let Some(data) = prometheus.api(&format!("query?query={query}")).await else {
        return BTreeMap::new();
    };
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let instance = r["metric"]["instance"].as_str()?.to_owned();
            Some((instance, r["value"][1].as_str()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn prometheus_sees_the_same_through_svc_as_through_the_blackbox_exporter() {
    let peers = Peers::start("probe-agreement").await;
    let dir = &peers.dir;
    let (up, failing, closed) = (&peers.up, &peers.failing, &peers.closed);
    let targets = [up.url.as_str(), failing.url.as_str(), closed.as_str()];

    let config = dir.path("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 3s\n    \
         http: {preferred_ip_protocol: ip4}\n",
    )
    .expect("write blackbox config");
    let mut command = Command::new(require_tool(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    ));
    command
        .arg(format!("--config.file={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0");
    // Port 0: it names the port it bound in its log (`msg="Listening on" address=...`).
    let blackbox = Announced::spawn(command, |line| {
        let (_, address) = line.split_once("msg=\"Listening on\" address=")?;
        let address: std::net::SocketAddr = address.split_whitespace().next()?.parse().ok()?;
        Some(address.port())
    });

    let svc_address = peers.worker.address.to_string();
    let jobs = blackbox_job("svc", &svc_address, &targets)
        + &blackbox_job(
            "blackbox",
            &format!("127.0.0.1:{}", blackbox.port),
            &targets,
        );
    let prometheus = Prometheus::scraping(&jobs).await;

    for metric in ["probe_success", "probe_http_status_code"] {
        let (svc, bbx) = eventually(
            WITHIN,
            &format!("{metric} of every target from both"),
            || async {
                let svc = by_instance(&prometheus, metric, "svc").await;
                let bbx = by_instance(&prometheus, metric, "blackbox").await;
                (svc.len() == 3 && bbx.len() == 3).then_some((svc, bbx))
            },
        )
        .await;
        assert_eq!(svc, bbx, "{metric}: svc and blackbox disagree");
        // Agreement on something: the three targets are told apart.
        let want = if metric == "probe_success" {
            [1.0, 0.0, 0.0]
        } else {
            [200.0, 503.0, 0.0]
        };
        for (target, value) in targets.iter().zip(want) {
            assert_eq!(
                svc.get(*target),
                Some(&value),
                "{metric} of {target}: {svc:?}"
            );
        }
    }
}
