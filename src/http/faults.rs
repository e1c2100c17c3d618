//! Fault injection, for demonstrating how Kubernetes reacts: probes, restarts, HPA
//! scaling, alerts. Off unless the role runs with `--faults` (`FAULTS=on`); then the
//! gateway and the worker answer, under `/faults/` (404 when off):
//!
//! - `POST /faults/ready/disable` | `enable`: readiness answers 503 (or not) from now on;
//! - `POST /faults/live/disable` | `enable`: liveness answers 503, so the kubelet restarts the pod;
//! - `GET /faults/status/{code}`: answers with that status (200-599);
//! - `GET /faults/delay/{duration}`: answers after that long (at most [`MAX_DELAY`]);
//! - `POST /faults/api` `{"error_rate": 0.2, "latency": "150ms"}`: from now on that share
//!   of `/api/*` requests fails with a 500 (spread evenly, not at random, so a demo is
//!   repeatable) and every `/api/*` request waits that long first; `DELETE` clears it;
//! - `POST /faults/cpu` `{"duration": "60s", "cores": 2}`: keeps that many cores busy;
//! - `POST /faults/memory` `{"mib": 256, "duration": "60s"}`: holds that much memory;
//! - `GET /faults`: what is active.
//!
//! Every action is logged at WARN and counted in `svc_faults_injected_total{fault}`;
//! `svc_faults_active` gauges what is active, and each instance's heartbeat carries the
//! list, so the dashboard shows a banner and nobody mistakes a demo for an incident.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Health;
use super::error::{ApiError, body};
use crate::telemetry::metric;

/// Longest `GET /faults/delay/{duration}`.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Longest latency added to every `/api/*` request.
pub const MAX_API_LATENCY: Duration = Duration::from_secs(10);
/// Longest CPU or memory fault: the demo ends even if nobody remembers to end it.
pub const MAX_PRESSURE: Duration = Duration::from_secs(600);
/// Most memory all memory faults of one process hold at once, in MiB.
pub const MAX_MEMORY_MIB: u64 = 2048;
/// Largest JSON body of a fault request, in bytes.
const MAX_BODY: usize = 1024;

/// The fault state of one role's server; cheap to clone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

struct Inner {
    health: Health,
    api: Mutex<Option<ApiFault>>,
    /// `/api/*` requests seen since the API fault was set: picks which ones fail.
    api_seen: AtomicU64,
    /// CPU and memory faults still running, with when they end.
    pressure: Mutex<Vec<(String, Instant)>>,
    memory_held_mib: AtomicU64,
}

/// Errors and latency added to `/api/*`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ApiFault {
    error_rate: f64,
    latency: Duration,
}

impl Faults {
    /// Faults of the server whose readiness and liveness is `health`.
    pub fn new(health: Health) -> Self {
        Faults {
            inner: Arc::new(Inner {
                health,
                api: Mutex::new(None),
                api_seen: AtomicU64::new(0),
                pressure: Mutex::new(Vec::new()),
                memory_held_mib: AtomicU64::new(0),
            }),
        }
    }

    /// What is active now, one line each (what heartbeats carry and the banner shows).
    pub fn active(&self) -> Vec<String> {
        let health = &self.inner.health;
        let mut active = Vec::new();
        if health.live_fault() {
            active.push("liveness disabled".to_owned());
        }
        if health.ready_fault() {
            active.push("readiness disabled".to_owned());
        }
        if let Some(api) = *lock(&self.inner.api) {
            active.push(format!(
                "/api: {}% errors, +{} latency",
                percent(api.error_rate),
                humantime::format_duration(api.latency)
            ));
        }
        let now = Instant::now();
        let mut pressure = lock(&self.inner.pressure);
        pressure.retain(|(_, until)| *until > now);
        for (what, until) in pressure.iter() {
            let left = Duration::from_secs(until.duration_since(now).as_secs());
            active.push(format!(
                "{what} for {} more",
                humantime::format_duration(left)
            ));
        }
        drop(pressure);
        metrics::gauge!(metric::FAULTS_ACTIVE.name).set(active.len() as f64);
        active
    }

