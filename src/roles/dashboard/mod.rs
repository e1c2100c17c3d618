//! The dashboard: a live, server-rendered page of the whole system.
//!
//! Routes (besides the shared health and metrics surface of [`crate::http`]):
//! - `GET /`: the page; `GET /partials/status`: its live part, which the script fetches
//!   again every refresh period (never under `/api`: the Ingress sends that to the gateway);
//!   both take the query of [`filter::Query`] (`?q=&state=&group=&replicas=`);
//! - `GET /static/{file}`: the stylesheet and script, cached for a year by content hash;
//! - `GET /api/health-check`, `GET /api/system-info`, `GET /api/incidents`,
//!   `GET /api/notifications`: the same
//!   data as JSON, for direct clients;
//! - `GET /api/targets/{name}/history`: a target's long history, as JSON or CSV
//!   ([`history`]);
//! - `GET /metrics/targets`: every target's state once for the cluster, in the
//!   Prometheus text format ([`target_metrics`]).
//! - `GET /status/{slug}`, `/status/{slug}.json`, `/status/{slug}/feed.atom`: the
//!   public status pages of the targets file ([`status`]).
//!
//! Every answer comes from the newest [`snapshot::Snapshot`], gathered once per refresh
//! period in the background, so no request waits on a probe. Readiness depends only on
//! the dashboard's own store check: it stays ready while the gateway is down, which is
//! when it is needed most.

mod assets;
mod badge;
pub mod days;
pub mod filter;
mod history;
pub mod record;
pub mod replicas;
pub mod snapshot;
pub mod status;
pub mod summary;
pub mod system;
mod target_metrics;
pub mod views;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use url::Url;

use crate::clock::unix_now;
use crate::config::{ConfigError, Environment, Settings, invalid, within};
use crate::http::{self, RoleServer, ServeError};
use crate::probe;
use crate::service::{Role, Service};
use crate::store::SharedStore;
use crate::targets::watch::{self, Current, Loaded};

use snapshot::{Latest, Snapshot, Sources};
use views::View;

/// Port the dashboard listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 3000;

/// Scripts and styles from this origin only, no framing: nothing injected can run.
/// Forms submit to this origin only (the target filter is a plain GET form).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The interval the dashboard assumes of targets that name none (it only shows them:
/// the worker's own setting is what counts).
pub const TARGETS_INTERVAL: Duration = Duration::from_secs(10);

/// Upper bound of a request's wait for the first snapshot after start-up.
const FIRST_SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// What a refresh period may be.
pub const REFRESH_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);

/// What the dashboard watches and how often.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the gateway.
    pub gateway_url: Url,
    /// Base URL of the worker.
    pub worker_url: Url,
    /// Refresh period of the page and of the probes.
    pub refresh: Duration,
    /// The targets file, as read at start (`--targets`).
    pub targets: Option<Loaded>,
}

impl Config {
    /// The dashboard's config; the URLs are checked where they are parsed
    /// ([`crate::config::service_url`]).
    pub fn new(gateway_url: Url, worker_url: Url, refresh: Duration) -> Result<Self, ConfigError> {
        within("REFRESH_PERIOD", refresh, REFRESH_RANGE)?;
        for (flag, url) in [
            ("API_GATEWAY_URL", &gateway_url),
            ("WORKER_SERVICE_URL", &worker_url),
        ] {
            if probe::readiness_url(url).is_err() {
                return Err(invalid(flag, format!("{url} has no readiness URL")));
            }
        }
        Ok(Config {
            gateway_url,
            worker_url,
            refresh,
            targets: None,
        })
    }
}

struct Dashboard {
    latest: Latest,
    /// For what a snapshot does not carry: a target's long history.
    store: SharedStore,
    environment: Environment,
    config: Config,
    page: Rendered,
    partial: Rendered,
    /// The targets file in force, for its status pages.
    targets: Option<Current>,
    status_pages: status::Pages,
}

/// The last rendering of one view: what a view shows changes with the snapshot and,
/// through its ages ("checked 3 s ago"), with the second, so one rendering serves
/// every request for that snapshot within that second. With fifty replicas in the
/// table a rendering costs more than serving its bytes.
#[derive(Default)]
struct Rendered(std::sync::Mutex<Option<Arc<Rendering>>>);

