//! The scheduler: one supervised loop per instance and analysis, plus one per instance that
//! keeps its details (`dcs_instance_info`) current unless discovery already lists them.
//!
//! # Layout
//! - [`source`]: the seam the loop is written against ([`AnalysisSource`]): DCS tasks, or the
//!   exporter's own scans of Redis and Valkey targets ([`crate::native`]).
//! - [`analysis_loop`]: the loop that creates or adopts tasks, polls them and publishes results.
//! - [`instance_info`]: the loop that keeps an instance's details current.
//! - [`backoff`]: failure backoff, start-up jitter and the polling plan, as pure functions.
//! - [`clock`]: wall-clock time that tests can drive with tokio's paused clock.
//! - [`offline`]: the key family analysis (DCS offline key analysis of a backup) in the shape
//!   the analysis loop follows.
//! - [`metrics`]: the scheduler's own counter (task records dated in the future).
//!
//! Every loop runs under the app's [`Supervisor`] and a child of the root
//! [`CancellationToken`]: a loop that panics is logged by name and fails the exporter (readiness
//! and exit code) instead of silently taking its instance's analysis with it. An analysis loop
//! may end by itself (a `mode: off` analysis has nothing to do), so it is a plain supervised
//! task; an instance details loop runs until cancelled, so ending earlier is a failure too.
//!
//! # Applying a plan
//! [`Scheduler::apply_plan`] starts loops for new instances and analyses, restarts only the
//! loops whose own settings or source changed (a reload that changes the hot key settings of
//! an instance leaves its big key loop alone), and stops (and forgets the series of) those no
//! longer configured; it says which in [`Changes`]. A loop stopped or restarted tells its
//! source ([`AnalysisSource::stop_tasks`]), so that a scan the exporter runs itself does not
//! outlive the settings it was started with. The loops started together spread their first
//! tasks over a window that grows with their number (see [`backoff::start_window`]): one
//! instance starts at once, a fleet is spread over `scheduler.start_jitter`.
//! [`Scheduler::recheck_unsupported`] (on every config reload) makes the analyses found
//! unsupported ask again at once.

pub mod analysis_loop;
pub mod backoff;
pub mod clock;
pub mod instance_info;
pub mod metrics;
pub mod offline;
pub mod source;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::config::{AnalysisSettings, InstanceConfig, Mode};
use crate::dcs::{Analysis, DcsApi, InstanceInfo};
use crate::metrics::store::{AnalysisSpec, InstanceSpec, Store};
use crate::supervisor::Supervisor;
pub use analysis_loop::{AnalysisLoop, Shared};
pub use clock::Clock;
use instance_info::info_loop;
pub use instance_info::{INFO_REFRESH, INFO_RETRY};
pub use metrics::SchedulerMetrics;
pub use source::{AnalysisSource, SourceError};

/// The instances of one cloud and the client that reaches them.
pub struct CloudPlan<C> {
    pub name: String,
    pub client: Arc<C>,
    pub instances: Vec<InstanceConfig>,
    /// Details already known from ListInstances (discovery), by instance id. They become the
    /// instances' `dcs_instance_info`, and those instances get no ShowInstance loop.
    pub known_details: HashMap<String, InstanceInfo>,
}

/// A Redis or Valkey target the exporter analyses itself (`N`: `native::NativeTarget`; the
/// scheduler only needs it to be an [`AnalysisSource`], so it does not depend on `native`).
pub struct NativePlan<N> {
    pub source: Arc<N>,
    /// Its id, name and analysis settings (`lfu_log_factor` for the estimated accesses).
    pub instance: InstanceConfig,
    /// Analyses only such targets have, with their settings (hot slots).
    pub extra: Vec<(Analysis, AnalysisSettings)>,
}

/// Everything the scheduler runs: DCS instances per cloud, and native targets.
pub struct Plan<C, N = C> {
    pub clouds: Vec<CloudPlan<C>>,
    pub native: Vec<NativePlan<N>>,
}

/// Where one loop's tasks come from.
enum SourceRef<C, N> {
    Dcs(Arc<C>),
    Native(Arc<N>),
}

impl<C, N> Clone for SourceRef<C, N> {
    fn clone(&self) -> Self {
        match self {
            SourceRef::Dcs(c) => SourceRef::Dcs(c.clone()),
            SourceRef::Native(n) => SourceRef::Native(n.clone()),
        }
    }
}

