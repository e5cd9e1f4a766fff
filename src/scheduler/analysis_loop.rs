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
//! console or auto-scan task is adopted rather than doubled. A create whose outcome is unknown
//! (its answer was lost: [`dcs::Error::OutcomeUnknown`]) is never repeated blindly: the loop lists
//! at once and follows the task if DCS has it (counted as adopted), else counts a failure and
//! lists again before its next create. A
//! record that DCS auto-scan or a console run added meanwhile is picked up by the next list, at
//! most `MAX_UNLISTED_CYCLES` cycles later (a fresh result of the loop's own is published in
//! between anyway). The cadence of a result the loop followed counts from the task's creation,
//! so a long task does not push the next one back by its own duration.
//!
//! # DCS dates
//! DCS' clock may run ahead of the exporter's. A task time later than now is never exported
//! nor counted from: it becomes the time the exporter saw it (logged when more than
//! [`FUTURE_TOLERANCE`] ahead). Two DCS dates are compared with each other only while neither
//! was that far ahead; otherwise a successful record that was not successful at the previous
//! list call is the newer one, since it finished after the published result was listed.
//!
//! # Key families
//! The key family analysis (the DCS offline key analysis of a backup, see [`super::offline`]) runs
//! through the same loop with its own list, show and create steps: one task covers one shard,
//! so the cadence counts per shard (the shard whose result is oldest is due next), the status
//! comes from the list only, and DCS.4231 on create leads to adoption like DCS.4918.

use std::collections::{HashSet, VecDeque};
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
use super::metrics::SchedulerMetrics;
use super::offline::{Created, ShardSeen};
use super::source::{AnalysisSource, SourceError};
use crate::config::{AnalysisSettings, Mode};
use crate::dcs::{
    self, timestamp, Analysis, OfflineTaskDetails, TaskList, TaskListQuery, TaskRecord, TaskStatus,
};
use crate::metrics::store::{FailureReason, RunningTask, Store, TaskOrigin};

/// Records asked for per list call: DCS keeps at most 100 per instance and kind, so one page
/// sees them all whatever their (undocumented) order.
pub const LIST_LIMIT: u32 = dcs::DCS_KEPT_RECORDS;
/// Expected task duration before one has been observed.
pub const FIRST_EXPECTED: Duration = Duration::from_secs(5);
/// Cycles in a row that may create a task without listing first (see the module docs).
pub const MAX_UNLISTED_CYCLES: u32 = 3;
/// How many created task ids are remembered to tell created from adopted records.
const REMEMBERED_IDS: usize = 64;
/// Seconds a DCS timestamp may lie ahead of the exporter's clock before the record is
/// distrusted: logged when published, and ranked below every dated record when listed.
pub const FUTURE_TOLERANCE: f64 = 60.0;

/// What the loop shares with every other loop.
#[derive(Clone)]
pub struct Shared<C> {
    pub client: Arc<C>,
    pub store: Arc<Store>,
    /// Global limit on API requests in flight, taken per attempt (see [`dcs::limit`]).
    pub limiter: Arc<Semaphore>,
    pub clock: Clock,
    /// Upper bound of the start-up jitter.
    pub start_jitter: Duration,
    /// Where future-dated records are counted; `None` counts nothing.
    pub metrics: Option<SchedulerMetrics>,
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
    /// The newest published result.
    published: Option<Published>,
    /// Ids of the successful records of the last list call (`None` before the first).
    listed_successes: Option<HashSet<String>>,
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
    /// The loop's stop token (set by `run`): once it fires, its calls send nothing more.
    stop: CancellationToken,
    created: VecDeque<String>,
    /// Key families: let DCS take a new backup for every task (see [`offline`]).
    fresh_backup: bool,
    /// Key families: the shards of the instance and their nodes, from the last node listing.
    topology: super::offline::Topology,
    /// Key families: the shard of the task this loop created last.
    task_shard: Option<(String, String)>,
    /// Key families: the result of the task last shown successful, until it is published.
    details: Option<OfflineTaskDetails>,
}

/// What came of following a task.
enum Outcome {
    Success(TaskRecord),
    Failed(String),
    TimedOut,
    Cancelled,
}

