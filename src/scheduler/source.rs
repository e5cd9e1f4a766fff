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
//! Errors are the source's own type; the loop asks them the questions it acts on
//! ([`SourceError`]): "unsupported?", "already running?", "may it have been carried out?" and
//! which failure reason to count.
//!
//! The key family analysis (the DCS offline key analysis of a backup, see [`super::offline`])
//! has steps of its own: the shards and their nodes, a list whose records carry the status, a
//! show that carries the families, and a create that picks a shard and a backup. They are
//! methods of the trait too, with defaults that refuse: a source that offers no key family
//! analysis (a Redis target, whose families come from its big key scan) never runs them.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use super::backoff::UNSUPPORTED_RECHECK;
use super::offline::{self, Created, ShardSeen, Topology};
use crate::dcs::{self, Analysis, DcsApi, OfflineTaskDetails, TaskList, TaskListQuery, TaskRecord};
use crate::metrics::store::FailureReason;

/// The questions the analysis loop asks of a failed source call.
pub trait SourceError: std::error::Error + Send + Sync + 'static {
    /// The instance does not support this analysis (counted as `unsupported`, re-checked
    /// after [`AnalysisSource::unsupported_recheck`]).
    fn is_unsupported(&self) -> bool;
    /// A task of this analysis already runs; the loop lists and adopts it.
    fn is_already_running(&self) -> bool;
    /// The `reason` label of `dcs_analysis_failures_total` for this error.
    fn failure_reason(&self) -> FailureReason;

    /// Whether the request may have been carried out although it failed (a create whose answer
    /// was lost): the loop then lists before it creates again.
    fn is_outcome_unknown(&self) -> bool {
        false
    }

    /// An answer the loop refuses although the source gave it (e.g. a success that counts
    /// keys but lists none).
    fn malformed(operation: &'static str, message: String) -> Self
    where
        Self: Sized;

    /// An analysis step this source does not offer.
    fn not_offered(what: &'static str) -> Self
    where
        Self: Sized;
}

/// Where analysis tasks live: DCS, or the exporter itself.
///
/// All methods are cancel-safe: dropping the future abandons the call.
pub trait AnalysisSource: Send + Sync + 'static {
    type Error: SourceError;

    /// How long an analysis this source found unsupported waits before asking again, for an
    /// analysis run every `interval` (a config reload asks at once in any case). By default
    /// a day, or the interval when longer: on DCS the answer depends on the engine version and
    /// the instance's configuration, which rarely change, and asking creates a task.
    fn unsupported_recheck(&self, interval: Duration) -> Duration {
        UNSUPPORTED_RECHECK.max(interval)
    }

    /// The loop of this analysis of this instance stopped: the analysis was removed or turned
    /// off, or its loop restarts with other settings. A source that runs tasks itself stops
    /// the one running (a restarted loop then starts its own, with the new settings); the
    /// loop's stop token has fired already, so what the old loop sees afterwards counts for
    /// nothing. By default nothing happens: a DCS task runs on, and a new loop adopts it.
    fn stop_tasks(&self, _instance_id: &str, _analysis: Analysis) {}

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

    /// Key families: the shards of the instance and the nodes that hold their data.
    fn keyfamily_nodes(
        &self,
        _instance_id: &str,
    ) -> impl Future<Output = Result<Topology, Self::Error>> + Send {
        async { Err(Self::Error::not_offered("key family analysis")) }
    }

    /// Key families: the task list (the status of a task is only there).
    fn keyfamily_list(
        &self,
        _instance_id: &str,
        _query: &TaskListQuery,
    ) -> impl Future<Output = Result<TaskList, Self::Error>> + Send {
        async { Err(Self::Error::not_offered("key family analysis")) }
    }

    /// Key families: a task's record, and its result once it succeeded.
    fn keyfamily_show(
        &self,
        _instance_id: &str,
        _task_id: &str,
    ) -> impl Future<Output = Result<(TaskRecord, Option<OfflineTaskDetails>), Self::Error>> + Send
    {
        async { Err(Self::Error::not_offered("key family analysis")) }
    }

    /// Key families: creates the task of the shard that is due, if any (see
    /// [`offline::create`]).
    #[allow(clippy::too_many_arguments)]
    fn keyfamily_create(
        &self,
        _instance_id: &str,
        _fresh_backup: bool,
        _seen: &BTreeMap<String, ShardSeen>,
        _due_before: f64,
        _now_unix: f64,
        _topology: &mut Topology,
    ) -> impl Future<Output = Result<Created, Self::Error>> + Send {
        async { Err(Self::Error::not_offered("key family analysis")) }
    }
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

    fn is_outcome_unknown(&self) -> bool {
        dcs::Error::is_outcome_unknown(self)
    }

    fn malformed(operation: &'static str, message: String) -> Self {
        dcs::Error::Decode {
            operation,
            status: 200,
            message,
        }
    }

    fn not_offered(what: &'static str) -> Self {
        dcs::Error::Decode {
            operation: what,
            status: 0,
            message: format!("{what} is not offered by this source"),
        }
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

    fn keyfamily_nodes(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = dcs::Result<Topology>> + Send {
        offline::shard_nodes(self, instance_id)
    }

    fn keyfamily_list(
        &self,
        instance_id: &str,
        query: &TaskListQuery,
    ) -> impl Future<Output = dcs::Result<TaskList>> + Send {
        offline::list(self, instance_id, query)
    }

    fn keyfamily_show(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> impl Future<Output = dcs::Result<(TaskRecord, Option<OfflineTaskDetails>)>> + Send {
        offline::show(self, instance_id, task_id)
    }

    fn keyfamily_create(
        &self,
        instance_id: &str,
        fresh_backup: bool,
        seen: &BTreeMap<String, ShardSeen>,
        due_before: f64,
        now_unix: f64,
        topology: &mut Topology,
    ) -> impl Future<Output = dcs::Result<Created>> + Send {
        offline::create(
            self,
            instance_id,
            fresh_backup,
            seen,
            due_before,
            now_unix,
            topology,
        )
    }
}