impl<C: AnalysisSource, N: AnalysisSource> SourceRef<C, N> {
    fn same(&self, other: &SourceRef<C, N>) -> bool {
        match (self, other) {
            (SourceRef::Dcs(a), SourceRef::Dcs(b)) => Arc::ptr_eq(a, b),
            (SourceRef::Native(a), SourceRef::Native(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn stop_tasks(&self, instance_id: &str, analysis: Analysis) {
        match self {
            SourceRef::Dcs(c) => c.stop_tasks(instance_id, analysis),
            SourceRef::Native(n) => n.stop_tasks(instance_id, analysis),
        }
    }
}

/// The analyses of an instance that are not `off`, with their settings.
fn enabled(inst: &InstanceConfig) -> impl Iterator<Item = (Analysis, AnalysisSettings)> + '_ {
    Analysis::EVERY
        .into_iter()
        .map(|a| (a, *inst.analysis(a)))
        .filter(|(_, s)| s.mode != Mode::Off)
}

/// What the store keeps of an analysis' settings (`dcs_analysis_interval_seconds`, the status
/// page).
fn spec_of(analysis: Analysis, s: &AnalysisSettings) -> AnalysisSpec {
    AnalysisSpec {
        analysis,
        top_n: s.top_n,
        mode: s.mode.as_str(),
        interval: s.interval,
    }
}

/// What one loop should run: its source, its settings and (key families) `fresh_backup`.
type Wanted<C, N> = (SourceRef<C, N>, AnalysisSettings, bool);

struct Running<C, N> {
    client: SourceRef<C, N>,
    settings: AnalysisSettings,
    /// Key families: `fresh_backup`.
    fresh_backup: bool,
    token: CancellationToken,
}

struct InfoLoop<C> {
    client: Arc<C>,
    name_configured: Option<String>,
    token: CancellationToken,
}

/// One loop: an instance id and an analysis.
pub type LoopId = (String, Analysis);

/// What [`Scheduler::apply_plan`] changed, loop by loop, each list sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Loops of instances or analyses new to the plan.
    pub started: Vec<LoopId>,
    /// Loops stopped and started again because their settings or their source changed.
    pub restarted: Vec<LoopId>,
    /// Loops no longer in the plan: instance removed, or analysis turned off.
    pub stopped: Vec<LoopId>,
    /// Loops left running as they were.
    pub unchanged: usize,
}

impl Changes {
    /// Loops named in a log line at most, per list.
    pub const NAMED: usize = 20;

    /// The loops of `list` as `id analysis, id analysis`, at most [`Changes::NAMED`] of them
    /// and then how many more; `none` for an empty list.
    pub fn names(list: &[LoopId]) -> impl fmt::Display + '_ {
        struct Names<'a>(&'a [LoopId]);
        impl fmt::Display for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0.is_empty() {
                    return f.write_str("none");
                }
                for (n, (id, analysis)) in self.0.iter().take(Changes::NAMED).enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{id} {analysis}")?;
                }
                match self.0.len().saturating_sub(Changes::NAMED) {
                    0 => Ok(()),
                    more => write!(f, " and {more} more"),
                }
            }
        }
        Names(list)
    }
}

/// Owns every loop; [`apply_plan`](Scheduler::apply_plan) a new plan on start, on reload and
/// on every discovery listing.
pub struct Scheduler<C, N = C> {
    store: Arc<Store>,
    clock: Clock,
    limiter: Arc<Semaphore>,
    /// Calls that may be under way at once, waiting for a permit of `limiter` or using one
    /// (see [`call_slots`]).
    calls: Arc<Semaphore>,
    root: CancellationToken,
    supervisor: Supervisor,
    loops: HashMap<(String, Analysis), Running<C, N>>,
    info: HashMap<String, InfoLoop<C>>,
    /// Seeds the loops' jitter in tests; `None` uses entropy.
    seed: Option<u64>,
    /// `scheduler.start_jitter`: the start-up jitter window of a whole fleet.
    start_jitter: Duration,
    metrics: Option<SchedulerMetrics>,
    /// Bumped on every config reload (see [`recheck_unsupported`](Self::recheck_unsupported)).
    reloads: watch::Sender<u64>,
}

