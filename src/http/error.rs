//! JSON error bodies: `{"error": "<reason phrase>", "message": "<what happened>"}`.

use actix_web::body::EitherBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::store::StoreError;

/// A failure a handler reports to its client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store is needed and unavailable, or holds what this build cannot read.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The service cannot take this now (e.g. a full queue); try again later.
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(StoreError::Data { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        body(self.status_code(), &self.to_string())
    }
}

/// The JSON error response for `status`.
pub fn body(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    }))
}

/// Default service: 404 for any path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    body(
        StatusCode::NOT_FOUND,
        &format!("no route for {} {}", req.method(), req.path()),
    )
}

/// Default service of a resource: 405 for a method it has no route for, with the
/// methods it has in `Allow`.
pub async fn method_not_allowed(req: HttpRequest, allow: &'static str) -> HttpResponse {
    let mut res = body(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "method {} is not allowed on {} (allowed: {allow})",
            req.method(),
            req.path()
        ),
    );
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    res
}

/// Turns every error response that is not JSON already (405 from a route table, 400
/// from an extractor, ...) into the JSON error body.
pub fn into_json<B>(res: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let status = res.status();
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res.map_into_left_body();
    }
    let message = match res.response().error() {
        Some(e) => e.to_string(),
        None => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, body(status, &message)).map_into_right_body()
}
