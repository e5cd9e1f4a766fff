//! The metrics snapshot: what the scheduler learned, kept until something newer replaces it.
//!
//! The scheduler writes here (a published result, a failure, a running task); the HTTP server
//! only reads. A newer result replaces the instance's previous key set as a whole, a failure never
//! removes a result, and every change bumps a generation counter so that renderers can cache
//! their output until something changes. Nothing here calls the cloud.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::families::{top_families, KeyFamily, KeyspaceTotal, ShardFamilies};
use super::hot::{HotSlot, NodeSource};
use super::keylist::KeyList;
use crate::dcs::{self, Analysis, InstanceInfo, KeyRecord, ScanType, SizeUnit, TaskRecord};

/// Why an attempt produced no result: the `reason` label of `dcs_analysis_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    /// DCS reported the task as `failed`.
    TaskFailed,
    /// The task outlived the analysis timeout.
    Timeout,
    /// A request failed after retries.
    ApiError,
    /// 401 / 403.
    Auth,
    /// DCS.4919 / DCS.4922, or a Redis or Valkey server that cannot do the analysis.
    Unsupported,
    /// Redis and Valkey targets: the server could not be reached, or the connection broke or
    /// timed out.
    Connection,
    /// Redis and Valkey targets: the server answered with an error (loading, busy, out of
    /// memory, a cluster that is down…).
    ServerError,
    /// Redis and Valkey targets: an answer that cannot be right (too large, out of step with
    /// the commands, of the wrong shape).
    ProtocolError,
    /// Redis and Valkey targets: the server restarted or was flushed during the scan, so its
    /// result was not published.
    ServerChanged,
}

impl FailureReason {
    /// The reasons every analysis exports (at 0 until they happen).
    pub const ALL: [FailureReason; 5] = [
        FailureReason::TaskFailed,
        FailureReason::Timeout,
        FailureReason::ApiError,
        FailureReason::Auth,
        FailureReason::Unsupported,
    ];

    /// The reasons only the analyses of Redis and Valkey targets have.
    pub const NATIVE: [FailureReason; 4] = [
        FailureReason::Connection,
        FailureReason::ServerError,
        FailureReason::ProtocolError,
        FailureReason::ServerChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::TaskFailed => "task_failed",
            FailureReason::Timeout => "timeout",
            FailureReason::ApiError => "api_error",
            FailureReason::Auth => "auth",
            FailureReason::Unsupported => "unsupported",
            FailureReason::Connection => "connection",
            FailureReason::ServerError => "server_error",
            FailureReason::ProtocolError => "protocol_error",
            FailureReason::ServerChanged => "server_changed",
        }
    }

    /// The reason for an attempt that failed with a client error.
    pub fn from_error(e: &dcs::Error) -> FailureReason {
        match e.failure_reason() {
            "auth" => FailureReason::Auth,
            "unsupported" => FailureReason::Unsupported,
            _ => FailureReason::ApiError,
        }
    }
}

/// How a task came to be followed: the `origin` label of `dcs_analysis_tasks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskOrigin {
    Created,
    Adopted,
}

/// What the exporter should analyse for one instance, as configured (or discovered).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    pub id: String,
    /// Display name (`instance_name` label): configured or discovered name, else the id.
    pub name: String,
    /// The instance's `lfu-log-factor`, for `dcs_hotkey_estimated_accesses`.
    pub lfu_log_factor: u32,
    /// A Redis or Valkey server the exporter scans itself, not a DCS instance (the status page
    /// speaks of each in its own words).
    pub native: bool,
    /// Enabled analyses with their top N and mode name (for the status page).
    pub analyses: Vec<AnalysisSpec>,
}

/// One enabled analysis of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisSpec {
    pub analysis: Analysis,
    pub top_n: usize,
    /// `trigger` or `observe`.
    pub mode: &'static str,
    /// Configured time between analyses (`dcs_analysis_interval_seconds`).
    pub interval: std::time::Duration,
}

/// The newest successful analysis of one instance, cut to the top N keys.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisResult {
    pub task_id: String,
    pub scan_type: Option<ScanType>,
    /// Unix seconds; `None` when DCS did not say or the timestamp was unreadable.
    pub created_at: Option<f64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// Keys reported by the analysis (`num`, else the length of `keys`), not cut by top N.
    pub key_count: u64,
    /// The exported keys, ranked: hot keys by `freq` descending, big keys by `size` descending
    /// within each unit (at most N per unit); packed (see [`KeyList`]).
    pub keys: KeyList,
    /// Key family analyses: the newest result of each shard, by shard.
    pub shards: BTreeMap<String, Arc<ShardFamilies>>,
    /// Key family analyses: the exported families over all shards, the top N by memory and
    /// the rest as `other` (see [`top_families`]).
    pub families: Vec<KeyFamily>,
    /// Hot key analyses of Redis and Valkey targets: where each node's hot keys came from.
    pub sources: Vec<NodeSource>,
    /// Hot slot analyses: the top N slots of each node, ranked per node.
    pub slots: Vec<HotSlot>,
}

