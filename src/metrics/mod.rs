//! Metrics: the snapshot the scheduler fills and its Prometheus text rendering.
//!
//! # Layout
//! - [`store`]: the snapshot of results, failures and running tasks per instance and analysis.
//! - [`families`]: key families (keys and memory by key pattern) and their top-K bound.
//! - [`hot`]: what native hot key and hot slot analyses add: each node's source, hot slots.
//! - [`keylabel`]: how a key name becomes the `key` label (cut with a hash suffix, or a digest).
//! - [`keylist`]: the exported keys of a result, held packed.
//! - [`render`]: the snapshot in the Prometheus text format (per key, per analysis, per instance).
//! - [`body`]: response bodies made of shared pieces; deflate fragments joined into one gzip member.
//! - [`compact`]: exposition text kept compact (label blocks once) and written out while sent.
//! - [`exposition`]: the `/metrics` body: the cached snapshot rendering (plain and gzip) with
//!   the encoded registry appended.
//! - [`registry`]: the exporter's own metrics registry (build info, reload status, process
//!   metrics, and the metrics that [`crate::dcs`] and [`crate::fleet`] register in it).

pub mod body;
pub mod compact;
pub mod exposition;
pub mod families;
pub mod hot;
pub mod keylabel;
pub mod keylist;
pub mod keyrewrite;
pub mod registry;
pub mod render;
pub mod store;
