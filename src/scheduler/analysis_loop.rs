//! The loop that keeps one analysis of one instance fresh, whatever its
//! [source](super::source::AnalysisSource): DCS tasks or the exporter's own scans.
//!
//! A cycle normally starts with one list call, which tells three things at once: a task already
//! waiting or running (adopted and followed instead of creating another), a successful record
//! newer than the published one (fetched and published: DCS auto-scan, console runs, a task
//! followed by a previous process), and when the newest result finished. In `trigger` mode a task
//! is created only when the newest result is older than the interval; it is then polled at its
//! expected end (learned from the previous run), not on a fixed short tick. Failures never
//! remove the published result; they are counted, logged once, and backed off.
//!
//! # API economy
//! For big key analyses, after a cycle in which a task this loop created succeeded, up to
//! [`MAX_UNLISTED_CYCLES`] cycles in a row create the next task without listing first: a
//! completed analysis then costs two calls (create, one show) instead of three. Nothing is
//! duplicated by this: DCS documents that a big key task started elsewhere makes the create fail
//! with DCS.4918, and the loop then lists and adopts it. Hot key analyses always list first:
//! no "already running" refusal is documented for them, so only the list guarantees that a
//! console or auto-scan task is adopted rather than doubled. A
//! record that DCS auto-scan or a console run added meanwhile is picked up by the next list, at
//! most `MAX_UNLISTED_CYCLES` cycles later (a fresh result of the loop's own is published in
//! between anyway). The cadence of a result the loop followed counts from the task's creation,
//! so a long task does not push the next one back by its own duration.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff;
use super::clock::Clock;
use super::source::{AnalysisSource, SourceError};
use crate::config::{AnalysisSettings, Mode};
use crate::dcs::{self, timestamp, Analysis, TaskListQuery, TaskRecord, TaskStatus};
use crate::metrics::store::{FailureReason, RunningTask, Store, TaskOrigin};

/// Records asked for per list call: DCS keeps at most 100 per instance and kind, so one page
/// sees them all whatever their (undocumented) order.
pub const LIST_LIMIT: u32 = 100;
/// Expected task duration before one has been observed.
pub const FIRST_EXPECTED: Duration = Duration::from_secs(5);
/// Cycles in a row that may create a task without listing first (see the module docs).
pub const MAX_UNLISTED_CYCLES: u32 = 3;
/// How many created task ids are remembered to tell created from adopted records.
const REMEMBERED_IDS: usize = 64;

/// What the loop shares with every other loop.
#[derive(Clone)]
pub struct Shared<C> {
    pub client: Arc<C>,
    pub store: Arc<Store>,
    /// Global limit on API calls in flight.
    pub limiter: Arc<Semaphore>,
    pub clock: Clock,
    /// Upper bound of the start-up jitter.
    pub start_jitter: Duration,
}

/// One analysis of one instance.
pub struct AnalysisLoop<C> {
    shared: Shared<C>,
    instance_id: String,
    analysis: Analysis,
    settings: AnalysisSettings,
    rng: ChaCha8Rng,
    /// Creation-to-finish time of the last task seen to succeed.
    expected: Option<Duration>,
    /// Id and finish time (Unix seconds) of the newest published result.
    published: Option<(String, Option<f64>)>,
    /// Where the interval of the published result counts from (Unix seconds): the creation of
    /// a task this loop followed, else the result's finish.
    published_since: Option<f64>,
    /// Whether the last cycle ended with a task this loop created succeeding.
    clean: bool,
    /// Cycles since the last list call.
    unlisted: u32,
    /// Whether DCS said the analysis is unsupported.
    unsupported: bool,
    consecutive_failures: u64,
    created: VecDeque<String>,
}

/// What came of following a task.
enum Outcome {
    Success(TaskRecord),
    Failed(String),
    TimedOut,
    Cancelled,
}

/// What the list call found.
#[derive(Default)]
struct Survey {
    /// The newest waiting or running task.
    active: Option<(String, TaskStatus, Option<f64>)>,
}

