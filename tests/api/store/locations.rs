//! Locations: each location's latest result (state, reason, response time, time) is
//! kept in the target's state and its own samples and minute tallies beside it, a newer
//! result of a location is never overridden by an older one, and the verdict that
//! combines them reads back the same on both backends.

use svc::service::ServiceState;
use svc::store::SharedStore;
use svc::targets::Targets;
use svc::targets::locations::{self, Rules};
use svc::targets::state::TargetSample;

async fn contract(store: SharedStore) {
    use ServiceState::{Down, Healthy};
    let file = "targets: [{name: web, url: 'http://127.0.0.1:9', failure_threshold: 1, \
                locations: [eu-west, us-east, ap-south]}]";
    let targets = Targets::parse(file, std::time::Duration::from_secs(10)).expect("file");
    let web = &targets.targets[0];
    let all = ["ap-south", "eu-west", "us-east"]
        .map(String::from)
        .to_vec();
    let rules = Rules {
        expected: &all,
        live: &all,
        quorum: web.quorum,
        interval: 10.0,
    };
    let now = svc::clock::unix_now();
    let probe = |location: &'static str, tick: u64, status| {
        let store = store.clone();
        let sample = TargetSample {
            timestamp: now - 2.0 + tick as f64 / 10.0,
            status,
            response_time_ms: Some(tick as f64),
            error: (status == Down).then(|| "HTTP 503".to_owned()),
            cert_expires_at: None,
        };
        async move {
            locations::observe(store.as_ref(), web, (location, tick), sample, None, rules)
                .await
                .expect("observe")
        }
    };
    for location in ["eu-west", "us-east", "ap-south"] {
        assert!(probe(location, 10, Healthy).await.is_some());
    }
    assert!(probe("us-east", 20, Down).await.is_some());
    assert!(
        probe("us-east", 15, Healthy).await.is_none(),
        "an older result of a location is dropped"
    );
    let partial = probe("eu-west", 20, Healthy).await.expect("written");
    assert_eq!(
        (partial.status, partial.partial),
        (Some(ServiceState::Degraded), true)
    );
    let down = probe("ap-south", 20, Down).await.expect("written");
    assert_eq!(down.status, Some(Down));
    let change = down.unhanded().expect("a change to hand on");
    assert_eq!(
        change.reason.as_deref(),
        Some("down from ap-south and us-east: HTTP 503; up from eu-west")
    );
    assert_eq!(change.locations["us-east"].state, "down");

    let report = locations::reports(store.as_ref(), &["web".to_owned()], now)
        .await
        .expect("reports")
        .remove(0);
    let kept = report.state.expect("state").locations;
    let us_east = &kept["us-east"];
    assert_eq!(
        (
            us_east.state,
            us_east.reason.as_deref(),
            us_east.response_time_ms
        ),
        (Some(Down), Some("HTTP 503"), Some(20.0))
    );
    assert_eq!(us_east.timestamp, now);
    // Each location's own history: its samples, newest first, and its uptime.
    let names: Vec<&str> = report.locations.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ap-south", "eu-west", "us-east"]);
    let own = &report.locations[2];
    let times: Vec<Option<f64>> = own.samples.iter().map(|s| s.response_time_ms).collect();
    assert_eq!(times, [Some(20.0), Some(10.0)]);
    assert_eq!(own.uptime_1h, Some(50.0));
    assert_eq!(own.uptime_24h, None, "a location counts its minutes only");
    let hours = report.uptime_24h;
    assert!(hours.is_some(), "the target's verdict counts its hours");
    // The target's own history: one sample per tick, the verdict at the tick's first.
    assert_eq!(report.samples.len(), 2, "{:?}", report.samples);
}

crate::store::on_both_backends!(contract);
