//! Every channel kind, against one loopback receiver that keeps what each request
//! said: a target goes down and up again, and each channel gets its provider's
//! payload for both (or only what its filters let through), with its own credential
//! in the place the provider wants it and nowhere else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Dir, SvcProcess, all_args, client, eventually, try_json};
use crate::targets::{Target, read_request};

const ROUTING_KEY: &str = "pd-routing-5a1b";
const GENIE_KEY: &str = "genie-key-77c0";
const NTFY_TOKEN: &str = "ntfy-token-e3d9";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub path: String,
    pub head: String,
    pub body: String,
}

impl Request {
    /// Reads one request from `conn`.
    pub async fn read(conn: &mut TcpStream) -> Option<Self> {
        let (head, body) = read_request(conn).await?;
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        Some(Request {
            path,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Answers 202 to everything (500 under `/failing`), and keeps every request.
pub(crate) struct Receiver {
    pub base: String,
    seen: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Serves HTTP on a loopback port: `handle` gets each request and its connection to
/// answer on. Gives the base URL and the task (abort it to stop).
pub(crate) async fn serve<F, Fut>(handle: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn(Request, TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Some(request) = Request::read(&mut conn).await {
                    handle(request, conn).await;
                }
            });
        }
    });
    (base, task)
}

impl Receiver {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let (base, task) = serve(move |request: Request, mut conn: TcpStream| {
            let log = log.clone();
            async move {
                let failing = request.path.starts_with("/failing");
                log.lock().expect("log").push(request);
                let reply: &[u8] = if failing {
                    b"HTTP/1.1 500 X\r\ncontent-length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
                };
                let _ = conn.write_all(reply).await;
            }
        })
        .await;
        Receiver { base, seen, task }
    }

