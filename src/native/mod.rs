//! Redis and Valkey targets the exporter analyses itself, as a local
//! [`crate::scheduler::AnalysisSource`].
//!
//! A [`NativeTarget`] keeps a small task table per analysis with the lifecycle DCS has (ids,
//! `waiting` → `running` → `success`/`failed`, created/started/finished timestamps, key
//! records). Creating a task starts a scan inside the exporter; the scheduler follows it,
//! publishes it and counts its failures exactly as it does for a DCS task, so store, exposition
//! and status page serve both through one path. What the DCS terms mean here:
//! - `created_at` is when the loop asked for the scan, `started_at` when the topology was known
//!   and the first node was being scanned, so `dcs_analysis_queue_seconds` is the time spent
//!   connecting and discovering nodes.
//! - `origin="created"` counts the scans this exporter started; `adopted` happens only when a
//!   loop restarts (a reload) while its scan still runs and picks that scan up again.
//!
//! # Layout
//! - [`resp`]: the exporter's own Redis protocol client: bounded replies, answers checked
//!   against their commands, one pipelined connection per node, a process-wide cap.
//! - [`conn`]: the connections of a target (one per node, every database) and its topology.
//! - [`topology`]: standalone, master and replicas, cluster, read from the server.
//! - [`pace`]: one key budget per node, shared by every scan of it.
//! - [`walk`]: `SCAN` over one database of one node, pipelined, resumed after a lost
//!   connection, and only on the same server process.
//! - [`scan`]: the big key and hot key scans of a node, top N.
//! - [`hotkeys`]: where each node's hot keys come from (`HOTKEYS`, LFU counters, a bounded
//!   `MONITOR` sample), and the sources other than the LFU scan.
//! - [`hotslot`]: hot hash slots of a cluster (`CLUSTER SLOT-STATS`), the `hotslot` analysis.
//! - `run`: one scan of a target, its shards side by side, its progress.
//! - [`guess`]: key types guessed from key names, one command per key where right.
//! - [`families`]: key families, aggregated from every key a big key scan sees.
//! - [`error`]: the error enum and its failure reasons.
//! - [`fleet`]: sharding over replicas and reuse across reloads.
//! - [`probe`]: `check-config --online`: version, role, shards, eviction policy.
//! - [`runtime`]: the threads scans and their connections run on, marked as background work.

pub mod conn;
pub mod error;
pub mod families;
pub mod fleet;
pub mod guess;
pub mod hotkeys;
pub mod hotslot;
pub mod pace;
pub mod probe;
pub mod resp;
mod run;
pub mod runtime;
pub mod scan;
pub mod topology;
pub mod walk;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::info;

use crate::config::redis::RedisTarget;
use crate::dcs::{
    timestamp, Analysis, InstanceInfo, ScanType, TaskList, TaskListQuery, TaskRecord, TaskStatus,
    TaskSummary,
};
use crate::metrics::store::Store;
use crate::scheduler::{AnalysisSource, Clock, SourceError};
use conn::Connector;
pub use error::{Error, Result};
use run::Run;

/// Task records kept per analysis (the newest; older ones are forgotten).
pub const KEPT_TASKS: usize = 10;
/// How often a running scan updates its progress in the store.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Entry {
    record: TaskRecord,
    abort: Option<tokio::task::AbortHandle>,
    /// Why the scan failed, when it says (credentials, permissions, no LFU policy, a node
    /// lost): showing the task then answers with this error, so the loop counts the same
    /// `reason` as if the create call had failed with it.
    error: Option<Error>,
}

#[derive(Default)]
pub(crate) struct Tasks {
    next_id: u64,
    hotkey: VecDeque<Entry>,
    bigkey: VecDeque<Entry>,
    keyfamily: VecDeque<Entry>,
    hotslot: VecDeque<Entry>,
}

impl Tasks {
    fn of(&mut self, a: Analysis) -> &mut VecDeque<Entry> {
        match a {
            Analysis::Hotkey => &mut self.hotkey,
            Analysis::Bigkey => &mut self.bigkey,
            // Never created (see `create_task`): an empty table.
            Analysis::Keyfamily => &mut self.keyfamily,
            Analysis::Hotslot => &mut self.hotslot,
        }
    }

    /// Applies `f` to the record of scan `task_id` and sets its error; a scan that has ended
    /// can no longer be aborted.
    fn update(
        &mut self,
        analysis: Analysis,
        task_id: &str,
        f: impl FnOnce(&mut TaskRecord),
        error: Option<Error>,
    ) {
        if let Some(e) = self
            .of(analysis)
            .iter_mut()
            .find(|e| e.record.id == task_id)
        {
            f(&mut e.record);
            e.error = error;
            if !e.record.status.is_active() {
                e.abort = None;
            }
        }
    }
}

