//! The list call at the start of a cycle: it publishes a successful record newer than the
//! published result (DCS auto-scan, a console run, a task followed by a previous process) and
//! finds the task waiting or running now.

use std::collections::HashSet;

use super::{AnalysisLoop, Survey, LIST_LIMIT};
use crate::dcs::{self, timestamp, TaskListQuery, TaskStatus};
use crate::metrics::store::TaskOrigin;
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// Lists the tasks; publishes the newest successful record if it is newer than the
    /// published one; returns the newest active task.
    pub(super) async fn survey(&mut self) -> Result<Survey, C::Error> {
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
    pub(super) fn is_newer(&self, id: &str, time: Option<f64>, trusted: bool, newly: bool) -> bool {
        match &self.published {
            None => true,
            Some(p) if p.id == id => false,
            Some(p) => match (time, p.time) {
                (Some(t), Some(pt)) if trusted && p.trusted => t > pt,
                _ => newly,
            },
        }
    }
}
