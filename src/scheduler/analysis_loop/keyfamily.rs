//! The key family analysis' own steps in the loop.
//!
//! The key family analysis (the DCS offline key analysis of a backup, see
//! [`crate::scheduler::offline`]) runs through the same loop with its own list, show and create
//! steps: one task covers one shard, so the cadence counts per shard (the shard whose result is
//! oldest is due next), the status comes from the list only, and DCS.4231 on create leads to
//! adoption like DCS.4918.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::debug;

use super::{AnalysisLoop, LIST_LIMIT};
use crate::dcs::{self, timestamp, TaskListQuery, TaskRecord, TaskStatus};
use crate::metrics::store::TaskOrigin;
use crate::scheduler::offline::{Created, ShardSeen};
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Key families: publishes the newest successful existing result of each shard that has
    /// none yet, newest first, with at most a couple of show calls beyond one per shard (list
    /// records do not tell their shard).
    pub(super) async fn ingest_shards(&mut self) -> Result<(), C::Error> {
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
    pub(super) fn shard_seen(&self) -> BTreeMap<String, ShardSeen> {
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

    /// Time left until the oldest shard's result is one interval old (zero while a known shard
    /// has none).
    pub(super) fn until_oldest_shard_due(&self) -> Duration {
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
        self.until_interval_after(oldest)
    }

    /// Creates the task of the shard that is due, if any.
    pub(super) async fn create_for_shard(&mut self) -> Result<Option<TaskRecord>, C::Error> {
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
}
