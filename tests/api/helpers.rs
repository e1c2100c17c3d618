//! Test fixtures: a real `redis-server` per test, the gateway in-process on port 0, and
//! the real `svc` binary as a child process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use svc::config::{RedisSettings, Settings, StoreSettings};
use svc::http::ServeError;
use svc::roles::{dashboard, gateway};
use svc::store::{self, SharedStore};
use tokio::sync::oneshot;

/// Path of a tool the tests need, or a panic that says how to install it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run tests/run.sh (it installs what the tests need) \
             or `apt-get install -y {package}`"
        )
    })
}

/// A TCP port on loopback that was free a moment ago (bound, then released): for
/// servers that cannot bind port 0 and report it (redis-server, "a closed port").
/// `svc` itself binds port 0 and reports its address: see [`SvcProcess::spawn`].
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// Logs go to the test output only when `TEST_LOG` is set.
pub fn init_test_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_test_writer()
                .try_init();
        }
    });
}

/// Polls `check` until it returns `Some` or `within` has passed.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A `redis-server` of this test's own, with a password, on a free port; killed on drop.
/// Its directory and password are unique to it, so two tests can never share one
/// server unknowingly: a server on a recycled port would refuse the password.
pub struct RedisServer {
    pub port: u16,
    pub password: String,
    child: Option<Child>,
    dir: PathBuf,
    /// Append-only file with fsync on every write: a restart keeps every write.
    persistent: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server that keeps its data across [`RedisServer::stop`] and
    /// [`RedisServer::resume`].
    pub fn start_persistent() -> Self {
        Self::start_with(free_port(), true)
    }

