//! Email: one message per event over SMTP, with a plain-text and an HTML part
//! (`multipart/alternative`), sent by the worker that runs the job.
//!
//! ```yaml
//! - name: mail
//!   kind: email
//!   url: smtp://svc:${SMTP_PASSWORD}@mail.internal:587   # smtps:// for implicit TLS
//!   from: svc@example.com
//!   to: [oncall@example.com]
//!   subject: "[shop] alert"          # default: the event's headline
//!   ca_file: /etc/svc/smtp-ca.pem    # roots besides the system's, for a private server
//! ```
//!
//! - `smtp://` (port 587 unless given) upgrades to TLS with STARTTLS when the server
//!   offers it; with `?tls=required` a server that does not is an error, before any
//!   credential is sent. `smtps://` (port 465 unless given) speaks TLS from the start.
//! - The user and password are the URL's, percent-decoded (so a password with `@`,
//!   `/` or `:` is written `%40`, `%2F`, `%3A`). Like every receiver's URL, the URL is a
//!   credential: it is shown as its scheme, host and port only, and an error names the
//!   server's reply (`permanent error (535): ...`), never the password.
//! - Every message of one event to one channel carries the same `Message-ID` (made
//!   from the job's id), so a resend after a worker died mid-send is recognisable.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use maud::html;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use url::Url;

use super::{Channel, Event, TIMEOUT};
use crate::redact;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: STARTTLS when the server offers it.
    Opportunistic,
    /// `smtp://...?tls=required`: STARTTLS or fail.
    Required,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// What an email channel needs besides its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The sender.
    pub from: Mailbox,
    /// The recipients (at least one).
    pub to: Vec<Mailbox>,
    /// A fixed subject; by default each message's is its event's headline.
    pub subject: Option<String>,
    /// PEM roots to trust besides the system's, read at each send.
    pub ca_file: Option<PathBuf>,
    /// How the connection is secured, from the URL.
    pub security: Security,
}

/// Checks an email channel's values: `url` an `smtp://` or `smtps://` URL with a host,
/// `from` and each of `to` an address. Errors never quote the URL.
pub(super) fn check(
    url: &Url,
    from: Option<String>,
    to: Vec<String>,
    subject: Option<String>,
    ca_file: Option<String>,
) -> Result<Mail, String> {
    let security = match url.scheme() {
        "smtps" => Security::Implicit,
        "smtp" => Security::Opportunistic,
        other => {
            return Err(format!(
                "url must be an smtp:// or smtps:// URL, not {other}:"
            ));
        }
    };
    if !url.has_host() {
        return Err("url has no host".to_owned());
    }
    let mut security = security;
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref(), security) {
            ("tls", "required", Security::Opportunistic) => security = Security::Required,
            ("tls", "required", Security::Implicit) => {}
            ("tls", other, _) => {
                return Err(format!("url: tls={other:?} is not tls=required"));
            }
            (other, _, _) => return Err(format!("url: unknown parameter {other:?}")),
        }
    }
    let address = |field: &str, text: &str| {
        text.trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("{field}: {text:?} is not an email address ({e})"))
    };
    let from = address(
        "from",
        from.as_deref().ok_or("an email channel needs from")?,
    )?;
    if to.is_empty() {
        return Err("an email channel needs to: [address, ...]".to_owned());
    }
    let to = to
        .iter()
        .map(|t| address("to", t))
        .collect::<Result<Vec<_>, _>>()?;
    if subject.as_deref().is_some_and(|s| s.contains(['\r', '\n'])) {
        return Err("subject must be one line".to_owned());
    }
    Ok(Mail {
        from,
        to,
        subject,
        ca_file: ca_file.map(PathBuf::from),
        security,
    })
}

/// The message that tells `mail`'s recipients of `event`; `id` (the job's) makes its
/// `Message-ID`.
pub(super) fn message(mail: &Mail, event: &Event, id: &str) -> Result<Message, String> {
    let subject = mail.subject.clone().unwrap_or_else(|| event.headline());
    // The left part of a Message-ID is a dot-atom: anything else becomes `.`.
    let local: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    let mut builder = Message::builder()
        .from(mail.from.clone())
        .subject(subject)
        .message_id(Some(format!("<{}@svc>", local.trim_matches('.'))));
    for to in &mail.to {
        builder = builder.to(to.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            plain(event),
            html(event).into_string(),
        ))
        .map_err(|e| format!("the message cannot be built: {e}"))
}

