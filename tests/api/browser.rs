//! The dashboard in a real headless Chromium, driven by chromedriver over the W3C
//! WebDriver protocol: the DOM after the script ran, a refresh without a reload, console
//! errors, an outage seen by the browser, and screenshots (light, dark, 360 px wide)
//! under `target/screenshots/` to look at.
//!
//! Needs `chromium` and `chromedriver` (Debian `chromium`, `chromium-driver`): a test
//! that cannot find them fails and says how to install them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use svc::clock::{minute_of, unix_now};
use svc::config::StoreSettings;
use svc::store::series;

use crate::dashboard::record_history;
use crate::detection::dashboard_over;
use crate::helpers::{Announced, RedisServer, SvcProcess, eventually, free_port, require_tool};
use crate::helpers::{all_args, gateway_process, worker_process};

mod status;
mod targets;

/// Refresh period the dashboards under test run with.
const REFRESH: Duration = Duration::from_secs(1);

/// One Chromium session behind its own chromedriver; both end on drop.
struct Browser {
    driver: Announced,
    port: u16,
    session: std::sync::Mutex<String>,
    /// What a session is made with, to make another when the renderer dies.
    capabilities: Value,
    client: reqwest::Client,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let chromium = require_tool("chromium", "chromium");
        let chromedriver = require_tool("chromedriver", "chromium-driver");
        // Port 0: chromedriver picks a free port and names it ("... started successfully
        // on port 41234.").
        let mut command = Command::new(chromedriver);
        command.arg("--port=0");
        let driver = Announced::spawn(command, |line| {
            line.split_once("started successfully on port ")?
                .1
                .trim_end_matches('.')
                .parse()
                .ok()
        });
        let port = driver.port;
        let client = crate::helpers::client_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let status = format!("http://127.0.0.1:{port}/status");
        eventually(Duration::from_secs(10), "chromedriver to start", || async {
            let res = client.get(&status).send().await.ok()?;
            let body: Value = res.json().await.ok()?;
            (body["value"]["ready"] == true).then_some(())
        })
        .await;
        let profile =
            std::env::temp_dir().join(format!("svc-chromium-{port}-{}", std::process::id()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync", "--disable-quic",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let browser = Browser {
            driver,
            port,
            session: std::sync::Mutex::new(String::new()),
            capabilities,
            client,
            profile,
        };
        browser.renew().await;
        browser
    }

    /// Opens a new session (the first, or one after the renderer died).
    async fn renew(&self) {
        let created = self
            .command("POST", "/session", self.capabilities.clone())
            .await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        *self.session.lock().expect("session") = id;
    }

