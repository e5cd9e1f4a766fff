//! Metrics: the snapshot the scheduler fills and its Prometheus text rendering.
//!
//! # Layout
//! - [`store`]: the snapshot of results, failures and running tasks per instance and analysis.
//! - [`api`]: the exporter's own API request metrics (explicit registry).

pub mod api;
pub mod store;