impl<C: DcsApi, N: AnalysisSource> Scheduler<C, N> {
    pub fn new(
        store: Arc<Store>,
        clock: Clock,
        max_concurrent_requests: usize,
        root: CancellationToken,
        supervisor: Supervisor,
    ) -> Self {
        Scheduler {
            store,
            clock,
            limiter: Arc::new(Semaphore::new(max_concurrent_requests.max(1))),
            calls: Arc::new(Semaphore::new(call_slots(max_concurrent_requests))),
            root,
            supervisor,
            loops: HashMap::new(),
            info: HashMap::new(),
            seed: None,
            start_jitter: crate::config::SchedulerSettings::default().start_jitter,
            metrics: None,
            reloads: watch::Sender::new(0),
        }
    }

    /// Counts what the loops started from now on see in `metrics` (future-dated records).
    pub fn set_metrics(&mut self, metrics: SchedulerMetrics) {
        self.metrics = Some(metrics);
    }

    /// Makes jitter deterministic (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets `scheduler.start_jitter`, the start-up jitter window of a whole fleet, for the
    /// loops started from now on (see [`backoff::start_window`]).
    pub fn set_start_jitter(&mut self, max: Duration) {
        self.start_jitter = max;
    }

    /// Changes the global API concurrency limit (on reload). Calls in flight keep their permit.
    pub fn set_max_concurrent_requests(&mut self, n: usize) {
        self.limiter = Arc::new(Semaphore::new(n.max(1)));
        self.calls = Arc::new(Semaphore::new(call_slots(n)));
    }

    /// Number of analysis loops running.
    pub fn loop_count(&self) -> usize {
        self.loops.len()
    }