    /// Sends one WebDriver command; returns its `value`, panics on an error answer.
    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|answer| panic!("{method} {path} failed: {answer}"))
    }

    /// Sends one WebDriver command; its `value`, or the error answer.
    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let request = match method {
            "GET" => self.client.get(&url),
            _ => self.client.post(&url).json(&body),
        };
        let res = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let ok = res.status().is_success();
        let answer: Value = res.json().await.expect("WebDriver answers JSON");
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer)
        }
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session.lock().expect("session"));
        self.command(method, &path, body).await
    }

    /// Opens `url`. Chromium's renderer, starved of CPU on a loaded machine, now and
    /// then stops answering and takes the session with it: then a new session opens
    /// the page once more (nothing of the old page is relied on after a navigation).
    async fn goto(&self, url: &str) {
        let path = || format!("/session/{}/url", self.session.lock().expect("session"));
        let body = json!({ "url": url });
        if let Err(answer) = self.try_command("POST", &path(), body.clone()).await {
            let text = answer.to_string();
            assert!(
                text.contains("invalid session id") || text.contains("disconnected"),
                "POST /url failed: {answer}"
            );
            self.renew().await;
            self.command("POST", &path(), body).await;
        }
    }

    /// The value of the JavaScript expression `expr` in the page.
    async fn eval(&self, expr: &str) -> Value {
        let script = format!("return {expr}");
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Polls `expr` until it is `true`; returns how long that took.
    async fn wait_for(&self, within: Duration, what: &str, expr: &str) -> Duration {
        let start = Instant::now();
        eventually(within, what, || async {
            (self.eval(expr).await == true).then_some(())
        })
        .await;
        start.elapsed()
    }

    /// Console messages logged at error level since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let log = self
            .session("POST", "/se/log", json!({"type": "browser"}))
            .await;
        log.as_array()
            .expect("log entries")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].to_string())
            .collect()
    }

    /// A Chrome DevTools command.
    async fn devtools(&self, cmd: &str, params: Value) {
        self.session(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
        .await;
    }

    /// Switches the page to the dark colour scheme and checks its background changed.
    async fn go_dark(&self) {
        let background = "getComputedStyle(document.body).backgroundColor";
        let light = self.eval(background).await;
        self.devtools(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
        )
        .await;
        assert_ne!(self.eval(background).await, light, "no dark theme");
    }

    /// Switches to a 360 px phone screen and checks the page fits it, scrolling
    /// nothing sideways.
    async fn fits_a_phone(&self) {
        self.devtools(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": true}),
        )
        .await;
        let width = self.eval("document.documentElement.scrollWidth").await;
        assert!(
            width.as_u64().is_some_and(|w| w <= 360),
            "page is {width} px wide at 360"
        );
    }

    /// Saves a PNG of the viewport as `target/screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.session("GET", "/screenshot", Value::Null).await;
        let png = base64_decode(encoded.as_str().expect("base64 string"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    /// Ends the session (which closes Chromium) with a plain blocking request, since
    /// drop cannot await, then stops chromedriver.
    fn drop(&mut self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                self.session.lock().map(|s| s.clone()).unwrap_or_default()
            );
            let _ = s.write_all(request.as_bytes());
            let _ = s.read_to_end(&mut Vec::new());
        }
        self.driver.stop();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// `svc <args>` serving the dashboard, once its page answers.
async fn dashboard_process(args: &[&str], env: &[(&str, &str)]) -> SvcProcess {
    dashboard_serving(SvcProcess::spawn(args, env)).await
}

/// `svc`, once the page of its dashboard answers.
async fn dashboard_serving(mut svc: SvcProcess) -> SvcProcess {
    svc.address = svc.address_of("dashboard");
    let client = crate::helpers::client();
    eventually(
        Duration::from_secs(15),
        "the dashboard to serve",
        || async {
            let res = client.get(svc.url("/")).send().await.ok()?;
            (res.status() == 200).then_some(())
        },
    )
    .await;
    svc
}

fn text_of(id: &str) -> String {
    format!("document.getElementById('{id}').textContent")
}

#[tokio::test]
async fn the_page_works_in_chromium_against_svc_all() {
    // On Redis rather than the embedded store, so the test can write history as a
    // worker would: the page then has charts to draw.
    let redis = RedisServer::start();
    let store = svc::store::open(&StoreSettings::Redis(redis.settings()), "svc:").expect("store");
    record_history(&store, 1.0, 60).await;
    let minute = minute_of(unix_now());
    for ago in 1..60 {
        store
            .series_add(series::REQUESTS, minute - ago, 40 + ago * 13 % 29)
            .await
            .expect("series");
    }
    let refresh = format!("{}s", REFRESH.as_secs());
    let url = redis.url();
    let svc = dashboard_process(
        &all_args(&[
            "--refresh",
            &refresh,
            // The history is the test's: no scheduled health check writes over it.
            "--interval",
            "24h",
        ]),
        &[("DRAIN_DELAY", "0s"), ("REDIS_URL", &url)],
    )
    .await;
    let browser = Browser::start().await;
    browser.goto(&svc.url("/")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "four service cards",
            "document.querySelectorAll('article.card[data-service]').length === 4",
        )
        .await;
    let charts = "document.querySelectorAll('svg.spark').length";
    assert_eq!(browser.eval(charts).await, 4);
    assert_eq!(browser.eval(&text_of("total-requests")).await, "0");

    // The gateway counts /api/status; the next refresh must show it without a reload.
    browser.eval("(window.sameDocument = true)").await;
    let client = crate::helpers::client();
    for _ in 0..3 {
        let res = client
            .get(format!(
                "http://{}/api/status",
                svc.address_of("api-gateway")
            ))
            .send()
            .await
            .expect("gateway");
        assert_eq!(res.status(), 200);
    }
    browser
        .wait_for(
            2 * REFRESH + Duration::from_secs(2),
            "the request count to reach 3",
            &format!("{} === '3'", text_of("total-requests")),
        )
        .await;
    assert_eq!(
        browser.eval("window.sameDocument === true").await,
        true,
        "the page reloaded"
    );
    assert_eq!(
        browser.eval("document.getElementById('conn').hidden").await,
        true
    );

    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    // The console is really being read: an error logged now must show up.
    browser.eval("console.error('canary')").await;
    let errors = browser.console_errors().await;
    assert!(errors.iter().any(|e| e.contains("canary")), "{errors:?}");

    let light = browser.screenshot("dashboard-light").await;
    browser.go_dark().await;
    let dark = browser.screenshot("dashboard-dark").await;

    browser.fits_a_phone().await;
    let phone = browser.screenshot("dashboard-phone-dark").await;
    eprintln!(
        "screenshots: {}, {}, {}",
        light.display(),
        dark.display(),
        phone.display()
    );
}

#[tokio::test]
async fn chromium_shows_a_stopped_gateway_as_down_and_a_lost_dashboard_as_retrying() {
    let redis = RedisServer::start();
    let mut gateway = gateway_process(&redis, &[]).await;
    let gateway_url = format!("http://{}", gateway.address);
    let worker_url = format!("http://127.0.0.1:{}", free_port());
    let refresh = format!("{}s", REFRESH.as_secs());
    let args = |port: u16| {
        let port = port.to_string();
        [
            "dashboard",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--gateway-url",
            &gateway_url,
            "--worker-url",
            &worker_url,
            "--refresh",
            &refresh,
        ]
        .map(str::to_owned)
    };
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("DRAIN_DELAY", "0s")];
    // The OS picks the dashboard's port; the restart below comes back on the same one.
    let first = args(0);
    let mut svc = dashboard_process(&first.each_ref().map(String::as_str), &env).await;
    let port = svc.address.port();
    let browser = Browser::start().await;
    browser.goto(&svc.url("/")).await;
    let gateway_state = "document.querySelector('[data-service=\"api-gateway\"]').dataset.state";
    browser
        .wait_for(
            Duration::from_secs(10),
            "the gateway shown healthy",
            &format!("{gateway_state} === 'healthy'"),
        )
        .await;

    gateway.child.kill().expect("kill the gateway");
    let took = browser
        .wait_for(
            5 * REFRESH + Duration::from_secs(5),
            "the gateway shown down",
            &format!(
                "{gateway_state} === 'down' && \
                 document.querySelector('section.system').dataset.state === 'down'"
            ),
        )
        .await;
    // Two periods are expected (one until the next probe, one until the page fetches
    // it); how long it took is a benchmark's business on a shared machine, so the test
    // only bounds it generously and prints it.
    println!("a stopped gateway was shown down after {took:?}");
    let reason = browser.eval(&text_of("reason")).await;
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.starts_with("API gateway down")),
        "{reason}"
    );

    // The dashboard itself goes away: the page says so, then recovers by itself.
    svc.child.kill().expect("kill the dashboard");
    let _ = svc.child.wait();
    let notice = "!document.getElementById('conn').hidden";
    browser
        .wait_for(5 * REFRESH, "the connection-lost notice", notice)
        .await;
    let text = browser.eval(&text_of("conn")).await;
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("Connection lost, retrying")),
        "{text}"
    );
    let again = args(port);
    let _svc = dashboard_serving(SvcProcess::respawn(
        &again.each_ref().map(String::as_str),
        &env,
    ))
    .await;
    browser
        .wait_for(
            3 * REFRESH,
            "the notice to go",
            "document.getElementById('conn').hidden",
        )
        .await;
}