    /// The requests to paths that start with `prefix`, in the order they came.
    pub fn to(&self, prefix: &str) -> Vec<Request> {
        self.seen
            .lock()
            .expect("log")
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn state_of(svc: &SvcProcess, name: &str) -> Option<String> {
    let url = format!("http://{}/api/health-check", svc.address_of("dashboard"));
    let answer = try_json(&client(), &url).await?;
    answer["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["status"].as_str().map(str::to_owned))
}

async fn wait_state(svc: &SvcProcess, name: &str, want: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{name} {want}"),
        || async { (state_of(svc, name).await.as_deref() == Some(want)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn each_channel_gets_its_providers_payload_for_a_down_and_an_up() {
    let target = Target::start().await;
    let receiver = Receiver::start().await;
    let base = &receiver.base;
    let dir = Dir::new("channels");
    let file = dir.path("targets.yaml");
    let text = format!(
        "notify:
  - {{name: hook, url: '{base}/hook'}}
  - {{name: chat, kind: slack, url: '{base}/slack'}}
  - {{kind: discord, url: '{base}/discord'}}
  - {{kind: teams, url: '{base}/teams'}}
  - {{name: oncall, kind: pagerduty, url: '{base}/pagerduty', routing_key: '${{PD_KEY}}'}}
  - {{kind: opsgenie, url: '{base}/v2/alerts', api_key: '${{GENIE_KEY}}'}}
  - {{kind: ntfy, url: '{base}/ntfy/svc', token: '${{NTFY_TOKEN}}', on: [down]}}
  - {{name: quiet, url: '{base}/quiet', send_on_resolved: false}}
  - {{name: unused, url: '{base}/unused'}}
  - {{name: failing, url: '{base}/failing/s3cret-path', on: [down]}}
targets:
  - name: web
    url: {}
    interval: 1s
    notify: [hook, chat, discord, teams, oncall, opsgenie, ntfy, quiet, failing]
",
        target.url
    );
    std::fs::write(&file, text).expect("write");
    let file = file.display().to_string();
    let svc = SvcProcess::spawn(
        &all_args(&["--targets", &file]),
        &[
            ("WORKER_INTERVAL", "1s"),
            ("REFRESH_PERIOD", "1s"),
            ("PD_KEY", ROUTING_KEY),
            ("GENIE_KEY", GENIE_KEY),
            ("NTFY_TOKEN", NTFY_TOKEN),
        ],
    );
    wait_state(&svc, "web", "healthy").await;
    target.set(500);
    wait_state(&svc, "web", "down").await;
    target.set(200);
    wait_state(&svc, "web", "healthy").await;
    // Both changes to the six channels that take both, the down alone to two more.
    eventually(Duration::from_secs(30), "every delivery", || async {
        let got = receiver
            .seen
            .lock()
            .expect("log")
            .iter()
            .filter(|r| !r.path.starts_with("/failing"))
            .count();
        (got >= 8 + 6).then_some(())
    })
    .await;

    let hook = receiver.to("/hook");
    assert_eq!(hook.len(), 2, "{hook:?}");
    let (down, up) = (hook[0].json(), hook[1].json());
    assert_eq!(
        (down["state"].as_str(), up["state"].as_str()),
        (Some("down"), Some("up"))
    );
    assert_eq!(
        hook[0].header("idempotency-key").as_deref(),
        down["id"].as_str()
    );
    assert!(up["duration_s"].is_number(), "{up}");

    let slack = receiver.to("/slack");
    assert_eq!(
        slack[0].json()["text"]
            .as_str()
            .map(|t| t.starts_with("*web* is down")),
        Some(true)
    );

    let discord = receiver.to("/discord");
    assert_eq!(discord[0].json()["embeds"][0]["color"], 0xD32F2F);
    assert_eq!(discord[1].json()["embeds"][0]["color"], 0x2E7D32);

    let teams = receiver.to("/teams");
    assert_eq!(
        teams[0].json()["attachments"][0]["content"]["type"],
        "AdaptiveCard"
    );

    let pagerduty = receiver.to("/pagerduty");
    assert_eq!(pagerduty.len(), 2, "{pagerduty:?}");
    let (trigger, resolve) = (pagerduty[0].json(), pagerduty[1].json());
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["dedup_key"], "web");
    assert_eq!(resolve["dedup_key"], "web");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);

    let opsgenie = receiver.to("/v2/alerts");
    assert_eq!(opsgenie.len(), 2, "{opsgenie:?}");
    assert_eq!(opsgenie[0].path, "/v2/alerts");
    assert_eq!(opsgenie[0].json()["alias"], "web");
    assert_eq!(
        opsgenie[1].path,
        "/v2/alerts/web/close?identifierType=alias"
    );
    let genie = format!("GenieKey {GENIE_KEY}");
    assert!(
        opsgenie
            .iter()
            .all(|r| r.header("authorization").as_deref() == Some(genie.as_str()))
    );

    let ntfy = receiver.to("/ntfy/svc");
    assert_eq!(ntfy.len(), 1, "on: [down] only: {ntfy:?}");
    assert_eq!(ntfy[0].header("x-priority").as_deref(), Some("5"));
    assert!(
        ntfy[0].body.starts_with("web is down (was up)"),
        "{:?}",
        ntfy[0].body
    );
    let bearer = format!("Bearer {NTFY_TOKEN}");
    assert_eq!(
        ntfy[0].header("authorization").as_deref(),
        Some(bearer.as_str())
    );

    assert_eq!(receiver.to("/quiet").len(), 1, "send_on_resolved: false");
    assert!(receiver.to("/unused").is_empty(), "not named by the target");

    // The jobs hold the channel's name and the event: no URL, no key.
    let gateway = svc.address_of("api-gateway");
    for channel in ["oncall", "opsgenie", "ntfy"] {
        let id = format!("notify-{}-{channel}", down["id"].as_str().expect("id"));
        let record = try_json(&client(), &format!("http://{gateway}/api/jobs/{id}"))
            .await
            .expect("job record");
        assert_eq!(record["channel"], channel, "{record}");
        assert!(record.get("url").is_none(), "{record}");
        let text = record.to_string();
        for key in [ROUTING_KEY, GENIE_KEY, NTFY_TOKEN] {
            assert!(!text.contains(key), "{key} in {text}");
        }
    }
    // Did the page go out? The dashboard says, channel by channel.
    let dashboard = svc.address_of("dashboard");
    let deliveries = eventually(Duration::from_secs(20), "the deliveries listed", || async {
        let answer = try_json(&client(), &format!("http://{dashboard}/api/notifications")).await?;
        let list = answer["deliveries"].as_array()?.clone();
        list.iter()
            .any(|d| d["channel"] == "failing")
            .then_some(list)
    })
    .await;
    let sent = |channel: &str, state: &str| {
        deliveries
            .iter()
            .any(|d| d["channel"] == channel && d["state"] == state && d["result"] == "sent")
    };
    assert!(
        sent("oncall", "down") && sent("oncall", "up"),
        "{deliveries:?}"
    );
    assert!(
        sent("ntfy", "down") && !sent("ntfy", "up"),
        "{deliveries:?}"
    );
    let failed = deliveries
        .iter()
        .find(|d| d["channel"] == "failing")
        .expect("the failing channel");
    assert_eq!(failed["result"], "failed", "{failed}");
    assert_eq!(failed["target"], "web", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(
        !error.contains("s3cret-path"),
        "the receiver by its origin only: {error}"
    );
    let page = crate::helpers::get_text(&format!("http://{dashboard}/")).await;
    assert!(
        page.contains("Notifications") && page.contains("failed"),
        "the page's panel"
    );
    assert!(!page.contains("s3cret-path"));

    let output = svc.output();
    for key in [ROUTING_KEY, GENIE_KEY, NTFY_TOKEN] {
        assert!(!output.contains(key), "{key} in the logs");
    }
}
