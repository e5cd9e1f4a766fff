//! The `/metrics` body: the snapshot rendering, cached per analysis result and per store
//! generation, plus the exporter's own registry ([`registry`](super::registry)).
//!
//! # What is rendered when
//! - **Per-key families** (tens of thousands of series) change only when an analysis publishes
//!   a new result. The samples of each result are rendered once, per family, into a
//!   [`Compact`] piece and a deflate fragment ([`body`](super::body)), and reused until that
//!   result is replaced (or the instance's name or the render options change).
//! - **Per-analysis and per-instance families** (running flags, failure counters, ...) are
//!   rendered again once per assembly, one family at a time; only those whose text changed are
//!   compressed and compacted again.
//! - **The registry part** (API request metrics, build info, reload status, process metrics)
//!   changes all the time; it is encoded at most once a second ([`registry`](super::registry)).
//!
//! A scrape therefore never renders a key that was already rendered: it takes the cached pieces
//! of the current generation (assembling them first if the store changed) and appends the
//! registry part. Nothing large is copied: the response [`Body`] streams shared pieces.
//!
//! In the exporter, [`Exposition::keep_assembled`] does the assembling in the background, as
//! soon as the store changes (at most once per [`MIN_REASSEMBLY_INTERVAL`]); scrapes then only
//! take the last assembly and never render, so a burst of new results does not show in scrape
//! latency.
//!
//! # gzip
//! The gzip body is one gzip member: a header, the cached deflate fragments in body order, the
//! registry part compressed as the final block, and a trailer whose CRC-32 is combined from the
//! fragments' (see [`body`](super::body)). Any gzip decoder reads it.
//!
//! # Memory
//! No piece of plain text is kept: each is held as a [`Compact`] (label blocks once, a few
//! bytes per sample line) and written out in chunks while a plain scrape is sent, at
//! memory-copy speed. The deflate fragments are held once: after each assembly they are
//! slices of the assembled gzip body, so the fragments and the body that scrapes send share
//! their bytes. Whether a state family changed is told by a digest of its text, so its old
//! text need not be kept either.
//!
//! Results are replaced every few minutes, and their pieces freed among pieces that stay: the
//! background assembler asks [`heap`](crate::heap) to give those pages back to the system
//! after assemblies that replaced results (at most once per [`crate::heap::TRIM_DELAY`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use flate2::{Compression, Crc};
use prometheus::Registry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{crc_copy, gzip_trailer, Body, Deflated, Deflater, Piece, GZIP_HEADER};
use super::compact::{Compact, SetBuilder, SharedPrefix};
use super::registry::OwnMetrics;
pub use super::registry::{BuildInfo, REGISTRY_MAX_AGE};
use super::render::{
    key_family_header, render_key_families_into, render_state_families, KeyFamilies, RenderOptions,
    KEY_FAMILY_COUNT,
};
use super::store::{AnalysisResult, Store};
use crate::dcs::{Analysis, ApiMetrics};

/// Compression of cached fragments: done once per result, so it may take its time.
const CACHED_LEVEL: Compression = Compression::new(6);
/// Compression of what is redone per generation.
const FRESH_LEVEL: Compression = Compression::new(1);
/// How long an assembled snapshot is served before a store change is assembled in: while the
/// scheduler is busy (many changes a second) scrapes reuse one assembly instead of each making
/// their own. Results reach /metrics at most this much later.
pub const MIN_REASSEMBLY_INTERVAL: Duration = Duration::from_millis(250);
/// In the background, the next assembly waits at least this many times as long as the last one
/// took (see [`Exposition::keep_assembled`]).
pub const ASSEMBLY_PAUSE_FACTOR: u32 = 10;
/// Renders `/metrics` bodies from a store and the exporter's own registry.
pub struct Exposition {
    store: Arc<Store>,
    /// The exporter's own metrics; their namespace is fixed at creation.
    own: OwnMetrics,
    cache: Mutex<Cache>,
    /// A copy of the last assembly, for scrapes that arrive while the next one is made.
    last_assembled: Mutex<Option<Arc<Assembled>>>,
    /// Set while [`keep_assembled`](Exposition::keep_assembled) runs.
    background: AtomicBool,
    /// Signalled when the render options change, for `keep_assembled`.
    options_changed: tokio::sync::Notify,
    /// Gives the pages of replaced results back to the system (see the module docs).
    trimmer: Arc<crate::heap::Trimmer>,
}

