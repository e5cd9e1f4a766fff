//! The outcome of a config reload (SIGHUP, `POST /-/reload`), as one type shared by the
//! application loop that reloads and the HTTP handler that reports it.

use tokio::sync::oneshot;

use super::ConfigError;

/// Why a reload was refused. The previous config keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new config loads, but a cloud's DCS client cannot be built from it.
    #[error("cannot create the DCS client for cloud {cloud}: {source}")]
    Client {
        cloud: String,
        source: crate::dcs::Error,
    },
    /// The thread reading the config failed.
    #[error("reading the config failed: {0}")]
    Loader(String),
}

/// What a reload request is answered with.
pub type ReloadResult = Result<(), ReloadError>;

/// A reload request: the sender the answer goes to.
pub type ReloadRequest = oneshot::Sender<ReloadResult>;
