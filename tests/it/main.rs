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
mod hotkey_sources;
mod key_privacy;
mod keyfamily;
mod native;
mod native_families;
mod native_hot;
mod process;
mod reliability;
mod secrets;
mod simulator;
mod web_config;
