//! One probe's result in the Prometheus blackbox exporter's words: the `probe_*`
//! gauges its `/probe` answers with, rendered per request in the text format (version
//! 0.0.4), never kept in a registry (a scrape of a thousand targets would otherwise
//! leave a thousand series on every worker's `/metrics`).
//!
//! Every module: `probe_success`, `probe_duration_seconds`,
//! `probe_dns_lookup_time_seconds`, `probe_ip_protocol`, and
//! `probe_ssl_earliest_cert_expiry` when a certificate was presented. `http`
//! modules add `probe_http_status_code` (0 when no answer came), `probe_http_version`,
//! `probe_http_ssl`, `probe_http_redirects` (0: redirects are answers, not followed),
//! `probe_http_content_length`, `probe_http_uncompressed_body_length` and
//! `probe_http_duration_seconds{phase}`. Of the five phases blackbox names, three are
//! measured: `resolve` (the lookup `/probe` makes to check the target against
//! `allow:`), `processing` (request sent to the answer's headers, which holds the
//! connection and TLS handshake: the HTTP client does not tell them apart) and
//! `transfer` (headers to the last byte of body read). `connect` and `tls` are left
//! out rather than reported as 0. The certificate expiry is the leaf's; blackbox's is
//! the earliest of the chain, the same for a leaf that expires first (the usual case).
//!
//! The other types add their prober's gauges: `dns` `probe_dns_query_succeeded`,
//! `probe_dns_answer_rrs` and `probe_dns_duration_seconds{phase="request"}`; `grpc`
//! `probe_grpc_healthcheck_response{serving_status}` (1 for the status the server gave,
//! 0 for the others) and `probe_grpc_ssl`; `icmp`
//! `probe_icmp_duration_seconds{phase="resolve|rtt"}` (the mean round trip of the
//! replies); a handshake (`tls`, `grpcs`, `wss`) `probe_tls_version_info{version}`.

use std::net::IpAddr;
use std::time::Duration;

use super::check::Checked;
use crate::service::ServiceState;
use crate::telemetry::write_gauge as gauge;

/// What one `/probe` found.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    /// The module's check type.
    pub kind: &'a str,
    /// The check's result.
    pub checked: &'a Checked,
    /// From the request's arrival to the check's end.
    pub duration: Duration,
    /// The name lookup (zero for an address).
    pub lookup: Duration,
    /// The first address the target resolved to.
    pub address: Option<IpAddr>,
}