    /// Routes under `/faults/`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        // Per resource: an app-wide JsonConfig would apply to the role's own routes.
        let json = || {
            web::JsonConfig::default()
                .limit(MAX_BODY)
                .content_type_required(false)
        };
        cfg.app_data(web::Data::new(self.clone()))
            .service(super::get("/faults", status))
            .service(super::get("/faults/status/{code}", answer_status))
            .service(super::get("/faults/delay/{duration}", delay))
            // After the two above: the first resource whose pattern matches answers.
            .service(
                super::resource("/faults/{probe}/{action}", "POST")
                    .route(web::post().to(toggle_probe)),
            )
            .service(
                super::resource("/faults/api", "POST, DELETE")
                    .app_data(json())
                    .route(web::post().to(set_api))
                    .route(web::delete().to(clear_api)),
            )
            .service(super::post("/faults/cpu", json(), cpu))
            .service(super::post("/faults/memory", json(), memory));
    }

    /// Whether this `/api/*` request should fail, and how long it waits first.
    fn api_fault(&self) -> Option<(bool, Duration)> {
        let api = (*lock(&self.inner.api))?;
        let n = self.inner.api_seen.fetch_add(1, Ordering::Relaxed) as f64;
        // Request n fails when the running count of failures owed steps up: exactly
        // `error_rate` of them, evenly spread.
        let fail = ((n + 1.0) * api.error_rate).floor() > (n * api.error_rate).floor();
        Some((fail, api.latency))
    }

    /// The API fault for one `/api` or `/api/*` request, when one is set: waits its
    /// latency, then answers the injected 500 when this request is one to fail.
    pub(super) async fn api(&self) -> Option<HttpResponse> {
        let (fail, latency) = self.api_fault()?;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        fail.then(|| {
            body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected fault: POST /faults/api set an error rate",
            )
        })
    }
}

/// A share as a percentage for people: 0.07 is 7, not 7.000000000000001.
fn percent(share: f64) -> f64 {
    (share * 10_000.0).round() / 100.0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every writer leaves the value whole, so a poisoned lock is still good to use.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Logs `what` at WARN and counts it under `fault`.
fn injected(faults: &Faults, fault: &'static str, what: &str) {
    tracing::warn!(
        service = %faults.inner.health.service(),
        fault,
        what,
        "fault injected"
    );
    metrics::counter!(metric::FAULTS_INJECTED.name, "fault" => fault).increment(1);
    faults.active();
}

fn parse_duration(field: &str, raw: &str, max: Duration) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(raw)
        .map_err(|e| ApiError::BadRequest(format!("{field}: {raw:?} is not a duration: {e}")))?;
    if d > max {
        return Err(ApiError::BadRequest(format!(
            "{field}: {} is more than {}",
            humantime::format_duration(d),
            humantime::format_duration(max)
        )));
    }
    Ok(d)
}

async fn status(faults: web::Data<Faults>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "active": faults.active() }))
}

async fn toggle_probe(
    faults: web::Data<Faults>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (probe, action) = path.into_inner();
    let on = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(ApiError::NotFound(format!("no fault action {action:?}"))),
    };
    let health = &faults.inner.health;
    let fault = match (probe.as_str(), on) {
        ("ready", true) => "ready_disable",
        ("ready", false) => "ready_enable",
        ("live", true) => "live_disable",
        ("live", false) => "live_enable",
        _ => return Err(ApiError::NotFound(format!("no fault for {probe:?}"))),
    };
    if probe == "ready" {
        health.set_ready_fault(on);
    } else {
        health.set_live_fault(on);
    }
    injected(&faults, fault, &format!("/health/{probe} {action}d"));
    Ok(HttpResponse::Ok().json(json!({ "active": faults.active() })))
}

async fn answer_status(
    faults: web::Data<Faults>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{code:?} is not a status from 200 to 599")))?;
    injected(&faults, "status", &format!("answered {}", status.as_u16()));
    Ok(HttpResponse::build(status).json(json!({
        "fault": "status",
        "status": status.as_u16(),
    })))
}

async fn delay(
    faults: web::Data<Faults>,
    duration: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let d = parse_duration("duration", &duration, MAX_DELAY)?;
    injected(
        &faults,
        "delay",
        &format!("answering in {}", humantime::format_duration(d)),
    );
    tokio::time::sleep(d).await;
    Ok(HttpResponse::Ok().json(json!({
        "fault": "delay",
        "delayed_ms": d.as_millis() as u64,
    })))
}

/// Body of `POST /faults/api`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSpec {
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    latency: Option<String>,
}

async fn set_api(
    faults: web::Data<Faults>,
    spec: web::Json<ApiSpec>,
) -> Result<HttpResponse, ApiError> {
    if !(0.0..=1.0).contains(&spec.error_rate) {
        return Err(ApiError::BadRequest(
            "error_rate must be between 0 and 1".into(),
        ));
    }
    let latency = match &spec.latency {
        Some(raw) => parse_duration("latency", raw, MAX_API_LATENCY)?,
        None => Duration::ZERO,
    };
    let fault = ApiFault {
        error_rate: spec.error_rate,
        latency,
    };
    *lock(&faults.inner.api) = Some(fault);
    faults.inner.api_seen.store(0, Ordering::Relaxed);
    injected(
        &faults,
        "api",
        &format!(
            "/api: {}% errors, +{} latency",
            percent(fault.error_rate),
            humantime::format_duration(latency)
        ),
    );
    Ok(HttpResponse::Ok().json(json!({ "active": faults.active() })))
}

