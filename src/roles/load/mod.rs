//! `svc load`: an HTTP load generator, to make the gateway busy enough for its HPA to
//! scale it, and a smoke test for a CD pipeline (`--max-error-rate`).
//!
//! Two ways to send:
//! - **open loop** (`--rate 200`, or `--ramp 50..500` rising linearly over the run):
//!   requests leave on a schedule whatever the server does, and each latency is
//!   measured from when the request was *due*. A slow server cannot slow the sender
//!   down and so hide its own slowness (coordinated omission). `--concurrency` caps the
//!   requests in flight; a request that waits for a slot still counts its wait.
//! - **closed loop** (the default): `--concurrency` loops, each sending its next request
//!   when the previous one is answered, like wrk.
//!
//! Memory is bounded whatever the duration: counters, errors by kind (one per status
//! code at most) and fixed-size HDR histograms ([`stats`]). Once a second a progress
//! line goes to stderr when it is a terminal; at the end, a summary (or `--json`).
//! The interrupt future (Ctrl-C) ends the run early with the summary so far.
//!
//! [`report`] is the whole command: it runs, prints the summary and judges the run
//! ([`Summary::verdict`]).

mod report;
pub mod stats;

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use reqwest::Method;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, invalid, within};
pub use report::{LoadError, report};
pub use stats::{Outcome, RateSpec, Stats, Summary};

/// What a run may last: long enough for a soak test, short enough to end the same day.
pub const DURATION_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 3600);
/// What a request timeout may be.
pub const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(300);
/// Highest rate, in requests per second: far above what one process can send.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Requests in flight at most in an open loop unless `--concurrency` says otherwise.
pub const OPEN_LOOP_CONCURRENCY: usize = 1024;
/// HTTP clients (each with its own connection pool) an open loop spreads requests over.
const OPEN_LOOP_CLIENTS: usize = 16;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// `concurrency` loops, each waiting for its answer before sending again.
    Closed,
    /// On a schedule: `from` requests per second at the start, rising (or falling)
    /// linearly to `to` at the end.
    Open {
        /// Requests per second at the start.
        from: f64,
        /// Requests per second at the end.
        to: f64,
    },
}

/// What to send, how hard and how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target URL.
    pub url: url::Url,
    /// HTTP method.
    pub method: Method,
    /// Request body (sent as JSON), if any.
    pub body: Option<String>,
    /// Closed or open loop.
    pub pace: Pace,
    /// Loops (closed) or most requests in flight (open).
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many requests, if set.
    pub max_requests: Option<u64>,
    /// How long one request may take before it counts as a timeout.
    pub timeout: Duration,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Print the summary as JSON rather than text.
    pub json: bool,
    /// Fail the run when more than this share of requests fail.
    pub max_error_rate: Option<f64>,
}

impl LoadConfig {
    /// Checks every number against its bounds.
    pub fn validate(self) -> Result<Self, ConfigError> {
        // This build speaks plain HTTP only (no TLS stack): say so up front.
        if self.url.scheme() != "http" || self.url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("URL", "must be an http://host[:port]/... URL"));
        }
        within("--duration", self.duration, DURATION_RANGE)?;
        within("--timeout", self.timeout, TIMEOUT_RANGE)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(invalid(
                "--concurrency",
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        if let Pace::Open { from, to } = self.pace {
            for rate in [from, to] {
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                    return Err(invalid(
                        "--rate",
                        format!("{rate} is not between 0 and {MAX_RATE} requests per second"),
                    ));
                }
            }
        }
        if self.max_requests == Some(0) {
            return Err(invalid("--requests", "must be at least 1"));
        }
        Ok(self)
    }
}

/// When the `i`-th request (from 0) of an open loop is due, counted from the start; `None`
/// once that is past `duration`. The rate rises linearly from `from` to `to`, so the
/// number of requests due by `t` is `from·t + (to - from)·t²/(2·duration)`, solved for t.
pub fn due(i: u64, from: f64, to: f64, duration: Duration) -> Option<Duration> {
    let n = i as f64;
    let d = duration.as_secs_f64();
    let k = (to - from) / (2.0 * d);
    let t = if k.abs() < 1e-12 {
        n / from
    } else {
        let disc = from * from + 4.0 * k * n;
        if disc < 0.0 {
            return None;
        }
        (disc.sqrt() - from) / (2.0 * k)
    };
    (t.is_finite() && t >= 0.0 && t < d).then(|| Duration::from_secs_f64(t))
}

