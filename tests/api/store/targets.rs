//! Targets: thresholds decide each change once, overtaken probes are dropped, many
//! writers at once lose nothing, and reports read back state, samples and uptime; a
//! foreign value under a target's key is named and left alone.

use svc::service::ServiceState;
use svc::store::SharedStore;
use svc::store::redis::RedisStore;
use svc::targets::locations;
use svc::targets::state::{self, TargetSample, Thresholds};

/// Targets: thresholds decide each change once, overtaken probes are dropped, and
/// reports read back state, samples and uptime.
async fn contract(store: SharedStore) {
    use ServiceState::{Down, Healthy};
    let rules = Thresholds {
        failure: 2,
        success: 1,
    };
    let now = svc::clock::unix_now();
    let at = move |tick: u64, status| TargetSample {
        timestamp: now - 60.0 + tick as f64,
        status,
        response_time_ms: Some(tick as f64),
        error: (status == Down).then(|| "HTTP 500".to_owned()),
        cert_expires_at: None,
    };
    let observe = |tick, status| {
        let store = store.clone();
        async move {
            state::observe(store.as_ref(), "web", tick, at(tick, status), rules)
                .await
                .expect("observe")
        }
    };
    let first = observe(1, Healthy).await.expect("a first verdict");
    assert_eq!(
        (first.from, first.to, first.notifies()),
        (None, Healthy, false)
    );
    // Not handed on yet: the next probe gives it again.
    assert_eq!(
        observe(2, Healthy).await.map(|c| c.id),
        Some(first.id.clone())
    );
    state::hand_off(store.as_ref(), "web", &first.id)
        .await
        .expect("hand off");
    assert_eq!(observe(3, Healthy).await, None);
    assert_eq!(
        observe(4, Down).await,
        None,
        "one failure is below the threshold"
    );
    let down = observe(5, Down).await.expect("down after two failures");
    assert_eq!((down.from, down.to), (Some(Healthy), Down));
    assert_eq!(down.reason.as_deref(), Some("HTTP 500"));
    assert!(down.notifies());
    assert_eq!(
        observe(5, Healthy).await,
        None,
        "an overtaken probe is dropped"
    );

    let names = ["web".to_owned(), "never-probed".to_owned()];
    let reports = locations::reports(store.as_ref(), &names, now)
        .await
        .expect("reports");
    let web = &reports[0];
    let state = web.state.as_ref().expect("state");
    assert_eq!((state.status, state.tick), (Some(Down), 5));
    assert_eq!(web.samples.len(), 5);
    assert_eq!(web.samples[0].response_time_ms, Some(5.0), "newest first");
    assert_eq!(web.uptime_1h, Some(60.0));
    assert_eq!(web.uptime_24h, Some(60.0));
    assert_eq!(reports[1].state, None);
    assert!(reports[1].samples.is_empty());
    assert_eq!(reports[1].uptime_1h, None);

    // Concurrent writers: every one lands or is overtaken, none is lost to a race.
    let writers: Vec<_> = (100..110)
        .map(|tick| tokio::spawn(observe(tick, Healthy)))
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let reports = locations::reports(store.as_ref(), &names[..1], now)
        .await
        .expect("reports");
    assert_eq!(reports[0].state.as_ref().map(|s| s.tick), Some(109));
}

crate::store::on_both_backends!(contract);

/// Maintenance: uptime over a window equals uptime without it (the same probes, less
/// those in the window); a change in the window is marked; leaving it down holds the
/// window's end until it is handed on, once.
mod maintenance {
    use svc::service::ServiceState::{self, Down, Healthy};
    use svc::store::SharedStore;
    use svc::targets::maintenance::Active;
    use svc::targets::state::{self, TargetSample, Thresholds};

