//! The catalogue of the metric families the snapshot renders: name, type and HELP text of
//! each, and the order of the per-result ones.

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// Name (without namespace), type and HELP text of one family.
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) help: &'static str,
}

pub(super) const HOTKEY_FREQUENCY: Family = Family {
    name: "hotkey_frequency",
    kind: Kind::Gauge,
    help: "LFU access-frequency counter (freq, 0-255, logarithmic) of a hot key, from the newest \
           completed hot key analysis of the instance; cached between analyses. 255 is the \
           counter's cap, reached after about 311,500 accesses at lfu-log-factor 10 (decay aside).",
};
pub(super) const HOTKEY_ESTIMATED_ACCESSES: Family = Family {
    name: "hotkey_estimated_accesses",
    kind: Kind::Gauge,
    help: "Expected number of accesses that drive a fresh key's LFU counter to the reported freq, \
           for the instance's lfu-log-factor, from the newest completed hot key analysis; cached \
           between analyses. Ignores LFU decay, so it is a floor-like estimate, not a count.",
};
pub(super) const HOTKEY_SIZE_BYTES: Family = Family {
    name: "hotkey_size_bytes",
    kind: Kind::Gauge,
    help: "Size in bytes of a hot key whose size unit is byte, from the newest completed hot key \
           analysis of the instance; cached between analyses.",
};
pub(super) const HOTKEY_ELEMENTS: Family = Family {
    name: "hotkey_elements",
    kind: Kind::Gauge,
    help: "Number of elements of a hot key whose size unit is count, from the newest completed \
           hot key analysis of the instance; cached between analyses.",
};
pub(super) const HOTKEY_ACCESSES_PER_SECOND: Family = Family {
    name: "hotkey_accesses_per_second",
    kind: Kind::Gauge,
    help: "Accesses per second of a hot key over its source's window (Valkey HOTKEYS qps of the \
           server's last completed window, or counted in a bounded MONITOR sample by this \
           exporter), from the newest completed hot key analysis of a Redis or Valkey target; \
           cached between analyses.",
};
pub(super) const HOTKEY_CPU_SECONDS_PER_SECOND: Family = Family {
    name: "hotkey_cpu_seconds_per_second",
    kind: Kind::Gauge,
    help: "Server CPU time spent on a hot key per second of the collection window (Redis \
           HOTKEYS by-cpu-time-us), from the newest completed hot key analysis of a Redis \
           target; cached between analyses.",
};
pub(super) const HOTKEY_NETWORK_BYTES_PER_SECOND: Family = Family {
    name: "hotkey_network_bytes_per_second",
    kind: Kind::Gauge,
    help: "Network bytes attributed to a hot key per second of the collection window (Redis \
           HOTKEYS by-net-bytes), from the newest completed hot key analysis of a Redis target; \
           cached between analyses.",
};
pub(super) const HOTKEY_SOURCE_INFO: Family = Family {
    name: "hotkey_source_info",
    kind: Kind::Gauge,
    help: "Where the hot keys of each node came from in the newest completed hot key analysis \
           (source: hotkeys, lfu or monitor on a Redis or Valkey target; dcs, shard empty, for a \
           DCS instance); always 1; cached between analyses.",
};
pub(super) const BIGKEY_SIZE_BYTES: Family = Family {
    name: "bigkey_size_bytes",
    kind: Kind::Gauge,
    help: "Size in bytes of a big key whose size unit is byte (strings), from the newest \
           completed big key analysis of the instance; cached between analyses.",
};
pub(super) const BIGKEY_ELEMENTS: Family = Family {
    name: "bigkey_elements",
    kind: Kind::Gauge,
    help: "Number of elements of a big key whose size unit is count (list, set, zset, hash), \
           from the newest completed big key analysis of the instance; cached between analyses.",
};
pub(super) const BIGKEY_MEMORY_BYTES: Family = Family {
    name: "bigkey_memory_bytes",
    kind: Kind::Gauge,
    help: "Bytes the server attributes to a big key (MEMORY USAGE), from the newest completed \
           big key scan of a Redis or Valkey target by this exporter; cached between analyses.",
};
pub(super) const KEYFAMILY_KEYS: Family = Family {
    name: "keyfamily_keys",
    kind: Kind::Gauge,
    help: "Keys of a key family (key pattern) of one type on one shard, from the newest completed \
           key family analysis of the instance (DCS: offline key analysis of a backup, largest \
           prefixes); the top N families by memory, the rest summed as family=other; cached \
           between analyses.",
};
pub(super) const KEYFAMILY_MEMORY_BYTES: Family = Family {
    name: "keyfamily_memory_bytes",
    kind: Kind::Gauge,
    help: "Bytes of a key family (key pattern) of one type on one shard, from the newest \
           completed key family analysis of the instance (DCS: the prefix' bytes reported by the \
           offline key analysis of a backup); the top N families by memory, the rest summed as \
           family=other; cached between analyses.",
};
pub(super) const KEYFAMILY_KEYS_WITHOUT_TTL: Family = Family {
    name: "keyfamily_keys_without_ttl",
    kind: Kind::Gauge,
    help: "Keys of a key family that never expire, from the newest completed key family \
           analysis of the instance; only for sources that report it (not DCS); cached between \
           analyses.",
};
pub(super) const KEYSPACE_KEYS: Family = Family {
    name: "keyspace_keys",
    kind: Kind::Gauge,
    help: "Keys of one type over all analysed shards of the instance, from the newest completed \
           key family analysis of each shard (DCS: type_num of the offline key analysis of a \
           backup); cached between analyses.",
};
pub(super) const KEYSPACE_MEMORY_BYTES: Family = Family {
    name: "keyspace_memory_bytes",
    kind: Kind::Gauge,
    help: "Bytes of the keys of one type over all analysed shards of the instance, from the \
           newest completed key family analysis of each shard (DCS: type_bytes of the offline \
           key analysis of a backup); cached between analyses.",
};
pub(super) const HOTSLOT_KEYS: Family = Family {
    name: "hotslot_keys",
    kind: Kind::Gauge,
    help: "Keys of a hot hash slot (CLUSTER SLOT-STATS key-count) of a Redis Cluster node, one \
           of the node's top N slots by CPU rate, from the newest completed hot slot analysis; \
           cached between analyses.",
};
pub(super) const HOTSLOT_CPU_SECONDS_PER_SECOND: Family = Family {
    name: "hotslot_cpu_seconds_per_second",
    kind: Kind::Gauge,
    help: "Server CPU time per second spent on a hash slot of a Redis Cluster node (the \
           difference of CLUSTER SLOT-STATS cpu-usec between two polls), from the newest \
           completed hot slot analysis; needs cluster-slot-stats-enabled yes; cached between \
           analyses.",
};
pub(super) const HOTSLOT_NETWORK_BYTES_PER_SECOND: Family = Family {
    name: "hotslot_network_bytes_per_second",
    kind: Kind::Gauge,
    help: "Network bytes per second of a hash slot of a Redis Cluster node, by direction (the \
           difference of CLUSTER SLOT-STATS network-bytes-in/out between two polls), from the \
           newest completed hot slot analysis; needs cluster-slot-stats-enabled yes; cached \
           between analyses.",
};
pub(super) const ANALYSIS_KEYS: Family = Family {
    name: "analysis_keys",
    kind: Kind::Gauge,
    help: "Keys reported by the newest completed analysis (num, else the number of keys \
           listed), not cut to the exported top N; cached between analyses.",
};
pub(super) const ANALYSIS_DURATION: Family = Family {
    name: "analysis_duration_seconds",
    kind: Kind::Gauge,
    help: "Run time of the newest completed analysis (finished_at - started_at, as DCS reported \
           them, or of the exporter's own scan of a Redis or Valkey target).",
};
pub(super) const ANALYSIS_QUEUE: Family = Family {
    name: "analysis_queue_seconds",
    kind: Kind::Gauge,
    help: "Time the newest completed analysis waited before it started (started_at - created_at \
           as DCS reported them; for a Redis or Valkey target, connecting and discovering its \
           topology).",
};
pub(super) const ANALYSIS_LAST_SUCCESS: Family = Family {
    name: "analysis_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "Unix time at which the newest completed analysis finished (finished_at as DCS \
           reported it, or the end of the exporter's own scan of a Redis or Valkey target).",
};
pub(super) const ANALYSIS_CONSECUTIVE_FAILURES: Family = Family {
    name: "analysis_consecutive_failures",
    kind: Kind::Gauge,
    help: "Analysis attempts in a row that produced no result, counted by this exporter; 0 after \
           a success, and 0 while the instance does not support the analysis.",
};
pub(super) const ANALYSIS_FAILURES: Family = Family {
    name: "analysis_failures_total",
    kind: Kind::Counter,
    help: "Analysis attempts that produced no result, counted by this exporter since it started, \
           by reason (task_failed, timeout, api_error, auth, unsupported; Redis and Valkey \
           targets also connection, server_error, protocol_error, server_changed).",
};
pub(super) const ANALYSIS_TASKS: Family = Family {
    name: "analysis_tasks_total",
    kind: Kind::Counter,
    help: "Analysis tasks (DCS tasks, or scans of Redis and Valkey targets) this exporter \
           created (origin=created) or picked up already there (origin=adopted) since it \
           started.",
};
pub(super) const ANALYSIS_SUPPORTED: Family = Family {
    name: "analysis_supported",
    kind: Kind::Gauge,
    help: "1, or 0 once the instance answered that it does not support this analysis (DCS: \
           DCS.4919 or DCS.4922; a Redis or Valkey target: no hot key source, or no cluster for \
           hot slots).",
};
pub(super) const ANALYSIS_RUNNING: Family = Family {
    name: "analysis_running",
    kind: Kind::Gauge,
    help: "1 while an analysis task this exporter follows is waiting or running on DCS, or its \
           scan of a Redis or Valkey target runs, else 0.",
};
pub(super) const ANALYSIS_INTERVAL: Family = Family {
    name: "analysis_interval_seconds",
    kind: Kind::Gauge,
    help: "Configured time between analyses (trigger mode) or between looks for new records \
           (observe mode), from the exporter's config; for staleness alerts.",
};
pub(super) const ANALYSIS_SCAN_KEYS_SCANNED: Family = Family {
    name: "analysis_scan_keys_scanned",
    kind: Kind::Gauge,
    help: "Keys the running scan of a Redis or Valkey target has visited so far, over all its \
           nodes; present only while this exporter runs such a scan.",
};
pub(super) const ANALYSIS_SCAN_KEYSPACE_KEYS: Family = Family {
    name: "analysis_scan_keyspace_keys",
    kind: Kind::Gauge,
    help: "Keys the scanned nodes held when the running scan started (INFO keyspace); present \
           only while this exporter runs a scan of a Redis or Valkey target.",
};
pub(super) const ANALYSIS_SCAN_COMPLETION: Family = Family {
    name: "analysis_scan_estimated_completion_timestamp_seconds",
    kind: Kind::Gauge,
    help: "Unix time at which the running scan of a Redis or Valkey target should end at its \
           pace so far; present only while such a scan runs and has visited keys.",
};
pub(super) const ANALYSIS_SCAN_DEADLINE: Family = Family {
    name: "analysis_scan_deadline_timestamp_seconds",
    kind: Kind::Gauge,
    help: "Unix time at which the running scan of a Redis or Valkey target is cut off by the \
           timeout the target sets; present only while such a scan runs (a scan whose timeout \
           is auto has none). A scan whose estimated completion is later will not finish.",
};
pub(super) const ANALYSIS_SCAN_TOUCHES_KEYS: Family = Family {
    name: "analysis_scan_touches_keys",
    kind: Kind::Gauge,
    help: "1 when the newest scan of a Redis or Valkey target counted as an access to the keys \
           it sized (their LFU counter and idle time change: the server has no CLIENT NO-TOUCH, \
           before Redis 7.2, or refuses it to the ACL user), 0 when it touched none; the hot key \
           ranking of such a server includes the scans' own reads.",
};
pub(super) const INSTANCE_INFO: Family = Family {
    name: "instance_info",
    kind: Kind::Gauge,
    help: "Details of an instance: of a DCS instance from discovery (ListInstances) or \
           ShowInstance, of a Redis or Valkey target from the server (INFO, engine with its own \
           version); always 1.",
};

/// A value to write after a sample's labels.
#[derive(Clone, Copy)]
pub(super) enum Value {
    Int(u64),
    Float(f64),
}

/// Number of per-result families (the length of the private `KEY_FAMILIES` table).
pub const KEY_FAMILY_COUNT: usize = 19;

/// The per-result metric families in output order: eight fed by hot key results (the rates
/// and the source only where the source is not the LFU counter or DCS: native targets), three
/// by big key results (the memory only where the source reports it: native targets), five by
/// key family results, three by hot slot results.
pub(super) const KEY_FAMILIES: [&Family; KEY_FAMILY_COUNT] = [
    &HOTKEY_FREQUENCY,
    &HOTKEY_ESTIMATED_ACCESSES,
    &HOTKEY_SIZE_BYTES,
    &HOTKEY_ELEMENTS,
    &HOTKEY_ACCESSES_PER_SECOND,
    &HOTKEY_CPU_SECONDS_PER_SECOND,
    &HOTKEY_NETWORK_BYTES_PER_SECOND,
    &HOTKEY_SOURCE_INFO,
    &BIGKEY_SIZE_BYTES,
    &BIGKEY_ELEMENTS,
    &BIGKEY_MEMORY_BYTES,
    &KEYFAMILY_KEYS,
    &KEYFAMILY_MEMORY_BYTES,
    &KEYFAMILY_KEYS_WITHOUT_TTL,
    &KEYSPACE_KEYS,
    &KEYSPACE_MEMORY_BYTES,
    &HOTSLOT_KEYS,
    &HOTSLOT_CPU_SECONDS_PER_SECOND,
    &HOTSLOT_NETWORK_BYTES_PER_SECOND,
];
/// Indexes into [`KEY_FAMILIES`] of the families fed per key.
pub(super) const I_HOTKEY_FREQUENCY: usize = 0;
pub(super) const I_HOTKEY_ESTIMATED_ACCESSES: usize = 1;
pub(super) const I_HOTKEY_SIZE_BYTES: usize = 2;
pub(super) const I_HOTKEY_ELEMENTS: usize = 3;
pub(super) const I_HOTKEY_ACCESSES: usize = 4;
pub(super) const I_HOTKEY_CPU: usize = 5;
pub(super) const I_HOTKEY_NETWORK: usize = 6;
pub(super) const I_HOTKEY_SOURCE_INFO: usize = 7;
pub(super) const I_BIGKEY_SIZE_BYTES: usize = 8;
pub(super) const I_BIGKEY_ELEMENTS: usize = 9;
pub(super) const I_BIGKEY_MEMORY_BYTES: usize = 10;
/// Index of the first key family metric in [`KEY_FAMILIES`].
pub(super) const FIRST_FAMILY_METRIC: usize = 11;
/// Index of the first hot slot metric in [`KEY_FAMILIES`].
pub(super) const FIRST_HOTSLOT_METRIC: usize = 16;