/// One rendering: its HTML, and the same gzipped once a client asks for it (a page of
/// a thousand targets is a megabyte of HTML and a tenth of that gzipped).
struct Rendering {
    key: (u64, u64),
    html: web::Bytes,
    gzip: std::sync::OnceLock<Option<web::Bytes>>,
}

impl Rendering {
    fn gzip(&self) -> Option<&web::Bytes> {
        self.gzip
            .get_or_init(|| {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.html.len() / 8),
                    flate2::Compression::fast(),
                );
                std::io::Write::write_all(&mut encoder, &self.html).ok()?;
                encoder.finish().ok().map(web::Bytes::from)
            })
            .as_ref()
    }
}

impl Rendered {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Rendering>>> {
        // A poisoned lock only means a render panicked: the slot is still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rendering of `key`, if it is the one kept.
    fn cached(&self, key: (u64, u64)) -> Option<Arc<Rendering>> {
        self.lock().as_ref().filter(|r| r.key == key).cloned()
    }

    /// Keeps `html` as the rendering of `key`.
    fn keep(&self, key: (u64, u64), html: String) -> Arc<Rendering> {
        let rendering = Arc::new(Rendering {
            key,
            html: web::Bytes::from(html),
            gzip: std::sync::OnceLock::new(),
        });
        *self.lock() = Some(rendering.clone());
        rendering
    }

    fn get_or_render(&self, key: (u64, u64), render: impl FnOnce() -> String) -> Arc<Rendering> {
        // Rendered outside the lock: two requests in the same new second may both
        // render, and neither waits on the other.
        self.cached(key).unwrap_or_else(|| self.keep(key, render()))
    }
}

/// Whether a request's `Accept-Encoding` takes gzip.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                && parts.all(|p| p.replace(' ', "") != "q=0")
        })
}

/// Serves the dashboard on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    settings: &Settings,
    config: &Config,
    store: SharedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let server = RoleServer::start(Role::Dashboard, settings, &store, listener, None)?;
    let readiness = |base: &Url| probe::readiness_url(base).map_err(std::io::Error::other);
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let targets = config
        .targets
        .clone()
        .map(|loaded| watch::keep(loaded, TARGETS_INTERVAL, stop.clone()));
    let sources = Sources {
        targets: targets.clone(),
        client: probe::client().map_err(std::io::Error::other)?,
        gateway: readiness(&config.gateway_url)?,
        worker: readiness(&config.worker_url)?,
        store: store.clone(),
        health: server.health().clone(),
        own_id: server.instance().id.clone(),
    };
    let latest = snapshot::spawn(sources, config.refresh, stop.clone());
    let state = web::Data::new(Dashboard {
        latest,
        store,
        environment: settings.environment,
        config: config.clone(),
        page: Rendered::default(),
        partial: Rendered::default(),
        targets,
        status_pages: status::Pages::default(),
    });
    let routes = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone()).service(
            web::scope("")
                .wrap(
                    DefaultHeaders::new()
                        .add((header::CONTENT_SECURITY_POLICY, CSP))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                        .add((header::REFERRER_POLICY, "no-referrer"))
                        .add((header::X_FRAME_OPTIONS, "DENY")),
                )
                .service(http::get("/", page))
                .service(http::get("/partials/status", partial))
                .service(http::get("/static/{file}", assets::serve))
                .service(http::get("/badge/{name}.svg", badge::serve))
                // The stylesheet first: the pages' pattern would take its path.
                .service(http::get("/status/static/{file}", assets::serve))
                .service(http::get("/status/{path:.+}", status::serve))
                .service(http::get("/api/health-check", health_check))
                .service(http::get("/api/system-info", system_info))
                .service(http::get("/api/incidents", incidents))
                .service(http::get("/api/notifications", notifications))
                .service(http::get("/api/targets/{name}/history", history::serve))
                .service(http::get("/metrics/targets", target_metrics::serve)),
        );
    };
    server.serve(routes, shutdown).await
}

/// The newest snapshot; right after start-up, waits (boundedly) for the first one.
async fn latest(dashboard: &Dashboard) -> Result<Arc<Snapshot>, HttpResponse> {
    if let Some(snapshot) = dashboard.latest.borrow().as_ref() {
        return Ok(snapshot.clone());
    }
    let mut latest = dashboard.latest.clone();
    let first = tokio::time::timeout(FIRST_SNAPSHOT_WAIT, async {
        latest.wait_for(Option::is_some).await.ok()?.clone()
    })
    .await;
    first.ok().flatten().ok_or_else(|| {
        http::error::body(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the first probes have not finished",
        )
    })
}

