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
//! A target probed from several locations has, besides its verdict, one series per
//! target and location (labels `target`, `group`, `type`, `location`):
//!
//! - `svc_target_location_up`: 1 while that location sees it up or degraded, 0 while
//!   down; absent while the location has no data (no live worker, or a result older
//!   than two intervals), which counts neither way in the verdict either;
//! - `svc_target_location_response_time_seconds`: its latest probe's round trip.
//!
//! Several replicas answer the same (they read the same store), so the monitoring
//! component scrapes this path through the Service with the per-pod labels dropped:
//! whichever replica answers, it is the one series. A target whose state could not be
//! read has no series (unknown is not up).

use std::fmt::Write;

use actix_web::{HttpResponse, web};

use super::{Dashboard, latest};
use crate::clock::unix_now;
use crate::service::ServiceState;
use crate::telemetry::{label_value, write_gauge};

/// The content type of the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    let mut location_up = Vec::new();
    let mut location_time = Vec::new();
    let now = unix_now();
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
            label_value(row.kind),
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
                cert.push((labels.clone(), at));
            }
        }
        let interval = row.interval.as_secs_f64();
        for (location, result) in &state.locations {
            if !result.fresh(interval, now) {
                continue;
            }
            let Some(status) = result.state else {
                continue;
            };
            let at = format!(
                r#"{},location="{}"}}"#,
                labels.trim_end_matches('}'),
                label_value(location)
            );
            location_up.push((
                at.clone(),
                f64::from(u8::from(status != ServiceState::Down)),
            ));
            if let Some(ms) = result.response_time_ms {
                location_time.push((at, ms / 1e3));
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
        "svc_target_location_up",
        "Whether a location sees a target up or degraded (1) or down (0); absent: no data",
        &location_up,
    );
    write_gauge(
        &mut out,
        "svc_target_location_response_time_seconds",
        "Round trip of a location's latest probe of a target, in seconds",
        &location_time,
    );
    write_gauge(
        &mut out,
        "svc_targets_snapshot_timestamp_seconds",
        "Unix time when the targets' states served here were read from the store",
        &[("", snapshot.taken_at)],
    );
    HttpResponse::Ok().content_type(TEXT_FORMAT).body(out)
}