async fn clear_api(faults: web::Data<Faults>) -> HttpResponse {
    *lock(&faults.inner.api) = None;
    injected(&faults, "api_clear", "/api faults cleared");
    HttpResponse::Ok().json(json!({ "active": faults.active() }))
}

/// Body of `POST /faults/cpu`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuSpec {
    duration: String,
    #[serde(default = "one")]
    cores: usize,
}

fn one() -> usize {
    1
}

async fn cpu(
    faults: web::Data<Faults>,
    spec: web::Json<CpuSpec>,
) -> Result<HttpResponse, ApiError> {
    let duration = parse_duration("duration", &spec.duration, MAX_PRESSURE)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !(1..=cores).contains(&spec.cores) {
        return Err(ApiError::BadRequest(format!(
            "cores must be between 1 and {cores} (this machine's)"
        )));
    }
    let until = Instant::now() + duration;
    for _ in 0..spec.cores {
        std::thread::Builder::new()
            .name("fault-cpu".into())
            .spawn(move || burn(until))
            .map_err(|e| ApiError::Unavailable(format!("cannot start a thread: {e}")))?;
    }
    let what = format!("cpu: {} cores busy", spec.cores);
    lock(&faults.inner.pressure).push((what.clone(), until));
    injected(
        &faults,
        "cpu",
        &format!("{what} for {}", humantime::format_duration(duration)),
    );
    Ok(HttpResponse::Ok().json(json!({ "active": faults.active() })))
}

/// Keeps one core busy until `until`.
fn burn(until: Instant) {
    let mut x: u64 = 1;
    while Instant::now() < until {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

/// Body of `POST /faults/memory`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemorySpec {
    mib: u64,
    duration: String,
}

async fn memory(
    faults: web::Data<Faults>,
    spec: web::Json<MemorySpec>,
) -> Result<HttpResponse, ApiError> {
    let duration = parse_duration("duration", &spec.duration, MAX_PRESSURE)?;
    let mib = spec.mib;
    let held = &faults.inner.memory_held_mib;
    let reserved = held.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
        (mib >= 1 && h + mib <= MAX_MEMORY_MIB).then_some(h + mib)
    });
    if let Err(now) = reserved {
        return Err(ApiError::BadRequest(format!(
            "mib must be at least 1 and all memory faults at most {MAX_MEMORY_MIB} MiB \
             ({now} MiB held now)"
        )));
    }
    // Filled, not just reserved: untouched pages would not count against the pod.
    let filled = tokio::task::spawn_blocking(move || {
        let bytes = usize::try_from(mib * 1024 * 1024).unwrap_or(usize::MAX);
        let mut buf: Vec<u8> = Vec::new();
        buf.try_reserve_exact(bytes).map(|()| {
            buf.resize(bytes, 0xA5);
            buf
        })
    })
    .await;
    let failed = |why: String| {
        held.fetch_sub(mib, Ordering::SeqCst);
        ApiError::Unavailable(format!("cannot allocate {mib} MiB: {why}"))
    };
    let buf = match filled {
        Ok(Ok(buf)) => buf,
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(e) => return Err(failed(e.to_string())),
    };
    let until = Instant::now() + duration;
    let what = format!("memory: {mib} MiB held");
    lock(&faults.inner.pressure).push((what.clone(), until));
    let holder = faults.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(until.into()).await;
        drop(buf);
        holder
            .inner
            .memory_held_mib
            .fetch_sub(mib, Ordering::SeqCst);
        holder.active();
    });
    injected(
        &faults,
        "memory",
        &format!("{what} for {}", humantime::format_duration(duration)),
    );
    Ok(HttpResponse::Ok().json(json!({ "active": faults.active() })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;

    #[test]
    fn the_error_rate_is_exact_and_evenly_spread() {
        let faults = Faults::new(Health::new(Service::ApiGateway, true, None));
        *lock(&faults.inner.api) = Some(ApiFault {
            error_rate: 0.25,
            latency: Duration::ZERO,
        });
        let fails: Vec<bool> = (0..8)
            .map(|_| faults.api_fault().is_some_and(|(f, _)| f))
            .collect();
        assert_eq!(
            fails,
            [false, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn nothing_is_active_at_first() {
        let faults = Faults::new(Health::new(Service::Worker, true, None));
        assert!(faults.active().is_empty());
        assert_eq!(faults.api_fault(), None);
    }
}
