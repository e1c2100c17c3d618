//! Notifications of a target's changes of state, to the channels of the targets file.
//!
//! A change becomes one typed [`Event`], and one `notify` job per channel it is routed
//! to ([`route`]), with an id made from the change and the channel, so queueing it
//! twice (a worker that died before noting it had) adds nothing. The job holds the
//! channel's name and the event, never the channel's URL or key: the worker that sends
//! it renders the event for the channel as its targets file has it then
//! ([`Channel::request`]), one module per kind, each to the provider's published API.
//! The job queue redelivers a job whose worker died mid-send, and every attempt
//! carries the same idempotency key (`Idempotency-Key`, and the provider's own
//! deduplication key where it has one), so a receiver can drop a repeat.
//!
//! `email` is the one kind that is not an HTTP request: the worker builds a message
//! with a plain-text and an HTML part and sends it over SMTP (STARTTLS or implicit
//! TLS), each attempt with the same `Message-ID` (see [`email`]).

mod discord;
pub mod email;
mod ntfy;
mod opsgenie;
mod pagerduty;
mod slack;
pub(crate) mod spec;
mod teams;
mod webhook;

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::Target;
use crate::config::Secret;
use crate::jobs::{JobRecord, JobSpec, RECORD_TTL};
use crate::redact;
use crate::service::ServiceState;
use crate::store::{DeliveryRecord, Store};
use crate::targets::locations::LocationDetail;
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

/// One change of one target, as every channel is told it. Serialized, it is the
/// generic webhook's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per change: the idempotency key of its notifications.
    pub id: String,
    /// The target's name.
    pub target: String,
    /// `up`, `degraded` or `down`; `burn` for a fast burn of the target's error
    /// budget ([`burn`]).
    pub state: String,
    /// The state before; `unknown` on a target's first verdict.
    pub previous: String,
    /// Unix seconds since the target is in `state`.
    pub since: f64,
    /// What the probes found.
    pub reason: Option<String>,
    /// The target's URL, its credentials masked.
    pub url: String,
    /// On a recovery: how long the target was not up, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// The target's group, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Whether this tells again of a state that has not changed (a reminder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
    /// On a reminder: how long the target has been down, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_for_s: Option<f64>,
    /// At the end of a maintenance window the target is still down in: the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    /// A partial failure, or the end of one: down from fewer locations than the
    /// quorum. Only channels with `on: [partial]` are told.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// What each location said, when the target is probed from several.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub locations: std::collections::BTreeMap<String, LocationDetail>,
}

impl Event {
    /// The event of `change` of `target`.
    pub fn of(target: &Target, change: &Transition) -> Self {
        Event {
            id: change.id.clone(),
            target: target.name.clone(),
            state: word(Some(change.to)).to_owned(),
            previous: word(change.from).to_owned(),
            since: change.at,
            reason: change.reason.clone(),
            url: target.endpoint.shown(),
            duration_s: match (change.to, change.previous_since) {
                (ServiceState::Healthy, Some(since)) => Some((change.at - since).max(0.0)),
                _ => None,
            },
            group: target.group.clone(),
            reminder: false,
            down_for_s: None,
            maintenance: None,
            partial: change.partial,
            locations: change.locations.clone(),
        }
    }

    /// Whether the target is up again after being down or degraded.
    pub fn resolves(&self) -> bool {
        self.state == "up" && self.previous != "unknown"
    }

    /// One line a person reads: `payments is down (was up): HTTP 503`, on a
    /// reminder `payments is still down (for 1h): HTTP 503`, on a burn `payments is
    /// burning its error budget fast (is down): error budget of ...`.
    pub fn headline(&self) -> String {
        if self.state == "burn" {
            let reason = self.reason.as_deref().unwrap_or("");
            return format!(
                "{} is burning its error budget fast (is {}): {reason}",
                self.target, self.previous
            );
        }
        if let Some(down_for) = self.down_for_s.filter(|_| self.reminder) {
            let reason = self
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            return format!(
                "{} is still {} (for {}){reason}",
                self.target,
                self.state,
                humantime::format_duration(Duration::from_secs(down_for as u64))
            );
        }
        let after = self
            .duration_s
            .map(|s| {
                format!(
                    " after {}",
                    humantime::format_duration(Duration::from_secs(s as u64))
                )
            })
            .unwrap_or_default();
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        format!(
            "{} is {} (was {}){after}{reason}",
            self.target, self.state, self.previous
        )
    }
}

