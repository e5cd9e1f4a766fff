//! What the exporter's own hot key and hot slot analyses of Redis and Valkey targets add to a
//! result: which source each node's hot keys came from, and the hottest hash slots of each
//! node of a Redis Cluster.

/// Where one node's hot keys came from (`dcs_hotkey_source_info`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeSource {
    /// The node's `shard` label (`ip:port` of a cluster master, else empty).
    pub shard: String,
    /// `hotkeys`, `lfu` or `monitor` (and `dcs` for DCS instances, whose results carry none).
    pub source: &'static str,
}

/// One hot hash slot of a cluster node, from the difference between two `CLUSTER SLOT-STATS`
/// polls.
#[derive(Clone, Debug, PartialEq)]
pub struct HotSlot {
    /// The node's `shard` label (`ip:port` of its master).
    pub shard: String,
    pub slot: u16,
    /// `key-count` at the newer poll.
    pub keys: u64,
    /// `cpu-usec` per second between the polls (only with `cluster-slot-stats-enabled yes`).
    pub cpu_seconds_per_second: Option<f64>,
    /// `network-bytes-in` per second between the polls (same).
    pub network_in_bytes_per_second: Option<f64>,
    /// `network-bytes-out` per second between the polls (same).
    pub network_out_bytes_per_second: Option<f64>,
}

impl HotSlot {
    /// The order of a node's slots: by CPU rate where measured, else by key count; ties by
    /// slot number.
    pub fn ranked(slots: &mut [HotSlot]) {
        slots.sort_by(|a, b| {
            let cpu = |s: &HotSlot| s.cpu_seconds_per_second.unwrap_or(-1.0);
            cpu(b)
                .total_cmp(&cpu(a))
                .then(b.keys.cmp(&a.keys))
                .then(a.slot.cmp(&b.slot))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u16, keys: u64, cpu: Option<f64>) -> HotSlot {
        HotSlot {
            shard: "s".into(),
            slot: n,
            keys,
            cpu_seconds_per_second: cpu,
            network_in_bytes_per_second: None,
            network_out_bytes_per_second: None,
        }
    }

    #[test]
    fn slots_rank_by_cpu_then_keys_then_number() {
        let mut v = vec![
            slot(1, 10, Some(0.1)),
            slot(2, 99, Some(0.3)),
            slot(3, 5, Some(0.3)),
            slot(4, 1000, None),
            slot(0, 1000, None),
        ];
        HotSlot::ranked(&mut v);
        let order: Vec<u16> = v.iter().map(|s| s.slot).collect();
        assert_eq!(order, [2, 3, 1, 0, 4]);
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;
    use crate::dcs::{Analysis, ScanType, TaskRecord, TaskStatus};
    use crate::metrics::store::{AnalysisSpec, InstanceSpec, Store};

    fn task(id: &str, finished: &str) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            instance_id: Some("r".into()),
            status: TaskStatus::Success,
            scan_type: Some(ScanType::Manual),
            created_at: Some("2024-01-01T00:00:00.000Z".into()),
            started_at: Some("2024-01-01T00:00:01.000Z".into()),
            finished_at: Some(finished.into()),
            num: Some(3),
            keys: Some(Vec::new()),
        }
    }

    fn store() -> Store {
        let store = Store::new();
        let spec = |analysis| AnalysisSpec {
            analysis,
            top_n: 5,
            mode: "trigger",
            interval: std::time::Duration::from_secs(60),
        };
        store.configure(&[InstanceSpec {
            id: "r".into(),
            name: "r".into(),
            lfu_log_factor: 10,
            native: false,
            analyses: vec![spec(Analysis::Hotkey), spec(Analysis::Hotslot)],
        }]);
        store
    }

    #[test]
    fn sources_staged_by_a_scan_are_published_with_that_scans_result_only() {
        let s = store();
        s.stage_hotkey_source("r", "t1", "b:1", "lfu");
        s.stage_hotkey_source("r", "t1", "a:1", "monitor");
        // The same node again: the later source wins.
        s.stage_hotkey_source("r", "t1", "a:1", "hotkeys");
        assert!(s.publish(
            "r",
            Analysis::Hotkey,
            &task("t1", "2024-01-01T00:01:00.000Z")
        ));
        let r = s.result("r", Analysis::Hotkey).unwrap();
        let got: Vec<(&str, &str)> = r
            .sources
            .iter()
            .map(|n| (n.shard.as_str(), n.source))
            .collect();
        assert_eq!(got, [("a:1", "hotkeys"), ("b:1", "lfu")]);
        // Sources staged by another task do not go with this one.
        s.stage_hotkey_source("r", "t3", "a:1", "monitor");
        assert!(s.publish(
            "r",
            Analysis::Hotkey,
            &task("t2", "2024-01-01T00:02:00.000Z")
        ));
        assert!(s.result("r", Analysis::Hotkey).unwrap().sources.is_empty());
    }

    #[test]
    fn hot_slots_are_published_once_per_task_and_a_newer_task_replaces_them() {
        let s = store();
        let slot = |n| HotSlot {
            shard: "a:1".into(),
            slot: n,
            keys: 1,
            cpu_seconds_per_second: Some(0.1),
            network_in_bytes_per_second: None,
            network_out_bytes_per_second: None,
        };
        let t1 = task("h1", "2024-01-01T00:01:00.000Z");
        assert!(s.publish_hotslots("r", Analysis::Hotslot, &t1, vec![slot(7)]));
        // The loop publishes the same task afterwards: the slots stay.
        assert!(!s.publish("r", Analysis::Hotslot, &t1));
        let r = s.result("r", Analysis::Hotslot).unwrap();
        assert_eq!((r.slots.len(), r.key_count), (1, 3));
        let t2 = task("h2", "2024-01-01T00:02:00.000Z");
        assert!(s.publish_hotslots("r", Analysis::Hotslot, &t2, vec![slot(8), slot(9)]));
        let slots: Vec<u16> = s
            .result("r", Analysis::Hotslot)
            .unwrap()
            .slots
            .iter()
            .map(|x| x.slot)
            .collect();
        assert_eq!(slots, [8, 9]);
    }
}
