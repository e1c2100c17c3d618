//! The targets file: what it accepts and the errors it gives.

use super::*;

const TEN: Duration = Duration::from_secs(10);

#[test]
fn the_documented_example_parses() {
    let text = r#"
targets:
  - name: payments
    url: https://payments.internal/healthz
    interval: 30s
    timeout: 2s
    expect: {status: [200], max_response_time: 1s, body_contains: "ok", json: {"$.status": "UP"}, cert_expires_in: 14d}
    failure_threshold: 3
    success_threshold: 1
  - name: db
    url: tcp://10.0.0.5:5432
notify:
  - url: http://alerts.internal/hook
  - url: https://hooks.slack.com/services/T/B/X
    kind: slack
"#;
    let parsed = Targets::parse(text, TEN).expect("valid");
    assert_eq!(parsed.targets.len(), 2);
    let payments = &parsed.targets[0];
    assert_eq!(payments.interval, Duration::from_secs(30));
    assert_eq!(payments.thresholds.failure, 3);
    assert_eq!(payments.expect.json.len(), 1);
    assert_eq!(
        payments.expect.cert_expires_in,
        Some(Duration::from_secs(14 * 86400))
    );
    let db = &parsed.targets[1];
    assert_eq!(db.interval, TEN);
    assert_eq!(db.thresholds.failure, 2);
    assert!(matches!(&db.endpoint, Endpoint::Tcp { port: 5432, .. }));
    assert_eq!(parsed.notify[1].kind, notify::Kind::Slack);
}

#[test]
fn an_objective_is_a_targets_own_else_its_groups() {
    let text = r#"
targets:
  - {name: own, url: http://a, group: shop, slo: {objective: 99.99%, window: 7d}}
  - {name: shared, url: http://b, group: shop}
  - {name: none, url: http://c}
groups:
  shop: {slo: {objective: 99.5, window: 30d}}
"#;
    let parsed = Targets::parse(text, TEN).expect("valid");
    let slo = |name: &str| parsed.get(name).and_then(|t| t.slo);
    let of = |objective, window_days| {
        Some(slo::Slo {
            objective,
            window_days,
        })
    };
    assert_eq!(slo("own"), of(99.99, 7));
    assert_eq!(slo("shared"), of(99.5, 30));
    assert_eq!(slo("none"), None);
    assert!(
        parsed.groups.is_empty(),
        "a group without notify names no channels"
    );
    let bad = "targets: [{name: a, url: http://x, slo: {objective: 99%, window: 1h}}]";
    let error = Targets::parse(bad, TEN).expect_err("a window under a day");
    assert!(error.contains("targets[0] (a): slo.window"), "{error}");
    let bad = "targets: []\ngroups: {shop: {slo: {objective: 120%, window: 30d}}}";
    let error = Targets::parse(bad, TEN).expect_err("above 100 %");
    assert!(error.contains("groups.shop: slo.objective"), "{error}");
}

#[test]
fn mistakes_are_named() {
    let cases = [
        ("targets: [{name: a, url: ftp://x}]", "scheme"),
        (
            "targets: [{name: a, url: http://x, interval: soon}]",
            "interval",
        ),
        ("targets: [{name: a, url: http://x, expct: {}}]", "expct"),
        ("targets: [{name: redis, url: http://x}]", "own services"),
        (
            "targets: [{name: a, url: http://x}, {name: a, url: http://y}]",
            "twice",
        ),
        ("targets: [{name: 'a b', url: http://x}]", "name"),
        ("targets: [{name: a, url: 'tcp://x'}]", "tcp://host:port"),
        (
            "targets: [{name: a, url: http://x, failure_threshold: 0}]",
            "failure_threshold",
        ),
        (
            "targets: [{name: a, url: http://x, expect: {json: {'$[': 1}}}]",
            "JSONPath",
        ),
        ("notify: [{url: 'mailto:a@b'}]", "notify[0]"),
        ("targets: [", ""),
    ];
    for (text, needle) in cases {
        let err = Targets::parse(text, TEN).expect_err(text);
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn credentials_come_from_the_environment_and_are_never_quoted_back() {
    let env = |name: &str| (name == "TOKEN").then(|| "t0k3n".to_owned());
    let text = r#"
targets:
  - name: api
    url: https://svc:${TOKEN}@api.internal/health?token=${TOKEN}
    headers: {Authorization: "Bearer ${TOKEN}"}
    basic_auth: {username: svc, password: "${TOKEN}"}
notify:
  - url: https://hooks.example/${TOKEN}
"#;
    let parsed = Targets::parse_with(text, TEN, &env, Credentials::Required).expect("valid");
    let api = &parsed.targets[0];
    assert_eq!(
        api.endpoint.shown(),
        "https://***@api.internal/health?token=***"
    );
    assert_eq!(api.auth.headers[0].1.to_str().ok(), Some("Bearer t0k3n"));
    assert_eq!(
        api.auth.basic.as_ref().map(|(_, p)| p.expose()),
        Some("t0k3n")
    );
    assert_eq!(parsed.notify[0].url.path(), "/t0k3n");
    let debug = format!("{parsed:?}");
    assert!(!debug.contains("t0k3n"), "{debug}");

    let refused = [
        "targets: [{name: a, url: 'http://u:pa55@x:99999/'}]",
        "targets: [{name: a, url: 'ftp://u:pa55@x/?token=pa55'}]",
        "targets: [{name: a, url: 'http://x', headers: {'bad name': pa55}}]",
        "targets: [{name: a, url: 'http://x', headers: {X-Key: \"pa55\\n\"}}]",
        "targets: [{name: a, url: 'tcp://x:1', headers: {X-Key: pa55}}]",
        "targets: [{name: a, url: 'http://x', headers: \"Bearer pa55\"}]",
        "targets: [{name: a, url: 'http://x', basic_auth: {username: u, password: [pa55]}}]",
        "notify: [{url: 'mailto:pa55@x'}]",
    ];
    for text in refused {
        let err = Targets::parse_with(text, TEN, &env, Credentials::Required).expect_err(text);
        assert!(!err.contains("pa55"), "{text}: {err}");
    }
    let unset = Targets::parse_with(
        "targets: [{name: a, url: 'http://x', headers: {X-Key: '${NOPE}'}}]",
        TEN,
        &env,
        Credentials::Required,
    )
    .expect_err("unset");
    assert!(
        unset.contains("headers.X-Key") && unset.contains("NOPE"),
        "{unset}"
    );
}

#[test]
fn an_empty_file_lists_nothing() {
    assert_eq!(Targets::parse("", TEN), Ok(Targets::default()));
    assert_eq!(Targets::parse("targets: []\n", TEN), Ok(Targets::default()));
}
