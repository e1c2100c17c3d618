//! Time as the system stores and shows it: Unix seconds as a float (the original's
//! `timestamp` format), minute buckets for series, and durations as whole milliseconds
//! for the store, without a cast that could wrap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch as a float.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The instant `unix_seconds` (as stored) names; `None` for a value no clock shows
/// (negative, not a number, beyond the range of `SystemTime`).
pub fn system_time(unix_seconds: f64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(unix_seconds).ok()?)
}

/// The minute (Unix seconds / 60) that `unix_seconds` falls in.
pub fn minute_of(unix_seconds: f64) -> i64 {
    // `as` saturates for floats: a clock beyond the year 292 billion stays in range.
    (unix_seconds / 60.0).floor() as i64
}

/// `d` in whole milliseconds, at least 1 (0 means "forever" to Redis' PX and BLOCK),
/// saturating rather than wrapping.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `d` in milliseconds as a float, for response times.
pub fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_never_wraps_or_reaches_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn stored_times_become_instants_or_nothing() {
        assert_eq!(
            system_time(1.5),
            UNIX_EPOCH.checked_add(Duration::from_millis(1500))
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::MAX] {
            assert_eq!(system_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn minutes_are_floored() {
        assert_eq!(minute_of(119.9), 1);
        assert_eq!(minute_of(-0.5), -1);
    }
}