impl<C: AnalysisSource> AnalysisLoop<C> {
    pub fn new(
        shared: Shared<C>,
        instance_id: String,
        analysis: Analysis,
        settings: AnalysisSettings,
        seed: Option<u64>,
    ) -> Self {
        let rng = match seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_entropy(),
        };
        AnalysisLoop {
            shared,
            instance_id,
            analysis,
            settings,
            rng,
            expected: None,
            published: None,
            published_since: None,
            clean: false,
            unlisted: 0,
            unsupported: false,
            consecutive_failures: 0,
            created: VecDeque::new(),
        }
    }

    /// Runs until `cancel` fires. Requests in flight at that moment are allowed to finish; no
    /// new one starts. Takes the loop boxed, so that its task holds a pointer to it rather
    /// than a copy.
    pub async fn run(mut self: Box<Self>, cancel: CancellationToken) {
        if self.settings.mode == Mode::Off {
            return;
        }
        // The steps are boxed so that a sleeping loop's task holds only the loop's own state
        // (see `call`).
        let mut wait = Box::pin(self.startup(&cancel)).await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match self.settings.mode {
                Mode::Trigger => Box::pin(self.trigger_cycle(&cancel)).await,
                Mode::Observe => Box::pin(self.observe_cycle()).await,
                Mode::Off => return,
            };
            if cancel.is_cancelled() {
                return;
            }
        }
    }

    /// Publishes what DCS already has before anything else, adopts a running task, and says
    /// how long to wait before the first regular cycle.
    async fn startup(&mut self, cancel: &CancellationToken) -> Duration {
        let survey = match self.survey().await {
            Ok(s) => s,
            Err(e) => return self.fail(e.failure_reason(), &e.to_string()),
        };
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

    /// Time left until the newest result is one interval old (zero when there is none).
    fn until_due(&self) -> Duration {
        match self.published_since {
            Some(f) => {
                let age = (self.shared.clock.now_unix() - f).max(0.0);
                self.settings
                    .interval
                    .saturating_sub(Duration::from_secs_f64(age))
            }
            None => Duration::ZERO,
        }
    }

    async fn trigger_cycle(&mut self, cancel: &CancellationToken) -> Duration {
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
        match self
            .call(|c, id, a| async move { c.create_task(id, a).await })
            .await
        {
            Ok(task) => {
                self.remember_created(&task.id);
                self.shared
                    .store
                    .count_task(&self.instance_id, self.analysis, TaskOrigin::Created);
                if self.unsupported {
                    self.unsupported = false;
                    self.shared
                        .store
                        .set_supported(&self.instance_id, self.analysis, true);
                }
                info!(task_id = %task.id, "created analysis task");
                let created = task.created_at.as_deref().and_then(timestamp::parse);
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
                        &format!("{op}: DCS says a task is running but lists none"),
                    ),
                    Err(e) => self.fail(e.failure_reason(), &e.to_string()),
                }
            }
            Err(e) if e.is_unsupported() => {
                self.unsupported = true;
                self.shared
                    .store
                    .set_supported(&self.instance_id, self.analysis, false);
                self.fail(FailureReason::Unsupported, &e.to_string());
                let recheck = backoff::UNSUPPORTED_RECHECK.max(self.settings.interval);
                warn!(recheck_in = %crate::config::duration::format(recheck),
                    "instance does not support this analysis; not asking again until the re-check");
                recheck
            }
            Err(e) => self.fail(e.failure_reason(), &e.to_string()),
        }
    }

    async fn observe_cycle(&mut self) -> Duration {
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
            Err(e) => {
                let wait = self.fail(e.failure_reason(), &e.to_string());
                wait.min(self.settings.interval)
            }
        }
    }

    /// Lists the tasks; publishes the newest successful record if it is newer than the
    /// published one; returns the newest active task.
    async fn survey(&mut self) -> Result<Survey, C::Error> {
        let query = TaskListQuery {
            offset: None,
            limit: Some(LIST_LIMIT),
            status: None,
        };
        let list = self
            .call(|c, id, a| {
                let query = query.clone();
                async move { c.list_tasks(id, a, &query).await }
            })
            .await?;
        let when = |r: &dcs::TaskSummary| {
            let f = r.finished_at.as_deref().and_then(timestamp::parse);
            f.or_else(|| r.created_at.as_deref().and_then(timestamp::parse))
        };
        let newest_success = list
            .records
            .iter()
            .filter(|r| r.status == TaskStatus::Success)
            .max_by(|a, b| {
                when(a)
                    .partial_cmp(&when(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let active = list
            .records
            .iter()
            .filter(|r| r.status.is_active())
            .max_by(|a, b| {
                let c = |r: &dcs::TaskSummary| r.created_at.as_deref().and_then(timestamp::parse);
                c(a).partial_cmp(&c(b)).unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|r| {
                let created = r.created_at.as_deref().and_then(timestamp::parse);
                (r.id.clone(), r.status.clone(), created)
            });
        if let Some(rec) = newest_success {
            let finished = when(rec);
            if self.is_newer(&rec.id, finished) {
                let task_id = rec.id.clone();
                let task = self
                    .call(|c, id, a| {
                        let task_id = task_id.clone();
                        async move { c.show_task(id, a, &task_id).await }
                    })
                    .await?;
                if task.status == TaskStatus::Success {
                    let origin = if self.created.contains(&task.id) {
                        None
                    } else {
                        Some(TaskOrigin::Adopted)
                    };
                    self.publish(&task, origin);
                }
            }
        }
        Ok(Survey { active })
    }

    fn is_newer(&self, id: &str, finished: Option<f64>) -> bool {
        match &self.published {
            None => true,
            Some((pid, _)) if pid == id => false,
            Some((_, Some(pf))) => finished.is_some_and(|f| f > *pf),
            Some((_, None)) => true,
        }
    }

    fn publish(&mut self, task: &TaskRecord, origin: Option<TaskOrigin>) {
        let store = &self.shared.store;
        let finished = task.finished_at.as_deref().and_then(timestamp::parse);
        let created = task.created_at.as_deref().and_then(timestamp::parse);
        if let (Some(c), Some(f)) = (created, finished) {
            if f >= c {
                self.expected = Some(Duration::from_secs_f64(f - c));
            }
        }
        if let Some(o) = origin {
            store.count_task(&self.instance_id, self.analysis, o);
        }
        if store.publish(&self.instance_id, self.analysis, task) {
            info!(task_id = %task.id, keys = task.key_count(), "published analysis result");
        }
        self.published = Some((task.id.clone(), finished));
        self.published_since = if self.created.contains(&task.id) {
            created.or(finished)
        } else {
            finished
        };
        self.consecutive_failures = 0;
        if self.unsupported {
            self.unsupported = false;
            store.set_supported(&self.instance_id, self.analysis, true);
        }
    }

    fn remember_created(&mut self, id: &str) {
        if self.created.len() == REMEMBERED_IDS {
            self.created.pop_front();
        }
        self.created.push_back(id.to_owned());
    }

    /// Follows a task to its end and publishes it; returns the wait before the next cycle.
    async fn follow_and_publish(
        &mut self,
        task_id: String,
        status: TaskStatus,
        created_unix: Option<f64>,
        origin: TaskOrigin,
        cancel: &CancellationToken,
    ) -> Duration {
        // A task this loop created or adopted before (followed again after a failed poll or a
        // timeout) is not a new adoption.
        if origin == TaskOrigin::Adopted && !self.created.contains(&task_id) {
            self.shared
                .store
                .count_task(&self.instance_id, self.analysis, TaskOrigin::Adopted);
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
            Ok(Outcome::TimedOut) => {
                self.fail(
                    FailureReason::Timeout,
                    &format!(
                        "task {task_id} still unfinished after the {} timeout",
                        crate::config::duration::format(self.settings.timeout)
                    ),
                );
                // Asking again soon cannot make a slow or stuck task finish sooner.
                self.settings.interval
            }
            Ok(Outcome::Cancelled) => Duration::ZERO,
            Err(e) => self.fail(e.failure_reason(), &e.to_string()),
        }
    }

    async fn follow(
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
            let Some(left) = self
                .settings
                .timeout
                .checked_sub(age)
                .filter(|d| !d.is_zero())
            else {
                return Ok(Outcome::TimedOut);
            };
            let wait = backoff::next_poll(age, expected, left);
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Outcome::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
            if started.elapsed() >= self.settings.timeout {
                return Ok(Outcome::TimedOut);
            }
            let task = self
                .call(|c, id, a| async move { c.show_task(id, a, task_id).await })
                .await?;
            match &task.status {
                TaskStatus::Success => return Ok(Outcome::Success(task)),
                TaskStatus::Failed => return Ok(Outcome::Failed(task.status.to_string())),
                // Waiting, running, or a status this version does not know: keep polling
                // until the timeout decides.
                other => status = other.clone(),
            }
        }
    }

    /// Counts a failed attempt, logs it once, and returns the backoff before the next one.
    fn fail(&mut self, reason: FailureReason, message: &str) -> Duration {
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

    /// Runs one API call under the global concurrency limit.
    async fn call<'a, T, F, Fut>(&'a self, f: F) -> Result<T, C::Error>
    where
        F: FnOnce(&'a C, &'a str, Analysis) -> Fut,
        Fut: Future<Output = Result<T, C::Error>> + 'a,
    {
        // The semaphore is never closed, so acquiring cannot fail; fall through if it ever is.
        let _permit = self.shared.limiter.acquire().await.ok();
        // Boxed: a request future is large, and is only alive during the call. Inline, it
        // would size every loop's task for it even while the loop sleeps (thousands of loops).
        Box::pin(f(&self.shared.client, &self.instance_id, self.analysis)).await
    }
}
