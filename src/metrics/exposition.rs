//! The `/metrics` body: the snapshot rendering, cached per store generation, plus the exporter's
//! own registry.
//!
//! The snapshot part (per key, per analysis, per instance) can be tens of thousands of series
//! and only changes when the scheduler writes to the [`Store`], so it is rendered (and
//! gzip-compressed) once per store generation and reused by every scrape until the generation
//! changes. The registry part (API request metrics, build info, reload status, process metrics)
//! is small and changes all the time, so it is encoded on every scrape.
//!
//! A gzip body is the cached gzip member of the snapshot part followed by a separately compressed
//! member for the registry part. Concatenated members form one valid gzip stream (RFC 1952 §2.2)
//! that decoders such as Go's `compress/gzip` (used by Prometheus) read as a whole, so the large
//! part is never recompressed per scrape.

use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use prometheus::{Encoder, IntGauge, Opts, Registry, TextEncoder};

use super::api::ApiMetrics;
use super::render::{render_snapshot, RenderOptions};
use super::store::Store;

/// Renders `/metrics` bodies from a store and the exporter's own registry.
pub struct Exposition {
    store: Arc<Store>,
    registry: Registry,
    api: ApiMetrics,
    reload_ok: IntGauge,
    /// Fixed at creation: the registry's metrics were created under it.
    namespace: String,
    cache: Mutex<Cache>,
}

/// The snapshot part of the last rendering and what it was rendered from.
struct Cache {
    opts: RenderOptions,
    /// Store generation of `plain`/`gzip`; `None` when they are stale.
    generation: Option<u64>,
    plain: Bytes,
    gzip: Bytes,
    /// Snapshot renderings done so far (for tests and debugging).
    renders: u64,
}

impl Exposition {
    /// Creates the exposition and its registry: API request metrics,
    /// `{ns}_exporter_build_info`, `{ns}_exporter_config_last_reload_successful` (starting at 1:
    /// an exposition is only built from a config that loaded) and the `process_*` metrics.
    ///
    /// Fails if the namespace is not a valid metric name prefix.
    pub fn new(store: Arc<Store>, opts: RenderOptions) -> prometheus::Result<Exposition> {
        Self::build(store, opts, true)
    }

    fn build(
        store: Arc<Store>,
        opts: RenderOptions,
        process: bool,
    ) -> prometheus::Result<Exposition> {
        let ns = opts.namespace.clone();
        let registry = Registry::new();
        let api = ApiMetrics::register(&registry, &ns)?;

        let build_info = IntGauge::with_opts(
            Opts::new(
                "exporter_build_info",
                "Version and source revision of this exporter; always 1.",
            )
            .namespace(ns.as_str())
            .const_label("version", env!("CARGO_PKG_VERSION"))
            .const_label(
                "revision",
                option_env!("DCS_EXPORTER_REVISION").unwrap_or("unknown"),
            ),
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

        Ok(Exposition {
            store,
            registry,
            api,
            reload_ok,
            namespace: ns,
            cache: Mutex::new(Cache {
                opts,
                generation: None,
                plain: Bytes::new(),
                gzip: Bytes::new(),
                renders: 0,
            }),
        })
    }

    /// Handles to the API request metrics, for the DCS clients.
    pub fn api_metrics(&self) -> ApiMetrics {
        self.api.clone()
    }

    /// The render options in force (the status page shows key names the way /metrics does).
    pub fn render_options(&self) -> RenderOptions {
        self.lock().opts.clone()
    }

    /// The exporter's own registry and the namespace its metrics use, for other parts of the
    /// exporter that register metrics of their own (discovery and shard metrics).
    pub fn registry(&self) -> (&Registry, &str) {
        (&self.registry, &self.namespace)
    }

    /// Sets `{ns}_exporter_config_last_reload_successful`.
    pub fn set_config_reload_successful(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
    }

    /// Replaces the render options (after a config reload) and drops the cached rendering.
    ///
    /// The namespace cannot change at run time (the registry's metrics, whose handles the
    /// clients hold, were created under it): a different namespace is ignored with a warning
    /// and takes effect after a restart.
    pub fn set_render_options(&self, mut opts: RenderOptions) {
        if opts.namespace != self.namespace {
            tracing::warn!(
                current = %self.namespace,
                requested = %opts.namespace,
                "the metrics namespace cannot change at run time; restart to apply it"
            );
            opts.namespace.clone_from(&self.namespace);
        }
        let mut cache = self.lock();
        cache.opts = opts;
        cache.generation = None;
    }

    /// The body for one scrape, gzip-compressed if `gzip`.
    ///
    /// The snapshot part is re-rendered only when the store's generation changed; the registry
    /// part is encoded on every call. Never waits on anything but the store's lock for a cheap
    /// clone of the snapshot.
    pub fn render(&self, gzip: bool) -> Bytes {
        let (plain, gz) = self.snapshot_part();
        let mut registry_text = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut registry_text) {
            tracing::warn!(error = %e, "could not encode the exporter's own metrics");
            registry_text.clear();
        }
        if gzip {
            let tail = gzip_member(&registry_text);
            let mut body = Vec::with_capacity(gz.len() + tail.len());
            body.extend_from_slice(&gz);
            body.extend_from_slice(&tail);
            Bytes::from(body)
        } else if registry_text.is_empty() {
            plain
        } else {
            let mut body = Vec::with_capacity(plain.len() + registry_text.len());
            body.extend_from_slice(&plain);
            body.extend_from_slice(&registry_text);
            Bytes::from(body)
        }
    }

