//! One probe of one target, judged by its conditions:
//! - down: no answer within its timeout, or an answer that fails a condition (status,
//!   response time, body text, JSONPath, or a condition of its type);
//! - degraded: every condition met, but the certificate expires within
//!   `cert_expires_in` (or, for ICMP, some echoes were lost);
//! - healthy: every condition met.
//!
//! http(s) and tcp are probed here; every other type in a module of its own, which
//! judges the conditions of its type and keeps what it found as [`Facts`]:
//!
//! | URL | probe | `expect` keys of its own |
//! |---|---|---|
//! | `dns://[server[:port]]/name?type=A` | [`dns`]: one query to one server | `rcode`, `answers_contain` |
//! | `grpc://host:port[/service]`, `grpcs://` | [`grpc`]: `grpc.health.v1.Health/Check` | - |
//! | `ws://`, `wss://` | [`ws`]: the handshake, a message sent, one received | `send`, `receive_contains` |
//! | `tls://host:port` | [`tls`]: the handshake, the certificate | `names` |
//! | `icmp://host[?count=3]` | [`icmp`]: echo requests | - |
//!
//! Every type takes `max_response_time`; those over TLS take `cert_expires_in` and a
//! target's `ca_file`.

pub mod dns;
pub mod grpc;
pub mod icmp;
pub mod tls;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::tls::TlsInfo;

use super::{Auth, Endpoint, Expect, Target};
use crate::clock::{millis_f64, unix_now};
use crate::service::ServiceState;
use crate::targets::state::TargetSample;

/// Most of a body read to judge it.
pub const MAX_BODY: usize = 1 << 20;

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The sample recorded.
    pub sample: TargetSample,
    /// Unix seconds when the certificate presented expires (https, grpcs, wss, tls).
    pub cert_expires_at: Option<f64>,
    /// What an HTTP answer was made of (http and https only, when one came).
    pub http: Option<HttpFacts>,
    /// What a probe of a type other than http and tcp found besides its verdict.
    pub facts: Facts,
}

/// What an HTTP answer was made of, as `/probe` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFacts {
    /// The status code.
    pub status: u16,
    /// The protocol version, as blackbox writes it (1.1, 2).
    pub version: f64,
    /// Whether the answer came over TLS.
    pub tls: bool,
    /// The `Content-Length` the answer declared.
    pub content_length: Option<u64>,
    /// Bytes of body read (at most [`MAX_BODY`]).
    pub body_length: usize,
    /// From sending the request to the answer's headers: connection and TLS handshake
    /// included, since the client does not tell them apart.
    pub processing: Duration,
    /// From the headers to the body's last byte read.
    pub transfer: Duration,
}

/// What a probe found, by type: each set only by the probe of its type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// DNS: milliseconds from sending the query to its response.
    pub dns_lookup_ms: Option<f64>,
    /// DNS: the response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...).
    pub dns_rcode: Option<String>,
    /// DNS: the answers of the type asked for, as text (`10.1.2.3`, `10 mx.example.`).
    pub dns_answers: Vec<String>,
    /// gRPC: the serving status the health service gave (`SERVING`, `NOT_SERVING`,
    /// `UNKNOWN`, `SERVICE_UNKNOWN`).
    pub grpc_status: Option<String>,
    /// ICMP: echo requests sent.
    pub icmp_sent: Option<u32>,
    /// ICMP: echo requests with no reply within the timeout.
    pub icmp_lost: Option<u32>,
    /// ICMP: the mean round trip of the replies, in milliseconds.
    pub icmp_rtt_ms: Option<f64>,
    /// TLS (tls, grpcs, wss): the names the certificate covers (DNS names and
    /// addresses of its subject alternative names, else its common name).
    pub cert_names: Vec<String>,
    /// TLS: the protocol version agreed (`TLSv1_3`).
    pub tls_version: Option<String>,
}

/// What every probe of one worker shares: its HTTP client and the source address
/// its sockets bind (`--probe-source-ip`). Every check type takes it, so a probe
/// leaves from the worker's own address whatever its type.
#[derive(Debug, Clone)]
pub struct Prober {
    /// The client HTTP probes use ([`client`]).
    pub client: reqwest::Client,
    /// The address every probe's socket binds; `None`: the system's choice.
    pub source: Option<IpAddr>,
}

impl Prober {
    /// Probes whose sockets bind `source`.
    pub fn new(source: Option<IpAddr>) -> Result<Self, reqwest::Error> {
        Ok(Prober {
            client: client(source)?,
            source,
        })
    }

