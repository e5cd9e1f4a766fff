//! What the status page shows of the hot key sources and hot slots of Redis and Valkey targets:
//! each node's source, each hot key's measure in its source's own unit, the hot slots of a
//! cluster, and what to enable where something is missing.

use std::fmt::Write as _;

use super::text::{esc, human_bytes, thousands};
use crate::dcs::{Analysis, KeyRecord};
use crate::metrics::store::AnalysisResult;

/// Slots shown per analysis.
pub const TOP_SLOTS: usize = 10;

/// What the page's words about sources and slots mean.
pub(super) const LEGEND: &str = "<dl class=\"legend\">\n\
<dt>source</dt><dd>Redis and Valkey targets: where a node's hot keys come from. \
<code>hotkeys</code>: the server's own tracking (Redis 8.6+ <code>HOTKEYS</code> sessions, \
CPU time and network bytes per key; Valkey 9.2+ with <code>hotkeys-top-k</code> above 0, \
accesses per second); <code>lfu</code>: the LFU counters (an LFU \
<code>maxmemory-policy</code>); <code>monitor</code>: a bounded <code>MONITOR</code> sample \
per interval (<code>analysis.hotkey.source: monitor</code>), accesses per second.</dd>\n\
<dt>measure</dt><dd>a hot key's value in its source's unit: <code>freq</code> (LFU), \
accesses per second, or CPU time and network bytes per second.</dd>\n\
<dt>hot slots</dt><dd>Redis Cluster targets: each master's hash slots with the most CPU time \
per second between two <code>CLUSTER SLOT-STATS</code> polls (Valkey 8.0+, Redis 8.2+). CPU and \
network rates need <code>cluster-slot-stats-enabled yes</code> on the servers; without it \
slots are ranked by their keys.</dd>\n\
</dl>\n";

/// A rate for people: `1,234/s`, `3.5/s`.
fn per_second(v: f64) -> String {
    if v >= 10.0 {
        format!("{}/s", thousands(v.round() as i64))
    } else {
        format!("{v:.1}/s")
    }
}

/// CPU seconds per second as milliseconds of CPU per second.
fn cpu(v: f64) -> String {
    format!("{:.1} ms CPU/s", v * 1000.0)
}

fn bytes_per_second(v: f64) -> String {
    format!("{}/s", human_bytes(v.round() as i64))
}

/// A hot key's value in its source's unit (HTML-safe).
pub(super) fn measure(k: &KeyRecord) -> String {
    if let Some(f) = k.freq {
        return f.to_string();
    }
    let Some(r) = k.rates else {
        return "?".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(a) = r.accesses_per_second {
        parts.push(format!("{} accesses", per_second(a)));
    }
    if let Some(c) = r.cpu_seconds_per_second {
        parts.push(cpu(c));
    }
    if let Some(n) = r.network_bytes_per_second {
        parts.push(bytes_per_second(n));
    }
    if parts.is_empty() {
        "?".to_owned()
    } else {
        parts.join(" · ")
    }
}

/// The heading of the value column of a hot key table.
pub(super) fn header(result: &AnalysisResult) -> &'static str {
    if result.keys.iter().all(|k| k.freq.is_some()) {
        "freq"
    } else {
        "measure"
    }
}

/// Which source each node's hot keys came from, when the result says.
pub(super) fn sources(h: &mut String, result: &AnalysisResult) {
    if result.sources.is_empty() {
        return;
    }
    let nodes: Vec<String> = result
        .sources
        .iter()
        .map(|s| {
            if s.shard.is_empty() {
                format!("<code>{}</code>", s.source)
            } else {
                format!("<code>{}</code> on {}", s.source, esc(&s.shard))
            }
        })
        .collect();
    let _ = writeln!(h, "<p>Hot keys from: {}.</p>", nodes.join(", "));
}

/// Why an analysis is unsupported, and what would change it, for a DCS instance or for a
/// Redis or Valkey server the exporter scans itself (`native`).
pub(super) fn unsupported(analysis: Analysis, native: bool) -> &'static str {
    match (analysis, native) {
        (Analysis::Hotslot, _) => {
            "hot slots need a Redis Cluster whose servers have CLUSTER SLOT-STATS (Valkey 8.0+, \
             Redis 8.2+); the last error says which is missing"
        }
        (Analysis::Hotkey, true) => {
            "the server has no hot key source: it needs HOTKEYS (Redis 8.6+, Valkey 9.2+ with \
             hotkeys-top-k above 0) or an LFU maxmemory-policy, or analysis.hotkey.source: \
             monitor in the exporter's config"
        }
        (Analysis::Hotkey, false) => {
            "DCS answered that the instance cannot give hot keys: it needs Redis 4.0 or later \
             and an LFU maxmemory-policy"
        }
        (Analysis::Bigkey | Analysis::Keyfamily, true) => {
            "the server cannot run it; the last error says why"
        }
        (Analysis::Bigkey | Analysis::Keyfamily, false) => {
            "DCS answered that the instance cannot run it"
        }
    }
}

