//! The exporter's own Redis protocol client: one bounded, pipelined connection per node.
//!
//! Every byte a target sends is read under a limit sized from what the command asked can
//! legitimately answer, and every answer is checked against that command, so that whatever a
//! target does (a broken proxy, a compromised host, a different service on the port) costs
//! the exporter bounded memory, descriptors and time, and never a wrong result:
//!
//! - [`codec`]: RESP2 and RESP3 replies, measured under [`Limits`] before they are buffered.
//! - [`raw`]: opening a connection (TCP, TLS, `AUTH`, `CLIENT NO-TOUCH`, `READONLY`), with
//!   errors that say when the server seems to speak TLS or plain text instead.
//! - [`connection`]: the pipelined connection every scan of a node shares: `SELECT` between
//!   databases, answers kept in step with the commands, limits per reply.
//! - [`permits`]: the process-wide cap on open connections.
//! - [`stream`]: a dedicated connection reading a stream of lines (`MONITOR`), long ones
//!   skipped unbuffered.
//! - [`tls`]: the rustls settings of a `rediss://` target.

pub mod codec;
pub mod connection;
pub mod permits;
pub mod raw;
pub mod stream;
pub mod tls;

pub use codec::{Limits, ServerError, Value};
pub use connection::Connection;
pub use raw::{Endpoint, NoTouch, RawConn, Setup, CONNECT_TIMEOUT};

use std::time::Duration;

/// Why talking to a node failed (the connection is unusable after any of these).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// No connection could be made (refused, unknown host, TLS, too many connections).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the credentials or a command of the connection's setup.
    #[error("{0}")]
    Auth(String),
    /// The connection broke or was closed.
    #[error("connection lost: {0}")]
    Lost(String),
    /// No answer in time.
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    /// A reply past the limits of its command.
    #[error("reply too large: {0}")]
    TooLarge(String),
    /// A reply that cannot answer the command sent, or is not RESP.
    #[error("{0}")]
    Protocol(String),
    /// The server answered the connection's setup with an error.
    #[error("{0}")]
    Server(ServerError),
}

impl ConnError {
    /// Whether a new connection may do better (the socket broke or timed out).
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnError::Lost(_) | ConnError::Timeout(_))
    }
}

/// The shape of answer a command may give (a server error fits every command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Any,
    Int,
    IntOrNil,
    /// A status line (`+OK`).
    Status,
    /// A bulk string or a status line.
    Text,
    TextOrNil,
    Array,
    /// `SCAN`: a cursor and an array of names.
    Scan,
    /// A map (RESP3) or its RESP2 form, an array.
    MapOrArray,
}

impl Expect {
    /// Whether `v` can answer a command expecting this.
    pub fn fits(self, v: &Value) -> bool {
        if matches!(v, Value::Error(_)) {
            return true;
        }
        match self {
            Expect::Any => true,
            Expect::Int => matches!(v, Value::Int(_)),
            Expect::IntOrNil => matches!(v, Value::Int(_) | Value::Nil),
            Expect::Status => matches!(v, Value::Simple(_)),
            Expect::Text => matches!(v, Value::Bulk(_) | Value::Simple(_)),
            Expect::TextOrNil => matches!(v, Value::Bulk(_) | Value::Simple(_) | Value::Nil),
            Expect::Array => matches!(v, Value::Array(_)),
            Expect::Scan => match v {
                Value::Array(a) => {
                    a.len() == 2
                        && a[0].as_int().is_some_and(|c| c >= 0)
                        && matches!(&a[1], Value::Array(keys)
                            if keys.iter().all(|k| matches!(k, Value::Bulk(_))))
                }
                _ => false,
            },
            Expect::MapOrArray => matches!(v, Value::Map(_) | Value::Array(_)),
        }
    }
}

/// One command with the shape and limits of its answer.
#[derive(Clone, Debug)]
pub struct Cmd {
    name: &'static str,
    args: Vec<Vec<u8>>,
    expect: Expect,
    limits: Limits,
}

impl Cmd {
    /// A command from its name, which may hold a subcommand (`"MEMORY USAGE"`); answers
    /// anything small until [`Cmd::expect`] says otherwise.
    pub fn new(name: &'static str) -> Cmd {
        Cmd {
            name,
            args: name.split(' ').map(|w| w.as_bytes().to_vec()).collect(),
            expect: Expect::Any,
            limits: Limits::SMALL,
        }
    }

    pub fn arg(mut self, a: impl AsRef<[u8]>) -> Cmd {
        self.args.push(a.as_ref().to_vec());
        self
    }

    /// The shape and limits of the answer.
    pub fn expect(mut self, expect: Expect, limits: Limits) -> Cmd {
        self.expect = expect;
        self.limits = limits;
        self
    }

    /// The command's name, for messages (`MEMORY USAGE`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn expected(&self) -> Expect {
        self.expect
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let args: Vec<&[u8]> = self.args.iter().map(Vec::as_slice).collect();
        codec::encode(out, &args);
    }
}

/// Opens a pipelined connection to `ep` (holding one of `permits`) and starts it on the
/// calling runtime.
pub async fn connect(
    ep: &Endpoint,
    setup: Setup,
    permits: &permits::Permits,
) -> Result<Connection, ConnError> {
    let permit = permits.acquire(CONNECT_TIMEOUT).await?;
    let mut raw = RawConn::open(ep).await?;
    let no_touch = match tokio::time::timeout(CONNECT_TIMEOUT, raw.handshake(ep, setup)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ConnError::Connect(format!(
                "no answer to the first commands within {}s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    };
    Ok(Connection::start(raw, permit, no_touch))
}

#[cfg(test)]
mod tests;