    /// A TCP connection to `host:port` from the source address ([`connect`]).
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        connect(self.source, host, port).await
    }
}

/// A TCP connection to `host:port` from `source` when given: each of the host's
/// addresses of the source's family in turn.
pub async fn connect(
    source: Option<IpAddr>,
    host: &str,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else {
        return tokio::net::TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("no address of {host} reachable from {source}"),
        )
    }))
}

/// The client target probes use: the system's roots (rustls), a fresh connection per
/// probe (so each one sees the certificate, and a connection the target closed while
/// idle never fails a probe), no redirects followed (a redirect is an answer), its
/// sockets bound to `source` when given.
pub fn client(source: Option<IpAddr>) -> Result<reqwest::Client, reqwest::Error> {
    client_builder(source).build()
}

/// [`client`], before it is built (to pin a name to addresses, say).
pub fn client_builder(source: Option<IpAddr>) -> reqwest::ClientBuilder {
    crate::tls::http_client()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .local_address(source)
        .user_agent(concat!("svc/", env!("CARGO_PKG_VERSION")))
}

/// Probes `target` once.
pub async fn check(prober: &Prober, target: &Target) -> Checked {
    let timestamp = unix_now();
    let start = Instant::now();
    let answer = match &target.endpoint {
        Endpoint::Http(url) => http(&prober.client, url, &target.auth, target.timeout)
            .await
            .map(Found::from),
        Endpoint::Tcp { host, port } => tcp(prober, host, *port, target.timeout)
            .await
            .map(Found::from),
        Endpoint::Dns(query) => {
            dns::check(prober.source, query, &target.expect, target.timeout).await
        }
        Endpoint::Grpc(health) => grpc::check(prober.source, health, target.timeout).await,
        Endpoint::Ws(socket) => {
            ws::check(prober.source, socket, &target.expect, target.timeout).await
        }
        Endpoint::Tls(port) => {
            tls::check(prober.source, port, &target.expect, target.timeout).await
        }
        Endpoint::Icmp(echo) => icmp::check(prober.source, echo, target.timeout).await,
    };
    let (status, response_time_ms, error, cert_expires_at, http, facts) = match answer {
        Err(reason) => (
            ServiceState::Down,
            None,
            Some(reason),
            None,
            None,
            Facts::default(),
        ),
        Ok(found) => {
            let elapsed = found.response_time.unwrap_or_else(|| start.elapsed());
            let (status, error) = verdict(&target.expect, &found, elapsed, timestamp);
            (
                status,
                Some(millis_f64(elapsed)),
                error,
                found.answer.cert_expires_at,
                found.answer.http,
                found.facts,
            )
        }
    };
    Checked {
        sample: TargetSample {
            timestamp,
            status,
            response_time_ms,
            error,
            cert_expires_at,
        },
        cert_expires_at,
        http,
        facts,
    }
}

/// The type of `endpoint`, as its URL's scheme names it (`grpc` for grpcs too).
pub fn kind(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Http(_) => "http",
        Endpoint::Tcp { .. } => "tcp",
        Endpoint::Dns(_) => "dns",
        Endpoint::Grpc(_) => "grpc",
        Endpoint::Ws(_) => "ws",
        Endpoint::Tls(_) => "tls",
        Endpoint::Icmp(_) => "icmp",
    }
}

/// The endpoint of a `dns`, `grpc(s)`, `ws(s)`, `tls` or `icmp` URL.
pub(super) fn endpoint(url: url::Url) -> Result<Endpoint, String> {
    match url.scheme() {
        "dns" => dns::Query::parse(&url).map(Endpoint::Dns),
        "grpc" | "grpcs" => grpc::Health::parse(&url).map(Endpoint::Grpc),
        "ws" | "wss" => ws::Socket::parse(url).map(Endpoint::Ws),
        "tls" => tls::Port::parse(&url).map(Endpoint::Tls),
        "icmp" => icmp::Echo::parse(&url).map(Endpoint::Icmp),
        other => Err(format!("{other} is no check type")),
    }
}

/// Makes an endpoint over TLS trust the CA certificates of `file` besides the
/// system's roots.
pub(super) fn trust(endpoint: &mut Endpoint, file: PathBuf) -> Result<(), String> {
    let slot = match endpoint {
        Endpoint::Tls(port) => &mut port.ca_file,
        Endpoint::Grpc(health) if health.tls => &mut health.ca_file,
        Endpoint::Ws(socket) if socket.url.scheme() == "wss" => &mut socket.ca_file,
        _ => return Err("ca_file is for tls, grpcs and wss targets".into()),
    };
    // Read at each probe: a worker that cannot read it says so in the target's reason.
    *slot = Some(file);
    Ok(())
}

