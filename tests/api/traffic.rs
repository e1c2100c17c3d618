//! Traffic control: request ids that follow a request through the queue, rate limits
//! per client, a circuit breaker in front of a sick Redis, and bounded work.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{RedisServer, eventually, gateway_process, worker_process};

#[tokio::test]
async fn a_request_id_follows_the_job_from_the_gateway_to_the_worker() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[("WORKER_INTERVAL", "24h")]).await;
    let client = crate::helpers::client();
    let res = client
        .post(gateway.url("/api/jobs"))
        .header("X-Request-ID", "trace-me-42")
        .body(r#"{"type":"data_processing","size":10}"#)
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually(
        Duration::from_secs(20),
        "the job's outcome line",
        || async {
            let log = worker.output();
            log.lines()
                .find(|l| l.contains("job done") && l.contains(&id) && l.contains("trace-me-42"))
                .map(drop)
        },
    )
    .await;
    let log = gateway.output();
    assert!(
        log.lines()
            .any(|l| l.contains("trace-me-42") && l.contains("/api/jobs")),
        "{log}"
    );
    let record: Value = client
        .get(gateway.url(&format!("/api/jobs/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(record["request_id"], "trace-me-42", "{record}");

    // No id, or one that could forge log lines: a fresh one is made.
    for given in [None, Some("two words\nINFO forged")] {
        let mut req = client.get(gateway.url("/api/status"));
        if let Some(given) = given {
            req = req.header("X-Request-ID", given.replace('\n', " "));
        }
        let res = req.send().await.expect("status");
        let made = res.headers()["x-request-id"].to_str().expect("ascii");
        assert_eq!(made.len(), 32, "{made}");
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    }

    // A probe echoes the client's id, but gets none made for it.
    let probe = client.get(gateway.url("/health/live"));
    let res = probe.send().await.expect("live");
    assert!(res.headers().get("x-request-id").is_none(), "{res:?}");
    let probe = client
        .get(gateway.url("/health/live"))
        .header("X-Request-ID", "kubelet-7");
    let res = probe.send().await.expect("live");
    assert_eq!(res.headers()["x-request-id"], "kubelet-7");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_and_probes_never_do() {
    let redis = RedisServer::start();
    let gateway = gateway_process(
        &redis,
        &[
            ("RATE_LIMIT", "1"),
            ("RATE_BURST", "3"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let client = crate::helpers::client();
    let status = |from: &'static str| {
        client
            .get(gateway.url("/api/status"))
            .header("X-Forwarded-For", from)
            .send()
    };
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(status("203.0.113.7").await.expect("status"));
    }
    let codes: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    // A burst of 3, then one per second: of eight requests sent back to back, some
    // after the third are refused (however slow the machine, not all eight take 5 s).
    assert_eq!(&codes[..3], &[200, 200, 200], "{codes:?}");
    assert!(codes[3..].contains(&429), "{codes:?}");
    let ok = &answers[0];
    assert_eq!(ok.headers()["ratelimit-limit"], "3");
    assert_eq!(ok.headers()["ratelimit-remaining"], "2");
    let refused = answers
        .pop()
        .filter(|r| r.status() == 429)
        .expect("the last is refused");
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let body: Value = refused.json().await.expect("JSON error body");
    assert_eq!(body["error"], "Too Many Requests");

    // Another client behind the same proxy has its own allowance.
    assert_eq!(status("198.51.100.1").await.expect("status").status(), 200);
    // Probes, scrapes and the rest of the surface are never limited.
    for path in ["/health/ready", "/health/live", "/metrics", "/"] {
        for _ in 0..5 {
            let res = client.get(gateway.url(path)).send().await.expect(path);
            assert_eq!(res.status(), 200, "{path}");
        }
    }
    let metrics = crate::helpers::get_text(&gateway.url("/metrics")).await;
    let limited = crate::metrics::sample(&metrics, "api_gateway_rate_limited_total");
    assert!(limited.is_some_and(|n| n >= 1.0), "{metrics}");
    crate::metrics::promtool_check(&metrics);
}

#[test]
fn a_bad_rate_limit_is_a_usage_error() {
    for env in [
        [("RATE_LIMIT", "10"), ("RATE_BURST", "0")],
        [("RATE_LIMIT", "10"), ("TRUSTED_PROXIES", "10.0.0.0/33")],
    ] {
        let out = crate::helpers::svc_command(&["gateway", "--port", "0"], &env)
            .output()
            .expect("run svc");
        assert_eq!(out.status.code(), Some(64), "{env:?}: {out:?}");
    }
}

#[tokio::test]
async fn a_frozen_redis_opens_the_circuit_and_a_thawed_one_closes_it() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[]).await;
    let client = crate::helpers::client();
    let status = || async {
        client
            .get(gateway.url("/api/status"))
            .send()
            .await
            .expect("status")
            .json::<Value>()
            .await
            .expect("json")
    };
    redis.freeze();
    // After a few timeouts the gateway stops waiting on Redis and says why.
    let open = eventually(Duration::from_secs(30), "the circuit to open", || async {
        let body = status().await;
        body["error"]
            .as_str()
            .filter(|e| e.contains("circuit open"))
            .map(str::to_owned)
    })
    .await;
    assert!(open.contains("stopped answering"), "{open}");
    // Readiness says so too (between probes of the store, which take the timeout).
    eventually(
        Duration::from_secs(10),
        "readiness to name the circuit",
        || async {
            let ready: Value = client
                .get(gateway.url("/health/ready"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            ready["reason"]
                .as_str()
                .filter(|r| r.contains("circuit"))
                .map(drop)
        },
    )
    .await;
    // The gauge is set on each change of the breaker, before the answer that shows it.
    let circuit_open = || async {
        let metrics = crate::helpers::get_text(&gateway.url("/metrics")).await;
        crate::metrics::sample(&metrics, "redis_circuit_open")
    };
    assert_eq!(circuit_open().await, Some(1.0), "while open");

    redis.thaw();
    eventually(Duration::from_secs(20), "the circuit to close", || async {
        (status().await["redis_connected"] == true).then_some(())
    })
    .await;
    assert_eq!(circuit_open().await, Some(0.0), "once closed");
}

#[tokio::test]
async fn requests_beyond_the_in_flight_bound_get_a_fast_503_and_probes_still_answer() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[("MAX_IN_FLIGHT", "2")]).await;
    let client = crate::helpers::client();
    // A frozen Redis holds each /api/status for the store timeout.
    redis.freeze();
    let held: Vec<_> = (0..6)
        .map(|_| {
            let request = client.get(gateway.url("/api/status")).send();
            tokio::spawn(async move {
                let res = request.await.map_err(|e| e.to_string())?;
                let status = res.status().as_u16();
                let body: Value = res.json().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
        })
        .collect();
    let live = client
        .get(gateway.url("/health/live"))
        .send()
        .await
        .expect("live while busy");
    assert_eq!(live.status(), 200);
    let mut busy = 0;
    for request in held {
        let (status, body) = request.await.expect("task").expect("answered");
        match status {
            200 => {}
            503 => {
                assert!(
                    body["message"].as_str().is_some_and(|m| m.contains("busy")),
                    "{body}"
                );
                busy += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(busy >= 1, "no request was refused with 2 of 6 slots");
    redis.thaw();
}

#[test]
fn bad_server_limits_are_usage_errors() {
    for (var, value) in [
        ("LISTEN_BACKLOG", "0"),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_IN_FLIGHT", "2000000"),
    ] {
        let out = crate::helpers::svc_command(&["gateway", "--port", "0"], &[(var, value)])
            .output()
            .expect("run svc");
        assert_eq!(out.status.code(), Some(64), "{var}={value}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(var));
    }
}