    /// Makes every analysis found unsupported ask again at once (a config reload: the user may
    /// just have changed the server's policy), instead of at its re-check.
    pub fn recheck_unsupported(&self) {
        self.reloads.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes the running loops match `plan` (DCS instances only).
    pub fn apply(&mut self, plan: Vec<CloudPlan<C>>) -> Changes {
        self.apply_plan(Plan {
            clouds: plan,
            native: Vec::new(),
        })
    }

    /// Makes the running loops match `plan`: DCS instances and native targets alike.
    pub fn apply_plan(&mut self, plan: Plan<C, N>) -> Changes {
        let Plan {
            clouds: plan,
            native,
        } = plan;
        let mut specs = Vec::new();
        let mut wanted: HashMap<(String, Analysis), Wanted<C, N>> = HashMap::new();
        let mut wanted_info: HashMap<String, (Arc<C>, Option<String>)> = HashMap::new();
        let mut known: Vec<&InstanceInfo> = Vec::new();
        for cloud in &plan {
            for inst in &cloud.instances {
                let name = self
                    .store
                    .read(|s| s.instances.get(&inst.id).map(|i| i.name.clone()))
                    .filter(|_| inst.name.is_none())
                    .or_else(|| inst.name.clone())
                    .unwrap_or_else(|| inst.id.clone());
                let mut analyses = Vec::new();
                for (a, s) in enabled(inst) {
                    analyses.push(spec_of(a, &s));
                    let fresh = a == Analysis::Keyfamily && inst.keyfamily.fresh_backup;
                    wanted.insert(
                        (inst.id.clone(), a),
                        (SourceRef::Dcs(cloud.client.clone()), s, fresh),
                    );
                }
                match cloud.known_details.get(&inst.id) {
                    Some(details) => known.push(details),
                    None => {
                        wanted_info
                            .insert(inst.id.clone(), (cloud.client.clone(), inst.name.clone()));
                    }
                }
                specs.push(InstanceSpec {
                    id: inst.id.clone(),
                    name,
                    lfu_log_factor: inst.lfu_log_factor,
                    native: false,
                    analyses,
                });
            }
        }
        for target in &native {
            let inst = &target.instance;
            let mut analyses = Vec::new();
            let extra = target
                .extra
                .iter()
                .copied()
                .filter(|(_, s)| s.mode != Mode::Off);
            for (a, s) in enabled(inst).chain(extra) {
                analyses.push(spec_of(a, &s));
                // A Redis target's key families are published by its big key scan: no loop.
                if a == Analysis::Keyfamily {
                    continue;
                }
                wanted.insert(
                    (inst.id.clone(), a),
                    (SourceRef::Native(target.source.clone()), s, false),
                );
            }
            specs.push(InstanceSpec {
                id: inst.id.clone(),
                name: inst.name.clone().unwrap_or_else(|| inst.id.clone()),
                lfu_log_factor: inst.lfu_log_factor,
                native: true,
                analyses,
            });
        }

        // Stop what is gone or changed; its source stops what it runs for it.
        let mut changes = Changes::default();
        self.loops.retain(|key, running| {
            let want = wanted.get(key);
            let keep = want.is_some_and(|(client, settings, fresh)| {
                client.same(&running.client)
                    && *settings == running.settings
                    && *fresh == running.fresh_backup
            });
            if keep {
                changes.unchanged += 1;
                return true;
            }
            running.token.cancel();
            running.client.stop_tasks(&key.0, key.1);
            match want {
                Some(_) => changes.restarted.push(key.clone()),
                None => changes.stopped.push(key.clone()),
            }
            false
        });
        self.info.retain(|id, l| {
            let keep = wanted_info.get(id).is_some_and(|(client, name)| {
                Arc::ptr_eq(client, &l.client) && *name == l.name_configured
            });
            if !keep {
                l.token.cancel();
            }
            keep
        });
        self.store.configure(&specs);
        self.store.set_instance_infos(known);

        // Start what is new, spread over a window that grows with the instances starting now.
        let starting: BTreeSet<&str> = wanted
            .keys()
            .filter(|key| !self.loops.contains_key(*key))
            .map(|(id, _)| id.as_str())
            .collect();
        let window = backoff::start_window(starting.len(), self.start_jitter);
        let restarted: HashSet<LoopId> = changes.restarted.iter().cloned().collect();
        for ((id, analysis), (client, settings, fresh_backup)) in wanted {
            let key = (id.clone(), analysis);
            if self.loops.contains_key(&key) {
                continue;
            }
            if !restarted.contains(&key) {
                changes.started.push(key);
            }
            let token = self.root.child_token();
            let seed = self.seed.map(|s| s ^ hash(&id) ^ analysis as u64);
            let span = info_span!("analysis", instance_id = %id, analysis = %analysis);
            let task = format!("analysis loop {id} {analysis}");
            match &client {
                SourceRef::Dcs(c) => {
                    let lp = AnalysisLoop::new(
                        self.shared(c.clone(), window),
                        id.clone(),
                        analysis,
                        settings,
                        seed,
                    )
                    .with_fresh_backup(fresh_backup);
                    self.supervisor
                        .spawn(task, Box::new(lp).run(token.clone()).instrument(span));
                }
                SourceRef::Native(n) => {
                    let lp = AnalysisLoop::new(
                        self.shared(n.clone(), window),
                        id.clone(),
                        analysis,
                        settings,
                        seed,
                    )
                    .with_fresh_backup(fresh_backup);
                    self.supervisor
                        .spawn(task, Box::new(lp).run(token.clone()).instrument(span));
                }
            }
            self.loops.insert(
                (id, analysis),
                Running {
                    client,
                    settings,
                    fresh_backup,
                    token,
                },
            );
        }
        for (id, (client, name)) in wanted_info {
            if self.info.contains_key(&id) {
                continue;
            }
            let token = self.root.child_token();
            let span = info_span!("instance", instance_id = %id);
            let fut = info_loop(
                client.clone(),
                self.store.clone(),
                self.limiter.clone(),
                self.calls.clone(),
                id.clone(),
                name.is_none(),
                self.seed.map(|s| s ^ hash(&id)),
                token.clone(),
            );
            self.supervisor.spawn_service(
                format!("instance details loop {id}"),
                token.clone(),
                fut.instrument(span),
            );
            self.info.insert(
                id,
                InfoLoop {
                    client,
                    name_configured: name,
                    token,
                },
            );
        }
        changes.started.sort();
        changes.restarted.sort();
        changes.stopped.sort();
        changes
    }
}

impl<C, N> Scheduler<C, N> {
    fn shared<S>(&self, client: Arc<S>, start_jitter: Duration) -> Shared<S> {
        Shared {
            client,
            store: self.store.clone(),
            limiter: self.limiter.clone(),
            calls: self.calls.clone(),
            clock: self.clock,
            start_jitter,
            metrics: self.metrics.clone(),
            reloads: self.reloads.subscribe(),
        }
    }
}

/// Calls under way at once, for `max_concurrent_requests` permits: a call's request future (a
/// few KiB) exists from the moment the call starts, and waits there for a permit. Thousands of
/// loops starting together (each lists its tasks first) would otherwise hold one each while
/// they queue (16 MiB for 4,000 loops, and as much again for 2,000 instance details loops);
/// a loop waits for a slot before it builds its call, with nothing but its own state.
/// Several slots per permit keep every permit busy, calls pausing between retries included.
pub fn call_slots(max_concurrent_requests: usize) -> usize {
    (4 * max_concurrent_requests).max(32)
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