    async fn contract(store: SharedStore) {
        let rules = Thresholds {
            failure: 2,
            success: 1,
        };
        let now = svc::clock::unix_now();
        // Two hours of probes a minute apart, up but for minutes 40 to 69, which a
        // window from 35 to 75 covers; "with" sees them all and the window, "without"
        // the same probes less those in the window.
        let start = now - 2.0 * 3600.0;
        let window = Active {
            name: "db-upgrade".into(),
            end: start + 75.0 * 60.0,
        };
        let sample = |minute: u64, status: ServiceState| TargetSample {
            timestamp: start + 60.0 * minute as f64,
            status,
            response_time_ms: None,
            error: (status == Down).then(|| "HTTP 503".to_owned()),
            cert_expires_at: None,
        };
        let mut marked = None;
        let mut ended = None;
        for minute in 0..120 {
            let status = if (40..70).contains(&minute) {
                Down
            } else {
                Healthy
            };
            let at = sample(minute, status);
            let inside = (35..75).contains(&minute);
            let written = state::observe_in(
                store.as_ref(),
                "with",
                minute + 1,
                at.clone(),
                rules,
                inside.then(|| window.clone()),
            )
            .await
            .expect("observe")
            .expect("applied");
            if let Some(change) = written.unhanded() {
                if change.to == Down {
                    marked = Some(change.clone());
                }
                state::hand_off(store.as_ref(), "with", &change.id)
                    .await
                    .expect("hand off");
            }
            if written.ended.is_some() {
                ended = written.ended.clone();
            }
            if !inside {
                state::observe(store.as_ref(), "without", minute + 1, at, rules)
                    .await
                    .expect("observe");
            }
        }
        let down = marked.expect("a change to down in the window");
        assert_eq!(down.maintenance.as_deref(), Some("db-upgrade"));
        assert!(!down.tells(), "nobody is told of it");
        assert_eq!(
            down.incident("with").maintenance.as_deref(),
            Some("db-upgrade")
        );
        assert_eq!(ended, None, "up when the window ended: nothing to tell");

        let names = ["with".to_owned(), "without".to_owned()];
        let reports = svc::targets::locations::reports(store.as_ref(), &names, now)
            .await
            .expect("reports");
        assert_eq!(reports[0].uptime_24h, Some(100.0));
        assert_eq!(reports[0].uptime_1h, reports[1].uptime_1h);
        assert_eq!(reports[0].uptime_24h, reports[1].uptime_24h);
        assert_eq!(reports[0].samples.len(), svc::store::SAMPLES_KEPT);

        // Down through the end of a window: the first probe after it holds the end
        // until it is handed on; a second probe does not hold it again.
        let tick = |n: u64| 1000 + n;
        for n in 0..3 {
            state::observe_in(
                store.as_ref(),
                "late",
                tick(n),
                sample(n, Down),
                rules,
                Some(window.clone()),
            )
            .await
            .expect("observe");
        }
        let after = state::observe_in(
            store.as_ref(),
            "late",
            tick(3),
            sample(3, Down),
            rules,
            None,
        )
        .await
        .expect("observe")
        .expect("applied");
        assert_eq!(after.ended.as_ref(), Some(&window));
        state::end_handed(store.as_ref(), "late", &window.occurrence())
            .await
            .expect("noted");
        let next = state::observe_in(
            store.as_ref(),
            "late",
            tick(4),
            sample(4, Down),
            rules,
            None,
        )
        .await
        .expect("observe")
        .expect("applied");
        assert_eq!(next.ended, None);
    }

    crate::store::on_both_backends!(contract);
}

/// Deliveries: newest first, the newest hundred kept.
mod deliveries {
    use svc::store::{DELIVERIES_KEPT, DeliveryRecord, SharedStore};

    async fn contract(store: SharedStore) {
        assert!(store.deliveries(10).await.expect("none").is_empty());
        let record = |n: usize| DeliveryRecord {
            id: format!("notify-web@{n}-hook"),
            channel: "hook".into(),
            target: "web".into(),
            state: "down".into(),
            at: n as f64,
            result: if n.is_multiple_of(2) {
                "sent"
            } else {
                "failed"
            }
            .into(),
            error: (n % 2 == 1).then(|| "HTTP 500".into()),
        };
        for n in 0..DELIVERIES_KEPT + 5 {
            store.record_delivery(&record(n)).await.expect("record");
        }
        let newest = store.deliveries(3).await.expect("read");
        assert_eq!(newest, vec![record(104), record(103), record(102)]);
        let all = store.deliveries(1000).await.expect("read");
        assert_eq!(all.len(), DELIVERIES_KEPT);
        assert_eq!(all.last(), Some(&record(5)));
    }

    crate::store::on_both_backends!(contract);
}

