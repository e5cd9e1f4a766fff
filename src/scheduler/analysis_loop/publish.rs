//! Publishing a result: into the store (keys, or key families by shard), with the times that
//! set the cadence of the next task.

use std::time::Duration;

use tracing::{info, warn};

use super::{AnalysisLoop, Published, REMEMBERED_IDS};
use crate::dcs::{timestamp, Analysis, TaskRecord};
use crate::metrics::store::TaskOrigin;
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    pub(super) fn publish(&mut self, task: &TaskRecord, origin: Option<TaskOrigin>) {
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
        self.supported();
    }

    pub(super) fn remember_created(&mut self, id: &str) {
        if self.created.len() == REMEMBERED_IDS {
            self.created.pop_front();
        }
        self.created.push_back(id.to_owned());
    }
}
