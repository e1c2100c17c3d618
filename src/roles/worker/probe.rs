//! `GET /probe?module=M&target=T[&debug=true]`: the Prometheus blackbox exporter's
//! probe endpoint, so a Prometheus that scrapes blackbox can scrape the worker with the
//! same relabelling. The module ([`crate::targets::modules`]) comes from the targets
//! file in force; the target becomes a [`Target`](crate::targets::Target) of the
//! module's type and goes through the one [`check`](crate::targets::check::check); the
//! answer is its `probe_*` gauges ([`blackbox`]).
//!
//! Answers: 200 with the gauges (a failed probe is `probe_success 0`, as with
//! blackbox); 400 for a missing or unknown module, a missing target or one that cannot
//! be the module's; 403, with the reason, for a target outside the module's `allow:`;
//! 404 when the file declares no module; each with svc's JSON error body, whose
//! `message` says why. The timeout is the module's, shortened to
//! Prometheus's `X-Prometheus-Scrape-Timeout-Seconds` less [`SCRAPE_MARGIN`], as
//! blackbox does, so an answer comes before Prometheus gives up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use url::Host;

use crate::targets::blackbox::Probe;
use crate::targets::check;
use crate::targets::modules::{Admitted, Refusal};
use crate::targets::watch::Current;
use crate::targets::{Endpoint, Target};

/// Left of Prometheus's scrape timeout for the answer to travel back.
pub const SCRAPE_MARGIN: Duration = Duration::from_millis(500);
/// The content type of the text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/probe` needs: the targets in force (none without a targets file) and what
/// the worker's probes share.
pub struct Prober {
    /// The targets file in force.
    pub targets: Option<Current>,
    /// The worker's HTTP client and probe source address.
    pub checks: check::Prober,
}

/// The `/probe` handler.
#[tracing::instrument(skip_all, fields(module, target))]
pub async fn probe(
    prober: web::Data<Prober>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let arrived = Instant::now();
    let targets = prober.targets.as_ref().map(|t| t.borrow().clone());
    let Some(targets) = targets.filter(|t| !t.modules.is_empty()) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no module is declared: /probe probes with the modules: of the targets file",
        );
    };
    let Some(name) = query.get("module").filter(|m| !m.is_empty()) else {
        return plain(StatusCode::BAD_REQUEST, "the module parameter is missing");
    };
    let Some(module) = targets.modules.get(name) else {
        let known: Vec<&str> = targets.modules.keys().map(String::as_str).collect();
        return plain(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown module {name:?}; the modules are {}",
                known.join(", ")
            ),
        );
    };
    let Some(raw) = query.get("target") else {
        return plain(StatusCode::BAD_REQUEST, "the target parameter is missing");
    };
    tracing::Span::current()
        .record("module", name.as_str())
        .record("target", raw.as_str());
    let (mut target, host) = match module.target(raw) {
        Ok(found) => found,
        Err(refusal) => return refused(&refusal),
    };
    let timeout = match scrape_timeout(&req) {
        Ok(Some(scrape)) => module.timeout().min(scrape.saturating_sub(SCRAPE_MARGIN)),
        Ok(None) => module.timeout(),
        Err(why) => return plain(StatusCode::BAD_REQUEST, &why),
    };
    if timeout.is_zero() {
        return plain(
            StatusCode::BAD_REQUEST,
            "the scrape timeout leaves no time to probe",
        );
    }
    let (addresses, lookup) = resolve(&host, timeout).await;
    let admitted = match module.admits(&host, &addresses) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(reason = %refusal, "probe refused");
            return refused(&refusal);
        }
    };
    target.timeout = timeout.saturating_sub(lookup).max(Duration::from_millis(1));
    let pinned = match (admitted, &host) {
        (Admitted::ByNetwork, Host::Domain(name)) => {
            match pin(&mut target, name, &addresses, prober.checks.source) {
                Ok(pinned) => pinned,
                Err(e) => {
                    tracing::warn!(error = %e, "no pinned client for a probe");
                    return plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "no HTTP client for the probe",
                    );
                }
            }
        }
        _ => None,
    };
    let checked = check::check(pinned.as_ref().unwrap_or(&prober.checks), &target).await;
    let found = Probe {
        kind: module.kind,
        checked: &checked,
        duration: arrived.elapsed(),
        lookup,
        address: addresses.first().copied(),
    };
    let mut body = found.render();
    if query.get("debug").is_some_and(|d| d == "true") {
        body = format!(
            "Probe of {} with module {name}: {}\n{}\n\nMetrics that would have been returned:\n{body}\n\
             Module configuration:\n{module:#?}\n",
            target.endpoint.shown(),
            if found.success() {
                "success"
            } else {
                "failure"
            },
            checked
                .sample
                .error
                .as_deref()
                .unwrap_or("every condition met"),
        );
        return HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(body);
    }
    HttpResponse::Ok().content_type(TEXT_FORMAT).body(body)
}

/// Points a probe of `name`, admitted by the networks its `addresses` lie in, at those
/// addresses, so a name whose records change after the check cannot lead it elsewhere:
/// a tcp target gets the first address for its host; an http one a client of its own
/// that resolves `name` to them (the URL, Host header and TLS name stay the name's).
/// Other check types resolve the name again when they connect.
fn pin(
    target: &mut Target,
    name: &str,
    addresses: &[IpAddr],
    source: Option<IpAddr>,
) -> Result<Option<check::Prober>, reqwest::Error> {
    if let Endpoint::Tcp { host, .. } = &mut target.endpoint {
        // Admitted by network: there is at least one address.
        if let Some(first) = addresses.first() {
            *host = first.to_string();
        }
        return Ok(None);
    }
    if !matches!(target.endpoint, Endpoint::Http(_)) {
        return Ok(None);
    }
    // Port 0: the URL's own port is used.
    let to: Vec<SocketAddr> = addresses.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
    let client = check::client_builder(source)
        .resolve_to_addrs(name, &to)
        .build()?;
    Ok(Some(check::Prober { client, source }))
}

/// Prometheus's scrape timeout, when the request states one.
fn scrape_timeout(req: &HttpRequest) -> Result<Option<Duration>, String> {
    let Some(value) = req.headers().get("X-Prometheus-Scrape-Timeout-Seconds") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .map(Some)
        .ok_or_else(|| "X-Prometheus-Scrape-Timeout-Seconds is no number of seconds".into())
}

/// The addresses `host` stands for (itself for an address; none when a name does not
/// resolve within `timeout`), and how long finding them took.
async fn resolve(host: &Host<String>, timeout: Duration) -> (Vec<IpAddr>, Duration) {
    let start = Instant::now();
    let addresses = match host {
        Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
        Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
        Host::Domain(name) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), 0))).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                _ => Vec::new(),
            }
        }
    };
    (addresses, start.elapsed())
}

fn refused(refusal: &Refusal) -> HttpResponse {
    let status = match refusal {
        Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
        Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
    };
    plain(status, &refusal.to_string())
}

/// A refusal, as every route of svc answers one: `{"error", "message": reason}`.
fn plain(status: StatusCode, reason: &str) -> HttpResponse {
    crate::http::error::body(status, reason)
}
