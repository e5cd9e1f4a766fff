//! dcs-key-exporter: a Prometheus exporter for the hot key and big key analyses of Huawei Cloud
//! DCS (managed Redis).
//!
//! # Layout
//! Data flows from top to bottom:
//! - [`config`]: the YAML config file, read raw and validated into typed settings.
//! - [`dcs`]: the DCS API: models, request signing, IAM tokens, the reqwest client.
//! - [`simulator`]: an in-process DCS API simulator sharing the client's models; powers `--demo`,
//!   `simulate` and the tests.
//! - [`fleet`]: which instances this replica analyses: discovery (ListInstances with filters,
//!   refreshed), explicit entries merged in, sharding over replicas.
//! - [`scheduler`]: one supervised loop per instance and analysis that creates or adopts tasks,
//!   polls them and publishes their results.
//! - [`metrics`]: the snapshot the scheduler writes and its rendering in the Prometheus text format.
//! - [`server`]: the hyper HTTP server: `/metrics`, the status page, health, readiness, reload.
//! - [`demo`]: `--demo`: the embedded simulator and the config pointing at it.
//! - [`app`]: wires the pieces together for the binary: `run(config, listener, shutdown)`.
//! - [`cli`]: the command line, checked into the settings of each command, and the
//!   `check-config` report; `main.rs` only wires it to [`app`].
#![forbid(unsafe_code)]

pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod dcs;
pub mod demo;
pub mod fleet;
pub mod metrics;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod simulator;
pub mod supervisor;

/// The source revision this binary was built from: the short git commit of the checkout, the
/// `DCS_EXPORTER_REVISION` environment variable given to the build (the Docker build has no
/// `.git`), or `unknown` (see `build.rs`). Exported as `dcs_exporter_build_info{revision}`.
pub const REVISION: &str = env!("DCS_EXPORTER_REVISION");

/// What `--version` prints after the program name: the crate version and [`REVISION`].
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("DCS_EXPORTER_REVISION"),
    ")"
);