    /// How many times the snapshot part has been rendered.
    pub fn snapshot_renders(&self) -> u64 {
        self.lock().renders
    }

    /// The cached snapshot part (plain, gzip), rendered first if the store changed.
    fn snapshot_part(&self) -> (Bytes, Bytes) {
        // Holding the cache lock while rendering makes concurrent scrapes share one rendering.
        let mut cache = self.lock();
        if cache.generation == Some(self.store.generation()) {
            return (cache.plain.clone(), cache.gzip.clone());
        }
        // Results are behind `Arc`s, so the clone is cheap and the store's writers wait only
        // for it, not for the rendering. The generation is read under the same lock so it
        // matches the snapshot exactly.
        let (generation, snapshot) = self.store.read(|s| (self.store.generation(), s.clone()));
        let mut out = Vec::with_capacity(cache.plain.len().max(4096));
        render_snapshot(&snapshot, &cache.opts, &mut out);
        cache.gzip = Bytes::from(gzip_member(&out));
        cache.plain = Bytes::from(out);
        cache.generation = Some(generation);
        cache.renders += 1;
        (cache.plain.clone(), cache.gzip.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // The cache is rebuilt from the store when in doubt, so a poisoned lock is harmless.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// One complete gzip member holding `data`.
fn gzip_member(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    match enc.write_all(data).and_then(|()| enc.finish()) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "gzip compression failed");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::dcs::{Analysis, KeyRecord, KeyType, ScanType, SizeUnit, TaskRecord, TaskStatus};
    use crate::metrics::keylabel::KeyLabelMode;
    use crate::metrics::store::{AnalysisSpec, InstanceSpec};

    fn store() -> Arc<Store> {
        let store = Arc::new(Store::new());
        store.configure(&[InstanceSpec {
            id: "i1".into(),
            name: "orders".into(),
            lfu_log_factor: 10,
            analyses: vec![AnalysisSpec {
                analysis: Analysis::Hotkey,
                top_n: 10,
                mode: "trigger",
                interval: std::time::Duration::from_secs(900),
            }],
        }]);
        store
    }

    fn publish(store: &Store, id: &str, finished: &str, key: &str) {
        let task = TaskRecord {
            id: id.into(),
            instance_id: Some("i1".into()),
            status: TaskStatus::Success,
            scan_type: Some(ScanType::Manual),
            created_at: Some("2024-01-01T00:00:00Z".into()),
            started_at: Some("2024-01-01T00:00:01Z".into()),
            finished_at: Some(finished.into()),
            num: None,
            keys: Some(vec![KeyRecord {
                name: key.into(),
                key_type: Some(KeyType::String),
                shard: None,
                db: Some(0),
                size: Some(10),
                unit: Some(SizeUnit::Byte),
                freq: Some(20),
            }]),
        };
        assert!(store.publish("i1", Analysis::Hotkey, &task));
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn gzip_body_decompresses_to_the_plain_body() {
        let store = store();
        publish(&store, "t1", "2024-01-01T00:00:09Z", "user:1");
        // Without the process collector nothing in the registry moves between the two calls.
        let exp = Exposition::build(store, RenderOptions::default(), false).expect("valid");
        exp.api_metrics()
            .observe("ListHotKeyScanTasks", Some(200), 0.2);
        let plain = exp.render(false);
        let gz = exp.render(true);
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
        assert_eq!(gunzip(&gz), plain.to_vec());

        let text = std::str::from_utf8(&plain).expect("UTF-8");
        assert!(text.contains(r#"dcs_hotkey_frequency{instance_id="i1",instance_name="orders",key="user:1",key_type="string",db="0",shard=""} 20"#));
        assert!(text.contains(&format!(
            "dcs_exporter_build_info{{revision=\"{}\",version=\"{}\"}} 1\n",
            option_env!("DCS_EXPORTER_REVISION").unwrap_or("unknown"),
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("dcs_exporter_config_last_reload_successful 1\n"));
        assert!(text.contains(
            "dcs_api_requests_total{code=\"200\",operation=\"ListHotKeyScanTasks\"} 1\n"
        ));
        exp.set_config_reload_successful(false);
        let text = exp.render(false);
        let text = std::str::from_utf8(&text).expect("UTF-8");
        assert!(text.contains("dcs_exporter_config_last_reload_successful 0\n"));
    }

    #[test]
    fn snapshot_part_is_rendered_once_per_generation() {
        let store = store();
        publish(&store, "t1", "2024-01-01T00:00:09Z", "user:1");
        let exp = Exposition::build(store.clone(), RenderOptions::default(), false).expect("ok");
        let first = exp.render(false);
        let again = exp.render(true);
        let third = exp.render(false);
        assert_eq!(exp.snapshot_renders(), 1);
        assert_eq!(first, third);
        assert_eq!(gunzip(&again), first.to_vec());

        // A newer result: re-rendered, old key gone.
        publish(&store, "t2", "2024-01-01T00:10:00Z", "user:2");
        let next = exp.render(false);
        assert_eq!(exp.snapshot_renders(), 2);
        let text = std::str::from_utf8(&next).expect("UTF-8");
        assert!(text.contains("key=\"user:2\""));
        assert!(!text.contains("key=\"user:1\""));

        // New options invalidate the cache even without a store change.
        exp.set_render_options(RenderOptions {
            namespace: "other".into(),
            key_label: KeyLabelMode::Hash,
        });
        let hashed = exp.render(false);
        assert_eq!(exp.snapshot_renders(), 3);
        let text = std::str::from_utf8(&hashed).expect("UTF-8");
        assert!(!text.contains("user:2"));
        // The namespace stays the one the registry was built with.
        assert!(text.contains("dcs_hotkey_frequency{"));
        assert!(!text.contains("other_"));
    }

    #[test]
    fn process_metrics_have_no_namespace() {
        let exp = Exposition::new(store(), RenderOptions::default()).expect("valid");
        let body = exp.render(false);
        let text = std::str::from_utf8(&body).expect("UTF-8");
        if cfg!(target_os = "linux") {
            assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        }
        assert!(!text.contains("dcs_process_"));
    }

    #[test]
    fn invalid_namespace_is_an_error() {
        let opts = RenderOptions {
            namespace: "bad-name".into(),
            ..RenderOptions::default()
        };
        assert!(Exposition::new(store(), opts).is_err());
    }
}
