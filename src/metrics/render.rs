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

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// Name (without namespace), type and HELP text of one family.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const HOTKEY_FREQUENCY: Family = Family {
    name: "hotkey_frequency",
    kind: Kind::Gauge,
    help: "LFU access-frequency counter (freq, 0-255, logarithmic) of a hot key, from the newest \
           completed hot key analysis of the instance; cached between analyses. 255 is the \
           counter's cap, reached after about 311,500 accesses at lfu-log-factor 10 (decay aside).",
};
const HOTKEY_ESTIMATED_ACCESSES: Family = Family {
    name: "hotkey_estimated_accesses",
    kind: Kind::Gauge,
    help: "Expected number of accesses that drive a fresh key's LFU counter to the reported freq, \
           for the instance's lfu-log-factor, from the newest completed hot key analysis; cached \
           between analyses. Ignores LFU decay, so it is a floor-like estimate, not a count.",
};
const HOTKEY_SIZE_BYTES: Family = Family {
    name: "hotkey_size_bytes",
    kind: Kind::Gauge,
    help: "Size in bytes of a hot key whose size unit is byte, from the newest completed hot key \
           analysis of the instance; cached between analyses.",
};
const HOTKEY_ELEMENTS: Family = Family {
    name: "hotkey_elements",
    kind: Kind::Gauge,
    help: "Number of elements of a hot key whose size unit is count, from the newest completed \
           hot key analysis of the instance; cached between analyses.",
};
const BIGKEY_SIZE_BYTES: Family = Family {
    name: "bigkey_size_bytes",
    kind: Kind::Gauge,
    help: "Size in bytes of a big key whose size unit is byte (strings), from the newest \
           completed big key analysis of the instance; cached between analyses.",
};
const BIGKEY_ELEMENTS: Family = Family {
    name: "bigkey_elements",
    kind: Kind::Gauge,
    help: "Number of elements of a big key whose size unit is count (list, set, zset, hash), \
           from the newest completed big key analysis of the instance; cached between analyses.",
};
const BIGKEY_MEMORY_BYTES: Family = Family {
    name: "bigkey_memory_bytes",
    kind: Kind::Gauge,
    help: "Bytes the server attributes to a big key (MEMORY USAGE), from the newest completed \
           big key scan of a Redis or Valkey target by this exporter; cached between analyses.",
};
const KEYFAMILY_KEYS: Family = Family {
    name: "keyfamily_keys",
    kind: Kind::Gauge,
    help: "Keys of a key family (key pattern) of one type on one shard, from the newest completed \
           key family analysis of the instance (DCS: offline key analysis of a backup, largest \
           prefixes); the top N families by memory, the rest summed as family=other; cached \
           between analyses.",
};
const KEYFAMILY_MEMORY_BYTES: Family = Family {
    name: "keyfamily_memory_bytes",
    kind: Kind::Gauge,
    help: "Bytes of a key family (key pattern) of one type on one shard, from the newest \
           completed key family analysis of the instance (DCS: the prefix' bytes reported by the \
           offline key analysis of a backup); the top N families by memory, the rest summed as \
           family=other; cached between analyses.",
};
const KEYFAMILY_KEYS_WITHOUT_TTL: Family = Family {
    name: "keyfamily_keys_without_ttl",
    kind: Kind::Gauge,
    help: "Keys of a key family that never expire, from the newest completed key family \
           analysis of the instance; only for sources that report it (not DCS); cached between \
           analyses.",
};
const KEYSPACE_KEYS: Family = Family {
    name: "keyspace_keys",
    kind: Kind::Gauge,
    help: "Keys of one type over all analysed shards of the instance, from the newest completed \
           key family analysis of each shard (DCS: type_num of the offline key analysis of a \
           backup); cached between analyses.",
};
const KEYSPACE_MEMORY_BYTES: Family = Family {
    name: "keyspace_memory_bytes",
    kind: Kind::Gauge,
    help: "Bytes of the keys of one type over all analysed shards of the instance, from the \
           newest completed key family analysis of each shard (DCS: type_bytes of the offline \
           key analysis of a backup); cached between analyses.",
};
const ANALYSIS_KEYS: Family = Family {
    name: "analysis_keys",
    kind: Kind::Gauge,
    help: "Keys reported by the newest completed analysis (num, else the number of keys \
           listed), not cut to the exported top N; cached between analyses.",
};
const ANALYSIS_DURATION: Family = Family {
    name: "analysis_duration_seconds",
    kind: Kind::Gauge,
    help: "Run time of the newest completed analysis (finished_at - started_at reported by DCS).",
};
const ANALYSIS_QUEUE: Family = Family {
    name: "analysis_queue_seconds",
    kind: Kind::Gauge,
    help: "Time the newest completed analysis waited before it started (started_at - created_at \
           reported by DCS).",
};
const ANALYSIS_LAST_SUCCESS: Family = Family {
    name: "analysis_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "Unix time at which the newest completed analysis finished (finished_at reported by \
           DCS).",
};
const ANALYSIS_CONSECUTIVE_FAILURES: Family = Family {
    name: "analysis_consecutive_failures",
    kind: Kind::Gauge,
    help: "Analysis attempts in a row that produced no result, counted by this exporter; 0 after \
           a success, and 0 while the instance does not support the analysis.",
};
const ANALYSIS_FAILURES: Family = Family {
    name: "analysis_failures_total",
    kind: Kind::Counter,
    help: "Analysis attempts that produced no result, counted by this exporter since it started, \
           by reason (task_failed, timeout, api_error, auth, unsupported).",
};
const ANALYSIS_TASKS: Family = Family {
    name: "analysis_tasks_total",
    kind: Kind::Counter,
    help: "Analysis tasks this exporter created (origin=created) or picked up from DCS \
           (origin=adopted) since it started.",
};
const ANALYSIS_SUPPORTED: Family = Family {
    name: "analysis_supported",
    kind: Kind::Gauge,
    help: "1, or 0 once DCS answered that the instance does not support this analysis \
           (DCS.4919 or DCS.4922).",
};
const ANALYSIS_RUNNING: Family = Family {
    name: "analysis_running",
    kind: Kind::Gauge,
    help: "1 while an analysis task this exporter follows is waiting or running on DCS, else 0.",
};
const ANALYSIS_INTERVAL: Family = Family {
    name: "analysis_interval_seconds",
    kind: Kind::Gauge,
    help: "Configured time between analyses (trigger mode) or between looks for new records \
           (observe mode), from the exporter's config; for staleness alerts.",
};
const ANALYSIS_SCAN_KEYS_SCANNED: Family = Family {
    name: "analysis_scan_keys_scanned",
    kind: Kind::Gauge,
    help: "Keys the running scan of a Redis or Valkey target has visited so far, over all its \
           nodes; present only while this exporter runs such a scan.",
};
const ANALYSIS_SCAN_KEYSPACE_KEYS: Family = Family {
    name: "analysis_scan_keyspace_keys",
    kind: Kind::Gauge,
    help: "Keys the scanned nodes held when the running scan started (INFO keyspace); present \
           only while this exporter runs a scan of a Redis or Valkey target.",
};
const ANALYSIS_SCAN_COMPLETION: Family = Family {
    name: "analysis_scan_estimated_completion_timestamp_seconds",
    kind: Kind::Gauge,
    help: "Unix time at which the running scan of a Redis or Valkey target should end at its \
           pace so far; present only while such a scan runs and has visited keys.",
};
const INSTANCE_INFO: Family = Family {
    name: "instance_info",
    kind: Kind::Gauge,
    help: "Details of a DCS instance from discovery (ListInstances) or ShowInstance; always 1.",
};