/// The rendered snapshot part and what it was rendered from.
struct Cache {
    opts: RenderOptions,
    /// Store generation of `assembled`; `None` when it is stale.
    generation: Option<u64>,
    /// HELP/TYPE lines of each per-key family, for `opts`.
    headers: Vec<Fragment>,
    /// Rendered per-key families of each published result, by instance id and analysis.
    units: HashMap<(String, Analysis), Unit>,
    /// The last assembly and when it was made.
    assembled: Option<(Arc<Assembled>, Instant)>,
    /// [`MIN_REASSEMBLY_INTERVAL`]; zero in most tests.
    min_reassembly: Duration,
    /// The per-analysis and per-instance families of the last assembly, one per family, with
    /// a digest of their text (to tell which changed without keeping the text).
    state: Vec<(u64, Fragment)>,
    /// Snapshot assemblies done so far (for tests and debugging).
    renders: u64,
    /// Results rendered so far (for tests and debugging).
    unit_renders: u64,
}

impl Cache {
    /// Calls `f` on every fragment of the snapshot part in body order: each per-key family
    /// (its header, then its samples from every unit in `order`), then the state families.
    fn visit(&mut self, order: &[(String, Analysis)], mut f: impl FnMut(&mut Fragment)) {
        for family in 0..KEY_FAMILY_COUNT {
            let mut announced = false;
            for key in order {
                let Some(unit) = self.units.get_mut(key) else {
                    continue;
                };
                for (_, fragment) in unit.families.iter_mut().filter(|(i, _)| *i == family) {
                    if !announced {
                        announced = true;
                        f(&mut self.headers[family]);
                    }
                    f(fragment);
                }
            }
        }
        for (_, fragment) in &mut self.state {
            f(fragment);
        }
    }
}

/// One piece of text (one metric family of a result, or one state family), compact and
/// compressed.
struct Fragment {
    compact: Arc<Compact>,
    /// After an assembly, its data is a slice of the assembled gzip body.
    deflated: Deflated,
}

impl Fragment {
    /// Fragments of `texts`, whose compact forms share one dictionary (see [`Compact::set`]).
    fn set(texts: &[&[u8]], deflater: &mut Deflater) -> Vec<Fragment> {
        Compact::set(texts)
            .into_iter()
            .zip(texts)
            .map(|(compact, text)| Fragment {
                compact: Arc::new(compact),
                deflated: deflater.fragment(text),
            })
            .collect()
    }
}

/// The per-key families of one result, and what they were rendered from.
struct Unit {
    result: Arc<AnalysisResult>,
    instance_name: String,
    lfu_log_factor: u32,
    /// Family index and its samples; families without samples are left out.
    families: Vec<(usize, Fragment)>,
}

/// The snapshot part of one generation, ready to send.
#[derive(Default)]
struct Assembled {
    plain: Arc<[Piece]>,
    /// The deflate fragments in body order, in one buffer: sent with far fewer writes than
    /// the small fragments one by one.
    gzip: Arc<[Piece]>,
    /// CRC-32 and length of the whole snapshot text.
    crc: Crc,
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

    /// An exposition whose text depends on nothing but the store, what is recorded in its
    /// registry and `build`: no process metrics, and `build` as the build info. For the golden
    /// `/metrics` test (`tests/golden/`), whose file must not change with each release.
    #[doc(hidden)]
    pub fn reproducible(
        store: Arc<Store>,
        opts: RenderOptions,
        build: BuildInfo,
    ) -> prometheus::Result<Exposition> {
        Self::build_with(store, opts, build, false)
    }

    fn build(
        store: Arc<Store>,
        opts: RenderOptions,
        process: bool,
    ) -> prometheus::Result<Exposition> {
        Self::build_with(store, opts, BuildInfo::CURRENT, process)
    }

    fn build_with(
        store: Arc<Store>,
        opts: RenderOptions,
        build: BuildInfo,
        process: bool,
    ) -> prometheus::Result<Exposition> {
        let own = OwnMetrics::new(&opts.namespace, build, process)?;
        Ok(Exposition {
            store,
            own,
            last_assembled: Mutex::new(None),
            background: AtomicBool::new(false),
            options_changed: tokio::sync::Notify::new(),
            trimmer: crate::heap::Trimmer::new(),
            cache: Mutex::new(Cache {
                headers: headers(&opts),
                opts,
                generation: None,
                units: HashMap::new(),
                assembled: None,
                min_reassembly: MIN_REASSEMBLY_INTERVAL,
                state: Vec::new(),
                renders: 0,
                unit_renders: 0,
            }),
        })
    }

