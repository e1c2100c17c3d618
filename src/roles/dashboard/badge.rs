//! `GET /badge/{name}.svg`: a status badge of a target or service for READMEs and
//! wikis: its state and 24 h uptime, from the newest snapshot (no request reaches the
//! store or the target).

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use maud::html;

use super::Dashboard;
use super::snapshot::Snapshot;
use super::system::state_name;
use crate::http::error;
use crate::service::ServiceState;

/// Width of one character of the badge's 11 px sans-serif text, roughly.
const CHAR_WIDTH: usize = 7;

/// The state and 24 h uptime of `name`: a target of the targets file or one of svc's
/// services; `None` when there is no such name.
fn status(snapshot: &Snapshot, name: &str) -> Option<(Option<ServiceState>, Option<f64>)> {
    if let Some(row) = snapshot.targets.iter().find(|t| t.name == name) {
        let report = row.report.as_ref();
        return Some((
            report.and_then(|r| r.state.as_ref()).and_then(|s| s.status),
            report.and_then(|r| r.uptime_24h),
        ));
    }
    let i = snapshot
        .services
        .iter()
        .position(|p| p.name.as_str() == name)?;
    Some((
        Some(snapshot.services[i].status),
        snapshot.history.get(i).and_then(|h| h.uptime_24h),
    ))
}

/// The badge's image.
pub fn svg(label: &str, state: Option<ServiceState>, uptime: Option<f64>) -> String {
    let message = match (state, uptime) {
        (Some(ServiceState::Healthy), Some(u)) => format!("up {u:.1}%"),
        (Some(ServiceState::Healthy), None) => "up".to_owned(),
        (Some(s), _) => state_name(s).to_owned(),
        (None, _) => "unknown".to_owned(),
    };
    let color = match state {
        Some(ServiceState::Healthy) => "#2e7d32",
        Some(ServiceState::Degraded) => "#b26a00",
        Some(ServiceState::Down) => "#c62828",
        None => "#6b7280",
    };
    draw(label, &message, color)
}

/// A badge of `label` and `message` on `color`.
fn draw(label: &str, message: &str, color: &str) -> String {
    let left = label.chars().count() * CHAR_WIDTH + 12;
    let right = message.chars().count() * CHAR_WIDTH + 12;
    let width = left + right;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height="20" role="img"
            aria-label={ (label) ": " (message) } {
            title { (label) ": " (message) }
            rect width=(left) height="20" fill="#555" {}
            rect x=(left) width=(right) height="20" fill=(color) {}
            g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" {
                text x=(left / 2) y="14" { (label) }
                text x=(left + right / 2) y="14" { (message) }
            }
        }
    }
    .into_string()
}

pub(super) async fn serve(
    dashboard: web::Data<Dashboard>,
    name: web::Path<String>,
) -> HttpResponse {
    let snapshot = match super::latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    let in_window = snapshot
        .targets
        .iter()
        .any(|t| t.name == *name && t.maintenance.is_some());
    match status(&snapshot, &name) {
        Some((state, uptime)) => HttpResponse::Ok()
            .content_type("image/svg+xml")
            // Image proxies (GitHub's) would otherwise keep a stale state for hours.
            .insert_header(CacheControl(vec![
                CacheDirective::NoCache,
                CacheDirective::MaxAge(0),
            ]))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(if in_window {
                draw(&name, "maintenance", "#5b3cc4")
            } else {
                svg(&name, state, uptime)
            }),
        None => error::body(
            actix_web::http::StatusCode::NOT_FOUND,
            &format!("no target or service named {:?}", name.as_str()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_says_state_and_uptime_and_escapes_its_label() {
        let up = svg("payments", Some(ServiceState::Healthy), Some(99.95));
        assert!(up.contains("up 100.0%") || up.contains("up 99.9%"), "{up}");
        assert!(up.starts_with("<svg"));
        let odd = svg("<a&b>", None, None);
        assert!(
            odd.contains("&lt;a&amp;b&gt;") && odd.contains("unknown"),
            "{odd}"
        );
    }
}
