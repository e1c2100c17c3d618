//! Each channel kind when its receiver fails, table-driven over every kind: one
//! retry after a 500 (and for email after an SMTP 451), with the same payload, and
//! after a worker is SIGKILLed in the middle of a send, the event is redelivered by
//! another worker with the same dedup identity, and counted as sent once.
//!
//! What "none duplicated" can mean: a receiver that got a request whose worker died
//! before the answer may get it again, because nothing can tell a request that
//! arrived from one that did not (at-least-once). What svc guarantees is that every
//! attempt of one notification carries the same identity, `Idempotency-Key` and the
//! provider's own key (PagerDuty's `dedup_key`, Opsgenie's `alias`), so the provider
//! drops the repeat; and that it is counted and listed as sent once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::channels::{Request, serve};
use crate::email::SmtpServer;
use crate::helpers::{
    Dir, RedisServer, SvcProcess, certificates, client, eventually, get_text, role_process,
    try_json,
};
use crate::targets::Target;

/// Every HTTP kind, with the credential it needs.
const KINDS: [(&str, &str); 7] = [
    ("webhook", ""),
    ("slack", ""),
    ("discord", ""),
    ("teams", ""),
    ("pagerduty", ", routing_key: rk-1"),
    ("opsgenie", ", api_key: ak-1"),
    ("ntfy", ""),
];

/// What the receiver does with the first request to each path; the rest get 202.
#[derive(Clone, Copy)]
enum First {
    /// Answers 500.
    Fails,
    /// Never answers (until the sender's connection closes).
    Hangs,
}