/// `rendering` as `content_type`, gzipped for a client that takes it.
fn respond(rendering: &Rendering, content_type: &str, gzip: bool) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.content_type(content_type)
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .insert_header((header::VARY, "Accept-Encoding"));
    match rendering.gzip().filter(|_| gzip) {
        Some(body) => res
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(body.clone()),
        None => res.body(rendering.html.clone()),
    }
}

async fn render(
    req: &HttpRequest,
    dashboard: &Dashboard,
    rendered: &Rendered,
    markup: fn(&View) -> maud::Markup,
) -> HttpResponse {
    // A query that does not parse is ignored: the page as everyone sees it.
    let query = web::Query::<filter::Query>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    match latest(dashboard).await {
        Ok(snapshot) => {
            // Ages are shown in whole seconds: one rendering serves this second.
            let now = unix_now();
            let key = (snapshot.taken_at.to_bits(), now as u64);
            let draw = || {
                markup(&View {
                    snapshot: &snapshot,
                    now,
                    environment: dashboard.environment,
                    refresh: dashboard.config.refresh,
                    query: &query,
                })
                .into_string()
            };
            // Only the plain page is cached: a filter or a replica page is one
            // person's view, rendered for them.
            let rendering = if query.is_plain() {
                rendered.get_or_render(key, draw)
            } else {
                Arc::new(Rendering {
                    key,
                    html: web::Bytes::from(draw()),
                    gzip: std::sync::OnceLock::new(),
                })
            };
            respond(&rendering, "text/html; charset=utf-8", accepts_gzip(req))
        }
        Err(starting) => starting,
    }
}

async fn page(req: HttpRequest, dashboard: web::Data<Dashboard>) -> HttpResponse {
    render(&req, &dashboard, &dashboard.page, views::page).await
}

async fn partial(req: HttpRequest, dashboard: web::Data<Dashboard>) -> HttpResponse {
    render(&req, &dashboard, &dashboard.partial, views::live).await
}

/// Body of `GET /api/health-check`, the original's fields plus the reason, the
/// page's headline and the targets counted by state.
#[derive(Serialize)]
struct HealthCheck<'a> {
    system_status: crate::service::ServiceState,
    reason: &'a str,
    /// svc's own state and the targets' in one line, as the page opens with.
    headline: String,
    /// `{total, up, degraded, down, maintenance, unknown}`.
    targets: summary::Tally,
    timestamp: f64,
    checked_at: f64,
    services: Vec<Entry<'a>>,
    /// What could not be read from the store, each naming its key.
    errors: &'a [String],
}

/// One entry of `services`: the original's `name`, `status`, `response_time_ms`, plus
/// the replica counts of the three roles and the uptime of the last hour.
#[derive(Serialize)]
struct ServiceEntry<'a> {
    #[serde(flatten)]
    probe: &'a probe::Probe,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<replicas::Count>,
    /// Percent; `null` with no data.
    uptime_1h: Option<f64>,
}

/// One entry of `services`: one of svc's services, or one of the user's targets.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<'a> {
    Service(ServiceEntry<'a>),
    Target(Box<TargetEntry<'a>>),
}

/// A target in `services`: `name`, `status` (`unknown` before its first verdict or
/// with the store unreadable, `maintenance` in a maintenance window) and what the page
/// shows of it.
#[derive(Serialize)]
struct TargetEntry<'a> {
    name: &'a str,
    kind: &'static str,
    status: &'static str,
    /// The state by the probes and thresholds alone: `status` but in a window.
    verdict: &'static str,
    /// The window it is in: `{name, end}` (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<&'a crate::targets::maintenance::Active>,
    group: Option<&'a str>,
    url: &'a str,
    response_time_ms: Option<f64>,
    error: Option<&'a str>,
    /// Unix seconds since the status holds.
    since: Option<f64>,
    uptime_1h: Option<f64>,
    uptime_24h: Option<f64>,
    /// Percent over the last 7, 30, 90 and 365 days, from the day tallies as last read
    /// ([`days`], every few minutes); `null` with no probe counted then, or unread.
    uptime_7d: Option<f64>,
    uptime_30d: Option<f64>,
    uptime_90d: Option<f64>,
    uptime_365d: Option<f64>,
    /// Its objective and where it stands: `{objective, window_days, uptime,
    /// budget_left, burn_5m, burn_1h, burn_6h}`; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    slo: Option<&'a crate::targets::slo::SloReport>,
    /// Each location's word (`healthy`, `degraded`, `down`, `no data`), reason, response
    /// time and uptime over the last hour, when it is probed from several.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    locations: serde_json::Map<String, serde_json::Value>,
}

