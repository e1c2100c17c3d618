//! The check types besides http and tcp, each against a real server on loopback that
//! the test starts: dnsmasq for `dns://`, a gRPC health server (grpcio,
//! `tests/grpc_health_server.py`) for `grpc://` and `grpcs://`, a WebSocket server
//! (websockets, `tests/ws_server.py`) for `ws://` and `wss://`, `openssl s_server` for
//! `tls://`, and echo requests to 127.0.0.1 for `icmp://`; the TLS servers with a
//! certificate of the test's own CA, named by `ca_file`. Each target is judged by `svc all` and its
//! state and reason read from the dashboard, as a person sees them; a `tls://` target
//! that goes down reaches a webhook (the path from a check to a notification is the
//! same for every type).
//!
//! Echoes lost cannot be had honestly on loopback (every 127.x address answers, and
//! a firewall rule is not available everywhere): the judging of lost echoes is tested
//! at unit level, in `src/targets/check/icmp.rs`.

use std::path::Path;
use std::process::Command;

use crate::helpers::{
    Announced, Dir, SvcProcess, TlsServer, all_args, certificates, client, free_port, require_tool,
};
use crate::targets::{Receiver, TargetsFile, entry_of, wait_posts, wait_status};

/// `svc all` probing the targets in `yaml` every second; the file (kept alive), the
/// process and its dashboard's URL.
fn watching(yaml: &str) -> (TargetsFile, SvcProcess, String) {
    let file = TargetsFile::new(yaml);
    let svc = SvcProcess::spawn(
        &all_args(&["--targets", &file.path()]),
        &[("WORKER_INTERVAL", "1s"), ("REFRESH_PERIOD", "1s")],
    );
    let dashboard = format!("http://{}", svc.address_of("dashboard"));
    (file, svc, dashboard)
}

/// Waits until each `(name, state, reason)` target is in `state`, then checks its
/// reason contains `reason` (or that it has none).
async fn expect_states(dashboard: &str, want: &[(&str, &str, Option<&str>)]) {
    let client = client();
    for (name, state, _) in want {
        wait_status(&client, dashboard, name, state).await;
    }
    for (name, state, reason) in want {
        let entry = entry_of(&client, dashboard, name)
            .await
            .expect("the target");
        let error = entry["error"].as_str();
        match reason {
            None => assert!(error.is_none(), "{name} {state}: {entry}"),
            Some(part) => assert!(
                error.is_some_and(|e| e.contains(part)),
                "{name} {state}: want a reason with {part:?}: {entry}"
            ),
        }
    }
}

/// A target line of a targets file, probed every second.
fn target(name: &str, url: &str, rest: &str) -> String {
    format!("  - {{name: {name}, url: \"{url}\", interval: 1s, timeout: 2s{rest}}}\n")
}

/// A Python script of tests/ started with `args`, after checking the `modules` it
/// needs are installed; it prints `PORT <n>` when it listens.
fn python_server(script: &str, modules: &[(&str, &str)], args: &[&str]) -> Announced {
    let python = require_tool("python3", "python3");
    for (module, package) in modules {
        let found = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .expect("run python3");
        assert!(
            found.status.success(),
            "the Python module {module} is not installed: run tests/run.sh \
             (it installs what the tests need) or `python3 -m pip install {package}`"
        );
    }
    let mut command = Command::new(python);
    command
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join(script),
        )
        .args(args);
    Announced::spawn(command, |line| {
        line.strip_prefix("PORT ")?.trim().parse().ok()
    })
}

/// dnsmasq on 127.0.0.1: `api.test` is 127.1.2.3, `missing.test` does not exist.
fn dnsmasq() -> Announced {
    let dnsmasq = require_tool("dnsmasq", "dnsmasq-base");
    // dnsmasq cannot bind port 0 and say which: a port free a moment ago, tried again
    // should another process take it meanwhile.
    for _ in 0..5 {
        let port = free_port();
        let mut command = Command::new(&dnsmasq);
        command.args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            &format!("--port={port}"),
            "--host-record=api.test,127.1.2.3",
            "--local=/test/",
            "--address=/missing.test/",
            "--log-facility=-",
        ]);
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Announced::spawn(command, |line| {
                line.contains("started, version").then_some(port)
            })
        }));
        if let Ok(server) = started {
            return server;
        }
    }
    panic!("dnsmasq did not start on any of 5 ports");
}

