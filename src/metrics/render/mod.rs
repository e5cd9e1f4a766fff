//! The snapshot in the Prometheus text exposition format (version 0.0.4).
//!
//! Renders every metric of the "Per key", "Per instance and analysis" and "Per instance" sections
//! of the metrics contract from a [`Snapshot`]. The exporter's own metrics (API calls, build info,
//! process) live in a `prometheus::Registry` and are appended by
//! [`Exposition`](super::exposition::Exposition).
//!
//! # Output rules
//! - One block per metric family: `# HELP`, `# TYPE`, then all of its samples. A family without
//!   samples is left out entirely (no dangling HELP/TYPE lines).
//! - Families appear in a fixed order; samples in instance id order, then analysis order
//!   (`hotkey`, `bigkey`), then the analysis' key rank. No timestamps.
//! - Label values escape backslash, double quote and line feed as the format requires; every
//!   other character, control characters included, is written as is (the format allows any
//!   UTF-8 in a label value).
//! - Integers are written without a fraction; other values in the shortest form that reads back
//!   exactly (`1.5`, `1e-7`), `NaN`, `+Inf`, `-Inf`.
//!
//! # Value rules
//! - `freq` is clamped to the LFU counter's range 0–255 (a value outside it can only be a
//!   reporting error); a key without `freq` has no frequency samples.
//! - A negative or missing `size` produces no size sample; a unit other than `byte` or `count`
//!   produces none either.
//! - Two keys of one result with the same label set (same `key` label, `key_type`, `db` and
//!   `shard`) would be duplicate series: only the first, i.e. the higher-ranked, is exported.
//! - Result-based analysis metrics (`keys`, `duration`, `queue`, `last_success`) appear once a
//!   result exists and the value is known; the counters and state gauges appear for every
//!   configured analysis from the start, every failure reason included, so that `rate()` and
//!   alerts work before the first failure.
//!
//! # Adding a family or a label
//! Everything downstream of the text is generic: the exposition caches each per-result family
//! by its index in `KEY_FAMILIES`, and keeps any text compact by its label blocks
//! ([`compact`](super::compact)), whatever the names and labels are. So:
//! - **A per-key (per-result) family**: a `Family` in `catalog`, placed in `KEY_FAMILIES` where
//!   it should appear in the output (and `KEY_FAMILY_COUNT` raised); then its value in
//!   [`render_key_families`] (the compiler points at each `values` array to extend). Its
//!   samples are rendered once per result and cached like the others.
//! - **A per-analysis or per-instance family**: a `Family` in `catalog` and one
//!   `analysis_family` call (or a block like `dcs_instance_info`'s) in
//!   [`render_state_families`], followed by `flush(out)`: each family is handed on alone, so
//!   that only families whose text changed are compressed again.
//! - **A label**: added where the label block is built (`label(&mut labels, ...)`, in the
//!   order it should appear). The golden file (`tests/golden/`) and the contract
//!   (`metrics.md`) change with it.
//!
//! # Layout
//! - `catalog`: every family's name, type and HELP text, and the order of the per-result ones.
//! - `hot`: the samples of what native hot key and hot slot analyses add (per-key rates, each
//!   node's hot key source, hot slots).
//! - `text`: the text format's pieces (headers, samples, label escaping, numbers).
//! - this module: what the snapshot holds, turned into samples in order.

use std::collections::HashSet;
use std::io::Write as _;
use std::ops::Range;

use super::keylabel::KeyLabelMode;
use super::keyrewrite::{export_key, KeyRewrite};
use super::store::{AnalysisResult, AnalysisState, FailureReason, InstanceState, Snapshot};
use crate::dcs::{Analysis, KeyRecord, SizeUnit};

/// Default metric namespace (name prefix).
pub const DEFAULT_NAMESPACE: &str = "dcs";

/// The LFU counter's range: Redis stores it in 8 bits.
const LFU_MAX: i64 = 255;
/// Redis' `LFU_INIT_VAL`: the counter of a fresh key.
const LFU_INIT_VAL: u64 = 5;

/// How the snapshot is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Prefix of every metric name (`dcs` gives `dcs_hotkey_frequency`).
    pub namespace: String,
    /// How key names become the `key` label.
    pub key_label: KeyLabelMode,
    /// Rewrite rules applied to key names before `key_label` (`metrics.key_rewrite`).
    pub key_rewrite: KeyRewrite,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            key_label: KeyLabelMode::default(),
            key_rewrite: KeyRewrite::default(),
        }
    }
}

