//! The one start-up path of every serving role: install the metrics, announce the
//! instance, keep readiness from a background store check, serve the role's routes
//! with the shared surface (and the fault routes when enabled), and drain on the
//! shutdown signal.

use std::future::Future;
use std::net::TcpListener;

use actix_web::web;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::health::RoleCheck;
use super::{Drain, Faults, Health, RequestMetrics, ServeError};
use crate::config::Settings;
use crate::presence;
use crate::service::Role;
use crate::store::Instance;
use crate::store::SharedStore;
use crate::telemetry::{self, metric};

/// A role about to serve: its readiness and its announcement, running.
pub struct RoleServer {
    role: Role,
    health: Health,
    instance: Instance,
    listener: TcpListener,
    drain: Drain,
    limits: crate::config::ServerLimits,
    metrics: Option<RequestMetrics>,
    faults: Option<Faults>,
    store: SharedStore,
    _upkeep: Upkeep,
}

/// How long a departing instance waits for the store to take its leave.
const DEPART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The store check and the heartbeat; both stop when this is dropped, and the
/// heartbeat alone at shutdown.
struct Upkeep {
    heartbeat: CancellationToken,
    _stop: DropGuard,
}

/// The request metrics of `role`'s server, and the gauge of its store connection.
fn metrics_of(role: Role) -> (Option<RequestMetrics>, &'static str) {
    match role {
        Role::Gateway => (
            Some(RequestMetrics {
                requests: metric::GATEWAY_REQUESTS.name,
                duration: metric::GATEWAY_REQUEST_DURATION.name,
                in_progress: metric::GATEWAY_IN_PROGRESS.name,
            }),
            metric::GATEWAY_REDIS_STATUS.name,
        ),
        Role::Dashboard => (
            Some(RequestMetrics {
                requests: metric::DASHBOARD_REQUESTS.name,
                duration: metric::DASHBOARD_REQUEST_DURATION.name,
                in_progress: metric::DASHBOARD_IN_PROGRESS.name,
            }),
            metric::DASHBOARD_REDIS_STATUS.name,
        ),
        Role::Worker => (None, metric::WORKER_REDIS_STATUS.name),
    }
}

impl RoleServer {
    /// Starts `role`'s upkeep on `listener` (bound by the caller): metrics, store
    /// check, heartbeat. `check` is the role's own readiness condition.
    pub fn start(
        role: Role,
        settings: &Settings,
        store: &SharedStore,
        listener: TcpListener,
        check: Option<RoleCheck>,
    ) -> Result<Self, ServeError> {
        Self::start_at(role, settings, store, listener, check, None)
    }

    /// [`RoleServer::start`] of a worker that announces `location` in its heartbeat.
    pub fn start_at(
        role: Role,
        settings: &Settings,
        store: &SharedStore,
        listener: TcpListener,
        check: Option<RoleCheck>,
        location: Option<String>,
    ) -> Result<Self, ServeError> {
        telemetry::install_metrics();
        let (metrics, gauge) = metrics_of(role);
        if let Some(m) = metrics {
            // Present from the first scrape, before any request has been counted.
            metrics::gauge!(m.in_progress).set(0.0);
        }
        let health = Health::new(role.service(), settings.ready_without_store, check);
        let instance = Instance {
            location,
            ..presence::describe(role, listener.local_addr()?, settings.advertise.as_deref())
        };
        // The gateway and the worker take faults; the dashboard must show them, not
        // suffer them.
        let faults = (settings.faults && role != Role::Dashboard).then(|| {
            metrics::gauge!(metric::FAULTS_ACTIVE.name).set(0.0);
            Faults::new(health.clone())
        });
        let active = faults.clone();
        let stop = CancellationToken::new();
        let heartbeat = stop.child_token();
        health.spawn_store_check(
            store.clone(),
            settings.store_check_period,
            gauge,
            stop.clone(),
        );
        presence::spawn_heartbeat(
            store.clone(),
            instance.clone(),
            move || active.as_ref().map(Faults::active).unwrap_or_default(),
            heartbeat.clone(),
        );
        Ok(RoleServer {
            _upkeep: Upkeep {
                heartbeat,
                _stop: stop.drop_guard(),
            },
            role,
            health,
            instance,
            listener,
            drain: Drain {
                delay: settings.drain_delay,
                grace: settings.grace_period,
            },
            limits: settings.limits,
            metrics,
            faults,
            store: store.clone(),
        })
    }

    /// The role's readiness.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// How this instance announces itself.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Serves `routes` with the shared surface until `shutdown` resolves, then drains.
    pub async fn serve<F>(
        self,
        routes: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let RoleServer {
            role,
            health,
            listener,
            drain,
            limits,
            metrics,
            faults,
            store,
            instance,
            _upkeep,
        } = self;
        let heartbeat = _upkeep.heartbeat.clone();
        let draining = health.clone();
        let shutdown = async move {
            shutdown.await;
            // Unready first: the departure below may wait on the store.
            draining.start_draining();
            // A clean exit leaves the replica list at once: never shown as lost. The
            // store may be down; the heartbeat then just expires.
            heartbeat.cancel();
            match tokio::time::timeout(DEPART_TIMEOUT, store.depart(&instance)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "departure not recorded"),
                Err(_) => tracing::debug!("departure not recorded: store too slow"),
            }
        };
        let surface = super::Surface {
            role,
            health,
            metrics,
            faults,
            drain,
            limits,
        };
        super::serve(listener, surface, routes, shutdown).await
    }
}
