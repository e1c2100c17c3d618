//! The API gateway: the system's REST entry point.
//!
//! Routes (besides the shared health and metrics surface of [`crate::http`]):
//! - `GET /`: who this is;
//! - `GET /api/status`: counts the request in the store (`INCR api:total_requests`) and
//!   reports it; with the store down it still answers 200, `redis_connected: false`;
//! - `GET /api/info`: version, environment and the endpoint map;
//! - `POST /api/jobs`: validates `{"type": ..., ...params}` and enqueues it for the
//!   workers: 202 with `{"id", "state": "queued"}` and a `Location`;
//! - `GET /api/jobs/{id}`: the job's record (state, attempts, timings, result or error).

use std::future::Future;
use std::net::TcpListener;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::config::{Environment, Settings};
use crate::http::error::ApiError;
use crate::http::limit::{Limiter, RateLimit};
use crate::http::observe::RequestId;
use crate::http::{self, RoleServer, ServeError};
use crate::jobs::{JobRecord, JobSpec};
use crate::redact;
use crate::service::{Role, Service};
use crate::store::{SharedStore, StoreError, keys};
use crate::traces;
use actix_web::middleware::from_fn;

/// Port the gateway listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8080;
/// The `service` field of every answer.
pub const SERVICE: Service = Service::ApiGateway;
const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Gateway {
    store: SharedStore,
    environment: Environment,
}

/// What the gateway does besides the shared settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The per-client limit on `/api/*`, when there is one.
    pub rate_limit: Option<RateLimit>,
}

/// Serves the gateway on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    settings: &Settings,
    config: &Config,
    store: SharedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let server = RoleServer::start(Role::Gateway, settings, &store, listener, None)?;
    // The limiter forgets idle clients until the server stops.
    let stop = CancellationToken::new();
    let _forgetting = stop.clone().drop_guard();
    let limiter = config
        .rate_limit
        .as_ref()
        .map(|limit| web::Data::new(Limiter::start(limit, stop.clone())));
    let state = web::Data::new(Gateway {
        store,
        environment: settings.environment,
    });
    // Clients of the original posted JSON without a content type.
    let jobs = web::JsonConfig::default()
        .limit(MAX_JOB_BODY)
        .content_type_required(false);
    let routes = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone()).service(http::get("/", index));
        let api = web::scope("/api")
            .service(http::get("/status", status))
            .service(http::get("/info", info))
            .service(http::post("/jobs", jobs.clone(), submit_job))
            .service(http::get("/jobs/{id}", job_state));
        match &limiter {
            Some(limiter) => {
                cfg.service(
                    api.app_data(limiter.clone())
                        .wrap(from_fn(http::limit::limit)),
                );
            }
            None => {
                cfg.service(api);
            }
        }
    };
    server.serve(routes, shutdown).await
}

async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "service": SERVICE,
        "message": "API Gateway is running",
        "version": VERSION,
        "docs": "/api/info",
    }))
}

/// Body of `GET /api/status`, the original's fields.
#[derive(Serialize)]
struct Status {
    service: Service,
    status: &'static str,
    environment: Environment,
    /// Whether the store's connection works (a wrong value under the key does not
    /// make it false).
    redis_connected: bool,
    total_requests: i64,
    /// Why the request was not counted, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    timestamp: f64,
}

#[tracing::instrument(level = "debug", skip_all)]
async fn status(gateway: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
    let counted = gateway.store.incr(keys::TOTAL_REQUESTS).await;
    if let Err(e) = &counted {
        let request_id = RequestId::of_request(&req);
        // The store check logs an outage once; per request it is only a debug line.
        if e.is_connection() {
            tracing::debug!(request_id, error = %e, "not counted");
        } else {
            tracing::warn!(request_id, error = %e, "not counted");
        }
    }
    HttpResponse::Ok().json(Status {
        service: SERVICE,
        status: "running",
        environment: gateway.environment,
        redis_connected: counted
            .as_ref()
            .map_or_else(|e| !e.is_connection(), |_| true),
        total_requests: *counted.as_ref().unwrap_or(&0),
        error: counted.err().map(|e| e.to_string()),
        timestamp: unix_now(),
    })
}

async fn info(gateway: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "service": SERVICE,
        "version": VERSION,
        "environment": gateway.environment.as_str(),
        "store": gateway.store.backend(),
        "endpoints": {
            "health": {"liveness": "/health/live", "readiness": "/health/ready"},
            "api": {"status": "/api/status", "info": "/api/info", "jobs": "/api/jobs"},
            "metrics": "/metrics",
        },
    }))
}

/// Largest job submission accepted, in bytes.
const MAX_JOB_BODY: usize = 16 * 1024;

#[tracing::instrument(level = "debug", skip_all)]
async fn submit_job(
    gateway: web::Data<Gateway>,
    request: RequestId,
    spec: web::Json<JobSpec>,
) -> Result<HttpResponse, ApiError> {
    let mut job = JobRecord::new(spec.into_inner(), unix_now());
    job.request_id = Some(request.0);
    job.traceparent = traces::traceparent(&tracing::Span::current());
    if !gateway.store.enqueue(&job).await? {
        return Err(ApiError::Unavailable("the job queue is full".into()));
    }
    tracing::debug!(job = %job.id, task = job.spec.task_type().as_str(), "job queued");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/jobs/{}", job.id)))
        .json(json!({"id": job.id, "state": job.state()})))
}

/// The record as stored, every field of it, also those of another version; a
/// notification's receiver (a credential) is shown by its origin only.
async fn job_state(
    gateway: web::Data<Gateway>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(raw) = gateway.store.load_job(&id).await? else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    match serde_json::from_str::<serde_json::Value>(&raw) {
        Ok(mut record) if record.is_object() => {
            if let Some(url) = record.get_mut("url")
                && let Some(raw) = url.as_str()
            {
                let shown =
                    url::Url::parse(raw).map_or_else(|_| redact::text(raw), |u| redact::origin(&u));
                *url = serde_json::Value::String(shown);
            }
            Ok(HttpResponse::Ok().json(record))
        }
        _ => Err(ApiError::Store(StoreError::Data {
            key: gateway.store.key(&keys::job(&id)),
            reason: "not a JSON object".into(),
        })),
    }
}