/// Expected number of accesses that bring a fresh key's LFU counter to `freq`.
///
/// Redis increments a counter `c` with probability `1 / ((c − 5)·f + 1)` (f = `lfu-log-factor`),
/// so going from `c` to `c + 1` takes `(c − 5)·f + 1` accesses on average; summed from 5 (a new
/// key's counter) to `freq`: `(c − 5) + f·(c − 5)(c − 6)/2` for `c ≥ 5`, else 0. Decay is ignored.
/// `freq` is clamped to 0–255 first.
pub fn estimated_accesses(freq: i64, lfu_log_factor: u32) -> u64 {
    let c = freq.clamp(0, LFU_MAX) as u64;
    if c < LFU_INIT_VAL {
        return 0;
    }
    let steps = c - LFU_INIT_VAL;
    // (c − 5)(c − 6) is a product of consecutive integers: always even. At most 250·249/2·u32::MAX,
    // which fits in a u64.
    let pairs = steps * steps.saturating_sub(1) / 2;
    steps + u64::from(lfu_log_factor) * pairs
}

mod catalog;
mod hot;
#[cfg(test)]
mod tests;
mod text;

pub use catalog::KEY_FAMILY_COUNT;
use catalog::*;
pub use text::escape_label_value;
use text::{header, label, sample, sample_with};

/// One configured analysis: its state and its label block in the arena.
struct AnalysisSeries<'a> {
    labels: Range<usize>,
    state: &'a AnalysisState,
}

/// The samples (no HELP/TYPE lines) of each per-key family for one analysis result of one
/// instance, indexed like the families' output order; families the result has no value for are
/// empty.
pub type KeyFamilies = [Vec<u8>; KEY_FAMILY_COUNT];

/// Writes the snapshot's metrics to `out` in the text format 0.0.4 (see the module docs).
///
/// The same text as [`render_key_families`] for every result, under [`key_family_header`]s,
/// followed by [`render_state`]: the exposition caches the first part per result.
pub fn render_snapshot(snapshot: &Snapshot, opts: &RenderOptions, out: &mut Vec<u8>) {
    let mut units: Vec<KeyFamilies> = Vec::new();
    for inst in snapshot.instances.values() {
        for (&analysis, state) in &inst.analyses {
            if let Some(result) = &state.result {
                units.push(render_key_families(inst, analysis, result, opts));
            }
        }
    }
    for family in 0..KEY_FAMILY_COUNT {
        if units.iter().any(|u| !u[family].is_empty()) {
            key_family_header(family, &opts.namespace, out);
            for u in &units {
                out.extend_from_slice(&u[family]);
            }
        }
    }
    render_state(snapshot, opts, out);
}

/// The HELP and TYPE lines of per-key family number `family` (< [`KEY_FAMILY_COUNT`]).
pub fn key_family_header(family: usize, ns: &str, out: &mut Vec<u8>) {
    if let Some(f) = KEY_FAMILIES.get(family) {
        header(out, ns, f);
    }
}

/// The per-key samples of one result of `inst`, by family (see [`KeyFamilies`]). Keys keep the
/// result's rank order; a key whose label set repeats an earlier one is left out.
pub fn render_key_families(
    inst: &InstanceState,
    analysis: Analysis,
    result: &AnalysisResult,
    opts: &RenderOptions,
) -> KeyFamilies {
    let mut out: KeyFamilies = Default::default();
    render_key_families_into(inst, analysis, result, opts, &mut out);
    out
}

