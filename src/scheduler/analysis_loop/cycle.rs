//! Start-up and the cycles of one analysis loop: what the loop does each time it wakes, and
//! how long it sleeps after.
//!
//! # API economy
//! For big key analyses, after a cycle in which a task this loop created succeeded, up to
//! [`MAX_UNLISTED_CYCLES`] cycles in a row create the next task without listing first: a
//! completed analysis then costs two calls (create, one show) instead of three. Nothing is
//! duplicated by this: DCS documents that a big key task started elsewhere makes the create fail
//! with DCS.4918, and the loop then lists and adopts it. Hot key analyses always list first:
//! no "already running" refusal is documented for them, so only the list guarantees that a
//! console or auto-scan task is adopted rather than doubled. A create whose outcome is unknown
//! (its answer was lost: [`dcs::Error::OutcomeUnknown`]) is never repeated blindly: the loop lists
//! at once and follows the task if DCS has it (counted as adopted), else counts a failure and
//! lists again before its next create. A
//! record that DCS auto-scan or a console run added meanwhile is picked up by the next list, at
//! most `MAX_UNLISTED_CYCLES` cycles later (a fresh result of the loop's own is published in
//! between anyway). The cadence of a result the loop followed counts from the task's creation,
//! so a long task does not push the next one back by its own duration.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::super::backoff;
use super::{AnalysisLoop, Survey, MAX_UNLISTED_CYCLES};
use crate::config::Mode;
use crate::dcs::{self, Analysis};
use crate::metrics::store::{FailureReason, RunningTask, TaskOrigin};
use crate::scheduler::source::{AnalysisSource, SourceError};

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Publishes what DCS already has before anything else, adopts a running task, and says
    /// how long to wait before the first regular cycle.
    pub(super) async fn startup(&mut self, cancel: &CancellationToken) -> Duration {
        if self.analysis == Analysis::Keyfamily {
            // Results are filed by shard, and the cadence counts per shard: learn the shards
            // first. A failure here only files results under the shard their answer names, and
            // leaves the cadence to the published result until the first creation.
            if let Ok(nodes) = self
                .call(|c, id, _| async move { c.keyfamily_nodes(id).await })
                .await
            {
                self.topology = nodes;
            }
        }
        let survey = match self.survey().await {
            Ok(s) => s,
            Err(e) => return self.fail(e.failure_reason(), &e.to_string()),
        };
        if self.analysis == Analysis::Keyfamily && !self.topology.nodes.is_empty() {
            // Take the existing result of each shard, so that a restart analyses no shard
            // again for nothing.
            if let Err(e) = self.ingest_shards().await {
                debug!(error = %e, "cannot take the existing results of every shard");
            }
        }
        if self.settings.mode == Mode::Observe {
            return self.settings.interval;
        }
        if let Some((id, status, created)) = survey.active {
            return self
                .follow_and_publish(id, status, created, TaskOrigin::Adopted, cancel)
                .await;
        }
        let jitter = backoff::start_jitter(
            self.settings.interval,
            self.shared.start_jitter,
            &mut self.rng,
        );
        self.until_due().max(jitter)
    }

    /// Time left until the newest result is one interval old (zero when there is none). Key
    /// families: until the oldest shard's result is (zero while a known shard has none).
    pub(super) fn until_due(&self) -> Duration {
        if self.analysis == Analysis::Keyfamily && !self.topology.nodes.is_empty() {
            return self.until_oldest_shard_due();
        }
        self.until_interval_after(self.published_since)
    }

    /// Time left until a result finished at `finished` (Unix seconds) is one interval old;
    /// zero without one.
    pub(super) fn until_interval_after(&self, finished: Option<f64>) -> Duration {
        match finished {
            Some(f) => {
                let age = (self.shared.clock.now_unix() - f).max(0.0);
                self.settings
                    .interval
                    .saturating_sub(Duration::from_secs_f64(age))
            }
            None => Duration::ZERO,
        }
    }

    pub(super) async fn trigger_cycle(&mut self, cancel: &CancellationToken) -> Duration {
        let skip_list =
            self.analysis == Analysis::Bigkey && self.clean && self.unlisted < MAX_UNLISTED_CYCLES;
        let survey = if skip_list {
            // The last task was ours and succeeded, and DCS refuses a concurrent big key task
            // with DCS.4918: create straight away (see the module docs).
            self.unlisted += 1;
            Survey::default()
        } else {
            self.unlisted = 0;
            match self.survey().await {
                Ok(s) => s,
                Err(e) => {
                    self.clean = false;
                    return self.fail(e.failure_reason(), &e.to_string());
                }
            }
        };
        self.clean = false;
        if let Some((id, status, created)) = survey.active {
            return self
                .follow_and_publish(id, status, created, TaskOrigin::Adopted, cancel)
                .await;
        }
        // A result that is still fresh (a console run or auto-scan landed meanwhile) makes a
        // new task pointless until it ages.
        let due = self.until_due();
        if due > self.settings.interval / 10 {
            debug!(wait = ?due, "newest result is fresh, not creating a task");
            return due;
        }
        let op = self.analysis.operation(dcs::Operation::CreateTask);
        match self.create_any().await {
            Ok(None) => {
                // Look again for a newer backup well before a whole interval has passed.
                debug!("every shard has a result of the newest backup, not creating a task");
                (self.settings.interval / 8).max(backoff::MIN_POLL_INTERVAL)
            }
            Ok(Some(task)) => {
                self.remember_created(&task.id);
                self.shared.store.count_task(
                    &self.instance_id,
                    self.analysis,
                    &task.id,
                    TaskOrigin::Created,
                );
                self.supported();
                info!(task_id = %task.id, "created analysis task");
                let created = self.time_of(task.created_at.as_deref());
                self.follow_and_publish(task.id, task.status, created, TaskOrigin::Created, cancel)
                    .await
            }
            Err(e) if e.is_already_running() => {
                // Someone else's task runs: find and adopt it instead of piling up another.
                match self.survey().await {
                    Ok(Survey {
                        active: Some((id, status, created)),
                    }) => {
                        self.follow_and_publish(id, status, created, TaskOrigin::Adopted, cancel)
                            .await
                    }
                    Ok(_) => self.fail(
                        FailureReason::ApiError,
                        &format!("{op}: refused as a task is running, but none is listed"),
                    ),
                    Err(e) => self.fail(e.failure_reason(), &e.to_string()),
                }
            }
            Err(e) if e.is_outcome_unknown() => {
                // The create may have been carried out (its answer was lost): look before
                // creating again, and follow the task if it exists.
                warn!(error = %e, "the create's outcome is unknown; listing to find the task");
                let published = self.published.as_ref().map(|p| p.id.clone());
                match self.survey().await {
                    Ok(Survey {
                        active: Some((id, status, created)),
                    }) => {
                        self.follow_and_publish(id, status, created, TaskOrigin::Adopted, cancel)
                            .await
                    }
                    // It already ended, and the list published it.
                    Ok(_) if self.published.as_ref().map(|p| &p.id) != published.as_ref() => {
                        self.until_due().max(backoff::MIN_POLL_INTERVAL)
                    }
                    Ok(_) => self.fail(e.failure_reason(), &e.to_string()),
                    Err(list) => self.fail(list.failure_reason(), &list.to_string()),
                }
            }
            Err(e) => self.fail(e.failure_reason(), &e.to_string()),
        }
    }

    pub(super) async fn observe_cycle(&mut self) -> Duration {
        match self.survey().await {
            Ok(survey) => {
                let store = &self.shared.store;
                let previous = store
                    .analysis_state(&self.instance_id, self.analysis)
                    .and_then(|s| s.running);
                let running = survey.active.map(|(id, status, created)| {
                    // Keep the time the task was first seen while it stays the same task.
                    let since = match &previous {
                        Some(p) if p.id == id => p.since,
                        _ => created.unwrap_or_else(|| self.shared.clock.now_unix()),
                    };
                    RunningTask {
                        id,
                        status: status.to_string(),
                        since,
                    }
                });
                self.shared
                    .store
                    .set_running(&self.instance_id, self.analysis, running);
                self.settings.interval
            }
            // The failure backoff is at most one interval.
            Err(e) => self.fail(e.failure_reason(), &e.to_string()),
        }
    }
}