struct Run {
    config: LoadConfig,
    /// The open loop's clients, used round-robin (each pool has its own lock).
    clients: Vec<reqwest::Client>,
    stats: Mutex<Stats>,
    /// Requests sent: counted apart from `stats`, so sending takes no lock.
    sent: AtomicU64,
    /// Cancelled on interrupt: abandon what is in flight.
    abort: CancellationToken,
}

impl Run {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        // Every writer leaves the counters whole, so a poisoned lock is still good.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one request with the `n`-th client (modulo their number); its latency
    /// counts from `due`.
    async fn send(&self, n: usize, due: Instant) {
        let config = &self.config;
        let Some(client) = self.clients.get(n % self.clients.len().max(1)) else {
            return;
        };
        let mut request = client.request(config.method.clone(), config.url.clone());
        if let Some(body) = &config.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let exchange = async {
            match request.send().await {
                Ok(res) => {
                    let status = res.status();
                    // Read the body so the connection is reused.
                    match res.bytes().await {
                        Ok(_) if status.is_success() => (Outcome::Ok, Some(due.elapsed())),
                        Ok(_) => (Outcome::Status(status.as_u16()), Some(due.elapsed())),
                        Err(e) if e.is_timeout() => (Outcome::Timeout, None),
                        Err(_) => (Outcome::Other, None),
                    }
                }
                Err(e) if e.is_timeout() => (Outcome::Timeout, None),
                Err(e) if e.is_connect() => (Outcome::Connect, None),
                Err(_) => (Outcome::Other, None),
            }
        };
        tokio::select! {
            (outcome, latency) = exchange => self.stats().record(&outcome, latency),
            () = self.abort.cancelled() => {}
        }
    }
}

