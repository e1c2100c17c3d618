//! The `notify` section of the targets file: each entry a channel, checked.
//!
//! ```yaml
//! notify:
//!   - name: oncall                      # default: the kind (kind-2, ... when taken)
//!     kind: pagerduty                   # webhook (default), slack, discord, teams,
//!                                       # pagerduty, opsgenie, ntfy, email
//!     routing_key: ${PD_ROUTING_KEY}    # pagerduty; opsgenie takes api_key, ntfy token
//!     url: https://events.pagerduty.com/v2/enqueue   # each kind's default, if it has one
//!     on: [down, up]                    # the states it is told of; default all; a
//!                                       # partial failure (locations) only with `partial`
//!     send_on_resolved: true            # told of recoveries; default true
//!     repeat: 1h                        # while down, a reminder each period (>= 10 s)
//!   - name: mail
//!     kind: email                       # url required: smtp:// (STARTTLS) or smtps://
//!     url: smtp://svc:${SMTP_PASSWORD}@mail.internal:587
//!     from: svc@example.com             # email only: from, to, subject, ca_file
//!     to: [oncall@example.com]
//! ```

use serde::Deserialize;
use url::Url;

use super::{Channel, Kind, email};
use crate::targets::value::ValueSpec;

/// A channel as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelSpec {
    name: Option<String>,
    #[serde(default)]
    kind: Kind,
    url: Option<ValueSpec>,
    routing_key: Option<ValueSpec>,
    api_key: Option<ValueSpec>,
    token: Option<ValueSpec>,
    from: Option<ValueSpec>,
    #[serde(default)]
    to: Vec<ValueSpec>,
    subject: Option<ValueSpec>,
    ca_file: Option<ValueSpec>,
    #[serde(default)]
    on: Vec<String>,
    send_on_resolved: Option<bool>,
    repeat: Option<String>,
}

/// What reading a channel's values may give: the value, or (for a reader that needs
/// no credentials) `None` when it could not be read.
pub(crate) type Read<'a> = &'a mut dyn FnMut(&ValueSpec) -> Result<Option<String>, String>;

