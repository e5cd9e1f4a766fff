//! dcs-key-exporter: a Prometheus exporter for the hot key and big key analyses of Huawei Cloud
//! DCS (managed Redis), and of self-hosted Redis and Valkey servers it analyses itself.
//!
//! # Layout
//! Data flows from top to bottom:
//! - [`config`]: the YAML config file, read raw and validated into typed settings.
//! - [`dcs`]: the DCS API: models, request signing, IAM tokens, the reqwest client and the
//!   metrics of its requests.
//! - [`simulator`]: an in-process DCS API simulator sharing the client's models; powers `--demo`,
//!   `simulate` and the tests.
//! - [`native`]: Redis and Valkey servers the exporter analyses itself (SCAN, pipelined sizes,
//!   `MEMORY USAGE`, `OBJECT FREQ`, `HOTKEYS`, bounded `MONITOR` samples, `CLUSTER
//!   SLOT-STATS`), behind the same task lifecycle as DCS.
//! - [`fleet`]: which instances this replica analyses: discovery (ListInstances with filters,
//!   refreshed), explicit entries merged in, sharding over replicas.
//! - [`scheduler`]: one supervised loop per instance and analysis that creates or adopts tasks,
//!   polls them and publishes their results, written against one seam
//!   ([`scheduler::AnalysisSource`]) that DCS and native targets both implement.
//! - [`metrics`]: the snapshot the scheduler writes and its rendering in the Prometheus text format.
//! - [`server`]: the hyper HTTP server: `/metrics`, the status page, health, readiness, reload.
//! - [`demo`]: `--demo`: the embedded simulator and the config pointing at it.
//! - [`app`]: wires the pieces together for the binary: `run(config, listener, shutdown)`.
//! - [`cli`]: the command line, checked into the settings of each command, and the
//!   `check-config` report; `main.rs` only wires it to [`app`].
//!
//! Beside them, four leaves that import nothing from the crate: [`secret`] (a value that never
//! prints), [`backoff`] (the one retry backoff with jitter), [`supervisor`] (named tasks whose
//! panics, errors and early ends are seen) and [`heap`] (freed memory given back after the
//! fleet shrinks).
//!
//! # Layers
//! A module imports only from its own layer's leaves or from layers below it:
//!
//! | layer | modules | imports from |
//! |---|---|---|
//! | 0 | [`secret`], [`backoff`], [`supervisor`], [`heap`]; [`metrics::keylabel`], [`metrics::keyrewrite`], [`metrics::compact`], [`metrics::body`] (which uses [`metrics::compact`]) | nothing else in the crate |
//! | 1 | [`dcs`] | 0 |
//! | 2 | [`metrics`] (store, families, render, exposition), [`simulator`], then [`config`] | 0–1; [`config`] also the family naming rules of [`metrics::families`] |
//! | 3 | [`scheduler`] | 0–2 |
//! | 4 | [`fleet`], [`server`] | 0–3 |
//! | 5 | [`native`], [`demo`] | 0–4 ([`native`] implements the scheduler's seam and uses the fleet's sharding) |
//! | 6 | [`cli`], [`app`] | everything below |
//!
//! Within a module the files form no cycle either: in [`server`], `web_config` depends on
//! `tls` and `auth`, never the reverse; in [`dcs`], `client` depends on `iam` and `error`
//! (which maps error answers), and all of them on `transport` (reading and quoting answers)
//! and `metrics` (the API request metrics, which [`dcs`] owns as [`fleet`] owns its own),
//! which import nothing else from the crate; in [`simulator`], `http` depends on `routes`,
//! `views`, `faults` and `reply`, and `reply` on nothing of those; in [`metrics`],
//! `exposition` depends on `registry` (the exporter's own metrics), never the reverse.
//! In [`config`], the validator (`validate`, one file per part of the file) depends on `raw`
//! and on the types it produces (`redis`), neither of which imports it. In [`simulator`], `state` and
//! `offline` share `refusal` and do not import each other. In [`scheduler`], `analysis_loop`
//! depends on `source` and `offline`, never the reverse. The scheduler is generic over the
//! native source type (`Scheduler<C, N>`), so it does not name [`native`].
//!
//! Unsafe code is denied. Three calls into the C library are the exceptions, each in one
//! function: `sched_setscheduler`, which marks the scan threads as background work
//! ([`native::runtime`]; no safe wrapper offers it without also resetting the thread's nice
//! value), glibc's `malloc_trim`, which gives freed memory back after the fleet shrinks
//! ([`heap`]), and `fstatfs`, which tells a configured file on procfs or sysfs from a real one
//! ([`config::file`]).
#![deny(unsafe_code)]

pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod dcs;
pub mod demo;
pub mod fleet;
pub mod heap;
pub mod metrics;
pub mod native;
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
