//! The simulator's notion of "now", injectable so tests can move time without sleeping.
//!
//! Task lifecycles, autoscan schedules, hot-set drift and IAM token expiry all read this clock.
//! Three sources exist:
//! - [`SimClock::real`]: the wall clock (`simulate`, `--demo`).
//! - [`SimClock::tokio`]: the wall clock at creation plus the time elapsed on tokio's clock, so a
//!   test with `#[tokio::test(start_paused = true)]` moves simulated time whenever tokio's paused
//!   clock auto-advances (for example while a scheduler sleeps).
//! - [`SimClock::manual`]: a fixed time that moves only with [`SimClock::advance`].
//!
//! The AK/SK signature window is deliberately *not* checked against this clock but against the
//! wall clock (plus the `clock_skew` fault): clients sign with the wall clock, and a test that moves
//! simulated time by hours must not make every signature look stale.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

/// A cheap-to-clone handle on the simulator's clock; clones share the same time.
#[derive(Clone, Debug)]
pub struct SimClock(Arc<Source>);

#[derive(Debug)]
enum Source {
    Real,
    Tokio {
        wall: OffsetDateTime,
        start: tokio::time::Instant,
    },
    Manual(Mutex<OffsetDateTime>),
}

impl SimClock {
    /// The wall clock.
    pub fn real() -> Self {
        SimClock(Arc::new(Source::Real))
    }

    /// The wall clock now, advancing with tokio's (possibly paused) clock from here on.
    pub fn tokio() -> Self {
        SimClock(Arc::new(Source::Tokio {
            wall: OffsetDateTime::now_utc(),
            start: tokio::time::Instant::now(),
        }))
    }

    /// A clock standing still at `start` until [`advance`](SimClock::advance) moves it.
    pub fn manual(start: OffsetDateTime) -> Self {
        SimClock(Arc::new(Source::Manual(Mutex::new(start))))
    }

    /// The current simulated time.
    pub fn now(&self) -> OffsetDateTime {
        match &*self.0 {
            Source::Real => OffsetDateTime::now_utc(),
            Source::Tokio { wall, start } => *wall + start.elapsed(),
            Source::Manual(t) => *t.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Moves a manual clock forward; returns `false` (and does nothing) for the other sources.
    pub fn advance(&self, by: Duration) -> bool {
        match &*self.0 {
            Source::Manual(t) => {
                let mut t = t.lock().unwrap_or_else(PoisonError::into_inner);
                *t += by;
                true
            }
            _ => false,
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(&*self.0, Source::Manual(_))
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::real()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = SimClock::manual(datetime!(2024-01-01 00:00 UTC));
        let other = c.clone();
        assert_eq!(c.now(), datetime!(2024-01-01 00:00 UTC));
        assert!(c.advance(Duration::from_secs(90)));
        assert_eq!(other.now(), datetime!(2024-01-01 00:01:30 UTC));
        assert!(!SimClock::real().advance(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = SimClock::tokio();
        let t0 = c.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let elapsed = c.now() - t0;
        assert!(elapsed >= time::Duration::seconds(3600));
        assert!(elapsed < time::Duration::seconds(3601));
    }
}
