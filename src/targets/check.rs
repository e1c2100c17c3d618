//! One probe of one target, judged by its conditions:
//! - down: no answer within its timeout, or an answer that fails a condition (status,
//!   response time, body text, JSONPath);
//! - degraded: every condition met, but the certificate expires within
//!   `cert_expires_in`;
//! - healthy: every condition met.

use std::net::{IpAddr, SocketAddr};
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
    /// Unix seconds when the certificate presented expires (https only).
    pub cert_expires_at: Option<f64>,
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

    /// A TCP connection to `host:port` from the source address: each of the host's
    /// addresses of the source's family in turn.
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let Some(source) = self.source else {
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
}

/// The client target probes use: the system's roots (rustls), a fresh connection per
/// probe (so each one sees the certificate, and a connection the target closed while
/// idle never fails a probe), no redirects followed (a redirect is an answer), its
/// sockets bound to `source` when given.
pub fn client(source: Option<IpAddr>) -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::http_client()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .local_address(source)
        .user_agent(concat!("svc/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Probes `target` once.
pub async fn check(prober: &Prober, target: &Target) -> Checked {
    let timestamp = unix_now();
    let start = Instant::now();
    let answer = match &target.endpoint {
        Endpoint::Http(url) => http(&prober.client, url, &target.auth, target.timeout).await,
        Endpoint::Tcp { host, port } => tcp(prober, host, *port, target.timeout).await,
    };
    let elapsed = start.elapsed();
    let (status, response_time_ms, error, cert_expires_at) = match answer {
        Err(reason) => (ServiceState::Down, None, Some(reason), None),
        Ok(answer) => {
            let (status, error) = judge(&target.expect, &answer, elapsed, timestamp);
            (
                status,
                Some(millis_f64(elapsed)),
                error,
                answer.cert_expires_at,
            )
        }
    };
    Checked {
        sample: TargetSample {
            timestamp,
            status,
            response_time_ms,
            error,
        },
        cert_expires_at,
    }
}

/// What came back.
#[derive(Debug, Default)]
struct Answer {
    /// HTTP status (none for tcp).
    status: Option<u16>,
    /// The body, up to [`MAX_BODY`].
    body: Vec<u8>,
    cert_expires_at: Option<f64>,
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
        let mut res = request.send().await?;
        let cert_expires_at = res
            .extensions()
            .get::<TlsInfo>()
            .and_then(TlsInfo::peer_certificate)
            .and_then(not_after);
        let status = res.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_BODY {
                break;
            }
        }
        Ok::<_, reqwest::Error>(Answer {
            status: Some(status),
            body,
            cert_expires_at,
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
        }
    }

    const FAST: Duration = Duration::from_millis(5);

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
