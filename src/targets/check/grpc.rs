//! `grpc://host:port[/service]` and `grpcs://`: the gRPC Health Checking Protocol,
//! `grpc.health.v1.Health/Check` for the service the path names (none: the server
//! as a whole). `SERVING` is up; `NOT_SERVING`, `UNKNOWN` and `SERVICE_UNKNOWN` are
//! down, named in the reason (`gRPC NOT_SERVING`); a service the server does not know
//! (`NOT_FOUND`) or a server without the health service (`UNIMPLEMENTED`) is down
//! and said so.
//!
//! `grpcs://` runs over the TLS of [`super::tls`] (ALPN `h2`, the target's
//! `ca_file`), so its certificate is judged as an https target's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::Code;
use tonic::codegen::http::Uri;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use url::Url;

use super::tls::{self, authority};
use super::{Answer, Facts, Found, within};

/// A server's health service.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Over TLS (`grpcs://`).
    pub tls: bool,
    /// The service asked about; empty: the server as a whole.
    pub service: String,
    /// CA certificates (PEM) trusted besides the system's roots (`grpcs://`).
    pub ca_file: Option<PathBuf>,
}

impl Health {
    /// The health service of `grpc://host:port[/service]` or `grpcs://host[:port][/service]`.
    pub(super) fn parse(url: &Url) -> Result<Self, String> {
        let tls = url.scheme() == "grpcs";
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_matches(['[', ']']).to_owned());
        let port = url.port().or(tls.then_some(443));
        match (host, port) {
            (Some(host), Some(port)) if url.query().is_none() => Ok(Health {
                host,
                port,
                tls,
                service: url.path().trim_matches('/').to_owned(),
                ca_file: None,
            }),
            _ => Err("a grpc URL is grpc://host:port[/service] (grpcs: port 443 if none)".into()),
        }
    }

    /// As it is written in the targets file.
    pub fn shown(&self) -> String {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        let mut shown = format!("{scheme}://{}", authority(&self.host, self.port));
        if !self.service.is_empty() {
            shown.push('/');
            shown.push_str(&self.service);
        }
        shown
    }
}

/// What the TLS handshake of a `grpcs://` probe saw.
type Seen = Arc<Mutex<Option<(Option<f64>, Facts)>>>;

/// Asks the health service once, on a connection of its own.
pub(super) async fn check(
    source: Option<IpAddr>,
    health: &Health,
    timeout: Duration,
) -> Result<Found, String> {
    let seen = Seen::default();
    let status = within(timeout, ask(source, health, timeout, seen.clone())).await??;
    let (cert_expires_at, mut facts) = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    let name = status.as_str_name();
    facts.grpc_status = Some(name.to_owned());
    let failed = match status {
        ServingStatus::Serving => Vec::new(),
        _ if health.service.is_empty() => vec![format!("gRPC {name}")],
        _ => vec![format!("gRPC {name} for {}", health.service)],
    };
    Ok(Found {
        answer: Answer {
            cert_expires_at,
            ..Answer::default()
        },
        failed,
        facts,
        ..Found::default()
    })
}

async fn ask(
    source: Option<IpAddr>,
    health: &Health,
    timeout: Duration,
    seen: Seen,
) -> Result<ServingStatus, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!(
        "http://{}",
        authority(&health.host, health.port)
    ))
    .map_err(|e| format!("no gRPC address: {}", chain(&e)))?
    .connect_timeout(timeout)
    .timeout(timeout)
    .local_address(source);
    let channel = if health.tls {
        let (host, port, ca_file) = (health.host.clone(), health.port, health.ca_file.clone());
        endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let (host, ca_file, seen) = (host.clone(), ca_file.clone(), seen.clone());
                async move {
                    let session =
                        tls::connect(source, &host, port, ca_file.as_deref(), &[b"h2"]).await?;
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((session.cert_expires_at, session.facts()));
                    Ok::<_, String>(hyper_util::rt::TokioIo::new(session.stream))
                }
            }))
            .await
    } else {
        endpoint.connect().await
    }
    .map_err(|e| {
        // The TLS connector's own reasons say what failed already.
        let why = chain(&e);
        if why.starts_with("cannot connect") || why.starts_with("TLS handshake failed") {
            why
        } else {
            format!("cannot connect: {why}")
        }
    })?;
    let request = HealthCheckRequest {
        service: health.service.clone(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => {
            Ok(ServingStatus::try_from(response.into_inner().status)
                .unwrap_or(ServingStatus::Unknown))
        }
        Err(status) => Err(match status.code() {
            Code::NotFound => format!(
                "the server does not know the gRPC service {:?} (NOT_FOUND)",
                health.service
            ),
            Code::Unimplemented => {
                "the server has no gRPC health service (UNIMPLEMENTED)".to_owned()
            }
            code => {
                let message = status.message();
                format!("gRPC {}: {message}", upper_snake(&format!("{code:?}")))
            }
        }),
    }
}

/// `NotFound` as gRPC writes it: `NOT_FOUND`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// An error and its causes, outermost first (a transport error says only "transport
/// error"; its causes say what went wrong).
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.len() > 1 {
        parts.retain(|p| p != "transport error");
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(url: &str) -> Result<Health, String> {
        Health::parse(&Url::parse(url).expect("url"))
    }

    #[test]
    fn a_grpc_url_names_the_service() {
        let h = health("grpc://payments.internal:50051/payments.v1.Payments").expect("health");
        assert_eq!(
            (h.port, h.tls, h.service.as_str()),
            (50051, false, "payments.v1.Payments")
        );
        assert_eq!(
            h.shown(),
            "grpc://payments.internal:50051/payments.v1.Payments"
        );
        let h = health("grpcs://payments.internal").expect("health");
        assert_eq!((h.port, h.tls, h.service.as_str()), (443, true, ""));
        assert!(health("grpc://payments.internal").is_err());
        assert!(health("grpc://payments.internal:1?x=y").is_err());
    }

    #[test]
    fn codes_read_as_grpc_writes_them() {
        assert_eq!(upper_snake("DeadlineExceeded"), "DEADLINE_EXCEEDED");
        assert_eq!(upper_snake("Unavailable"), "UNAVAILABLE");
    }
}