impl AnalysisResult {
    /// Per key type totals over all shards (`dcs_keyspace_*`), in key type order.
    pub fn keyspace_totals(&self) -> Vec<KeyspaceTotal> {
        let mut by_type: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for t in self.shards.values().flat_map(|s| &s.totals) {
            let e = by_type.entry(t.key_type.as_str()).or_default();
            e.0 = e.0.saturating_add(t.keys);
            e.1 = e.1.saturating_add(t.memory_bytes);
        }
        by_type
            .into_iter()
            .map(|(key_type, (keys, memory_bytes))| KeyspaceTotal {
                key_type: key_type.to_owned(),
                shard: String::new(),
                keys,
                memory_bytes,
            })
            .collect()
    }

    /// Oldest finish time over the shards (Unix seconds), for the next shard to analyse.
    pub fn shard_finished(&self, shard: &str) -> Option<f64> {
        self.shards.get(shard).and_then(|s| s.finished_at)
    }
}

impl AnalysisResult {
    /// Builds the result of a successful task, ranking and cutting its keys to `top_n`.
    pub fn from_task(analysis: Analysis, task: &TaskRecord, top_n: usize) -> AnalysisResult {
        let ts = |s: &Option<String>| s.as_deref().and_then(dcs::timestamp::parse);
        let keys = rank_keys(analysis, task.keys.as_deref().unwrap_or_default(), top_n);
        AnalysisResult {
            task_id: task.id.clone(),
            scan_type: task.scan_type.clone(),
            created_at: ts(&task.created_at),
            started_at: ts(&task.started_at),
            finished_at: ts(&task.finished_at),
            key_count: task.key_count(),
            keys,
            shards: BTreeMap::new(),
            families: Vec::new(),
            sources: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// `finished_at − started_at`, when both are known and ordered.
    pub fn duration_seconds(&self) -> Option<f64> {
        match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) if f >= s => Some(f - s),
            _ => None,
        }
    }

    /// `started_at − created_at`, when both are known and ordered.
    pub fn queue_seconds(&self) -> Option<f64> {
        match (self.created_at, self.started_at) {
            (Some(c), Some(s)) if s >= c => Some(s - c),
            _ => None,
        }
    }
}

/// Ranks keys and keeps the top N: hot keys by `freq` (then, for keys a source other than the
/// LFU counter measured, by that source's measure: see [`dcs::HotRates::hotter`]), big keys by
/// `size` per unit. Ties keep the service's order.
pub fn rank_keys(analysis: Analysis, keys: &[KeyRecord], top_n: usize) -> KeyList {
    let mut ranked: Vec<&KeyRecord> = keys.iter().collect();
    match analysis {
        Analysis::Hotkey => {
            ranked.sort_by(|a, b| {
                b.freq
                    .unwrap_or(i64::MIN)
                    .cmp(&a.freq.unwrap_or(i64::MIN))
                    .then(match (a.rates, b.rates) {
                        (Some(x), Some(y)) => x.hotter(&y),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    })
            });
            ranked.truncate(top_n);
            ranked.into_iter().collect()
        }
        // Key family and hot slot analyses report no keys of their own.
        Analysis::Keyfamily | Analysis::Hotslot => KeyList::default(),
        Analysis::Bigkey => {
            ranked.sort_by_key(|k| std::cmp::Reverse(k.size.unwrap_or(i64::MIN)));
            let mut per_unit: BTreeMap<&str, usize> = BTreeMap::new();
            ranked.retain(|k| {
                let unit = k.unit.as_ref().map_or("", SizeUnit::as_str);
                let n = per_unit.entry(unit).or_insert(0);
                *n += 1;
                *n <= top_n
            });
            ranked.into_iter().collect()
        }
    }
}

/// `base` with the families of `shards`: the top `top_n` over all shards, the key count summed,
/// and the newest shard's finish time.
fn family_result(
    mut new: AnalysisResult,
    shards: BTreeMap<String, Arc<ShardFamilies>>,
    top_n: usize,
) -> AnalysisResult {
    let all: Vec<KeyFamily> = shards
        .values()
        .flat_map(|s| s.families.iter().cloned())
        .collect();
    new.families = top_families(&all, top_n);
    new.key_count = shards.values().map(|s| s.key_count).sum();
    new.finished_at = shards
        .values()
        .filter_map(|s| s.finished_at)
        .fold(new.finished_at, |acc, f| {
            Some(acc.map_or(f, |a: f64| a.max(f)))
        });
    new.shards = shards;
    new
}

