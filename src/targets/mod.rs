//! The user's own services: the targets file, what a probe of a target finds, and the
//! notifications its changes send.
//!
//! The file (YAML, `--targets` / `TARGETS_FILE`) lists targets and webhooks:
//!
//! ```yaml
//! targets:
//!   - name: payments
//!     url: https://payments.internal/healthz   # http(s), tcp, dns, grpc(s), ws(s), tls, icmp
//!     group: shop
//!     interval: 30s
//!     timeout: 2s
//!     expect: {status: [200], max_response_time: 1s, body_contains: ok,
//!              json: {"$.status": UP}, cert_expires_in: 14d}
//!     failure_threshold: 3
//!     success_threshold: 1
//!     headers: {Authorization: "Bearer ${PAYMENTS_TOKEN}"}
//!     basic_auth: {username: svc, password: {file: /etc/svc/payments-password}}
//!     locations: [eu-west, us-east]   # where it is probed from ([`locations`])
//!     quorum: 2                       # how many must see it down; default a majority
//!   - {name: ldaps, url: "tls://ldap.internal:636", ca_file: /etc/svc/ca.pem,
//!      expect: {cert_expires_in: 14d, names: [ldap.internal]}}
//! notify:
//!   - url: http://alerts.internal/hook
//!   - {url: "${SLACK_WEBHOOK_URL}", kind: slack}
//!     slo: {objective: 99.9%, window: 30d}   # or on its group
//! groups:
//!   shop: {notify: [slack], slo: {objective: 99.5%, window: 30d}}
//! maintenance:
//!   - {name: db-upgrade, targets: [payments], start: "2026-12-01T02:00:00Z", duration: 2h}
//!   - {name: weekly, groups: [shop], every: [sun], time: "03:00",
//!      timezone: Europe/Berlin, duration: 30m}
//! status_pages:                 # public pages at /status/{slug} (see pages)
//!   - {slug: shop, title: Example Shop status, groups: [shop], targets: [payments]}
//! ```
//!
//! During a maintenance window ([`maintenance`]) its targets are still probed, but their state shows as
//! `maintenance` (with the window's name and end), nobody is told of their changes,
//! their uptime leaves the window's probes out and an incident opened in it names the
//! window. A target still down when the window ends is told as `down` then, once.
//!
//! Unknown keys are errors (a typo must not silently drop a condition). [`watch`]
//! reloads the file when it changes; a bad one is logged and the last good one stays.
//!
//! Credentials (the values of `url`, `headers`, `basic_auth` and a webhook's `url`)
//! can come from the environment or from files ([`value`]). Wherever a target's URL is
//! shown it is [`Endpoint::shown`], with its credentials masked; header values and
//! passwords are never shown, and a webhook is shown by its origin only.

pub mod blackbox;
pub mod check;
pub mod history;
pub mod locations;
pub mod maintenance;
pub mod modules;
pub mod notify;
pub mod pages;
pub mod slo;
pub mod state;
pub mod value;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use serde::Deserialize;
use serde_json_path::JsonPath;
use url::Url;

use crate::config::Secret;
use crate::redact;
use crate::service::Service;
use crate::targets::maintenance::{Window, WindowSpec};
use crate::targets::notify::Channel;
use crate::targets::notify::spec::ChannelSpec;
use crate::targets::state::Thresholds;
use crate::targets::value::{Credentials, Env, ValueSpec};

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
    /// The channels changes of state are sent to.
    pub notify: Vec<Channel>,
    /// The channels each group's targets use, by group.
    pub groups: BTreeMap<String, Vec<String>>,
    /// The files credentials were read from: a change to one is a change of the
    /// targets.
    pub files: Vec<PathBuf>,
    /// The maintenance windows, in file order.
    pub maintenance: Vec<Window>,
    /// The modules of `/probe` ([`modules`]), by name.
    pub modules: BTreeMap<String, modules::Module>,
    /// The public status pages ([`pages`]), in file order.
    pub status_pages: Vec<pages::StatusPage>,
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
    /// Credentials sent with each probe.
    pub auth: Auth,
    /// The channels it uses, by name; `None`: its group's, else every one.
    pub notify: Option<Vec<String>>,
    /// While it is down, a reminder each period, to every channel it uses.
    pub repeat: Option<Duration>,
    /// Its service level objective ([`slo`]): its own, else its group's.
    pub slo: Option<slo::Slo>,
    /// Where it is probed from ([`locations`]); `None`: every location with a live
    /// worker.
    pub locations: Option<Vec<String>>,
    /// Locations that must see it down for it to be down; `None`: a majority.
    pub quorum: Option<usize>,
}