/// Refuses `expect` keys the endpoint's type does not judge, so none is silently
/// ignored.
pub(super) fn fits(endpoint: &Endpoint, expect: &Expect) -> Result<(), String> {
    let tls = match endpoint {
        Endpoint::Http(url) => url.scheme() == "https",
        Endpoint::Grpc(health) => health.tls,
        Endpoint::Ws(socket) => socket.url.scheme() == "wss",
        Endpoint::Tls(_) => true,
        Endpoint::Tcp { .. } | Endpoint::Dns(_) | Endpoint::Icmp(_) => false,
    };
    let own: &[&str] = match endpoint {
        Endpoint::Http(_) => &["status", "body_contains", "json"],
        Endpoint::Dns(_) => &["rcode", "answers_contain"],
        Endpoint::Ws(_) => &["send", "receive_contains"],
        Endpoint::Tls(_) => &["names"],
        Endpoint::Tcp { .. } | Endpoint::Grpc(_) | Endpoint::Icmp(_) => &[],
    };
    let set = [
        ("status", !expect.status.is_empty()),
        ("body_contains", expect.body_contains.is_some()),
        ("json", !expect.json.is_empty()),
        // An http target's certificate is judged only when there is one.
        (
            "cert_expires_in",
            expect.cert_expires_in.is_some() && !matches!(endpoint, Endpoint::Http(_)),
        ),
        ("rcode", expect.rcode.is_some()),
        ("answers_contain", !expect.answers_contain.is_empty()),
        ("send", expect.send.is_some()),
        ("receive_contains", expect.receive_contains.is_some()),
        ("names", !expect.names.is_empty()),
    ];
    let taken = |key: &str| own.contains(&key) || (tls && key == "cert_expires_in");
    if set.iter().any(|(key, on)| *on && !taken(key)) {
        let mut keys: Vec<&str> = own.to_vec();
        if tls && !matches!(endpoint, Endpoint::Http(_)) {
            keys.push("cert_expires_in");
        }
        keys.push("max_response_time");
        let keys: Vec<String> = keys.iter().map(|k| format!("expect.{k}")).collect();
        return Err(format!(
            "a {} target takes only {}",
            kind(endpoint),
            keys.join(", ")
        ));
    }
    if let Some(rcode) = &expect.rcode {
        dns::rcode(rcode).map_err(|e| format!("expect.rcode: {e}"))?;
    }
    Ok(())
}

/// `future`'s output, or "no answer within" the timeout.
async fn within<T>(timeout: Duration, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| format!("no answer within {}", humantime::format_duration(timeout)))
}

/// What came back.
#[derive(Debug, Default)]
struct Answer {
    /// HTTP status (none for tcp).
    status: Option<u16>,
    /// The body, up to [`MAX_BODY`].
    body: Vec<u8>,
    cert_expires_at: Option<f64>,
    http: Option<HttpFacts>,
}

/// What a probe of any type found: the answer, and what the module of its type
/// judged of it.
#[derive(Debug, Default)]
struct Found {
    answer: Answer,
    /// The conditions of its type it fails.
    failed: Vec<String>,
    /// Why it is degraded though it meets every condition (ICMP: some echoes lost).
    degraded: Option<String>,
    /// The response time to report instead of the probe's own (ICMP: the mean
    /// round trip).
    response_time: Option<Duration>,
    /// What it found besides ([`Facts`]).
    facts: Facts,
}

impl From<Answer> for Found {
    fn from(answer: Answer) -> Self {
        Found {
            answer,
            ..Found::default()
        }
    }
}

/// [`judge`], with the conditions the module of its type found failed, and its
/// reason to be degraded.
fn verdict(
    expect: &Expect,
    found: &Found,
    elapsed: Duration,
    now: f64,
) -> (ServiceState, Option<String>) {
    let (state, why) = judge(expect, &found.answer, elapsed, now);
    let mut failed = found.failed.clone();
    if state == ServiceState::Down {
        failed.extend(why);
    } else if failed.is_empty() {
        return match (&state, &found.degraded) {
            (ServiceState::Healthy, Some(degraded)) => {
                (ServiceState::Degraded, Some(degraded.clone()))
            }
            _ => (state, why),
        };
    }
    (ServiceState::Down, Some(failed.join("; ")))
}

