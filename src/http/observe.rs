//! Request metrics and the access log, as one middleware.
//!
//! Metrics are labelled by the matched route pattern (`/api/jobs/{id}`), never the raw
//! path, so a scan of random URLs cannot create new series: unmatched requests share
//! the `endpoint="unmatched"` label. Health probes and scrapes are logged at DEBUG,
//! everything else at INFO, so probes every few seconds do not drown the log.

use std::time::Instant;

use actix_web::Error;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use crate::service::Role;
use crate::traces;

/// Names of one role's request metrics.
#[derive(Debug, Clone, Copy)]
pub struct RequestMetrics {
    /// Counter by `method`, `endpoint`, `status`.
    pub requests: &'static str,
    /// Histogram by `method`, `endpoint`.
    pub duration: &'static str,
    /// Gauge of requests being served.
    pub in_progress: &'static str,
}

/// Label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label: a standard method by name, anything else `other`, so a client
/// inventing methods cannot create series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served: the client's `X-Request-ID` when it is a sane
/// token (1 to 128 of `A-Z a-z 0-9 . _ : -`), else a new one. Every log line of the
/// request carries it, the response echoes it, and a job submitted with it keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    fn of(req: &ServiceRequest) -> Self {
        let given = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=128).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            });
        RequestId(given.map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned))
    }
}

impl actix_web::FromRequest for RequestId {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().simple().to_string()));
        std::future::ready(Ok(id))
    }
}

/// Times the request, counts it and writes its access-log line, all inside a span
/// that carries the request's id. With traces on, that span is `role`'s and continues
/// the trace of the client's `traceparent`, when it sends one.
pub async fn observe(
    role: Role,
    metrics: Option<RequestMetrics>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = RequestId::of(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %id.0,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    if traces::enabled() {
        // Named by route pattern, like the metrics: a span name is a category.
        let route = req.match_pattern();
        let name = format!(
            "{} {}",
            method_label(req.method()),
            route.as_deref().unwrap_or(UNMATCHED)
        );
        span.record("otel.name", name).record("otel.kind", "server");
        let traceparent = req
            .headers()
            .get(traces::TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        traces::open(&span, role, traceparent);
    }
    req.extensions_mut().insert(id.clone());
    observe_in_span(metrics, req, next, id)
        .instrument(span)
        .await
}

async fn observe_in_span(
    metrics: Option<RequestMetrics>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    id: RequestId,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = method_label(req.method());
    if let Some(m) = metrics {
        metrics::gauge!(m.in_progress).increment(1.0);
    }
    let mut result = next.call(req).await;
    if let (Ok(res), Ok(value)) = (&mut result, HeaderValue::from_str(&id.0)) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    let elapsed = start.elapsed();
    let (status, route) = match &result {
        Ok(res) => (res.status(), res.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code(), None),
    };
    let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
    if let Some(m) = metrics {
        metrics::gauge!(m.in_progress).decrement(1.0);
        let labels = [("method", method.to_owned()), ("endpoint", route.clone())];
        metrics::histogram!(m.duration, &labels).record(elapsed.as_secs_f64());
        metrics::counter!(
            m.requests,
            "method" => method,
            "endpoint" => route.clone(),
            "status" => status.as_u16().to_string()
        )
        .increment(1);
    }
    let duration_ms = elapsed.as_secs_f64() * 1e3;
    if route.starts_with("/health/") || route == "/metrics" {
        tracing::debug!(
            method,
            route,
            status = status.as_u16(),
            duration_ms,
            "request"
        );
    } else {
        tracing::info!(
            method,
            route,
            status = status.as_u16(),
            duration_ms,
            "request"
        );
    }
    result
}
