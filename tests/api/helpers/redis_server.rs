//! A real `redis-server` of each test's own, on a free port, with a password.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use svc::config::RedisSettings;

use super::{free_port, require_tool};

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

    /// (Re)starts the server process on the same port. The port was free while the
    /// server was down, so another process may hold it now (a client's ephemeral port,
    /// another test's server): then it tries again until the port is free, for up to
    /// 20 s.
    pub fn resume(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.try_resume() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come back on {} within 20 s: the port stays taken",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

    /// The keys matching `pattern` (`KEYS`: tests only, on a small database).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut self.client().await)
            .await
            .expect("KEYS")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a `redis-server` a test configures itself (a replica, a sentinel, a TLS-only
/// server) with the arguments `args(port)`, on a port that was free a moment ago. A
/// server whose port was taken meanwhile exits at once; then a fresh port is tried, up
/// to 5. `ready(port, pid)` says when the server answers as itself, not as whoever
/// else holds the port. Returns the child and its port.
pub fn spawn_redis(
    args: impl Fn(u16) -> Vec<String>,
    ready: impl Fn(u16, u32) -> bool,
) -> (Child, u16) {
    let binary = require_tool("redis-server", "redis-server");
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(&binary)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ready(port, child.id()) {
                return (child, port);
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not start on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("redis-server did not start on any of 5 ports");
}

/// The `process_id` of the `redis-server` (data node or sentinel) answering on `port`,
/// after `AUTH password` when one is given: tells a test's own server from another.
pub fn redis_pid(port: u16, password: Option<&str>) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let auth = password
        .map(|p| format!("AUTH {p}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(format!("{auth}INFO server\r\n").as_bytes())
        .ok()?;
    let (mut text, mut buf) = (String::new(), [0u8; 4096]);
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        let pid = text
            .lines()
            .find_map(|l| l.strip_prefix("process_id:")?.trim().parse().ok());
        if pid.is_some() {
            return pid;
        }
    }
}
