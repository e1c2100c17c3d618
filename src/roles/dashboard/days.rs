//! Each target's uptime over the last 7, 30, 90 and 365 days, as `/api/health-check`
//! gives it: read from the day tallies by the snapshot's gatherer every [`EVERY`]
//! seconds rather than every round or every request. A year of tallies of 1,000
//! targets is 12,000 hash reads (most of a second), and a figure over days moves
//! little in minutes.

use std::collections::HashMap;

use futures_util::{StreamExt, stream};

use crate::store::Store;
use crate::targets::history::{Uptimes, uptimes};

/// Seconds between two reads of every target's day tallies.
pub const EVERY: f64 = 300.0;
/// Targets whose day tallies are read at once.
const READS_AT_ONCE: usize = 16;

/// The figures of the last read, by target.
#[derive(Debug, Default)]
pub struct DayUptimes {
    read_at: Option<f64>,
    by_name: HashMap<String, Uptimes>,
}

impl DayUptimes {
    /// Reads every target of `names` again when [`EVERY`] seconds have passed since
    /// the last read at `now` (or the clock went back), or a target is new. A target
    /// whose tallies cannot be read has unknown figures until the next read.
    pub async fn refresh(&mut self, store: &dyn Store, names: &[String], now: f64) {
        let due = self.read_at.is_none_or(|at| now - at >= EVERY || now < at)
            || names.iter().any(|n| !self.by_name.contains_key(n));
        if !due {
            return;
        }
        // Owned names: a stream of futures borrowing them is not `Send` to the
        // compiler inside the gatherer's spawned task.
        let read: Vec<Uptimes> = stream::iter(names.to_vec())
            .map(|name| async move { uptimes(store, &name, now).await.unwrap_or_default() })
            .buffered(READS_AT_ONCE)
            .collect()
            .await;
        self.by_name = names.iter().cloned().zip(read).collect();
        self.read_at = Some(now);
    }

    /// Target `name`'s figures (unknown before its first read).
    pub fn of(&self, name: &str) -> Uptimes {
        self.by_name.get(name).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{SampleRecord, Targets};

    #[tokio::test]
    async fn figures_are_read_again_only_when_due_or_for_a_new_target() {
        let store = MemoryStore::new();
        let now = 400.0 * 86400.0;
        let probe = |up| SampleRecord {
            timestamp: now - 3600.0,
            up,
            counts: true,
            response_time_ms: None,
            minutes_only: false,
            json: "{}".to_owned(),
        };
        let put = async |name: &str, seen: Option<&str>, up: bool| {
            let written = store
                .put_target_state(name, seen, "s", Some(&probe(up)))
                .await;
            assert_eq!(written.ok(), Some(true));
        };
        put("a", None, true).await;
        let mut days = DayUptimes::default();
        let names = ["a".to_owned()];
        days.refresh(&store, &names, now).await;
        assert_eq!(days.of("a").d7, Some(100.0));
        // A failed probe now: not read until EVERY has passed.
        put("a", Some("s"), false).await;
        days.refresh(&store, &names, now + 10.0).await;
        assert_eq!(days.of("a").d7, Some(100.0));
        days.refresh(&store, &names, now + EVERY).await;
        assert_eq!(days.of("a").d365, Some(50.0));
        // A new target is read at once, and so is every other.
        put("b", None, true).await;
        put("a", Some("s"), false).await;
        let both = ["a".to_owned(), "b".to_owned()];
        days.refresh(&store, &both, now + EVERY + 1.0).await;
        assert_eq!(days.of("b").d30, Some(100.0));
        assert!(
            days.of("a")
                .d90
                .is_some_and(|u| (u - 100.0 / 3.0).abs() < 1e-9)
        );
        assert_eq!(days.of("nobody"), Uptimes::default());
    }
}
