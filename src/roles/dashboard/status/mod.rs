//! Public status pages (`status_pages:` of the targets file, [`crate::targets::pages`]):
//!
//! - `GET /status/{slug}`: the page ([`super::views::status`]);
//! - `GET /status/{slug}.json`: the same facts ([`report::Report`]);
//! - `GET /status/{slug}/feed.atom`: its incidents as an Atom feed ([`feed`]);
//! - `GET /status/static/{file}`: its stylesheet, under `/status/` so an Ingress that
//!   exposes only `/status/` and `/badge/` serves the page whole.
//!
//! Each is rendered once per snapshot and page (and per reload of the targets file) in
//! the dashboard's own [`Rendered`] slots: the facts are gathered from the snapshot
//! and the store on the first request after a new snapshot, and all three renderings
//! are made from them at once. An unknown slug is a 404 that says only that.

pub mod feed;
pub mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{Dashboard, Rendered, Rendering, accepts_gzip, respond};

/// The renderings of one page.
#[derive(Default)]
struct Slots {
    html: Rendered,
    json: Rendered,
    feed: Rendered,
}

/// The renderings of every page asked for, by slug (only slugs of the file get one).
#[derive(Default)]
pub(super) struct Pages(Mutex<HashMap<String, Arc<Slots>>>);

impl Slots {
    fn of(&self, format: Format) -> &Rendered {
        match format {
            Format::Html => &self.html,
            Format::Json => &self.json,
            Format::Feed => &self.feed,
        }
    }
}

impl Pages {
    fn slots(&self, slug: &str) -> Arc<Slots> {
        let mut pages = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        pages.entry(slug.to_owned()).or_default().clone()
    }
}

#[derive(Clone, Copy)]
enum Format {
    Html,
    Json,
    Feed,
}

/// `GET /status/{path}`: the page, its JSON or its feed, by what `path` ends with.
pub(super) async fn serve(
    req: HttpRequest,
    dashboard: web::Data<Dashboard>,
    path: web::Path<String>,
) -> HttpResponse {
    let (slug, format) = if let Some(slug) = path.strip_suffix(".json") {
        (slug, Format::Json)
    } else if let Some(slug) = path.strip_suffix("/feed.atom") {
        (slug, Format::Feed)
    } else {
        (path.as_str(), Format::Html)
    };
    render(&req, &dashboard, slug, format).await
}

/// The 404 of an unknown slug: the JSON error body every role answers errors with,
/// its message not quoting the path.
fn not_found() -> HttpResponse {
    crate::http::error::body(StatusCode::NOT_FOUND, "no status page here")
}

async fn render(
    req: &HttpRequest,
    dashboard: &Dashboard,
    slug: &str,
    format: Format,
) -> HttpResponse {
    let Some(file) = dashboard.targets.as_ref().map(|t| t.borrow().clone()) else {
        return not_found();
    };
    let Some(page) = file.status_pages.iter().find(|p| p.slug == slug) else {
        return not_found();
    };
    let snapshot = match super::latest(dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    let slots = dashboard.status_pages.slots(slug);
    // A new snapshot or a reloaded file (a new `Arc`) is a new rendering.
    let key = (
        snapshot.taken_at.to_bits(),
        Arc::as_ptr(&file) as usize as u64,
    );
    let rendering: Arc<Rendering> = match slots.of(format).cached(key) {
        Some(rendering) => rendering,
        None => {
            let report = report::gather(page, &file, &snapshot, dashboard.store.as_ref()).await;
            let json = serde_json::to_string(&report).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "status page not serialised");
                "{}".to_owned()
            });
            let html = super::views::status::page(&report).into_string();
            let renderings = [
                slots.html.keep(key, html),
                slots.json.keep(key, json),
                slots.feed.keep(key, feed::atom(&report)),
            ];
            let [html, json, atom] = renderings;
            match format {
                Format::Html => html,
                Format::Json => json,
                Format::Feed => atom,
            }
        }
    };
    let content_type = match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Json => "application/json",
        Format::Feed => feed::CONTENT_TYPE,
    };
    respond(&rendering, content_type, accepts_gzip(req))
}