/// The newest published result, as DCS dated it.
#[derive(Clone)]
struct Published {
    id: String,
    /// Finish (else creation) time as DCS reported it, Unix seconds.
    time: Option<f64>,
    /// Whether that time was known and not ahead of the exporter's clock when published.
    trusted: bool,
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
            listed_successes: None,
            published_since: None,
            clean: false,
            unlisted: 0,
            unsupported: false,
            consecutive_failures: 0,
            stop: CancellationToken::new(),
            created: VecDeque::new(),
            fresh_backup: false,
            topology: super::offline::Topology::default(),
            task_shard: None,
            details: None,
        }
    }

    /// Key families: omit `backup_id`, so that DCS takes a new backup for every task.
    pub fn with_fresh_backup(mut self, fresh_backup: bool) -> Self {
        self.fresh_backup = fresh_backup;
        self
    }

    /// Runs until `cancel` fires. Requests in flight at that moment are allowed to finish; no
    /// new one starts. Takes the loop boxed, so that its task holds a pointer to it rather
    /// than a copy.
    pub async fn run(mut self: Box<Self>, cancel: CancellationToken) {
        if self.settings.mode == Mode::Off {
            return;
        }
        self.stop = cancel.clone();
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
    fn until_due(&self) -> Duration {
        if self.analysis == Analysis::Keyfamily && !self.topology.nodes.is_empty() {
            let seen = self.shard_seen();
            let oldest = self
                .topology
                .shards()
                .iter()
                .map(|s| seen.get(s).and_then(|x| x.finished_at))
                .min_by(|a, b| match (a, b) {
                    (None, _) => std::cmp::Ordering::Less,
                    (_, None) => std::cmp::Ordering::Greater,
                    (Some(a), Some(b)) => a.total_cmp(b),
                })
                .flatten();
            return match oldest {
                Some(f) => {
                    let age = (self.shared.clock.now_unix() - f).max(0.0);
                    self.settings
                        .interval
                        .saturating_sub(Duration::from_secs_f64(age))
                }
                None => Duration::ZERO,
            };
        }
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
                if self.unsupported {
                    self.unsupported = false;
                    self.shared
                        .store
                        .set_supported(&self.instance_id, self.analysis, true);
                }
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
                        &format!("{op}: DCS says a task is running but lists none"),
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
            Err(e) if e.is_unsupported() => {
                // Not a failure streak: the store counts the reason but keeps
                // consecutive_failures at 0, so the daily re-check does not alert as failing.
                self.unsupported = true;
                self.consecutive_failures = 0;
                self.shared.store.record_failure(
                    &self.instance_id,
                    self.analysis,
                    FailureReason::Unsupported,
                    e.to_string(),
                    self.shared.clock.now_unix(),
                );
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
        let list = self.list_any(query).await?;
        let when = |r: &dcs::TaskSummary| {
            let f = r.finished_at.as_deref().and_then(timestamp::parse);
            f.or_else(|| r.created_at.as_deref().and_then(timestamp::parse))
        };
        // A record dated in the future ranks below every other: it must not hide newer ones.
        let rank = |r: &dcs::TaskSummary| {
            let t = when(r);
            (self.trusted(t), t)
        };
        let newest_success = list
            .records
            .iter()
            .filter(|r| r.status == TaskStatus::Success)
            .filter(|r| {
                let t = when(r);
                let newly = self
                    .listed_successes
                    .as_ref()
                    .is_some_and(|s| !s.contains(&r.id));
                self.is_newer(&r.id, t, self.trusted(t), newly)
            })
            .max_by(|a, b| {
                rank(a)
                    .partial_cmp(&rank(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let successes: HashSet<String> = list
            .records
            .iter()
            .filter(|r| r.status == TaskStatus::Success)
            .map(|r| r.id.clone())
            .collect();
        let active = list
            .records
            .iter()
            .filter(|r| r.status.is_active())
            .max_by(|a, b| {
                let c = |r: &dcs::TaskSummary| self.rank_time(r.created_at.as_deref());
                c(a).partial_cmp(&c(b)).unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|r| {
                let created = self.time_of(r.created_at.as_deref());
                (r.id.clone(), r.status.clone(), created)
            });
        if let Some(rec) = newest_success {
            let task_id = rec.id.clone();
            let task = self
                .show_any(&task_id)
                .await
                .and_then(|t| self.complete(t))?;
            if task.status == TaskStatus::Success {
                let origin = if self.created.contains(&task.id) {
                    None
                } else {
                    Some(TaskOrigin::Adopted)
                };
                self.publish(&task, origin);
            }
        }
        self.listed_successes = Some(successes);
        Ok(Survey { active })
    }

    /// Whether a successful record (dated `time` by DCS, `trusted` if that is not ahead of
    /// our clock; `newly` if it was not successful at the previous list call) is newer than
    /// the published result. Between two trusted times, the later one is newer. When either
    /// time is in the future or unknown, DCS' dates cannot be compared with ours: a record
    /// that succeeded since the previous list call finished after the published result was
    /// listed, so it is newer; any other is not.
    fn is_newer(&self, id: &str, time: Option<f64>, trusted: bool, newly: bool) -> bool {
        match &self.published {
            None => true,
            Some(p) if p.id == id => false,
            Some(p) => match (time, p.time) {
                (Some(t), Some(pt)) if trusted && p.trusted => t > pt,
                _ => newly,
            },
        }
    }

    /// Whether a DCS time is known and not more than [`FUTURE_TOLERANCE`] ahead of now.
    fn trusted(&self, t: Option<f64>) -> bool {
        t.is_some_and(|t| t <= self.shared.clock.now_unix() + FUTURE_TOLERANCE)
    }

    /// A DCS timestamp in Unix seconds, never later than now: DCS' clock may run ahead of
    /// ours, and a time in the future would be exported as such and hold back every newer
    /// result and the next task until it passed.
    fn time_of(&self, s: Option<&str>) -> Option<f64> {
        let t = s.and_then(timestamp::parse)?;
        Some(t.min(self.shared.clock.now_unix()))
    }

    /// The time an active record ranks by: [`time_of`](Self::time_of), but unknown (ranking
    /// below every dated record) when it lies more than [`FUTURE_TOLERANCE`] ahead.
    fn rank_time(&self, s: Option<&str>) -> Option<f64> {
        let t = s.and_then(timestamp::parse)?;
        let now = self.shared.clock.now_unix();
        (t <= now + FUTURE_TOLERANCE).then_some(t.min(now))
    }

    /// The record as it may be exported: every timestamp later than now replaced by now (the
    /// time it was seen), logged when one was further ahead than [`FUTURE_TOLERANCE`]; and a
    /// missing or unreadable `finished_at` of a completed record replaced by now too, logged,
    /// so that the last success time always exists and a staleness alert can fire.
    fn without_future_times<'t>(&self, task: &'t TaskRecord) -> std::borrow::Cow<'t, TaskRecord> {
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

    fn publish(&mut self, task: &TaskRecord, origin: Option<TaskOrigin>) {
        // As DCS dated it: durations and comparisons between DCS times hold whatever its clock.
        let raw = |s: &Option<String>| s.as_deref().and_then(timestamp::parse);
        let (raw_created, raw_finished) = (raw(&task.created_at), raw(&task.finished_at));
        if let (Some(c), Some(f)) = (raw_created, raw_finished) {
            if f >= c {
                self.expected = Some(Duration::from_secs_f64(f - c));
            }
        }
        let dcs_time = raw_finished.or(raw_created);
        let published = Published {
            id: task.id.clone(),
            time: dcs_time,
            trusted: self.trusted(dcs_time),
        };
        let task = &*self.without_future_times(task);
        let store = &self.shared.store;
        let finished = task.finished_at.as_deref().and_then(timestamp::parse);
        let created = task.created_at.as_deref().and_then(timestamp::parse);
        if let Some(o) = origin {
            store.count_task(&self.instance_id, self.analysis, &task.id, o);
        }
        if self.analysis == Analysis::Keyfamily {
            match self.details.take().filter(|d| d.id == task.id) {
                Some(d) => {
                    // File the result under the shard its node belongs to (or the one the task
                    // was created for), so that the cadence and the listing agree with it.
                    let shard = match &self.task_shard {
                        Some((id, s)) if *id == task.id && d.node_id.is_none() => s.clone(),
                        _ => self.topology.shard_of(&d),
                    };
                    let fams = crate::metrics::families::from_offline(&d, &shard, finished);
                    let n = fams.families.len();
                    let (id, a) = (&self.instance_id, self.analysis);
                    if store.publish_families(id, a, task, shard.clone(), fams) {
                        info!(task_id = %task.id, shard = %shard, families = n,
                            "published key family result");
                    }
                }
                None => warn!(task_id = %task.id, "no result fetched for the task"),
            }
        } else if store.publish(&self.instance_id, self.analysis, task) {
            info!(task_id = %task.id, keys = task.key_count(), "published analysis result");
        }
        self.published = Some(published);
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
    fn complete(&self, task: TaskRecord) -> Result<TaskRecord, C::Error> {
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

    /// Key families: publishes the newest successful existing result of each shard that has
    /// none yet, newest first, with at most a couple of show calls beyond one per shard (list
    /// records do not tell their shard).
    async fn ingest_shards(&mut self) -> Result<(), C::Error> {
        let query = TaskListQuery {
            offset: None,
            limit: Some(LIST_LIMIT),
            status: Some(TaskStatus::Success),
        };
        let list = self.list_any(query).await?;
        let finished = |r: &dcs::TaskSummary| {
            r.finished_at
                .as_deref()
                .and_then(timestamp::parse)
                .unwrap_or(f64::MIN)
        };
        let mut successes: Vec<_> = list
            .records
            .into_iter()
            .filter(|r| r.status == TaskStatus::Success)
            .collect();
        successes.sort_by(|a, b| finished(b).total_cmp(&finished(a)));
        let newest = self.published.clone();
        let mut budget = self.topology.nodes.len() + 2;
        for rec in successes {
            let seen = self.shard_seen();
            let shards = self.topology.shards();
            if budget == 0 || shards.iter().all(|s| seen.contains_key(s)) {
                break;
            }
            let already = self
                .shared
                .store
                .result(&self.instance_id, self.analysis)
                .is_some_and(|r| r.shards.values().any(|s| s.task_id == rec.id));
            if already {
                continue;
            }
            budget -= 1;
            let task = self.show_any(&rec.id).await?;
            let covered = self
                .details
                .as_ref()
                .is_some_and(|d| seen.contains_key(&self.topology.shard_of(d)));
            if task.status != TaskStatus::Success || covered {
                self.details = None;
                continue;
            }
            self.publish(&task, Some(TaskOrigin::Adopted));
        }
        // The newest result stays the reference for "newer" records.
        if newest.is_some() {
            self.published = newest;
        }
        Ok(())
    }

    /// What the published key family result holds per shard.
    fn shard_seen(&self) -> std::collections::BTreeMap<String, ShardSeen> {
        self.shared
            .store
            .result(&self.instance_id, self.analysis)
            .map(|r| {
                r.shards
                    .iter()
                    .map(|(k, v)| {
                        let seen = ShardSeen {
                            finished_at: v.finished_at,
                            backup_id: v.backup_id.clone(),
                        };
                        (k.clone(), seen)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The list call of this analysis.
    async fn list_any(&self, query: TaskListQuery) -> Result<TaskList, C::Error> {
        if self.analysis == Analysis::Keyfamily {
            self.call(|c, id, _| async move { c.keyfamily_list(id, &query).await })
                .await
        } else {
            self.call(|c, id, a| async move { c.list_tasks(id, a, &query).await })
                .await
        }
    }

    /// The task's record. Key families: status from the list, and the result, kept for
    /// [`publish`](Self::publish), once it succeeded.
    async fn show_any(&mut self, task_id: &str) -> Result<TaskRecord, C::Error> {
        if self.analysis == Analysis::Keyfamily {
            let (record, details) = self
                .call(|c, id, _| async move { c.keyfamily_show(id, task_id).await })
                .await?;
            if details.is_some() {
                self.details = details;
            }
            Ok(record)
        } else {
            self.call(|c, id, a| async move { c.show_task(id, a, task_id).await })
                .await
        }
    }

    /// Creates a task; `None` when there is nothing new to analyse (key families only).
    async fn create_any(&mut self) -> Result<Option<TaskRecord>, C::Error> {
        if self.analysis != Analysis::Keyfamily {
            return self
                .call(|c, id, a| async move { c.create_task(id, a).await })
                .await
                .map(Some);
        }
        let seen = self.shard_seen();
        let now = self.shared.clock.now_unix();
        // A shard is due a little before its interval ends, so that the whole round of shards
        // fits in one interval.
        let due_before = now - self.settings.interval.as_secs_f64() * 0.9;
        let fresh = self.fresh_backup;
        let mut topology = std::mem::take(&mut self.topology);
        let created = self
            .call(|c, id, _| {
                let (seen, topology) = (&seen, &mut topology);
                async move {
                    c.keyfamily_create(id, fresh, seen, due_before, now, topology)
                        .await
                }
            })
            .await;
        self.topology = topology;
        self.shared
            .store
            .retain_shards(&self.instance_id, self.analysis, &self.topology.shards());
        match created? {
            Created::Task { record, shard } => {
                debug!(task_id = %record.id, shard = %shard, "analysing the backup of a shard");
                self.task_shard = Some((record.id.clone(), shard));
                Ok(Some(*record))
            }
            Created::UpToDate => Ok(None),
        }
    }

    /// Counts a failed attempt, logs it once, and returns the backoff before the next one.
    fn fail(&mut self, reason: FailureReason, message: &str) -> Duration {
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

    /// Runs one call under the global concurrency limit, which the DCS client's attempts take
    /// one permit of at a time.
    async fn call<'a, T, F, Fut>(&'a self, f: F) -> Result<T, C::Error>
    where
        F: FnOnce(&'a C, &'a str, Analysis) -> Fut,
        Fut: Future<Output = Result<T, C::Error>> + 'a,
    {
        // Boxed: a request future is large, and is only alive during the call. Inline, it
        // would size every loop's task for it even while the loop sleeps (thousands of loops).
        // The client takes a permit of the limiter per attempt (see `dcs::limit`), and sends
        // no attempt once the loop is stopped.
        let call = f(&self.shared.client, &self.instance_id, self.analysis);
        let (limiter, stop) = (self.shared.limiter.clone(), self.stop.clone());
        Box::pin(dcs::limit::scope_until(limiter, stop, call)).await
    }
}
