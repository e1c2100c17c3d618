//! The HTTP plumbing every role shares.
//!
//! Every role's server answers, besides its own routes:
//! - `GET /health/live`: 200 while the process runs (memory only);
//! - `GET /health/ready`: 200 or 503, see [`health`];
//! - `GET /metrics`: Prometheus text format;
//! - unknown paths: 404, wrong methods: 405, failures: 500, all as JSON
//!   `{"error": ..., "message": ...}`.
//!
//! Every `GET` route answers `HEAD` too, and a 405 says in `Allow` what would work.
//!
//! [`serve`] runs a role's routes with that surface behind the one middleware of
//! [`observe`] (request id, in-flight bound, API fault, JSON errors, request metrics,
//! access log), and shuts down gracefully: see [`shutdown`]. [`role::RoleServer`] is
//! the one start-up path every role takes (metrics, readiness, store check, heartbeat,
//! drain).
//! [`faults`] adds the fault-injection routes when a role runs with `--faults`.

pub mod error;
pub mod faults;
pub mod health;
pub mod limit;
pub mod observe;
pub mod role;
pub mod shutdown;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::config::ServerLimits;
use crate::service::Role;

use actix_web::dev::HttpServiceFactory;
use actix_web::{App, FromRequest, Handler, HttpResponse, HttpServer, Responder, web};

pub use faults::Faults;
pub use health::Health;
pub use observe::RequestMetrics;
pub use role::RoleServer;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds `addr` with a listen backlog of `backlog` (the OS default, 128, makes a burst
/// of connects wait a second for a retry); the caller owns the listener (tests bind
/// port 0). Must run on the runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServeError> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)?.into_std()
    };
    bind().map_err(|source| ServeError::Bind { addr, source })
}

/// A resource at `path` that answers 405 (as JSON, with `Allow: allow`) to methods it
/// has no route for.
pub(crate) fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req| error::method_not_allowed(req, allow)))
}

/// `GET path` (and `HEAD path`, which answers the same without the body) served by
/// `handler`.
pub fn get<F, Args>(path: &str, handler: F) -> impl HttpServiceFactory + 'static
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    resource(path, "GET, HEAD")
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

/// `POST path` served by `handler`; `app_data` applies to this resource only.
pub fn post<F, Args, D>(path: &str, app_data: D, handler: F) -> impl HttpServiceFactory + 'static
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
    D: 'static,
{
    resource(path, "POST")
        .app_data(app_data)
        .route(web::post().to(handler))
}

/// How a server stops after its shutdown signal.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Keep serving, unready, this long so load balancers stop routing first.
    pub delay: Duration,
    /// Then let in-flight requests finish for at most this long.
    pub grace: Duration,
}

/// What every role's server has besides its own routes.
pub struct Surface {
    /// Whose server it is.
    pub role: Role,
    /// Readiness and liveness.
    pub health: Health,
    /// The request metrics, for a role that has them.
    pub metrics: Option<RequestMetrics>,
    /// The fault-injection routes, when enabled.
    pub faults: Option<Faults>,
    /// How it stops.
    pub drain: Drain,
    /// Bounds on the work it takes on.
    pub limits: ServerLimits,
}

/// Serves `routes` on `listener` with the shared surface until `shutdown` resolves,
/// then drains: readiness turns 503 at once, the listener keeps serving for
/// `drain.delay`, then closes, and in-flight requests get `drain.grace` to finish.
pub async fn serve<F>(
    listener: TcpListener,
    surface: Surface,
    routes: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let Surface {
        role,
        health,
        metrics,
        faults,
        drain,
        limits,
    } = surface;
    let addr = listener.local_addr()?;
    let data = web::Data::new(health.clone());
    let observe = observe::Observe::new(role, metrics, limits.max_in_flight, faults.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(get("/health/live", health::live))
            .service(get("/health/ready", health::ready))
            .service(get("/metrics", prometheus))
            .configure(routes.clone())
            .configure(|cfg| {
                if let Some(f) = &faults {
                    f.configure(cfg);
                }
            })
            .default_service(web::to(error::not_found))
            .wrap(observe.clone())
    })
    .max_connections(limits.max_connections)
    .disable_signals()
    .shutdown_timeout(drain.grace.as_secs().max(1))
    .listen(listener)?
    .run();
    let handle = server.handle();
    let mut running = tokio::spawn(server);
    // The address actually bound (port 0 asks the OS for one): tests and operators
    // read it from this line.
    tracing::info!(service = %health.service(), %addr, "listening");

    tokio::select! {
        result = &mut running => return finished(result),
        () = shutdown => {}
    }
    health.start_draining();
    tracing::info!(service = %health.service(), delay = ?drain.delay, "draining");
    tokio::time::sleep(drain.delay).await;

    // `stop(true)` closes the listener and waits up to `shutdown_timeout` for
    // in-flight requests; the outer bound only guards against a stuck worker.
    let bound = drain.grace + Duration::from_secs(1);
    if tokio::time::timeout(bound, handle.stop(true))
        .await
        .is_err()
    {
        tracing::warn!(
            service = %health.service(),
            ?bound,
            "drain overran the grace period: in-flight requests were cut off"
        );
    }
    match tokio::time::timeout(Duration::from_secs(1), &mut running).await {
        Ok(result) => finished(result),
        Err(_) => {
            running.abort();
            Ok(())
        }
    }
}

fn finished(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match result {
        Ok(served) => served.map_err(ServeError::Io),
        Err(join) => Err(ServeError::Io(std::io::Error::other(join))),
    }
}

/// `GET /metrics`: every metric of this process in Prometheus text format.
async fn prometheus() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render_metrics())
}
