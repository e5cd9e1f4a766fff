//! Following a task to its end: polls at its expected end (learned from the previous run),
//! gives up at the analysis' time limit, and publishes a success.
//!
//! The limit is asked of [`AnalysisLoop::time_limit`] at every poll, so that a limit that
//! depends on the task (a scan whose length follows from the keyspace and its pace, told by
//! the source while it runs) plugs in there alone.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::super::backoff;
use super::{AnalysisLoop, Outcome, FIRST_EXPECTED};
use crate::dcs::{self, Analysis, TaskRecord, TaskStatus};
use crate::metrics::store::{FailureReason, RunningTask, TaskOrigin};
use crate::scheduler::source::{AnalysisSource, SourceError};

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Follows a task to its end and publishes it; returns the wait before the next cycle.
    pub(super) async fn follow_and_publish(
        &mut self,
        task_id: String,
        status: TaskStatus,
        created_unix: Option<f64>,
        origin: TaskOrigin,
        cancel: &CancellationToken,
    ) -> Duration {
        // A task this loop created or adopted before (followed again after a failed poll or a
        // timeout) is not a new adoption; nor is the one a loop replaced by a reload followed
        // (the store counts a task once).
        if origin == TaskOrigin::Adopted && !self.created.contains(&task_id) {
            self.shared.store.count_task(
                &self.instance_id,
                self.analysis,
                &task_id,
                TaskOrigin::Adopted,
            );
            self.remember_created(&task_id);
            info!(task_id = %task_id, "adopted a task that was already {status}");
        }
        let outcome = self.follow(&task_id, status, created_unix, cancel).await;
        self.shared
            .store
            .set_running(&self.instance_id, self.analysis, None);
        match outcome {
            Ok(Outcome::Success(task)) => {
                self.publish(&task, None);
                self.clean = origin == TaskOrigin::Created;
                if self.analysis == Analysis::Keyfamily {
                    // The next shard may be due at once.
                    return self.until_due().max(backoff::MIN_POLL_INTERVAL);
                }
                // Keep the cadence: the next task is due one interval after this one started.
                let since = created_unix.map_or(Duration::ZERO, |c| {
                    Duration::from_secs_f64((self.shared.clock.now_unix() - c).max(0.0))
                });
                self.settings
                    .interval
                    .saturating_sub(since)
                    .max(backoff::MIN_POLL_INTERVAL)
            }
            Ok(Outcome::Failed(status)) => self.fail(
                FailureReason::TaskFailed,
                &format!("task {task_id} ended with status {status}"),
            ),
            // Asking again soon cannot make a slow or stuck task finish sooner.
            Ok(Outcome::TimedOut(limit)) => self.fail_then(
                FailureReason::Timeout,
                &format!(
                    "task {task_id} still unfinished after the {} timeout",
                    crate::config::duration::format(limit)
                ),
                Some(self.settings.interval),
            ),
            Ok(Outcome::Cancelled) => Duration::ZERO,
            Err(e) => self.fail(e.failure_reason(), &e.to_string()),
        }
    }

    /// How long a task may take from its creation before the loop gives up following it: the
    /// analysis' `timeout`.
    pub(super) fn time_limit(&self) -> Duration {
        self.settings.timeout
    }

    /// Polls a task until it ends, the time limit passes or `cancel` fires; keeps the store's
    /// running task current meanwhile.
    pub(super) async fn follow(
        &mut self,
        task_id: &str,
        mut status: TaskStatus,
        created_unix: Option<f64>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, C::Error> {
        let now = self.shared.clock.now_unix();
        // The task's age counts from its creation when DCS said when that was.
        let age_at_start = created_unix.map_or(0.0, |c| (now - c).max(0.0));
        let started = Instant::now() - Duration::from_secs_f64(age_at_start);
        let expected = match self.expected {
            Some(d) => backoff::Expectation::Learned(d),
            None => backoff::Expectation::Guessed(FIRST_EXPECTED),
        };
        loop {
            self.shared.store.set_running(
                &self.instance_id,
                self.analysis,
                Some(RunningTask {
                    id: task_id.to_owned(),
                    status: status.to_string(),
                    since: now - age_at_start,
                }),
            );
            let age = started.elapsed();
            let limit = self.time_limit();
            let Some(left) = limit.checked_sub(age).filter(|d| !d.is_zero()) else {
                return Ok(Outcome::TimedOut(limit));
            };
            let wait = backoff::next_poll(age, expected, left);
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Outcome::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
            if started.elapsed() >= limit {
                return Ok(Outcome::TimedOut(limit));
            }
            let task = self
                .show_any(task_id)
                .await
                .and_then(|t| self.complete(t))?;
            match &task.status {
                TaskStatus::Success => return Ok(Outcome::Success(task)),
                TaskStatus::Failed => return Ok(Outcome::Failed(task.status.to_string())),
                // Waiting, running, or a status this version does not know: keep polling
                // until the timeout decides.
                other => status = other.clone(),
            }
        }
    }

    /// Refuses a successful record that counts keys (`num` > 0) but lists none: publishing it
    /// would replace the last good keys with nothing. It counts as a malformed answer.
    /// Key family results carry their families beside the record, not keys: not checked here.
    pub(super) fn complete(&self, task: TaskRecord) -> Result<TaskRecord, C::Error> {
        if self.analysis == Analysis::Keyfamily {
            return Ok(task);
        }
        let listed = task.keys.as_ref().map_or(0, Vec::len);
        match task.num {
            Some(n) if n > 0 && listed == 0 && task.status == TaskStatus::Success => {
                Err(C::Error::malformed(
                    self.analysis.operation(dcs::Operation::ShowTask),
                    format!("task {} succeeded with num {n} but lists no keys", task.id),
                ))
            }
            _ => Ok(task),
        }
    }
}
