//! Redis that survives losing a node: a primary, a replica and three sentinels as real
//! processes; the gateway and two workers find the primary through the sentinels and
//! follow a failover with no restart; no accepted job is lost. And managed Redis over
//! TLS.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{
    Dir, SvcProcess, certificates, eventually, not_ready_reason, redis_pid, spawn_redis, try_json,
};

/// One `redis-server` (data node or sentinel) of this test; killed on drop.
struct Node {
    port: u16,
    child: Child,
}

impl Node {
    /// Starts `redis-server` with `args(port)` on a free port (a fresh one when the
    /// port picked was taken meanwhile), once `ready(port, pid)`.
    fn start(args: impl Fn(u16) -> Vec<String>, ready: impl Fn(u16, u32) -> bool) -> Self {
        let (child, port) = spawn_redis(args, ready);
        Node { port, child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn command(port: u16, password: Option<&str>, args: &[&str]) -> redis::RedisResult<Value> {
    let url = match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}/0"),
        None => format!("redis://127.0.0.1:{port}/0"),
    };
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let value: redis::Value = cmd.query_async(&mut conn).await?;
    Ok(to_json(value))
}

fn to_json(value: redis::Value) -> Value {
    match value {
        redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::SimpleString(s) => Value::String(s),
        redis::Value::Int(n) => Value::from(n),
        redis::Value::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        _ => Value::Null,
    }
}

fn data_node(dir: &Dir, name: &str, password: &str) -> Node {
    let node_dir = dir.path(name);
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let args = |port: u16| {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            password,
            "--masterauth",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(node_dir.display().to_string());
        args
    };
    Node::start(args, |port, pid| {
        redis_pid(port, Some(password)) == Some(pid)
    })
}

/// A sentinel with `watch` in its config (what it monitors, if anything); the config
/// is written anew for each port tried.
fn sentinel(dir: &Dir, name: &str, watch: &str) -> Node {
    let config = dir.path(&format!("{name}.conf"));
    let args = |port: u16| {
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n{watch}",
            dir.0.display()
        );
        std::fs::write(&config, text).expect("sentinel config");
        vec![config.display().to_string(), "--sentinel".into()]
    };
    Node::start(args, |port, pid| redis_pid(port, None) == Some(pid))
}

/// The config of a sentinel that watches `primary`, with quick failure detection.
fn watching(primary: u16, password: &str) -> String {
    format!(
        "sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
         sentinel auth-pass mymaster {password}\n\
         sentinel down-after-milliseconds mymaster 1000\n\
         sentinel failover-timeout mymaster 10000\n\
         sentinel parallel-syncs mymaster 1\n"
    )
}

async fn primary_port(sentinel: u16) -> Option<u16> {
    let addr = command(
        sentinel,
        None,
        &["SENTINEL", "get-master-addr-by-name", "mymaster"],
    )
    .await
    .ok()?;
    addr[1].as_str()?.parse().ok()
}

/// One `/api/status` of the steady load: when it was answered, and the request count
/// it reported with Redis connected (`None`: a failure, as a client sees one).
type Sample = (Instant, Option<i64>);

/// The steady load's view of a failover at `killed`.
#[derive(Debug)]
struct Failover {
    /// Failed requests before the kill (there should be none).
    failed_before: usize,
    /// The last count before the kill.
    count_before: i64,
    /// From the first failure after the kill to the first success after that, and the
    /// failed requests in between; `None` while no outage has been seen, or none has
    /// ended.
    outage: Option<(Duration, usize)>,
    /// The first and the last count after the outage.
    counts_after: Option<(i64, i64)>,
}

impl Failover {
    fn of(samples: &[Sample], killed: Instant) -> Self {
        let (before, after): (Vec<&Sample>, Vec<&Sample>) =
            samples.iter().partition(|(at, _)| *at < killed);
        let first_failure = after.iter().position(|(_, n)| n.is_none());
        let recovered = first_failure.and_then(|f| {
            let r = f + after[f..].iter().position(|(_, n)| n.is_some())?;
            Some((f, r))
        });
        let counts: Vec<i64> = recovered
            .map(|(_, r)| after[r..].iter().filter_map(|(_, n)| *n).collect())
            .unwrap_or_default();
        Failover {
            failed_before: before.iter().filter(|(_, n)| n.is_none()).count(),
            count_before: before.iter().rev().find_map(|(_, n)| *n).unwrap_or(0),
            outage: recovered.map(|(f, r)| (after[r].0.duration_since(after[f].0), r - f)),
            counts_after: counts.first().zip(counts.last()).map(|(a, b)| (*a, *b)),
        }
    }
}

