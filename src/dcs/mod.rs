//! The Huawei Cloud DCS API: typed models, errors, request signing, IAM tokens and the client.
//!
//! # Layout
//! - [`model`]: request and response types shared with the simulator.
//! - [`offline`]: the offline key analysis of a backup (key families), the backup and node
//!   listings, and the choice of backup and nodes.
//! - [`error`]: the client's error enum and the documented error codes.
//! - [`timestamp`]: parsing and formatting DCS timestamps.
//! - [`signer`]: SDK-HMAC-SHA256 request signing, a pure function of request, credentials and time.
//! - [`iam`]: IAM password → token exchange with caching and renewal.
//! - [`client`]: the reqwest client implementing [`DcsApi`], with timeouts, retries and a body cap.
//! - [`transport`]: reading an answer's bytes and quoting them safely (body cap, excerpts,
//!   credential redaction, JSON repair), shared by [`client`] and [`iam`].
//! - [`limit`]: the limit on requests in flight, which the client takes per attempt.
//! - [`metrics`]: the exporter's own metrics about its API calls, which the client and the IAM
//!   token cache record (this module owns them, as [`crate::fleet`] owns its own).
//!
//! The scheduler talks to DCS only through the [`DcsApi`] trait, so its tests can use a fake.

pub mod client;
pub mod error;
pub mod iam;
pub mod limit;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod signer;
pub mod timestamp;
pub mod transport;

use std::future::Future;
use std::time::Duration;

pub use client::DcsClient;
pub use error::{ApiCode, Error, Result};
pub use metrics::ApiMetrics;
pub use model::*;
pub use offline::{
    BackupList, BackupListQuery, GroupList, NodeList, OfflineAnalysisRequest, OfflineTaskDetails,
    OfflineTaskId, OfflineTaskList,
};

use crate::secret::Secret;