/// A task the exporter is following right now.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningTask {
    pub id: String,
    /// `waiting` or `running`, as last seen.
    pub status: String,
    /// Unix seconds when the exporter started following it.
    pub since: f64,
}

/// How far a scan the exporter runs itself has got (native targets only).
#[derive(Clone, Debug, PartialEq)]
pub struct ScanProgress {
    /// Keys visited so far, over every node of the target.
    pub keys_scanned: u64,
    /// Keys the scanned nodes held when the scan started (`INFO keyspace`).
    pub keys_total: u64,
    /// Unix seconds when the scan started.
    pub started_at: f64,
    /// Unix seconds of this measurement.
    pub at: f64,
    /// Unix seconds at which the scan's own `timeout` cuts it off (`None`: `auto`, cut off only
    /// when it stalls).
    pub deadline: Option<f64>,
}

impl ScanProgress {
    /// Whether the scan, at its pace so far, ends after its deadline (it will be cut off).
    pub fn misses_deadline(&self) -> bool {
        matches!((self.estimated_completion(), self.deadline), (Some(eta), Some(d)) if eta > d)
    }

    /// When the scan should end at its pace so far (Unix seconds); `None` before any key.
    pub fn estimated_completion(&self) -> Option<f64> {
        let elapsed = self.at - self.started_at;
        if self.keys_scanned == 0 || elapsed <= 0.0 {
            return None;
        }
        let left = self.keys_total.saturating_sub(self.keys_scanned) as f64;
        Some(self.at + left * elapsed / self.keys_scanned as f64)
    }
}

/// Whether a scan of a Redis or Valkey target counts as an access to the keys it reads (their
/// LFU counter and idle time change), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    pub touches: bool,
    /// What makes it so, for the status page: `CLIENT NO-TOUCH` on, missing (before Redis
    /// 7.2) or refused to the ACL user.
    pub why: String,
}

/// The last failure of an analysis, for the status page.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    /// Unix seconds.
    pub at: f64,
    pub reason: FailureReason,
    pub message: String,
}

/// Everything known about one analysis of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisState {
    pub spec: AnalysisSpec,
    /// `false` once DCS answered DCS.4919 / DCS.4922 (or a Redis target had no LFU policy).
    pub supported: bool,
    /// When an unsupported analysis is asked again (Unix seconds), as its loop planned it; a
    /// config reload asks at once. Kept only while the analysis is unsupported.
    pub recheck_at: Option<f64>,
    pub running: Option<RunningTask>,
    /// Progress of the scan running now (native targets only).
    pub progress: Option<ScanProgress>,
    /// Whether the newest scan touched the keys it read (native targets only).
    pub touch: Option<Touch>,
    pub consecutive_failures: u64,
    /// Failures by reason since start (a counter: never reset).
    pub failures: BTreeMap<FailureReason, u64>,
    pub tasks_created: u64,
    pub tasks_adopted: u64,
    /// The task counted last in `tasks_created` / `tasks_adopted`: a loop restarted by a
    /// reload adopts the task its predecessor was following, which is not a new task.
    pub last_counted_task: Option<String>,
    pub result: Option<Arc<AnalysisResult>>,
    pub last_error: Option<LastError>,
}

impl AnalysisState {
    /// A configured analysis that has not run yet: supported, nothing counted, no result.
    pub(crate) fn new(spec: AnalysisSpec) -> Self {
        AnalysisState {
            spec,
            supported: true,
            recheck_at: None,
            running: None,
            progress: None,
            touch: None,
            consecutive_failures: 0,
            failures: BTreeMap::new(),
            tasks_created: 0,
            tasks_adopted: 0,
            last_counted_task: None,
            result: None,
            last_error: None,
        }
    }
}

/// One configured instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceState {
    pub id: String,
    pub name: String,
    pub lfu_log_factor: u32,
    /// A Redis or Valkey server the exporter scans itself (see [`InstanceSpec::native`]).
    pub native: bool,
    /// Details from ShowInstance or discovery (`dcs_instance_info`).
    pub info: Option<InstanceInfo>,
    pub analyses: AnalysisMap,
}

/// The analyses of one instance, in analysis order: a map with the part of `BTreeMap`'s
/// interface the exporter uses, held in one vector of exactly the analyses configured (a
/// `BTreeMap` allocates room for eleven states; with thousands of instances that is megabytes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisMap(Vec<(Analysis, AnalysisState)>);

impl AnalysisMap {
    fn find(&self, analysis: &Analysis) -> Result<usize, usize> {
        self.0.binary_search_by(|(a, _)| a.cmp(analysis))
    }

