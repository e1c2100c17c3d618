//! The user's own services: the targets file, what a probe of a target finds, and the
//! notifications its changes send.
//!
//! The file (YAML, `--targets` / `TARGETS_FILE`) lists targets and webhooks:
//!
//! ```yaml
//! targets:
//!   - name: payments
//!     url: https://payments.internal/healthz   # http, https or tcp://host:port
//!     group: shop
//!     interval: 30s
//!     timeout: 2s
//!     expect: {status: [200], max_response_time: 1s, body_contains: ok,
//!              json: {"$.status": UP}, cert_expires_in: 14d}
//!     failure_threshold: 3
//!     success_threshold: 1
//! notify:
//!   - url: http://alerts.internal/hook
//!   - {url: "https://hooks.slack.com/services/...", kind: slack}
//! ```
//!
//! Unknown keys are errors (a typo must not silently drop a condition). [`watch`]
//! reloads the file when it changes; a bad one is logged and the last good one stays.

pub mod check;
pub mod notify;
pub mod state;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json_path::JsonPath;
use url::Url;

use crate::service::Service;
use crate::targets::state::Thresholds;

/// Most targets one file may list.
pub const MAX_TARGETS: usize = 10_000;
/// Largest targets file read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// What a target's interval may be.
pub const INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);
/// What a target's timeout may be.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
/// Timeout of a target that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A targets file, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// The targets, in file order.
    pub targets: Vec<Target>,
    /// Where every change of state is sent.
    pub notify: Vec<Notifier>,
}

/// One endpoint to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Unique; letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Groups targets on the page.
    pub group: Option<String>,
    /// What is probed.
    pub endpoint: Endpoint,
    /// Time between probes.
    pub interval: Duration,
    /// How long a probe waits.
    pub timeout: Duration,
    /// What an answer must be.
    pub expect: Expect,
    /// Consecutive results that change its state.
    pub thresholds: Thresholds,
}

/// Where a target is.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// An HTTP or HTTPS URL, fetched with GET.
    Http(Url),
    /// A TCP port, connected to.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Endpoint {
    /// The endpoint as the file wrote it.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Http(url) => url.to_string(),
            Endpoint::Tcp { host, port } => format!("tcp://{host}:{port}"),
        }
    }
}

/// Conditions on a target's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    /// Accepted status codes; empty: any 2xx.
    pub status: Vec<u16>,
    /// Slowest acceptable answer.
    pub max_response_time: Option<Duration>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// JSONPath queries on the body and the value each must find.
    pub json: Vec<(JsonPath, String, serde_json::Value)>,
    /// Degraded when the certificate expires sooner than this.
    pub cert_expires_in: Option<Duration>,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    /// The receiver.
    pub url: Url,
    /// The body's format.
    pub kind: HookKind,
}

/// The format of a notification's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// `{id, target, state, previous, since, reason, url, duration_s}`.
    #[default]
    Webhook,
    /// Slack's incoming-webhook format: `{text}`.
    Slack,
}

/// Why a targets file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// What is wrong, and where.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    targets: Vec<TargetSpec>,
    #[serde(default)]
    notify: Vec<NotifySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    name: String,
    url: String,
    group: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    expect: ExpectSpec,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    #[serde(default)]
    status: Vec<u16>,
    max_response_time: Option<String>,
    body_contains: Option<String>,
    #[serde(default)]
    json: BTreeMap<String, serde_json::Value>,
    cert_expires_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySpec {
    url: String,
    #[serde(default)]
    kind: HookKind,
}

impl Targets {
    /// Parses and checks a targets file; `interval` is the interval of targets that
    /// name none. The error names the target and key at fault.
    pub fn parse(text: &str, interval: Duration) -> Result<Self, String> {
        let spec: FileSpec = if text.trim().is_empty() {
            FileSpec {
                targets: Vec::new(),
                notify: Vec::new(),
            }
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())?
        };
        if spec.targets.len() > MAX_TARGETS {
            return Err(format!(
                "{} targets, more than the {MAX_TARGETS} allowed",
                spec.targets.len()
            ));
        }
        let mut names = HashSet::new();
        let mut targets = Vec::with_capacity(spec.targets.len());
        for (i, t) in spec.targets.into_iter().enumerate() {
            let at = format!("targets[{i}] ({})", t.name);
            let target = Target::check(t, interval).map_err(|e| format!("{at}: {e}"))?;
            if !names.insert(target.name.clone()) {
                return Err(format!("{at}: name used twice"));
            }
            targets.push(target);
        }
        let notify = spec
            .notify
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let url = Url::parse(&n.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| format!("notify[{i}]: url {:?} is not an http(s) URL", n.url))?;
                Ok(Notifier { url, kind: n.kind })
            })
            .collect::<Result<_, String>>()?;
        Ok(Targets { targets, notify })
    }

    /// The target named `name`.
    pub fn get(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The names, in file order.
    pub fn names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }
}

