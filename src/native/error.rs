//! Errors of the exporter's own analyses of Redis and Valkey targets.
//!
//! Every variant names the node (`host:port`, never credentials) and maps onto the bounded
//! `reason` label of `dcs_analysis_failures_total` through [`SourceError`].

use crate::metrics::store::FailureReason;
use crate::scheduler::SourceError;

/// Result type of the native analyses.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed call to a Redis or Valkey node, or a refused task operation.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached, the connection broke, or a command failed.
    #[error("{node}: {message}")]
    Redis { node: String, message: String },
    /// The node refused the credentials, or the ACL user lacks a command.
    #[error("{node}: not allowed: {message}")]
    Auth { node: String, message: String },
    /// The server cannot do this analysis (hot keys without an LFU policy).
    #[error("{node}: {message}")]
    Unsupported { node: String, message: String },
    /// A task of this analysis already runs for the target.
    #[error("a {analysis} analysis of {target} is already running")]
    AlreadyRunning {
        target: String,
        analysis: &'static str,
    },
    /// No such task in the target's table.
    #[error("no {analysis} task {task_id} for {target}")]
    TaskNotFound {
        target: String,
        analysis: &'static str,
        task_id: String,
    },
    /// The server's answer was not what the command returns.
    #[error("{node}: unexpected answer: {message}")]
    Protocol { node: String, message: String },
}

impl Error {
    /// Classifies a client error from `node`.
    pub fn from_redis(node: &str, e: &redis::RedisError) -> Error {
        let message = e.to_string();
        let code = e.code().unwrap_or_default();
        let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
            || matches!(code, "NOPERM" | "WRONGPASS" | "NOAUTH");
        if auth {
            Error::Auth {
                node: node.to_owned(),
                message,
            }
        } else {
            Error::Redis {
                node: node.to_owned(),
                message,
            }
        }
    }
}

/// Whether retrying on a new connection may help (the connection broke or timed out).
pub fn retryable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

impl SourceError for Error {
    fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }

    fn is_already_running(&self) -> bool {
        matches!(self, Error::AlreadyRunning { .. })
    }

    fn malformed(operation: &'static str, message: String) -> Self {
        Error::Protocol {
            node: operation.to_owned(),
            message,
        }
    }

    fn not_offered(what: &'static str) -> Self {
        Error::Unsupported {
            node: String::new(),
            message: format!("{what} is not offered for Redis and Valkey targets"),
        }
    }

    fn failure_reason(&self) -> FailureReason {
        match self {
            Error::Auth { .. } => FailureReason::Auth,
            Error::Unsupported { .. } => FailureReason::Unsupported,
            _ => FailureReason::ApiError,
        }
    }
}
