//! Request metrics and the access log, as one middleware.
//!
//! Metrics are labelled by the matched route pattern (`/api/jobs/{id}`), never the raw
//! path, so a scan of random URLs cannot create new series: unmatched requests share
//! the `endpoint="unmatched"` label. Health probes and scrapes are logged at DEBUG,
//! everything else at INFO, so probes every few seconds do not drown the log.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

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

/// Times the request, counts it and writes its access-log line.
pub async fn observe(
    metrics: Option<RequestMetrics>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = method_label(req.method());
    if let Some(m) = metrics {
        metrics::gauge!(m.in_progress).increment(1.0);
    }
    let result = next.call(req).await;
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
