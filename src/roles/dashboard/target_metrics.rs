//! `GET /metrics/targets`: every target's state once for the whole cluster, from the
//! shared state the newest snapshot read (never from what one worker happened to
//! probe), one series per target with the labels `target`, `group` and `type`:
//!
//! - `svc_target_up`: 1 while its verdict is up or degraded, 0 while down (after its
//!   thresholds); absent until it has a verdict;
//! - `svc_target_maintenance`: 1 while it is in a maintenance window;
//! - `svc_target_last_probe_timestamp_seconds`: when the newest probe applied was made;
//! - `svc_target_certificate_expiry_seconds`: when the certificate its newest probe saw
//!   expires (TLS targets);
//! - `svc_targets_snapshot_timestamp_seconds`: when the snapshot was read.
//!
//! Several replicas answer the same (they read the same store), so the monitoring
//! component scrapes this path through the Service with the per-pod labels dropped:
//! whichever replica answers, it is the one series. A target whose state could not be
//! read has no series (unknown is not up).

use std::fmt::Write;

use actix_web::{HttpResponse, web};

use super::{Dashboard, latest};
use crate::service::ServiceState;
use crate::telemetry::{label_value, write_gauge};

/// The content type of the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The check type of a target shown as `url`: its scheme, TLS or not (`https` is an
/// `http` check).
fn kind(url: &str) -> &str {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "https" => "http",
        "grpcs" => "grpc",
        "wss" => "ws",
        other => other,
    }
}

/// The handler.
pub async fn serve(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(unavailable) => return unavailable,
    };
    let mut up = Vec::new();
    let mut maintenance = Vec::new();
    let mut last = Vec::new();
    let mut cert = Vec::new();
    for row in &snapshot.targets {
        let Some(state) = row.report.as_ref().and_then(|r| r.state.as_ref()) else {
            continue;
        };
        let mut labels = String::with_capacity(64);
        let _ = write!(
            labels,
            r#"{{target="{}",group="{}",type="{}"}}"#,
            label_value(&row.name),
            label_value(row.group.as_deref().unwrap_or("")),
            label_value(kind(&row.url)),
        );
        if let Some(status) = state.status {
            up.push((
                labels.clone(),
                f64::from(u8::from(status != ServiceState::Down)),
            ));
        }
        maintenance.push((
            labels.clone(),
            f64::from(u8::from(row.maintenance.is_some())),
        ));
        if let Some(sample) = &state.last {
            last.push((labels.clone(), sample.timestamp));
            if let Some(at) = sample.cert_expires_at {
                cert.push((labels, at));
            }
        }
    }
    let mut out = String::with_capacity(128 * snapshot.targets.len() + 1024);
    write_gauge(
        &mut out,
        "svc_target_up",
        "Whether a target's verdict is up or degraded (1) or down (0), for the cluster",
        &up,
    );
    write_gauge(
        &mut out,
        "svc_target_maintenance",
        "Whether a target is in a maintenance window (1) or not (0)",
        &maintenance,
    );
    write_gauge(
        &mut out,
        "svc_target_last_probe_timestamp_seconds",
        "Unix time of the newest probe of a target applied to its state",
        &last,
    );
    write_gauge(
        &mut out,
        "svc_target_certificate_expiry_seconds",
        "Unix time when the certificate a target presented at its newest probe expires",
        &cert,
    );
    write_gauge(
        &mut out,
        "svc_targets_snapshot_timestamp_seconds",
        "Unix time when the targets' states served here were read from the store",
        &[("", snapshot.taken_at)],
    );
    HttpResponse::Ok().content_type(TEXT_FORMAT).body(out)
}

#[cfg(test)]
mod tests {
    use super::kind;

    #[test]
    fn a_tls_scheme_is_its_check_type() {
        assert_eq!(kind("https://a/"), "http");
        assert_eq!(kind("http://a/"), "http");
        assert_eq!(kind("tcp://a:1"), "tcp");
        assert_eq!(kind("grpcs://a:1"), "grpc");
    }
}