    pub fn get(&self, analysis: &Analysis) -> Option<&AnalysisState> {
        self.find(analysis).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, analysis: &Analysis) -> Option<&mut AnalysisState> {
        self.find(analysis).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, analysis: &Analysis) -> bool {
        self.find(analysis).is_ok()
    }

    /// Sets the state of `analysis`; returns the one it replaces.
    pub fn insert(&mut self, analysis: Analysis, state: AnalysisState) -> Option<AnalysisState> {
        match self.find(&analysis) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, state)),
            Err(i) => {
                self.0.insert(i, (analysis, state));
                None
            }
        }
    }

    pub fn remove(&mut self, analysis: &Analysis) -> Option<AnalysisState> {
        self.find(analysis).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Analysis, &AnalysisState)> {
        self.0.iter().map(|(a, s)| (a, s))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Analysis> {
        self.0.iter().map(|(a, _)| a)
    }
}

impl<'a> IntoIterator for &'a AnalysisMap {
    type Item = (&'a Analysis, &'a AnalysisState);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Analysis, AnalysisState)>,
        fn(&'a (Analysis, AnalysisState)) -> (&'a Analysis, &'a AnalysisState),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(a, s)| (a, s))
    }
}

impl FromIterator<(Analysis, AnalysisState)> for AnalysisMap {
    fn from_iter<I: IntoIterator<Item = (Analysis, AnalysisState)>>(iter: I) -> Self {
        let mut map = AnalysisMap::default();
        for (a, s) in iter {
            map.insert(a, s);
        }
        map.0.shrink_to_fit();
        map
    }
}

impl std::ops::Index<&Analysis> for AnalysisMap {
    type Output = AnalysisState;

    fn index(&self, analysis: &Analysis) -> &AnalysisState {
        self.get(analysis).expect("no state for this analysis")
    }
}

/// The whole snapshot, keyed by instance id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub instances: BTreeMap<String, InstanceState>,
}

