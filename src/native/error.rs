//! Errors of the exporter's own analyses of Redis and Valkey targets.
//!
//! Every variant names the node (`host:port`, never credentials) and maps onto the bounded
//! `reason` label of `dcs_analysis_failures_total` through [`SourceError`]. Whatever a server
//! said is quoted cut and escaped ([`super::resp::codec::printable`]), never whole.

use super::resp::{ConnError, ServerError};
use crate::metrics::store::FailureReason;
use crate::scheduler::SourceError;

/// Result type of the native analyses.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed call to a Redis or Valkey node, or a refused task operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The node could not be reached, or the connection broke or timed out.
    #[error("{node}: {message}")]
    Connection { node: String, message: String },
    /// The node refused the credentials, or the ACL user lacks a command.
    #[error("{node}: not allowed: {message}")]
    Auth { node: String, message: String },
    /// The server answered with an error that is not about permissions: it is loading its
    /// data, busy with a script, out of memory, a cluster that is down…
    #[error("{node}: the server refused: {message}")]
    Server { node: String, message: String },
    /// The server cannot do this analysis (hot keys without an LFU policy).
    #[error("{node}: {message}")]
    Unsupported { node: String, message: String },
    /// The server restarted, or its keyspace was flushed, while the scan ran: what was read
    /// describes no single state of the server, so it is not published.
    #[error("{node}: {message}")]
    Changed { node: String, message: String },
    /// A scan whose timeout is `auto` walked no key for a long time.
    #[error("{target}: {message}")]
    Stalled { target: String, message: String },
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
    /// The server's answer was not what the command returns (too large, out of step, of the
    /// wrong shape).
    #[error("{node}: unexpected answer: {message}")]
    Protocol { node: String, message: String },
}

impl Error {
    /// The error of a connection to `node`.
    pub fn from_conn(node: &str, e: ConnError) -> Error {
        let node = node.to_owned();
        match e {
            ConnError::Auth(message) => Error::Auth { node, message },
            ConnError::Connect(_) | ConnError::Lost(_) | ConnError::Timeout(_) => {
                Error::Connection {
                    node,
                    message: e.to_string(),
                }
            }
            ConnError::TooLarge(_) | ConnError::Protocol(_) => Error::Protocol {
                node,
                message: e.to_string(),
            },
            ConnError::Server(e) => Error::from_server(&node, "", &e),
        }
    }

    /// The error of a server error answering `command` on `node`.
    pub fn from_server(node: &str, command: &str, e: &ServerError) -> Error {
        let node = node.to_owned();
        let message = if command.is_empty() {
            e.to_string()
        } else {
            format!("{command}: {e}")
        };
        match e.code() {
            "NOPERM" | "NOAUTH" | "WRONGPASS" => Error::Auth { node, message },
            _ => Error::Server { node, message },
        }
    }

    /// Whether a new connection may do better.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Connection { .. })
    }
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
            Error::Connection { .. } => FailureReason::Connection,
            Error::Server { .. } => FailureReason::ServerError,
            Error::Protocol { .. } => FailureReason::ProtocolError,
            Error::Changed { .. } => FailureReason::ServerChanged,
            Error::Stalled { .. } => FailureReason::Timeout,
            Error::AlreadyRunning { .. } | Error::TaskNotFound { .. } => FailureReason::ApiError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_map_to_reasons_a_user_can_act_on() {
        let e = |line: &str| Error::from_server("h:1", "TYPE", &ServerError::new(line.as_bytes()));
        let noperm = e("NOPERM this user has no permissions to run the 'type' command");
        assert_eq!(noperm.failure_reason(), FailureReason::Auth);
        assert!(noperm.to_string().contains("TYPE: NOPERM"), "{noperm}");
        for code in [
            "LOADING",
            "BUSY",
            "MASTERDOWN",
            "READONLY",
            "OOM",
            "CLUSTERDOWN",
        ] {
            let err = e(&format!("{code} something"));
            assert_eq!(err.failure_reason(), FailureReason::ServerError, "{code}");
        }
        let lost = Error::from_conn("h:1", ConnError::Lost("reset".into()));
        assert_eq!(lost.failure_reason(), FailureReason::Connection);
        assert!(lost.is_transient());
        let big = Error::from_conn("h:1", ConnError::TooLarge("a string of 9 bytes".into()));
        assert_eq!(big.failure_reason(), FailureReason::ProtocolError);
        assert!(big.to_string().contains("reply too large"), "{big}");
    }
}
