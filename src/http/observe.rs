//! The one middleware every request passes: its id, the in-flight bound, the API
//! fault, JSON error bodies, request metrics and the access log.
//!
//! Metrics are labelled by the matched route pattern (`/api/jobs/{id}`), never the raw
//! path, so a scan of random URLs cannot create new series: unmatched requests share
//! the `endpoint="unmatched"` label. Each worker thread keeps the metric handles it has
//! used, per route, method and status, so counting a request is a map lookup and an
//! atomic add, not a registry lookup with a key built per call.
//!
//! A feature that is off costs one branch: the in-flight bound and the API fault are
//! `None` unless configured. Health probes and scrapes are logged at DEBUG, everything
//! else at INFO, so probes every few seconds do not drown the log. A request gets a
//! span only when traces are on (a probe only when it carries a `traceparent`): the
//! access line carries the request id itself, and a span per request (a slab entry,
//! its fields formatted, entered at every poll) cost more than a tenth of serving
//! `/api/status`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::{Error, HttpMessage};
use metrics::{Counter, Gauge, Histogram};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::error;
use super::faults::Faults;
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
/// token (1 to 128 of `A-Z a-z 0-9 . _ : -`), else a new one ([`RequestId::fresh`];
/// none for a health probe or a scrape that sent none). The access line and every line a handler logs about the request carry it, the
/// response echoes it, and a job submitted with it keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's id, when it sent a sane one.
    fn given(req: &ServiceRequest) -> Option<Self> {
        req.headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=128).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            })
            .map(|v| RequestId(v.to_owned()))
    }

    /// A new id: 32 hex digits, this process's random 64-bit prefix then a counter.
    /// As unique in logs as a random UUID (another process has another prefix), without
    /// asking the kernel for randomness per request.
    pub fn fresh() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
        let mut id = String::with_capacity(32);
        push_hex(&mut id, prefix);
        push_hex(&mut id, NEXT.fetch_add(1, Ordering::Relaxed));
        RequestId(id)
    }
}

/// Appends `n` as 16 lower-case hex digits.
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[((n >> (shift * 4)) & 0xf) as usize]));
    }
}

impl RequestId {
    /// The id of `req`, for a line logged while serving it outside a span.
    pub fn of_request(req: &actix_web::HttpRequest) -> Option<String> {
        req.extensions().get::<RequestId>().map(|id| id.0.clone())
    }
}

impl actix_web::FromRequest for RequestId {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::fresh);
        ready(Ok(id))
    }
}

/// The middleware of a role's server: built once, shared by its worker threads.
#[derive(Clone)]
pub struct Observe {
    role: Role,
    metrics: Option<RequestMetrics>,
    in_flight: Option<Arc<Semaphore>>,
    faults: Option<Faults>,
}

impl Observe {
    /// Observes `role`'s requests into `metrics` (when it has them); answers a fast 503
    /// once `max_in_flight` requests are being served (0: no bound); applies the API
    /// fault of `faults` when fault injection is on.
    pub fn new(
        role: Role,
        metrics: Option<RequestMetrics>,
        max_in_flight: usize,
        faults: Option<Faults>,
    ) -> Self {
        Observe {
            role,
            metrics,
            in_flight: (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight))),
            faults,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = ObserveService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let handles = self.metrics.map(|names| Handles {
            names,
            in_progress: metrics::gauge!(names.in_progress),
            routes: RefCell::new(HashMap::new()),
        });
        ready(Ok(ObserveService {
            service: Rc::new(service),
            shared: Rc::new(Shared {
                role: self.role,
                handles,
                in_flight: self.in_flight.clone(),
                faults: self.faults.clone(),
            }),
        }))
    }
}

/// The middleware on one worker thread.
pub struct ObserveService<S> {
    service: Rc<S>,
    shared: Rc<Shared>,
}

struct Shared {
    role: Role,
    handles: Option<Handles>,
    in_flight: Option<Arc<Semaphore>>,
    faults: Option<Faults>,
}

type Answer<B> = Result<ServiceResponse<EitherBody<B>>, Error>;