/// The shared, mutable snapshot. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Snapshot>,
    /// Hot key sources of the scan running for each instance (by instance id: the task's id and
    /// each node's source), until [`Store::publish`] files them with that task's result.
    staged_sources: Mutex<BTreeMap<String, (String, Vec<NodeSource>)>>,
    generation: AtomicU64,
    /// Signalled on every generation bump, for [`changed`](Store::changed).
    change: tokio::sync::Notify,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bumped on every change; a renderer may cache its output per generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Completes once the generation has moved since the last time this completed (at once if
    /// it moved in between). For one waiter: the renderer that keeps /metrics assembled.
    pub async fn changed(&self) {
        self.change.notified().await;
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.change.notify_one();
    }

    /// Read access to the snapshot. Keep the closure short: writers wait for it.
    pub fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        // A panic elsewhere must not take /metrics down with it: the data is still consistent
        // because every update below is a plain field write.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        let mut guard = self.lock();
        let r = f(&mut guard);
        self.bump();
        r
    }

    fn update_analysis(&self, id: &str, analysis: Analysis, f: impl FnOnce(&mut AnalysisState)) {
        self.update(|s| {
            if let Some(a) = s
                .instances
                .get_mut(id)
                .and_then(|i| i.analyses.get_mut(&analysis))
            {
                f(a)
            }
        })
    }

    /// Sets the configured instances. Instances and analyses no longer listed are dropped with
    /// all their series; those still listed keep their state; new ones start empty.
    pub fn configure(&self, specs: &[InstanceSpec]) {
        self.update(|s| {
            let mut next = BTreeMap::new();
            for spec in specs {
                let mut inst = s
                    .instances
                    .remove(&spec.id)
                    .unwrap_or_else(|| InstanceState {
                        id: spec.id.clone(),
                        name: spec.name.clone(),
                        lfu_log_factor: spec.lfu_log_factor,
                        native: spec.native,
                        info: None,
                        analyses: AnalysisMap::default(),
                    });
                inst.name = spec.name.clone();
                inst.lfu_log_factor = spec.lfu_log_factor;
                inst.native = spec.native;
                let analyses: AnalysisMap = spec
                    .analyses
                    .iter()
                    .map(|a| {
                        let state = match inst.analyses.remove(&a.analysis) {
                            Some(mut st) => {
                                st.spec = a.clone();
                                st
                            }
                            None => AnalysisState::new(a.clone()),
                        };
                        (a.analysis, state)
                    })
                    .collect();
                inst.analyses = analyses;
                next.insert(spec.id.clone(), inst);
            }
            s.instances = next;
        })
    }

    /// Changes an instance's display name (when DCS tells the name and the config does not).
    pub fn rename(&self, id: &str, name: &str) {
        let changed = self.read(|s| s.instances.get(id).is_some_and(|i| i.name != name));
        if changed {
            self.update(|s| {
                if let Some(i) = s.instances.get_mut(id) {
                    i.name = name.to_owned();
                }
            })
        }
    }

    /// Records the instance's details (`dcs_instance_info`).
    pub fn set_instance_info(&self, id: &str, info: InstanceInfo) {
        self.update(|s| {
            if let Some(i) = s.instances.get_mut(id) {
                i.info = Some(info);
            }
        })
    }

    /// Records the details of many instances at once (a discovery listing); the generation moves
    /// only if something changed, so an unchanged listing does not invalidate renderings.
    pub fn set_instance_infos<'a>(&self, infos: impl IntoIterator<Item = &'a InstanceInfo>) {
        let mut guard = self.lock();
        let mut changed = false;
        for info in infos {
            if let Some(i) = guard.instances.get_mut(&info.instance_id) {
                if i.info.as_ref() != Some(info) {
                    i.info = Some(info.clone());
                    changed = true;
                }
            }
        }
        if changed {
            self.bump();
        }
    }

    /// Publishes a successful task as the analysis' newest result, replacing the previous key
    /// set as a whole, unless the current result is the same task or finished later. Returns
    /// whether the result was taken.
    pub fn publish(&self, id: &str, analysis: Analysis, task: &TaskRecord) -> bool {
        let sources = self.staged_for(id, analysis, &task.id);
        self.publish_with(id, analysis, task, |new| new.sources = sources)
    }

    /// Publishes `task` as the analysis' newest result, `fill` adding what the task record
    /// does not hold, unless the current result is the same task or finished later.
    fn publish_with(
        &self,
        id: &str,
        analysis: Analysis,
        task: &TaskRecord,
        fill: impl FnOnce(&mut AnalysisResult),
    ) -> bool {
        let mut taken = false;
        self.update_analysis(id, analysis, |a| {
            let mut new = AnalysisResult::from_task(analysis, task, a.spec.top_n);
            fill(&mut new);
            let newer = match &a.result {
                None => true,
                Some(old) if old.task_id == new.task_id => false,
                Some(old) => match (old.finished_at, new.finished_at) {
                    (Some(o), Some(n)) => n >= o,
                    _ => true,
                },
            };
            a.supported = true;
            a.consecutive_failures = 0;
            if newer {
                a.result = Some(Arc::new(new));
                taken = true;
            }
        });
        taken
    }

    /// Publishes one shard's key families as part of the analysis' result: the shard's
    /// previous families are replaced as a whole, other shards keep theirs, and the exported
    /// top N is recomputed over all shards. `task` gives the times and id of the newest result.
    /// Returns whether the result was taken (not when the shard already has this task's or a
    /// later result).
    pub fn publish_families(
        &self,
        id: &str,
        analysis: Analysis,
        task: &TaskRecord,
        shard: String,
        families: ShardFamilies,
    ) -> bool {
        let mut taken = false;
        self.update_analysis(id, analysis, |a| {
            let mut shards = a
                .result
                .as_ref()
                .map(|r| r.shards.clone())
                .unwrap_or_default();
            let newer = match shards.get(&shard) {
                None => true,
                Some(old) if old.task_id == families.task_id => false,
                Some(old) => match (old.finished_at, families.finished_at) {
                    (Some(o), Some(n)) => n >= o,
                    _ => true,
                },
            };
            a.supported = true;
            a.consecutive_failures = 0;
            if !newer {
                return;
            }
            shards.insert(shard, Arc::new(families));
            let new = family_result(
                AnalysisResult::from_task(analysis, task, a.spec.top_n),
                shards,
                a.spec.top_n,
            );
            a.result = Some(Arc::new(new));
            taken = true;
        });
        taken
    }

    /// Notes where one node's hot keys came from in the hot key scan `task_id` of instance
    /// `id`, to be published with that task's result (a later call for the same node wins).
    pub fn stage_hotkey_source(&self, id: &str, task_id: &str, shard: &str, source: &'static str) {
        let mut staged = self
            .staged_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = staged
            .entry(id.to_owned())
            .or_insert_with(|| (task_id.to_owned(), Vec::new()));
        if entry.0 != task_id {
            *entry = (task_id.to_owned(), Vec::new());
        }
        entry.1.retain(|s| s.shard != shard);
        entry.1.push(NodeSource {
            shard: shard.to_owned(),
            source,
        });
        entry.1.sort();
    }

    /// The sources staged for the hot key task `task_id` of `id` (none for another task).
    fn staged_for(&self, id: &str, analysis: Analysis, task_id: &str) -> Vec<NodeSource> {
        if analysis != Analysis::Hotkey {
            return Vec::new();
        }
        let mut staged = self
            .staged_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match staged.get(id) {
            Some((t, _)) if t == task_id => staged.remove(id).map(|(_, s)| s).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Publishes the hot slots of a successful hot slot task as the analysis' newest result
    /// (see [`Store::publish`]: not when the current result is this task's or finished
    /// later). Returns whether the result was taken.
    pub fn publish_hotslots(
        &self,
        id: &str,
        analysis: Analysis,
        task: &TaskRecord,
        slots: Vec<HotSlot>,
    ) -> bool {
        self.publish_with(id, analysis, task, |new| new.slots = slots)
    }

    /// Drops the key family results of shards the instance no longer has (`shards`: the shards
    /// listed now; an empty list changes nothing).
    pub fn retain_shards(&self, id: &str, analysis: Analysis, shards: &[String]) {
        let stale = self.read(|s| {
            let r = s
                .instances
                .get(id)?
                .analyses
                .get(&analysis)?
                .result
                .clone()?;
            r.shards.keys().any(|k| !shards.contains(k)).then_some(r)
        });
        let Some(old) = stale.filter(|_| !shards.is_empty()) else {
            return;
        };
        self.update_analysis(id, analysis, |a| {
            let mut kept = old.shards.clone();
            kept.retain(|k, _| shards.contains(k));
            let base = AnalysisResult {
                shards: BTreeMap::new(),
                families: Vec::new(),
                ..(*old).clone()
            };
            a.result = Some(Arc::new(family_result(base, kept, a.spec.top_n)));
        })
    }

    /// Counts an attempt that produced no result. The last result stays.
    ///
    /// `Unsupported` is counted by reason but is not a failure streak: the instance answered, and
    /// said it cannot run the analysis. It marks the analysis unsupported and sets
    /// `consecutive_failures` to 0, so the daily re-check never adds up to `DcsAnalysisFailing`.
    pub fn record_failure(
        &self,
        id: &str,
        analysis: Analysis,
        reason: FailureReason,
        message: String,
        now_unix: f64,
    ) {
        self.update_analysis(id, analysis, |a| {
            if reason == FailureReason::Unsupported {
                a.supported = false;
                a.consecutive_failures = 0;
            } else {
                a.consecutive_failures += 1;
            }
            *a.failures.entry(reason).or_insert(0) += 1;
            a.last_error = Some(LastError {
                at: now_unix,
                reason,
                message,
            });
        })
    }

    /// Sets or clears the task being followed (`dcs_analysis_running`).
    pub fn set_running(&self, id: &str, analysis: Analysis, task: Option<RunningTask>) {
        self.update_analysis(id, analysis, |a| a.running = task)
    }

    /// Records whether the newest scan of a native target touches the keys it reads.
    pub fn set_touch(&self, id: &str, analysis: Analysis, touch: Touch) {
        self.update_analysis(id, analysis, |a| a.touch = Some(touch))
    }

    /// Sets or clears the progress of a running scan (native targets).
    pub fn set_progress(&self, id: &str, analysis: Analysis, progress: Option<ScanProgress>) {
        self.update_analysis(id, analysis, |a| a.progress = progress)
    }

    /// Marks the analysis supported or not (`dcs_analysis_supported`); supported, it has no
    /// re-check planned.
    pub fn set_supported(&self, id: &str, analysis: Analysis, supported: bool) {
        self.update_analysis(id, analysis, |a| {
            a.supported = supported;
            if supported {
                a.recheck_at = None;
            }
        })
    }

    /// Sets when an unsupported analysis is asked again (Unix seconds), for the status page.
    pub fn set_recheck(&self, id: &str, analysis: Analysis, at: Option<f64>) {
        self.update_analysis(id, analysis, |a| a.recheck_at = at)
    }

    /// Counts a task created or adopted (`dcs_analysis_tasks_total`), once: the task counted
    /// last is not counted again (a loop restarted by a reload adopting the task its
    /// predecessor followed).
    pub fn count_task(&self, id: &str, analysis: Analysis, task_id: &str, origin: TaskOrigin) {
        self.update_analysis(id, analysis, |a| {
            if a.last_counted_task.as_deref() == Some(task_id) {
                return;
            }
            a.last_counted_task = Some(task_id.to_owned());
            match origin {
                TaskOrigin::Created => a.tasks_created += 1,
                TaskOrigin::Adopted => a.tasks_adopted += 1,
            }
        })
    }

    /// The current result of an analysis.
    pub fn result(&self, id: &str, analysis: Analysis) -> Option<Arc<AnalysisResult>> {
        self.read(|s| s.instances.get(id)?.analyses.get(&analysis)?.result.clone())
    }

    /// A copy of one analysis' state.
    pub fn analysis_state(&self, id: &str, analysis: Analysis) -> Option<AnalysisState> {
        self.read(|s| s.instances.get(id)?.analyses.get(&analysis).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::{KeyType, TaskStatus};

    fn key(name: &str, size: i64, unit: SizeUnit, freq: Option<i64>) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            key_type: Some(KeyType::String),
            shard: None,
            db: Some(0),
            size: Some(size),
            unit: Some(unit),
            freq,
            memory: None,
            rates: None,
        }
    }

    fn task(id: &str, finished: &str, keys: Vec<KeyRecord>) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            instance_id: Some("i1".into()),
            status: TaskStatus::Success,
            scan_type: Some(ScanType::Manual),
            created_at: Some("2024-01-01T00:00:00.000Z".into()),
            started_at: Some("2024-01-01T00:00:02.000Z".into()),
            finished_at: Some(finished.into()),
            num: None,
            keys: Some(keys),
        }
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            id: "i1".into(),
            name: "one".into(),
            lfu_log_factor: 10,
            native: false,
            analyses: vec![
                AnalysisSpec {
                    analysis: Analysis::Hotkey,
                    top_n: 2,
                    mode: "trigger",
                    interval: std::time::Duration::from_secs(900),
                },
                AnalysisSpec {
                    analysis: Analysis::Bigkey,
                    top_n: 1,
                    mode: "trigger",
                    interval: std::time::Duration::from_secs(900),
                },
            ],
        }
    }

    #[test]
    fn hot_keys_rank_by_freq_and_cut_to_top_n() {
        let keys = vec![
            key("a", 1, SizeUnit::Byte, Some(5)),
            key("b", 1, SizeUnit::Byte, Some(200)),
            key("c", 1, SizeUnit::Byte, Some(50)),
        ];
        let r = rank_keys(Analysis::Hotkey, &keys, 2);
        let names: Vec<_> = r.iter().map(|k| k.name).collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[test]
    fn big_keys_rank_within_each_unit() {
        let keys = vec![
            key("s1", 10, SizeUnit::Byte, None),
            key("s2", 30, SizeUnit::Byte, None),
            key("h1", 5000, SizeUnit::Count, None),
            key("h2", 9000, SizeUnit::Count, None),
        ];
        let r = rank_keys(Analysis::Bigkey, &keys, 1);
        let names: Vec<_> = r.iter().map(|k| k.name).collect();
        assert_eq!(names, ["h2", "s2"]);
    }

    #[test]
    fn newer_result_replaces_and_failure_keeps_it() {
        let store = Store::new();
        store.configure(&[spec()]);
        let t1 = task(
            "t1",
            "2024-01-01T00:01:00.000Z",
            vec![key("a", 1, SizeUnit::Byte, Some(9))],
        );
        assert!(store.publish("i1", Analysis::Hotkey, &t1));
        let g = store.generation();
        store.record_failure(
            "i1",
            Analysis::Hotkey,
            FailureReason::Timeout,
            "slow".into(),
            1.0,
        );
        assert!(store.generation() > g);
        let st = store.analysis_state("i1", Analysis::Hotkey).unwrap();
        assert_eq!(st.consecutive_failures, 1);
        assert_eq!(st.result.as_ref().unwrap().task_id, "t1");
        // Same task again: not taken. An older one: not taken. A newer one: replaces.
        assert!(!store.publish("i1", Analysis::Hotkey, &t1));
        let old = task("t0", "2023-12-31T00:00:00.000Z", vec![]);
        assert!(!store.publish("i1", Analysis::Hotkey, &old));
        let t2 = task(
            "t2",
            "2024-01-01T00:02:00.000Z",
            vec![key("b", 1, SizeUnit::Byte, Some(1))],
        );
        assert!(store.publish("i1", Analysis::Hotkey, &t2));
        let st = store.analysis_state("i1", Analysis::Hotkey).unwrap();
        assert_eq!(st.consecutive_failures, 0);
        let r = st.result.unwrap();
        assert_eq!(r.keys.len(), 1);
        assert_eq!(r.keys.first().expect("a key").name, "b");
        assert_eq!(r.duration_seconds(), Some(118.0));
        assert_eq!(r.queue_seconds(), Some(2.0));
    }

    #[test]
    fn unsupported_is_counted_but_is_not_a_failure_streak() {
        let store = Store::new();
        store.configure(&[spec()]);
        store.record_failure(
            "i1",
            Analysis::Hotkey,
            FailureReason::ApiError,
            "503".into(),
            1.0,
        );
        for day in 0..3 {
            store.record_failure(
                "i1",
                Analysis::Hotkey,
                FailureReason::Unsupported,
                "DCS.4922".into(),
                2.0 + f64::from(day) * 86_400.0,
            );
        }
        let st = store.analysis_state("i1", Analysis::Hotkey).unwrap();
        assert_eq!(st.consecutive_failures, 0);
        assert!(!st.supported);
        assert_eq!(st.failures[&FailureReason::Unsupported], 3);
        assert_eq!(st.failures[&FailureReason::ApiError], 1);
        assert_eq!(st.last_error.unwrap().reason, FailureReason::Unsupported);
    }

    #[test]
    fn family_results_merge_per_shard() {
        use crate::metrics::families::{KeyFamily, ShardFamilies};
        let store = Store::new();
        let mut s = spec();
        s.analyses = vec![AnalysisSpec {
            analysis: Analysis::Keyfamily,
            top_n: 1,
            mode: "trigger",
            interval: std::time::Duration::from_secs(86_400),
        }];
        store.configure(&[s]);
        let shard = |task: &str, shard: &str, finished: f64, bytes: u64| ShardFamilies {
            task_id: task.into(),
            backup_id: None,
            finished_at: Some(finished),
            families: vec![KeyFamily {
                family: format!("{shard}:"),
                key_type: "hash".into(),
                shard: shard.into(),
                keys: 1,
                memory_bytes: bytes,
                keys_without_ttl: None,
            }],
            totals: Vec::new(),
            key_count: 10,
        };
        let t = task("t", "2024-01-01T00:01:00.000Z", vec![]);
        let kf = Analysis::Keyfamily;
        assert!(store.publish_families("i1", kf, &t, "g0".into(), shard("a", "g0", 100.0, 5)));
        assert!(store.publish_families("i1", kf, &t, "g1".into(), shard("b", "g1", 90.0, 9)));
        // The same task again, or an older one of a shard: not taken.
        assert!(!store.publish_families("i1", kf, &t, "g1".into(), shard("b", "g1", 90.0, 9)));
        assert!(!store.publish_families("i1", kf, &t, "g0".into(), shard("z", "g0", 50.0, 1)));
        let r = store.result("i1", kf).unwrap();
        assert_eq!(r.key_count, 20, "both shards");
        // top_n = 1: the larger family, the other one as `other`.
        let got: Vec<_> = r
            .families
            .iter()
            .map(|f| (f.family.as_str(), f.shard.as_str(), f.memory_bytes))
            .collect();
        assert_eq!(got, [("g1:", "g1", 9), ("other", "g0", 5)]);
        // A newer result of g1 replaces g1's families only.
        assert!(store.publish_families("i1", kf, &t, "g1".into(), shard("c", "g1", 200.0, 1)));
        let r = store.result("i1", kf).unwrap();
        let got: Vec<_> = r.families.iter().map(|f| f.family.as_str()).collect();
        assert_eq!(got, ["g0:", "other"]);
        assert_eq!(r.shards["g1"].task_id, "c");
        // g0 left the instance: its families go, g1's stay.
        store.retain_shards("i1", kf, &["g1".into()]);
        let r = store.result("i1", kf).unwrap();
        let got: Vec<_> = r.families.iter().map(|f| f.family.as_str()).collect();
        assert_eq!(got, ["g1:"]);
        assert_eq!(r.key_count, 10);
    }

    #[test]
    fn analysis_map_keeps_analysis_order_and_exact_size() {
        let state = |a: Analysis| {
            AnalysisState::new(AnalysisSpec {
                analysis: a,
                top_n: 1,
                mode: "trigger",
                interval: std::time::Duration::from_secs(60),
            })
        };
        let mut map: AnalysisMap = [Analysis::Keyfamily, Analysis::Bigkey, Analysis::Hotkey]
            .into_iter()
            .map(|a| (a, state(a)))
            .collect();
        // The order of `Analysis`, as a BTreeMap would iterate: hotkey, bigkey, keyfamily.
        let order: Vec<Analysis> = map.keys().copied().collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        assert_eq!(
            map.0.capacity(),
            3,
            "no room kept for analyses not configured"
        );
        let mut other = state(Analysis::Bigkey);
        other.tasks_created = 7;
        assert!(map.insert(Analysis::Bigkey, other).is_some());
        assert_eq!(map[&Analysis::Bigkey].tasks_created, 7);
        assert!(map.remove(&Analysis::Hotkey).is_some());
        assert!(!map.contains_key(&Analysis::Hotkey) && map.get(&Analysis::Hotkey).is_none());
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn configure_drops_removed_instances_and_keeps_retained_state() {
        let store = Store::new();
        store.configure(&[spec()]);
        store.count_task("i1", Analysis::Bigkey, "t1", TaskOrigin::Created);
        let mut other = spec();
        other.id = "i2".into();
        store.configure(&[spec(), other.clone()]);
        assert_eq!(
            store
                .analysis_state("i1", Analysis::Bigkey)
                .unwrap()
                .tasks_created,
            1
        );
        store.configure(&[other]);
        assert!(store.analysis_state("i1", Analysis::Bigkey).is_none());
        assert!(store.analysis_state("i2", Analysis::Bigkey).is_some());
    }
}
