//! The scheduler: one supervised loop per instance and analysis, plus one per instance that
//! keeps its details (`dcs_instance_info`) current unless discovery already lists them.
//!
//! # Layout
//! - [`source`]: the seam the loop is written against ([`AnalysisSource`]): DCS tasks, or the
//!   exporter's own scans of Redis and Valkey targets ([`crate::native`]).
//! - [`analysis_loop`]: the loop that creates or adopts tasks, polls them and publishes results.
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
//! [`Scheduler::apply`] starts loops for new instances, restarts those whose settings or client
//! changed, and stops (and forgets the series of) those no longer configured.

pub mod analysis_loop;
pub mod backoff;
pub mod clock;
pub mod metrics;
pub mod offline;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::config::{AnalysisSettings, InstanceConfig, Mode};
use crate::dcs::{Analysis, DcsApi, InstanceInfo};
use crate::metrics::store::{AnalysisSpec, InstanceSpec, Store};
use crate::supervisor::Supervisor;
pub use analysis_loop::{AnalysisLoop, Shared};
pub use clock::Clock;
pub use metrics::SchedulerMetrics;
pub use source::{AnalysisSource, SourceError};

/// How often instance details are refreshed.
pub const INFO_REFRESH: Duration = Duration::from_secs(3600);

/// Retries of a failed ShowInstance: 1 min, 2 min, 4 min … up to [`INFO_REFRESH`], equal
/// jitter so the instances of a cloud that failed together do not retry together.
pub const INFO_RETRY: crate::backoff::Backoff = crate::backoff::Backoff::fixed(
    Duration::from_secs(60),
    INFO_REFRESH,
    crate::backoff::Backoff::EQUAL_JITTER,
);

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

impl<C, N> SourceRef<C, N> {
    fn same(&self, other: &SourceRef<C, N>) -> bool {
        match (self, other) {
            (SourceRef::Dcs(a), SourceRef::Dcs(b)) => Arc::ptr_eq(a, b),
            (SourceRef::Native(a), SourceRef::Native(b)) => Arc::ptr_eq(a, b),
            _ => false,
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

/// Owns every loop; [`apply`](Scheduler::apply) a new plan on start and on reload.
pub struct Scheduler<C, N = C> {
    store: Arc<Store>,
    clock: Clock,
    limiter: Arc<Semaphore>,
    root: CancellationToken,
    supervisor: Supervisor,
    loops: HashMap<(String, Analysis), Running<C, N>>,
    info: HashMap<String, InfoLoop<C>>,
    /// Seeds the loops' jitter in tests; `None` uses entropy.
    seed: Option<u64>,
    start_jitter: Duration,
    metrics: Option<SchedulerMetrics>,
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
            root,
            supervisor,
            loops: HashMap::new(),
            info: HashMap::new(),
            seed: None,
            start_jitter: crate::config::SchedulerSettings::default().start_jitter,
            metrics: None,
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

    /// Sets the upper bound of the start-up jitter of loops started from now on.
    pub fn set_start_jitter(&mut self, max: Duration) {
        self.start_jitter = max;
    }

    /// Changes the global API concurrency limit (on reload). Calls in flight keep their permit.
    pub fn set_max_concurrent_requests(&mut self, n: usize) {
        self.limiter = Arc::new(Semaphore::new(n.max(1)));
    }

    /// Number of analysis loops running.
    pub fn loop_count(&self) -> usize {
        self.loops.len()
    }

    /// Makes the running loops match `plan` (DCS instances only).
    pub fn apply(&mut self, plan: Vec<CloudPlan<C>>) {
        self.apply_plan(Plan {
            clouds: plan,
            native: Vec::new(),
        });
    }

    /// Makes the running loops match `plan`: DCS instances and native targets alike.
    pub fn apply_plan(&mut self, plan: Plan<C, N>) {
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
                analyses,
            });
        }

        // Stop what is gone or changed.
        self.loops.retain(|key, running| {
            let keep = wanted.get(key).is_some_and(|(client, settings, fresh)| {
                client.same(&running.client)
                    && *settings == running.settings
                    && *fresh == running.fresh_backup
            });
            if !keep {
                running.token.cancel();
            }
            keep
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

        // Start what is new.
        for ((id, analysis), (client, settings, fresh_backup)) in wanted {
            if self.loops.contains_key(&(id.clone(), analysis)) {
                continue;
            }
            let token = self.root.child_token();
            let seed = self.seed.map(|s| s ^ hash(&id) ^ analysis as u64);
            let span = info_span!("analysis", instance_id = %id, analysis = %analysis);
            let task = format!("analysis loop {id} {analysis}");
            match &client {
                SourceRef::Dcs(c) => {
                    let lp = AnalysisLoop::new(
                        self.shared(c.clone()),
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
                        self.shared(n.clone()),
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
    }
}

impl<C, N> Scheduler<C, N> {
    fn shared<S>(&self, client: Arc<S>) -> Shared<S> {
        Shared {
            client,
            store: self.store.clone(),
            limiter: self.limiter.clone(),
            clock: self.clock,
            start_jitter: self.start_jitter,
            metrics: self.metrics.clone(),
        }
    }
}

/// Keeps one instance's details current; adopts its DCS name when none is configured.
async fn info_loop<C: DcsApi>(
    client: Arc<C>,
    store: Arc<Store>,
    limiter: Arc<Semaphore>,
    id: String,
    use_dcs_name: bool,
    seed: Option<u64>,
    cancel: CancellationToken,
) {
    let mut rng = match seed {
        Some(s) => ChaCha8Rng::seed_from_u64(s),
        None => ChaCha8Rng::from_entropy(),
    };
    let mut failures = 0u32;
    let mut loaded = false;
    loop {
        // Boxed: the request future is large and only alive during the call (one of these
        // loops sleeps for each instance). Its attempts take the limiter's permits.
        let result = Box::pin(crate::dcs::limit::scope_until(
            limiter.clone(),
            cancel.clone(),
            client.show_instance(&id),
        ))
        .await;
        if cancel.is_cancelled() {
            return;
        }
        let wait = match result {
            Ok(info) => {
                failures = 0;
                if use_dcs_name && !info.name.is_empty() {
                    store.rename(&id, &info.name);
                }
                if !loaded {
                    loaded = true;
                    info!(name = %info.name, status = info.status.as_deref().unwrap_or("?"),
                        "instance details loaded");
                }
                store.set_instance_info(&id, info);
                INFO_REFRESH
            }
            Err(e) => {
                warn!(error = %e, "cannot load instance details");
                let wait = INFO_RETRY.delay(failures, &mut rng);
                failures = failures.saturating_add(1);
                wait
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
