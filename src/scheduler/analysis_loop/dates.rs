//! DCS dates seen from the exporter's clock.
//!
//! DCS' clock may run ahead of the exporter's. A task time later than now is never exported
//! nor counted from: it becomes the time the exporter saw it (logged when more than
//! [`FUTURE_TOLERANCE`] ahead). Two DCS dates are compared with each other only while neither
//! was that far ahead; otherwise a successful record that was not successful at the previous
//! list call is the newer one, since it finished after the published result was listed.

use tracing::warn;

use super::{AnalysisLoop, FUTURE_TOLERANCE};
use crate::dcs::{timestamp, TaskRecord, TaskStatus};
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Whether a DCS time is known and not more than [`FUTURE_TOLERANCE`] ahead of now.
    pub(super) fn trusted(&self, t: Option<f64>) -> bool {
        t.is_some_and(|t| t <= self.shared.clock.now_unix() + FUTURE_TOLERANCE)
    }

    /// A DCS timestamp in Unix seconds, never later than now: DCS' clock may run ahead of
    /// ours, and a time in the future would be exported as such and hold back every newer
    /// result and the next task until it passed.
    pub(super) fn time_of(&self, s: Option<&str>) -> Option<f64> {
        let t = s.and_then(timestamp::parse)?;
        Some(t.min(self.shared.clock.now_unix()))
    }

    /// The time an active record ranks by: [`time_of`](Self::time_of), but unknown (ranking
    /// below every dated record) when it lies more than [`FUTURE_TOLERANCE`] ahead.
    pub(super) fn rank_time(&self, s: Option<&str>) -> Option<f64> {
        let t = s.and_then(timestamp::parse)?;
        let now = self.shared.clock.now_unix();
        (t <= now + FUTURE_TOLERANCE).then_some(t.min(now))
    }

    /// The record as it may be exported: every timestamp later than now replaced by now (the
    /// time it was seen), logged when one was further ahead than [`FUTURE_TOLERANCE`]; and a
    /// missing or unreadable `finished_at` of a completed record replaced by now too, logged,
    /// so that the last success time always exists and a staleness alert can fire.
    pub(super) fn without_future_times<'t>(
        &self,
        task: &'t TaskRecord,
    ) -> std::borrow::Cow<'t, TaskRecord> {
        let now = self.shared.clock.now_unix();
        let ahead = |s: &Option<String>| {
            s.as_deref()
                .and_then(timestamp::parse)
                .map_or(0.0, |t| t - now)
        };
        let undated = task.status == TaskStatus::Success
            && task
                .finished_at
                .as_deref()
                .and_then(timestamp::parse)
                .is_none();
        if undated {
            warn!(task_id = %task.id,
                "DCS gave a finished task no readable end time; using the time it was seen instead");
        }
        let fields = [&task.created_at, &task.started_at, &task.finished_at];
        if !undated && fields.iter().all(|f| ahead(f) <= 0.0) {
            return std::borrow::Cow::Borrowed(task);
        }
        let most = fields.iter().map(|f| ahead(f)).fold(0.0, f64::max);
        if most > FUTURE_TOLERANCE {
            warn!(task_id = %task.id, ahead_seconds = most.round(),
                "DCS dated a task in the future (clock skew); using the time it was seen instead");
            if let Some(m) = &self.shared.metrics {
                m.future_timestamp();
            }
        }
        let mut fixed = task.clone();
        let seen = timestamp::format_unix(now);
        if undated {
            fixed.finished_at = Some(seen.clone());
        }
        for f in [
            &mut fixed.created_at,
            &mut fixed.started_at,
            &mut fixed.finished_at,
        ] {
            if ahead(f) > 0.0 {
                *f = Some(seen.clone());
            }
        }
        std::borrow::Cow::Owned(fixed)
    }
}