/// Runs the load until its duration or request count is reached, or `interrupt`
/// resolves; reports it.
pub async fn run(
    config: LoadConfig,
    interrupt: impl Future<Output = ()>,
) -> Result<Summary, reqwest::Error> {
    // The closed loop has connections of its own: see [`Connection`].
    let (count, idle) = match config.pace {
        Pace::Closed => (0, 0),
        Pace::Open { .. } => {
            let count = config.concurrency.min(OPEN_LOOP_CLIENTS);
            (count, config.concurrency.div_ceil(count))
        }
    };
    let clients = (0..count)
        .map(|_| {
            crate::tls::http_client()
                .timeout(config.timeout)
                .pool_max_idle_per_host(idle)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let run = Arc::new(Run {
        config,
        clients,
        stats: Mutex::new(Stats::default()),
        sent: AtomicU64::new(0),
        abort: CancellationToken::new(),
    });
    let started = Instant::now();
    // Stopped when the run ends, however it ends.
    let progress = CancellationToken::new();
    let _progress_stops = progress.clone().drop_guard();
    if run.config.progress {
        let run = run.clone();
        crate::tasks::spawn_until(progress.clone(), "progress", async move {
            let mut ticks = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            loop {
                ticks.tick().await;
                let sent = run.sent.load(Ordering::Relaxed);
                let mut stats = run.stats();
                stats.sent = sent;
                let line = stats.progress(started.elapsed());
                drop(stats);
                // Rewrites one line in place on the terminal.
                eprint!("\r\x1b[2K{line}");
            }
        });
    }
    let sending = async {
        match run.config.pace {
            Pace::Closed => closed_loop(&run, started).await,
            Pace::Open { from, to } => open_loop(&run, started, from, to).await,
        }
    };
    tokio::pin!(sending);
    let (unsent, sent_for, interrupted) = tokio::select! {
        (unsent, sent_for) = &mut sending => (unsent, sent_for, false),
        () = interrupt => {
            run.abort.cancel();
            // Every branch of `sending` stops at once when aborted.
            let (unsent, sent_for) = sending.await;
            (unsent, sent_for, true)
        }
    };
    if run.config.progress {
        progress.cancel();
        eprintln!();
    }
    let elapsed = started.elapsed();
    let sent = run.sent.load(Ordering::Relaxed);
    let stats = run.stats();
    let finished = stats.ok + stats.failed();
    let config = &run.config;
    Ok(Summary {
        url: config.url.to_string(),
        method: config.method.to_string(),
        mode: match config.pace {
            Pace::Closed => "closed",
            Pace::Open { .. } => "open",
        },
        rate: match config.pace {
            Pace::Closed => None,
            Pace::Open { from, to } => Some(RateSpec { from, to }),
        },
        concurrency: config.concurrency,
        duration_s: elapsed.as_secs_f64(),
        interrupted,
        sent,
        ok: stats.ok,
        errors: stats.failed(),
        unfinished: sent.saturating_sub(finished),
        unsent,
        error_rate: if finished == 0 {
            0.0
        } else {
            stats.failed() as f64 / finished as f64
        },
        errors_by_kind: stats.errors.clone(),
        throughput: finished as f64 / elapsed.as_secs_f64().max(1e-9),
        send_rate: sent as f64 / sent_for.as_secs_f64().max(1e-9),
        latency_ms: stats.latency(),
    })
}

/// Whether one more request may be sent: the count is under `--requests`. Counts it.
fn take_one(run: &Run) -> bool {
    match run.config.max_requests {
        None => {
            run.sent.fetch_add(1, Ordering::Relaxed);
            true
        }
        Some(max) => run
            .sent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok(),
    }
}

/// `concurrency` loops until the deadline; returns (0, sending time).
async fn closed_loop(run: &Arc<Run>, started: Instant) -> (u64, Duration) {
    let deadline = started + run.config.duration;
    // On interrupt the loops stop where they are (no per-request check).
    let loops: Vec<_> = (0..run.config.concurrency)
        .map(|_| {
            let run = run.clone();
            crate::tasks::spawn_until(run.abort.clone(), "closed loop", async move {
                let mut conn = Connection::new(&run.config);
                while Instant::now() < deadline && !run.abort.is_cancelled() && take_one(&run) {
                    let sent = Instant::now();
                    let exchange = tokio::time::timeout(run.config.timeout, conn.exchange());
                    let (outcome, answered) = exchange.await.unwrap_or_else(|_| {
                        conn.close();
                        (Outcome::Timeout, false)
                    });
                    let latency = answered.then(|| sent.elapsed());
                    run.stats().record(&outcome, latency);
                }
            })
        })
        .collect();
    for handle in loops {
        // A loop that panicked has counted what it sent; the rest goes on.
        let _ = handle.await;
    }
    (0, started.elapsed().min(run.config.duration))
}

/// Requests on the schedule of [`due`] until the deadline; returns how many were due
/// and never sent (every slot busy, or the sender behind, until the end), and the
/// sending time.
async fn open_loop(run: &Arc<Run>, started: Instant, from: f64, to: f64) -> (u64, Duration) {
    let slots = Arc::new(Semaphore::new(run.config.concurrency));
    let deadline = tokio::time::Instant::from_std(started + run.config.duration);
    let mut unsent = 0;
    let mut i = 0u64;
    while let Some(offset) = due(i, from, to, run.config.duration) {
        let due_at = started + offset;
        if Instant::now() >= started + run.config.duration {
            // The sender fell behind its own schedule: what is left is never sent.
            unsent = count_due(i, from, to, run.config.duration);
            break;
        }
        if due_at > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(due_at.into()) => {}
                () = run.abort.cancelled() => break,
            }
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = tokio::time::sleep_until(deadline) => {
                // Everything still due now never leaves.
                unsent = count_due(i, from, to, run.config.duration);
                break;
            }
            () = run.abort.cancelled() => break,
        };
        // The semaphore is never closed, so this always holds a slot.
        let Ok(slot) = slot else { break };
        if !take_one(run) {
            break;
        }
        let run = run.clone();
        let n = usize::try_from(i).unwrap_or_default();
        tokio::spawn(async move {
            run.send(n, due_at).await;
            drop(slot);
        });
        i += 1;
    }
    // The schedule spans the whole duration unless Ctrl-C cut it short.
    let sent_for = if run.abort.is_cancelled() {
        started.elapsed().min(run.config.duration)
    } else {
        run.config.duration
    };
    // Wait for what is in flight (each bounded by the request timeout, or abandoned
    // at once on interrupt).
    let all = u32::try_from(run.config.concurrency).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    (unsent, sent_for)
}