    /// Handles to the API request metrics, for the DCS clients.
    pub fn api_metrics(&self) -> ApiMetrics {
        self.own.api_metrics()
    }

    /// The render options in force (the status page shows key names the way /metrics does).
    pub fn render_options(&self) -> RenderOptions {
        self.lock().opts.clone()
    }

    /// The exporter's own registry and the namespace its metrics use, for other parts of the
    /// exporter that register metrics of their own (discovery and shard metrics).
    pub fn registry(&self) -> (&Registry, &str) {
        self.own.registry()
    }

    /// Sets `{ns}_exporter_config_last_reload_successful`.
    pub fn set_config_reload_successful(&self, ok: bool) {
        self.own.set_config_reload_successful(ok);
    }

    /// Replaces the render options (after a config reload) and drops the cached rendering.
    ///
    /// The namespace cannot change at run time (the registry's metrics, whose handles the
    /// clients hold, were created under it): a different namespace is ignored with a warning
    /// and takes effect after a restart.
    pub fn set_render_options(&self, mut opts: RenderOptions) {
        if opts.namespace != self.own.namespace() {
            tracing::warn!(
                current = %self.own.namespace(),
                requested = %opts.namespace,
                "the metrics namespace cannot change at run time; restart to apply it"
            );
            opts.namespace = self.own.namespace().to_owned();
        }
        let mut cache = self.lock();
        cache.headers = headers(&opts);
        cache.opts = opts;
        cache.generation = None;
        cache.units.clear();
        self.options_changed.notify_one();
    }

    /// The body for one scrape, gzip-compressed if `gzip`.
    ///
    /// The snapshot part is assembled again only when the store's generation changed, and then
    /// renders only results that changed; the registry part is encoded on every call. Never
    /// waits on anything but the store's lock for a cheap clone of the snapshot.
    pub fn body(&self, gzip: bool) -> Body {
        let snapshot = self.snapshot_part(true).unwrap_or_default();
        self.with_registry(&snapshot, gzip)
    }

    /// [`body`](Self::body) when it needs no assembly (the usual case: nothing changed, or
    /// the last assembly is younger than [`MIN_REASSEMBLY_INTERVAL`], or another scrape is
    /// assembling right now, or [`keep_assembled`](Self::keep_assembled) is running): cheap
    /// enough for an I/O thread. `None` otherwise.
    pub fn body_if_ready(&self, gzip: bool) -> Option<Body> {
        let snapshot = self.snapshot_part(false)?;
        Some(self.with_registry(&snapshot, gzip))
    }

    /// Keeps the snapshot part assembled until `cancel` fires: assembles it at once, then again
    /// after every store change, at most once per [`MIN_REASSEMBLY_INTERVAL`] (or per
    /// [`ASSEMBLY_PAUSE_FACTOR`] times the last assembly's duration, if longer), on a blocking
    /// thread, and after a change of render options. While this runs,
    /// [`body_if_ready`](Self::body_if_ready) serves the last assembly even when the store has
    /// moved on, so scrapes never wait for rendering.
    pub async fn keep_assembled(self: Arc<Self>, cancel: CancellationToken) {
        self.background.store(true, Ordering::Release);
        loop {
            let exposition = self.clone();
            let started = Instant::now();
            let rendered = self.result_renders();
            if let Err(e) =
                tokio::task::spawn_blocking(move || exposition.snapshot_part(true)).await
            {
                tracing::error!(error = %e, "assembling /metrics failed");
            }
            let took = started.elapsed();
            if self.result_renders() != rendered {
                // Replaced results were freed, among pieces that stay: their pages go back
                // to the system (at most one trim per `heap::TRIM_DELAY`).
                self.trimmer.soon();
            }
            tracing::trace!(?took, "assembled /metrics");
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.store.changed() => {}
                _ = self.options_changed.notified() => {}
            }
            let next = {
                let cache = self.lock();
                // A fleet whose assembly is slow is assembled less often: at most a tenth of a
                // core goes to it, however fast results arrive.
                let pause = cache.min_reassembly.max(took * ASSEMBLY_PAUSE_FACTOR);
                cache.assembled.as_ref().map(|(_, at)| *at + pause)
            };
            if let Some(next) = next {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
        }
        self.background.store(false, Ordering::Release);
    }