#[tokio::test]
async fn chromium_screenshots_of_each_state_of_two_gateways_and_a_frozen_store() {
    let redis = RedisServer::start();
    let mut first = gateway_process(&redis, &[]).await;
    let mut second = gateway_process(&redis, &[]).await;
    let worker = worker_process(&redis, &[]).await;
    let _other_worker = worker_process(&redis, &[]).await;
    let dashboard = dashboard_over(&redis, &first, &worker).await;
    let browser = Browser::start().await;
    browser.goto(&dashboard.url("/")).await;
    let within = Duration::from_secs(60);
    let system = "document.querySelector('section.system').dataset.state";
    let ready = "document.querySelector('[data-service=\"api-gateway\"] dd.ready').textContent";
    browser
        .wait_for(
            within,
            "everything healthy, two gateways ready",
            &format!("{system} === 'healthy' && {ready} === '2 of 2'"),
        )
        .await;
    let healthy = browser.screenshot("state-healthy").await;

    first.child.kill().expect("kill the first gateway");
    browser
        .wait_for(
            within,
            "one gateway of two",
            &format!("{system} === 'degraded' && {ready} === '1 of 2'"),
        )
        .await;
    let lost = "document.querySelector('#replicas tr[data-state=\"lost\"]') !== null";
    browser.wait_for(within, "a lost replica row", lost).await;
    let degraded = browser.screenshot("state-degraded-one-gateway-lost").await;

    second.child.kill().expect("kill the second gateway");
    browser
        .wait_for(
            within,
            "no gateway",
            &format!("{system} === 'down' && {ready} === '0 of 2'"),
        )
        .await;
    let down = browser.screenshot("state-down-no-gateway").await;

    redis.freeze();
    browser
        .wait_for(
            within,
            "the store shown unreachable",
            "document.getElementById('stale') !== null && \
             document.querySelector('[data-service=\"redis\"]').dataset.state === 'down'",
        )
        .await;
    let frozen = browser.screenshot("state-store-unreachable").await;
    redis.thaw();
    browser
        .wait_for(
            within,
            "a Redis incident on the timeline",
            "Array.from(document.querySelectorAll('#incidents li')).some(li => \
             li.textContent.includes('Redis') && !li.classList.contains('open'))",
        )
        .await;
    browser
        .eval("document.getElementById('incidents-title').scrollIntoView() || true")
        .await;
    let timeline = browser.screenshot("state-incident-timeline").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    eprintln!(
        "screenshots: {}, {}, {}, {}, {}",
        healthy.display(),
        degraded.display(),
        down.display(),
        frozen.display(),
        timeline.display()
    );
}
