//! Delays: the backoff after failed attempts, start-up jitter, and the polling plan.
//!
//! The failure backoff is the crate's one [`crate::backoff::Backoff`], with the scheduler's
//! base and cap. Pure functions of their inputs and a random number, so their bounds are unit-tested without
//! a clock.

use std::time::Duration;

use rand::Rng;

use crate::backoff::Backoff;

/// First retry delay after a failed attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between polls of a running task.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest wait between polls of a running task.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Margin added to a task's expected end before the first poll.
pub const POLL_MARGIN: Duration = Duration::from_millis(750);
/// How long an analysis DCS found unsupported waits before asking again (at least; see
/// [`super::AnalysisSource::unsupported_recheck`]).
pub const UNSUPPORTED_RECHECK: Duration = Duration::from_secs(24 * 3600);

/// Delay before retrying after `failures` consecutive failures (≥ 1): `base·2^(n−1)`, capped at
/// `cap` (at least [`MIN_POLL_INTERVAL`]), with equal jitter (between half and all of it) so a
/// fleet that failed together does not retry together.
pub fn failure_backoff(failures: u64, cap: Duration, rng: &mut impl Rng) -> Duration {
    let max = cap.max(MIN_POLL_INTERVAL);
    let backoff = Backoff::new(BACKOFF_BASE.min(max), max, Backoff::EQUAL_JITTER)
        .expect("a base above zero, capped at the maximum, and equal jitter are valid");
    let retry = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    backoff.delay(retry, rng)
}

/// The start-up jitter window gained by each instance starting beside others (see
/// [`start_window`]).
pub const START_SPACING: Duration = Duration::from_secs(1);

/// The upper bound of the start-up jitter when the loops of `instances` instances start
/// together (at start, or on a reload or discovery listing that adds or changes them):
/// [`START_SPACING`] for each instance beyond the first, capped at `max`
/// (`scheduler.start_jitter`). One instance starts at once; 150 or more are spread over the
/// whole default of 2m30s, so that a fleet's first tasks reach the DCS API about one instance
/// a second rather than all at once.
pub fn start_window(instances: usize, max: Duration) -> Duration {
    let others = u32::try_from(instances.saturating_sub(1)).unwrap_or(u32::MAX);
    START_SPACING.saturating_mul(others).min(max)
}

/// Delay before an analysis' first task after start: uniform in `[0, min(interval / 2, max)]`,
/// so that a fleet does not fire at once (`max`: see [`start_window`]).
pub fn start_jitter(interval: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let window = (interval / 2).min(max);
    window.mul_f64(rng.gen::<f64>())
}

/// How well the expected duration of a task is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// Learned from the previous run of the same analysis: tasks rarely overrun it by much.
    Learned(Duration),
    /// A first guess: the task may take many times longer.
    Guessed(Duration),
}

/// Delay before the next poll of a task that has been followed for `elapsed` (from its
/// creation): until the expected end plus a margin; past it, a share of the time already spent
/// — a twentieth when the duration was learned (so an overrun adds at most ~5% lag), a quarter
/// when it was a guess (so a long first run costs few polls) — within [`MIN_POLL_INTERVAL`] and
/// [`MAX_POLL_INTERVAL`]. Never past `deadline_in` (time left before the timeout).
pub fn next_poll(elapsed: Duration, expected: Expectation, deadline_in: Duration) -> Duration {
    let (expected, share) = match expected {
        Expectation::Learned(d) => (d, 20),
        Expectation::Guessed(d) => (d, 4),
    };
    let wait = if elapsed + MIN_POLL_INTERVAL < expected {
        expected - elapsed + POLL_MARGIN
    } else {
        (elapsed / share).clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
    };
    wait.min(deadline_in)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let cap = Duration::from_secs(600);
        for n in 1..=12u64 {
            let raw = (BACKOFF_BASE * 2u32.pow(n as u32 - 1)).min(cap);
            for _ in 0..200 {
                let d = failure_backoff(n, cap, &mut rng);
                assert!(d >= raw / 2 && d <= raw, "n={n} d={d:?} raw={raw:?}");
            }
        }
        // Huge failure counts do not overflow.
        assert!(failure_backoff(u64::MAX, cap, &mut rng) <= cap);
    }

    #[test]
    fn start_jitter_stays_within_half_the_capped_interval() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut max = Duration::ZERO;
        for _ in 0..1000 {
            let d = start_jitter(
                Duration::from_secs(3600),
                Duration::from_secs(150),
                &mut rng,
            );
            assert!(d <= Duration::from_secs(150));
            max = max.max(d);
        }
        assert!(
            max > Duration::from_secs(100),
            "jitter must actually spread: {max:?}"
        );
        let max = Duration::from_secs(150);
        assert!(start_jitter(Duration::from_secs(10), max, &mut rng) <= Duration::from_secs(5));
        assert_eq!(
            start_jitter(Duration::from_secs(10), Duration::ZERO, &mut rng),
            Duration::ZERO
        );
    }

    #[test]
    fn the_start_window_grows_with_the_instances_starting_together() {
        let s = Duration::from_secs;
        let max = s(150);
        assert_eq!(start_window(0, max), Duration::ZERO);
        assert_eq!(
            start_window(1, max),
            Duration::ZERO,
            "one instance starts at once"
        );
        assert_eq!(start_window(2, max), START_SPACING);
        assert_eq!(start_window(100, max), s(99));
        assert_eq!(
            start_window(151, max),
            max,
            "a fleet is spread as configured"
        );
        assert_eq!(start_window(100_000, max), max);
        assert_eq!(
            start_window(usize::MAX, Duration::MAX),
            START_SPACING * u32::MAX,
            "no overflow"
        );
        assert_eq!(start_window(300, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn polls_at_expected_end_then_backs_off() {
        use Expectation::{Guessed, Learned};
        let s = Duration::from_secs;
        // Just created, expected to take 40 s: first poll right after the expected end.
        assert_eq!(next_poll(s(0), Learned(s(40)), s(600)), s(40) + POLL_MARGIN);
        assert_eq!(next_poll(s(0), Guessed(s(40)), s(600)), s(40) + POLL_MARGIN);
        // Past a guess: a quarter of the elapsed time, bounded.
        assert_eq!(
            next_poll(s(41), Guessed(s(40)), s(600)),
            Duration::from_millis(10250)
        );
        assert_eq!(next_poll(s(2), Guessed(s(0)), s(600)), MIN_POLL_INTERVAL);
        assert_eq!(
            next_poll(s(3600), Guessed(s(40)), s(6000)),
            MAX_POLL_INTERVAL
        );
        // Past a learned duration: a twentieth, so a 10-minute task overrunning by a few
        // seconds is seen within 30 s, not minutes.
        assert_eq!(
            next_poll(s(601), Learned(s(600)), s(6000)),
            Duration::from_millis(30050)
        );
        assert_eq!(
            next_poll(s(41), Learned(s(40)), s(600)),
            Duration::from_millis(2050)
        );
        // Never beyond the timeout.
        assert_eq!(next_poll(s(0), Learned(s(400)), s(30)), s(30));
    }
}
