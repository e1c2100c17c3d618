//! SIGTERM to a real `svc gateway`: readiness turns 503 at once, the listener keeps
//! serving through the drain delay, in-flight requests finish, exit code 0.

use std::time::{Duration, Instant};

use crate::helpers::RedisServer;
use crate::helpers::gateway_process;

#[tokio::test]
async fn sigterm_turns_readiness_off_while_the_listener_still_serves() {
    let redis = RedisServer::start();
    let mut svc = gateway_process(&redis, &[("DRAIN_DELAY", "3s"), ("GRACE_PERIOD", "5s")]).await;
    let client = crate::helpers::client();
    svc.signal("TERM");
    // During the drain delay: ready is 503, everything else still served.
    crate::helpers::eventually(Duration::from_secs(3), "readiness to turn 503", || async {
        let ready = client.get(svc.url("/health/ready")).send().await.ok()?;
        (ready.status() == 503).then_some(())
    })
    .await;
    let live = client
        .get(svc.url("/health/live"))
        .send()
        .await
        .expect("live during drain");
    assert_eq!(live.status(), 200);
    let status = client
        .get(svc.url("/api/status"))
        .send()
        .await
        .expect("served during drain");
    assert_eq!(status.status(), 200);
    assert_eq!(
        svc.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        svc.output()
    );
}

#[tokio::test]
async fn sigterm_drains_without_failing_a_request() {
    let redis = RedisServer::start();
    let mut svc =
        gateway_process(&redis, &[("DRAIN_DELAY", "200ms"), ("GRACE_PERIOD", "5s")]).await;
    let client = crate::helpers::client();

    // A frozen Redis holds /api/status requests for the store's 1 s operation timeout,
    // so they are still in flight when the listener closes at SIGTERM + 0.2 s.
    redis.freeze();
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let request = client.get(svc.url("/api/status")).send();
            tokio::spawn(async move {
                let res = request.await.map_err(|e| e.to_string())?;
                let status = res.status().as_u16();
                let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
        })
        .collect();
    // All ten are being served (the scrape counts itself too).
    crate::helpers::eventually(Duration::from_secs(5), "10 requests in flight", || async {
        let text = client
            .get(svc.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let busy = crate::metrics::sample(&text, "api_gateway_requests_in_progress")?;
        (busy >= 11.0).then_some(())
    })
    .await;

    let signalled = Instant::now();
    svc.signal("TERM");
    for request in in_flight {
        let (status, body) = request
            .await
            .expect("task")
            .expect("in-flight request failed");
        assert_eq!(status, 200, "{body}");
    }
    redis.thaw();
    let code = svc.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "output:\n{}", svc.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(1 + 5 + 1),
        "exit overran drain + grace"
    );
}

#[tokio::test]
async fn sigint_also_stops_cleanly() {
    let redis = RedisServer::start();
    let mut svc = gateway_process(&redis, &[]).await;
    svc.signal("INT");
    assert_eq!(
        svc.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        svc.output()
    );
}

#[tokio::test]
async fn a_second_signal_skips_the_drain() {
    let redis = RedisServer::start();
    let mut svc = gateway_process(&redis, &[("DRAIN_DELAY", "30s")]).await;
    svc.signal("INT");
    let client = crate::helpers::client();
    crate::helpers::eventually(Duration::from_secs(5), "draining", || async {
        let res = client.get(svc.url("/health/ready")).send().await.ok()?;
        (res.status() == 503).then_some(())
    })
    .await;
    svc.signal("INT");
    assert_eq!(svc.wait_exit(Duration::from_secs(10)), Some(130));
    // The warning reaches the log before the process ends: it is flushed on the way
    // out, not lost with the log writer's thread.
    let output = svc.output();
    assert!(
        output.contains("second signal: exiting without draining"),
        "{output}"
    );
}
