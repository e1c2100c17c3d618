//! `svc load`: its JSON summary, the exit code of `--max-error-rate`, Ctrl-C, and an
//! open loop that keeps its schedule against a slow server.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use svc::config::{Settings, StoreSettings};

use crate::helpers::{TestApp, eventually, svc_command, test_settings};

async fn gateway(faults: bool) -> TestApp {
    let app = TestApp::gateway(Settings {
        faults,
        ..test_settings(StoreSettings::Memory)
    })
    .await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    app
}

async fn load(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        svc_command(&args, &[]).output().expect("run svc load")
    })
    .await
    .expect("svc load")
}

fn args(url: &str, rest: &[&str]) -> Vec<String> {
    ["load", url]
        .iter()
        .chain(rest)
        .map(|s| (*s).to_owned())
        .collect()
}

fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn number(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {field}: {v}"))
}

#[tokio::test]
async fn json_summary_has_counts_errors_and_ordered_percentiles() {
    let app = gateway(false).await;
    let url = format!("{}/api/status", app.address);
    let out = load(args(&url, &["-c", "4", "-n", "40", "-d", "20s", "--json"])).await;
    assert!(out.status.success(), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["mode"], "closed");
    assert_eq!(s["rate"], Value::Null);
    assert_eq!(s["concurrency"], 4);
    assert_eq!(s["sent"], 40);
    assert_eq!(s["ok"], 40);
    assert_eq!(s["errors"], 0);
    assert_eq!(s["unfinished"], 0);
    assert_eq!(s["error_rate"], 0.0);
    assert_eq!(s["errors_by_kind"], serde_json::json!({}));
    assert_eq!(s["interrupted"], false);
    assert_eq!(s["url"], url);
    assert_eq!(s["method"], "GET");
    assert!(number(&s, "throughput") > 0.0);
    let latency = &s["latency_ms"];
    assert_eq!(latency["count"], 40);
    let ordered: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|p| number(latency, p))
        .collect();
    assert!(ordered[0] > 0.0, "{latency}");
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{latency}");
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(status["total_requests"], 41);
}

