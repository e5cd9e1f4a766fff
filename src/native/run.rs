//! One scan of a target, running as its own task on the scan threads and writing its outcome
//! into the target's task table: every shard side by side, each on the node it is read on,
//! a node whose server changed under the scan scanned again from the start, and the progress
//! published every second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tracing::{info, warn};

use super::conn::Connector;
use super::error::{Error, Result};
use super::families::{FamilyObserver, FamilyTable, TRACKED_FAMILIES};
use super::pace::{Counter, Pace, Stall};
use super::resp::NoTouch;
use super::scan::{self, NoObserver};
use super::topology::{keyspace, Node, Topology, Unit};
use super::walk::Guard;
use super::{runtime, Tasks, PROGRESS_EVERY};
use crate::config::redis::{RedisTarget, STALL_LIMIT};
use crate::dcs::{timestamp, Analysis, KeyRecord, ScanType, TaskRecord, TaskStatus};
use crate::metrics::store::{ScanProgress, Store, Touch};
use crate::scheduler::{Clock, SourceError};

/// Times a node's scan starts over after its server restarted or was flushed under it,
/// before the scan fails with `server_changed`.
pub const MAX_RESTARTS: u32 = 2;

/// One scan.
pub(super) struct Run {
    pub target: RedisTarget,
    pub conn: Arc<Connector>,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub tasks: Arc<Mutex<Tasks>>,
    pub analysis: Analysis,
    pub task_id: String,
    pub created: f64,
    pub topology: Topology,
}

/// What one shard's scan gives: its keys, and its key families when they were built.
type ShardResult = (Vec<KeyRecord>, Option<(Option<String>, FamilyTable)>);