async fn http(
    client: &reqwest::Client,
    url: &url::Url,
    auth: &Auth,
    timeout: Duration,
) -> Result<Answer, String> {
    let fetch = async {
        let mut request = client.get(url.clone());
        for (name, value) in &auth.headers {
            request = request.header(name, value.clone());
        }
        if let Some((user, password)) = &auth.basic {
            request = request.basic_auth(user.expose(), Some(password.expose()));
        }
        let sent = Instant::now();
        let mut res = request.send().await?;
        let headers = Instant::now();
        let cert_expires_at = res
            .extensions()
            .get::<TlsInfo>()
            .and_then(TlsInfo::peer_certificate)
            .and_then(not_after);
        let status = res.status().as_u16();
        let version = match res.version() {
            reqwest::Version::HTTP_09 => 0.9,
            reqwest::Version::HTTP_10 => 1.0,
            reqwest::Version::HTTP_2 => 2.0,
            reqwest::Version::HTTP_3 => 3.0,
            _ => 1.1,
        };
        let tls = res.extensions().get::<TlsInfo>().is_some() && url.scheme() == "https";
        let content_length = res.content_length();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_BODY {
                break;
            }
        }
        let http = HttpFacts {
            status,
            version,
            tls,
            content_length,
            body_length: body.len(),
            processing: headers - sent,
            transfer: headers.elapsed(),
        };
        Ok::<_, reqwest::Error>(Answer {
            status: Some(status),
            body,
            cert_expires_at,
            http: Some(http),
        })
    };
    match tokio::time::timeout(timeout, fetch).await {
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(crate::probe::describe(e)),
        Ok(Ok(answer)) => Ok(answer),
    }
}

