//! The exporter's own metrics registry: what `/metrics` shows about the exporter itself.
//!
//! One explicit [`Registry`] (never the global one) holds `{ns}_exporter_build_info`,
//! `{ns}_exporter_config_last_reload_successful`, the `process_*` metrics, and what other
//! modules register in it: the DCS API request metrics ([`crate::dcs::ApiMetrics`]) and the
//! discovery and shard metrics ([`crate::fleet`]). These change all the time, so they are not
//! cached with the snapshot rendering ([`super::exposition`]): they are encoded at most once per
//! [`REGISTRY_MAX_AGE`] and appended to every body, as plain text and as the final stored block
//! of the gzip member.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flate2::Crc;
use prometheus::{Encoder, IntGauge, Opts, Registry, TextEncoder};
use tokio::time::Instant;

use super::body::stored_last;
use crate::dcs::ApiMetrics;

/// How long the encoded registry part (API request metrics, process metrics) is reused.
pub const REGISTRY_MAX_AGE: Duration = Duration::from_secs(1);

/// The labels of `{ns}_exporter_build_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

impl BuildInfo {
    /// This build: the crate version and its source revision ([`crate::REVISION`]).
    pub const CURRENT: BuildInfo = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: crate::REVISION,
    };
}

/// The registry part of a body, encoded at `at`.
pub(super) struct RegistryPart {
    at: Instant,
    pub(super) text: Bytes,
    /// `text` as the final stored deflate block(s) of a gzip body.
    pub(super) stored: Bytes,
    pub(super) crc: Crc,
}

/// The exporter's own registry, the handles to what it records, and its last encoding.
pub(super) struct OwnMetrics {
    registry: Registry,
    api: ApiMetrics,
    reload_ok: IntGauge,
    /// Fixed at creation: the registry's metrics were created under it.
    namespace: String,
    cache: Mutex<Option<Arc<RegistryPart>>>,
}

impl OwnMetrics {
    /// Creates the registry under `namespace`: API request metrics, build info, reload status
    /// (starting at 1) and, with `process`, the `process_*` metrics.
    pub(super) fn new(
        namespace: &str,
        build: BuildInfo,
        process: bool,
    ) -> prometheus::Result<OwnMetrics> {
        let ns = namespace.to_owned();
        let registry = Registry::new();
        let api = ApiMetrics::register(&registry, &ns)?;

        let build_info = IntGauge::with_opts(
            Opts::new(
                "exporter_build_info",
                "Version and source revision of this exporter; always 1.",
            )
            .namespace(ns.as_str())
            .const_label("version", build.version)
            .const_label("revision", build.revision),
        )?;
        build_info.set(1);
        registry.register(Box::new(build_info))?;

        let reload_ok = IntGauge::with_opts(
            Opts::new(
                "exporter_config_last_reload_successful",
                "1 if the last load or reload of the configuration file succeeded, else 0.",
            )
            .namespace(ns.as_str()),
        )?;
        reload_ok.set(1);
        registry.register(Box::new(reload_ok.clone()))?;

        if process {
            registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))?;
        }

        Ok(OwnMetrics {
            registry,
            api,
            reload_ok,
            namespace: ns,
            cache: Mutex::new(None),
        })
    }

    pub(super) fn api_metrics(&self) -> ApiMetrics {
        self.api.clone()
    }

    pub(super) fn registry(&self) -> (&Registry, &str) {
        (&self.registry, &self.namespace)
    }

    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Sets `{ns}_exporter_config_last_reload_successful`.
    pub(super) fn set_config_reload_successful(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        // Shown at once, not after the registry part's cache expires.
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The encoded registry, at most [`REGISTRY_MAX_AGE`] old.
    pub(super) fn part(&self) -> Arc<RegistryPart> {
        let mut cached = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cached.as_ref() {
            if r.at.elapsed() < REGISTRY_MAX_AGE {
                return r.clone();
            }
        }
        let mut text = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(error = %e, "could not encode the exporter's own metrics");
            text.clear();
        }
        let mut crc = Crc::new();
        crc.update(&text);
        let part = Arc::new(RegistryPart {
            at: Instant::now(),
            stored: Bytes::from(stored_last(&text)),
            text: Bytes::from(text),
            crc,
        });
        *cached = Some(part.clone());
        part
    }
}
