//! The seam between "where an analysis result comes from" and the scheduler.
//!
//! The analysis loop needs three things of a source: list the tasks of one analysis of one
//! instance, create one, and show one. [`AnalysisSource`] is exactly that, in DCS task terms
//! (ids, `waiting`/`running`/`success`/`failed`, created/started/finished timestamps, key
//! records), and nothing more.
//!
//! # Why this shape
//! Two designs were possible: a narrower "give me a result" trait that each source drives
//! itself, or the task lifecycle the loop already follows. The second keeps one code path: the
//! loop's adoption, timeout, backoff, failure accounting and publishing stay exactly as they
//! are for DCS (every [`DcsApi`] is a source through a blanket impl, so the DCS path does not
//! change at all), and a source the exporter runs itself ([`crate::native`]) only has to keep a
//! small local task table. Store, exposition and the status page then cannot tell the sources
//! apart, which is what the metrics contract asks for.
//!
//! Errors are the source's own type; the loop asks them the three questions it acts on
//! ([`SourceError`]): "unsupported?", "already running?" and which failure reason to count.

use std::future::Future;

use crate::dcs::{self, Analysis, DcsApi, TaskList, TaskListQuery, TaskRecord};
use crate::metrics::store::FailureReason;

/// The questions the analysis loop asks of a failed source call.
pub trait SourceError: std::error::Error + Send + Sync + 'static {
    /// The instance does not support this analysis (counted as `unsupported`, re-checked
    /// rarely).
    fn is_unsupported(&self) -> bool;
    /// A task of this analysis already runs; the loop lists and adopts it.
    fn is_already_running(&self) -> bool;
    /// The `reason` label of `dcs_analysis_failures_total` for this error.
    fn failure_reason(&self) -> FailureReason;
}

/// Where analysis tasks live: DCS, or the exporter itself.
///
/// All methods are cancel-safe: dropping the future abandons the call.
pub trait AnalysisSource: Send + Sync + 'static {
    type Error: SourceError;

    /// The task records of one analysis of one instance (order not guaranteed).
    fn list_tasks(
        &self,
        instance_id: &str,
        analysis: Analysis,
        query: &TaskListQuery,
    ) -> impl Future<Output = Result<TaskList, Self::Error>> + Send;

    /// Starts a new task.
    fn create_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
    ) -> impl Future<Output = Result<TaskRecord, Self::Error>> + Send;

    /// One task with its keys once it succeeded.
    fn show_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskRecord, Self::Error>> + Send;
}

impl SourceError for dcs::Error {
    fn is_unsupported(&self) -> bool {
        dcs::Error::is_unsupported(self)
    }

    fn is_already_running(&self) -> bool {
        dcs::Error::is_already_running(self)
    }

    fn failure_reason(&self) -> FailureReason {
        FailureReason::from_error(self)
    }
}

impl<C: DcsApi> AnalysisSource for C {
    type Error = dcs::Error;

    fn list_tasks(
        &self,
        instance_id: &str,
        analysis: Analysis,
        query: &TaskListQuery,
    ) -> impl Future<Output = dcs::Result<TaskList>> + Send {
        DcsApi::list_tasks(self, instance_id, analysis, query)
    }

    fn create_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
    ) -> impl Future<Output = dcs::Result<TaskRecord>> + Send {
        DcsApi::create_task(self, instance_id, analysis)
    }

    fn show_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> impl Future<Output = dcs::Result<TaskRecord>> + Send {
        DcsApi::show_task(self, instance_id, analysis, task_id)
    }
}
