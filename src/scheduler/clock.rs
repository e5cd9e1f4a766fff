//! Wall-clock time for the scheduler.
//!
//! DCS reports task times as wall-clock timestamps, while the scheduler waits with tokio's
//! monotonic clock. [`Clock::Anchored`] derives wall time from tokio's clock, so tests that pause
//! and advance tokio time see wall time advance with it.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of Unix time in seconds.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// `unix` at `at`, advancing with tokio's clock (paused in tests).
    Anchored { unix: f64, at: Instant },
}

impl Clock {
    /// A clock that reads `unix` now and advances with tokio time.
    pub fn anchored(unix: f64) -> Clock {
        Clock::Anchored {
            unix,
            at: Instant::now(),
        }
    }

    /// Unix seconds now.
    pub fn now_unix(&self) -> f64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            Clock::Anchored { unix, at } => unix + at.elapsed().as_secs_f64(),
        }
    }
}
