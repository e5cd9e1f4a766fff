//! The integration tests, linked into one binary: one module per area, sharing the harness in
//! [`common`]. Run one area with `cargo test --test it exporter::` (module paths are filters).
//!
//! Files the tests read are found from `CARGO_MANIFEST_DIR` (`tests/fixtures/`, `tests/golden/`,
//! `deploy/`), the real binary from `CARGO_BIN_EXE_dcs-key-exporter`.

mod common;

mod client;
mod config_fixtures;
mod exporter;
mod fleet;
mod golden;
mod hardening;
mod hostile_data;
mod hostile_redis;
mod hotkey_sources;
mod key_privacy;
mod keyfamily;
mod native;
mod native_acl;
mod native_big;
mod native_families;
mod native_hot;
mod native_matrix;
mod native_reload;
mod native_truth;
mod process;
mod reliability;
mod secrets;
mod self_hosted;
mod simulator;
mod web_config;
