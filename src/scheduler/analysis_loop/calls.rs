//! The source calls of one loop: list, show and create for its analysis, each under the
//! global concurrency limit and the loop's stop token.

use std::future::Future;

use super::AnalysisLoop;
use crate::dcs::{self, Analysis, TaskList, TaskListQuery, TaskRecord};
use crate::scheduler::source::AnalysisSource;

impl<C: AnalysisSource> AnalysisLoop<C> {
    /// The list call of this analysis.
    pub(super) async fn list_any(&self, query: TaskListQuery) -> Result<TaskList, C::Error> {
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
    pub(super) async fn show_any(&mut self, task_id: &str) -> Result<TaskRecord, C::Error> {
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
    pub(super) async fn create_any(&mut self) -> Result<Option<TaskRecord>, C::Error> {
        if self.analysis != Analysis::Keyfamily {
            return self
                .call(|c, id, a| async move { c.create_task(id, a).await })
                .await
                .map(Some);
        }
        self.create_for_shard().await
    }

    /// Runs one call under the global concurrency limit, which the DCS client's attempts take
    /// one permit of at a time.
    pub(super) async fn call<'a, T, F, Fut>(&'a self, f: F) -> Result<T, C::Error>
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
