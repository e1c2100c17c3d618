//! Modules of the blackbox-compatible `GET /probe?module=M&target=T`, declared in the
//! targets file:
//!
//! ```yaml
//! modules:
//!   http_2xx:
//!     type: http              # http, tcp, dns, grpc, tls, ws, icmp
//!     timeout: 5s
//!     expect: {status: [200]} # the same keys as a target's
//!     allow: ["127.0.0.0/8", "*.svc.cluster.local", "status.example.com"]
//! ```
//!
//! A module is a target without an address: `/probe` gives it one ([`Module::target`])
//! and it goes through the same [`check`](super::check) as every target, so a check type
//! a target can have is one a module can have. The address is taken as blackbox takes
//! it: a URL for `http` (`http://` added when it has no scheme), `host:port` for the
//! other types (`<type>://` added when it has no scheme).
//!
//! `allow:` keeps `/probe` from being an open proxy. A target is probed only when its
//! host is one of the names listed, ends in a `*.suffix` listed (`*.example.com` admits
//! `a.example.com`, not `example.com`), or is an address inside a CIDR listed. A name
//! admitted by no name pattern is resolved and admitted only when every address it
//! resolves to is inside a CIDR listed, so a DNS name cannot lead the probe to an
//! address the module does not allow; the worker then probes those addresses (see
//! `roles::worker::probe`). An empty list admits nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use url::{Host, Url};

use super::value::ValueSpec;
use super::{Auth, Endpoint, ExpectSpec, Target, TargetSpec, endpoint};

/// The check types a module may name: the URL schemes of its targets, and a target
/// of the type its conditions are checked against when the file is read.
const TYPES: &[(&str, &[&str], &str)] = &[
    ("http", &["http", "https"], "http://127.0.0.1/"),
    ("tcp", &["tcp"], "tcp://127.0.0.1:1"),
    ("dns", &["dns"], "dns://127.0.0.1:53/example.com?type=A"),
    ("grpc", &["grpc", "grpcs"], "grpc://127.0.0.1:1"),
    ("tls", &["tls"], "tls://127.0.0.1:1"),
    ("ws", &["ws", "wss"], "ws://127.0.0.1:1/"),
    ("icmp", &["icmp"], "icmp://127.0.0.1"),
];

/// A module as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModuleSpec {
    #[serde(rename = "type")]
    kind: String,
    timeout: Option<String>,
    #[serde(default)]
    expect: ExpectSpec,
    #[serde(default)]
    allow: Vec<String>,
}

/// A module, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Its name, the `module` parameter of `/probe`.
    pub name: String,
    /// Its check type (`http`, `tcp`, ...).
    pub kind: &'static str,
    /// The URL schemes its targets may have.
    schemes: &'static [&'static str],
    /// The target it becomes, but for its endpoint.
    template: Target,
    /// What it may probe.
    pub allow: Vec<Allow>,
}

/// One entry of a module's `allow:`.
#[derive(Debug, Clone, PartialEq)]
pub enum Allow {
    /// A host name, lower case.
    Host(String),
    /// `*.suffix`: any name ending in `.suffix`; held with its leading dot.
    Suffix(String),
    /// A network: any address inside it.
    Net(IpNet),
}

/// How a target was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Its host is a name `allow:` lists (or an address it lists as a name).
    ByName,
    /// Every address it stands for is inside a network `allow:` lists: the probe must
    /// go to those addresses, not to what the name resolves to later.
    ByNetwork,
}

/// Why a `/probe` request is not probed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target cannot be a target of the module (400).
    #[error("{0}")]
    Invalid(String),
    /// The target is outside the module's `allow:` (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Checks the `modules:` of a file; errors name the module.
pub(super) fn modules(
    specs: BTreeMap<String, ModuleSpec>,
) -> Result<BTreeMap<String, Module>, String> {
    specs
        .into_iter()
        .map(|(name, spec)| {
            let module = Module::check(&name, spec).map_err(|e| format!("modules.{name}: {e}"))?;
            Ok((name, module))
        })
        .collect()
}

