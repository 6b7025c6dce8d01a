//! Clocks. Events carry wall-clock UTC timestamps in unix milliseconds; durations are measured
//! on the monotonic clock and stored as fractional milliseconds.
//!
//! One monotonic clock serves every measurement, its stamps and its deadlines alike: tokio's
//! [`Instant`] (std's monotonic clock in soakd itself; the test's clock under
//! `#[tokio::test(start_paused = true)]`, so a test on paused time drives a whole measurement
//! and reads stamps exact to the delays it scripted).

use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// Wall-clock now, unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A pair of clocks read at the same moment: wall time for the record, monotonic for durations.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub wall_ms: i64,
    pub mono: Instant,
}

impl Stamp {
    pub fn now() -> Self {
        Stamp { wall_ms: now_ms(), mono: Instant::now() }
    }
}

/// Fractional milliseconds between two monotonic instants (0 when `to` is earlier).
pub fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}