    fn with_registry(&self, snapshot: &Assembled, gzip: bool) -> Body {
        let registry = self.own.part();
        if gzip {
            let mut crc = crc_copy(&snapshot.crc);
            crc.combine(&registry.crc);
            Body::new(
                Some(Bytes::from_static(&GZIP_HEADER)),
                snapshot.gzip.clone(),
                vec![
                    registry.stored.clone(),
                    Bytes::copy_from_slice(&gzip_trailer(&crc)),
                ],
            )
        } else {
            Body::new(None, snapshot.plain.clone(), vec![registry.text.clone()])
        }
    }

    /// The whole body for one scrape in one buffer (see [`body`](Self::body)).
    pub fn render(&self, gzip: bool) -> Bytes {
        self.body(gzip).into_bytes()
    }

    /// How many times the snapshot part has been assembled.
    pub fn snapshot_renders(&self) -> u64 {
        self.lock().renders
    }

    /// How many analysis results have been rendered.
    pub fn result_renders(&self) -> u64 {
        self.lock().unit_renders
    }

    /// The snapshot part of the current generation, assembled first if the store changed
    /// (unless the last assembly is younger than [`MIN_REASSEMBLY_INTERVAL`]). Without
    /// `may_assemble`, `None` instead of assembling or waiting for another assembly.
    fn snapshot_part(&self, may_assemble: bool) -> Option<Arc<Assembled>> {
        // Holding the cache lock while assembling makes concurrent scrapes share the work.
        let mut guard = if may_assemble {
            self.lock()
        } else {
            match self.cache.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                // Someone is assembling: serve what was assembled before, if anything.
                Err(std::sync::TryLockError::WouldBlock) => {
                    return self
                        .last_assembled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                }
            }
        };
        let cache = &mut *guard;
        if let Some((a, at)) = &cache.assembled {
            let young = at.elapsed() < cache.min_reassembly;
            let current = cache.generation == Some(self.store.generation());
            // The background assembler is about to catch up: do not do its work here.
            let background = !may_assemble && self.background.load(Ordering::Acquire);
            if young || current || background {
                return Some(a.clone());
            }
        }
        if !may_assemble {
            return None;
        }
        // Results are behind `Arc`s, so the clone is cheap and the store's writers wait only
        // for it, not for the rendering. The generation is read under the same lock so it
        // matches the snapshot exactly.
        let (generation, snapshot) = self.store.read(|s| (self.store.generation(), s.clone()));
        let mut cached = Deflater::new(CACHED_LEVEL);
        let mut units = HashMap::with_capacity(cache.units.len());
        let mut order = Vec::new();
        // Reused for every result rendered: only the compact forms are allocated to be kept.
        let mut texts: KeyFamilies = Default::default();
        for inst in snapshot.instances.values() {
            for (&analysis, state) in &inst.analyses {
                let Some(result) = &state.result else {
                    continue;
                };
                let key = (inst.id.clone(), analysis);
                let unit = match cache.units.remove(&key) {
                    Some(u)
                        if Arc::ptr_eq(&u.result, result)
                            && u.instance_name == inst.name
                            && u.lfu_log_factor == inst.lfu_log_factor =>
                    {
                        u
                    }
                    _ => {
                        cache.unit_renders += 1;
                        render_key_families_into(inst, analysis, result, &cache.opts, &mut texts);
                        let (index, texts): (Vec<usize>, Vec<&[u8]>) = texts
                            .iter()
                            .enumerate()
                            .filter(|(_, text)| !text.is_empty())
                            .map(|(i, text)| (i, text.as_slice()))
                            .unzip();
                        let fragments = Fragment::set(&texts, &mut cached);
                        let families = index.into_iter().zip(fragments).collect();
                        Unit {
                            result: result.clone(),
                            instance_name: inst.name.clone(),
                            lfu_log_factor: inst.lfu_log_factor,
                            families,
                        }
                    }
                };
                order.push(key.clone());
                units.insert(key, unit);
            }
        }
        // Units of results that are gone are dropped here, before the state is rendered.
        cache.units = units;