/// Checks the channels of a file; `read` reads a value that may be a credential.
/// Channels whose URL could not be read (see [`Read`]) are left out.
pub(crate) fn channels(specs: Vec<ChannelSpec>, read: Read<'_>) -> Result<Vec<Channel>, String> {
    let mut channels: Vec<Channel> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let at = format!("notify[{i}]");
        let name = match spec.name {
            Some(name) => {
                let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
                if name.is_empty() || name.len() > 100 || !name.chars().all(allowed) {
                    return Err(format!(
                        "{at}: name must be 1 to 100 letters, digits, '.', '_' or '-'"
                    ));
                }
                if channels.iter().any(|c| c.name == name) {
                    return Err(format!("{at} ({name}): name used twice"));
                }
                name
            }
            None => (1..)
                .map(|n| match n {
                    1 => spec.kind.as_str().to_owned(),
                    n => format!("{}-{n}", spec.kind.as_str()),
                })
                .find(|candidate| channels.iter().all(|c| c.name != *candidate))
                .unwrap_or_default(),
        };
        let at = format!("{at} ({name})");
        for state in &spec.on {
            if !matches!(
                state.as_str(),
                "up" | "down" | "degraded" | "burn" | "partial"
            ) {
                return Err(format!(
                    "{at}: on: {state:?} is not up, down, degraded, burn or partial"
                ));
            }
        }
        let raw = match (&spec.url, spec.kind.default_url()) {
            (Some(url), _) => read(url).map_err(|e| format!("{at}: url: {e}"))?,
            (None, Some(default)) => Some(default.to_owned()),
            (None, None) => {
                return Err(format!(
                    "{at}: a {} channel needs a url",
                    spec.kind.as_str()
                ));
            }
        };
        let Some(raw) = raw else { continue };
        // A receiver's URL is a credential as a whole: never quoted back.
        let url = match Url::parse(&raw) {
            Ok(u) if spec.kind == Kind::Email => u,
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u,
            Ok(u) => {
                return Err(format!(
                    "{at}: url must be an http(s) URL, not {}:",
                    u.scheme()
                ));
            }
            Err(e) => return Err(format!("{at}: url is not a URL: {e}")),
        };
        let keys = [
            ("routing_key", &spec.routing_key),
            ("api_key", &spec.api_key),
            ("token", &spec.token),
        ];
        let mut key = None;
        for (field, value) in keys {
            let Some(value) = value else { continue };
            let wanted = spec.kind.key_name() == Some(field)
                || (spec.kind == Kind::Ntfy && field == "token");
            if !wanted {
                return Err(format!(
                    "{at}: a {} channel takes no {field}",
                    spec.kind.as_str()
                ));
            }
            // Unreadable for a reader that needs none: stands as unknown.
            key = read(value)
                .map_err(|e| format!("{at}: {field}: {e}"))?
                .map(crate::config::Secret::from);
        }
        if let Some(field) = spec.kind.key_name()
            && key.is_none()
            && spec_key_missing(&keys, field)
        {
            return Err(format!(
                "{at}: a {} channel needs {field}",
                spec.kind.as_str()
            ));
        }
        let mail = match spec.kind {
            Kind::Email => {
                let mut one = |field: &str, value: &Option<ValueSpec>| match value {
                    Some(v) => read(v).map_err(|e| format!("{at}: {field}: {e}")),
                    None => Ok(None),
                };
                let from = one("from", &spec.from)?;
                let subject = one("subject", &spec.subject)?;
                let ca_file = one("ca_file", &spec.ca_file)?;
                let mut to = Vec::with_capacity(spec.to.len());
                for value in &spec.to {
                    to.push(read(value).map_err(|e| format!("{at}: to: {e}"))?);
                }
                // A value a reader without credentials could not read: left out, as
                // an unreadable URL is.
                let unread = |v: &Option<ValueSpec>, r: &Option<String>| v.is_some() && r.is_none();
                if unread(&spec.from, &from)
                    || unread(&spec.subject, &subject)
                    || unread(&spec.ca_file, &ca_file)
                    || to.iter().any(Option::is_none)
                {
                    continue;
                }
                let to = to.into_iter().flatten().collect();
                Some(
                    email::check(&url, from, to, subject, ca_file)
                        .map_err(|e| format!("{at}: {e}"))?,
                )
            }
            _ => {
                let given = [
                    ("from", spec.from.is_some()),
                    ("to", !spec.to.is_empty()),
                    ("subject", spec.subject.is_some()),
                    ("ca_file", spec.ca_file.is_some()),
                ];
                if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
                    return Err(format!(
                        "{at}: a {} channel takes no {field}",
                        spec.kind.as_str()
                    ));
                }
                None
            }
        };
        channels.push(Channel {
            name,
            kind: spec.kind,
            url,
            key,
            on: spec.on,
            send_on_resolved: spec.send_on_resolved.unwrap_or(true),
            repeat: spec
                .repeat
                .map(|text| repeat(&text))
                .transpose()
                .map_err(|e| format!("{at}: {e}"))?,
            mail,
        });
    }
    Ok(channels)
}

/// The shortest reminder period.
pub const MIN_REPEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// A reminder period, written like `1h` or `30m`: at least [`MIN_REPEAT`].
pub(crate) fn repeat(text: &str) -> Result<std::time::Duration, String> {
    let period = humantime::parse_duration(text.trim())
        .map_err(|e| format!("repeat: {text:?} is not a duration such as 30m or 1h ({e})"))?;
    if period < MIN_REPEAT {
        return Err(format!("repeat: {text:?} is shorter than 10s"));
    }
    Ok(period)
}

/// Whether the file gives no value for `field`.
fn spec_key_missing(keys: &[(&str, &Option<ValueSpec>)], field: &str) -> bool {
    keys.iter()
        .any(|(name, value)| *name == field && value.is_none())
}