#[tokio::test]
async fn a_foreign_value_under_a_target_key_is_named_and_left_alone() {
    let redis = crate::helpers::RedisServer::start();
    let store = RedisStore::new(&redis.settings(), "svc:").expect("store");
    let mut conn = redis.client().await;
    let _: () = redis::cmd("HSET")
        .arg("svc:target:web")
        .arg("a")
        .arg("b")
        .query_async(&mut conn)
        .await
        .expect("HSET");
    let sample = TargetSample {
        timestamp: svc::clock::unix_now(),
        status: ServiceState::Healthy,
        response_time_ms: None,
        error: None,
        cert_expires_at: None,
    };
    let rules = Thresholds {
        failure: 1,
        success: 1,
    };
    let err = state::observe(&store, "web", 1, sample, rules)
        .await
        .expect_err("a hash is no target state");
    assert!(err.to_string().contains("svc:target:web"), "{err}");
    let reports = locations::reports(&store, &["web".to_owned(), "other".to_owned()], 0.0)
        .await
        .expect("the other targets still read");
    assert!(reports[0].error.is_some(), "{:?}", reports[0]);
    assert_eq!(reports[1].error, None);
    let kind: String = redis::cmd("TYPE")
        .arg("svc:target:web")
        .query_async(&mut conn)
        .await
        .expect("TYPE");
    assert_eq!(kind, "hash", "left as it was");
}

/// Long history: a generated year of probes, written the way a worker writes them,
/// reads back as the right uptime over 7, 30, 90 and 365 days (a maintenance window's
/// probes left out), and as hourly and daily steps with their percentiles.
mod long_history {
    use svc::store::{SampleRecord, SharedStore};
    use svc::targets::history::{self, Point, Step};

    /// Probes of one day, `back` days before today (hours 1, 7, 13 and 19): up, but
    /// for the first on every tenth day from the third, and all of them on days 45 to
    /// 49 (an outage); 40 ms, or 120 ms at 13:00 of the last two days.
    fn day(today: i64, back: i64) -> Vec<SampleRecord> {
        [1, 7, 13, 19]
            .into_iter()
            .map(|hour| {
                let up = !((back % 10 == 3 && hour == 1) || (45..=49).contains(&back));
                let ms = if back <= 1 && hour == 13 { 120.0 } else { 40.0 };
                SampleRecord {
                    timestamp: ((today - back) * 86400 + hour * 3600) as f64,
                    up,
                    counts: true,
                    response_time_ms: Some(ms),
                    minutes_only: false,
                    json: "{}".to_owned(),
                }
            })
            .collect()
    }

    async fn contract(store: SharedStore) {
        let now = svc::clock::unix_now();
        let today = (now / 86400.0).floor() as i64;
        let mut probes: Vec<SampleRecord> = (0..365).rev().flat_map(|b| day(today, b)).collect();
        // Down twice in a maintenance window 20 days ago: not counted.
        for hour in [2, 3] {
            probes.push(SampleRecord {
                timestamp: ((today - 20) * 86400 + hour * 3600) as f64,
                up: false,
                counts: false,
                response_time_ms: None,
                minutes_only: false,
                json: "{}".to_owned(),
            });
        }
        let mut seen: Option<&str> = None;
        for probe in &probes {
            let written = store
                .put_target_state("shop", seen, "s", Some(probe))
                .await
                .expect("put");
            assert!(written, "no other writer");
            seen = Some("s");
        }

        let uptimes = history::uptimes(store.as_ref(), "shop", now)
            .await
            .expect("uptimes");
        let percent = |up: f64, checks: f64| Some(100.0 * up / checks);
        assert_eq!(uptimes.d7, percent(27.0, 28.0));
        assert_eq!(uptimes.d30, percent(117.0, 120.0));
        // Nine tenth days and the five-day outage.
        assert_eq!(uptimes.d90, percent(331.0, 360.0));
        assert_eq!(uptimes.d365, percent(1403.0, 1460.0));
        let none = history::uptimes(store.as_ref(), "never-probed", now)
            .await
            .expect("uptimes");
        assert_eq!(none, history::Uptimes::default());

        // Today by the hour: the four probes in their hours, the rest empty.
        let range = history::steps(today * 86400, (today + 1) * 86400, Step::Hour).expect("24 h");
        let hours = history::export(store.as_ref(), "shop", Step::Hour, range)
            .await
            .expect("hours");
        assert_eq!(hours.len(), 24);
        let at = |hour: usize| (hours[hour].checks, hours[hour].uptime, hours[hour].p50_ms);
        assert_eq!(at(0), (0, None, None));
        assert_eq!(
            at(1),
            (1, Some(100.0), Some(50.0)),
            "40 ms is in the 50 ms bucket"
        );
        assert_eq!(at(13), (1, Some(100.0), Some(150.0)));

        // The last 50 days by the day: percentiles from the hours kept, uptime from the
        // days; the outage has no response times, the window's day only its own probes.
        let range =
            history::steps((today - 49) * 86400, (today + 1) * 86400, Step::Day).expect("50 days");
        let days = history::export(store.as_ref(), "shop", Step::Day, range)
            .await
            .expect("days");
        assert_eq!(days.len(), 50);
        let last = |back: usize| &days[49 - back];
        assert_eq!(
            last(0),
            &Point {
                start: today * 86400,
                checks: 4,
                up: 4,
                uptime: Some(100.0),
                p50_ms: Some(50.0),
                p95_ms: Some(150.0),
                p99_ms: Some(150.0),
            }
        );
        assert_eq!((last(3).checks, last(3).uptime), (4, Some(75.0)));
        assert_eq!(
            (last(20).checks, last(20).up),
            (4, 4),
            "the window left out"
        );
        assert_eq!((last(47).uptime, last(47).p50_ms), (Some(0.0), None));
    }

