//! Roles running inside the test process, on 127.0.0.1:0, stopped on drop.

use std::net::TcpListener;
use std::time::Duration;

use svc::config::{Settings, StoreSettings};
use svc::http::ServeError;
use svc::roles::{dashboard, gateway};
use svc::store::{self, SharedStore};
use tokio::sync::oneshot;

use super::{RedisServer, client_builder, eventually, init_test_logs};

/// Settings for a test gateway on `store`: quick store checks, no drain delay.
pub fn test_settings(store: StoreSettings) -> Settings {
    Settings {
        store,
        store_check_period: Duration::from_millis(200),
        ..Settings::for_memory_store()
    }
}

/// Resolves when a [`TestApp`] is dropped.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A role running in this test process; stopped on drop.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// Starts the gateway on 127.0.0.1:0 with `settings`.
    pub async fn gateway(settings: Settings) -> Self {
        let store: SharedStore =
            store::open(&settings.store, &settings.key_prefix).expect("open store");
        Self::start(move |listener, shutdown| async move {
            gateway::run(
                &settings,
                &gateway::Config::default(),
                store,
                listener,
                shutdown,
            )
            .await
        })
    }

    /// Starts the dashboard on 127.0.0.1:0 over `store`, which the test may fill.
    pub async fn dashboard(
        settings: Settings,
        config: dashboard::Config,
        store: SharedStore,
    ) -> Self {
        Self::start(move |listener, shutdown| async move {
            dashboard::run(&settings, &config, store, listener, shutdown).await
        })
    }

    /// Runs `role` on a listener of its own until the app is dropped.
    fn start<R, F>(role: R) -> Self
    where
        R: FnOnce(TcpListener, Shutdown) -> F + Send + 'static,
        F: std::future::Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        init_test_logs();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = Box::pin(async move {
                let _ = stopped.await;
            });
            if let Err(e) = role(listener, shutdown).await {
                panic!("role failed: {e}");
            }
        });
        TestApp {
            address,
            client: client_builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            stop: Some(stop),
        }
    }

    /// GET `path`; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    /// GET `path` and parse JSON; returns status and value.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, json)
    }

    /// Waits until `/health/ready` answers `status` (200 or 503).
    pub async fn wait_ready(&self, status: u16, within: Duration) {
        eventually(
            within,
            &format!("/health/ready to answer {status}"),
            || async { (self.get("/health/ready").await.0 == status).then_some(()) },
        )
        .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestApp {
    /// POST `body` (raw JSON text) to `path`; returns status and parsed JSON.
    pub async fn post(&self, path: &str, body: impl Into<String>) -> (u16, serde_json::Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.address))
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, json)
    }

    /// Submits a job; returns its id.
    pub async fn submit(&self, job: &str) -> String {
        let (status, body) = self.post("/api/jobs", job).await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Waits until job `id` is in `state`; returns its record.
    pub async fn job_in_state(&self, id: &str, state: &str, within: Duration) -> serde_json::Value {
        eventually(within, &format!("job {id} to be {state}"), || async {
            let (status, job) = self.get_json(&format!("/api/jobs/{id}")).await;
            (status == 200 && job["state"] == state).then_some(job)
        })
        .await
    }
}

/// An in-process gateway on `redis`, once ready.
pub async fn ready_gateway(redis: &RedisServer) -> TestApp {
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(10)).await;
    app
}