/// One Redis or Valkey target: its connections and its local task table.
pub struct NativeTarget {
    /// The settings in force. A reload that keeps the connection settings replaces them in
    /// place ([`NativeTarget::update`]): scans started from then on use them.
    target: Mutex<Arc<RedisTarget>>,
    conn: Arc<Connector>,
    store: Arc<Store>,
    clock: Clock,
    tasks: Arc<Mutex<Tasks>>,
    /// Each master's newest `CLUSTER SLOT-STATS` poll, for the next hot slot analysis.
    slot_polls: Arc<hotslot::Baselines>,
}

impl std::fmt::Debug for NativeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = self.config();
        f.debug_struct("NativeTarget")
            .field("id", &target.id)
            .field("address", &target.address.display())
            .finish_non_exhaustive()
    }
}

impl Drop for NativeTarget {
    fn drop(&mut self) {
        // A scan must not outlive its target (reload with new settings, shutdown).
        let mut guard = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let t = &mut *guard;
        for e in t
            .hotkey
            .iter_mut()
            .chain(t.bigkey.iter_mut())
            .chain(t.hotslot.iter_mut())
        {
            if let Some(a) = e.abort.take() {
                a.abort();
            }
        }
    }
}

impl NativeTarget {
    pub fn new(target: RedisTarget, store: Arc<Store>, clock: Clock) -> Self {
        NativeTarget {
            conn: Arc::new(Connector::new(target.clone())),
            target: Mutex::new(Arc::new(target)),
            store,
            clock,
            tasks: Arc::new(Mutex::new(Tasks::default())),
            slot_polls: Arc::default(),
        }
    }