    crate::store::on_both_backends!(contract);
}

/// SLO: probes in a maintenance window are left out of the budget and the burn rates,
/// which count the same probes outside one.
mod slo {
    use svc::store::{SampleRecord, SharedStore};
    use svc::targets::slo::{self, Slo};
    use svc::targets::state;

    async fn contract(store: SharedStore) {
        let now = svc::clock::unix_now();
        // An hour of probes a minute apart, down for the last ten minutes: in a window
        // for "kept-out", counted for "counted".
        for (name, counts_downs) in [("kept-out", false), ("counted", true)] {
            let mut seen: Option<&str> = None;
            for k in (0..60).rev() {
                let down = k < 10;
                let probe = SampleRecord {
                    timestamp: now - 60.0 * f64::from(k),
                    up: !down,
                    counts: !down || counts_downs,
                    response_time_ms: Some(40.0),
                    minutes_only: false,
                    json: "{}".to_owned(),
                };
                let written = store
                    .put_target_state(name, seen, "s", Some(&probe))
                    .await
                    .expect("put");
                assert!(written, "no other writer");
                seen = Some("s");
            }
        }
        let objective = Slo {
            objective: 99.0,
            window_days: 30,
        };
        let reports = slo::reports(
            store.as_ref(),
            &[
                ("kept-out".to_owned(), objective),
                ("counted".to_owned(), objective),
            ],
            now,
        )
        .await
        .expect("reports");
        let kept_out = &reports[0];
        assert_eq!(
            (kept_out.budget_left, kept_out.burn_1h, kept_out.burn_6h),
            (Some(100.0), Some(0.0), Some(0.0)),
            "{kept_out:?}"
        );
        assert_eq!(
            kept_out.burn_5m, None,
            "only window probes in the last 5 minutes"
        );
        assert!(!kept_out.fast_burn());
        let counted = &reports[1];
        let burn_1h = counted.burn_1h.expect("burn");
        assert!((burn_1h - 100.0 * 10.0 / 60.0).abs() < 1e-9, "{counted:?}");
        assert_eq!(counted.burn_5m.map(f64::round), Some(100.0));
        assert!(counted.fast_burn());
        assert!(counted.budget_left.is_some_and(|b| b < 0.0), "overspent");

        // Episodes: opened by a fast burn, offered until handed on, then quiet while
        // the burn lasts; closed when the hour calms down; a new one after.
        let burning = |fast, calm, at| state::burning(store.as_ref(), "episodes", fast, calm, at);
        let first = burning(true, false, 1.0).await.expect("open").expect("new");
        assert_eq!(first.since, 1.0);
        assert_eq!(burning(true, false, 2.0).await.expect("again"), Some(first));
        state::burn_handed(store.as_ref(), "episodes", 1.0)
            .await
            .expect("handed");
        assert_eq!(burning(true, false, 3.0).await.expect("quiet"), None);
        assert_eq!(burning(false, false, 4.0).await.expect("slowing"), None);
        assert_eq!(burning(false, true, 5.0).await.expect("closed"), None);
        let second = burning(true, false, 6.0).await.expect("open").expect("new");
        assert_eq!(second.since, 6.0, "a new episode");
    }

    crate::store::on_both_backends!(contract);
}