/// The kind of a channel: the provider and its wire format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The event as JSON.
    #[default]
    Webhook,
    /// A Slack incoming webhook: `{text}`.
    Slack,
    /// A Discord webhook: an embed coloured by state.
    Discord,
    /// A Microsoft Teams Workflows webhook: an Adaptive Card.
    Teams,
    /// PagerDuty Events API v2: trigger on down, resolve on recovery.
    Pagerduty,
    /// Opsgenie Alert API: create an alert, close it on recovery.
    Opsgenie,
    /// An ntfy topic: a message with a priority by state.
    Ntfy,
    /// An email over SMTP: plain text and HTML.
    Email,
}

impl Kind {
    /// Its name in the targets file.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::Discord => "discord",
            Kind::Teams => "teams",
            Kind::Pagerduty => "pagerduty",
            Kind::Opsgenie => "opsgenie",
            Kind::Ntfy => "ntfy",
            Kind::Email => "email",
        }
    }

    /// The provider's endpoint, for kinds that have one everybody uses.
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            Kind::Pagerduty => Some(pagerduty::URL),
            Kind::Opsgenie => Some(opsgenie::URL),
            _ => None,
        }
    }

    /// The name of the credential this kind needs besides its URL, if any.
    pub fn key_name(self) -> Option<&'static str> {
        match self {
            Kind::Pagerduty => Some("routing_key"),
            Kind::Opsgenie => Some("api_key"),
            _ => None,
        }
    }
}

/// Where notifications go. Its URL and key are credentials: its `Debug` shows the
/// URL's origin only, and neither ever leaves the worker but to the provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Channel {
    /// Unique in the file; what targets and groups name.
    pub name: String,
    /// The provider.
    pub kind: Kind,
    /// The endpoint.
    pub url: Url,
    /// The provider's key (PagerDuty's routing key, Opsgenie's API key) or an ntfy
    /// access token.
    pub key: Option<Secret>,
    /// The states it is told of (`up`, `degraded`, `down`, `burn`; `partial` for a
    /// partial failure of a target probed from several locations); empty: all but
    /// `partial`.
    pub on: Vec<String>,
    /// Whether it is told of a recovery.
    pub send_on_resolved: bool,
    /// While a target is down, a reminder each period (unless the target sets its own).
    pub repeat: Option<Duration>,
    /// An email channel's sender, recipients and TLS; `None` for the other kinds.
    pub mail: Option<email::Mail>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &redact::origin(&self.url))
            .field("key", &self.key)
            .field("on", &self.on)
            .field("send_on_resolved", &self.send_on_resolved)
            .field("repeat", &self.repeat)
            .field("mail", &self.mail)
            .finish()
    }
}

/// One HTTP request to a provider.
#[derive(Debug)]
pub struct Outgoing {
    /// Where it goes.
    pub url: Url,
    /// Headers besides the content type and the idempotency key.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `application/json` or `text/plain`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Outgoing {
    /// A JSON POST of `body` to `url`.
    fn json(url: Url, body: &Value) -> Self {
        Outgoing {
            url,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }

    /// Adds a header whose value is a credential (never shown in a `Debug`).
    fn secret_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(mut value) = HeaderValue::try_from(value) {
            value.set_sensitive(true);
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }
}

impl Channel {
    /// Whether `event` is for this channel, by its state filter.
    pub fn accepts(&self, event: &Event) -> bool {
        if event.resolves() && !self.send_on_resolved {
            return false;
        }
        if event.partial {
            // Shown, not sent: what probing from several places keeps from paging.
            return self.on.iter().any(|on| on == "partial");
        }
        self.on.is_empty() || self.on.contains(&event.state)
    }

    /// The request that tells this channel of `event`; `None` for email, which is
    /// not sent over HTTP.
    pub fn request(&self, event: &Event) -> Option<Outgoing> {
        Some(match self.kind {
            Kind::Webhook => webhook::render(self, event),
            Kind::Slack => slack::render(self, event),
            Kind::Discord => discord::render(self, event),
            Kind::Teams => teams::render(self, event),
            Kind::Pagerduty => pagerduty::render(self, event),
            Kind::Opsgenie => opsgenie::render(self, event),
            Kind::Ntfy => ntfy::render(self, event),
            Kind::Email => return None,
        })
    }
}

/// The channels of `all` that `target` uses: those it names, else those its group
/// names (`groups`), else every one.
pub fn route<'a>(
    target: &Target,
    groups: &std::collections::BTreeMap<String, Vec<String>>,
    all: &'a [Channel],
) -> Vec<&'a Channel> {
    let named = target
        .notify
        .as_ref()
        .or_else(|| target.group.as_ref().and_then(|g| groups.get(g)));
    match named {
        Some(names) => all.iter().filter(|c| names.contains(&c.name)).collect(),
        None => all.iter().collect(),
    }
}