/// The facts of `event`, a label and a value each, in the order both parts show them.
fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Target", event.target.clone()),
        ("State", format!("{} (was {})", event.state, event.previous)),
        ("Since", super::rfc3339(event.since)),
    ];
    if let Some(reason) = &event.reason {
        facts.push(("Reason", reason.clone()));
    }
    if let Some(down_for) = event.down_for_s.filter(|_| event.reminder) {
        facts.push(("Down for", seconds(down_for)));
    }
    if let Some(after) = event.duration_s {
        facts.push(("Was not up for", seconds(after)));
    }
    if let Some(group) = &event.group {
        facts.push(("Group", group.clone()));
    }
    facts.push(("URL", event.url.clone()));
    facts
}

fn seconds(s: f64) -> String {
    humantime::format_duration(Duration::from_secs(s.max(0.0) as u64)).to_string()
}

/// The plain-text part: the headline, then one fact a line.
fn plain(event: &Event) -> String {
    let mut text = format!("{}\n\n", event.headline());
    for (label, value) in facts(event) {
        text.push_str(&format!("{label}: {value}\n"));
    }
    text
}

/// The HTML part: the headline, coloured by state, then the facts as a table.
fn html(event: &Event) -> maud::Markup {
    let colour = match event.state.as_str() {
        "down" => "#d32f2f",
        // A fast burn warns, as a degraded target does.
        "degraded" | "burn" => "#f9a825",
        _ => "#2e7d32",
    };
    html! {
        (maud::DOCTYPE)
        html {
            body style="font-family: sans-serif" {
                h2 style={ "color: " (colour) } { (event.headline()) }
                table {
                    @for (label, value) in facts(event) {
                        tr { th style="text-align: left; padding-right: 1em" { (label) } td { (value) } }
                    }
                }
            }
        }
    }
}

/// Sends `message` once to the server of `channel`. The error names the server by its
/// origin and gives its reply, with the password (should a server echo it) masked.
pub(super) async fn send_once(
    channel: &Channel,
    mail: &Mail,
    message: &Message,
) -> Result<Value, String> {
    let url = &channel.url;
    let password = url
        .password()
        .map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned());
    let mask = |text: String| match &password {
        Some(p) if !p.is_empty() => text.replace(p.as_str(), redact::MASK),
        _ => text,
    };
    let transport = transport(url, mail, password.clone()).map_err(mask)?;
    match transport.send(message.clone()).await {
        Ok(reply) => Ok(json!({"code": u16::from(reply.code()), "server": redact::origin(url)})),
        Err(e) if e.is_timeout() => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
        Err(e) => Err(mask(e.to_string())),
    }
}

/// A transport to the server of `url`, secured as `mail` says, trusting the system's
/// roots and `mail.ca_file`'s.
fn transport(
    url: &Url,
    mail: &Mail,
    password: Option<String>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let mut tls = TlsParameters::builder(host.trim_matches(['[', ']']).to_owned());
    if let Some(path) = &mail.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let ca = Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {}: no PEM certificate ({e})", path.display()))?;
        tls = tls.add_root_certificate(ca);
    }
    let tls = tls.build().map_err(|e| format!("TLS settings: {e}"))?;
    let (tls, port) = match mail.security {
        Security::Opportunistic => (Tls::Opportunistic(tls), 587),
        Security::Required => (Tls::Required(tls), 587),
        Security::Implicit => (Tls::Wrapper(tls), 465),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(port))
        .timeout(Some(TIMEOUT))
        .tls(tls);
    let user = percent_decode_str(url.username())
        .decode_utf8_lossy()
        .into_owned();
    if !user.is_empty() || password.is_some() {
        builder = builder.credentials(Credentials::new(user, password.unwrap_or_default()));
    }
    Ok(builder.build())
}