/// [`render_key_families`] into buffers the caller reuses (cleared first).
pub fn render_key_families_into(
    inst: &InstanceState,
    analysis: Analysis,
    result: &AnalysisResult,
    opts: &RenderOptions,
    out: &mut KeyFamilies,
) {
    let ns = opts.namespace.as_str();
    for family in out.iter_mut() {
        family.clear();
    }
    // Every family shares the key's label block (`a="x",b="y"`), escaped once.
    let mut labels = Vec::with_capacity(256);
    let mut seen = HashSet::with_capacity(result.keys.len());
    let keys: Vec<KeyRecord> = result.keys.iter().collect();
    for rec in &keys {
        let key = export_key(&rec.name, &opts.key_rewrite, &opts.key_label);
        let key_type = rec.key_type.as_ref().map_or("", |t| t.as_str());
        let shard = rec.shard.as_deref().unwrap_or("");
        if !seen.insert((key.clone(), key_type, rec.db, shard)) {
            continue;
        }
        labels.clear();
        label(&mut labels, "instance_id", &inst.id, true);
        label(&mut labels, "instance_name", &inst.name, false);
        label(&mut labels, "key", &key, false);
        label(&mut labels, "key_type", key_type, false);
        labels.extend_from_slice(b",db=\"");
        if let Some(db) = rec.db {
            let _ = write!(labels, "{db}");
        }
        labels.push(b'"');
        label(&mut labels, "shard", shard, false);
        let mut values: [Option<Value>; KEY_FAMILY_COUNT] = [None; KEY_FAMILY_COUNT];
        match analysis {
            Analysis::Hotkey => {
                values[I_HOTKEY_FREQUENCY] =
                    rec.freq.map(|f| Value::Int(f.clamp(0, LFU_MAX) as u64));
                values[I_HOTKEY_ESTIMATED_ACCESSES] = rec
                    .freq
                    .map(|f| Value::Int(estimated_accesses(f, inst.lfu_log_factor)));
                values[I_HOTKEY_SIZE_BYTES] = size_in(rec, &SizeUnit::Byte);
                values[I_HOTKEY_ELEMENTS] = size_in(rec, &SizeUnit::Count);
                hot::rates(rec, &mut values);
            }
            Analysis::Bigkey => {
                values[I_BIGKEY_SIZE_BYTES] = size_in(rec, &SizeUnit::Byte);
                values[I_BIGKEY_ELEMENTS] = size_in(rec, &SizeUnit::Count);
                values[I_BIGKEY_MEMORY_BYTES] =
                    rec.memory.filter(|m| *m >= 0).map(|m| Value::Int(m as u64));
            }
            Analysis::Keyfamily | Analysis::Hotslot => {}
        }
        for ((buf, family), value) in out.iter_mut().zip(KEY_FAMILIES).zip(values) {
            if let Some(v) = value {
                sample(buf, ns, family, &labels, v);
            }
        }
    }
    render_families(inst, result, opts, out);
    if analysis == Analysis::Hotkey {
        hot::sources(inst, result, ns, out);
    }
    hot::slots(inst, result, ns, out);
}

/// The key family and keyspace samples of one result. Family names go through the key
/// privacy rules like key names (`other` stays as is); families whose labels coincide after
/// that are summed into one series.
fn render_families(
    inst: &InstanceState,
    result: &AnalysisResult,
    opts: &RenderOptions,
    out: &mut KeyFamilies,
) {
    let ns = opts.namespace.as_str();
    let mut rows: Vec<(Vec<u8>, u64, u64, Option<u64>)> = Vec::new();
    let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    let mut labels = Vec::with_capacity(256);
    for f in &result.families {
        let family = if f.family == super::families::OTHER {
            std::borrow::Cow::Borrowed(f.family.as_str())
        } else {
            export_key(&f.family, &opts.key_rewrite, &opts.key_label)
        };
        labels.clear();
        label(&mut labels, "instance_id", &inst.id, true);
        label(&mut labels, "instance_name", &inst.name, false);
        label(&mut labels, "family", &family, false);
        label(&mut labels, "key_type", &f.key_type, false);
        label(&mut labels, "shard", &f.shard, false);
        match index.get(&labels) {
            Some(&i) => {
                let r = &mut rows[i];
                r.1 = r.1.saturating_add(f.keys);
                r.2 = r.2.saturating_add(f.memory_bytes);
                r.3 = match (r.3, f.keys_without_ttl) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    _ => None,
                };
            }
            None => {
                index.insert(labels.clone(), rows.len());
                rows.push((labels.clone(), f.keys, f.memory_bytes, f.keys_without_ttl));
            }
        }
    }
    let [keys, bytes, no_ttl] = [0, 1, 2].map(|i| KEY_FAMILIES[FIRST_FAMILY_METRIC + i]);
    for (l, k, b, t) in &rows {
        sample(&mut out[FIRST_FAMILY_METRIC], ns, keys, l, Value::Int(*k));
        sample(
            &mut out[FIRST_FAMILY_METRIC + 1],
            ns,
            bytes,
            l,
            Value::Int(*b),
        );
        if let Some(t) = t {
            sample(
                &mut out[FIRST_FAMILY_METRIC + 2],
                ns,
                no_ttl,
                l,
                Value::Int(*t),
            );
        }
    }
    for t in result.keyspace_totals() {
        labels.clear();
        label(&mut labels, "instance_id", &inst.id, true);
        label(&mut labels, "instance_name", &inst.name, false);
        label(&mut labels, "key_type", &t.key_type, false);
        let (i_keys, i_bytes) = (FIRST_FAMILY_METRIC + 3, FIRST_FAMILY_METRIC + 4);
        sample(
            &mut out[i_keys],
            ns,
            KEY_FAMILIES[i_keys],
            &labels,
            Value::Int(t.keys),
        );
        sample(
            &mut out[i_bytes],
            ns,
            KEY_FAMILIES[i_bytes],
            &labels,
            Value::Int(t.memory_bytes),
        );
    }
}