#[tokio::test]
async fn a_killed_primary_is_replaced_and_no_accepted_job_is_lost() {
    let dir = Dir::new("sentinel");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let mut primary = data_node(&dir, "primary", &password);
    let replica = data_node(&dir, "replica", &password);
    // Start the replica after the primary answers.
    eventually(Duration::from_secs(10), "the primary to answer", || async {
        command(primary.port, Some(&password), &["PING"]).await.ok()
    })
    .await;
    command(
        replica.port,
        Some(&password),
        &["REPLICAOF", "127.0.0.1", &primary.port.to_string()],
    )
    .await
    .expect("REPLICAOF");
    eventually(Duration::from_secs(15), "the replica in sync", || async {
        let info = command(primary.port, Some(&password), &["INFO", "replication"])
            .await
            .ok()?;
        let info = info.as_str()?.to_owned();
        (info.contains("connected_slaves:1") && info.contains("state=online")).then_some(())
    })
    .await;
    let watch = watching(primary.port, &password);
    let sentinels: Vec<Node> = (0..3)
        .map(|n| sentinel(&dir, &format!("sentinel-{n}"), &watch))
        .collect();
    // Each sentinel must know the two others before a failover can be agreed.
    for s in &sentinels {
        eventually(Duration::from_secs(30), "the sentinels to meet", || async {
            let known = command(s.port, None, &["SENTINEL", "sentinels", "mymaster"])
                .await
                .ok()?;
            (known.as_array()?.len() == 2).then_some(())
        })
        .await;
    }
    let list: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let list = list.join(",");
    let env = [
        ("REDIS_SENTINELS", list.as_str()),
        ("REDIS_MASTER_NAME", "mymaster"),
        ("REDIS_PASSWORD", password.as_str()),
        ("DRAIN_DELAY", "0s"),
        ("WORKER_INTERVAL", "24h"),
        ("VISIBILITY_TIMEOUT", "3s"),
        ("API_GATEWAY_URL", "http://127.0.0.1:9"),
        ("DASHBOARD_URL", "http://127.0.0.1:9"),
    ];
    let serve = |role: &str| SvcProcess::spawn(&[role, "--host", "127.0.0.1", "--port", "0"], &env);
    let mut gateway = serve("gateway");
    let mut workers = [serve("worker"), serve("worker")];
    gateway.wait_ready().await;
    for w in &mut workers {
        w.wait_ready().await;
    }

    // Steady load on /api/status: every answer, as a client sees it.
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let status_url = gateway.url("/api/status");
    let load = tokio::spawn({
        let (client, stop, samples) = (client.clone(), stop.clone(), samples.clone());
        async move {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(180) {
                let count = match client.get(&status_url).send().await {
                    Ok(res) => res
                        .json::<Value>()
                        .await
                        .ok()
                        .filter(|b| b["redis_connected"] == true)
                        .and_then(|b| b["total_requests"].as_i64()),
                    Err(_) => None,
                };
                samples
                    .lock()
                    .expect("samples")
                    .push((Instant::now(), count));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let last_count = || samples.lock().expect("samples").last().and_then(|s| s.1);

    let jobs_url = gateway.url("/api/jobs");
    let submit = |client: reqwest::Client, url: String, job: &'static str| async move {
        let res = client.post(&url).body(job).send().await.ok()?;
        if res.status() != 202 {
            return None;
        }
        res.json::<Value>().await.ok()?["id"]
            .as_str()
            .map(str::to_owned)
    };
    // Jobs that hold their slot for 5 s, every one running when the primary dies:
    // each must record its end on the new primary, or be run again there.
    let held_job = r#"{"type":"data_processing","size":100,"hold_ms":5000}"#;
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(
            submit(client.clone(), jobs_url.clone(), held_job)
                .await
                .expect("a job accepted before the failure"),
        );
    }
    eventually(
        Duration::from_secs(10),
        "every held job running",
        || async {
            for id in &held {
                let job = try_json(&client, &gateway.url(&format!("/api/jobs/{id}"))).await?;
                (job["state"] == "running").then_some(())?;
            }
            Some(())
        },
    )
    .await;
    // Enough counted that a counter started again from 0 could not pass for this one.
    eventually(Duration::from_secs(20), "100 requests counted", || async {
        last_count().filter(|n| *n > 100)
    })
    .await;

    let old_primary = primary.port;
    let killed = Instant::now();
    let killed_at = svc::clock::unix_now();
    primary.kill();
    // 100 quick jobs during and after the failure: refused or accepted, never lost.
    let quick_job = r#"{"type":"data_processing","size":100}"#;
    let mut accepted = held.clone();
    let mut refused = 0;
    for _ in 0..100 {
        match submit(client.clone(), jobs_url.clone(), quick_job).await {
            Some(id) => accepted.push(id),
            None => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A replica is promoted and every role is ready again, with no restart.
    let new_primary = eventually(Duration::from_secs(30), "a new primary", || async {
        primary_port(sentinels[0].port)
            .await
            .filter(|p| *p != old_primary)
    })
    .await;
    assert_eq!(new_primary, replica.port);
    for svc in std::iter::once(&mut gateway).chain(workers.iter_mut()) {
        svc.wait_ready().await;
    }
    let ready_after = killed.elapsed();

    // Every accepted job reaches done; the held ones after the kill.
    let jobs: Vec<Value> = eventually(
        Duration::from_secs(90),
        "every accepted job done",
        || async {
            let mut jobs = Vec::new();
            for id in &accepted {
                let job = try_json(&client, &gateway.url(&format!("/api/jobs/{id}"))).await?;
                (job["state"] == "done").then_some(())?;
                jobs.push(job);
            }
            Some(jobs)
        },
    )
    .await;
    for job in &jobs[..held.len()] {
        let finished = job["finished_at"].as_f64().unwrap_or_default();
        assert!(finished > killed_at, "held across the kill: {job}");
    }
    let rerun = jobs[..held.len()]
        .iter()
        .filter(|j| j["attempts"].as_u64() > Some(1))
        .count();

    // The counter goes on growing on the new primary, from about where it was.
    let first_after = eventually(
        Duration::from_secs(10),
        "the counter to grow after the failover",
        || async {
            let failover = Failover::of(&samples.lock().expect("samples"), killed);
            let (first, last) = failover.counts_after?;
            (last > first).then_some(first)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    let failover = Failover::of(&samples.lock().expect("samples"), killed);
    println!(
        "failover: roles ready {ready_after:?} after the kill; /api/status {failover:?}; \
         jobs accepted {}, refused {refused}, all accepted done, {rerun} of {} held jobs \
         run again",
        accepted.len(),
        held.len()
    );
    assert_eq!(failover.failed_before, 0, "{failover:?}");
    // An outage was seen, and it was a failover's: longer than the sentinels' 1 s to
    // call the primary down, less a request's slack; shorter than the 30 s allowed for
    // a new primary.
    let (outage, _) = failover.outage.expect("an outage seen by the load");
    assert!(
        (Duration::from_millis(500)..Duration::from_secs(30)).contains(&outage),
        "{failover:?}"
    );
    // Replication is asynchronous: the last increments before the kill may be lost
    // (a second of this load is 50), never the count.
    assert!(first_after >= failover.count_before - 50, "{failover:?}");
}

/// A Redis that speaks TLS only. It answers on a Unix socket too, which it opens only
/// once its TLS port is bound: the sign that this server, not another, holds the port.
fn tls_server(dir: &Dir, password: &str, cert: &Path, key: &Path, ca: &Path) -> Node {
    let socket = dir.path("redis.sock");
    let args = |port: u16| {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            &socket.display().to_string(),
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-ca-cert-file",
            &ca.display().to_string(),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
            "--save",
            "",
            "--dir",
            &dir.0.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    Node::start(args, |_, _| UnixStream::connect(&socket).is_ok())
}

#[tokio::test]
async fn a_managed_redis_over_tls_is_used_with_its_ca_and_refused_without() {
    let dir = Dir::new("tls");
    let (ca, cert, key) = certificates(&dir);
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let server = tls_server(&dir, &password, &cert, &key, &ca);
    let port = server.port;
    let url = format!("rediss://:{password}@localhost:{port}/0");
    let ca_file = ca.display().to_string();
    let mut trusted = SvcProcess::spawn(
        &["gateway", "--host", "127.0.0.1", "--port", "0"],
        &[
            ("REDIS_URL", &url),
            ("REDIS_CA_FILE", &ca_file),
            ("DRAIN_DELAY", "0s"),
        ],
    );
    trusted.wait_ready().await;
    let status: Value = crate::helpers::client()
        .get(trusted.url("/api/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["redis_connected"], true, "{status}");
    assert_eq!(status["total_requests"], 1, "{status}");

    // The same server, without its CA: the system's roots do not vouch for it.
    let untrusted = SvcProcess::spawn(
        &["gateway", "--host", "127.0.0.1", "--port", "0"],
        &[("REDIS_URL", &url), ("DRAIN_DELAY", "0s")],
    );
    let client = crate::helpers::client();
    let reason = not_ready_reason(&client, &untrusted.url("/health/ready")).await;
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    assert!(!untrusted.output().contains(&password));
}

#[tokio::test]
async fn a_rotated_ca_file_takes_effect_at_the_next_reconnect() {
    let old = Dir::new("tls-old-ca");
    let (old_ca, old_cert, old_key) = certificates(&old);
    let new = Dir::new("tls-new-ca");
    let (new_ca, new_cert, new_key) = certificates(&new);
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let server = tls_server(&old, &password, &old_cert, &old_key, &old_ca);
    // The CA file svc trusts, as a mounted Secret: replaced whole on rotation.
    let trusted = old.path("trusted-ca.pem");
    std::fs::copy(&old_ca, &trusted).expect("copy");
    let url = format!("rediss://:{password}@localhost:{}/0", server.port);
    let trusted_file = trusted.display().to_string();
    let mut gateway = SvcProcess::spawn(
        &["gateway", "--host", "127.0.0.1", "--port", "0"],
        &[
            ("REDIS_URL", &url),
            ("REDIS_CA_FILE", &trusted_file),
            ("DRAIN_DELAY", "0s"),
        ],
    );
    gateway.wait_ready().await;
    let client = crate::helpers::client();
    let status = || async {
        try_json(&client, &gateway.url("/api/status"))
            .await
            .filter(|s| s["redis_connected"] == true)
            .and_then(|s| s["total_requests"].as_i64())
    };
    let before = eventually(Duration::from_secs(10), "a count", status).await;

    // The server moves to a certificate of a new CA and the CA file follows, as
    // cert-manager renews both; then every client connection is cut.
    let socket = old.path("redis.sock");
    let admin = redis::Client::open(format!("redis+unix://{}?pass={password}", socket.display()))
        .expect("client");
    let mut admin = admin
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(new_cert.display().to_string())
        .arg("tls-key-file")
        .arg(new_key.display().to_string())
        .arg("tls-ca-cert-file")
        .arg(new_ca.display().to_string())
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET");
    let staged = old.path(".trusted-ca.pem.new");
    std::fs::copy(&new_ca, &staged).expect("copy");
    std::fs::rename(&staged, &trusted).expect("rename");
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");

    // The same process counts on, through connections made with the new CA.
    let after = eventually(Duration::from_secs(20), "counting again", || async {
        status().await.filter(|n| *n > before)
    })
    .await;
    assert!(after > before);
    assert_eq!(
        gateway.child.try_wait().expect("try_wait"),
        None,
        "no restart"
    );
}

#[tokio::test]
async fn a_job_no_replica_acknowledged_is_answered_503() {
    let redis = crate::helpers::RedisServer::start();
    let client = crate::helpers::client();
    let post = |svc: &SvcProcess| {
        client
            .post(svc.url("/api/jobs"))
            .body(r#"{"type":"cleanup"}"#)
            .send()
    };
    // `auto` on a lone server: nothing to wait for.
    let lone = crate::helpers::gateway_process(&redis, &[]).await;
    assert_eq!(post(&lone).await.expect("post").status(), 202);
    // One replica required and none there: the answer says so.
    let strict = crate::helpers::gateway_process(
        &redis,
        &[
            ("REDIS_WAIT_REPLICAS", "1"),
            ("REDIS_WAIT_TIMEOUT", "100ms"),
        ],
    )
    .await;
    let res = post(&strict).await.expect("post");
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.expect("json");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("0 of 1 replicas"), "{body}");
}

#[tokio::test]
async fn readiness_says_so_while_the_sentinels_know_no_primary() {
    let dir = Dir::new("lonely-sentinel");
    let lonely = sentinel(&dir, "sentinel", "");
    let sentinels = format!("127.0.0.1:{}", lonely.port);
    let gateway = SvcProcess::spawn(
        &["gateway", "--host", "127.0.0.1", "--port", "0"],
        &[("REDIS_SENTINELS", &sentinels), ("DRAIN_DELAY", "0s")],
    );
    let client = crate::helpers::client();
    let reason = not_ready_reason(&client, &gateway.url("/health/ready")).await;
    assert!(reason.contains("no primary known"), "{reason}");
    assert!(reason.contains("mymaster"), "{reason}");
}