#[tokio::test]
async fn max_error_rate_fails_the_run_when_exceeded() {
    let app = gateway(true).await;
    let (status, _) = app.post("/faults/api", r#"{"error_rate": 0.25}"#).await;
    assert_eq!(status, 200);
    let url = format!("{}/api/info", app.address);

    let out = load(args(
        &url,
        &["-c", "4", "-n", "100", "--json", "--max-error-rate", "10%"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("above --max-error-rate"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let s = summary(&out);
    assert_eq!(s["errors_by_kind"], serde_json::json!({"http_500": 25}));
    assert_eq!(s["error_rate"], 0.25);
    // Failed answers are timed too.
    assert_eq!(s["latency_ms"]["count"], 100);

    let out = load(args(
        &url,
        &["-c", "4", "-n", "100", "--max-error-rate", "0.3"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("errors: http_500 25 (25.00%)"), "{stdout}");
}

#[tokio::test]
async fn ctrl_c_prints_the_summary_so_far_and_exits_130() {
    let app = gateway(false).await;
    let url = format!("{}/api/status", app.address);
    let child = svc_command(&["load", &url, "-c", "2", "-d", "10m", "--json"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svc load");
    // Requests arriving means the signal handler is in place (installed before the
    // first request is sent).
    eventually(Duration::from_secs(20), "load to arrive", || async {
        let (_, status) = app.get_json("/api/status").await;
        (status["total_requests"].as_i64() > Some(20)).then_some(())
    })
    .await;
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    assert!(number(&s, "ok") >= 10.0, "{s}");
    assert!(number(&s, "duration_s") < 600.0, "{s}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
}

#[tokio::test]
async fn an_open_loop_keeps_its_rate_against_a_slow_server() {
    let app = gateway(true).await;
    // Every answer takes 300 ms: a closed loop of 4 could send about 13 a second.
    let url = format!("{}/faults/delay/300ms", app.address);
    let out = load(args(&url, &["--rate", "40", "-d", "3s", "--json"])).await;
    assert!(out.status.success(), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["mode"], "open");
    assert_eq!(s["rate"], serde_json::json!({"from": 40.0, "to": 40.0}));
    // 120 due; generous, since this is about behaviour, not speed.
    let sent = number(&s, "sent");
    assert!((100.0..=125.0).contains(&sent), "sent {sent}: {s}");
    assert_eq!(s["ok"], s["sent"]);
    let due = sent + number(&s, "unsent");
    assert!((119.0..=121.0).contains(&due), "due {due}: {s}");
    assert!(number(&s["latency_ms"], "p50") >= 300.0, "{s}");
}

#[tokio::test]
async fn an_open_loop_counts_the_wait_for_a_free_slot() {
    let app = gateway(true).await;
    let url = format!("{}/faults/delay/300ms", app.address);
    // Two slots of 300 ms cannot keep 40 a second: requests wait, and the wait counts.
    let out = load(args(
        &url,
        &["--rate", "40", "-c", "2", "-d", "2s", "--json"],
    ))
    .await;
    assert!(out.status.success(), "{out:?}");
    let s = summary(&out);
    assert!(number(&s, "unsent") > 0.0, "{s}");
    // The last request sent waited about a second and a half for its slot.
    assert!(number(&s["latency_ms"], "max") >= 1000.0, "{s}");
    assert!(number(&s["latency_ms"], "p50") >= 300.0, "{s}");
}

#[tokio::test]
async fn a_ramp_sends_the_area_under_it() {
    let app = gateway(false).await;
    let url = format!("{}/health/live", app.address);
    // 20 -> 60 req/s over 2 s: 80 requests.
    let out = load(args(&url, &["--ramp", "20..60", "-d", "2s", "--json"])).await;
    assert!(out.status.success(), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["rate"], serde_json::json!({"from": 20.0, "to": 60.0}));
    let sent = number(&s, "sent");
    assert!((70.0..=81.0).contains(&sent), "sent {sent}: {s}");
}

#[test]
fn bad_load_flags_are_usage_errors() {
    let https = svc_command(&["load", "https://127.0.0.1:9/"], &[])
        .output()
        .expect("run svc");
    assert_eq!(https.status.code(), Some(64), "{https:?}");
    for extra in [
        &["--rate", "0"][..],
        &["--rate", "2000000"],
        &["--rate", "10", "--ramp", "1..5"],
        &["--ramp", "500"],
        &["--ramp", "a..b"],
        &["--max-error-rate", "2"],
        &["--max-error-rate", "150%"],
        &["--timeout", "1h"],
        &["--duration", "30d"],
        &["-c", "20000"],
    ] {
        let mut all = vec!["load", "http://127.0.0.1:9/"];
        all.extend_from_slice(extra);
        let out = svc_command(&all, &[]).output().expect("run svc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_terminal_gets_a_progress_line_each_second_and_a_pipe_does_not() {
    let app = gateway(false).await;
    let url = format!("{}/health/live", app.address);
    // script(1) runs the command on a pseudo-terminal.
    let script = crate::helpers::require_tool("script", "bsdutils");
    let command = format!(
        "{} load {url} --rate 20 -d 2500ms",
        env!("CARGO_BIN_EXE_svc")
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(script)
            .args(["-qec", &command, "/dev/null"])
            .output()
            .expect("run script")
    })
    .await
    .expect("join");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("[   1s] sent "), "{shown}");
    assert!(shown.contains("[   2s] sent "), "{shown}");
    assert!(shown.contains("p99 "), "{shown}");
    assert!(shown.contains(" requests in "), "{shown}");

    let piped = load(args(&url, &["--rate", "20", "-d", "1500ms"])).await;
    assert!(piped.status.success(), "{piped:?}");
    assert!(piped.stderr.is_empty(), "{piped:?}");
}