fn target_entry(row: &snapshot::TargetRow) -> TargetEntry<'_> {
    let days = row.uptime_days;
    let report = row.report.as_ref();
    let state = report.and_then(|r| r.state.as_ref());
    let last = state.and_then(|s| s.last.as_ref());
    let verdict = state
        .and_then(|s| s.status)
        .map_or("unknown", system::state_name);
    TargetEntry {
        name: &row.name,
        kind: "target",
        status: if row.maintenance.is_some() {
            "maintenance"
        } else {
            verdict
        },
        verdict,
        maintenance: row.maintenance.as_ref(),
        group: row.group.as_deref(),
        url: &row.url,
        response_time_ms: last.and_then(|l| l.response_time_ms),
        error: last.and_then(|l| l.error.as_deref()),
        since: state.and_then(|s| s.since),
        uptime_1h: report.and_then(|r| r.uptime_1h),
        uptime_24h: report.and_then(|r| r.uptime_24h),
        uptime_7d: days.d7,
        uptime_30d: days.d30,
        uptime_90d: days.d90,
        uptime_365d: days.d365,
        slo: row.slo.as_ref(),
        locations: located(row, crate::clock::unix_now()),
    }
}

/// [`TargetEntry::locations`] of `row` at `now`.
fn located(row: &snapshot::TargetRow, now: f64) -> serde_json::Map<String, serde_json::Value> {
    let report = row.report.as_ref();
    row.located(now)
        .into_iter()
        .map(|(name, r, word)| {
            let own = report.and_then(|rep| rep.locations.iter().find(|l| l.name == name));
            let entry = serde_json::json!({
                "state": word,
                "reason": r.and_then(|r| r.reason.as_deref()),
                "response_time_ms": r.and_then(|r| r.response_time_ms),
                "timestamp": r.map(|r| r.timestamp),
                "uptime_1h": own.and_then(|o| o.uptime_1h),
            });
            (name.to_owned(), entry)
        })
        .collect()
}

/// The services a client is told about: the embedded store is part of this process,
/// not a service, so it has no entry; the user's targets follow svc's own services.
fn service_entries(snapshot: &Snapshot) -> Vec<Entry<'_>> {
    let targets = snapshot
        .targets
        .iter()
        .map(|t| Entry::Target(Box::new(target_entry(t))));
    snapshot
        .services
        .iter()
        .enumerate()
        .filter(|(_, p)| p.name != Service::Redis || snapshot.store_backend == "redis")
        .map(|(i, probe)| {
            Entry::Service(ServiceEntry {
                probe,
                replicas: snapshot.counts.get(i).copied().flatten(),
                uptime_1h: snapshot.history.get(i).and_then(|h| h.uptime_1h),
            })
        })
        .chain(targets)
        .collect()
}

async fn health_check(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(HealthCheck {
            system_status: snapshot.system.status,
            reason: &snapshot.system.reason,
            headline: summary::headline(
                &snapshot.system,
                &snapshot.targets,
                snapshot.redis_connected,
            ),
            targets: summary::Tally::of(&snapshot.targets),
            timestamp: unix_now(),
            checked_at: snapshot.taken_at,
            services: service_entries(&snapshot),
            errors: &snapshot.errors,
        })
}

/// `GET /api/notifications`: `{deliveries: [{id, channel, target, state, at, result,
/// error}]}`, newest first (the last 100); `deliveries: null` while the store cannot
/// be read.
async fn notifications(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(json!({
            "deliveries": snapshot.deliveries,
            "checked_at": snapshot.taken_at,
            "timestamp": unix_now(),
        }))
}

