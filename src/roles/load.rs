//! `svc load`: a small HTTP load generator, to make the gateway busy enough for its HPA
//! to scale it (and to see it on the dashboard). Bounded in time and, optionally, in
//! requests; it prints one summary at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;

/// What to send, how hard and how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target URL.
    pub url: url::Url,
    /// HTTP method.
    pub method: Method,
    /// Request body (sent as JSON), if any.
    pub body: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many requests, if set.
    pub max_requests: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests answered otherwise or not at all.
    pub failed: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.ok + self.failed;
        write!(
            f,
            "{total} requests in {:.1}s: {:.0} req/s, {} ok, {} failed, p50 {:.2} ms, p99 {:.2} ms",
            self.elapsed.as_secs_f64(),
            total as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.ok,
            self.failed,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
        )
    }
}

/// Runs the load and reports it.
pub async fn run(config: LoadConfig) -> Result<Report, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(config.concurrency)
        .build()?;
    let config = Arc::new(config);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + config.duration;
    let loops: Vec<_> = (0..config.concurrency)
        .map(|_| {
            let (client, config, issued) = (client.clone(), config.clone(), issued.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0u64;
                while Instant::now() < deadline {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if config.max_requests.is_some_and(|max| n >= max) {
                        break;
                    }
                    let mut request = client.request(config.method.clone(), config.url.clone());
                    if let Some(body) = &config.body {
                        request = request
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone());
                    }
                    let sent = Instant::now();
                    match request.send().await {
                        Ok(res) if res.status().is_success() => {
                            // Read the body so the connection is reused.
                            let _ = res.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        _ => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for handle in loops {
        // A loop that panicked counts as nothing sent.
        if let Ok((l, f)) = handle.await {
            latencies.extend(l);
            failed += f;
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(Report {
        ok: latencies.len() as u64,
        failed,
        elapsed: started.elapsed(),
        p50: at(0.5),
        p99: at(0.99),
    })
}