/// Credentials an HTTP target is probed with (besides any in its URL).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Auth {
    /// Headers sent with each probe; their values are marked sensitive, so they
    /// never show in a `Debug`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name and password for HTTP basic authentication.
    pub basic: Option<(Secret, Secret)>,
}

/// Where a target is. Its `Debug` shows it as [`Endpoint::shown`].
#[derive(Clone, PartialEq)]
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
    /// One DNS query to one server.
    Dns(check::dns::Query),
    /// The gRPC health service of a server.
    Grpc(check::grpc::Health),
    /// A WebSocket, opened (and optionally spoken to).
    Ws(check::ws::Socket),
    /// A TLS port, shaken hands with.
    Tls(check::tls::Port),
    /// A host, sent ICMP echo requests.
    Icmp(check::icmp::Echo),
}

impl Endpoint {
    /// The endpoint as it may be shown anywhere: its credentials masked
    /// ([`redact::url`]).
    pub fn shown(&self) -> String {
        match self {
            Endpoint::Http(url) => redact::url(url),
            Endpoint::Tcp { host, port } => format!("tcp://{host}:{port}"),
            Endpoint::Dns(query) => query.shown(),
            Endpoint::Grpc(health) => health.shown(),
            Endpoint::Ws(socket) => redact::url(&socket.url),
            Endpoint::Tls(port) => port.shown(),
            Endpoint::Icmp(echo) => echo.shown(),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
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
    /// DNS: the response code required; `None`: NOERROR with at least one answer.
    pub rcode: Option<String>,
    /// DNS: values the answers must include.
    pub answers_contain: Vec<String>,
    /// WebSocket: a text message sent once the socket is open.
    pub send: Option<String>,
    /// WebSocket: text a message received must contain.
    pub receive_contains: Option<String>,
    /// TLS: names the certificate must cover.
    pub names: Vec<String>,
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
    notify: Vec<ChannelSpec>,
    #[serde(default)]
    groups: BTreeMap<String, GroupSpec>,
    #[serde(default)]
    maintenance: Vec<WindowSpec>,
    #[serde(default)]
    modules: BTreeMap<String, modules::ModuleSpec>,
    #[serde(default)]
    status_pages: Vec<pages::PageSpec>,
}

/// What a group's targets share.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    /// The channels its targets use (unless a target names its own).
    notify: Option<Vec<String>>,
    /// Its targets' objective (unless a target states its own).
    slo: Option<slo::SloSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    name: String,
    url: ValueSpec,
    group: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    expect: ExpectSpec,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    #[serde(default)]
    headers: BTreeMap<String, ValueSpec>,
    basic_auth: Option<BasicAuthSpec>,
    ca_file: Option<PathBuf>,
    notify: Option<Vec<String>>,
    repeat: Option<String>,
    slo: Option<slo::SloSpec>,
    locations: Option<Vec<String>>,
    quorum: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuthSpec {
    username: ValueSpec,
    password: ValueSpec,
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
    rcode: Option<String>,
    #[serde(default)]
    answers_contain: Vec<String>,
    send: Option<String>,
    receive_contains: Option<String>,
    #[serde(default)]
    names: Vec<String>,
}

impl Targets {
    /// Parses and checks a targets file; `interval` is the interval of targets that
    /// name none; `${NAME}` comes from the process environment. The error names the
    /// target and key at fault, never a credential.
    pub fn parse(text: &str, interval: Duration) -> Result<Self, String> {
        Self::parse_with(text, interval, &value::process_env, Credentials::Required)
    }

    /// [`Targets::parse`], with `${NAME}` looked up in `env`; with
    /// [`Credentials::Optional`], a credential that cannot be read stands as `***`
    /// and a webhook whose URL then is none is left out.
    pub fn parse_with(
        text: &str,
        interval: Duration,
        env: Env<'_>,
        need: Credentials,
    ) -> Result<Self, String> {
        let spec: FileSpec = if text.trim().is_empty() {
            FileSpec {
                targets: Vec::new(),
                notify: Vec::new(),
                groups: BTreeMap::new(),
                maintenance: Vec::new(),
                modules: BTreeMap::new(),
                status_pages: Vec::new(),
            }
        } else {
            serde_saphyr::from_str(text).map_err(|e| syntax(&e.to_string()))?
        };
        if spec.targets.len() > MAX_TARGETS {
            return Err(format!(
                "{} targets, more than the {MAX_TARGETS} allowed",
                spec.targets.len()
            ));
        }
        let mut group_slos = BTreeMap::new();
        for (group, spec) in &spec.groups {
            if let Some(slo) = &spec.slo {
                let slo = slo.check().map_err(|e| format!("groups.{group}: {e}"))?;
                group_slos.insert(group.clone(), slo);
            }
        }
        let mut names = HashSet::new();
        let mut files = Vec::new();
        let mut targets = Vec::with_capacity(spec.targets.len());
        for (i, t) in spec.targets.into_iter().enumerate() {
            let at = format!("targets[{i}] ({})", t.name);
            let mut target = Target::check(t, interval, &mut |spec| {
                let resolved = spec.resolve(env, need)?;
                files.extend(resolved.file);
                Ok(resolved.value)
            })
            .map_err(|e| format!("{at}: {e}"))?;
            if !names.insert(target.name.clone()) {
                return Err(format!("{at}: name used twice"));
            }
            if target.slo.is_none() {
                target.slo = target
                    .group
                    .as_ref()
                    .and_then(|g| group_slos.get(g))
                    .copied();
            }
            targets.push(target);
        }
        let notify = notify::spec::channels(spec.notify, &mut |value| {
            let resolved = value.resolve(env, need)?;
            files.extend(resolved.file);
            Ok(resolved.complete.then_some(resolved.value))
        })?;
        let groups: BTreeMap<String, Vec<String>> = spec
            .groups
            .into_iter()
            .filter_map(|(g, spec)| spec.notify.map(|notify| (g, notify)))
            .collect();
        // A reader without credentials may have left channels out: the workers check.
        if need == Credentials::Required {
            let known = |at: &str, names: &[String]| match names
                .iter()
                .find(|n| notify.iter().all(|c| c.name != **n))
            {
                Some(unknown) => Err(format!("{at}: no channel is named {unknown:?}")),
                None => Ok(()),
            };
            for (group, names) in &groups {
                known(&format!("groups.{group}.notify"), names)?;
            }
            for target in &targets {
                if let Some(names) = &target.notify {
                    known(&format!("targets ({}): notify", target.name), names)?;
                }
            }
        }
        let group_named = |group: &str| {
            groups.contains_key(group) || targets.iter().any(|t| t.group.as_deref() == Some(group))
        };
        let maintenance = maintenance::windows(
            spec.maintenance,
            &|name| targets.iter().any(|t| t.name == name),
            &group_named,
        )?;
        let status_pages = pages::pages(spec.status_pages, &targets, &group_named)?;
        Ok(Targets {
            targets,
            notify,
            groups,
            files,
            maintenance,
            modules: modules::modules(spec.modules)?,
            status_pages,
        })
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
    /// Checks `spec`; `resolve` reads a value that may be a credential.
    fn check(
        spec: TargetSpec,
        default_interval: Duration,
        resolve: &mut dyn FnMut(&ValueSpec) -> Result<String, String>,
    ) -> Result<Self, String> {
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
        let mut endpoint = endpoint(&resolve(&spec.url).map_err(|e| format!("url: {e}"))?)?;
        let auth = auth(spec.headers, spec.basic_auth, resolve)?;
        if !matches!(endpoint, Endpoint::Http(_)) && auth != Auth::default() {
            return Err(format!(
                "a {} target takes no headers or basic_auth",
                check::kind(&endpoint)
            ));
        }
        if let Some(file) = spec.ca_file {
            check::trust(&mut endpoint, file)?;
        }
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
            rcode: e.rcode,
            answers_contain: e.answers_contain,
            send: e.send,
            receive_contains: e.receive_contains,
            names: e.names,
        };
        check::fits(&endpoint, &expect)?;
        let (locations, quorum) = where_from(spec.locations, spec.quorum)?;
        Ok(Target {
            name,
            group: spec.group,
            endpoint,
            interval,
            timeout,
            expect,
            thresholds,
            auth,
            notify: spec.notify,
            repeat: spec.repeat.map(|t| notify::spec::repeat(&t)).transpose()?,
            slo: spec.slo.map(|s| s.check()).transpose()?,
            locations,
            quorum,
        })
    }
}

/// A target's `locations` and `quorum`, checked: known-good names, none twice, and a
/// quorum that its listed locations can reach.
fn where_from(
    listed: Option<Vec<String>>,
    quorum: Option<usize>,
) -> Result<(Option<Vec<String>>, Option<usize>), String> {
    if let Some(names) = &listed {
        if names.is_empty() {
            return Err(
                "locations: an empty list probes from nowhere; leave it out for every location"
                    .into(),
            );
        }
        for (i, name) in names.iter().enumerate() {
            locations::check_name(name).map_err(|e| format!("locations: {e}"))?;
            if names[..i].contains(name) {
                return Err(format!("locations: {name:?} listed twice"));
            }
        }
    }
    match (quorum, &listed) {
        (Some(0), _) => Err("quorum: 0 would call it down from nowhere; at least 1".into()),
        (Some(q), Some(names)) if q > names.len() => Err(format!(
            "quorum: {q} is more than the {} locations listed",
            names.len()
        )),
        (Some(q), None) if q > 100 => Err(format!("quorum: {q} is more than 100")),
        _ => Ok((listed, quorum)),
    }
}

fn auth(
    headers: BTreeMap<String, ValueSpec>,
    basic: Option<BasicAuthSpec>,
    resolve: &mut dyn FnMut(&ValueSpec) -> Result<String, String>,
) -> Result<Auth, String> {
    let headers = headers
        .into_iter()
        .map(|(name, spec)| {
            let key = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: {name:?} is no HTTP header name"))?;
            let text = resolve(&spec).map_err(|e| format!("headers.{name}: {e}"))?;
            // The value is never quoted back: it may be the credential.
            let mut value = HeaderValue::try_from(text)
                .map_err(|_| format!("headers.{name}: the value is no valid header value"))?;
            value.set_sensitive(true);
            Ok((key, value))
        })
        .collect::<Result<_, String>>()?;
    let basic = match basic {
        None => None,
        Some(b) => {
            let username = resolve(&b.username).map_err(|e| format!("basic_auth.username: {e}"))?;
            let password = resolve(&b.password).map_err(|e| format!("basic_auth.password: {e}"))?;
            Some((Secret::from(username), Secret::from(password)))
        }
    };
    Ok(Auth { headers, basic })
}

fn endpoint(raw: &str) -> Result<Endpoint, String> {
    // Quoted back masked: the URL may carry a credential.
    let shown = redact::text(raw);
    let url = Url::parse(raw).map_err(|e| format!("url {shown:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(Endpoint::Http(url)),
        "tcp" => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) if url.path().is_empty() || url.path() == "/" => {
                Ok(Endpoint::Tcp {
                    host: host.trim_matches(['[', ']']).to_owned(),
                    port,
                })
            }
            _ => Err(format!("url {shown:?}: a tcp URL is tcp://host:port")),
        },
        "dns" | "grpc" | "grpcs" | "ws" | "wss" | "tls" | "icmp" => {
            check::endpoint(url).map_err(|e| format!("url {shown:?}: {e}"))
        }
        _ => Err(format!(
            "url {shown:?}: the scheme must be http, https, tcp, dns, grpc, grpcs, ws, wss, tls or icmp"
        )),
    }
}

/// A parser's message without what could quote a credential: its first line (where
/// and what; not the excerpt of the file below it), with quoted values masked.
fn syntax(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message);
    let mut shown = String::with_capacity(first.len());
    for (i, part) in first.split('"').enumerate() {
        if i > 0 {
            shown.push('"');
        }
        // Odd parts stand between quotes.
        shown.push_str(if i % 2 == 1 { redact::MASK } else { part });
    }
    shown
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
mod tests;
