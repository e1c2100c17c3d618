//! Presence: every running instance announces itself with a heartbeat that expires,
//! so "which replicas exist right now" is one read, and one that vanished without a
//! goodbye is told apart from one that left.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::service::Role;

/// How long expired heartbeats are kept for [`Presence::lost_instances`].
pub const LOST_KEPT: Duration = Duration::from_secs(15 * 60);

/// A running instance of a role, as its heartbeat announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The role it runs.
    pub role: Role,
    /// Unique per process: pod name (or host name) and pid.
    pub id: String,
    /// Version of the binary.
    pub version: String,
    /// Unix seconds when the process started.
    pub started_at: f64,
    /// Where it can be probed (`host:port`): `--advertise-addr`, else `POD_IP` and
    /// its port, else its listen address; `None` when it listens on a wildcard and
    /// knows no better.
    #[serde(default)]
    pub address: Option<String>,
    /// Faults injected in it and active now (empty for records written before
    /// faults existed).
    #[serde(default)]
    pub faults: Vec<String>,
    /// The location a worker probes from (`--location`); `None` for the other roles
    /// and for records written before locations existed (a worker's is then
    /// [`crate::targets::locations::DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Heartbeats of running instances.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Announces `instance` as alive until `ttl` from now; drops expired instances.
    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError>;
    /// Instances whose heartbeat has not expired.
    async fn instances(&self) -> Result<Vec<Instance>, StoreError>;
    /// Removes `instance`'s heartbeat at once: it shut down cleanly, so it is gone,
    /// not lost.
    async fn depart(&self, instance: &Instance) -> Result<(), StoreError>;
    /// Instances whose heartbeat expired less than `window` ago (at most
    /// [`LOST_KEPT`]) without a [`Presence::depart`]: they vanished. Each comes with
    /// the Unix seconds its heartbeat expired.
    async fn lost_instances(&self, window: Duration) -> Result<Vec<(Instance, f64)>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_written_before_faults_existed_still_parses() {
        let old = r#"{"role":"worker","id":"w-1","version":"0.1.0","started_at":1.0,"address":"10.0.0.1:8081"}"#;
        let instance: Instance = serde_json::from_str(old).expect("old record");
        assert!(instance.faults.is_empty());
    }
}