/// One configured analysis: its state and its label block in the arena.
struct AnalysisSeries<'a> {
    labels: Range<usize>,
    state: &'a AnalysisState,
}

/// A value to write after a sample's labels.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// Number of per-result families (the length of the private `KEY_FAMILIES` table).
pub const KEY_FAMILY_COUNT: usize = 12;

/// The per-result metric families in output order: four fed by hot key results, three by big key
/// results (the memory only where the source reports it: native targets), five by key family
/// results.
const KEY_FAMILIES: [&Family; KEY_FAMILY_COUNT] = [
    &HOTKEY_FREQUENCY,
    &HOTKEY_ESTIMATED_ACCESSES,
    &HOTKEY_SIZE_BYTES,
    &HOTKEY_ELEMENTS,
    &BIGKEY_SIZE_BYTES,
    &BIGKEY_ELEMENTS,
    &BIGKEY_MEMORY_BYTES,
    &KEYFAMILY_KEYS,
    &KEYFAMILY_MEMORY_BYTES,
    &KEYFAMILY_KEYS_WITHOUT_TTL,
    &KEYSPACE_KEYS,
    &KEYSPACE_MEMORY_BYTES,
];
/// Index of the first key family metric in [`KEY_FAMILIES`].
const FIRST_FAMILY_METRIC: usize = 7;

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
    let ns = opts.namespace.as_str();
    let mut out: KeyFamilies = Default::default();
    // Every family shares the key's label block (`a="x",b="y"`), escaped once.
    let mut labels = Vec::with_capacity(256);
    let mut seen = HashSet::with_capacity(result.keys.len());
    for rec in &result.keys {
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
        let values: [Option<Value>; KEY_FAMILY_COUNT] = match analysis {
            Analysis::Hotkey => [
                rec.freq.map(|f| Value::Int(f.clamp(0, LFU_MAX) as u64)),
                rec.freq
                    .map(|f| Value::Int(estimated_accesses(f, inst.lfu_log_factor))),
                size_in(rec, &SizeUnit::Byte),
                size_in(rec, &SizeUnit::Count),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ],
            Analysis::Bigkey => [
                None,
                None,
                None,
                None,
                size_in(rec, &SizeUnit::Byte),
                size_in(rec, &SizeUnit::Count),
                rec.memory.filter(|m| *m >= 0).map(|m| Value::Int(m as u64)),
                None,
                None,
                None,
                None,
                None,
            ],
            Analysis::Keyfamily => [None; KEY_FAMILY_COUNT],
        };
        for ((buf, family), value) in out.iter_mut().zip(KEY_FAMILIES).zip(values) {
            if let Some(v) = value {
                sample(buf, ns, family, &labels, v);
            }
        }
    }
    render_families(inst, result, opts, &mut out);
    out
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
    analysis_family(
        out,
        ns,
        &ANALYSIS_DURATION,
        arena,
        &analyses,
        result_value(|r| r.duration_seconds().map(Value::Float)),
    );
    analysis_family(
        out,
        ns,
        &ANALYSIS_QUEUE,
        arena,
        &analyses,
        result_value(|r| r.queue_seconds().map(Value::Float)),
    );
    analysis_family(
        out,
        ns,
        &ANALYSIS_LAST_SUCCESS,
        arena,
        &analyses,
        result_value(|r| r.finished_at.map(Value::Float)),
    );
    analysis_family(
        out,
        ns,
        &ANALYSIS_CONSECUTIVE_FAILURES,
        arena,
        &analyses,
        |a| Some(Value::Int(a.state.consecutive_failures)),
    );

    if !analyses.is_empty() {
        header(out, ns, &ANALYSIS_FAILURES);
        for a in &analyses {
            for reason in FailureReason::ALL {
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
    }

    analysis_family(out, ns, &ANALYSIS_SUPPORTED, arena, &analyses, |a| {
        Some(Value::Int(u64::from(a.state.supported)))
    });
    analysis_family(out, ns, &ANALYSIS_RUNNING, arena, &analyses, |a| {
        Some(Value::Int(u64::from(a.state.running.is_some())))
    });
    analysis_family(out, ns, &ANALYSIS_INTERVAL, arena, &analyses, |a| {
        Some(Value::Float(a.state.spec.interval.as_secs_f64()))
    });
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
    analysis_family(
        out,
        ns,
        &ANALYSIS_SCAN_KEYSPACE_KEYS,
        arena,
        &analyses,
        |a| a.state.progress.as_ref().map(|p| Value::Int(p.keys_total)),
    );
    analysis_family(out, ns, &ANALYSIS_SCAN_COMPLETION, arena, &analyses, |a| {
        a.state
            .progress
            .as_ref()
            .and_then(|p| p.estimated_completion())
            .map(Value::Float)
    });

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

fn header(out: &mut Vec<u8>, ns: &str, family: &Family) {
    // HELP texts are constants without backslashes or line feeds, so they need no escaping.
    let _ = write!(
        out,
        "# HELP {ns}_{name} {help}\n# TYPE {ns}_{name} {kind}\n",
        name = family.name,
        help = family.help,
        kind = family.kind.as_str()
    );
}

fn sample(out: &mut Vec<u8>, ns: &str, family: &Family, labels: &[u8], value: Value) {
    metric_name(out, ns, family);
    out.push(b'{');
    out.extend_from_slice(labels);
    out.extend_from_slice(b"} ");
    write_value(out, value);
    out.push(b'\n');
}

/// A sample with one extra label after the shared block.
fn sample_with(
    out: &mut Vec<u8>,
    ns: &str,
    family: &Family,
    labels: &[u8],
    extra: (&str, &str),
    value: Value,
) {
    metric_name(out, ns, family);
    out.push(b'{');
    out.extend_from_slice(labels);
    label(out, extra.0, extra.1, false);
    out.extend_from_slice(b"} ");
    write_value(out, value);
    out.push(b'\n');
}

fn metric_name(out: &mut Vec<u8>, ns: &str, family: &Family) {
    out.extend_from_slice(ns.as_bytes());
    out.push(b'_');
    out.extend_from_slice(family.name.as_bytes());
}

/// Writes `name="value"` (with a leading comma unless `first`), escaping the value.
fn label(out: &mut Vec<u8>, name: &str, value: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_label_value(out, value);
    out.push(b'"');
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, line feed → `\n`; everything else is copied.
pub fn escape_label_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escaped);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

fn write_value(out: &mut Vec<u8>, value: Value) {
    match value {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(v) => write_f64(out, v),
    }
}

/// Writes a float the way Prometheus reads it back exactly.
fn write_f64(out: &mut Vec<u8>, v: f64) {
    let _ = if v.is_nan() {
        out.write_all(b"NaN")
    } else if v.is_infinite() {
        out.write_all(if v > 0.0 { b"+Inf" } else { b"-Inf" })
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Exact: every integer below 2^53 converts without loss.
        write!(out, "{}", v as i64)
    } else if v.abs() >= 1e15 || v.abs() < 1e-4 {
        write!(out, "{v:e}")
    } else {
        // Rust's shortest round-trip representation, without an exponent.
        write!(out, "{v}")
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::dcs::{InstanceInfo, KeyType, ScanType};
    use crate::metrics::store::{
        AnalysisResult, AnalysisSpec, InstanceState, LastError, RunningTask,
    };

    fn key(name: &str, ty: Option<KeyType>, db: Option<i64>, shard: Option<&str>) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            key_type: ty,
            shard: shard.map(Into::into),
            db,
            size: None,
            unit: None,
            freq: None,
            memory: None,
        }
    }

    fn state(analysis: Analysis, result: Option<AnalysisResult>) -> AnalysisState {
        AnalysisState {
            spec: AnalysisSpec {
                analysis,
                top_n: 50,
                mode: "trigger",
                interval: std::time::Duration::from_secs(900),
            },
            supported: true,
            running: None,
            progress: None,
            consecutive_failures: 0,
            failures: BTreeMap::new(),
            tasks_created: 0,
            tasks_adopted: 0,
            last_counted_task: None,
            result: result.map(Arc::new),
            last_error: None,
        }
    }

    fn result(keys: Vec<KeyRecord>) -> AnalysisResult {
        AnalysisResult {
            task_id: "t1".into(),
            scan_type: Some(ScanType::Manual),
            created_at: Some(1000.0),
            started_at: Some(1002.0),
            finished_at: Some(1010.5),
            key_count: 120,
            keys,
            shards: Default::default(),
            families: Vec::new(),
        }
    }

    fn instance(id: &str, name: &str, analyses: Vec<AnalysisState>) -> InstanceState {
        InstanceState {
            id: id.into(),
            name: name.into(),
            lfu_log_factor: 10,
            info: None,
            analyses: analyses.into_iter().map(|a| (a.spec.analysis, a)).collect(),
        }
    }

    fn snapshot(instances: Vec<InstanceState>) -> Snapshot {
        Snapshot {
            instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
        }
    }

    fn render(s: &Snapshot) -> String {
        let mut out = Vec::new();
        render_snapshot(s, &RenderOptions::default(), &mut out);
        String::from_utf8(out).expect("rendered text is UTF-8")
    }

    /// The sample lines (no comments) of a rendering.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    /// The full example: one instance with a hot key result, state counters, info, and a big key
    /// analysis without a result.
    fn example() -> Snapshot {
        let mut a = key("user:1", Some(KeyType::String), Some(0), None);
        a.freq = Some(255);
        a.size = Some(1024);
        a.unit = Some(SizeUnit::Byte);
        let mut b = key(
            "q\"b\\\n",
            Some(KeyType::Other("stream".into())),
            Some(3),
            Some("10.0.0.1:6379"),
        );
        b.freq = Some(4);
        b.size = Some(17);
        b.unit = Some(SizeUnit::Count);
        // Same label set as `a`, ranked lower: dropped.
        let mut dup = a.clone();
        dup.freq = Some(100);
        // freq above the LFU range is clamped; no type and no db; negative size skipped.
        let mut c = key("c", None, None, None);
        c.freq = Some(300);
        c.size = Some(-1);
        c.unit = Some(SizeUnit::Byte);

        let mut hot = state(Analysis::Hotkey, Some(result(vec![a, b, dup, c])));
        hot.consecutive_failures = 2;
        hot.failures.insert(FailureReason::Timeout, 3);
        hot.failures.insert(FailureReason::Auth, 1);
        hot.tasks_created = 4;
        hot.tasks_adopted = 1;
        hot.running = Some(RunningTask {
            id: "t2".into(),
            status: "running".into(),
            since: 2000.0,
        });
        hot.last_error = Some(LastError {
            at: 1500.0,
            reason: FailureReason::Timeout,
            message: "slow".into(),
        });
        let mut bigs = state(Analysis::Bigkey, None);
        bigs.supported = false;
        let mut inst = instance("i-1", "orders", vec![hot, bigs]);
        inst.info = Some(InstanceInfo {
            instance_id: "i-1".into(),
            name: "orders".into(),
            engine_version: Some("6.0".into()),
            status: Some("RUNNING".into()),
            spec_code: None,
            ..Default::default()
        });
        snapshot(vec![inst])
    }

    #[test]
    fn renders_the_example_exactly() {
        // Written by hand from the contract. estimated_accesses for freq 255 and factor 10:
        // (255-5) + 10*(250*249)/2 = 250 + 311250 = 311500; for freq 4: 0.
        let k1 = r#"instance_id="i-1",instance_name="orders",key="user:1",key_type="string",db="0",shard="""#;
        let k2 = r#"instance_id="i-1",instance_name="orders",key="q\"b\\\n",key_type="stream",db="3",shard="10.0.0.1:6379""#;
        let k3 = r#"instance_id="i-1",instance_name="orders",key="c",key_type="",db="",shard="""#;
        let hot = r#"instance_id="i-1",instance_name="orders",analysis="hotkey""#;
        let big = r#"instance_id="i-1",instance_name="orders",analysis="bigkey""#;
        let expected = format!(
            "# HELP dcs_hotkey_frequency {h_freq}
# TYPE dcs_hotkey_frequency gauge
dcs_hotkey_frequency{{{k1}}} 255
dcs_hotkey_frequency{{{k2}}} 4
dcs_hotkey_frequency{{{k3}}} 255
# HELP dcs_hotkey_estimated_accesses {h_est}
# TYPE dcs_hotkey_estimated_accesses gauge
dcs_hotkey_estimated_accesses{{{k1}}} 311500
dcs_hotkey_estimated_accesses{{{k2}}} 0
dcs_hotkey_estimated_accesses{{{k3}}} 311500
# HELP dcs_hotkey_size_bytes {h_size}
# TYPE dcs_hotkey_size_bytes gauge
dcs_hotkey_size_bytes{{{k1}}} 1024
# HELP dcs_hotkey_elements {h_el}
# TYPE dcs_hotkey_elements gauge
dcs_hotkey_elements{{{k2}}} 17
# HELP dcs_analysis_keys {a_keys}
# TYPE dcs_analysis_keys gauge
dcs_analysis_keys{{{hot}}} 120
# HELP dcs_analysis_duration_seconds {a_dur}
# TYPE dcs_analysis_duration_seconds gauge
dcs_analysis_duration_seconds{{{hot}}} 8.5
# HELP dcs_analysis_queue_seconds {a_q}
# TYPE dcs_analysis_queue_seconds gauge
dcs_analysis_queue_seconds{{{hot}}} 2
# HELP dcs_analysis_last_success_timestamp_seconds {a_ls}
# TYPE dcs_analysis_last_success_timestamp_seconds gauge
dcs_analysis_last_success_timestamp_seconds{{{hot}}} 1010.5
# HELP dcs_analysis_consecutive_failures {a_cf}
# TYPE dcs_analysis_consecutive_failures gauge
dcs_analysis_consecutive_failures{{{hot}}} 2
dcs_analysis_consecutive_failures{{{big}}} 0
# HELP dcs_analysis_failures_total {a_f}
# TYPE dcs_analysis_failures_total counter
dcs_analysis_failures_total{{{hot},reason=\"task_failed\"}} 0
dcs_analysis_failures_total{{{hot},reason=\"timeout\"}} 3
dcs_analysis_failures_total{{{hot},reason=\"api_error\"}} 0
dcs_analysis_failures_total{{{hot},reason=\"auth\"}} 1
dcs_analysis_failures_total{{{hot},reason=\"unsupported\"}} 0
dcs_analysis_failures_total{{{big},reason=\"task_failed\"}} 0
dcs_analysis_failures_total{{{big},reason=\"timeout\"}} 0
dcs_analysis_failures_total{{{big},reason=\"api_error\"}} 0
dcs_analysis_failures_total{{{big},reason=\"auth\"}} 0
dcs_analysis_failures_total{{{big},reason=\"unsupported\"}} 0
# HELP dcs_analysis_tasks_total {a_t}
# TYPE dcs_analysis_tasks_total counter
dcs_analysis_tasks_total{{{hot},origin=\"created\"}} 4
dcs_analysis_tasks_total{{{hot},origin=\"adopted\"}} 1
dcs_analysis_tasks_total{{{big},origin=\"created\"}} 0
dcs_analysis_tasks_total{{{big},origin=\"adopted\"}} 0
# HELP dcs_analysis_supported {a_s}
# TYPE dcs_analysis_supported gauge
dcs_analysis_supported{{{hot}}} 1
dcs_analysis_supported{{{big}}} 0
# HELP dcs_analysis_running {a_r}
# TYPE dcs_analysis_running gauge
dcs_analysis_running{{{hot}}} 1
dcs_analysis_running{{{big}}} 0
# HELP dcs_analysis_interval_seconds {a_i}
# TYPE dcs_analysis_interval_seconds gauge
dcs_analysis_interval_seconds{{{hot}}} 900
dcs_analysis_interval_seconds{{{big}}} 900
# HELP dcs_instance_info {i}
# TYPE dcs_instance_info gauge
dcs_instance_info{{instance_id=\"i-1\",instance_name=\"orders\",engine_version=\"6.0\",spec_code=\"\",status=\"RUNNING\"}} 1
",
            h_freq = HOTKEY_FREQUENCY.help,
            h_est = HOTKEY_ESTIMATED_ACCESSES.help,
            h_size = HOTKEY_SIZE_BYTES.help,
            h_el = HOTKEY_ELEMENTS.help,
            a_keys = ANALYSIS_KEYS.help,
            a_dur = ANALYSIS_DURATION.help,
            a_q = ANALYSIS_QUEUE.help,
            a_i = ANALYSIS_INTERVAL.help,
            a_ls = ANALYSIS_LAST_SUCCESS.help,
            a_cf = ANALYSIS_CONSECUTIVE_FAILURES.help,
            a_f = ANALYSIS_FAILURES.help,
            a_t = ANALYSIS_TASKS.help,
            a_s = ANALYSIS_SUPPORTED.help,
            a_r = ANALYSIS_RUNNING.help,
            i = INSTANCE_INFO.help,
        );
        let got = render(&example());
        for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "line {}", n + 1);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn help_texts_say_where_values_come_from() {
        for f in KEY_FAMILIES {
            assert!(f.help.contains("newest completed"), "{}", f.name);
            assert!(f.help.contains("cached between analyses"), "{}", f.name);
        }
        assert!(HOTKEY_ESTIMATED_ACCESSES.help.contains("Ignores LFU decay"));
        assert!(HOTKEY_ESTIMATED_ACCESSES.help.contains("floor-like"));
    }

    #[test]
    fn big_keys_go_to_their_unit_family_and_other_units_to_none() {
        let mut s = key("s", Some(KeyType::String), Some(0), None);
        s.size = Some(5_000_000);
        s.unit = Some(SizeUnit::Byte);
        let mut h = key("h", Some(KeyType::Hash), Some(0), None);
        h.size = Some(70000);
        h.unit = Some(SizeUnit::Count);
        let mut odd = key("o", Some(KeyType::String), Some(0), None);
        odd.size = Some(9);
        odd.unit = Some(SizeUnit::Other("bit".into()));
        let snap = snapshot(vec![instance(
            "i",
            "n",
            vec![state(Analysis::Bigkey, Some(result(vec![s, h, odd])))],
        )]);
        let text = render(&snap);
        let keys: Vec<_> = samples(&text)
            .into_iter()
            .filter(|l| l.starts_with("dcs_bigkey") || l.starts_with("dcs_hotkey"))
            .collect();
        assert_eq!(
            keys,
            [
                r#"dcs_bigkey_size_bytes{instance_id="i",instance_name="n",key="s",key_type="string",db="0",shard=""} 5000000"#,
                r#"dcs_bigkey_elements{instance_id="i",instance_name="n",key="h",key_type="hash",db="0",shard=""} 70000"#,
            ]
        );
    }

    #[test]
    fn memory_of_native_big_keys_and_scan_progress_are_rendered() {
        let mut h = key("h", Some(KeyType::Other("stream".into())), Some(2), None);
        h.size = Some(70000);
        h.unit = Some(SizeUnit::Count);
        h.memory = Some(1_234_567);
        let mut st = state(Analysis::Bigkey, Some(result(vec![h])));
        st.progress = Some(crate::metrics::store::ScanProgress {
            keys_scanned: 250,
            keys_total: 1000,
            started_at: 100.0,
            at: 110.0,
        });
        let snap = snapshot(vec![instance("i", "n", vec![st])]);
        let text = render(&snap);
        let l = r#"instance_id="i",instance_name="n",key="h",key_type="stream",db="2",shard="""#;
        let a = r#"instance_id="i",instance_name="n",analysis="bigkey""#;
        for want in [
            format!("dcs_bigkey_elements{{{l}}} 70000"),
            format!("dcs_bigkey_memory_bytes{{{l}}} 1234567"),
            format!("dcs_analysis_scan_keys_scanned{{{a}}} 250"),
            format!("dcs_analysis_scan_keyspace_keys{{{a}}} 1000"),
            // 750 keys left at 25 keys/s: 30 s after the measurement.
            format!("dcs_analysis_scan_estimated_completion_timestamp_seconds{{{a}}} 140"),
        ] {
            assert!(
                samples(&text).contains(&want.as_str()),
                "{want} missing from\n{text}"
            );
        }
        // Without memory or progress (every DCS result) the families are absent altogether.
        let snap = snapshot(vec![instance(
            "i",
            "n",
            vec![state(Analysis::Bigkey, Some(result(vec![])))],
        )]);
        let text = render(&snap);
        assert!(!text.contains("memory_bytes") && !text.contains("analysis_scan_"));
    }

    #[test]
    fn a_key_missing_from_the_newer_result_disappears() {
        let mut a = key("a", Some(KeyType::String), Some(0), None);
        a.freq = Some(50);
        let mut b = key("b", Some(KeyType::String), Some(0), None);
        b.freq = Some(40);
        let mut snap = snapshot(vec![instance(
            "i",
            "n",
            vec![state(Analysis::Hotkey, Some(result(vec![a, b.clone()])))],
        )]);
        let before = render(&snap);
        assert!(before.contains("key=\"a\""));
        let st = snap
            .instances
            .get_mut("i")
            .and_then(|i| i.analyses.get_mut(&Analysis::Hotkey))
            .expect("configured");
        st.result = Some(Arc::new(result(vec![b])));
        let after = render(&snap);
        assert!(!after.contains("key=\"a\""), "{after}");
        assert!(after.contains(
            r#"dcs_hotkey_frequency{instance_id="i",instance_name="n",key="b",key_type="string",db="0",shard=""} 40"#
        ));
    }

    #[test]
    fn escapes_label_values() {
        let mut out = Vec::new();
        escape_label_value(&mut out, "a\\b\"c\nd\re\tf\u{0}g\u{7f}h\u{fffd}");
        assert_eq!(out, "a\\\\b\\\"c\\nd\re\tf\u{0}g\u{7f}h\u{fffd}".as_bytes());
    }

    #[test]
    fn configured_analyses_without_results_export_state_only() {
        let snap = snapshot(vec![instance(
            "i",
            "n",
            vec![state(Analysis::Hotkey, None)],
        )]);
        let text = render(&snap);
        let names: Vec<&str> = samples(&text)
            .iter()
            .map(|l| l.split('{').next().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "dcs_analysis_consecutive_failures",
                "dcs_analysis_failures_total",
                "dcs_analysis_failures_total",
                "dcs_analysis_failures_total",
                "dcs_analysis_failures_total",
                "dcs_analysis_failures_total",
                "dcs_analysis_tasks_total",
                "dcs_analysis_tasks_total",
                "dcs_analysis_supported",
                "dcs_analysis_running",
                "dcs_analysis_interval_seconds",
            ]
        );
        // No family is announced without samples.
        assert!(!text.contains("dcs_hotkey_frequency"));
        assert!(!text.contains("dcs_instance_info"));
        assert_eq!(render(&Snapshot::default()), "");
    }

    #[test]
    fn namespace_and_hash_mode_apply() {
        let mut a = key("secret-user-42", Some(KeyType::String), Some(0), None);
        a.freq = Some(5);
        let snap = snapshot(vec![instance(
            "i",
            "n",
            vec![state(Analysis::Hotkey, Some(result(vec![a])))],
        )]);
        let opts = RenderOptions {
            namespace: "redis_keys".into(),
            key_label: KeyLabelMode::Hash,
            ..RenderOptions::default()
        };
        let mut out = Vec::new();
        render_snapshot(&snap, &opts, &mut out);
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(!text.contains("secret-user-42"));
        assert!(text.contains("# TYPE redis_keys_hotkey_frequency gauge\n"));
        assert!(samples(&text).iter().all(|l| l.starts_with("redis_keys_")));
        assert!(text.contains("key=\"sha256:"));
    }

    #[test]
    fn estimated_accesses_follow_the_lfu_formula() {
        // Values from the formula by hand: c=5 → 0; c=6 → 1; c=7 → 2 + f*2*1/2 = 2 + f.
        assert_eq!(estimated_accesses(0, 10), 0);
        assert_eq!(estimated_accesses(4, 10), 0);
        assert_eq!(estimated_accesses(5, 10), 0);
        assert_eq!(estimated_accesses(6, 10), 1);
        assert_eq!(estimated_accesses(7, 10), 12);
        assert_eq!(estimated_accesses(7, 0), 2);
        assert_eq!(estimated_accesses(-3, 10), 0);
        assert_eq!(estimated_accesses(1000, 10), 311_500);
        assert_eq!(
            estimated_accesses(255, u32::MAX),
            250 + 31_125 * u64::from(u32::MAX)
        );
    }

    #[test]
    fn floats_use_prometheus_syntax() {
        let f = |v: f64| {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            String::from_utf8(out).expect("ASCII")
        };
        assert_eq!(f(2.0), "2");
        assert_eq!(f(-0.0), "0");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(1592187678.669), "1592187678.669");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(2.5e20), "2.5e20");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn large_snapshots_render_every_series() {
        // 40 instances, 50 hot keys (freq + bytes) and 100 big keys (elements) each.
        let mut instances = Vec::new();
        for i in 0..40 {
            let hot_keys = (0..50)
                .map(|k| {
                    let mut r = key(&format!("hot:{k}"), Some(KeyType::String), Some(0), None);
                    r.freq = Some(200 - k);
                    r.size = Some(10 * k);
                    r.unit = Some(SizeUnit::Byte);
                    r
                })
                .collect();
            let big_keys = (0..100)
                .map(|k| {
                    let mut r = key(&format!("big:{k}"), Some(KeyType::Zset), Some(1), None);
                    r.size = Some(1_000_000 - k);
                    r.unit = Some(SizeUnit::Count);
                    r
                })
                .collect();
            instances.push(instance(
                &format!("i-{i:03}"),
                &format!("inst-{i}"),
                vec![
                    state(Analysis::Hotkey, Some(result(hot_keys))),
                    state(Analysis::Bigkey, Some(result(big_keys))),
                ],
            ));
        }
        let snap = snapshot(instances);
        let started = tokio::time::Instant::now();
        let text = render(&snap);
        eprintln!("rendered {} bytes in {:?}", text.len(), started.elapsed());
        let count = |prefix: &str| {
            samples(&text)
                .iter()
                .filter(|l| l.starts_with(prefix))
                .count()
        };
        assert_eq!(count("dcs_hotkey_frequency{"), 40 * 50);
        assert_eq!(count("dcs_hotkey_estimated_accesses{"), 40 * 50);
        assert_eq!(count("dcs_hotkey_size_bytes{"), 40 * 50);
        assert_eq!(count("dcs_hotkey_elements{"), 0);
        assert_eq!(count("dcs_bigkey_elements{"), 40 * 100);
        assert_eq!(count("dcs_analysis_failures_total{"), 40 * 2 * 5);
        // One HELP line per family, whatever the number of samples.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("# HELP dcs_hotkey_frequency "))
                .count(),
            1
        );
    }

    /// A snapshot with hostile key names and many series, for `promtool`.
    fn hostile() -> Snapshot {
        let names = [
            "plain",
            "quote\"d",
            "back\\slash",
            "new\nline",
            "cr\rlf\r\n",
            "tab\tnul\u{0}del\u{7f}",
            "\u{fffd}invalid\u{fffd}",
            "<script>alert(1)</script>",
            "unicode 键 🔑",
            "",
        ];
        let mut keys = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let mut k = key(
                n,
                Some(KeyType::String),
                Some(i as i64),
                Some("10.0.0.1:6379"),
            );
            k.freq = Some(200 - i as i64);
            k.size = Some(100);
            k.unit = Some(SizeUnit::Byte);
            keys.push(k);
        }
        keys.push({
            let mut k = key(&"long".repeat(100), Some(KeyType::Zset), Some(0), None);
            k.freq = Some(9);
            k
        });
        let mut inst = instance(
            "i-\"x\"\\",
            "name\nwith\"quotes",
            vec![
                state(Analysis::Hotkey, Some(result(keys))),
                state(Analysis::Bigkey, None),
            ],
        );
        inst.info = Some(InstanceInfo::default());
        snapshot(vec![inst, instance("i-2", "two", vec![])])
    }

    #[test]
    fn promtool_accepts_the_output() {
        let Some(promtool) = find_on_path("promtool") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is required in CI"
            );
            eprintln!("note: promtool not on PATH; skipping the promtool check");
            return;
        };
        for snap in [example(), hostile(), families_example()] {
            let text = render(&snap);
            let mut child = std::process::Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("promtool starts");
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(text.as_bytes())
                .expect("write to promtool");
            let res = child.wait_with_output().expect("promtool runs");
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&res.stdout),
                String::from_utf8_lossy(&res.stderr)
            );
            assert!(res.status.success(), "promtool: {report}\n---\n{text}");
            // Lint findings (naming, help) are printed but do not fail the exit code everywhere.
            assert!(report.trim().is_empty(), "promtool: {report}\n---\n{text}");
        }
    }

    fn family(
        name: &str,
        ty: &str,
        shard: &str,
        keys: u64,
        bytes: u64,
    ) -> crate::metrics::families::KeyFamily {
        crate::metrics::families::KeyFamily {
            family: name.into(),
            key_type: ty.into(),
            shard: shard.into(),
            keys,
            memory_bytes: bytes,
            keys_without_ttl: None,
        }
    }

    /// One instance with a key family result over two shards.
    fn families_example() -> Snapshot {
        use crate::metrics::families::{KeyspaceTotal, ShardFamilies};
        let total = |ty: &str, shard: &str, keys, bytes| KeyspaceTotal {
            key_type: ty.into(),
            shard: shard.into(),
            keys,
            memory_bytes: bytes,
        };
        let shard = |id: &str, totals| {
            Arc::new(ShardFamilies {
                task_id: id.into(),
                backup_id: None,
                finished_at: Some(1010.0),
                families: Vec::new(),
                totals,
                key_count: 0,
            })
        };
        let mut r = result(Vec::new());
        r.families = vec![
            family("test", "hash", "g0", 3, 300),
            family("user:1:cart", "string", "g0", 1, 10),
            family("user:2:cart", "string", "g0", 2, 20),
            family("other", "string", "g1", 5, 50),
        ];
        r.shards.insert(
            "g0".into(),
            shard(
                "t0",
                vec![total("hash", "g0", 3, 300), total("string", "g0", 3, 30)],
            ),
        );
        r.shards
            .insert("g1".into(), shard("t1", vec![total("string", "g1", 5, 50)]));
        snapshot(vec![instance(
            "i",
            "n",
            vec![state(Analysis::Keyfamily, Some(r))],
        )])
    }

    #[test]
    fn families_render_with_privacy_rules_and_summed_collisions() {
        let snap = families_example();
        let text = render(&snap);
        let s = samples(&text);
        let l = r#"instance_id="i",instance_name="n""#;
        for want in [
            format!(r#"dcs_keyfamily_keys{{{l},family="test",key_type="hash",shard="g0"}} 3"#),
            format!(
                r#"dcs_keyfamily_memory_bytes{{{l},family="other",key_type="string",shard="g1"}} 50"#
            ),
            format!(r#"dcs_keyspace_keys{{{l},key_type="string"}} 8"#),
            format!(r#"dcs_keyspace_memory_bytes{{{l},key_type="hash"}} 300"#),
        ] {
            assert!(s.contains(&want.as_str()), "missing {want} in\n{text}");
        }
        assert!(
            !text.contains("keys_without_ttl{"),
            "DCS families carry no TTL count"
        );

        // Rewritten names that coincide are one series, summed; `key_label: hash` hides names
        // (sha256("test") starts 9f86d081884c7d65) but not `other`.
        let rule =
            crate::metrics::keyrewrite::KeyRule::new(r"^user:\d+:(.*)$", "user:*:$1").unwrap();
        let opts = RenderOptions {
            key_rewrite: KeyRewrite::new(vec![rule]),
            ..RenderOptions::default()
        };
        let mut out = Vec::new();
        render_snapshot(&snap, &opts, &mut out);
        let text = String::from_utf8(out).unwrap();
        let want = format!(
            r#"dcs_keyfamily_memory_bytes{{{l},family="user:*:cart",key_type="string",shard="g0"}} 30"#
        );
        assert!(samples(&text).contains(&want.as_str()), "{text}");
        assert_eq!(text.matches("family=\"user:*:cart\"").count(), 2);
        let opts = RenderOptions {
            key_label: KeyLabelMode::Hash,
            ..RenderOptions::default()
        };
        let mut out = Vec::new();
        render_snapshot(&snap, &opts, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"family="sha256:9f86d081884c7d65""#),
            "{text}"
        );
        assert!(text.contains(r#"family="other""#));
        assert!(!text.contains("user:"), "{text}");
    }

    fn find_on_path(bin: &str) -> Option<std::path::PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(bin))
            .find(|p| p.is_file())
    }
}
