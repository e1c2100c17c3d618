//! Notifications of a target's changes of state. Each change becomes one `notify` job
//! per webhook, with an id made from the change's id, so queueing it twice (a worker
//! that died before noting it had) adds nothing; the job queue redelivers it when
//! its worker dies mid-send, and every attempt carries the same idempotency key, in
//! the body (`id`) and in the `Idempotency-Key` header, so a receiver can drop a
//! repeat.

use std::time::Duration;

use serde_json::{Value, json};

use super::{HookKind, Notifier, Target};
use crate::jobs::{JobRecord, JobSpec};
use crate::redact;
use crate::service::ServiceState;
use crate::targets::state::Transition;
use crate::telemetry::metric;

/// Tries per delivery before the job fails (and the queue delivers it again later).
pub const TRIES: u32 = 3;
/// Wait before the second try; doubled before each next one.
pub const BACKOFF: Duration = Duration::from_millis(500);
/// How long one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The word for a state in notifications: `up`, `degraded`, `down`.
pub fn word(state: Option<ServiceState>) -> &'static str {
    match state {
        Some(ServiceState::Healthy) => "up",
        Some(ServiceState::Degraded) => "degraded",
        Some(ServiceState::Down) => "down",
        None => "unknown",
    }
}

/// The generic body: `{id, target, state, previous, since, reason, url}`, plus
/// `duration_s` when the target is up again (how long it was not), and `group`.
pub fn event(target: &Target, change: &Transition) -> Value {
    let mut body = json!({
        "id": change.id,
        "target": target.name,
        "state": word(Some(change.to)),
        "previous": word(change.from),
        "since": change.at,
        "reason": change.reason,
        "url": target.endpoint.shown(),
    });
    if let (ServiceState::Healthy, Some(since)) = (change.to, change.previous_since) {
        body["duration_s"] = json!((change.at - since).max(0.0));
    }
    if let Some(group) = &target.group {
        body["group"] = json!(group);
    }
    body
}

/// The body in Slack's incoming-webhook format.
fn slack(event: &Value) -> Value {
    let text = format!(
        "*{}* is {} (was {}){}{}",
        event["target"].as_str().unwrap_or_default(),
        event["state"].as_str().unwrap_or_default(),
        event["previous"].as_str().unwrap_or_default(),
        event["duration_s"]
            .as_f64()
            .map(|s| format!(
                " after {}",
                humantime::format_duration(Duration::from_secs(s as u64))
            ))
            .unwrap_or_default(),
        event["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
    );
    json!({ "text": text })
}

/// The jobs that deliver `change` of `target` to every webhook of `hooks`.
pub fn jobs(target: &Target, change: &Transition, hooks: &[Notifier], now: f64) -> Vec<JobRecord> {
    let event = event(target, change);
    hooks
        .iter()
        .enumerate()
        .map(|(i, hook)| {
            let body = match hook.kind {
                HookKind::Webhook => event.clone(),
                HookKind::Slack => slack(&event),
            };
            let mut job = JobRecord::new(
                JobSpec::Notify {
                    url: hook.url.to_string(),
                    body,
                    key: change.id.clone(),
                },
                now,
            );
            job.id = format!("notify-{}-{i}", change.id);
            job
        })
        .collect()
}

/// POSTs `body` to `url`, up to [`TRIES`] times with a doubling wait between; `sender`
/// names the instance in a `Svc-Sender` header.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    key: &str,
    sender: &str,
) -> Result<Value, String> {
    // The receiver's URL is a credential (a Slack webhook's path is its key): logs and
    // the job's error name its origin only.
    let shown = url::Url::parse(url).map_or_else(|_| redact::text(url), |u| redact::origin(&u));
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut wait = BACKOFF;
    let mut last = String::new();
    for attempt in 1..=TRIES {
        if attempt > 1 {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
        let sent = client
            .post(url)
            .timeout(TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .header("Svc-Sender", sender)
            .body(bytes.clone())
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => {
                metrics::counter!(metric::NOTIFICATIONS.name, "result" => "sent").increment(1);
                return Ok(json!({"status": res.status().as_u16(), "tries": attempt}));
            }
            Ok(res) => last = format!("HTTP {}", res.status().as_u16()),
            Err(e) if e.is_timeout() => {
                last = format!("no answer within {} s", TIMEOUT.as_secs());
            }
            Err(e) => last = crate::probe::describe(e),
        }
        metrics::counter!(metric::NOTIFICATIONS.name, "result" => "failed").increment(1);
        tracing::warn!(receiver = %shown, key, attempt, error = %last, "notification not accepted");
    }
    Err(format!("{shown}: {last} ({TRIES} tries)"))
}
