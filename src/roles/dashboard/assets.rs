//! The stylesheets and the script, compiled into the binary.
//!
//! Each is served at a path that carries a hash of its content
//! (`/static/dashboard-<hash>.css`; the public status pages' own stylesheet under
//! `/status/static/`, which a public Ingress exposes), so browsers may cache it for a year: a new build
//! with new content has a new path. The hash is also the ETag, for clients that
//! revalidate anyway.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use actix_web::http::header::{self, ETag, EntityTag};
use actix_web::{HttpRequest, HttpResponse, web};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Where it is served, hash included.
    pub path: String,
    content_type: &'static str,
    body: &'static str,
    tag: EntityTag,
}

impl Asset {
    fn new(
        dir: &str,
        stem: &str,
        extension: &str,
        content_type: &'static str,
        body: &'static str,
    ) -> Self {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let hash = format!("{:016x}", hasher.finish());
        Asset {
            path: format!("{dir}/{stem}-{hash}.{extension}"),
            content_type,
            body,
            tag: EntityTag::new_strong(hash),
        }
    }
}

/// The stylesheet.
pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "/static",
        "dashboard",
        "css",
        "text/css; charset=utf-8",
        concat!(
            include_str!("static/theme.css"),
            include_str!("static/dashboard.css")
        ),
    )
});

/// The script that refreshes the page.
pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "/static",
        "dashboard",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("static/dashboard.js"),
    )
});

/// The public status pages' stylesheet.
pub static STATUS_CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "/status/static",
        "status",
        "css",
        "text/css; charset=utf-8",
        concat!(
            include_str!("static/theme.css"),
            include_str!("static/status.css")
        ),
    )
});

/// `GET /static/{file}` and `GET /status/static/{file}`: an embedded file, 304 when
/// the client has it already.
pub async fn serve(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let wanted = req.path();
    let Some(asset) = [&*CSS, &*JS, &*STATUS_CSS]
        .into_iter()
        .find(|a| a.path == wanted)
    else {
        return crate::http::error::body(
            actix_web::http::StatusCode::NOT_FOUND,
            &format!("no static file {file}"),
        );
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.tag.to_string()));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header(ETag(asset.tag.clone()))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"));
    if fresh {
        res.finish()
    } else {
        res.content_type(asset.content_type).body(asset.body)
    }
}
