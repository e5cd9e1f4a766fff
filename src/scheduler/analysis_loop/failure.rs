//! A failed attempt: counted in the store, logged once with the real wait before the next
//! attempt, and backed off. An analysis the instance does not support is no failure streak: it
//! is marked unsupported and asked again after the source's re-check period (see
//! [`AnalysisSource::unsupported_recheck`]), or at once on a config reload.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::super::backoff;
use super::AnalysisLoop;
use crate::config::duration::format;
use crate::config::Mode;
use crate::metrics::store::FailureReason;
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Counts a failed attempt, logs it once, and returns the wait before the next attempt:
    /// the failure backoff.
    pub(super) fn fail(&mut self, reason: FailureReason, message: &str) -> Duration {
        self.fail_then(reason, message, None)
    }

    /// As [`fail`](Self::fail), but the next attempt comes after `retry` when it is given
    /// (after a timeout: one interval, since asking again soon cannot make a slow task finish
    /// sooner). The log says the wait this returns.
    pub(super) fn fail_then(
        &mut self,
        reason: FailureReason,
        message: &str,
        retry: Option<Duration>,
    ) -> Duration {
        if self.stop.is_cancelled() {
            // Stopped (removed, reconfigured, shutting down): a call cut short is no failure
            // of the analysis, and the loop ends without waiting.
            return Duration::ZERO;
        }
        if reason == FailureReason::Unsupported {
            return self.unsupported(message);
        }
        self.consecutive_failures += 1;
        let now = self.shared.clock.now_unix();
        self.shared.store.record_failure(
            &self.instance_id,
            self.analysis,
            reason,
            message.to_owned(),
            now,
        );
        let wait = retry.unwrap_or_else(|| {
            backoff::failure_backoff(
                self.consecutive_failures,
                self.settings.interval,
                &mut self.rng,
            )
        });
        warn!(reason = reason.as_str(), failures = self.consecutive_failures,
            retry_in = %format(wait), error = %message, "analysis attempt failed");
        wait
    }

    /// The instance said it cannot run this analysis. Not a failure streak: the store counts
    /// the reason but keeps `consecutive_failures` at 0, so the re-check never alerts as
    /// failing. Returns the wait before the re-check: the source's period (an `observe` loop
    /// lists every interval anyway).
    fn unsupported(&mut self, message: &str) -> Duration {
        let now = self.shared.clock.now_unix();
        let already = std::mem::replace(&mut self.unsupported, true);
        self.consecutive_failures = 0;
        let store = &self.shared.store;
        store.record_failure(
            &self.instance_id,
            self.analysis,
            FailureReason::Unsupported,
            message.to_owned(),
            now,
        );
        let recheck = match self.settings.mode {
            Mode::Observe => self.settings.interval,
            _ => self
                .shared
                .client
                .unsupported_recheck(self.settings.interval),
        };
        store.set_recheck(
            &self.instance_id,
            self.analysis,
            Some(now + recheck.as_secs_f64()),
        );
        if already {
            debug!(recheck_in = %format(recheck), "still unsupported");
        } else {
            warn!(recheck_in = %format(recheck), error = %message,
                "instance does not support this analysis; asking again at the re-check or on a config reload");
        }
        recheck
    }

    /// The analysis ran (a task was created, or a result published): supported again if it
    /// was not.
    pub(super) fn supported(&mut self) {
        if self.unsupported {
            self.unsupported = false;
            info!("the instance supports this analysis again");
            self.shared
                .store
                .set_supported(&self.instance_id, self.analysis, true);
        }
    }
}