#[tokio::test]
async fn dns_targets_are_judged_by_response_code_and_answers() {
    let dns = dnsmasq();
    let at = format!("127.0.0.1:{}", dns.port);
    let yaml = [
        "targets:\n".to_owned(),
        target(
            "dns-ok",
            &format!("dns://{at}/api.test?type=A"),
            ", expect: {answers_contain: [127.1.2.3]}",
        ),
        target("dns-nx", &format!("dns://{at}/missing.test"), ""),
        target(
            "dns-gone",
            &format!("dns://{at}/missing.test"),
            ", expect: {rcode: NXDOMAIN}",
        ),
        target(
            "dns-moved",
            &format!("dns://{at}/api.test?type=A"),
            ", expect: {answers_contain: [10.1.2.3]}",
        ),
        target("dns-no-v6", &format!("dns://{at}/api.test?type=AAAA"), ""),
    ]
    .concat();
    let (_file, _svc, dashboard) = watching(&yaml);
    expect_states(
        &dashboard,
        &[
            ("dns-ok", "healthy", None),
            ("dns-nx", "down", Some("NXDOMAIN")),
            ("dns-gone", "healthy", None),
            (
                "dns-moved",
                "down",
                Some("answer does not contain 10.1.2.3 (got 127.1.2.3)"),
            ),
            ("dns-no-v6", "down", Some("no AAAA answer for api.test")),
        ],
    )
    .await;
}

#[tokio::test]
async fn grpc_targets_follow_the_health_service() {
    let server = python_server(
        "grpc_health_server.py",
        &[
            ("grpc", "grpcio"),
            ("grpc_health", "grpcio-health-checking"),
        ],
        &[
            "=SERVING",
            "shop.Cart=SERVING",
            "shop.Pay=NOT_SERVING",
            "shop.Maybe=UNKNOWN",
        ],
    );
    let dir = Dir::new("grpcs");
    let (ca, cert, key) = certificates(&dir);
    let secure = python_server(
        "grpc_health_server.py",
        &[],
        &[
            "--tls",
            &cert.display().to_string(),
            &key.display().to_string(),
            "shop.Cart=SERVING",
        ],
    );
    let at = format!("127.0.0.1:{}", server.port);
    let closed = free_port();
    let yaml = [
        "targets:\n".to_owned(),
        target("grpc-server", &format!("grpc://{at}"), ""),
        target("grpc-cart", &format!("grpc://{at}/shop.Cart"), ""),
        target("grpc-pay", &format!("grpc://{at}/shop.Pay"), ""),
        target("grpc-maybe", &format!("grpc://{at}/shop.Maybe"), ""),
        target("grpc-nope", &format!("grpc://{at}/shop.Nope"), ""),
        target("grpc-closed", &format!("grpc://127.0.0.1:{closed}"), ""),
        target(
            "grpcs-cart",
            &format!("grpcs://localhost:{}/shop.Cart", secure.port),
            &format!(
                ", ca_file: \"{}\", expect: {{cert_expires_in: 7d}}",
                ca.display()
            ),
        ),
    ]
    .concat();
    let (_file, _svc, dashboard) = watching(&yaml);
    expect_states(
        &dashboard,
        &[
            ("grpc-server", "healthy", None),
            ("grpc-cart", "healthy", None),
            ("grpc-pay", "down", Some("gRPC NOT_SERVING for shop.Pay")),
            ("grpc-maybe", "down", Some("gRPC UNKNOWN for shop.Maybe")),
            ("grpc-nope", "down", Some("\"shop.Nope\" (NOT_FOUND)")),
            ("grpc-closed", "down", Some("cannot connect")),
            // Served over TLS, and judged by its certificate as https is.
            ("grpcs-cart", "degraded", Some("certificate expires in")),
        ],
    )
    .await;
}

#[tokio::test]
async fn ws_targets_open_send_and_receive() {
    let server = python_server("ws_server.py", &[("websockets", "websockets")], &[]);
    let dir = Dir::new("wss");
    let (ca, cert, key) = certificates(&dir);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let secure = python_server("ws_server.py", &[], &["--tls", &cert, &key]);
    let at = format!("127.0.0.1:{}", server.port);
    let wss = format!("wss://localhost:{}/echo", secure.port);
    let yaml = [
        "targets:\n".to_owned(),
        target("ws-open", &format!("ws://{at}/quiet"), ""),
        target(
            "ws-echo",
            &format!("ws://{at}/echo"),
            ", expect: {send: ping, receive_contains: ping}",
        ),
        target(
            "ws-wrong",
            &format!("ws://{at}/echo"),
            ", expect: {send: hello, receive_contains: pong}",
        ),
        target(
            "ws-silent",
            &format!("ws://{at}/quiet"),
            ", expect: {receive_contains: hello}",
        ),
        target("ws-missing", &format!("ws://{at}/missing"), ""),
        target(
            "wss-echo",
            &wss,
            &format!(
                ", ca_file: \"{}\", expect: {{send: ping, receive_contains: ping}}",
                ca.display()
            ),
        ),
        target("wss-untrusted", &wss, ""),
    ]
    .concat();
    let (_file, _svc, dashboard) = watching(&yaml);
    expect_states(
        &dashboard,
        &[
            ("ws-open", "healthy", None),
            ("ws-echo", "healthy", None),
            (
                "ws-wrong",
                "down",
                Some("message does not contain \"pong\" (got \"hello\")"),
            ),
            ("ws-silent", "down", Some("no answer within 2s")),
            ("ws-missing", "down", Some("WebSocket handshake failed")),
            ("wss-echo", "healthy", None),
            ("wss-untrusted", "down", Some("TLS handshake failed")),
        ],
    )
    .await;
    let client = client();
    let missing = entry_of(&client, &dashboard, "ws-missing")
        .await
        .expect("ws-missing");
    assert!(
        missing["error"].as_str().is_some_and(|e| e.contains("404")),
        "{missing}"
    );
}

