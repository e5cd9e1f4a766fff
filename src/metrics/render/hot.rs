//! The samples of what the exporter's own hot key and hot slot analyses of Redis and Valkey
//! targets add to a result: each hot key's per-second measures, where each node's hot keys
//! came from, and each node's hot slots.

use super::catalog::{
    Value, FIRST_HOTSLOT_METRIC, I_HOTKEY_ACCESSES, I_HOTKEY_CPU, I_HOTKEY_NETWORK,
    I_HOTKEY_SOURCE_INFO, KEY_FAMILIES, KEY_FAMILY_COUNT,
};
use super::text::{label, sample, sample_with};
use super::KeyFamilies;
use crate::dcs::KeyRecord;
use crate::metrics::store::{AnalysisResult, InstanceState};

/// The per-second measures of a hot key, where its source measured them.
pub(super) fn rates(rec: &KeyRecord, values: &mut [Option<Value>; KEY_FAMILY_COUNT]) {
    let Some(r) = rec.rates else { return };
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0).map(Value::Float);
    values[I_HOTKEY_ACCESSES] = finite(r.accesses_per_second);
    values[I_HOTKEY_CPU] = finite(r.cpu_seconds_per_second);
    values[I_HOTKEY_NETWORK] = finite(r.network_bytes_per_second);
}

fn node_labels(out: &mut Vec<u8>, inst: &InstanceState, shard: &str) {
    out.clear();
    label(out, "instance_id", &inst.id, true);
    label(out, "instance_name", &inst.name, false);
    label(out, "shard", shard, false);
}

/// `hotkey_source_info` of each node of a hot key result: the sources the exporter's own scans
/// staged, node by node; a result without any (a DCS hot key analysis) has `source="dcs"` for
/// the whole instance (`shard=""`).
pub(super) fn sources(
    inst: &InstanceState,
    result: &AnalysisResult,
    ns: &str,
    out: &mut KeyFamilies,
) {
    let family = KEY_FAMILIES[I_HOTKEY_SOURCE_INFO];
    let mut labels = Vec::with_capacity(128);
    let dcs = [crate::metrics::hot::NodeSource {
        shard: String::new(),
        source: "dcs",
    }];
    let sources = if result.sources.is_empty() {
        &dcs[..]
    } else {
        &result.sources[..]
    };
    for s in sources {
        node_labels(&mut labels, inst, &s.shard);
        label(&mut labels, "source", s.source, false);
        sample(
            &mut out[I_HOTKEY_SOURCE_INFO],
            ns,
            family,
            &labels,
            Value::Int(1),
        );
    }
}