    /// Starts a server on `port`.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, false)
    }

    fn start_with(port: u16, persistent: bool) -> Self {
        static SERVERS: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let dir = std::env::temp_dir().join(format!("svc-test-redis-{unique}"));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = RedisServer {
            port,
            password: format!("pw-{unique}"),
            child: None,
            dir,
            persistent,
        };
        // The port was free a moment ago; if another process took it since, this
        // server exits at once and another port is tried.
        for _ in 0..5 {
            if server.try_resume() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    /// (Re)starts the server process on the same port.
    pub fn resume(&mut self) {
        assert!(
            self.try_resume(),
            "redis-server did not come back on {}",
            self.port
        );
    }

    /// Freezes the server (SIGSTOP: it holds its connections and answers nothing, as a
    /// hung server does), and returns once a PING is seen to go unanswered.
    pub fn freeze(&self) {
        self.signal("STOP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server still answers after SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets a frozen server go on, and returns once it answers.
    pub fn thaw(&self) {
        self.signal("CONT");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server does not answer after SIGCONT"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Starts the server process; false when it exited (its port is taken).
    fn try_resume(&mut self) -> bool {
        let binary = require_tool("redis-server", "redis-server");
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--requirepass", &self.password, "--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .args(["--enable-debug-command", "local", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Kills the server (as an outage would) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let auth = format!("AUTH {}\r\nPING\r\n", self.password);
        let mut buf = [0u8; 64];
        s.write_all(auth.as_bytes()).is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| String::from_utf8_lossy(&buf[..n]).contains("OK"))
    }

    /// Connection settings, password included.
    pub fn settings(&self) -> RedisSettings {
        RedisSettings {
            password: Some(self.password.parse().expect("infallible")),
            ..RedisSettings::new("127.0.0.1", self.port)
        }
    }

    /// `redis://:password@127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port)
    }

    /// A direct connection, for tests to look at or poke the data.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
            client: crate::helpers::client_builder()
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

/// The real `svc` binary running as a child process, its output captured.
pub struct SvcProcess {
    pub child: Child,
    /// The address of its first server (the gateway's, for `svc all`).
    pub address: SocketAddr,
    /// The address of each server, by service name.
    pub addresses: HashMap<String, SocketAddr>,
    output: Arc<Mutex<String>>,
}

/// The service and address of a "listening" log line, text or JSON.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    if !line.contains("listening") {
        return None;
    }
    let field = |name: &str| -> Option<String> {
        let text = format!("{name}=");
        let json = format!("\"{name}\":\"");
        let (start, end) = if let Some(i) = line.find(&json) {
            let rest = &line[i + json.len()..];
            (i + json.len(), i + json.len() + rest.find('"')?)
        } else {
            let i = line.find(&text)?;
            let rest = &line[i + text.len()..];
            (
                i + text.len(),
                i + text.len() + rest.find(' ').unwrap_or(rest.len()),
            )
        };
        Some(line[start..end].to_owned())
    };
    Some((field("service")?, field("addr")?.parse().ok()?))
}

impl SvcProcess {
    /// Runs `svc <args>` with `env` (and nothing inherited that could change it), and
    /// waits until it has said where it listens: pass `--port 0` (or the ports of
    /// `svc all` as 0) and the OS picks free ports, which no other test can hold.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let servers = if args.first() == Some(&"all") { 3 } else { 1 };
        let mut svc = Self::spawn_unwatched(args, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<(String, SocketAddr)> =
                svc.output().lines().filter_map(listening).collect();
            if found.len() >= servers {
                svc.address = found[0].1;
                svc.addresses = found.into_iter().collect();
                if let Some(gateway) = svc.addresses.get("api-gateway") {
                    svc.address = *gateway;
                }
                return svc;
            }
            if let Some(status) = svc.child.try_wait().expect("try_wait") {
                panic!("svc exited ({status}) before listening:\n{}", svc.output());
            }
            assert!(
                Instant::now() < deadline,
                "svc did not listen within 20 s:\n{}",
                svc.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address of the server of `service` (`api-gateway`, `worker-service`,
    /// `dashboard`).
    pub fn address_of(&self, service: &str) -> SocketAddr {
        *self
            .addresses
            .get(service)
            .unwrap_or_else(|| panic!("no {service} server in {:?}", self.addresses))
    }

    /// Runs `svc <args>` without waiting for anything.
    fn spawn_unwatched(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = svc_command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn svc");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().expect("output lock").push_str(&(line + "\n"));
                }
            });
        }
        SvcProcess {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            addresses: HashMap::new(),
            output,
        }
    }

    /// `http://address`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// Sends `signal` (e.g. "TERM") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for exit within `within`; returns the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "svc did not exit within {within:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SvcProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `svc <args>` with a clean environment plus `env`.
pub fn svc_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_svc"));
    cmd.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A loopback address with a port that was free a moment ago (for "nothing listens
/// here").
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A `svc <role>` process on loopback backed by `redis`, once ready. `env` comes
/// after the defaults (no drain delay; probe targets that refuse at once) and wins.
pub async fn role_process(role: &str, redis: &RedisServer, env: &[(&str, &str)]) -> SvcProcess {
    let url = redis.url();
    let mut all_env = vec![
        ("REDIS_URL", url.as_str()),
        ("DRAIN_DELAY", "0s"),
        ("API_GATEWAY_URL", "http://127.0.0.1:9"),
        ("DASHBOARD_URL", "http://127.0.0.1:9"),
    ];
    all_env.extend_from_slice(env);
    let svc = SvcProcess::spawn(&[role, "--host", "127.0.0.1", "--port", "0"], &all_env);
    let mut svc = svc;
    svc.wait_ready().await;
    svc
}

/// A `svc gateway` process backed by `redis`, once ready.
pub async fn gateway_process(redis: &RedisServer, env: &[(&str, &str)]) -> SvcProcess {
    role_process("gateway", redis, env).await
}

/// A `svc worker` process backed by `redis`, once ready.
pub async fn worker_process(redis: &RedisServer, env: &[(&str, &str)]) -> SvcProcess {
    role_process("worker", redis, env).await
}

impl SvcProcess {
    /// Waits until `/health/ready` answers 200; fails at once if the process died.
    pub async fn wait_ready(&mut self) {
        let client = crate::helpers::client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("svc exited ({status}):\n{}", self.output());
            }
            let ready = client.get(self.url("/health/ready")).send().await;
            if ready.is_ok_and(|res| res.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "svc not ready within 20 s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// GET `path` as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        crate::helpers::client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
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

/// GET `url` and parse JSON; `None` on any failure (for polling with [`eventually`]).
pub async fn try_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// Polls `url` (a `/health/ready`) until it names a reason other than `starting`.
pub async fn not_ready_reason(client: &reqwest::Client, url: &str) -> String {
    eventually(Duration::from_secs(10), "a not-ready reason", || async {
        let body = try_json(client, url).await?;
        let reason = body["reason"].as_str()?.to_owned();
        (reason != "starting").then_some(reason)
    })
    .await
}

/// The arguments of `svc all` on ports the OS picks, then `extra`.
pub fn all_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "all",
        "--gateway-port",
        "0",
        "--worker-port",
        "0",
        "--dashboard-port",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

/// An in-process gateway on `redis`, once ready.
pub async fn ready_gateway(redis: &RedisServer) -> TestApp {
    let app = TestApp::gateway(test_settings(StoreSettings::Redis(redis.settings()))).await;
    app.wait_ready(200, Duration::from_secs(10)).await;
    app
}

/// An HTTP client for tests (the process's TLS crypto installed first, as svc does).
pub fn client() -> reqwest::Client {
    client_builder().build().expect("HTTP client")
}

/// A builder of such clients.
pub fn client_builder() -> reqwest::ClientBuilder {
    svc::tls::http_client()
}

/// A test's own directory, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "svc-test-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create dir");
        Dir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, made with openssl.
pub fn certificates(dir: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require_tool("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&openssl)
            .args(args)
            .current_dir(&dir.0)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=svc test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (
        dir.path("ca.pem"),
        dir.path("server.pem"),
        dir.path("server.key"),
    )
}

/// The body of a GET of `url` as text; panics when there is no answer.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}
