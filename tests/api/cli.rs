//! The command line: bad configuration fails fast in one line; `svc healthcheck` exit
//! codes.

use std::net::TcpListener;
use std::process::Output;
use std::time::{Duration, Instant};

use svc::config::StoreSettings;

use crate::helpers::{RedisServer, TestApp, svc_command, test_settings};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    svc_command(args, env).output().expect("run svc")
}

/// Exit code, and stderr, which must be exactly one line and no panic.
fn failure(out: &Output) -> (i32, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stderr.lines().count(),
        1,
        "stderr is not one line: {stderr:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    (out.status.code().expect("exited, not killed"), stderr)
}

#[test]
fn a_port_that_is_not_a_number_is_a_usage_error() {
    let (code, stderr) = failure(&run(&["gateway", "--port", "notaport"], &[]));
    assert_eq!(code, 64);
    assert!(
        stderr.contains("notaport") && stderr.contains("--port"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let (code, stderr) = failure(&run(&["gatewya"], &[]));
    assert_eq!(code, 64);
    assert!(stderr.contains("gatewya"), "{stderr}");
}

#[test]
fn a_malformed_redis_url_is_a_usage_error_that_hides_the_password() {
    for url in [
        "redis://:s3cret-pw@cache:6379/zero",
        "http://:s3cret-pw@cache:6379/0",
        "s3cret-pw",
    ] {
        let (code, stderr) = failure(&run(&["gateway"], &[("REDIS_URL", url)]));
        assert_eq!(code, 64, "{url}");
        assert!(stderr.contains("REDIS_URL"), "{stderr}");
        assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    }
}

#[test]
fn a_bad_location_or_probe_source_is_a_usage_error() {
    for (flag, value, named) in [
        ("--location", "EU-West", "LOCATION"),
        ("--location", "eu_west", "LOCATION"),
        ("--probe-source-ip", "not-an-ip", "--probe-source-ip"),
    ] {
        let (code, stderr) = failure(&run(&["worker", flag, value], &[]));
        assert_eq!(code, 64, "{flag} {value}");
        assert!(stderr.contains(named), "{stderr}");
    }
    // A location is checked by the targets file too.
    let file = crate::targets::TargetsFile::new(
        "targets: [{name: web, url: 'http://127.0.0.1:9', locations: [eu-west], quorum: 2}]",
    );
    let (code, stderr) = failure(&run(&["worker", "--targets", &file.path()], &[]));
    assert_eq!(code, 64);
    assert!(
        stderr.contains("quorum: 2 is more than the 1 locations listed"),
        "{stderr}"
    );
}

#[test]
fn a_port_already_taken_is_one_line_and_a_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = run(&["gateway", "--host", "127.0.0.1", "--port", &port], &[]);
    let (code, stderr) = failure(&out);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn healthcheck_exit_codes_follow_the_answer() {
    let mut redis = RedisServer::start();
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    let check = |path: &str| {
        let out = run(&["healthcheck", &format!("{}{path}", app.address)], &[]);
        out.status.code()
    };
    assert_eq!(check("/health/live"), Some(0));
    assert_eq!(check("/health/ready"), Some(0));
    assert_eq!(check("/missing"), Some(1));

    redis.stop();
    app.wait_ready(503, Duration::from_secs(5)).await;
    assert_eq!(check("/health/ready"), Some(1));
    assert_eq!(check("/health/live"), Some(0));
}

#[test]
fn healthcheck_of_a_closed_port_fails_quickly() {
    let port = crate::helpers::free_port();
    let start = Instant::now();
    let out = run(
        &[
            "healthcheck",
            "--timeout",
            "1s",
            &format!("http://127.0.0.1:{port}/health/live"),
        ],
        &[],
    );
    let (code, _) = failure(&out);
    assert_eq!(code, 1);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn load_sends_the_requests_it_is_asked_for() {
    let app = TestApp::gateway(test_settings(StoreSettings::Memory)).await;
    app.wait_ready(200, Duration::from_secs(5)).await;
    let url = format!("{}/api/status", app.address);
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "load",
                &url,
                "--concurrency",
                "4",
                "--requests",
                "50",
                "--duration",
                "20s",
            ],
            &[],
        )
    })
    .await
    .expect("svc load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("50 requests in "), "{stdout}");
    assert!(stdout.contains("50 ok, 0 failed"), "{stdout}");
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(status["total_requests"], 51);
}

#[test]
fn load_against_nothing_fails_and_bad_flags_are_usage_errors() {
    let port = crate::helpers::free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stderr) = failure(&run(&["load", &url, "--duration", "300ms"], &[]));
    assert_eq!(code, 1);
    assert!(stderr.contains("no request succeeded"), "{stderr}");
    let (code, _) = failure(&run(&["load", &url, "--concurrency", "0"], &[]));
    assert_eq!(code, 64);
    let (code, _) = failure(&run(&["worker", "--interval", "soon"], &[]));
    assert_eq!(code, 64);
    let (code, stderr) = failure(&run(&["worker", "--interval", "10ms"], &[]));
    assert_eq!(code, 64);
    assert!(stderr.contains("WORKER_INTERVAL"), "{stderr}");
}

#[test]
fn durations_out_of_range_are_usage_errors() {
    for (var, value) in [
        ("WORKER_INTERVAL", "100000000d"),
        ("WORKER_INTERVAL", "30d"),
        ("VISIBILITY_TIMEOUT", "100000000d"),
        ("GRACE_PERIOD", "100000000d"),
        ("DRAIN_DELAY", "3000d"),
    ] {
        let (code, stderr) = failure(&run(&["worker", "--port", "0"], &[(var, value)]));
        assert_eq!(code, 64, "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

#[test]
fn worker_and_dashboard_judge_a_probe_url_alike() {
    let url = "http://user:secret@gateway:8080";
    for role in ["worker", "dashboard"] {
        let (code, stderr) = failure(&run(&[role, "--port", "0"], &[("API_GATEWAY_URL", url)]));
        assert_eq!(code, 64, "{role}: {stderr}");
        assert!(stderr.contains("API_GATEWAY_URL"), "{role}: {stderr}");
        assert!(!stderr.contains("secret"), "{role}: {stderr}");
    }
}

#[test]
fn bad_redis_topologies_are_usage_errors() {
    for (env, flag) in [
        (vec![("REDIS_SENTINELS", ",")], "REDIS_SENTINELS"),
        (vec![("REDIS_SENTINELS", "s1:notaport")], "REDIS_SENTINELS"),
        (
            vec![("REDIS_SENTINELS", "s1:26379"), ("REDIS_MASTER_NAME", "")],
            "REDIS_MASTER_NAME",
        ),
        (vec![("REDIS_CA_FILE", "/no/such/ca.pem")], "REDIS_CA_FILE"),
        (vec![("REDIS_WAIT_TIMEOUT", "1h")], "REDIS_WAIT_TIMEOUT"),
        (vec![("REDIS_URL", "http://:hunter2@x/0")], "REDIS_URL"),
    ] {
        let (code, stderr) = failure(&run(&["gateway", "--port", "0"], &env));
        assert_eq!(code, 64, "{env:?}: {stderr}");
        assert!(stderr.contains(flag), "{env:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    let (code, stderr) = failure(&run(
        &["gateway", "--port", "0"],
        &[("REDIS_WAIT_REPLICAS", "many")],
    ));
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("redis-wait-replicas"), "{stderr}");
}