async fn tcp(prober: &Prober, host: &str, port: u16, timeout: Duration) -> Result<Answer, String> {
    match tokio::time::timeout(timeout, prober.connect(host, port)).await {
        Err(_) => Err(format!(
            "no connection within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Ok(Ok(_)) => Ok(Answer::default()),
    }
}

/// Checks `answer` against `expect`: every failed condition is named.
fn judge(
    expect: &Expect,
    answer: &Answer,
    elapsed: Duration,
    now: f64,
) -> (ServiceState, Option<String>) {
    let mut failed = Vec::new();
    if let Some(code) = answer.status {
        let accepted = if expect.status.is_empty() {
            (200..300).contains(&code)
        } else {
            expect.status.contains(&code)
        };
        if !accepted {
            failed.push(format!("HTTP {code}"));
        }
    }
    if let Some(max) = expect.max_response_time.filter(|max| elapsed > *max) {
        failed.push(format!(
            "answered in {} ms, more than {}",
            elapsed.as_millis(),
            humantime::format_duration(max)
        ));
    }
    if let Some(text) = &expect.body_contains
        && !contains(&answer.body, text.as_bytes())
    {
        failed.push(format!("body does not contain {text:?}"));
    }
    if !expect.json.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Err(e) => failed.push(format!("body is not JSON: {e}")),
            Ok(body) => {
                for (path, text, want) in &expect.json {
                    match path.query(&body).first() {
                        Some(found) if found == want => {}
                        Some(found) => failed.push(format!("{text} is {found}, not {want}")),
                        None => failed.push(format!("{text} finds nothing")),
                    }
                }
            }
        }
    }
    if !failed.is_empty() {
        return (ServiceState::Down, Some(failed.join("; ")));
    }
    match (expect.cert_expires_in, answer.cert_expires_at) {
        (Some(within), Some(at)) if at - now < within.as_secs_f64() => {
            let days = ((at - now) / 86400.0).max(0.0);
            (
                ServiceState::Degraded,
                Some(format!("certificate expires in {days:.1} days")),
            )
        }
        _ => (ServiceState::Healthy, None),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Unix seconds when a DER certificate expires.
fn not_after(der: &[u8]) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Targets;

    fn expect(yaml: &str) -> Expect {
        let text = format!("targets: [{{name: t, url: 'http://x', expect: {yaml}}}]");
        let parsed = Targets::parse(&text, Duration::from_secs(10)).expect("valid");
        parsed.targets[0].expect.clone()
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: Some(status),
            body: body.as_bytes().to_vec(),
            cert_expires_at: None,
            http: None,
        }
    }

    const FAST: Duration = Duration::from_millis(5);

    #[test]
    fn a_tls_scheme_is_its_check_type() {
        for (url, want) in [
            ("https://a/", "http"),
            ("http://a/", "http"),
            ("tcp://a:1", "tcp"),
            ("grpcs://a:1", "grpc"),
        ] {
            let text = format!("targets: [{{name: t, url: '{url}'}}]");
            let parsed = Targets::parse(&text, Duration::from_secs(10)).expect("valid");
            assert_eq!(kind(&parsed.targets[0].endpoint), want, "{url}");
        }
    }

    #[test]
    fn every_failed_condition_is_named() {
        let e = expect(
            r#"{status: [200], body_contains: ok, json: {"$.status": UP}, max_response_time: 1s}"#,
        );
        let (state, why) = judge(&e, &answer(200, r#"{"status":"UP","ok":1}"#), FAST, 0.0);
        assert_eq!((state, why), (ServiceState::Healthy, None));
        let (state, why) = judge(
            &e,
            &answer(500, r#"{"status":"DOWN"}"#),
            Duration::from_secs(2),
            0.0,
        );
        assert_eq!(state, ServiceState::Down);
        let why = why.expect("reason");
        for part in ["HTTP 500", "2000 ms", "\"ok\"", "$.status is \"DOWN\""] {
            assert!(why.contains(part), "{why}");
        }
    }

    #[test]
    fn any_2xx_passes_when_no_status_is_named() {
        let e = Expect::default();
        assert_eq!(
            judge(&e, &answer(204, ""), FAST, 0.0).0,
            ServiceState::Healthy
        );
        assert_eq!(judge(&e, &answer(301, ""), FAST, 0.0).0, ServiceState::Down);
    }

    #[test]
    fn each_type_takes_the_expect_keys_it_judges() {
        let parse = |target: &str| {
            Targets::parse(&format!("targets: [{target}]"), Duration::from_secs(10))
                .map(|t| t.targets[0].endpoint.shown())
        };
        // The issue's own examples.
        for (target, shown) in [
            (
                "{name: a, url: 'dns://10.0.0.10:53/api.internal?type=A', \
                 expect: {answers_contain: [10.1.2.3]}}",
                "dns://10.0.0.10:53/api.internal?type=A",
            ),
            (
                "{name: a, url: 'grpc://payments.internal:50051/payments.v1.Payments'}",
                "grpc://payments.internal:50051/payments.v1.Payments",
            ),
            (
                "{name: a, url: 'wss://feed.internal/ws'}",
                "wss://feed.internal/ws",
            ),
            (
                "{name: a, url: 'tls://ldap.internal:636', expect: {cert_expires_in: 14d}}",
                "tls://ldap.internal:636",
            ),
            ("{name: a, url: 'icmp://10.0.0.1'}", "icmp://10.0.0.1"),
        ] {
            assert_eq!(parse(target).as_deref(), Ok(shown), "{target}");
        }
        for (target, error) in [
            (
                "{name: a, url: 'dns:///x', expect: {status: [200]}}",
                "a dns target takes only expect.rcode, expect.answers_contain, \
                 expect.max_response_time",
            ),
            (
                "{name: a, url: 'tls://x:1', expect: {body_contains: ok}}",
                "a tls target takes only expect.names, expect.cert_expires_in, \
                 expect.max_response_time",
            ),
            (
                "{name: a, url: 'grpc://x:1', expect: {cert_expires_in: 7d}}",
                "a grpc target takes only expect.max_response_time",
            ),
            (
                "{name: a, url: 'icmp://x', ca_file: /ca.pem}",
                "ca_file is for tls, grpcs and wss targets",
            ),
            (
                "{name: a, url: 'ws://x/', headers: {X-A: b}}",
                "a ws target takes no headers or basic_auth",
            ),
            (
                "{name: a, url: 'dns:///x', expect: {rcode: NOPE}}",
                "expect.rcode: \"NOPE\" is none of NOERROR",
            ),
            (
                "{name: a, url: 'ftp://x'}",
                "the scheme must be http, https, tcp, dns",
            ),
        ] {
            let got = parse(target).expect_err(target);
            assert!(got.contains(error), "{target}: {got}");
        }
        let grpcs = "{name: a, url: 'grpcs://x', ca_file: /ca.pem, expect: {cert_expires_in: 7d}}";
        assert_eq!(parse(grpcs).as_deref(), Ok("grpcs://x:443"));
    }

    #[test]
    fn a_certificate_expiring_soon_degrades() {
        let e = expect("{cert_expires_in: 14d}");
        let mut a = answer(200, "");
        a.cert_expires_at = Some(5.0 * 86400.0);
        let (state, why) = judge(&e, &a, FAST, 0.0);
        assert_eq!(state, ServiceState::Degraded);
        assert!(why.expect("reason").contains("5.0 days"));
        a.cert_expires_at = Some(30.0 * 86400.0);
        assert_eq!(judge(&e, &a, FAST, 0.0).0, ServiceState::Healthy);
    }
}