impl Target {
    fn check(spec: TargetSpec, default_interval: Duration) -> Result<Self, String> {
        let name = spec.name;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > 100 || !name.chars().all(allowed) {
            return Err("name must be 1 to 100 letters, digits, '.', '_' or '-'".into());
        }
        if Service::ALL.iter().any(|s| s.as_str() == name) {
            return Err("name is one of svc's own services".into());
        }
        let interval = match spec.interval {
            Some(text) => duration("interval", &text)?,
            None => default_interval,
        };
        let timeout = match spec.timeout {
            Some(text) => duration("timeout", &text)?,
            None => DEFAULT_TIMEOUT.min(interval),
        };
        in_range("interval", interval, &INTERVAL_RANGE)?;
        in_range("timeout", timeout, &TIMEOUT_RANGE)?;
        let thresholds = Thresholds {
            failure: threshold("failure_threshold", spec.failure_threshold, 2)?,
            success: threshold("success_threshold", spec.success_threshold, 1)?,
        };
        let endpoint = endpoint(&spec.url)?;
        let e = spec.expect;
        if let Some(code) = e.status.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(format!("expect.status: {code} is no HTTP status"));
        }
        let json = e
            .json
            .into_iter()
            .map(|(path, value)| {
                JsonPath::parse(&path)
                    .map(|parsed| (parsed, path.clone(), value))
                    .map_err(|err| format!("expect.json: {path:?} is no JSONPath: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expect = Expect {
            status: e.status,
            max_response_time: e
                .max_response_time
                .map(|t| duration("expect.max_response_time", &t))
                .transpose()?,
            body_contains: e.body_contains,
            json,
            cert_expires_in: e
                .cert_expires_in
                .map(|t| duration("expect.cert_expires_in", &t))
                .transpose()?,
        };
        if matches!(endpoint, Endpoint::Tcp { .. })
            && (!expect.status.is_empty()
                || expect.body_contains.is_some()
                || !expect.json.is_empty()
                || expect.cert_expires_in.is_some())
        {
            return Err("a tcp target takes only expect.max_response_time".into());
        }
        Ok(Target {
            name,
            group: spec.group,
            endpoint,
            interval,
            timeout,
            expect,
            thresholds,
        })
    }
}

fn endpoint(raw: &str) -> Result<Endpoint, String> {
    let url = Url::parse(raw).map_err(|e| format!("url {raw:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(Endpoint::Http(url)),
        "tcp" => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) if url.path().is_empty() || url.path() == "/" => {
                Ok(Endpoint::Tcp {
                    host: host.trim_matches(['[', ']']).to_owned(),
                    port,
                })
            }
            _ => Err(format!("url {raw:?}: a tcp URL is tcp://host:port")),
        },
        _ => Err(format!(
            "url {raw:?}: the scheme must be http, https or tcp"
        )),
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{key}: {text:?} is not a duration such as 30s or 14d ({e})"))
}

fn in_range(
    key: &str,
    value: Duration,
    range: &std::ops::RangeInclusive<Duration>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key}: {} is outside {} to {}",
            humantime::format_duration(value),
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        ))
    }
}

fn threshold(key: &str, value: Option<u32>, default: u32) -> Result<u32, String> {
    match value.unwrap_or(default) {
        n @ 1..=100 => Ok(n),
        n => Err(format!("{key}: {n} is outside 1 to 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
targets:
  - name: payments
    url: https://payments.internal/healthz
    interval: 30s
    timeout: 2s
    expect: {status: [200], max_response_time: 1s, body_contains: "ok", json: {"$.status": "UP"}, cert_expires_in: 14d}
    failure_threshold: 3
    success_threshold: 1
  - name: db
    url: tcp://10.0.0.5:5432
notify:
  - url: http://alerts.internal/hook
  - url: https://hooks.slack.com/services/T/B/X
    kind: slack
"#;
        let parsed = Targets::parse(text, TEN).expect("valid");
        assert_eq!(parsed.targets.len(), 2);
        let payments = &parsed.targets[0];
        assert_eq!(payments.interval, Duration::from_secs(30));
        assert_eq!(payments.thresholds.failure, 3);
        assert_eq!(payments.expect.json.len(), 1);
        assert_eq!(
            payments.expect.cert_expires_in,
            Some(Duration::from_secs(14 * 86400))
        );
        let db = &parsed.targets[1];
        assert_eq!(db.interval, TEN);
        assert_eq!(db.thresholds.failure, 2);
        assert!(matches!(&db.endpoint, Endpoint::Tcp { port: 5432, .. }));
        assert_eq!(parsed.notify[1].kind, HookKind::Slack);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("targets: [{name: a, url: ftp://x}]", "scheme"),
            (
                "targets: [{name: a, url: http://x, interval: soon}]",
                "interval",
            ),
            ("targets: [{name: a, url: http://x, expct: {}}]", "expct"),
            ("targets: [{name: redis, url: http://x}]", "own services"),
            (
                "targets: [{name: a, url: http://x}, {name: a, url: http://y}]",
                "twice",
            ),
            ("targets: [{name: 'a b', url: http://x}]", "name"),
            ("targets: [{name: a, url: 'tcp://x'}]", "tcp://host:port"),
            (
                "targets: [{name: a, url: http://x, failure_threshold: 0}]",
                "failure_threshold",
            ),
            (
                "targets: [{name: a, url: http://x, expect: {json: {'$[': 1}}}]",
                "JSONPath",
            ),
            ("notify: [{url: 'mailto:a@b'}]", "notify[0]"),
            ("targets: [", ""),
        ];
        for (text, needle) in cases {
            let err = Targets::parse(text, TEN).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn an_empty_file_lists_nothing() {
        assert_eq!(Targets::parse("", TEN), Ok(Targets::default()));
        assert_eq!(Targets::parse("targets: []\n", TEN), Ok(Targets::default()));
    }
}