impl Run {
    fn update(&self, f: impl FnOnce(&mut TaskRecord), error: Option<Error>) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).update(
            self.analysis,
            &self.task_id,
            f,
            error,
        );
    }

    pub async fn go(self) {
        debug_assert!(
            runtime::on_scan_threads(),
            "a scan run off the scan threads"
        );
        let settings = *self.target.analysis(self.analysis);
        // The loop gives up following at the timeout; the scan stops there too, so that a
        // timed-out scan does not go on loading the server. With `auto` that is only a far
        // bound: the scan is cut off when it stalls (see `scan`).
        let left = settings.timeout.saturating_sub(Duration::from_secs_f64(
            (self.clock.now_unix() - self.created).max(0.0),
        ));
        let outcome = std::panic::AssertUnwindSafe(tokio::time::timeout(left, self.scan()))
            .catch_unwind()
            .await;
        let now = self.clock.now_unix();
        self.store
            .set_progress(&self.target.id, self.analysis, None);
        match outcome {
            Ok(Ok(Ok(keys))) => {
                info!(target = %self.target.id, analysis = %self.analysis, keys = keys.len(),
                    "scan finished");
                self.update(
                    |r| {
                        r.status = TaskStatus::Success;
                        r.finished_at = Some(timestamp::format_unix(now));
                        r.num = Some(keys.len() as i64);
                        r.keys = Some(keys);
                    },
                    None,
                );
            }
            other => {
                let (why, error) = match other {
                    Ok(Ok(Err(e))) => (format!("{e}"), Some(e)),
                    Ok(Err(_)) => (
                        format!(
                            "stopped at the {} timeout",
                            crate::config::duration::format(settings.timeout)
                        ),
                        None,
                    ),
                    Err(_) => ("the scan panicked".to_owned(), None),
                    Ok(Ok(Ok(_))) => unreachable!("handled above"),
                };
                warn!(target = %self.target.id, analysis = %self.analysis, error = %why,
                    "scan failed");
                self.update(
                    |r| {
                        r.status = TaskStatus::Failed;
                        r.finished_at = Some(timestamp::format_unix(now));
                    },
                    error,
                );
            }
        }
    }

    async fn scan(&self) -> Result<Vec<KeyRecord>> {
        let settings = *self.target.analysis(self.analysis);
        let pace = Pace {
            keys_per_second: self.target.keys_per_second,
            top_n: settings.top_n,
        };
        let started = self.clock.now_unix();
        self.update(
            |r| {
                r.status = TaskStatus::Running;
                r.started_at = Some(timestamp::format_unix(started));
            },
            None,
        );
        // Which node each shard is read on, and its counter.
        let mut plan = Vec::new();
        for unit in &self.topology.units {
            let node = match self.analysis {
                Analysis::Bigkey | Analysis::Keyfamily => scan::bigkey_node(&self.conn, unit).await,
                Analysis::Hotkey | Analysis::Hotslot => unit.master.clone(),
            };
            plan.push((unit, node, Counter::default()));
        }
        self.report_touch(&plan.iter().map(|(_, n, _)| n.clone()).collect::<Vec<_>>())
            .await?;
        // The keys of every node, for the progress; each node's count is read again when its
        // scan starts (over).
        let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
        for (_, node, _) in &plan {
            let dbs = keyspace(&self.conn.info(node, "keyspace").await?);
            total.fetch_add(
                dbs.iter().map(|(_, n)| n).sum::<u64>(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let limit = self.target.scan_timeout(self.analysis);
        let deadline = limit.map(|t| self.created + t.as_secs_f64());
        self.warn_if_too_short(
            &plan,
            total.load(std::sync::atomic::Ordering::Relaxed),
            pace,
        );
        // The progress, every second; with `timeout: auto`, also the watchdog that ends a
        // scan that walked no key for `STALL_LIMIT`.
        let progress = {
            let counters: Vec<&Counter> = plan.iter().map(|(_, _, c)| c).collect();
            let store = self.store.clone();
            let id = self.target.id.clone();
            let analysis = self.analysis;
            let clock = self.clock;
            let total = total.clone();
            async move {
                let mut stall = Stall::new(STALL_LIMIT);
                loop {
                    let scanned: u64 = counters.iter().map(|c| c.get()).sum();
                    store.set_progress(
                        &id,
                        analysis,
                        Some(ScanProgress {
                            keys_scanned: scanned,
                            keys_total: total.load(std::sync::atomic::Ordering::Relaxed),
                            started_at: started,
                            at: clock.now_unix(),
                            deadline,
                        }),
                    );
                    if stall.stalled(scanned) && limit.is_none() {
                        return Error::Stalled {
                            target: id,
                            message: format!(
                                "the scan walked no key for {} (timeout: auto)",
                                crate::config::duration::format(STALL_LIMIT)
                            ),
                        };
                    }
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
            }
        };
        // Shards are scanned side by side, each at its own node's budget.
        let scans = plan
            .iter()
            .map(|(unit, node, counter)| self.scan_node(unit, node, pace, counter));
        let all = tokio::select! {
            r = futures_util::future::try_join_all(scans) => r?,
            stalled = progress => return Err(stalled),
        };
        let mut keys = Vec::new();
        let mut tables = Vec::new();
        for (k, t) in all {
            keys.extend(k);
            tables.extend(t);
        }
        if self.with_families() {
            self.publish_families(started, tables);
        }
        Ok(keys)
    }

    /// Warns when the target's own timeout is shorter than a scan of its largest node takes
    /// at the node's budget: the scan will be cut off (the status page and
    /// `dcs_analysis_scan_deadline_timestamp_seconds` say so while it runs).
    fn warn_if_too_short(&self, plan: &[(&Unit, Node, Counter)], total: u64, pace: Pace) {
        let Some(limit) = self.target.scan_timeout(self.analysis) else {
            return;
        };
        let nodes = plan.len().max(1) as u64;
        // Shards are scanned side by side: the largest share decides; an even spread is
        // assumed when only the total is known.
        let expected = Duration::from_secs_f64(
            (total / nodes) as f64 / f64::from(pace.keys_per_second.max(1)),
        );
        if expected > limit {
            warn!(target = %self.target.id, analysis = %self.analysis,
                keys = total, timeout = %crate::config::duration::format(limit),
                expected = %crate::config::duration::format(expected),
                "the scan cannot finish before its timeout at this throttle; set the target's \
                 timeout to auto, or raise it or throttle.keys_per_second");
        }
    }

    /// Publishes whether this scan's reads touch keys (their LFU counter and idle time), from
    /// what `CLIENT NO-TOUCH ON` got on each node's connection, and logs it when it changed.
    async fn report_touch(&self, nodes: &[Node]) -> Result<()> {
        let mut why = Vec::new();
        for node in nodes {
            self.conn.get(node).await?;
            match self.conn.no_touch(node) {
                Some(NoTouch::Refused) => why.push(format!(
                    "{}: CLIENT NO-TOUCH refused to the ACL user (add +client|no-touch)",
                    node.label()
                )),
                Some(NoTouch::NotOffered) => why.push(format!(
                    "{}: no CLIENT NO-TOUCH before Redis 7.2",
                    node.label()
                )),
                _ => {}
            }
        }
        let touch = Touch {
            touches: !why.is_empty(),
            why: if why.is_empty() {
                "CLIENT NO-TOUCH is on: the scans change no LFU counter or idle time".to_owned()
            } else {
                why.join("; ")
            },
        };
        if self.conn.touch_changed(touch.touches) && touch.touches {
            warn!(target = %self.target.id, reason = %touch.why,
                "scans of this target count as accesses to the keys they size (LFU counters and \
                 idle times change; hot key rankings include the scans' reads)");
        }
        self.store.set_touch(&self.target.id, self.analysis, touch);
        Ok(())
    }

    fn with_families(&self) -> bool {
        self.analysis == Analysis::Bigkey && self.target.families_on()
    }

    /// Scans one node, again from the start (up to [`MAX_RESTARTS`] times) when its server
    /// restarted or was flushed under the scan.
    async fn scan_node(
        &self,
        unit: &Unit,
        node: &Node,
        pace: Pace,
        counter: &Counter,
    ) -> Result<ShardResult> {
        let mut restarts = 0;
        loop {
            match self.scan_node_once(unit, node, pace, counter).await {
                Err(Error::Changed { message, .. }) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    warn!(target = %self.target.id, analysis = %self.analysis,
                        node = %node.label(), restart = restarts, reason = %message,
                        "scanning the node again from the start");
                    counter.take_back(counter.get());
                }
                r => return r,
            }
        }
    }

    async fn scan_node_once(
        &self,
        unit: &Unit,
        node: &Node,
        pace: Pace,
        counter: &Counter,
    ) -> Result<ShardResult> {
        let guard = Guard::new(&self.conn, node).await?;
        let dbs = keyspace(&self.conn.info(node, "keyspace").await?);
        let conn = &self.conn;
        match self.analysis {
            Analysis::Bigkey if self.with_families() => {
                let mut obs = FamilyObserver::new(&self.target.families, TRACKED_FAMILIES);
                let keys =
                    scan::bigkeys(conn, &guard, unit, node, &dbs, pace, counter, &mut obs).await?;
                Ok((keys, Some((unit.shard.clone(), obs.table))))
            }
            Analysis::Bigkey => scan::bigkeys(
                conn,
                &guard,
                unit,
                node,
                &dbs,
                pace,
                counter,
                &mut NoObserver,
            )
            .await
            .map(|k| (k, None)),
            // From the node's hot key source (the LFU scan among them).
            Analysis::Hotkey => {
                let ctx = super::hotkeys::Ctx {
                    target_id: &self.target.id,
                    task_id: &self.task_id,
                    settings: &self.target.hotkey_source,
                    engine: &self.topology.engine,
                    store: &self.store,
                };
                super::hotkeys::scan_node(ctx, conn, &guard, unit, &dbs, pace, counter)
                    .await
                    .map(|k| (k, None))
            }
            Analysis::Keyfamily | Analysis::Hotslot => Err(<Error as SourceError>::not_offered(
                "this analysis as a scan",
            )),
        }
    }

    /// Publishes the key families a successful big key scan built, shard by shard, under
    /// `analysis="keyfamily"`; shards the target no longer has are dropped. Only a scan that
    /// covered every shard gets here, so the families never mix a partial walk in.
    fn publish_families(&self, started: f64, tables: Vec<(Option<String>, FamilyTable)>) {
        let now = self.clock.now_unix();
        let task = TaskRecord {
            id: self.task_id.clone(),
            instance_id: Some(self.target.id.clone()),
            status: TaskStatus::Success,
            scan_type: Some(ScanType::Manual),
            created_at: Some(timestamp::format_unix(self.created)),
            started_at: Some(timestamp::format_unix(started)),
            finished_at: Some(timestamp::format_unix(now)),
            num: None,
            keys: None,
        };
        let mut shards = Vec::new();
        for (shard, table) in tables {
            let shard = shard.unwrap_or_default();
            let fams = table.finish(&shard, &self.task_id, Some(now));
            self.store.publish_families(
                &self.target.id,
                Analysis::Keyfamily,
                &task,
                shard.clone(),
                fams,
            );
            shards.push(shard);
        }
        self.store
            .retain_shards(&self.target.id, Analysis::Keyfamily, &shards);
    }
}