/// `GET /api/incidents`: `{incidents: [...]}`, newest first; an open incident has
/// `ended_at: null` and its duration so far. With the store unreachable the list is
/// unknown: `incidents: null`.
async fn incidents(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    let now = unix_now();
    let list: Option<Vec<serde_json::Value>> = snapshot.incidents.as_ref().map(|list| {
        list.iter()
            .map(|i| {
                json!({
                    "service": i.service,
                    "from": i.from,
                    "to": i.to,
                    "started_at": i.started_at,
                    "ended_at": i.ended_at,
                    "duration_s": i.duration_s(now),
                    "reason": i.reason,
                    "maintenance": i.maintenance,
                })
            })
            .collect()
    });
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(json!({"incidents": list, "checked_at": snapshot.taken_at, "timestamp": now}))
}

async fn system_info(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    let now = unix_now();
    let f = &snapshot.figures;
    let task_stats: serde_json::Map<String, serde_json::Value> = f
        .tasks
        .iter()
        .map(|(task, total, _)| ((*task).to_owned(), json!(total)))
        .collect();
    let instances: Option<Vec<_>> = snapshot.instances.as_ref().map(|list| {
        list.iter()
            .map(|i| {
                json!({
                    "role": i.role,
                    "id": i.id,
                    "version": i.version,
                    "address": i.address,
                    "age_seconds": (now - i.started_at).max(0.0),
                })
            })
            .collect()
    });
    let history_stale = snapshot.history_stale(now);
    let requests_last_minute = f.requests_last_minute().filter(|_| !history_stale);
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(json!({
            "service": Service::Dashboard,
            "version": env!("CARGO_PKG_VERSION"),
            "environment": dashboard.environment.as_str(),
            "redis_connected": snapshot.redis_connected,
            "total_requests": f.total_requests,
            "requests_last_minute": requests_last_minute,
            "requests_per_minute_last_60s": f.request_rate,
            "task_stats": task_stats,
            "last_task": f.last_task,
            "last_task_seconds_ago": f.last_task_at.map(|t| (now - t).max(0.0)),
            "queue": f.queue,
            "instances": instances,
            "history_stale": history_stale,
            "gateway_url": dashboard.config.gateway_url.as_str(),
            "worker_url": dashboard.config.worker_url.as_str(),
            "refresh_seconds": dashboard.config.refresh.as_secs_f64(),
            "store": snapshot.store_backend,
            "errors": snapshot.errors,
            "checked_at": snapshot.taken_at,
            "timestamp": now,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rendering_per_snapshot_and_second() {
        let rendered = Rendered::default();
        let first = rendered.get_or_render((1, 10), || "a".into());
        let again = rendered.get_or_render((1, 10), || panic!("rendered twice"));
        assert_eq!((&first.html[..], &again.html[..]), (&b"a"[..], &b"a"[..]));
        let next_second = rendered.get_or_render((1, 11), || "b".into());
        let next_snapshot = rendered.get_or_render((2, 11), || "c".into());
        assert_eq!(
            (&next_second.html[..], &next_snapshot.html[..]),
            (&b"b"[..], &b"c"[..])
        );
    }

    #[test]
    fn a_rendering_gzips_once_and_unzips_to_its_html() {
        let rendered = Rendered::default();
        let html = "<p>targets</p>".repeat(1000);
        let rendering = rendered.get_or_render((1, 1), || html.clone());
        let zipped = rendering.gzip().expect("gzip").clone();
        assert!(zipped.len() < html.len() / 10, "{} bytes", zipped.len());
        assert!(std::ptr::eq(
            rendering.gzip().expect("gzip"),
            rendering.gzip().expect("gzip")
        ));
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&zipped[..]),
            &mut unzipped,
        )
        .expect("gunzip");
        assert_eq!(unzipped, html);
    }

    #[test]
    fn gzip_is_sent_to_clients_that_take_it() {
        let takes = |value: &str| {
            accepts_gzip(
                &actix_web::test::TestRequest::default()
                    .insert_header((header::ACCEPT_ENCODING, value))
                    .to_http_request(),
            )
        };
        assert!(takes("gzip, deflate, br, zstd"));
        assert!(takes("br;q=1.0, GZIP;q=0.5"));
        assert!(!takes("gzip;q=0"));
        assert!(!takes("identity"));
        assert!(!accepts_gzip(
            &actix_web::test::TestRequest::default().to_http_request()
        ));
    }
}