/// The jobs that deliver `change` of `target` to each of `channels` that accepts it.
pub fn jobs(
    target: &Target,
    change: &Transition,
    channels: &[&Channel],
    now: f64,
) -> Vec<JobRecord> {
    let event = Event::of(target, change);
    channels
        .iter()
        .filter(|c| c.accepts(&event))
        .filter_map(|channel| job(channel, &event, now))
        .collect()
}

/// The jobs that tell each of `channels` that accepts it that `target` burns its
/// error budget fast (`state: burn`, its current state as `previous`), as `report`
/// finds; one per episode (begun at `since`), with an id made from it, so however
/// many workers queue it, it is sent once.
pub fn burn(
    target: &Target,
    current: Option<ServiceState>,
    report: &crate::targets::slo::SloReport,
    since: f64,
    channels: &[&Channel],
    now: f64,
) -> Vec<JobRecord> {
    let rate = |b: Option<f64>| b.map_or("no data".to_owned(), |b| format!("{b:.1}x"));
    let event = Event {
        id: format!("{}-burn-{}", target.name, (since * 1e3) as u64),
        target: target.name.clone(),
        state: "burn".to_owned(),
        previous: word(current).to_owned(),
        since,
        reason: Some(format!(
            "error budget of {} % over {} d burning {} over 1 h, {} over 5 min",
            report.slo.objective,
            report.slo.window_days,
            rate(report.burn_1h),
            rate(report.burn_5m)
        )),
        url: target.endpoint.shown(),
        duration_s: None,
        group: target.group.clone(),
        reminder: false,
        down_for_s: None,
        maintenance: None,
        partial: false,
        locations: Default::default(),
    };
    channels
        .iter()
        .filter(|c| c.accepts(&event))
        .filter_map(|channel| job(channel, &event, now))
        .collect()
}

/// The job that tells `channel` of `event`: it holds the channel's name and the event,
/// keyed and named by the event's id (so queueing it twice adds nothing).
fn job(channel: &Channel, event: &Event, now: f64) -> Option<JobRecord> {
    let mut job = JobRecord::new(
        JobSpec::Notify {
            channel: Some(channel.name.clone()),
            url: None,
            body: serde_json::to_value(event).ok()?,
            key: event.id.clone(),
        },
        now,
    );
    job.id = job_id(&event.id, &channel.name);
    Some(job)
}

/// How far into its period a reminder is still offered: half the life of a job's record,
/// the idempotency key that makes a second offer add nothing. A period longer than a
/// day (no bound is set on `repeat`) would otherwise offer its reminder again once its
/// record had expired, and send it twice.
pub const REMINDER_WINDOW: Duration = Duration::from_secs(RECORD_TTL.as_secs() / 2);

/// The reminders due for `change` of `target` (still down) at `now`: for each channel of
/// `channels` that accepts it, with a period (the target's, else the channel's), one
/// job per period elapsed since `since` (the change, or the end of the maintenance
/// window it was made in, when that told it), with an id made from the change, the channel and the
/// period's number, so however many workers queue it, and however often, it is sent
/// once. Only the newest period's is made, and only in its first [`REMINDER_WINDOW`]:
/// one that was missed is not sent late.
pub fn reminders(
    target: &Target,
    change: &Transition,
    channels: &[&Channel],
    since: f64,
    now: f64,
) -> Vec<JobRecord> {
    let mut event = Event::of(target, change);
    let down_for = (now - change.at).max(0.0);
    let counted = (now - since).max(0.0);
    event.reminder = true;
    event.down_for_s = Some(down_for);
    channels
        .iter()
        .filter(|c| c.accepts(&event))
        .filter_map(|channel| {
            let period = target.repeat.or(channel.repeat)?.as_secs_f64();
            let n = (counted / period).floor() as u64;
            if n == 0 || counted - n as f64 * period >= REMINDER_WINDOW.as_secs_f64() {
                return None;
            }
            let mut event = event.clone();
            event.id = format!("{}-r{n}", change.id);
            job(channel, &event, now)
        })
        .collect()
}

/// The jobs that tell each of `channels` that accepts it that `target` is still down
/// (its newest change `change`, the newest probe's `reason`) as window `ended` ends:
/// one `down` per occurrence of the window, with an id made from it, so however many
/// workers queue it, it is sent once.
pub fn window_end(
    target: &Target,
    change: &Transition,
    ended: &crate::targets::maintenance::Active,
    reason: Option<String>,
    channels: &[&Channel],
    now: f64,
) -> Vec<JobRecord> {
    let mut event = Event::of(target, change);
    event.id = format!("{}@{}", target.name, ended.occurrence());
    event.reason = reason.or(event.reason);
    event.maintenance = Some(ended.name.clone());
    channels
        .iter()
        .filter(|c| c.accepts(&event))
        .filter_map(|channel| job(channel, &event, now))
        .collect()
}

