//! What a target's state keeps of each location and what a notification carries of
//! it: plain data, so the state machine ([`crate::targets::state`]) holds it without
//! depending on how the locations' verdict is made ([`super`]).

use serde::{Deserialize, Serialize};

use crate::service::ServiceState;

/// A location's result older than this many intervals is no data.
pub const FRESH_INTERVALS: f64 = 2.0;

/// The latest result of one location, as the target's state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationResult {
    /// The location's own verdict, through the target's thresholds; `None` until they
    /// were first met.
    pub state: Option<ServiceState>,
    /// What its latest probe found wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Round trip of its latest probe, when there was an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<f64>,
    /// Unix seconds of its latest probe.
    pub timestamp: f64,
    /// Scheduler tick (ms) of its latest probe: an older one never overrides it.
    pub tick: u64,
    /// Unix seconds when the certificate its latest probe saw expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expires_at: Option<f64>,
}

impl LocationResult {
    /// Whether it is recent enough to count at `now`, for a target probed every
    /// `interval` seconds.
    pub fn fresh(&self, interval: f64, now: f64) -> bool {
        now - self.timestamp <= FRESH_INTERVALS * interval
    }
}

/// What one location says at the moment of a verdict: notifications carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationDetail {
    /// `up`, `degraded`, `down` or `no data`.
    pub state: String,
    /// What its latest probe found wrong.
    pub reason: Option<String>,
    /// Round trip of its latest probe.
    pub response_time_ms: Option<f64>,
}