        // The state families are rendered again, one at a time, but only those whose text
        // changed (a running flag, a counter) are compressed and compacted again, together
        // (they share label blocks). The first rendering only tells which changed (by a
        // digest) and the label prefix their lines share; the second, only if any did, hands
        // each changed family to the compressor and the compact set as it comes, so that no
        // family's text is kept (at 2,000 instances they are 10 MB).
        let mut previous = std::mem::take(&mut cache.state).into_iter();
        let mut state: Vec<(u64, Option<Fragment>)> = Vec::new();
        let mut prefix = SharedPrefix::default();
        render_state_families(&snapshot, &cache.opts, |text| {
            let digest = digest(text);
            match previous.next() {
                Some((d, f)) if d == digest => state.push((digest, Some(f))),
                _ => {
                    state.push((digest, None));
                    prefix.add(text);
                }
            }
        });
        drop(previous);
        if state.iter().any(|(_, f)| f.is_none()) {
            let mut set = SetBuilder::new(prefix.get());
            let mut deflater = Deflater::new(FRESH_LEVEL);
            let mut deflated = Vec::new();
            let mut i = 0;
            render_state_families(&snapshot, &cache.opts, |text| {
                if state.get(i).is_some_and(|(_, f)| f.is_none()) {
                    set.add(text);
                    deflated.push(deflater.fragment(text));
                }
                i += 1;
            });
            let mut fresh = set.finish().into_iter().zip(deflated);
            for (_, f) in state.iter_mut().filter(|(_, f)| f.is_none()) {
                *f = fresh.next().map(|(compact, deflated)| Fragment {
                    compact: Arc::new(compact),
                    deflated,
                });
            }
        }
        drop(snapshot);
        cache.state = state
            .into_iter()
            .filter_map(|(digest, f)| Some((digest, f?)))
            .collect();

        // The gzip body: every fragment copied into one buffer of the exact size, after which
        // the fragments are slices of it (their own buffers, or the previous body, are freed).
        let mut gzip_len = 0;
        let mut plain = Vec::new();
        let mut crc = Crc::new();
        cache.visit(&order, |f| {
            gzip_len += f.deflated.data.len();
            plain.push(Piece::Compact(f.compact.clone()));
            crc.combine(&f.deflated.crc);
        });
        let mut gzip = Vec::with_capacity(gzip_len);
        cache.visit(&order, |f| gzip.extend_from_slice(&f.deflated.data));
        let gzip = Bytes::from(gzip);
        let mut at = 0;
        cache.visit(&order, |f| {
            let len = f.deflated.data.len();
            f.deflated.data = gzip.slice(at..at + len);
            at += len;
        });

        let assembled = Arc::new(Assembled {
            plain: plain.into(),
            gzip: vec![Piece::Bytes(gzip)].into(),
            crc,
        });
        cache.assembled = Some((assembled.clone(), Instant::now()));
        cache.generation = Some(generation);
        cache.renders += 1;
        *self
            .last_assembled
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(assembled.clone());
        Some(assembled)
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // The cache is rebuilt from the store when in doubt, so a poisoned lock is harmless.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("namespace", &self.own.namespace())
            .finish_non_exhaustive()
    }
}

/// A digest of a state family's text, to tell whether it changed since the last assembly
/// (SipHash with fixed keys: a change goes unnoticed with a chance of 2^-64).
fn digest(text: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(text);
    h.finish()
}

