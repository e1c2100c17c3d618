//! Liveness and readiness, the same on every role.
//!
//! - `/health/live` answers from memory only: a slow store never gets a pod restarted.
//! - `/health/ready` reads flags kept by a background check that pings the store once
//!   per period, so a storm of probes never becomes a storm of store round trips. It is
//!   503 until the first check has run, while draining after a shutdown signal, and while
//!   the store is unreachable (unless the role runs with `ready_without_store`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::store::SharedStore;

use super::unix_now;

/// Readiness state of one role; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    service: &'static str,
    ready_without_store: bool,
    checked: AtomicBool,
    store_ok: AtomicBool,
    draining: AtomicBool,
    /// A role's own condition (e.g. the worker's consumer loop is running).
    role_check: Option<RoleCheck>,
}

/// A role's own readiness condition: `Err(reason)` when not ready.
pub type RoleCheck = Box<dyn Fn() -> Result<(), &'static str> + Send + Sync>;

impl Health {
    /// State of `service` (the name its JSON answers carry).
    pub fn new(service: &'static str, ready_without_store: bool) -> Self {
        Self::with_check(service, ready_without_store, None)
    }

    /// Like [`Health::new`], plus the role's own condition.
    pub fn with_check(
        service: &'static str,
        ready_without_store: bool,
        role_check: Option<RoleCheck>,
    ) -> Self {
        Health {
            inner: Arc::new(Inner {
                service,
                ready_without_store,
                checked: AtomicBool::new(false),
                store_ok: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                role_check,
            }),
        }
    }

    /// The service name used in JSON answers.
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// Whether the last store check succeeded.
    pub fn store_connected(&self) -> bool {
        self.inner.store_ok.load(Ordering::Relaxed)
    }

    /// Whether a shutdown signal has arrived.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Marks the role as shutting down: readiness turns 503 at once.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), &'static str> {
        let i = &self.inner;
        if i.draining.load(Ordering::Relaxed) {
            Err("draining")
        } else if !i.checked.load(Ordering::Relaxed) {
            Err("starting")
        } else if !i.store_ok.load(Ordering::Relaxed) && !i.ready_without_store {
            Err("redis unreachable")
        } else if let Some(check) = &i.role_check {
            check()
        } else {
            Ok(())
        }
    }

    /// Records the outcome of one store check and mirrors it in `gauge`.
    pub fn record_store_check(&self, ok: bool, gauge: &'static str) {
        let previous = self.inner.store_ok.swap(ok, Ordering::Relaxed);
        let first = !self.inner.checked.swap(true, Ordering::Relaxed);
        metrics::gauge!(gauge).set(if ok { 1.0 } else { 0.0 });
        if first || previous != ok {
            if ok {
                tracing::info!(service = self.service(), "store reachable");
            } else {
                tracing::warn!(service = self.service(), "store unreachable");
            }
        }
    }

    /// Pings `store` now and then every `period`, until the returned task is aborted.
    pub fn spawn_store_check(
        &self,
        store: SharedStore,
        period: Duration,
        gauge: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let result = store.ping().await;
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "store check failed");
                }
                health.record_store_check(result.is_ok(), gauge);
            }
        })
    }
}

/// `GET /health/live`.
pub async fn live(health: web::Data<Health>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "alive",
        "service": health.service(),
        "timestamp": unix_now(),
    }))
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