/// The hot slot samples of the result, node by node in rank order.
pub(super) fn slots(
    inst: &InstanceState,
    result: &AnalysisResult,
    ns: &str,
    out: &mut KeyFamilies,
) {
    let (i_keys, i_cpu, i_net) = (
        FIRST_HOTSLOT_METRIC,
        FIRST_HOTSLOT_METRIC + 1,
        FIRST_HOTSLOT_METRIC + 2,
    );
    let mut labels = Vec::with_capacity(128);
    let mut seen = std::collections::HashSet::new();
    for s in &result.slots {
        // A slot of one node once (a result never lists one twice; a broken one would be two
        // series with one label set).
        if !seen.insert((s.shard.as_str(), s.slot)) {
            continue;
        }
        node_labels(&mut labels, inst, &s.shard);
        label(&mut labels, "slot", &s.slot.to_string(), false);
        sample(
            &mut out[i_keys],
            ns,
            KEY_FAMILIES[i_keys],
            &labels,
            Value::Int(s.keys),
        );
        if let Some(cpu) = s.cpu_seconds_per_second.filter(|v| v.is_finite()) {
            sample(
                &mut out[i_cpu],
                ns,
                KEY_FAMILIES[i_cpu],
                &labels,
                Value::Float(cpu),
            );
        }
        for (direction, v) in [
            ("in", s.network_in_bytes_per_second),
            ("out", s.network_out_bytes_per_second),
        ] {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                sample_with(
                    &mut out[i_net],
                    ns,
                    KEY_FAMILIES[i_net],
                    &labels,
                    ("direction", direction),
                    Value::Float(v),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::dcs::{Analysis, HotRates, KeyRecord, KeyType};
    use crate::metrics::hot::{HotSlot, NodeSource};
    use crate::metrics::render::{render_snapshot, RenderOptions};
    use crate::metrics::store::{
        AnalysisResult, AnalysisSpec, AnalysisState, InstanceState, Snapshot,
    };

    fn instance(analysis: Analysis, result: AnalysisResult) -> Snapshot {
        let state = AnalysisState {
            result: Some(Arc::new(result)),
            ..AnalysisState::new(AnalysisSpec {
                analysis,
                top_n: 10,
                mode: "trigger",
                interval: std::time::Duration::from_secs(60),
            })
        };
        let inst = InstanceState {
            id: "redis://h:7000".into(),
            name: "c".into(),
            lfu_log_factor: 10,
            native: false,
            info: None,
            analyses: [(analysis, state)].into_iter().collect(),
        };
        Snapshot {
            instances: [(inst.id.clone(), inst)].into_iter().collect(),
        }
    }

    fn result() -> AnalysisResult {
        AnalysisResult {
            task_id: "t".into(),
            scan_type: None,
            created_at: None,
            started_at: None,
            finished_at: Some(10.0),
            key_count: 0,
            keys: Default::default(),
            shards: Default::default(),
            families: Vec::new(),
            sources: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// The sample lines of the families whose names start with `prefix`.
    fn lines(s: &Snapshot, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        render_snapshot(s, &RenderOptions::default(), &mut out);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn hot_keys_carry_their_sources_measures_and_each_nodes_source() {
        let mut r = result();
        r.keys = vec![
            KeyRecord {
                name: "k1".into(),
                key_type: Some(KeyType::String),
                shard: Some("10.0.0.1:7000".into()),
                db: Some(0),
                rates: Some(HotRates {
                    cpu_seconds_per_second: Some(0.0125),
                    network_bytes_per_second: Some(4300.0),
                    ..HotRates::default()
                }),
                ..KeyRecord::default()
            },
            KeyRecord {
                name: "k2".into(),
                shard: Some("10.0.0.2:7000".into()),
                db: Some(2),
                rates: Some(HotRates {
                    accesses_per_second: Some(1500.5),
                    ..HotRates::default()
                }),
                ..KeyRecord::default()
            },
        ]
        .into();
        r.sources = vec![
            NodeSource {
                shard: "10.0.0.1:7000".into(),
                source: "hotkeys",
            },
            NodeSource {
                shard: "10.0.0.2:7000".into(),
                source: "monitor",
            },
        ];
        let s = instance(Analysis::Hotkey, r);
        let k1 = r#"instance_id="redis://h:7000",instance_name="c",key="k1",key_type="string",db="0",shard="10.0.0.1:7000""#;
        let k2 = r#"instance_id="redis://h:7000",instance_name="c",key="k2",key_type="",db="2",shard="10.0.0.2:7000""#;
        assert_eq!(
            lines(&s, "dcs_hotkey"),
            [
                format!("dcs_hotkey_accesses_per_second{{{k2}}} 1500.5"),
                format!("dcs_hotkey_cpu_seconds_per_second{{{k1}}} 0.0125"),
                format!("dcs_hotkey_network_bytes_per_second{{{k1}}} 4300"),
                r#"dcs_hotkey_source_info{instance_id="redis://h:7000",instance_name="c",shard="10.0.0.1:7000",source="hotkeys"} 1"#.to_owned(),
                r#"dcs_hotkey_source_info{instance_id="redis://h:7000",instance_name="c",shard="10.0.0.2:7000",source="monitor"} 1"#.to_owned(),
            ]
        );
    }

    #[test]
    fn hot_slots_carry_keys_cpu_and_network_by_direction() {
        let mut r = result();
        let slot = |n: u16, cpu: Option<f64>| HotSlot {
            shard: "10.0.0.1:7000".into(),
            slot: n,
            keys: 12,
            cpu_seconds_per_second: cpu,
            network_in_bytes_per_second: cpu.map(|_| 100.0),
            network_out_bytes_per_second: cpu.map(|_| 2000.25),
        };
        r.slots = vec![
            slot(12182, Some(0.25)),
            slot(3, None),
            slot(12182, Some(9.0)),
        ];
        let s = instance(Analysis::Hotslot, r);
        let l = |n: u16| {
            format!(
                r#"instance_id="redis://h:7000",instance_name="c",shard="10.0.0.1:7000",slot="{n}""#
            )
        };
        assert_eq!(
            lines(&s, "dcs_hotslot"),
            [
                format!("dcs_hotslot_keys{{{}}} 12", l(12182)),
                format!("dcs_hotslot_keys{{{}}} 12", l(3)),
                format!("dcs_hotslot_cpu_seconds_per_second{{{}}} 0.25", l(12182)),
                format!(
                    "dcs_hotslot_network_bytes_per_second{{{},direction=\"in\"}} 100",
                    l(12182)
                ),
                format!(
                    "dcs_hotslot_network_bytes_per_second{{{},direction=\"out\"}} 2000.25",
                    l(12182)
                ),
            ]
        );
    }
}