/// The operations of the DCS API this crate uses, for one cloud (project and region).
///
/// All methods are cancel-safe: dropping the future abandons the request.
pub trait DcsApi: Send + Sync + 'static {
    /// `ListHotKeyScanTasks` / `ListBigkeyScanTasks`. The order of records is not documented.
    fn list_tasks(
        &self,
        instance_id: &str,
        analysis: Analysis,
        query: &TaskListQuery,
    ) -> impl Future<Output = Result<TaskList>> + Send;

    /// `CreateHotkeyScanTask` / `CreateBigkeyScanTask`.
    fn create_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
    ) -> impl Future<Output = Result<TaskRecord>> + Send;

    /// `ShowHotkeyTaskDetails` / `ShowBigkeyScanTaskDetails`.
    fn show_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskRecord>> + Send;

    /// `DeleteHotkeyScanTask` / `DeleteBigkeyScanTask`; `None` when the service answers 204.
    fn delete_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<TaskRecord>>> + Send;

    /// `ShowHotkeyAutoscanConfig` / `ShowBigkeyAutoscanConfig`.
    fn show_autoscan(
        &self,
        instance_id: &str,
        analysis: Analysis,
    ) -> impl Future<Output = Result<AutoscanConfig>> + Send;

    /// `UpdateHotkeyAutoScanConfig` / `UpdateBigkeyAutoscanConfig`.
    fn update_autoscan(
        &self,
        instance_id: &str,
        analysis: Analysis,
        config: &AutoscanConfigRequest,
    ) -> impl Future<Output = Result<AutoscanConfig>> + Send;

    /// `ShowInstance`.
    fn show_instance(&self, instance_id: &str)
        -> impl Future<Output = Result<InstanceInfo>> + Send;

    /// `ListInstances` (one page).
    fn list_instances(
        &self,
        query: &InstanceListQuery,
    ) -> impl Future<Output = Result<InstanceList>> + Send;

    /// `ListOfflineKeyAnalysisTask`: the offline key analyses and their status (the only place
    /// their status is told).
    fn list_offline_tasks(
        &self,
        instance_id: &str,
        query: &TaskListQuery,
    ) -> impl Future<Output = Result<OfflineTaskList>> + Send {
        let _ = (instance_id, query);
        not_offered("ListOfflineKeyAnalysisTask")
    }

    /// `CreateOfflineKeyAnalysis`.
    fn create_offline_task(
        &self,
        instance_id: &str,
        request: &OfflineAnalysisRequest,
    ) -> impl Future<Output = Result<OfflineTaskId>> + Send {
        let _ = (instance_id, request);
        not_offered("CreateOfflineKeyAnalysis")
    }

    /// `ShowOfflineKeyAnalysisTask`: inputs and result, no status.
    fn show_offline_task(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> impl Future<Output = Result<OfflineTaskDetails>> + Send {
        let _ = (instance_id, task_id);
        not_offered("ShowOfflineKeyAnalysisTask")
    }

    /// `DeleteOfflineKeyAnalysisTask`.
    fn delete_offline_task(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> impl Future<Output = Result<OfflineTaskId>> + Send {
        let _ = (instance_id, task_id);
        not_offered("DeleteOfflineKeyAnalysisTask")
    }

    /// `ListBackupRecords` (one page).
    fn list_backups(
        &self,
        instance_id: &str,
        query: &BackupListQuery,
    ) -> impl Future<Output = Result<BackupList>> + Send {
        let _ = (instance_id, query);
        not_offered(offline::OP_LIST_BACKUPS)
    }

    /// `ShowNodesInformation`: the instance's logical nodes.
    fn list_nodes(&self, instance_id: &str) -> impl Future<Output = Result<NodeList>> + Send {
        let _ = instance_id;
        not_offered(offline::OP_SHOW_NODES)
    }

    /// `ListGroupReplicationInfo`: the instance's groups (shards) and their replicas.
    fn list_groups(&self, instance_id: &str) -> impl Future<Output = Result<GroupList>> + Send {
        let _ = instance_id;
        not_offered(offline::OP_LIST_GROUPS)
    }
}

/// The answer of an operation a [`DcsApi`] implementation does not offer (test fakes that only
/// model the scan-task calls); the real client offers every operation.
fn not_offered<T>(operation: &'static str) -> std::future::Ready<Result<T>> {
    std::future::ready(Err(Error::InvalidRequest {
        operation,
        message: "operation not offered by this client".into(),
    }))
}

/// How requests to one cloud are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// AK/SK signing (SDK-HMAC-SHA256), optionally with temporary credentials.
    AkSk {
        access_key: String,
        secret_key: Secret,
        /// Sent (and signed) as `X-Security-Token` with temporary credentials.
        security_token: Option<Secret>,
    },
    /// An IAM token obtained with a password (`POST /v3/auth/tokens`), sent as `X-Auth-Token`.
    Iam {
        /// IAM base URL, e.g. `https://iam.cn-north-4.myhuaweicloud.com`.
        endpoint: url::Url,
        user: String,
        password: Secret,
        /// The account (domain) name.
        domain: String,
        /// The project the token is scoped to (the region name, e.g. `cn-north-4`).
        project_name: String,
    },
}

/// Everything the client needs to talk to one cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// DCS base URL, e.g. `https://dcs.cn-north-4.myhuaweicloud.com` (a path prefix is kept).
    pub endpoint: url::Url,
    pub project_id: String,
    pub auth: Auth,
    /// Limit for one attempt, from connect to the last body byte.
    pub request_timeout: Duration,
    /// Retries after the first attempt, for transport errors, 429 and 5xx only.
    pub max_retries: u32,
    /// First backoff delay; doubled per retry, with full jitter, capped at `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Responses larger than this are refused with [`Error::BodyTooLarge`].
    pub max_body_bytes: usize,
}

impl ClientConfig {
    /// A config with the defaults used when the config file says nothing.
    pub fn new(endpoint: url::Url, project_id: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            endpoint,
            project_id: project_id.into(),
            auth,
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}
