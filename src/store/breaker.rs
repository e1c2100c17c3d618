//! A circuit breaker in front of a store that stops answering: after
//! [`TRIP_AFTER`] timeouts in a row it opens, and every operation fails at once
//! instead of waiting out its timeout; after [`COOL_DOWN`] one operation is let
//! through to probe (half-open): its success closes the circuit, its failure opens it
//! again. Refusals and other fast errors do not count: only waiting costs anything.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::StoreError;
use crate::telemetry::metric;

/// Timeouts in a row that open the circuit.
pub const TRIP_AFTER: u32 = 3;
/// How long the circuit stays open before one probe is let through.
pub const COOL_DOWN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        timeouts: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is under way; everything else fails fast until it ends.
    HalfOpen,
}

/// The breaker of one store.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    /// What the store is, for the message.
    target: String,
}

/// Leave to run one operation; give it back with [`Breaker::record`].
#[derive(Debug)]
#[must_use]
pub struct Permit(());

impl Breaker {
    /// A closed breaker for the store at `target`.
    pub fn new(target: &str) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { timeouts: 0 }),
            target: target.to_owned(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leave to run one operation, or the error to fail it with at once.
    pub fn permit(&self) -> Result<Permit, StoreError> {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Ok(Permit(())),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Ok(Permit(()))
            }
            State::Open { until } => Err(StoreError::Unavailable(format!(
                "circuit open: {} stopped answering ({TRIP_AFTER} timeouts in a row); \
                 next try in {} ms",
                self.target,
                until.saturating_duration_since(Instant::now()).as_millis()
            ))),
            State::HalfOpen => Err(StoreError::Unavailable(format!(
                "circuit half-open: {} is being probed",
                self.target
            ))),
        }
    }

    /// Records how the permitted operation ended.
    pub fn record<T>(&self, _permit: Permit, result: &Result<T, StoreError>) {
        let mut state = self.state();
        let timed_out = matches!(result, Err(StoreError::Timeout(_)));
        let next = match (*state, timed_out) {
            (State::HalfOpen, true) => State::Open {
                until: Instant::now() + COOL_DOWN,
            },
            (State::Closed { timeouts }, true) if timeouts + 1 >= TRIP_AFTER => State::Open {
                until: Instant::now() + COOL_DOWN,
            },
            (State::Closed { timeouts }, true) => State::Closed {
                timeouts: timeouts + 1,
            },
            // An operation that ended in time: the store answers (or refuses fast).
            (_, false) => State::Closed { timeouts: 0 },
            (open @ State::Open { .. }, true) => open,
        };
        let (was, now) = (is_open(*state), is_open(next));
        *state = next;
        drop(state);
        if was != now {
            metrics::gauge!(metric::STORE_CIRCUIT_OPEN.name).set(if now { 1.0 } else { 0.0 });
            if now {
                tracing::warn!(target_store = %self.target, "circuit open: failing fast");
            } else {
                tracing::info!(target_store = %self.target, "circuit closed: the store answers");
            }
        }
    }
}

fn is_open(state: State) -> bool {
    !matches!(state, State::Closed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(breaker: &Breaker, outcome: Result<(), StoreError>) -> Result<(), StoreError> {
        let permit = breaker.permit()?;
        breaker.record(permit, &outcome);
        outcome
    }

    #[test]
    fn opens_after_timeouts_probes_after_the_cool_down_and_closes_on_success() {
        let breaker = Breaker::new("redis://x");
        let timeout = || Err(StoreError::Timeout(Duration::from_secs(1)));
        for _ in 0..TRIP_AFTER {
            assert!(matches!(
                run(&breaker, timeout()),
                Err(StoreError::Timeout(_))
            ));
        }
        let fast = run(&breaker, Ok(())).expect_err("open");
        assert!(fast.to_string().contains("circuit open"), "{fast}");
        // After the cool-down one probe goes through; while it runs, others fail fast.
        *breaker.state() = State::Open {
            until: Instant::now(),
        };
        let probe = breaker.permit().expect("probe");
        assert!(breaker.permit().is_err());
        breaker.record(probe, &Ok::<(), StoreError>(()));
        assert!(run(&breaker, Ok(())).is_ok());
        // A refusal is fast: it never opens the circuit.
        for _ in 0..10 {
            let _ = run(&breaker, Err(StoreError::Unavailable("refused".into())));
        }
        assert!(breaker.permit().is_ok());
    }
}