impl Module {
    fn check(name: &str, spec: ModuleSpec) -> Result<Self, String> {
        let Some(&(kind, schemes, sample)) = TYPES.iter().find(|(t, ..)| *t == spec.kind) else {
            let known: Vec<&str> = TYPES.iter().map(|(t, ..)| *t).collect();
            return Err(format!(
                "type: {:?} is none of {}",
                spec.kind,
                known.join(", ")
            ));
        };
        let allow = spec
            .allow
            .iter()
            .map(|a| allow(a).map_err(|e| format!("allow: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let target = TargetSpec {
            name: name.to_owned(),
            url: ValueSpec::Text(sample.to_owned()),
            group: None,
            interval: None,
            timeout: spec.timeout,
            expect: spec.expect,
            failure_threshold: None,
            success_threshold: None,
            headers: BTreeMap::new(),
            basic_auth: None,
            notify: None,
            repeat: None,
            slo: None,
            ca_file: None,
            locations: None,
            quorum: None,
        };
        let template = Target::check(target, super::TIMEOUT_RANGE.end().to_owned(), &mut |_| {
            Ok(sample.to_owned())
        })?;
        Ok(Module {
            name: name.to_owned(),
            kind,
            schemes,
            template,
            allow,
        })
    }

    /// The module's own timeout.
    pub fn timeout(&self) -> Duration {
        self.template.timeout
    }

    /// The target `/probe` probes for the `target` parameter `raw`, and its host; not
    /// yet checked against `allow:` ([`Module::admits`]).
    pub fn target(&self, raw: &str) -> Result<(Target, Host<String>), Refusal> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Refusal::Invalid("the target parameter is empty".into()));
        }
        let text = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("{}://{raw}", self.schemes[0])
        };
        let url = Url::parse(&text)
            .map_err(|e| Refusal::Invalid(format!("target {raw:?} is no address: {e}")))?;
        if !self.schemes.contains(&url.scheme()) {
            return Err(Refusal::Invalid(format!(
                "target {raw:?}: module {} of type {} probes {} targets",
                self.name,
                self.kind,
                self.schemes.join(" or ")
            )));
        }
        let host = url
            .host()
            .map(|h| h.to_owned())
            .ok_or_else(|| Refusal::Invalid(format!("target {raw:?} names no host")))?;
        let endpoint: Endpoint =
            endpoint(&text).map_err(|e| Refusal::Invalid(format!("target: {e}")))?;
        let mut target = self.template.clone();
        target.endpoint = endpoint;
        target.auth = Auth::default();
        Ok((target, host))
    }

    /// Whether the module may probe `host`, which resolved to `addresses` (empty when
    /// it did not resolve; an address resolves to itself), and how; `Err` says why not.
    pub fn admits(&self, host: &Host<String>, addresses: &[IpAddr]) -> Result<Admitted, Refusal> {
        let name = match host {
            Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let by_name = self.allow.iter().any(|a| match a {
            Allow::Host(h) => *h == name,
            Allow::Suffix(s) => name.ends_with(s.as_str()),
            Allow::Net(_) => false,
        });
        if by_name {
            return Ok(Admitted::ByName);
        }
        let inside = |ip: &IpAddr| {
            self.allow
                .iter()
                .any(|a| matches!(a, Allow::Net(net) if net.contains(ip)))
        };
        let refuse = |why: String| {
            Err(Refusal::Forbidden(format!(
                "module {} does not allow {name}: {why}",
                self.name
            )))
        };
        if self.allow.is_empty() {
            return refuse("its allow list is empty".into());
        }
        if addresses.is_empty() {
            return refuse("it matches no name allowed and does not resolve".into());
        }
        match addresses.iter().find(|ip| !inside(ip)) {
            None => Ok(Admitted::ByNetwork),
            Some(ip) if matches!(host, Host::Domain(_)) => refuse(format!(
                "it resolves to {ip}, outside every network allowed"
            )),
            Some(_) => refuse("outside every network and name allowed".into()),
        }
    }
}

