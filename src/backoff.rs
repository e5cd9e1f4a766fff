//! The one retry backoff of the exporter: exponential, capped, with jitter.
//!
//! Every loop that retries after a failure (DCS API requests, analysis attempts, instance
//! discovery, instance details, the HTTP server's `accept`) waits [`Backoff::delay`]: the
//! ceiling `base·2^retry`, capped at `max`, minus a random share of at most `jitter` of it. So
//! the delay is uniform in `[ceiling·(1 − jitter), ceiling]` and never exceeds `max`:
//!
//! | `jitter` | name | delay |
//! |---|---|---|
//! | `1.0` | full jitter | uniform in `[0, ceiling]` |
//! | `0.5` | equal jitter | uniform in `[ceiling/2, ceiling]` |
//!
//! Jitter matters because instances that fail together (an API outage, a restart of the whole
//! fleet) would otherwise retry together, in lock step, for ever. The settings are checked once,
//! in [`Backoff::new`], like linkerd2-proxy's `ExponentialBackoff`; `delay` itself cannot fail
//! and does not overflow for any retry count.
//!
//! A pure function of its settings, the retry number and a random number, so its bounds are
//! property-tested without a clock. This module depends on nothing else in the crate.

use std::time::Duration;

use rand::Rng;

/// Why backoff settings were refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    #[error("backoff base delay must be above zero")]
    ZeroBase,
    #[error("backoff base delay {base:?} is above its maximum {max:?}")]
    BaseAboveMax { base: Duration, max: Duration },
    #[error("backoff jitter {0} is not a fraction between 0 and 1")]
    Jitter(f64),
}

/// Validated settings of an exponential backoff with jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Full jitter: the delay is uniform in `[0, ceiling]` (AWS' recommendation for clients of
    /// one service).
    pub const FULL_JITTER: f64 = 1.0;
    /// Equal jitter: the delay is uniform in `[ceiling/2, ceiling]`, so a retry never comes much
    /// sooner than the ceiling says.
    pub const EQUAL_JITTER: f64 = 0.5;

    /// The first retry waits up to `base`, each further one up to twice as long, never more
    /// than `max`; `jitter` (0 to 1) is the share of each ceiling that is randomised away.
    /// A `const fn`, so fixed settings are checked when the crate compiles (see
    /// [`Backoff::fixed`]).
    pub const fn new(
        base: Duration,
        max: Duration,
        jitter: f64,
    ) -> Result<Backoff, InvalidBackoff> {
        if base.is_zero() {
            return Err(InvalidBackoff::ZeroBase);
        }
        if base.as_nanos() > max.as_nanos() {
            return Err(InvalidBackoff::BaseAboveMax { base, max });
        }
        // Written so that NaN is refused too.
        if !(jitter >= 0.0 && jitter <= 1.0) {
            return Err(InvalidBackoff::Jitter(jitter));
        }
        Ok(Backoff { base, max, jitter })
    }

    /// [`Backoff::new`] for settings fixed in the code: used in a `const`, invalid settings
    /// fail the build instead of the running exporter.
    pub const fn fixed(base: Duration, max: Duration, jitter: f64) -> Backoff {
        match Backoff::new(base, max, jitter) {
            Ok(b) => b,
            Err(_) => panic!("invalid fixed backoff settings"),
        }
    }

    /// The delay ceiling of the first retry.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The share of the ceiling that is random.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The longest delay before retry number `retry` (0 for the first retry):
    /// `min(max, base·2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        // 2^31 times any base above zero is beyond every useful maximum; the shift stays in
        // range and the product saturates.
        self.base
            .checked_mul(1u32 << retry.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay before retry number `retry` (0 for the first retry): uniform in
    /// `[ceiling·(1 − jitter), ceiling]`.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        if self.jitter == 0.0 {
            return ceiling;
        }
        let cut = ceiling.mul_f64(self.jitter * rng.gen::<f64>());
        ceiling.saturating_sub(cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn invalid_settings_are_refused_with_the_reason() {
        assert_eq!(
            Backoff::new(Duration::ZERO, ms(10), 0.5),
            Err(InvalidBackoff::ZeroBase)
        );
        assert_eq!(
            Backoff::new(ms(20), ms(10), 0.5),
            Err(InvalidBackoff::BaseAboveMax {
                base: ms(20),
                max: ms(10)
            })
        );
        for j in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            let e = Backoff::new(ms(1), ms(10), j).expect_err("jitter out of range");
            assert!(e.to_string().contains("jitter"), "{e}");
        }
        assert!(Backoff::new(ms(10), ms(10), 0.0).is_ok());
        assert!(Backoff::new(ms(10), ms(10), 1.0).is_ok());
    }

    #[test]
    fn ceilings_double_from_the_base_up_to_the_max() {
        let b = Backoff::new(ms(100), ms(1000), 0.5).unwrap();
        let got: Vec<_> = (0..6).map(|r| b.ceiling(r).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), ms(1000));
    }

    #[test]
    fn without_jitter_the_delay_is_the_ceiling() {
        let b = Backoff::new(ms(10), ms(1000), 0.0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for r in 0..12 {
            assert_eq!(b.delay(r, &mut rng), b.ceiling(r));
        }
    }

    #[test]
    fn jitter_spreads_over_its_whole_range() {
        // Full jitter must reach both ends of [0, ceiling], not just stay inside it.
        let b = Backoff::new(ms(1000), ms(1000), Backoff::FULL_JITTER).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let delays: Vec<_> = (0..1000).map(|_| b.delay(0, &mut rng)).collect();
        assert!(delays.iter().any(|d| *d < ms(50)), "never near 0");
        assert!(
            delays.iter().any(|d| *d > ms(950)),
            "never near the ceiling"
        );
        let equal = Backoff::new(ms(1000), ms(1000), Backoff::EQUAL_JITTER).unwrap();
        let delays: Vec<_> = (0..1000).map(|_| equal.delay(0, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= ms(500)));
        assert!(delays.iter().any(|d| *d < ms(550)), "never near the half");
    }

    proptest! {
        #[test]
        fn delay_stays_within_the_jitter_range_and_the_max(
            base_ms in 1u64..100_000,
            extra_ms in 0u64..10_000_000,
            jitter in 0.0f64..=1.0,
            retry in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let (base, max) = (ms(base_ms), ms(base_ms + extra_ms));
            let b = Backoff::new(base, max, jitter).unwrap();
            let ceiling = b.ceiling(retry);
            prop_assert!(ceiling >= base.min(max) && ceiling <= max);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let d = b.delay(retry, &mut rng);
            prop_assert!(d <= ceiling, "{d:?} above {ceiling:?}");
            // Allow a nanosecond of float rounding at the lower end.
            let floor = ceiling.mul_f64(1.0 - jitter).saturating_sub(Duration::from_nanos(1));
            prop_assert!(d >= floor, "{d:?} below {floor:?}");
        }

        #[test]
        fn ceilings_never_shrink_and_reach_the_max(
            base_ms in 1u64..100_000,
            extra_ms in 0u64..10_000_000,
        ) {
            let b = Backoff::new(ms(base_ms), ms(base_ms + extra_ms), 1.0).unwrap();
            let mut last = Duration::ZERO;
            for retry in 0..64 {
                let c = b.ceiling(retry);
                prop_assert!(c >= last, "retry {retry}: {c:?} after {last:?}");
                prop_assert!(c <= b.max());
                last = c;
            }
            prop_assert_eq!(last, b.max());
        }
    }
}