/// The HELP/TYPE lines of every per-key family, as fragments.
fn headers(opts: &RenderOptions) -> Vec<Fragment> {
    let texts: Vec<Vec<u8>> = (0..KEY_FAMILY_COUNT)
        .map(|i| {
            let mut text = Vec::new();
            key_family_header(i, &opts.namespace, &mut text);
            text
        })
        .collect();
    let texts: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    Fragment::set(&texts, &mut Deflater::new(CACHED_LEVEL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::{Analysis, KeyRecord, KeyType, ScanType, SizeUnit, TaskRecord, TaskStatus};
    use crate::metrics::body::tests::gunzip;
    use crate::metrics::keylabel::KeyLabelMode;
    use crate::metrics::render::render_snapshot;
    use crate::metrics::store::{AnalysisSpec, FailureReason, InstanceSpec, RunningTask};

    fn store() -> Arc<Store> {
        let store = Arc::new(Store::new());
        store.configure(&[InstanceSpec {
            id: "i1".into(),
            name: "orders".into(),
            lfu_log_factor: 10,
            native: false,
            analyses: vec![AnalysisSpec {
                analysis: Analysis::Hotkey,
                top_n: 10,
                mode: "trigger",
                interval: std::time::Duration::from_secs(900),
            }],
        }]);
        store
    }

    /// A successful hot key task of `instance` with `keys`.
    fn success(id: String, instance: &str, finished: &str, keys: Vec<KeyRecord>) -> TaskRecord {
        TaskRecord {
            id,
            instance_id: Some(instance.into()),
            status: TaskStatus::Success,
            scan_type: Some(ScanType::Manual),
            created_at: Some("2024-01-01T00:00:00Z".into()),
            started_at: Some("2024-01-01T00:00:01Z".into()),
            finished_at: Some(finished.into()),
            num: None,
            keys: Some(keys),
        }
    }

    fn publish(store: &Store, id: &str, finished: &str, key: &str) {
        let key = KeyRecord {
            name: key.into(),
            key_type: Some(KeyType::String),
            shard: None,
            db: Some(0),
            size: Some(10),
            unit: Some(SizeUnit::Byte),
            freq: Some(20),
            memory: None,
            rates: None,
        };
        let task = success(id.into(), "i1", finished, vec![key]);
        assert!(store.publish("i1", Analysis::Hotkey, &task));
    }

    /// An exposition without process metrics (nothing in the registry moves between calls)
    /// that assembles on every store change.
    fn test_exposition(store: Arc<Store>) -> Exposition {
        let exp = Exposition::build(store, RenderOptions::default(), false).expect("valid");
        exp.lock().min_reassembly = Duration::ZERO;
        exp
    }

    /// The revision the build should have stamped, found independently of `build.rs`: the
    /// `DCS_EXPORTER_REVISION` override, else `git rev-parse` on the checkout, else `unknown`.
    fn expected_revision() -> String {
        if let Ok(v) = std::env::var("DCS_EXPORTER_REVISION") {
            if !v.trim().is_empty() {
                return v.trim().to_owned();
            }
        }
        std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    #[test]
    fn build_info_names_the_source_revision() {
        let exp = test_exposition(store());
        let text = String::from_utf8(exp.render(false).to_vec()).expect("UTF-8");
        let revision = expected_revision();
        assert!(
            text.contains(&format!("revision=\"{revision}\"")),
            "build_info should carry revision {revision}: {text}"
        );
        assert_eq!(crate::REVISION, revision);
    }

    #[test]
    fn gzip_body_decompresses_to_the_plain_body() {
        let store = store();
        publish(&store, "t1", "2024-01-01T00:00:09Z", "user:1");
        // Without the process collector nothing in the registry moves between the two calls.
        let exp = test_exposition(store);
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
            expected_revision(),
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

    /// Polls `f` on the paused clock (1 ms steps) until it holds; fails after 10 s.
    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached in 10 s");
    }

    fn ready_text(exp: &Exposition) -> Option<String> {
        let body = exp.body_if_ready(false)?.into_bytes();
        Some(String::from_utf8(body.to_vec()).expect("UTF-8"))
    }

    #[tokio::test(start_paused = true)]
    async fn background_assembly_keeps_scrapes_off_the_rendering() {
        let store = store();
        publish(&store, "t1", "2024-01-01T00:00:09Z", "user:1");
        let exp = Arc::new(
            Exposition::build(store.clone(), RenderOptions::default(), false).expect("valid"),
        );
        // Without the assembler, a changed store needs an assembly before a scrape.
        assert!(exp.body_if_ready(false).is_none());

        let cancel = CancellationToken::new();
        let task = tokio::spawn(exp.clone().keep_assembled(cancel.clone()));
        until(|| exp.snapshot_renders() == 1).await;
        let text = ready_text(&exp).expect("assembled in the background");
        assert!(text.contains(r#"key="user:1""#), "{text}");

        // A new result: scrapes keep serving the last assembly and do not assemble...
        let changed_at = Instant::now();
        publish(&store, "t2", "2024-01-01T00:10:09Z", "user:2");
        let text = ready_text(&exp).expect("served while the store moved on");
        assert!(text.contains(r#"key="user:1""#), "{text}");
        assert_eq!(exp.snapshot_renders(), 1);
        // ...and the assembler brings it in, no later than the reassembly interval.
        until(|| exp.snapshot_renders() == 2).await;
        assert!(changed_at.elapsed() <= MIN_REASSEMBLY_INTERVAL + Duration::from_millis(5));
        let text = ready_text(&exp).expect("assembled");
        assert!(text.contains(r#"key="user:2""#) && !text.contains(r#"key="user:1""#));

        // New render options are assembled without waiting for a store change.
        exp.set_render_options(RenderOptions {
            key_label: KeyLabelMode::Hash,
            ..RenderOptions::default()
        });
        until(|| exp.snapshot_renders() == 3).await;
        let text = ready_text(&exp).expect("assembled");
        // SHA-256("user:2") begins with these digits (sha256sum).
        assert!(text.contains(r#"key="sha256:0195616cec890a4d""#), "{text}");

        // Once it stops, scrapes assemble a changed store themselves again.
        cancel.cancel();
        task.await.expect("assembler stopped");
        publish(&store, "t3", "2024-01-01T00:20:09Z", "user:3");
        tokio::time::sleep(MIN_REASSEMBLY_INTERVAL).await;
        assert!(exp.body_if_ready(false).is_none());
    }

    #[test]
    fn snapshot_part_is_rendered_once_per_generation() {
        let store = store();
        publish(&store, "t1", "2024-01-01T00:00:09Z", "user:1");
        let exp = test_exposition(store.clone());
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
            ..RenderOptions::default()
        });
        let hashed = exp.render(false);
        assert_eq!(exp.snapshot_renders(), 3);
        let text = std::str::from_utf8(&hashed).expect("UTF-8");
        assert!(!text.contains("user:2"));
        // The namespace stays the one the registry was built with.
        assert!(text.contains("dcs_hotkey_frequency{"));
        assert!(!text.contains("other_"));
    }

    /// 30 instances with a hot key result of `keys` keys each, published at `finished`.
    fn fleet(keys: usize) -> Arc<Store> {
        let store = Arc::new(Store::new());
        let specs: Vec<InstanceSpec> = (0..30)
            .map(|i| InstanceSpec {
                id: format!("i{i:02}"),
                name: format!("inst-{i}"),
                lfu_log_factor: 10,
                native: false,
                analyses: vec![AnalysisSpec {
                    analysis: Analysis::Hotkey,
                    top_n: 100,
                    mode: "trigger",
                    interval: std::time::Duration::from_secs(900),
                }],
            })
            .collect();
        store.configure(&specs);
        for i in 0..30 {
            fleet_publish(&store, i, "t1", "2024-01-01T00:00:09Z", keys);
        }
        store
    }

    fn fleet_publish(store: &Store, i: usize, task: &str, finished: &str, keys: usize) {
        let instance = format!("i{i:02}");
        let keys = (0..keys)
            .map(|k| KeyRecord {
                name: format!("{task}:key:{k}"),
                key_type: Some(KeyType::Hash),
                shard: None,
                db: Some(0),
                size: Some(1000 + k as i64),
                unit: Some(SizeUnit::Count),
                freq: Some(200 - k as i64),
                memory: None,
                rates: None,
            })
            .collect();
        let task = success(format!("{task}-{i}"), &instance, finished, keys);
        assert!(store.publish(&instance, Analysis::Hotkey, &task));
    }

    /// The reference rendering of the whole snapshot, in one pass.
    fn reference(store: &Store) -> Vec<u8> {
        let mut out = Vec::new();
        store.read(|s| render_snapshot(s, &RenderOptions::default(), &mut out));
        out
    }

    /// Whether `body` is the reference rendering followed by the registry part only.
    fn is_reference(body: &[u8], store: &Store) -> bool {
        let r = reference(store);
        body.len() > r.len()
            && body[..r.len()] == r[..]
            && !std::str::from_utf8(&body[r.len()..])
                .expect("UTF-8")
                .lines()
                .any(|l| l.starts_with("dcs_hotkey") || l.starts_with("dcs_analysis"))
    }

    #[test]
    fn only_changed_results_are_rendered_again() {
        let store = fleet(20);
        let exp = test_exposition(store.clone());
        let first = exp.render(false);
        assert_eq!(exp.result_renders(), 30);
        assert!(is_reference(&first, &store));

        // A state change (running flag) re-assembles but renders no result.
        store.set_running("i05", Analysis::Hotkey, None);
        store.record_failure(
            "i07",
            Analysis::Hotkey,
            FailureReason::Timeout,
            "slow".into(),
            1.0,
        );
        let second = exp.render(true);
        assert_eq!(exp.snapshot_renders(), 2);
        assert_eq!(exp.result_renders(), 30);
        assert!(is_reference(&gunzip(&second), &store));

        // One new result: exactly one result rendered, and the body is the full rendering.
        fleet_publish(&store, 3, "t2", "2024-01-01T01:00:00Z", 5);
        let third = exp.render(false);
        assert_eq!(exp.result_renders(), 31);
        assert!(is_reference(&third, &store));
        let text = std::str::from_utf8(&third).expect("UTF-8");
        assert!(text.contains("key=\"t2:key:4\""));
        assert!(!text.contains("key=\"t1-3"), "the replaced key set is gone");
        assert_eq!(text.matches("# HELP dcs_hotkey_frequency ").count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_the_reassembly_interval_are_served_from_the_last_assembly() {
        let store = fleet(5);
        let exp = Exposition::build(store.clone(), RenderOptions::default(), false).expect("ok");
        let first = exp.render(false);
        fleet_publish(&store, 3, "t2", "2024-01-01T01:00:00Z", 5);
        // Within the interval: the previous assembly, served without assembling.
        let stale = exp
            .body_if_ready(false)
            .expect("no assembly needed")
            .into_bytes();
        assert_eq!(stale, first);
        assert_eq!(exp.snapshot_renders(), 1);
        tokio::time::advance(MIN_REASSEMBLY_INTERVAL).await;
        assert!(
            exp.body_if_ready(true).is_none(),
            "past the interval a change is assembled in"
        );
        let fresh = exp.render(false);
        assert_eq!(exp.snapshot_renders(), 2);
        assert!(is_reference(&fresh, &store));
        assert!(std::str::from_utf8(&fresh)
            .expect("UTF-8")
            .contains("key=\"t2:key:4\""));
        // Unchanged since: ready without assembling, however old.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            exp.body_if_ready(false).expect("unchanged").into_bytes(),
            fresh
        );
    }

    #[test]
    fn pieces_are_held_compact_and_fragments_share_the_gzip_body() {
        let store = fleet(50);
        let exp = test_exposition(store.clone());
        let plain = exp.render(false);
        assert!(is_reference(&plain, &store));
        assert!(is_reference(&gunzip(&exp.render(true)), &store));
        let held_in = |exp: &Exposition| {
            let cache = exp.lock();
            let gzip = match &cache.assembled.as_ref().expect("assembled").0.gzip[..] {
                [Piece::Bytes(b)] => b.clone(),
                _ => panic!("one gzip buffer"),
            };
            let within = |f: &Fragment| {
                let d = f.deflated.data.as_ptr() as usize;
                let g = gzip.as_ptr() as usize;
                d >= g && d + f.deflated.data.len() <= g + gzip.len()
            };
            let units = cache
                .units
                .values()
                .flat_map(|u| u.families.iter().map(|(_, f)| f));
            let mut compact = 0;
            for f in units.chain(cache.state.iter().map(|(_, f)| f)) {
                assert!(within(f), "every fragment is a slice of the gzip body");
                compact += f.compact.held_bytes();
            }
            compact
        };
        // The per-key text is held in far fewer bytes than it has.
        let compact = held_in(&exp);
        assert!(
            compact * 3 < plain.len(),
            "{compact} bytes held for {}",
            plain.len()
        );

        // A state change and a new result: still the reference text, still one shared body.
        store.set_running(
            "i01",
            Analysis::Hotkey,
            Some(RunningTask {
                id: "t-run".into(),
                status: "running".into(),
                since: 1.0,
            }),
        );
        fleet_publish(&store, 4, "t2", "2024-01-01T01:00:00Z", 7);
        assert!(is_reference(&exp.render(false), &store));
        assert!(is_reference(&gunzip(&exp.render(true)), &store));
        held_in(&exp);
        assert_eq!(exp.result_renders(), 31, "only the new result was rendered");
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