#[tokio::test]
async fn tls_targets_judge_trust_names_and_expiry() {
    let tls = TlsServer::start();
    let (port, ca) = (tls.server.port, tls.ca.display());
    let trusted = format!(", ca_file: \"{ca}\"");
    let yaml = [
        "targets:\n".to_owned(),
        target(
            "tls-ok",
            &format!("tls://localhost:{port}"),
            &format!("{trusted}, expect: {{names: [localhost, 127.0.0.1]}}"),
        ),
        target(
            "tls-names",
            &format!("tls://localhost:{port}"),
            &format!("{trusted}, expect: {{names: [b.example]}}"),
        ),
        target(
            "tls-soon",
            &format!("tls://127.0.0.1:{port}"),
            &format!("{trusted}, expect: {{cert_expires_in: 7d}}"),
        ),
        target("tls-untrusted", &format!("tls://localhost:{port}"), ""),
    ]
    .concat();
    let (_file, _svc, dashboard) = watching(&yaml);
    expect_states(
        &dashboard,
        &[
            ("tls-ok", "healthy", None),
            (
                "tls-names",
                "down",
                Some("certificate for localhost, 127.0.0.1 does not cover b.example"),
            ),
            (
                "tls-soon",
                "degraded",
                Some("certificate expires in 1.0 days"),
            ),
            ("tls-untrusted", "down", Some("TLS handshake failed")),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_icmp_target_on_loopback_is_up_with_its_round_trip() {
    let yaml = [
        "targets:\n".to_owned(),
        target("icmp-lo", "icmp://127.0.0.1", ""),
    ]
    .concat();
    let (_file, _svc, dashboard) = watching(&yaml);
    expect_states(&dashboard, &[("icmp-lo", "healthy", None)]).await;
    let client = client();
    let entry = entry_of(&client, &dashboard, "icmp-lo")
        .await
        .expect("icmp-lo");
    let ms = entry["response_time_ms"].as_f64();
    // The mean round trip of three echoes on loopback, not the probe's two seconds.
    assert!(ms.is_some_and(|ms| (0.0..500.0).contains(&ms)), "{entry}");
}

#[tokio::test]
async fn a_tls_port_that_closes_is_told_to_the_webhook() {
    let mut tls = TlsServer::start();
    let receiver = Receiver::start(0, false).await;
    let yaml = format!(
        "targets:\n{}notify:\n  - url: {}\n",
        target(
            "ldaps",
            &format!("tls://localhost:{}", tls.server.port),
            &format!(", ca_file: \"{}\"", tls.ca.display()),
        ),
        receiver.url
    );
    let (_file, _svc, dashboard) = watching(&yaml);
    let client = client();
    wait_status(&client, &dashboard, "ldaps", "healthy").await;
    tls.server.stop();
    let posts = wait_posts(&receiver, 1).await;
    let down = &posts[0].body;
    assert_eq!(
        (&down["target"], &down["state"]),
        (&"ldaps".into(), &"down".into()),
        "{down}"
    );
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot connect")),
        "{down}"
    );
    wait_status(&client, &dashboard, "ldaps", "down").await;
}

#[tokio::test]
async fn probe_speaks_blackbox_for_a_dns_module() {
    let dns = dnsmasq();
    let yaml = "targets: []\nmodules:\n  dns_a:\n    type: dns\n    allow: [\"127.0.0.0/8\"]\n";
    let (_file, svc, _dashboard) = watching(yaml);
    let worker = format!("http://{}", svc.address_of("worker-service"));
    let gauges = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    for (name, want) in [
        (
            "api.test",
            &[
                "probe_success 1",
                "probe_dns_query_succeeded 1",
                "probe_dns_answer_rrs 1",
            ][..],
        ),
        (
            "missing.test",
            &[
                "probe_success 0",
                "probe_dns_query_succeeded 1",
                "probe_dns_answer_rrs 0",
            ][..],
        ),
    ] {
        let target = format!("dns://127.0.0.1:{}/{name}?type=A", dns.port);
        let res = client()
            .get(format!(
                "{worker}/probe?module=dns_a&target={}",
                crate::alerts::urlencode(&target)
            ))
            .send()
            .await
            .expect("GET /probe");
        assert_eq!(res.status(), 200);
        let text = res.text().await.expect("body");
        let lines = gauges(&text);
        for line in want {
            assert!(
                lines.iter().any(|l| l == line),
                "{name}: {line} not in\n{text}"
            );
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(r#"probe_dns_duration_seconds{phase="request"} "#)),
            "{text}"
        );
    }
}