    /// The validated config this target runs with.
    pub fn config(&self) -> Arc<RedisTarget> {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `target` reaches the same server the same way, with what its connections hold
    /// (id, address, credentials, TLS, and the nodes' key budget): then
    /// [`update`](Self::update) can take it, keeping the connections.
    pub fn connects_as(&self, target: &RedisTarget) -> bool {
        let t = self.config();
        t.id == target.id
            && t.address == target.address
            && t.username == target.username
            && t.password == target.password
            && t.tls == target.tls
            && t.keys_per_second == target.keys_per_second
    }

    /// Takes new settings that [`connect as`](Self::connects_as) before (a reload that changed
    /// only analysis settings, names or family rules). Scans running now keep the
    /// settings they started with; the scheduler stops those of the analyses whose settings
    /// changed ([`AnalysisSource::stop_tasks`]), and the others run on.
    pub fn update(&self, target: RedisTarget) {
        debug_assert!(
            self.connects_as(&target),
            "a target updated with another server"
        );
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(target);
    }

    /// Connections pooled right now.
    pub fn pooled_connections(&self) -> usize {
        self.conn.pooled()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the handle of the task running `task_id`, to stop it with the target.
    fn started(&self, task_id: &str, analysis: Analysis, handle: tokio::task::JoinHandle<()>) {
        if let Some(e) = self
            .lock()
            .of(analysis)
            .iter_mut()
            .find(|e| e.record.id == task_id)
        {
            e.abort = Some(handle.abort_handle());
        }
    }

    fn check_target(&self, instance_id: &str) -> Result<()> {
        if instance_id == self.config().id {
            Ok(())
        } else {
            Err(Error::TaskNotFound {
                target: instance_id.to_owned(),
                analysis: "any",
                task_id: String::new(),
            })
        }
    }
}

fn summary(r: &TaskRecord) -> TaskSummary {
    TaskSummary {
        id: r.id.clone(),
        status: r.status.clone(),
        scan_type: r.scan_type.clone(),
        created_at: r.created_at.clone(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
    }
}

impl AnalysisSource for NativeTarget {
    type Error = Error;

    /// Whether the server has an LFU policy now costs two commands: asked every interval.
    fn unsupported_recheck(&self, interval: Duration) -> Duration {
        interval
    }

    /// Stops the scan running for `analysis` (its loop was reconfigured or turned off), and
    /// marks it failed: a new loop then starts its own scan rather than adopting this one.
    fn stop_tasks(&self, instance_id: &str, analysis: Analysis) {
        if self.check_target(instance_id).is_err() {
            return;
        }
        let now = timestamp::format_unix(self.clock.now_unix());
        let mut stopped = 0;
        for e in self.lock().of(analysis).iter_mut() {
            if !e.record.status.is_active() {
                continue;
            }
            if let Some(a) = e.abort.take() {
                a.abort();
            }
            e.record.status = TaskStatus::Failed;
            e.record.finished_at = Some(now.clone());
            stopped += 1;
        }
        if stopped > 0 {
            self.store.set_progress(instance_id, analysis, None);
            info!(target = %instance_id, analysis = %analysis,
                "scan stopped: its analysis was reconfigured or turned off");
        }
    }

    fn list_tasks(
        &self,
        instance_id: &str,
        analysis: Analysis,
        _query: &TaskListQuery,
    ) -> impl Future<Output = Result<TaskList>> + Send {
        let out = self.check_target(instance_id).map(|()| {
            let mut t = self.lock();
            let records: Vec<TaskSummary> =
                t.of(analysis).iter().map(|e| summary(&e.record)).collect();
            TaskList {
                instance_id: Some(instance_id.to_owned()),
                count: Some(records.len() as i64),
                records,
            }
        });
        std::future::ready(out)
    }

    async fn create_task(&self, instance_id: &str, analysis: Analysis) -> Result<TaskRecord> {
        self.check_target(instance_id)?;
        let target = self.config();
        if analysis == Analysis::Keyfamily {
            return Err(<Error as SourceError>::not_offered(
                "the DCS offline key analysis",
            ));
        }
        if self
            .lock()
            .of(analysis)
            .iter()
            .any(|e| e.record.status.is_active())
        {
            return Err(Error::AlreadyRunning {
                target: target.id.clone(),
                analysis: analysis.as_str(),
            });
        }
        let created = self.clock.now_unix();
        let topology = self.conn.topology().await?;
        self.conn.retain(&topology);
        // `dcs_instance_info` for the target: version, kind, shards.
        self.store.set_instance_info(
            &target.id,
            InstanceInfo {
                instance_id: target.id.clone(),
                name: target.name.clone().unwrap_or_default(),
                engine: Some(topology.engine.name.to_owned()),
                engine_version: topology.engine.version.clone(),
                spec_code: Some(topology.kind().to_owned()),
                sharding_count: Some(topology.units.len() as i64),
                ..InstanceInfo::default()
            },
        );
        // Whether the server has what the analysis reads (see `hotkeys`, `hotslot`).
        match analysis {
            Analysis::Hotkey => {
                hotkeys::probe(&self.conn, &topology, &target.hotkey_source).await?
            }
            Analysis::Hotslot => hotslot::probe(&self.conn, &topology).await?,
            Analysis::Bigkey | Analysis::Keyfamily => {}
        }
        let record = {
            let mut t = self.lock();
            t.next_id += 1;
            let id = format!("{}-{}-{}", analysis.as_str(), created as u64, t.next_id);
            let record = TaskRecord {
                id,
                instance_id: Some(target.id.clone()),
                status: TaskStatus::Waiting,
                scan_type: Some(ScanType::Manual),
                created_at: Some(timestamp::format_unix(created)),
                started_at: None,
                finished_at: None,
                num: None,
                keys: None,
            };
            let list = t.of(analysis);
            while list.len() >= KEPT_TASKS {
                list.pop_front();
            }
            list.push_back(Entry {
                record: record.clone(),
                abort: None,
                error: None,
            });
            record
        };
        if analysis == Analysis::Hotslot {
            let collect = hotslot::Collect {
                target: (*target).clone(),
                conn: self.conn.clone(),
                store: self.store.clone(),
                clock: self.clock,
                tasks: self.tasks.clone(),
                task_id: record.id.clone(),
                created,
                topology,
                baselines: self.slot_polls.clone(),
            };
            self.started(&record.id, analysis, runtime::spawn(collect.go()));
            return Ok(record);
        }
        let run = Run {
            target: (*target).clone(),
            conn: self.conn.clone(),
            store: self.store.clone(),
            clock: self.clock,
            tasks: self.tasks.clone(),
            analysis,
            task_id: record.id.clone(),
            created,
            topology,
        };
        self.started(&record.id, analysis, runtime::spawn(run.go()));
        Ok(record)
    }

    fn show_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskRecord>> + Send {
        let out = self.check_target(instance_id).and_then(|()| {
            let mut t = self.lock();
            let e = t
                .of(analysis)
                .iter()
                .find(|e| e.record.id == task_id)
                .ok_or_else(|| Error::TaskNotFound {
                    target: instance_id.to_owned(),
                    analysis: analysis.as_str(),
                    task_id: task_id.to_owned(),
                })?;
            match &e.error {
                Some(err) => Err(err.clone()),
                None => Ok(e.record.clone()),
            }
        });
        std::future::ready(out)
    }
}
