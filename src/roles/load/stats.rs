//! What `svc load` counts and how it reports it: counters, errors by kind, and latency
//! in an HDR histogram of fixed size, so an hour at 20k req/s takes the same few
//! hundred KiB as a second.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms tell apart, in microseconds (one hour); longer ones
/// are recorded as this.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// Any other answer, with its status code.
    Status(u16),
    /// No answer within the request timeout.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The request or the answer's body failed otherwise.
    Other,
}

impl Outcome {
    /// The error kind, as the summary names it (`None` for a success). A bounded set:
    /// at most one name per status code, plus three.
    pub fn kind(&self) -> Option<String> {
        match self {
            Outcome::Ok => None,
            Outcome::Status(code) => Some(format!("http_{code}")),
            Outcome::Timeout => Some("timeout".into()),
            Outcome::Connect => Some("connect".into()),
            Outcome::Other => Some("other".into()),
        }
    }
}

/// Counters and latency of a run so far.
pub struct Stats {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every answered request (any status), whole run.
    total: Histogram<u64>,
    /// The same since the last progress line.
    window: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // Three significant digits from 1 µs to an hour: about 200 KiB, whatever the run.
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("constant, valid bounds")
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            total: histogram(),
            window: histogram(),
        }
    }
}

impl Stats {
    /// Records one finished request: its outcome and, when it was answered, its
    /// latency.
    pub fn record(&mut self, outcome: &Outcome, latency: Option<Duration>) {
        match outcome.kind() {
            None => self.ok += 1,
            Some(kind) => *self.errors.entry(kind).or_default() += 1,
        }
        if let Some(latency) = latency {
            let micros = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, HIGHEST_MICROS);
            self.total.saturating_record(micros);
            self.window.saturating_record(micros);
        }
    }

    /// Requests that failed.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The progress line at `elapsed`; starts a new window for the percentiles.
    pub fn progress(&mut self, elapsed: Duration) -> String {
        let errors = if self.errors.is_empty() {
            "0".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let line = format!(
            "[{:>4}s] sent {}  ok {}  errors {errors}  p50 {}  p99 {} (last second)",
            elapsed.as_secs(),
            self.sent,
            self.ok,
            ms(&self.window, 0.5),
            ms(&self.window, 0.99),
        );
        self.window.reset();
        line
    }

    /// The latency figures of the whole run.
    pub fn latency(&self) -> Latency {
        let at = |q: f64| micros_to_ms(self.total.value_at_quantile(q));
        Latency {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            max: micros_to_ms(self.total.max()),
            mean: self.total.mean() / 1e3,
            count: self.total.len(),
        }
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1e3
}

fn ms(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.2} ms", micros_to_ms(h.value_at_quantile(q)))
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Requests measured (answered, whatever the status).
    pub count: u64,
}

/// The requested rate of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateSpec {
    /// Requests per second at the start.
    pub from: f64,
    /// Requests per second at the end (the same as `from` without a ramp).
    pub to: f64,
}

/// The final report of a run: what `--json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Target URL.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// `open` (requests at a rate) or `closed` (`concurrency` loops).
    pub mode: &'static str,
    /// The rate asked for, open loop only.
    pub rate: Option<RateSpec>,
    /// Loops (closed) or most requests in flight (open).
    pub concurrency: usize,
    /// Seconds from the start to the last answer.
    pub duration_s: f64,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed (non-2xx, timeout, no connection).
    pub errors: u64,
    /// Requests sent and neither answered nor failed (abandoned on Ctrl-C).
    pub unfinished: u64,
    /// Requests due in an open-loop run that were never sent: all `concurrency` slots
    /// were busy, or the sender itself fell behind, until the end.
    pub unsent: u64,
    /// `errors / (ok + errors)`, 0 when nothing finished.
    pub error_rate: f64,
    /// Failed requests by kind (`http_503`, `timeout`, `connect`, `other`).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests finished per second.
    pub throughput: f64,
    /// Requests sent per second, over the sending time.
    pub send_rate: f64,
    /// Latency of answered requests in ms; in an open loop measured from when each
    /// request was due, so time spent waiting for a slot counts.
    pub latency_ms: Latency,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let finished = self.ok + self.errors;
        writeln!(
            f,
            "{finished} requests in {:.1}s: {:.0} req/s, {} ok, {} failed",
            self.duration_s, self.throughput, self.ok, self.errors,
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms{}",
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max,
            if self.rate.is_some() {
                " (from each request's due time)"
            } else {
                ""
            },
        )?;
        if !self.errors_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            writeln!(
                f,
                "errors: {} ({:.2}%)",
                kinds.join(", "),
                self.error_rate * 100.0
            )?;
        }
        if let Some(rate) = self.rate {
            let asked = if rate.from == rate.to {
                format!("{} req/s", rate.from)
            } else {
                format!("{}..{} req/s", rate.from, rate.to)
            };
            writeln!(
                f,
                "open loop at {asked}: {} sent ({:.1} req/s), {} due but not sent",
                self.sent, self.send_rate, self.unsent
            )?;
        }
        if self.interrupted {
            writeln!(
                f,
                "interrupted: {} requests in flight were abandoned",
                self.unfinished
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut stats = Stats::default();
        for ms in 1..=1000u64 {
            stats.record(&Outcome::Ok, Some(Duration::from_millis(ms)));
        }
        stats.record(&Outcome::Status(503), Some(Duration::from_millis(5)));
        stats.record(&Outcome::Timeout, None);
        let l = stats.latency();
        assert_eq!(l.count, 1001);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.5, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(stats.ok, 1000);
        assert_eq!(stats.failed(), 2);
        assert_eq!(stats.errors.get("http_503"), Some(&1));
        assert_eq!(stats.errors.get("timeout"), Some(&1));
    }

    #[test]
    fn the_progress_line_covers_the_last_window_only() {
        let mut stats = Stats {
            sent: 2,
            ..Stats::default()
        };
        stats.record(&Outcome::Ok, Some(Duration::from_millis(3)));
        stats.record(&Outcome::Connect, None);
        let line = stats.progress(Duration::from_secs(1));
        assert!(line.contains("sent 2  ok 1  errors connect 1"), "{line}");
        assert!(line.contains("p50 3.00 ms"), "{line}");
        let line = stats.progress(Duration::from_secs(2));
        assert!(line.contains("p50 -"), "{line}");
        assert_eq!(stats.latency().count, 1);
    }

    #[test]
    fn memory_does_not_grow_with_requests() {
        let mut stats = Stats::default();
        let before = stats.total.distinct_values();
        for i in 0..200_000u64 {
            stats.record(&Outcome::Ok, Some(Duration::from_micros(i % 50_000 + 1)));
        }
        assert_eq!(stats.total.distinct_values(), before);
    }
}