/// A receiver keeping each request under its path's first segment (the kind).
struct Receiver {
    base: String,
    seen: Arc<Mutex<BTreeMap<String, Vec<Request>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(first: First) -> Self {
        let seen: Arc<Mutex<BTreeMap<String, Vec<Request>>>> = Arc::default();
        let log = seen.clone();
        let (base, task) = serve(move |request: Request, mut conn: TcpStream| {
            let log = log.clone();
            async move {
                let kind = request
                    .path
                    .trim_start_matches('/')
                    .split(['/', '?'])
                    .next();
                let kind = kind.unwrap_or_default().to_owned();
                let nth = {
                    let mut log = log.lock().expect("log");
                    let list = log.entry(kind).or_default();
                    list.push(request);
                    list.len()
                };
                let reply: &[u8] = match (nth, first) {
                    (1, First::Hangs) => {
                        // Held until the sender goes away.
                        let mut rest = [0u8; 64];
                        while matches!(conn.read(&mut rest).await, Ok(n) if n > 0) {}
                        return;
                    }
                    (1, First::Fails) => {
                        b"HTTP/1.1 500 X\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                    }
                    _ => b"HTTP/1.1 202 Accepted\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                };
                let _ = conn.write_all(reply).await;
            }
        })
        .await;
        Receiver { base, seen, task }
    }

    /// The requests for `kind` so far.
    fn of(&self, kind: &str) -> Vec<Request> {
        self.seen
            .lock()
            .expect("log")
            .get(kind)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What identifies one notification to its receiver: the idempotency key, and the
/// provider's own key where it has one.
fn identity(request: &Request) -> String {
    let body = request.json();
    format!(
        "{:?} {} {}",
        request.header("idempotency-key"),
        body["dedup_key"],
        body["alias"]
    )
}

/// `svc_notifications_total` for `channel` and `result`, summed over `workers`.
async fn counted(workers: &[SvcProcess], channel: &str, result: &str) -> u64 {
    let (channel, result) = (
        format!("channel=\"{channel}\""),
        format!("result=\"{result}\""),
    );
    let mut sum = 0;
    for worker in workers {
        let text = get_text(&worker.url("/metrics")).await;
        sum += text
            .lines()
            .filter(|l| l.starts_with("svc_notifications_total{"))
            .filter(|l| l.contains(&channel) && l.contains(&result))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    sum
}

/// A target down from its first verdict, a channel of every kind to `receiver`
/// (and `extra` entries), three workers and a dashboard.
struct Cluster {
    redis: RedisServer,
    _target: Target,
    dir: Dir,
    workers: Vec<SvcProcess>,
    dashboard: SvcProcess,
}

impl Cluster {
    async fn start(dir: Dir, receiver: &Receiver, extra: &str) -> Self {
        let redis = RedisServer::start();
        let target = Target::start().await;
        target.set(500);
        let mut text = String::from("notify:\n");
        for (kind, key) in KINDS {
            text.push_str(&format!(
                "  - {{name: {kind}, kind: {kind}, url: '{}/{kind}'{key}}}\n",
                receiver.base
            ));
        }
        text.push_str(extra);
        text.push_str(&format!(
            "targets:\n  - {{name: web, url: '{}', interval: 1s, failure_threshold: 1}}\n",
            target.url
        ));
        let file = dir.path("targets.yaml");
        std::fs::write(&file, text).expect("write");
        let file = file.display().to_string();
        let env = [
            ("TARGETS_FILE", file.as_str()),
            ("WORKER_INTERVAL", "1s"),
            ("REFRESH_PERIOD", "1s"),
            ("VISIBILITY_TIMEOUT", "3s"),
        ];
        let mut workers = Vec::new();
        for _ in 0..3 {
            workers.push(role_process("worker", &redis, &env).await);
        }
        let dashboard = role_process("dashboard", &redis, &env).await;
        Cluster {
            redis,
            _target: target,
            dir,
            workers,
            dashboard,
        }
    }

    /// The deliveries of `channel` listed by the dashboard, once it lists one.
    async fn deliveries(&self, channel: &str) -> Vec<Value> {
        let url = self.dashboard.url("/api/notifications");
        eventually(Duration::from_secs(30), channel, || async {
            let answer = try_json(&client(), &url).await?;
            let list: Vec<Value> = answer["deliveries"]
                .as_array()?
                .iter()
                .filter(|d| d["channel"] == channel)
                .cloned()
                .collect();
            (!list.is_empty()).then_some(list)
        })
        .await
    }
}

#[tokio::test]
async fn each_kind_is_retried_once_after_a_500_with_the_same_payload() {
    let receiver = Receiver::start(First::Fails).await;
    let dir = Dir::new("delivery-retry");
    let (ca, cert, key) = certificates(&dir);
    let smtp = SmtpServer::start(&dir, "smtp", "starttls", (&cert, &key), true);
    let email = format!(
        "  - {{name: email, kind: email, url: 'smtp://svc:{}@127.0.0.1:{}', \
         from: svc@example.com, to: [oncall@example.com], ca_file: '{}'}}\n",
        crate::email::PASSWORD,
        smtp.port,
        ca.display()
    );
    let cluster = Cluster::start(dir, &receiver, &email).await;

    for (kind, _) in KINDS {
        let deliveries = cluster.deliveries(kind).await;
        assert_eq!(deliveries.len(), 1, "{kind}: {deliveries:?}");
        assert_eq!(deliveries[0]["result"], "sent", "{kind}: {deliveries:?}");
        // The delivery is finished: no attempt is left to come.
        let got = receiver.of(kind);
        assert_eq!(
            got.len(),
            2,
            "{kind}: the failed one and one retry: {got:?}"
        );
        assert_eq!(got[0].body, got[1].body, "{kind}: the same payload");
        assert_eq!(identity(&got[0]), identity(&got[1]), "{kind}");
        assert_eq!(counted(&cluster.workers, kind, "failed").await, 1, "{kind}");
        assert_eq!(counted(&cluster.workers, kind, "sent").await, 1, "{kind}");
    }

    // SMTP: 451 to the first DATA, then accepted; one message kept.
    let deliveries = cluster.deliveries("email").await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["result"], "sent", "{deliveries:?}");
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(counted(&cluster.workers, "email", "failed").await, 1);
    assert_eq!(counted(&cluster.workers, "email", "sent").await, 1);
}

#[tokio::test]
async fn a_send_cut_by_sigkill_is_redelivered_with_the_same_identity_and_sent_once() {
    let receiver = Receiver::start(First::Hangs).await;
    let mut cluster = Cluster::start(Dir::new("delivery-kill"), &receiver, "").await;

    // Every kind's first request is held open by the receiver; the workers that
    // sent them (each request names its sender, `<host>-<pid>`) are killed.
    let senders = eventually(
        Duration::from_secs(30),
        "a request of every kind",
        || async {
            let mut senders = Vec::new();
            for (kind, _) in KINDS {
                let sender = receiver.of(kind).first()?.header("svc-sender")?;
                senders.push(sender.rsplit('-').next()?.parse::<u32>().ok()?);
            }
            Some(senders)
        },
    )
    .await;
    let before = cluster.workers.len();
    cluster.workers.retain(|worker| {
        let sending = senders.contains(&worker.child.id());
        if sending {
            worker.signal("KILL");
        }
        !sending
    });
    assert!(cluster.workers.len() < before, "a sender was killed");
    // A live worker to take the deliveries over, should all three have been sending.
    let env_file = cluster.dir.path("targets.yaml").display().to_string();
    let env = [
        ("TARGETS_FILE", env_file.as_str()),
        ("WORKER_INTERVAL", "1s"),
        ("VISIBILITY_TIMEOUT", "3s"),
    ];
    cluster
        .workers
        .push(role_process("worker", &cluster.redis, &env).await);

    for (kind, _) in KINDS {
        let deliveries = eventually(Duration::from_secs(30), kind, || async {
            let list = cluster.deliveries(kind).await;
            list.iter().any(|d| d["result"] == "sent").then_some(list)
        })
        .await;
        let sent = deliveries.iter().filter(|d| d["result"] == "sent").count();
        assert_eq!(sent, 1, "{kind}: {deliveries:?}");
        let got = receiver.of(kind);
        // At least once: the held request, then the redelivery; never more.
        assert_eq!(got.len(), 2, "{kind}: {got:?}");
        assert_eq!(identity(&got[0]), identity(&got[1]), "{kind}");
        assert_eq!(got[0].body, got[1].body, "{kind}: the same payload");
        assert_ne!(
            got[0].header("svc-sender"),
            got[1].header("svc-sender"),
            "{kind}: another worker"
        );
        assert_eq!(counted(&cluster.workers, kind, "sent").await, 1, "{kind}");
    }
}
