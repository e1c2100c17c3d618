//! Did the page go out? The newest deliveries of notifications, as the workers noted
//! them: `GET /api/notifications` and a panel of the page.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde_json::json;

use super::snapshot::Snapshot;
use super::views::clock;
use super::{Dashboard, latest};
use crate::clock::unix_now;

/// Deliveries the page lists.
const SHOWN: usize = 20;

/// `GET /api/notifications`: `{deliveries: [{id, channel, target, state, at, result,
/// error}]}`, newest first (the last 100); `deliveries: null` while the store cannot
/// be read.
pub(super) async fn api(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(json!({
            "deliveries": snapshot.deliveries,
            "checked_at": snapshot.taken_at,
            "timestamp": unix_now(),
        }))
}

/// The page's panel: the newest deliveries, a failed one with its reason.
pub(super) fn panel(snap: &Snapshot) -> Markup {
    html! {
        section.panel aria-labelledby="notifications-title" {
            h2 #notifications-title { "Notifications " span.muted { "(newest first)" } }
            @match &snap.deliveries {
                None => { p.muted { "Unknown: the store cannot be read." } }
                Some(list) if list.is_empty() => { p.muted { "None sent yet." } }
                Some(list) => {
                    ol.timeline #notifications {
                        @for d in list.iter().take(SHOWN) {
                            li data-state=(if d.result == "sent" { "healthy" } else { "down" }) {
                                time datetime=(clock(d.at)) { (clock(d.at)) }
                                " " strong { (d.target) } " " (d.state) " → " (d.channel) ": "
                                @if d.result == "sent" { "sent" } @else { strong { "failed" } }
                                @if let Some(error) = &d.error { br; span.muted.reason { (error) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
