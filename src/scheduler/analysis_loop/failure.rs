//! A failed attempt: counted in the store, logged once, and backed off.

use std::time::Duration;

use tracing::warn;

use super::super::backoff;
use super::AnalysisLoop;
use crate::metrics::store::FailureReason;
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Counts a failed attempt, logs it once, and returns the backoff before the next one.
    pub(super) fn fail(&mut self, reason: FailureReason, message: &str) -> Duration {
        if self.stop.is_cancelled() {
            // Stopped (removed, reconfigured, shutting down): a call cut short is no failure
            // of the analysis, and the loop ends without waiting.
            return Duration::ZERO;
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
        let wait = backoff::failure_backoff(
            self.consecutive_failures,
            self.settings.interval,
            &mut self.rng,
        );
        if reason != FailureReason::Unsupported {
            warn!(reason = reason.as_str(), failures = self.consecutive_failures,
                retry_in = ?wait, error = %message, "analysis attempt failed");
        }
        wait
    }
}