/// Sends `outgoing` to `channel` (its name, for metrics and messages), up to
/// [`TRIES`] times with a doubling wait between; `sender` names the instance in a
/// `Svc-Sender` header. The error names the receiver by its origin only.
pub async fn deliver(
    client: &reqwest::Client,
    channel: &str,
    outgoing: &Outgoing,
    key: &str,
    sender: &str,
) -> Result<Value, String> {
    let shown = redact::origin(&outgoing.url);
    retrying(channel, &shown, key, |attempt| async move {
        let mut request = client
            .post(outgoing.url.clone())
            .timeout(TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, outgoing.content_type)
            .header("Idempotency-Key", key)
            .header("Svc-Sender", sender)
            .body(outgoing.body.clone());
        for (name, value) in &outgoing.headers {
            request = request.header(name, value.clone());
        }
        match request.send().await {
            Ok(res) if res.status().is_success() => {
                Ok(json!({"status": res.status().as_u16(), "tries": attempt}))
            }
            Ok(res) => Err(format!("HTTP {}", res.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
            Err(e) => Err(crate::probe::describe(e)),
        }
    })
    .await
}

/// Runs `once` (given the attempt's number) up to [`TRIES`] times with a doubling
/// wait between, counting each attempt for `channel`; `shown` names the receiver in
/// the log and the error.
async fn retrying<F, Fut>(
    channel: &str,
    shown: &str,
    key: &str,
    mut once: F,
) -> Result<Value, String>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    let mut wait = BACKOFF;
    let mut last = String::new();
    for attempt in 1..=TRIES {
        if attempt > 1 {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
        match once(attempt).await {
            Ok(answer) => {
                count(channel, "sent");
                return Ok(answer);
            }
            Err(error) => last = error,
        }
        count(channel, "failed");
        tracing::warn!(channel, receiver = %shown, key, attempt, error = %last, "notification not accepted");
    }
    Err(format!("{channel} ({shown}): {last} ({TRIES} tries)"))
}

/// Tells `channel` of `event` ([`deliver`], or for email [`email`]'s SMTP) and notes
/// the delivery, sent or failed, for `/api/notifications`; a delivery that cannot be
/// noted is only logged.
pub async fn send(
    client: &reqwest::Client,
    store: &dyn Store,
    channel: &Channel,
    event: &Event,
    key: &str,
    sender: &str,
) -> Result<Value, String> {
    let id = job_id(&event.id, &channel.name);
    let sent = match (channel.request(event), &channel.mail) {
        (Some(outgoing), _) => deliver(client, &channel.name, &outgoing, key, sender).await,
        (None, Some(mail)) => match email::message(mail, event, &id) {
            Ok(message) => {
                let shown = redact::origin(&channel.url);
                retrying(&channel.name, &shown, key, |attempt| {
                    let message = &message;
                    async move {
                        let mut answer = email::send_once(channel, mail, message).await?;
                        answer["tries"] = attempt.into();
                        Ok(answer)
                    }
                })
                .await
            }
            Err(e) => Err(format!("{}: {e}", channel.name)),
        },
        (None, None) => Err(format!(
            "{}: an email channel without addresses",
            channel.name
        )),
    };
    let record = DeliveryRecord {
        id,
        channel: channel.name.clone(),
        target: event.target.clone(),
        state: event.state.clone(),
        at: crate::clock::unix_now(),
        result: if sent.is_ok() { "sent" } else { "failed" }.to_owned(),
        error: sent.as_ref().err().cloned(),
    };
    if let Err(e) = store.record_delivery(&record).await {
        tracing::warn!(channel = %channel.name, error = %e, "delivery not noted");
    }
    sent
}

/// The id of the job that tells channel `channel` of the change `event_id`.
pub fn job_id(event_id: &str, channel: &str) -> String {
    format!("notify-{event_id}-{channel}")
}

/// Sends a job of an older version: `body` as it is, to `url`.
pub async fn deliver_as_queued(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    key: &str,
    sender: &str,
) -> Result<Value, String> {
    let url = Url::parse(url).map_err(|e| format!("the job's receiver is no URL: {e}"))?;
    let outgoing = Outgoing::json(url, body);
    deliver(client, "webhook", &outgoing, key, sender).await
}

/// Unix seconds as RFC 3339 (UTC, whole seconds), as providers want times.
fn rfc3339(unix: f64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn count(channel: &str, result: &'static str) {
    metrics::counter!(
        metric::NOTIFICATIONS.name,
        "result" => result,
        "channel" => channel.to_owned()
    )
    .increment(1);
}

#[cfg(test)]
mod tests;