/// One HTTP/1.1 connection of a closed loop, opened again when it breaks: like wrk's,
/// with none of a pooled client's bookkeeping on every request, so the loop spends
/// its time sending.
struct Connection {
    host: String,
    port: u16,
    request: Request<Full<Bytes>>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(config: &LoadConfig) -> Self {
        let host = config.url.host_str().unwrap_or("localhost").to_owned();
        let port = config.url.port_or_known_default().unwrap_or(80);
        let target = match config.url.query() {
            Some(query) => format!("{}?{query}", config.url.path()),
            None => config.url.path().to_owned(),
        };
        let authority = match config.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let mut request = Request::new(Full::new(Bytes::from(
            config.body.clone().unwrap_or_default(),
        )));
        *request.method_mut() = config.method.clone();
        if let Ok(uri) = target.parse() {
            *request.uri_mut() = uri;
        }
        let headers = request.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&authority) {
            headers.insert(header::HOST, value);
        }
        if config.body.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Connection {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            request,
            sender: None,
        }
    }

    fn close(&mut self) {
        self.sender = None;
    }

    /// Sends the request once (connecting first when needed); how it ended and
    /// whether there was an answer.
    async fn exchange(&mut self) -> (Outcome, bool) {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => match self.connect().await {
                Ok(sender) => self.sender.insert(sender),
                Err(_) => return (Outcome::Connect, false),
            },
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return (Outcome::Other, false);
        }
        let response = match sender.send_request(self.request.clone()).await {
            Ok(response) => response,
            Err(_) => {
                self.sender = None;
                return (Outcome::Other, false);
            }
        };
        let status = response.status();
        // Read the body so the connection is reused.
        match response.into_body().collect().await {
            Ok(_) if status.is_success() => (Outcome::Ok, true),
            Ok(_) => (Outcome::Status(status.as_u16()), true),
            Err(_) => {
                self.sender = None;
                (Outcome::Other, false)
            }
        }
    }

    async fn connect(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        // Drives the connection; ends when the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// Requests due from the `i`-th to the end of the run.
fn count_due(i: u64, from: f64, to: f64, duration: Duration) -> u64 {
    // The total due over the whole run, from the schedule's closed form.
    let total = ((from + to) / 2.0 * duration.as_secs_f64()).ceil() as u64;
    let mut n = total.saturating_sub(i);
    // The closed form can be off by one at the end; the schedule itself decides.
    while n > 0 && due(i + n - 1, from, to, duration).is_none() {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_rate_is_evenly_spaced() {
        let d = Duration::from_secs(2);
        assert_eq!(due(0, 100.0, 100.0, d), Some(Duration::ZERO));
        assert_eq!(due(50, 100.0, 100.0, d), Some(Duration::from_millis(500)));
        assert!(due(199, 100.0, 100.0, d).is_some());
        assert_eq!(due(200, 100.0, 100.0, d), None);
        assert_eq!(count_due(0, 100.0, 100.0, d), 200);
        assert_eq!(count_due(150, 100.0, 100.0, d), 50);
    }

    #[test]
    fn a_ramp_sends_the_area_under_it() {
        // 50 -> 500 req/s over 10 s: (50 + 500) / 2 * 10 = 2750 requests.
        let d = Duration::from_secs(10);
        let sent = (0..)
            .take_while(|&i| due(i, 50.0, 500.0, d).is_some())
            .count();
        assert!((2749..=2751).contains(&sent), "{sent}");
        // Slow at first, fast at the end.
        let first = due(1, 50.0, 500.0, d).unwrap_or_default();
        let last_gap = due(2740, 50.0, 500.0, d).unwrap_or_default()
            - due(2739, 50.0, 500.0, d).unwrap_or_default();
        assert!(first > Duration::from_millis(15), "{first:?}");
        assert!(last_gap < Duration::from_millis(3), "{last_gap:?}");
        // Down works too.
        let down = (0..)
            .take_while(|&i| due(i, 500.0, 50.0, d).is_some())
            .count();
        assert!((2749..=2751).contains(&down), "{down}");
    }

    #[test]
    fn numbers_out_of_bounds_are_refused() {
        let ok = LoadConfig {
            url: url::Url::parse("http://127.0.0.1:9/").expect("url"),
            method: Method::GET,
            body: None,
            pace: Pace::Open {
                from: 10.0,
                to: 10.0,
            },
            concurrency: 4,
            duration: Duration::from_secs(1),
            max_requests: None,
            timeout: Duration::from_secs(1),
            progress: false,
            json: false,
            max_error_rate: None,
        };
        assert!(ok.clone().validate().is_ok());
        for bad in [
            LoadConfig {
                pace: Pace::Open {
                    from: 0.0,
                    to: 10.0,
                },
                ..ok.clone()
            },
            LoadConfig {
                pace: Pace::Open {
                    from: f64::NAN,
                    to: 10.0,
                },
                ..ok.clone()
            },
            LoadConfig {
                duration: Duration::from_secs(30 * 24 * 3600),
                ..ok.clone()
            },
            LoadConfig {
                concurrency: 0,
                ..ok.clone()
            },
            LoadConfig {
                max_requests: Some(0),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }
}
