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
use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::cli::Environment;
use crate::config::Settings;
use crate::http::error::ApiError;
use crate::http::{self, Drain, Health, RequestMetrics, ServeError, unix_now};
use crate::jobs::{JobRecord, JobSpec};
use crate::presence;
use crate::store::{SharedStore, keys};
use crate::telemetry::names;

/// Port the gateway listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8080;
/// The role's name in heartbeats.
pub const ROLE: &str = "gateway";
/// The `service` field of every answer.
pub const SERVICE: &str = "api-gateway";
const VERSION: &str = env!("CARGO_PKG_VERSION");

const METRICS: RequestMetrics = RequestMetrics {
    requests: names::GATEWAY_REQUESTS,
    duration: names::GATEWAY_REQUEST_DURATION,
    in_progress: names::GATEWAY_IN_PROGRESS,
};

struct Gateway {
    store: SharedStore,
    environment: Environment,
}

/// Serves the gateway on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    settings: &Settings,
    store: SharedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    crate::telemetry::metrics();
    // Present from the first scrape, before any request has been counted.
    metrics::gauge!(names::GATEWAY_IN_PROGRESS).set(0.0);
    let health = Health::new(SERVICE, settings.ready_without_store);
    let _upkeep = presence::Upkeep::start(
        &health,
        &store,
        settings.store_check_period,
        names::GATEWAY_REDIS_STATUS,
        presence::describe(ROLE, listener.local_addr()?),
    );
    let state = web::Data::new(Gateway {
        store,
        environment: settings.environment,
    });
    let routes = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .service(http::resource("/").route(web::get().to(index)))
            .service(http::resource("/api/status").route(web::get().to(status)))
            .service(http::resource("/api/info").route(web::get().to(info)))
            .service(
                http::resource("/api/jobs")
                    // Clients of the original posted JSON without a content type.
                    .app_data(
                        web::JsonConfig::default()
                            .limit(MAX_JOB_BODY)
                            .content_type_required(false),
                    )
                    .route(web::post().to(submit_job)),
            )
            .service(http::resource("/api/jobs/{id}").route(web::get().to(job_state)));
    };
    let drain = Drain {
        delay: settings.drain_delay,
        grace: settings.grace_period,
    };
    http::serve(listener, health, Some(METRICS), drain, routes, shutdown).await
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
    service: &'static str,
    status: &'static str,
    environment: Environment,
    redis_connected: bool,
    total_requests: i64,
    timestamp: f64,
}

#[tracing::instrument(level = "debug", skip_all)]
async fn status(gateway: web::Data<Gateway>) -> HttpResponse {
    let counted = gateway.store.incr(keys::TOTAL_REQUESTS).await;
    if let Err(e) = &counted {
        // The store check logs the outage once; per request it is only a debug line.
        tracing::debug!(error = %e, "not counted");
    }
    HttpResponse::Ok().json(Status {
        service: SERVICE,
        status: "running",
        environment: gateway.environment,
        redis_connected: counted.is_ok(),
        total_requests: counted.unwrap_or(0),
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
    spec: web::Json<JobSpec>,
) -> Result<HttpResponse, ApiError> {
    let spec = spec.into_inner();
    spec.validate().map_err(ApiError::BadRequest)?;
    let job = JobRecord::new(spec, unix_now());
    if !gateway.store.enqueue(&job).await? {
        return Err(ApiError::Unavailable("the job queue is full".into()));
    }
    tracing::debug!(job = %job.id, task = job.spec.task_type().as_str(), "job queued");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/jobs/{}", job.id)))
        .json(json!({"id": job.id, "state": job.state})))
}

async fn job_state(
    gateway: web::Data<Gateway>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match gateway.store.load_job(&id).await? {
        Some(job) => Ok(HttpResponse::Ok().json(job)),
        None => Err(ApiError::NotFound(format!("no job {id}"))),
    }
}