/// Writes the per-analysis and per-instance families (everything but the per-key families).
pub fn render_state(snapshot: &Snapshot, opts: &RenderOptions, out: &mut Vec<u8>) {
    render_state_families(snapshot, opts, |family| out.extend_from_slice(family));
}

/// The text of [`render_state`], handed to `emit` one metric family at a time (HELP and TYPE
/// lines, then its samples), so that a caller caching families needs no more than one at once.
pub fn render_state_families(
    snapshot: &Snapshot,
    opts: &RenderOptions,
    mut emit: impl FnMut(&[u8]),
) {
    let mut buf: Vec<u8> = Vec::new();
    let out = &mut buf;
    let mut flush = |out: &mut Vec<u8>| {
        if !out.is_empty() {
            emit(out);
            out.clear();
        }
    };
    // Label blocks are escaped once into one arena and shared by every family.
    let mut arena: Vec<u8> = Vec::new();
    let mut analyses: Vec<AnalysisSeries<'_>> = Vec::new();
    for inst in snapshot.instances.values() {
        for (&analysis, state) in &inst.analyses {
            let start = arena.len();
            label(&mut arena, "instance_id", &inst.id, true);
            label(&mut arena, "instance_name", &inst.name, false);
            label(&mut arena, "analysis", analysis.as_str(), false);
            analyses.push(AnalysisSeries {
                labels: start..arena.len(),
                state,
            });
        }
    }
    let ns = opts.namespace.as_str();
    let arena = arena.as_slice();

    let result_value = |f: fn(&super::store::AnalysisResult) -> Option<Value>| {
        move |a: &AnalysisSeries<'_>| a.state.result.as_deref().and_then(f)
    };
    analysis_family(
        out,
        ns,
        &ANALYSIS_KEYS,
        arena,
        &analyses,
        result_value(|r| Some(Value::Int(r.key_count))),
    );
    flush(out);
    analysis_family(
        out,
        ns,
        &ANALYSIS_DURATION,
        arena,
        &analyses,
        result_value(|r| r.duration_seconds().map(Value::Float)),
    );
    flush(out);
    analysis_family(
        out,
        ns,
        &ANALYSIS_QUEUE,
        arena,
        &analyses,
        result_value(|r| r.queue_seconds().map(Value::Float)),
    );
    flush(out);
    analysis_family(
        out,
        ns,
        &ANALYSIS_LAST_SUCCESS,
        arena,
        &analyses,
        result_value(|r| r.finished_at.map(Value::Float)),
    );
    flush(out);
    analysis_family(
        out,
        ns,
        &ANALYSIS_CONSECUTIVE_FAILURES,
        arena,
        &analyses,
        |a| Some(Value::Int(a.state.consecutive_failures)),
    );
    flush(out);

    if !analyses.is_empty() {
        header(out, ns, &ANALYSIS_FAILURES);
        for a in &analyses {
            // Reasons only native targets have appear once they happened.
            let native = FailureReason::NATIVE
                .into_iter()
                .filter(|r| a.state.failures.contains_key(r));
            for reason in FailureReason::ALL.into_iter().chain(native) {
                let n = a.state.failures.get(&reason).copied().unwrap_or(0);
                sample_with(
                    out,
                    ns,
                    &ANALYSIS_FAILURES,
                    &arena[a.labels.clone()],
                    ("reason", reason.as_str()),
                    Value::Int(n),
                );
            }
        }
        flush(out);
        header(out, ns, &ANALYSIS_TASKS);
        for a in &analyses {
            for (origin, n) in [
                ("created", a.state.tasks_created),
                ("adopted", a.state.tasks_adopted),
            ] {
                sample_with(
                    out,
                    ns,
                    &ANALYSIS_TASKS,
                    &arena[a.labels.clone()],
                    ("origin", origin),
                    Value::Int(n),
                );
            }
        }
        flush(out);
    }

    analysis_family(out, ns, &ANALYSIS_SUPPORTED, arena, &analyses, |a| {
        Some(Value::Int(u64::from(a.state.supported)))
    });
    flush(out);
    analysis_family(out, ns, &ANALYSIS_RUNNING, arena, &analyses, |a| {
        Some(Value::Int(u64::from(a.state.running.is_some())))
    });
    flush(out);
    analysis_family(out, ns, &ANALYSIS_INTERVAL, arena, &analyses, |a| {
        Some(Value::Float(a.state.spec.interval.as_secs_f64()))
    });
    flush(out);
    analysis_family(
        out,
        ns,
        &ANALYSIS_SCAN_KEYS_SCANNED,
        arena,
        &analyses,
        |a| {
            a.state
                .progress
                .as_ref()
                .map(|p| Value::Int(p.keys_scanned))
        },
    );
    flush(out);
    analysis_family(
        out,
        ns,
        &ANALYSIS_SCAN_KEYSPACE_KEYS,
        arena,
        &analyses,
        |a| a.state.progress.as_ref().map(|p| Value::Int(p.keys_total)),
    );
    flush(out);
    analysis_family(out, ns, &ANALYSIS_SCAN_COMPLETION, arena, &analyses, |a| {
        a.state
            .progress
            .as_ref()
            .and_then(|p| p.estimated_completion())
            .map(Value::Float)
    });
    flush(out);

    analysis_family(out, ns, &ANALYSIS_SCAN_DEADLINE, arena, &analyses, |a| {
        a.state
            .progress
            .as_ref()
            .and_then(|p| p.deadline)
            .map(Value::Float)
    });
    analysis_family(
        out,
        ns,
        &ANALYSIS_SCAN_TOUCHES_KEYS,
        arena,
        &analyses,
        |a| {
            a.state
                .touch
                .as_ref()
                .map(|t| Value::Int(u64::from(t.touches)))
        },
    );

    let mark = out.len();
    header(out, ns, &INSTANCE_INFO);
    let mut any = false;
    let mut labels = Vec::new();
    for inst in snapshot.instances.values() {
        let Some(info) = &inst.info else {
            continue;
        };
        labels.clear();
        label(&mut labels, "instance_id", &inst.id, true);
        label(&mut labels, "instance_name", &inst.name, false);
        // `redis`, `valkey`, or DCS' engine in the same lower case (`Redis` → `redis`).
        let engine = info.engine.as_deref().unwrap_or("").to_ascii_lowercase();
        label(&mut labels, "engine", &engine, false);
        for (name, value) in [
            ("engine_version", &info.engine_version),
            ("spec_code", &info.spec_code),
            ("status", &info.status),
        ] {
            label(&mut labels, name, value.as_deref().unwrap_or(""), false);
        }
        sample(out, ns, &INSTANCE_INFO, &labels, Value::Int(1));
        any = true;
    }
    if !any {
        out.truncate(mark);
    }
    flush(out);
}

/// The key's size if its unit is `unit` and the size is known and not negative.
fn size_in(rec: &KeyRecord, unit: &SizeUnit) -> Option<Value> {
    match (rec.unit.as_ref(), rec.size) {
        (Some(u), Some(size)) if u == unit && size >= 0 => Some(Value::Int(size as u64)),
        _ => None,
    }
}

/// Writes one per-analysis family, or nothing if no analysis has a value for it.
fn analysis_family(
    out: &mut Vec<u8>,
    ns: &str,
    family: &Family,
    arena: &[u8],
    analyses: &[AnalysisSeries<'_>],
    value: impl Fn(&AnalysisSeries<'_>) -> Option<Value>,
) {
    let mark = out.len();
    header(out, ns, family);
    let mut any = false;
    for a in analyses {
        if let Some(v) = value(a) {
            sample(out, ns, family, &arena[a.labels.clone()], v);
            any = true;
        }
    }
    if !any {
        out.truncate(mark);
    }
}