impl<S, B> Service<ServiceRequest> for ObserveService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Answer<B>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let shared = Rc::clone(&self.shared);
        let probe = matches!(req.path(), "/health/live" | "/health/ready" | "/metrics");
        // A probe or scrape keeps the client's id, but none is made for it: kubelets and
        // Prometheus send none and read none, and its line is DEBUG.
        let id = RequestId::given(&req).or_else(|| (!probe).then(RequestId::fresh));
        let echo = id.as_ref().and_then(|id| HeaderValue::from_str(&id.0).ok());
        let span = shared.span(&req, id.as_ref(), probe);
        if let Some(id) = id {
            req.extensions_mut().insert(id);
        }
        Box::pin(
            async move {
                let start = Instant::now();
                let method = method_label(req.method());
                if let Some(h) = &shared.handles {
                    h.in_progress.increment(1.0);
                }
                let mut result = shared.pass(&*service, req, probe).await;
                let elapsed = start.elapsed();
                if let (Ok(res), Some(echo)) = (&mut result, &echo) {
                    res.headers_mut()
                        .insert(HeaderName::from_static(REQUEST_ID), echo.clone());
                }
                let (status, route) = match &result {
                    Ok(res) => (res.status(), res.request().match_pattern()),
                    Err(e) => (e.as_response_error().status_code(), None),
                };
                let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
                let duration_ms = elapsed.as_secs_f64() * 1e3;
                let status_code = status.as_u16();
                let request_id = echo.as_ref().and_then(|v| v.to_str().ok());
                if probe {
                    tracing::debug!(
                        request_id,
                        method,
                        route,
                        status = status_code,
                        duration_ms,
                        "request"
                    );
                } else {
                    tracing::info!(
                        request_id,
                        method,
                        route,
                        status = status_code,
                        duration_ms,
                        "request"
                    );
                }
                if let Some(h) = &shared.handles {
                    h.in_progress.decrement(1.0);
                    h.record(method, route, status, elapsed);
                }
                result
            }
            .instrument(span),
        )
    }
}

impl Shared {
    /// The request's span when traces are on: `role`'s server span, continuing the
    /// client's `traceparent`, carrying the request id to the lines logged under it.
    /// None with traces off, and for a probe that is not part of a trace.
    fn span(&self, req: &ServiceRequest, id: Option<&RequestId>, probe: bool) -> tracing::Span {
        if !traces::enabled() {
            return tracing::Span::none();
        }
        let traceparent = req
            .headers()
            .get(traces::TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        if probe && traceparent.is_none() {
            return tracing::Span::none();
        }
        // Named by route pattern, like the metrics: a span name is a category.
        let route = req.match_pattern();
        let name = format!(
            "{} {}",
            method_label(req.method()),
            route.as_deref().unwrap_or(UNMATCHED)
        );
        let span = tracing::info_span!(
            "request",
            request_id = id.map(|id| id.0.as_str()),
            otel.name = name,
            otel.kind = "server",
        );
        traces::open(&span, self.role, traceparent);
        span
    }

    /// Serves `req` unless the in-flight bound or the API fault answers first; error
    /// responses leave as JSON.
    async fn pass<S, B>(&self, service: &S, req: ServiceRequest, probe: bool) -> Answer<B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
        B: MessageBody,
    {
        // Probes and scrapes are never bounded: they are cheap, and a busy pod is not
        // a dead one.
        let _permit = match &self.in_flight {
            Some(slots) if !probe => match slots.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => return Ok(req.into_response(busy()).map_into_right_body()),
            },
            _ => None,
        };
        if let Some(faults) = &self.faults {
            let path = req.path();
            if (path == "/api" || path.starts_with("/api/"))
                && let Some(res) = faults.api().await
            {
                // Answered here, it is logged and counted like a real failure.
                return Ok(req.into_response(res).map_into_right_body());
            }
        }
        let res = service.call(req).await?;
        Ok(error::into_json(res))
    }
}

/// The 503 of a server serving the most requests it serves at once.
fn busy() -> actix_web::HttpResponse {
    let mut res = error::body(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy: the most requests this server serves at once are in flight",
    );
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// One worker thread's handles of a role's request metrics.
struct Handles {
    names: RequestMetrics,
    in_progress: Gauge,
    /// By route pattern; bounded by routes x methods x statuses, like the series.
    routes: RefCell<HashMap<String, RouteHandles>>,
}

struct RouteHandles {
    endpoint: String,
    durations: Vec<(&'static str, Histogram)>,
    counts: Vec<(&'static str, StatusCode, Counter)>,
}

impl Handles {
    fn record(&self, method: &'static str, route: String, status: StatusCode, elapsed: Duration) {
        let names = self.names;
        let mut routes = self.routes.borrow_mut();
        let route = routes
            .entry(route)
            .or_insert_with_key(|endpoint| RouteHandles {
                endpoint: endpoint.clone(),
                durations: Vec::new(),
                counts: Vec::new(),
            });
        let duration = match route.durations.iter().position(|(m, _)| *m == method) {
            Some(i) => i,
            None => {
                let endpoint = route.endpoint.clone();
                let h =
                    metrics::histogram!(names.duration, "method" => method, "endpoint" => endpoint);
                route.durations.push((method, h));
                route.durations.len() - 1
            }
        };
        route.durations[duration].1.record(elapsed.as_secs_f64());
        let count = match route
            .counts
            .iter()
            .position(|(m, s, _)| *m == method && *s == status)
        {
            Some(i) => i,
            None => {
                let c = metrics::counter!(
                    names.requests,
                    "method" => method,
                    "endpoint" => route.endpoint.clone(),
                    "status" => status.as_u16().to_string()
                );
                route.counts.push((method, status, c));
                route.counts.len() - 1
            }
        };
        route.counts[count].2.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_32_hex_digits_with_one_prefix_and_never_repeat() {
        let ids: Vec<String> = (0..1000).map(|_| RequestId::fresh().0).collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert_eq!(id[..16], ids[0][..16], "one prefix per process");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
