//! Liveness and readiness, the same on every role.
//!
//! - `/health/live` answers from memory only: a slow store never gets a pod restarted.
//! - `/health/ready` reads flags kept by a background check that pings the store once
//!   per period, so a storm of probes never becomes a storm of store round trips. It is
//!   503 until the first check has run, while draining after a shutdown signal, while
//!   the store is unreachable (unless the role runs with `ready_without_store`), while
//!   a fault turns it off (see [`super::faults`]), and for good once one of the role's
//!   own loops has stopped. The `reason` says which, and for the store what failed
//!   (refused, authentication, timeout).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::service::Service;
use crate::store::SharedStore;

/// Readiness state of one role; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    ready_without_store: bool,
    checked: AtomicBool,
    /// Why the last store check failed; `None` when it succeeded.
    store_error: Mutex<Option<String>>,
    draining: AtomicBool,
    /// Why one of the role's loops stopped, once one has.
    failed: Mutex<Option<String>>,
    /// A role's own condition (e.g. the worker's scheduler ticks).
    role_check: Option<RoleCheck>,
    /// Readiness turned off on purpose (fault injection).
    ready_fault: AtomicBool,
    /// Liveness turned off on purpose (fault injection).
    live_fault: AtomicBool,
}

/// A role's own readiness condition: `Err(reason)` when not ready.
pub type RoleCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

impl Health {
    /// State of `service` (the name its JSON answers carry), with the role's own
    /// condition if it has one.
    pub fn new(service: Service, ready_without_store: bool, role_check: Option<RoleCheck>) -> Self {
        Health {
            inner: Arc::new(Inner {
                service,
                ready_without_store,
                checked: AtomicBool::new(false),
                store_error: Mutex::new(Some("not checked yet".into())),
                draining: AtomicBool::new(false),
                failed: Mutex::new(None),
                role_check,
                ready_fault: AtomicBool::new(false),
                live_fault: AtomicBool::new(false),
            }),
        }
    }

    /// The service whose health this is.
    pub fn service(&self) -> Service {
        self.inner.service
    }

    /// Whether the last store check succeeded.
    pub fn store_connected(&self) -> bool {
        lock(&self.inner.store_error).is_none()
    }

    /// Whether a shutdown signal has arrived.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Marks the role as shutting down: readiness turns 503 at once.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Marks the role as broken for good (a loop it needs has stopped): readiness
    /// turns 503 with `reason`, and the reason is logged once, at ERROR.
    pub fn fail(&self, reason: String) {
        tracing::error!(service = %self.service(), %reason, "not ready from now on");
        *lock(&self.inner.failed) = Some(reason);
    }

    /// Turns readiness off (`true`) or back on, on purpose: see [`super::faults`].
    pub fn set_ready_fault(&self, on: bool) {
        self.inner.ready_fault.store(on, Ordering::Relaxed);
    }

    /// Whether readiness is off on purpose.
    pub fn ready_fault(&self) -> bool {
        self.inner.ready_fault.load(Ordering::Relaxed)
    }

    /// Turns liveness off (`true`) or back on, on purpose: see [`super::faults`].
    pub fn set_live_fault(&self, on: bool) {
        self.inner.live_fault.store(on, Ordering::Relaxed);
    }

    /// Whether liveness is off on purpose.
    pub fn live_fault(&self) -> bool {
        self.inner.live_fault.load(Ordering::Relaxed)
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let i = &self.inner;
        if i.draining.load(Ordering::Relaxed) {
            return Err("draining".into());
        }
        if i.ready_fault.load(Ordering::Relaxed) {
            return Err("fault injected: readiness disabled".into());
        }
        if let Some(reason) = lock(&i.failed).as_ref() {
            return Err(reason.clone());
        }
        if !i.checked.load(Ordering::Relaxed) {
            return Err("starting".into());
        }
        if !i.ready_without_store
            && let Some(error) = lock(&i.store_error).as_ref()
        {
            return Err(error.clone());
        }
        match &i.role_check {
            Some(check) => check(),
            None => Ok(()),
        }
    }

    /// Records the outcome of one store check and mirrors it in `gauge`; logs when
    /// the outcome (or the reason of a failure) changes.
    pub fn record_store_check(&self, outcome: Result<(), String>, gauge: &'static str) {
        let first = !self.inner.checked.swap(true, Ordering::Relaxed);
        metrics::gauge!(gauge).set(if outcome.is_ok() { 1.0 } else { 0.0 });
        let now = outcome.err();
        let previous = std::mem::replace(&mut *lock(&self.inner.store_error), now.clone());
        if first || previous != now {
            match now {
                None => tracing::info!(service = %self.service(), "store reachable"),
                Some(error) => {
                    tracing::warn!(service = %self.service(), %error, "store unreachable")
                }
            }
        }
    }

    /// Pings `store` now and then every `period`, until `stop` is cancelled.
    pub fn spawn_store_check(
        &self,
        store: SharedStore,
        period: Duration,
        gauge: &'static str,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        crate::tasks::spawn_until(stop, "store check", async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let outcome = store.ping().await.map_err(|e| e.to_string());
                health.record_store_check(outcome, gauge);
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every writer leaves the value whole, so a poisoned lock is still good to use.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `GET /health/live`.
pub async fn live(health: web::Data<Health>) -> HttpResponse {
    if health.live_fault() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "dead",
            "service": health.service(),
            "reason": "fault injected: liveness disabled",
            "timestamp": unix_now(),
        }));
    }
    // A struct, not `json!`: the answer every probe gets is built without a map.
    #[derive(serde::Serialize)]
    struct Alive {
        status: &'static str,
        service: Service,
        timestamp: f64,
    }
    HttpResponse::Ok().json(Alive {
        status: "alive",
        service: health.service(),
        timestamp: unix_now(),
    })
}

/// `GET /health/ready`.
pub async fn ready(health: web::Data<Health>) -> HttpResponse {
    let redis_connected = health.store_connected();
    match health.readiness() {
        Ok(()) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "service": health.service(),
            "redis_connected": redis_connected,
            "timestamp": unix_now(),
        })),
        Err(reason) => HttpResponse::ServiceUnavailable().json(json!({
            "status": "not_ready",
            "service": health.service(),
            "redis_connected": redis_connected,
            "reason": reason,
            "timestamp": unix_now(),
        })),
    }
}