fn allow(text: &str) -> Result<Allow, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(Allow::Net(net.trunc()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Allow::Net(IpNet::from(ip)));
    }
    let (suffix, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let valid = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    if name.is_empty() || !name.trim_end_matches('.').split('.').all(valid) {
        return Err(format!(
            "{text:?} is no host name, *.suffix or CIDR such as 10.0.0.0/8"
        ));
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    Ok(if suffix {
        Allow::Suffix(format!(".{name}"))
    } else {
        Allow::Host(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Targets;

    fn parse(yaml: &str) -> Result<Targets, String> {
        Targets::parse(yaml, Duration::from_secs(10))
    }

    fn module(yaml: &str) -> Module {
        let targets = parse(&format!("modules: {{m: {yaml}}}")).expect("valid");
        targets.modules["m"].clone()
    }

    #[test]
    fn errors_name_the_module() {
        for (yaml, part) in [
            ("{type: smtp}", "modules.m: type: \"smtp\""),
            ("{type: http, allow: ['10.0.0.0/33']}", "modules.m: allow:"),
            ("{type: http, allow: ['a b']}", "modules.m: allow:"),
            (
                "{type: tcp, expect: {status: [200]}}",
                "modules.m: a tcp target",
            ),
            ("{type: http, timeout: 5 parsecs}", "modules.m: timeout"),
            ("{type: http, colour: red}", "colour"),
        ] {
            let e = parse(&format!("modules: {{m: {yaml}}}")).expect_err(yaml);
            assert!(e.contains(part), "{yaml}: {e}");
        }
    }

    #[test]
    fn a_target_is_taken_as_blackbox_takes_it() {
        let http = module("{type: http, timeout: 3s, expect: {status: [204]}}");
        let (t, host) = http.target("127.0.0.1:8080/health").expect("http");
        assert_eq!(t.endpoint.shown(), "http://127.0.0.1:8080/health");
        assert_eq!(
            (t.timeout, t.expect.status.clone()),
            (Duration::from_secs(3), vec![204])
        );
        assert_eq!(host, Host::<String>::Ipv4([127, 0, 0, 1].into()));
        assert!(http.target("https://a.example/x").is_ok());
        assert!(matches!(http.target("tcp://a:1"), Err(Refusal::Invalid(_))));
        assert!(matches!(http.target(" "), Err(Refusal::Invalid(_))));
        let tcp = module("{type: tcp}");
        let (t, _) = tcp.target("db.internal:5432").expect("tcp");
        assert_eq!(t.endpoint.shown(), "tcp://db.internal:5432");
        assert!(matches!(
            tcp.target("db.internal"),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn only_what_allow_lists_is_admitted() {
        let m = module(
            "{type: http, allow: ['127.0.0.0/8', '*.svc.cluster.local', 'Status.example.com']}",
        );
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let host = |s: &str| Host::parse(s).expect("host");
        let loopback = [ip("127.0.0.1")];
        let by = |h: &str, ips: &[IpAddr]| m.admits(&host(h), ips);
        assert_eq!(by("127.0.0.5", &[ip("127.0.0.5")]), Ok(Admitted::ByNetwork));
        assert_eq!(by("api.ns.svc.cluster.local", &[]), Ok(Admitted::ByName));
        assert_eq!(by("status.example.com.", &[]), Ok(Admitted::ByName));
        assert!(
            m.admits(&host("svc.cluster.local"), &[ip("10.0.0.1")])
                .is_err()
        );
        assert_eq!(by("localhost", &loopback), Ok(Admitted::ByNetwork));
        let e = m
            .admits(
                &host("evil.example"),
                &[ip("127.0.0.1"), ip("169.254.169.254")],
            )
            .expect_err("one address outside");
        assert!(e.to_string().contains("169.254.169.254"), "{e}");
        assert!(matches!(e, Refusal::Forbidden(_)));
        assert!(m.admits(&host("10.1.2.3"), &[ip("10.1.2.3")]).is_err());
        assert!(m.admits(&host("nowhere.example"), &[]).is_err());
        let closed = module("{type: http}");
        let e = closed
            .admits(&host("127.0.0.1"), &loopback)
            .expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
