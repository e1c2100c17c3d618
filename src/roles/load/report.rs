//! The end of `svc load`: the summary printed, and the run judged. Interrupted, nothing
//! succeeded, or more errors than `--max-error-rate` allows each fail the run; `main`
//! turns that into the exit code (130 for Ctrl-C, 1 otherwise).

use std::future::Future;

use super::{LoadConfig, Summary, run};

/// Why `svc load` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No request could be sent (the client could not be built).
    #[error("{0}")]
    Send(#[from] reqwest::Error),
    /// The summary could not be written.
    #[error("cannot write the summary: {0}")]
    Output(#[from] serde_json::Error),
    /// Ctrl-C cut the run short; the summary covers the run so far.
    #[error("interrupted; the summary covers the run so far")]
    Interrupted,
    /// Every request failed.
    #[error("no request succeeded")]
    NothingSucceeded,
    /// More requests failed than `--max-error-rate` allows.
    #[error("error rate {:.2}% is above --max-error-rate {:.2}%", .rate * 100.0, .max * 100.0)]
    TooManyErrors {
        /// The share that failed.
        rate: f64,
        /// The share allowed.
        max: f64,
    },
}

/// `svc load`: runs the load, prints its summary on stdout (JSON with `config.json`),
/// then judges the run ([`Summary::verdict`]).
pub async fn report(
    config: LoadConfig,
    interrupt: impl Future<Output = ()>,
) -> Result<Summary, LoadError> {
    let (json, max_error_rate) = (config.json, config.max_error_rate);
    let summary = run(config, interrupt).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    summary.verdict(max_error_rate)?;
    Ok(summary)
}

impl Summary {
    /// Whether the run passes: not interrupted, at least one request succeeded, and no
    /// more than `max_error_rate` of them failed (when set).
    pub fn verdict(&self, max_error_rate: Option<f64>) -> Result<(), LoadError> {
        if self.interrupted {
            return Err(LoadError::Interrupted);
        }
        if self.ok == 0 {
            return Err(LoadError::NothingSucceeded);
        }
        match max_error_rate {
            Some(max) if self.error_rate > max => Err(LoadError::TooManyErrors {
                rate: self.error_rate,
                max,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::load::Stats;

    fn summary(interrupted: bool, ok: u64, errors: u64) -> Summary {
        Summary {
            url: "http://127.0.0.1:9/".into(),
            method: "GET".into(),
            mode: "closed",
            rate: None,
            concurrency: 1,
            duration_s: 1.0,
            interrupted,
            sent: ok + errors,
            ok,
            errors,
            unfinished: 0,
            unsent: 0,
            error_rate: errors as f64 / (ok + errors).max(1) as f64,
            errors_by_kind: Default::default(),
            throughput: 0.0,
            send_rate: 0.0,
            latency_ms: Stats::default().latency(),
        }
    }

    #[test]
    fn a_run_fails_when_interrupted_when_nothing_succeeded_or_above_the_error_rate() {
        assert!(summary(false, 9, 1).verdict(None).is_ok());
        assert!(summary(false, 9, 1).verdict(Some(0.1)).is_ok());
        assert!(matches!(
            summary(false, 8, 2).verdict(Some(0.1)),
            Err(LoadError::TooManyErrors { .. })
        ));
        assert!(matches!(
            summary(false, 0, 5).verdict(None),
            Err(LoadError::NothingSucceeded)
        ));
        // Interrupted wins: the summary is partial, whatever it says.
        assert!(matches!(
            summary(true, 10, 0).verdict(None),
            Err(LoadError::Interrupted)
        ));
    }
}
