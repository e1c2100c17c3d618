//! The real `svc` binary as a child process, its output captured, and other servers
//! that pick their own port and say which.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{RedisServer, client};

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
        Self::try_spawn(args, env).unwrap_or_else(|output| panic!("{output}"))
    }

    /// Runs `svc <args>` on a port an earlier process had, for a restart: while
    /// another process holds that port (it was free while svc was down), tries again
    /// until it listens, for up to 20 s.
    pub fn respawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Self::try_spawn(args, env) {
                Ok(svc) => return svc,
                Err(output) if output.contains("cannot listen on") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(output) => panic!("{output}"),
            }
        }
    }

    /// [`SvcProcess::spawn`], with an exit before listening returned as what it
    /// printed rather than a panic.
    fn try_spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Self, String> {
        let servers = if args.first() == Some(&"all") { 3 } else { 1 };
        let mut svc = Self::spawn_unwatched(args, env);
        let found = announced(&mut svc.child, &svc.output, "svc", |output| {
            let found: Vec<(String, SocketAddr)> = output.lines().filter_map(listening).collect();
            (found.len() >= servers).then_some(found)
        })?;
        svc.address = found[0].1;
        svc.addresses = found.into_iter().collect();
        if let Some(gateway) = svc.addresses.get("api-gateway") {
            svc.address = *gateway;
        }
        Ok(svc)
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
        let output = capture(&mut child);
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
        let client = client();
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
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
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

/// Collects everything `child` prints (stdout and stderr, line by line) in the
/// background, so that its pipes never fill up.
fn capture(child: &mut Child) -> Arc<Mutex<String>> {
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
    output
}

/// Waits up to 20 s until `find` finds what it looks for in everything `child` printed
/// so far; an exit before that is an `Err` with the output.
fn announced<T>(
    child: &mut Child,
    output: &Mutex<String>,
    what: &str,
    find: impl Fn(&str) -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = output.lock().expect("output lock").clone();
        if let Some(found) = find(&text) {
            return Ok(found);
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(format!(
                "{what} exited ({status}) before listening:\n{text}"
            ));
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen within 20 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server started on port 0 that picks a free port itself and prints which
/// (chromedriver, Prometheus, `openssl s_server`): no other process can take the port
/// between picking it and binding it. Killed on drop.
pub struct Announced {
    child: Child,
    pub port: u16,
}

impl Announced {
    /// Runs `command` (its output captured) and waits up to 20 s for a line from which
    /// `port` reads the port it listens on.
    pub fn spawn(mut command: Command, port: impl Fn(&str) -> Option<u16>) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let output = capture(&mut child);
        let what = format!("{command:?}");
        let port = announced(&mut child, &output, &what, |text| {
            text.lines().find_map(&port)
        })
        .unwrap_or_else(|output| panic!("{output}"));
        Announced { child, port }
    }

    /// Kills the server and waits for it to be gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.stop();
    }
}