/// The hot slots of a hot slot result, and what to enable when the servers measure no rates.
pub(super) fn slots(h: &mut String, result: &AnalysisResult) {
    if result.slots.is_empty() {
        h.push_str("<p>The newest result reported no slots.</p>\n");
        return;
    }
    if result
        .slots
        .iter()
        .all(|s| s.cpu_seconds_per_second.is_none())
    {
        h.push_str(
            "<p class=\"muted\">The servers report key counts only: CPU and network rates per \
             slot need <code>cluster-slot-stats-enabled yes</code> on every master \
             (<code>CONFIG SET cluster-slot-stats-enabled yes</code>, and in the server's \
             config file). Slots are ranked by keys meanwhile.</p>\n",
        );
    }
    h.push_str(
        "<table class=\"keys slots\">\n<tr><th>shard</th><th>slot</th><th>keys</th>\
         <th>CPU</th><th>network in</th><th>network out</th></tr>\n",
    );
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "?".to_owned(), f);
    for s in result.slots.iter().take(TOP_SLOTS) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.shard),
            s.slot,
            thousands(s.keys.min(i64::MAX as u64) as i64),
            opt(s.cpu_seconds_per_second, cpu),
            opt(s.network_in_bytes_per_second, bytes_per_second),
            opt(s.network_out_bytes_per_second, bytes_per_second),
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::HotRates;
    use crate::metrics::hot::{HotSlot, NodeSource};
    use crate::metrics::render::RenderOptions;
    use crate::metrics::store::{AnalysisSpec, AnalysisState, InstanceState, Snapshot};
    use std::sync::Arc;

    fn result() -> AnalysisResult {
        AnalysisResult {
            task_id: "t".into(),
            scan_type: None,
            created_at: None,
            started_at: None,
            finished_at: Some(1000.0),
            key_count: 1,
            keys: Default::default(),
            shards: Default::default(),
            families: Vec::new(),
            sources: Vec::new(),
            slots: Vec::new(),
        }
    }

    fn state(analysis: Analysis, result: Option<AnalysisResult>) -> AnalysisState {
        AnalysisState {
            result: result.map(Arc::new),
            ..AnalysisState::new(AnalysisSpec {
                analysis,
                top_n: 5,
                mode: "trigger",
                interval: std::time::Duration::from_secs(60),
            })
        }
    }

    fn page(analyses: Vec<AnalysisState>) -> String {
        let inst = InstanceState {
            id: "redis://c:7000".into(),
            name: "cluster".into(),
            lfu_log_factor: 10,
            native: false,
            info: None,
            analyses: analyses.into_iter().map(|a| (a.spec.analysis, a)).collect(),
        };
        let snap = Snapshot {
            instances: [(inst.id.clone(), inst)].into_iter().collect(),
        };
        super::super::render_page(&snap, "/metrics", 2000.0, &RenderOptions::default())
    }

    #[test]
    fn the_page_names_each_nodes_source_and_each_keys_measure() {
        let mut r = result();
        r.keys = vec![KeyRecord {
            name: "feed:home".into(),
            shard: Some("10.0.0.1:7000".into()),
            rates: Some(HotRates {
                accesses_per_second: Some(1500.0),
                ..HotRates::default()
            }),
            ..KeyRecord::default()
        }]
        .into();
        r.sources = vec![NodeSource {
            shard: "10.0.0.1:7000".into(),
            source: "monitor",
        }];
        let h = page(vec![state(Analysis::Hotkey, Some(r))]);
        assert!(
            h.contains("Hot keys from: <code>monitor</code> on 10.0.0.1:7000."),
            "{h}"
        );
        assert!(h.contains("<th>measure</th>"), "{h}");
        assert!(h.contains("1,500/s accesses"), "{h}");
    }

    #[test]
    fn hot_slots_show_and_say_what_to_enable_when_the_servers_measure_no_rates() {
        let slot = |n: u16, cpu: Option<f64>| HotSlot {
            shard: "10.0.0.1:7000".into(),
            slot: n,
            keys: 4200,
            cpu_seconds_per_second: cpu,
            network_in_bytes_per_second: cpu.map(|_| 2048.0),
            network_out_bytes_per_second: cpu.map(|_| 0.0),
        };
        let mut r = result();
        r.slots = vec![slot(12182, None)];
        let h = page(vec![state(Analysis::Hotslot, Some(r))]);
        assert!(h.contains("cluster-slot-stats-enabled yes"), "{h}");
        assert!(h.contains("<td>12182</td><td>4,200</td><td>?</td>"), "{h}");
        let mut r = result();
        r.slots = vec![slot(12182, Some(0.0125))];
        let h = page(vec![state(Analysis::Hotslot, Some(r))]);
        assert!(!h.contains("report key counts only"), "{h}");
        assert!(
            h.contains("<td>12.5 ms CPU/s</td><td>2.0 KiB/s</td><td>0 B/s</td>"),
            "{h}"
        );
        // Unsupported: what hot slots need.
        let mut st = state(Analysis::Hotslot, None);
        st.supported = false;
        let h = page(vec![st]);
        assert!(
            h.contains("CLUSTER SLOT-STATS (Valkey 8.0+, Redis 8.2+)"),
            "{h}"
        );
    }

    #[test]
    fn a_hot_key_shows_its_sources_own_measure() {
        let mut k = KeyRecord {
            freq: Some(200),
            ..KeyRecord::default()
        };
        assert_eq!(measure(&k), "200");
        k.freq = None;
        k.rates = Some(HotRates {
            accesses_per_second: Some(48_200.4),
            ..HotRates::default()
        });
        assert_eq!(measure(&k), "48,200/s accesses");
        k.rates = Some(HotRates {
            cpu_seconds_per_second: Some(0.0125),
            network_bytes_per_second: Some(4300.0),
            ..HotRates::default()
        });
        assert_eq!(measure(&k), "12.5 ms CPU/s · 4.2 KiB/s");
    }
}
