//! The user's targets in Chromium: groups with their states, a target in maintenance,
//! and 1,000 targets with problems first, groups collapsed and the filter.

use std::time::Duration;

use super::*;

/// `svc all` probing the targets of `file` every second, and Chromium on its page.
async fn targets_page(file: &crate::targets::TargetsFile) -> (SvcProcess, Browser) {
    let refresh = format!("{}s", REFRESH.as_secs());
    let path = file.path();
    let svc = dashboard_process(
        &all_args(&[
            "--refresh",
            &refresh,
            "--interval",
            "1s",
            "--targets",
            &path,
        ]),
        &[("DRAIN_DELAY", "0s")],
    )
    .await;
    let browser = Browser::start().await;
    browser.goto(&svc.url("/")).await;
    (svc, browser)
}

#[tokio::test]
async fn chromium_shows_targets_grouped_with_their_states() {
    let (up, down) = (
        crate::targets::Target::start().await,
        crate::targets::Target::start().await,
    );
    down.set(500);
    let file = crate::targets::TargetsFile::new(&format!(
        "targets:\n\
         - {{name: checkout, group: shop, url: '{up}', interval: 1s}}\n\
         - {{name: payments, group: shop, url: '{down}', interval: 1s, failure_threshold: 1}}\n\
         - {{name: search, url: '{up}', interval: 1s, expect: {{json: {{'$.status': UP}}}}}}\n\
         - {{name: nightly-report, url: '{up}', interval: 24h}}\n",
        up = up.url,
        down = down.url
    ));
    let (_svc, browser) = targets_page(&file).await;
    let state = |name: &str| {
        format!("document.querySelector('#targets tr[data-target=\"{name}\"]')?.dataset.state")
    };
    browser
        .wait_for(
            Duration::from_secs(15),
            "every target judged",
            &format!(
                "{} === 'healthy' && {} === 'down' && {} === 'healthy' && {} === 'pending'",
                state("checkout"),
                state("payments"),
                state("search"),
                state("nightly-report")
            ),
        )
        .await;
    // Few targets: every group open, with full rows; those of no group first.
    let groups = browser
        .eval(
            "[...document.querySelectorAll('#groups details.group')]\
             .map(d => d.open + ' ' + d.querySelector('summary').textContent).join(',')",
        )
        .await;
    assert_eq!(
        groups,
        "true no group: 1 up, 1 not judged,true shop: 1 up, 1 down"
    );
    let reason = browser
        .eval("document.querySelector('#targets tr[data-target=\"payments\"] .reason').textContent")
        .await;
    assert!(
        reason.as_str().is_some_and(|r| r.contains("HTTP 500")),
        "{reason}"
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    let wide = browser.screenshot("targets").await;
    browser.fits_a_phone().await;
    browser
        .eval("document.getElementById('targets-title').scrollIntoView()")
        .await;
    let phone = browser.screenshot("targets-phone").await;
    eprintln!("screenshots: {}, {}", wide.display(), phone.display());
}

#[tokio::test]
async fn chromium_shows_a_target_in_maintenance_in_a_colour_of_its_own() {
    let (up, down) = (
        crate::targets::Target::start().await,
        crate::targets::Target::start().await,
    );
    down.set(500);
    let start = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let file = crate::targets::TargetsFile::new(&format!(
        "targets:\n\
         - {{name: checkout, url: '{up}', interval: 1s}}\n\
         - {{name: payments, url: '{down}', interval: 1s, failure_threshold: 1}}\n\
         - {{name: orders, url: '{down}', interval: 1s, failure_threshold: 1}}\n\
         maintenance:\n\
         - {{name: db-upgrade, targets: [orders], start: '{start}', duration: 1h}}\n",
        up = up.url,
        down = down.url
    ));
    let (_svc, browser) = targets_page(&file).await;
    let row = |name: &str| format!("document.querySelector('#targets tr[data-target=\"{name}\"]')");
    browser
        .wait_for(
            Duration::from_secs(15),
            "the window shown, its probes down",
            &format!(
                "{}?.dataset.state === 'healthy' && {}?.dataset.state === 'down' && \
                 {}?.dataset.state === 'maintenance' && \
                 {}.querySelector('.verdict')?.textContent === 'probes: down'",
                row("checkout"),
                row("payments"),
                row("orders"),
                row("orders")
            ),
        )
        .await;
    let window = browser
        .eval(&format!(
            "{}.querySelector('.window').textContent",
            row("orders")
        ))
        .await;
    assert!(
        window
            .as_str()
            .is_some_and(|w| w.starts_with("db-upgrade until ")),
        "{window}"
    );
    let colour = |name: &str| {
        format!(
            "getComputedStyle({}.querySelector('.badge')).backgroundColor + ' ' + \
             getComputedStyle({}.querySelector('.badge')).color",
            row(name),
            row(name)
        )
    };
    let mut shots = Vec::new();
    for scheme in ["light", "dark"] {
        browser
            .devtools(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            )
            .await;
        let maintenance = browser.eval(&colour("orders")).await;
        for other in ["checkout", "payments"] {
            assert_ne!(
                browser.eval(&colour(other)).await,
                maintenance,
                "{scheme}: maintenance looks like {other}"
            );
        }
        browser
            .eval("document.getElementById('targets-title').scrollIntoView()")
            .await;
        shots.push(browser.screenshot(&format!("maintenance-{scheme}")).await);
    }
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    eprintln!("screenshots: {shots:?}");
}

/// A dashboard (1 s refresh) on Redis showing 1,000 targets in 20 groups, 11 of them
/// down (written as a worker would), and Chromium on its page.
async fn fleet_page() -> (
    RedisServer,
    crate::targets::TargetsFile,
    SvcProcess,
    Browser,
) {
    use crate::fleet::{fleet_down, fleet_yaml, judge};
    let redis = RedisServer::start();
    let store = svc::store::open(&StoreSettings::Redis(redis.settings()), "svc:").expect("store");
    for i in 0..1000 {
        let (status, samples) = if fleet_down(i) {
            (svc::service::ServiceState::Down, 60)
        } else {
            (svc::service::ServiceState::Healthy, 2)
        };
        judge(store.as_ref(), &format!("t{i:04}"), status, samples).await;
    }
    let file = crate::targets::TargetsFile::new(&fleet_yaml(1000));
    let path = file.path();
    let mut dashboard = crate::helpers::role_process(
        "dashboard",
        &redis,
        &[("REFRESH_PERIOD", "1s"), ("TARGETS_FILE", &path)],
    )
    .await;
    dashboard.address = dashboard.address_of("dashboard");
    let browser = Browser::start().await;
    browser.goto(&dashboard.url("/")).await;
    browser
        .wait_for(
            Duration::from_secs(15),
            "the problems listed",
            "document.querySelectorAll('[data-rows=\"problems\"] tr[data-target]').length === 11",
        )
        .await;
    (redis, file, dashboard, browser)
}

#[tokio::test]
async fn chromium_shows_a_thousand_targets_problems_first_groups_collapsed_and_filters() {
    let (_redis, _file, dashboard, browser) = fleet_page().await;
    let headline = browser.eval(&text_of("headline")).await;
    assert!(
        headline
            .as_str()
            .is_some_and(|h| h.contains("11 of 1000 targets down: t0005, ")),
        "{headline}"
    );
    // Problems above the groups; every group collapsed.
    let order = browser
        .eval(
            "document.getElementById('problems-title').compareDocumentPosition(\
             document.getElementById('groups')) & Node.DOCUMENT_POSITION_FOLLOWING",
        )
        .await;
    assert_eq!(order, json!(4));
    let open = "[...document.querySelectorAll('details.group')].filter(d => d.open).length";
    assert_eq!(browser.eval(open).await, json!(0));
    assert_eq!(
        browser
            .eval("document.querySelectorAll('details.group').length")
            .await,
        json!(20)
    );
    let light = browser.screenshot("fleet-light").await;

    // A group opened by hand stays open across refreshes.
    open_group(&browser, "g01").await;
    let checked_at = "document.querySelector('#live .checked time').textContent";
    let checked = browser.eval(checked_at).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "a refresh",
            &format!(
                "{checked_at} !== {checked} && \
                 document.querySelector('details.group[data-group=\"g01\"]').open"
            ),
        )
        .await;
    let members = browser
        .eval("document.querySelectorAll('details.group[data-group=\"g01\"] .members li').length")
        .await;
    assert_eq!(members, json!(50));
    let expanded = browser.screenshot("fleet-group-expanded").await;

    // The filter narrows the list as one types, and the address keeps it.
    let filtered_rows = "[...document.querySelectorAll('[data-rows=\"filtered\"] tr[data-target]')]\
                         .map(r => r.dataset.target).join()";
    let typed = [
        (
            "filter-q",
            "t018",
            "?q=t018",
            "t0180,t0181,t0182,t0183,t0184,t0185,t0186,t0187,t0188,t0189",
        ),
        ("filter-state", "down", "?q=t018&state=down", "t0187"),
    ];
    for (field, value, search, rows) in typed {
        browser
            .eval(&format!(
                "(e => {{ e.value = '{value}'; \
                 e.dispatchEvent(new Event('input', {{bubbles: true}})); }})\
                 (document.getElementById('{field}'))"
            ))
            .await;
        browser
            .wait_for(
                Duration::from_secs(10),
                rows,
                &format!("{filtered_rows} === '{rows}'"),
            )
            .await;
        assert_eq!(browser.eval("location.search").await, json!(search));
    }
    let filtered = browser.screenshot("fleet-filtered").await;

    browser
        .devtools(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
        )
        .await;
    browser.goto(&dashboard.url("/")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the page again",
            "document.getElementById('groups') !== null",
        )
        .await;
    let dark = browser.screenshot("fleet-dark").await;
    browser.fits_a_phone().await;
    let phone = browser.screenshot("fleet-phone-dark").await;
    open_group(&browser, "g00").await;
    browser.fits_a_phone().await;
    let phone_groups = browser.screenshot("fleet-phone-dark-groups").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    eprintln!(
        "screenshots: {}, {}, {}, {}, {}, {}",
        light.display(),
        expanded.display(),
        filtered.display(),
        dark.display(),
        phone.display(),
        phone_groups.display()
    );
}

/// Opens the `<details>` of `group` as a click would, and scrolls to it.
async fn open_group(browser: &Browser, group: &str) {
    browser
        .eval(&format!(
            "(d => {{ d.open = true; d.scrollIntoView(); }})\
             (document.querySelector('details.group[data-group=\"{group}\"]'))"
        ))
        .await;
}