impl Probe<'_> {
    /// Whether blackbox would call it a success: every condition met (a certificate
    /// about to expire is still a success).
    pub fn success(&self) -> bool {
        self.checked.sample.status != ServiceState::Down
    }

    /// The gauges, in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let secs = |d: Duration| d.as_secs_f64();
        gauge(
            &mut out,
            "probe_dns_lookup_time_seconds",
            "Time the target's name lookup took, in seconds",
            &[("", secs(self.lookup))],
        );
        let protocol = match self.address {
            Some(IpAddr::V4(_)) => 4.0,
            Some(IpAddr::V6(_)) => 6.0,
            None => 0.0,
        };
        gauge(
            &mut out,
            "probe_ip_protocol",
            "IP version of the address probed: 4 or 6 (0 when the name did not resolve)",
            &[("", protocol)],
        );
        match self.kind {
            "http" => self.render_http(&mut out),
            "dns" => self.render_dns(&mut out),
            "grpc" => self.render_grpc(&mut out),
            "icmp" => self.render_icmp(&mut out),
            _ => {}
        }
        if let Some(version) = &self.checked.facts.tls_version {
            gauge(
                &mut out,
                "probe_tls_version_info",
                "The TLS version the handshake agreed",
                &[(format!(r#"{{version="{}"}}"#, tls_version(version)), 1.0)],
            );
        }
        if let Some(at) = self.checked.cert_expires_at {
            gauge(
                &mut out,
                "probe_ssl_earliest_cert_expiry",
                "Unix time when the certificate presented expires",
                &[("", at)],
            );
        }
        gauge(
            &mut out,
            "probe_duration_seconds",
            "How long the probe took, in seconds",
            &[("", secs(self.duration))],
        );
        gauge(
            &mut out,
            "probe_success",
            "Whether the probe succeeded (1) or failed (0)",
            &[("", f64::from(u8::from(self.success())))],
        );
        out
    }

    fn render_http(&self, out: &mut String) {
        let facts = self.checked.http.as_ref();
        let secs = |d: Duration| d.as_secs_f64();
        let phases = facts.map_or([0.0; 2], |f| [secs(f.processing), secs(f.transfer)]);
        gauge(
            out,
            "probe_http_duration_seconds",
            "Duration of the HTTP request by phase, in seconds",
            &[
                (r#"{phase="resolve"}"#, secs(self.lookup)),
                (r#"{phase="processing"}"#, phases[0]),
                (r#"{phase="transfer"}"#, phases[1]),
            ],
        );
        let pairs = [
            (
                "probe_http_status_code",
                "Status code of the HTTP answer (0 when none came)",
                facts.map_or(0.0, |f| f64::from(f.status)),
            ),
            (
                "probe_http_version",
                "HTTP version of the answer",
                facts.map_or(0.0, |f| f.version),
            ),
            (
                "probe_http_ssl",
                "Whether the answer came over TLS (1) or not (0)",
                facts.map_or(0.0, |f| f64::from(u8::from(f.tls))),
            ),
            (
                "probe_http_redirects",
                "Redirects followed (none: a redirect is the answer)",
                0.0,
            ),
            (
                "probe_http_content_length",
                "Content-Length the answer declared (-1 when it declared none)",
                facts
                    .and_then(|f| f.content_length)
                    .map_or(-1.0, |n| n as f64),
            ),
            (
                "probe_http_uncompressed_body_length",
                "Bytes of body read",
                facts.map_or(0.0, |f| f.body_length as f64),
            ),
        ];
        for (name, help, value) in pairs {
            gauge(out, name, help, &[("", value)]);
        }
    }

    fn render_dns(&self, out: &mut String) {
        let facts = &self.checked.facts;
        gauge(
            out,
            "probe_dns_query_succeeded",
            "Whether a response to the query came (1) or not (0)",
            &[("", f64::from(u8::from(facts.dns_rcode.is_some())))],
        );
        gauge(
            out,
            "probe_dns_answer_rrs",
            "Records in the answer section of the type asked for",
            &[("", facts.dns_answers.len() as f64)],
        );
        if let Some(ms) = facts.dns_lookup_ms {
            gauge(
                out,
                "probe_dns_duration_seconds",
                "Duration of the DNS query by phase, in seconds",
                &[(r#"{phase="request"}"#, ms / 1e3)],
            );
        }
    }

    fn render_grpc(&self, out: &mut String) {
        let given = self.checked.facts.grpc_status.as_deref();
        let samples: Vec<(String, f64)> = GRPC_STATUSES
            .iter()
            .map(|status| {
                (
                    format!(r#"{{serving_status="{status}"}}"#),
                    f64::from(u8::from(given == Some(*status))),
                )
            })
            .collect();
        gauge(
            out,
            "probe_grpc_healthcheck_response",
            "The serving status the health service answered (1 for the one given)",
            &samples,
        );
        gauge(
            out,
            "probe_grpc_ssl",
            "Whether the connection was over TLS (1) or not (0)",
            &[(
                "",
                f64::from(u8::from(self.checked.facts.tls_version.is_some())),
            )],
        );
    }

    fn render_icmp(&self, out: &mut String) {
        let mut phases = vec![(r#"{phase="resolve"}"#, self.lookup.as_secs_f64())];
        if let Some(ms) = self.checked.facts.icmp_rtt_ms {
            phases.push((r#"{phase="rtt"}"#, ms / 1e3));
        }
        gauge(
            out,
            "probe_icmp_duration_seconds",
            "Duration of the ICMP probe by phase, in seconds",
            &phases,
        );
    }
}

/// The serving statuses of the gRPC Health Checking Protocol, as blackbox labels them.
const GRPC_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// rustls's name of a protocol version (`TLSv1_3`) as blackbox writes it (`TLS 1.3`).
fn tls_version(rustls: &str) -> String {
    match rustls.strip_prefix("TLSv") {
        Some(number) => format!("TLS {}", number.replace('_', ".")),
        None => crate::telemetry::label_value(rustls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::check::{Facts, HttpFacts};
    use crate::targets::state::TargetSample;

    fn checked(status: ServiceState, http: Option<HttpFacts>) -> Checked {
        Checked {
            sample: TargetSample {
                timestamp: 1.0,
                status,
                response_time_ms: Some(3.0),
                error: None,
                cert_expires_at: None,
            },
            cert_expires_at: Some(1_900_000_000.0),
            http,
            facts: Facts::default(),
        }
    }

    #[test]
    fn an_http_probe_says_what_blackbox_says() {
        let facts = HttpFacts {
            status: 503,
            version: 1.1,
            tls: true,
            content_length: Some(12),
            body_length: 12,
            processing: Duration::from_millis(20),
            transfer: Duration::from_millis(1),
        };
        let checked = checked(ServiceState::Down, Some(facts));
        let probe = Probe {
            kind: "http",
            checked: &checked,
            duration: Duration::from_millis(25),
            lookup: Duration::ZERO,
            address: Some([127, 0, 0, 1].into()),
        };
        let text = probe.render();
        for line in [
            "probe_success 0",
            "probe_http_status_code 503",
            "probe_http_ssl 1",
            "probe_http_version 1.1",
            "probe_ip_protocol 4",
            "probe_duration_seconds 0.025",
            r#"probe_http_duration_seconds{phase="processing"} 0.02"#,
            "probe_ssl_earliest_cert_expiry 1900000000",
            "# TYPE probe_success gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn each_type_adds_its_probers_gauges() {
        let mut found = checked(ServiceState::Healthy, None);
        found.facts = Facts {
            dns_lookup_ms: Some(4.0),
            dns_rcode: Some("NOERROR".into()),
            dns_answers: vec!["10.1.2.3".into(), "10.1.2.4".into()],
            grpc_status: Some("NOT_SERVING".into()),
            icmp_rtt_ms: Some(0.5),
            tls_version: Some("TLSv1_3".into()),
            ..Facts::default()
        };
        let render = |kind| {
            Probe {
                kind,
                checked: &found,
                duration: Duration::from_millis(5),
                lookup: Duration::ZERO,
                address: Some([127, 0, 0, 1].into()),
            }
            .render()
        };
        let expected: [(&str, &[&str]); 3] = [
            (
                "dns",
                &[
                    "probe_dns_query_succeeded 1",
                    "probe_dns_answer_rrs 2",
                    r#"probe_dns_duration_seconds{phase="request"} 0.004"#,
                ],
            ),
            (
                "grpc",
                &[
                    r#"probe_grpc_healthcheck_response{serving_status="NOT_SERVING"} 1"#,
                    r#"probe_grpc_healthcheck_response{serving_status="SERVING"} 0"#,
                    "probe_grpc_ssl 1",
                    r#"probe_tls_version_info{version="TLS 1.3"} 1"#,
                ],
            ),
            (
                "icmp",
                &[r#"probe_icmp_duration_seconds{phase="rtt"} 0.0005"#],
            ),
        ];
        for (kind, lines) in expected {
            let text = render(kind);
            for line in lines {
                assert!(
                    text.lines().any(|l| l == *line),
                    "{kind}: {line} not in\n{text}"
                );
            }
        }
    }

    #[test]
    fn a_tcp_probe_has_no_http_gauges() {
        let mut checked = checked(ServiceState::Healthy, None);
        checked.cert_expires_at = None;
        let probe = Probe {
            kind: "tcp",
            checked: &checked,
            duration: Duration::from_millis(2),
            lookup: Duration::ZERO,
            address: None,
        };
        let text = probe.render();
        assert!(text.contains("probe_success 1\n"), "{text}");
        assert!(text.contains("probe_ip_protocol 0\n"), "{text}");
        assert!(
            !text.contains("probe_http") && !text.contains("probe_ssl"),
            "{text}"
        );
    }
}
