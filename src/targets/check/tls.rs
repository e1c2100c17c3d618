//! `tls://host:port`: a TLS handshake with any TLS port (SMTP submission, Postgres,
//! LDAPS), the host sent as SNI and the certificate verified against the system's
//! roots and the target's `ca_file`; its expiry judged by `cert_expires_in` and the
//! names it covers by `expect.names`.
//!
//! Its handshake is also the TLS under `grpcs://` and `wss://`: one rustls (ring) for
//! every check. The `ca_file` is read at each probe, so a rotated CA takes effect at
//! the next one (and a dashboard that shows the target needs no copy of it).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_platform_verifier::Verifier;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use url::Url;
use x509_parser::extensions::GeneralName;

use super::{Answer, Facts, Found, within};
use crate::targets::Expect;

/// A TLS port.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// Host name (sent as SNI, and which the certificate must cover) or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// CA certificates (PEM) trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Port {
    /// The port of `tls://host:port`.
    pub(super) fn parse(url: &Url) -> Result<Self, String> {
        let bare = (url.path().is_empty() || url.path() == "/") && url.query().is_none();
        match (url.host_str(), url.port()) {
            (Some(host), Some(port)) if !host.is_empty() && bare => Ok(Port {
                host: host.trim_matches(['[', ']']).to_owned(),
                port,
                ca_file: None,
            }),
            _ => Err("a tls URL is tls://host:port".into()),
        }
    }

    /// As it is written in the targets file.
    pub fn shown(&self) -> String {
        format!("tls://{}", authority(&self.host, self.port))
    }
}

/// `host:port`, an IPv6 address in brackets.
pub(super) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A TLS session, and what its certificate says.
pub(super) struct Session {
    /// The stream, ready for the protocol on top.
    pub stream: TlsStream<TcpStream>,
    /// Unix seconds when the server's certificate expires.
    pub cert_expires_at: Option<f64>,
    /// The names and addresses the certificate covers.
    pub names: Vec<String>,
    /// The protocol version agreed.
    pub version: Option<String>,
}

impl Session {
    /// What the session says of the certificate, as [`Facts`].
    pub fn facts(&self) -> Facts {
        Facts {
            cert_names: self.names.clone(),
            tls_version: self.version.clone(),
            ..Facts::default()
        }
    }
}

/// Connects to `host:port` and shakes hands, offering the `alpn` protocols.
pub(super) async fn connect(
    source: Option<IpAddr>,
    host: &str,
    port: u16,
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Session, String> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier(ca_file)?)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is no name a certificate can cover"))?;
    let tcp = super::connect(source, host, port)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (_, connection) = stream.get_ref();
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert);
    let version = connection.protocol_version().map(|v| format!("{v:?}"));
    Ok(Session {
        cert_expires_at: leaf
            .as_ref()
            .map(|c| c.validity().not_after.timestamp() as f64),
        names: leaf.as_ref().map(names).unwrap_or_default(),
        version,
        stream,
    })
}

/// Probes a TLS port: the handshake, then the names the certificate must cover.
pub(super) async fn check(
    source: Option<IpAddr>,
    port: &Port,
    expect: &Expect,
    timeout: Duration,
) -> Result<Found, String> {
    let session = within(
        timeout,
        connect(source, &port.host, port.port, port.ca_file.as_deref(), &[]),
    )
    .await??;
    Ok(Found {
        answer: Answer {
            cert_expires_at: session.cert_expires_at,
            ..Answer::default()
        },
        failed: uncovered(&session.names, &expect.names),
        facts: session.facts(),
        ..Found::default()
    })
}

/// The CA certificates of a PEM file.
fn roots(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: no PEM certificate ({e})", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", file.display()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's roots (loaded once), with `ca_file`'s besides (read now).
fn verifier(ca_file: Option<&Path>) -> Result<Arc<Verifier>, String> {
    static SYSTEM: OnceLock<Result<Arc<Verifier>, String>> = OnceLock::new();
    match ca_file {
        None => SYSTEM
            .get_or_init(|| {
                Verifier::new(provider())
                    .map(Arc::new)
                    .map_err(|e| format!("the system's roots: {e}"))
            })
            .clone(),
        Some(file) => Verifier::new_with_extra_roots(
            roots(file).map_err(|e| format!("ca_file: {e}"))?,
            provider(),
        )
        .map(Arc::new)
        .map_err(|e| format!("ca_file {}: {e}", file.display())),
    }
}

/// The DNS names and addresses of the certificate's subject alternative names, else
/// its common names.
fn names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_owned),
        );
    }
    names
}

/// One reason per name of `wanted` that none of `names` covers.
fn uncovered(names: &[String], wanted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|want| !names.iter().any(|name| covers(name, want)))
        .map(|want| {
            let shown = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            let more = names.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("certificate for {shown}{more} does not cover {want}")
        })
        .collect()
}

/// Whether certificate name `name` (perhaps `*.example.com`) covers `host`.
fn covers(name: &str, host: &str) -> bool {
    let (name, host) = (
        name.trim_end_matches('.').to_ascii_lowercase(),
        host.trim_end_matches('.').to_ascii_lowercase(),
    );
    if let (Ok(a), Ok(b)) = (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return a == b;
    }
    match name.strip_prefix("*.") {
        // A wildcard stands for exactly one label.
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => name == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(covers("A.Example.com.", "a.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(covers("::1", "0:0::1"));
        assert!(!covers("127.0.0.1", "127.0.0.2"));
    }

    #[test]
    fn every_name_not_covered_is_named() {
        let names = vec!["a.example".to_owned(), "*.a.example".to_owned()];
        let wanted = ["x.a.example", "b.example"].map(str::to_owned);
        assert_eq!(
            uncovered(&names, &wanted),
            ["certificate for a.example, *.a.example does not cover b.example"]
        );
    }

    #[test]
    fn a_tls_url_names_host_and_port() {
        let port = Port::parse(&Url::parse("tls://[::1]:636").expect("url")).expect("port");
        assert_eq!((port.host.as_str(), port.port), ("::1", 636));
        assert_eq!(port.shown(), "tls://[::1]:636");
        for bad in ["tls://ldap", "tls://ldap:636/x", "tls://ldap:636?x=1"] {
            assert!(
                Port::parse(&Url::parse(bad).expect("url")).is_err(),
                "{bad}"
            );
        }
    }
}
