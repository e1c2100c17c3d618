//! Test fixtures: a real `redis-server` per test, the roles in-process on port 0, the
//! real `svc` binary as a child process, and the small tools every test file uses.

mod app;
mod http;
mod process;
mod redis_server;
mod tls;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

pub use app::{TestApp, ready_gateway, test_settings};
pub use http::{client, client_builder, get_text, not_ready_reason, try_json};
pub use process::{
    Announced, SvcProcess, all_args, gateway_process, role_process, svc_command, worker_process,
};
pub use redis_server::{RedisServer, redis_pid, spawn_redis};
pub use tls::{TlsServer, certificates};

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
/// "a closed port", and for servers that cannot bind port 0 and report it
/// (redis-server: [`spawn_redis`] and [`RedisServer`] try a fresh port when it was
/// taken meanwhile). `svc` itself binds port 0 and reports its address (see
/// [`SvcProcess::spawn`]), and so do the servers of [`Announced`].
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

/// A loopback address with a port that was free a moment ago (for "nothing listens
/// here").
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
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
