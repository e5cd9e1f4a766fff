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
//! # Layout
//! - `cycle`: start-up, the `trigger` and `observe` cycles, and when the next task is due.
//! - `survey`: the list call: the newest successful record and the task running now.
//! - `follow`: following a task to its end, within the analysis' timeout.
//! - `publish`: publishing a result and remembering the tasks this loop created.
//! - `dates`: DCS dates, which may lie ahead of the exporter's clock.
//! - `keyfamily`: the steps of the key family analysis (one shard per task).
//! - `calls`: the source's list, show and create calls under the global concurrency limit.
//! - `failure`: counting a failed attempt and the wait before the next one.

mod calls;
mod cycle;
mod dates;
mod failure;
mod follow;
mod keyfamily;
mod publish;
mod survey;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::clock::Clock;
use super::metrics::SchedulerMetrics;
use super::source::AnalysisSource;
use crate::config::{AnalysisSettings, Mode};
use crate::dcs::{self, Analysis, OfflineTaskDetails, TaskRecord, TaskStatus};
use crate::metrics::store::Store;

/// Records asked for per list call: DCS keeps at most 100 per instance and kind, so one page
/// sees them all whatever their (undocumented) order.
pub const LIST_LIMIT: u32 = dcs::DCS_KEPT_RECORDS;
/// Expected task duration before one has been observed.
pub const FIRST_EXPECTED: Duration = Duration::from_secs(5);
/// Cycles in a row that may create a task without listing first (see `cycle`: API economy).
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
    /// Upper bound of the start-up jitter of this loop (see [`super::backoff::start_window`]).
    pub start_jitter: Duration,
    /// Where future-dated records are counted; `None` counts nothing.
    pub metrics: Option<SchedulerMetrics>,
    /// Changes on every config reload: an unsupported analysis then asks again at once.
    pub reloads: watch::Receiver<u64>,
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
    /// Whether the source said the analysis is unsupported.
    unsupported: bool,
    consecutive_failures: u64,
    /// The loop's stop token (set by `run`): once it fires, its calls send nothing more.
    stop: CancellationToken,
    created: VecDeque<String>,
    /// Key families: let DCS take a new backup for every task (see [`crate::scheduler::offline`]).
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
    /// Still unfinished at the time limit (given).
    TimedOut(Duration),
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
        let mut reloads = self.shared.reloads.clone();
        reloads.borrow_and_update();
        let mut wait = Box::pin(self.startup(&cancel)).await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                Ok(()) = reloads.changed(), if self.unsupported => {
                    debug!("config reloaded: asking again whether the instance supports the analysis");
                }
            }
            // A reload from now on, while this cycle's answer may already be on its way,
            // asks again after it.
            reloads.borrow_and_update();
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
}
