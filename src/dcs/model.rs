//! Typed models of the DCS v2 cache-analysis, autoscan and instance APIs.
//!
//! Shared by the client (which parses them) and the simulator (which serialises them). Parsing is
//! tolerant the way a real client must be: optional fields may be missing or `null`, unknown fields
//! are ignored, and an enum value this crate does not know is kept as [`Other`](TaskStatus::Other)
//! instead of failing the whole response. Fields of a key or record take what they can from a
//! value of the wrong shape (a number as a string, a float for an integer, a number for a
//! timestamp), and a key or list record that is not an object of the expected shape is dropped.
//! A value that cannot be read at all (a number beyond `f64` such as `1e400`, nesting deeper
//! than serde_json's limit) costs its field, or its key or record, never the response.
//!
//! Lists are read one entry at a time, never as a whole JSON tree, and a task's keys are cut
//! while they are read to what can be exported: the [`KEPT_KEYS`] hottest keys and the
//! [`KEPT_KEYS`] biggest keys of each size unit (the largest `top_n` the config accepts). A
//! 20 MB answer then costs about its own size, not thirty times that.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Path segment of every offline key analysis endpoint: `/{instance}/offline/key-analysis`
/// (see [`offline`](super::offline)).
pub const KEY_ANALYSIS_SEGMENT: &str = "offline/key-analysis";

/// The key analyses DCS offers: the hot key and big key scans of the live instance, and the
/// offline key analysis of a backup, which reports key families (largest prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Analysis {
    Hotkey,
    Bigkey,
    /// The offline (full) key analysis of a backup (`CreateOfflineKeyAnalysis`, see
    /// [`offline`](super::offline)); its `analysis` label value is `keyfamily`.
    Keyfamily,
    /// Hot hash slots of a Redis Cluster (`CLUSTER SLOT-STATS`): read by the exporter itself
    /// from Redis and Valkey targets only; DCS offers no such analysis, so no DCS call names it.
    Hotslot,
}

impl Analysis {
    /// The two scan-task analyses, which share one API shape (task records with keys).
    pub const ALL: [Analysis; 2] = [Analysis::Hotkey, Analysis::Bigkey];
    /// Every analysis kind, in output order.
    pub const EVERY: [Analysis; 4] = [
        Analysis::Hotkey,
        Analysis::Bigkey,
        Analysis::Keyfamily,
        Analysis::Hotslot,
    ];

    /// The value of the `analysis` metric label and the config key.
    pub fn as_str(self) -> &'static str {
        match self {
            Analysis::Hotkey => "hotkey",
            Analysis::Bigkey => "bigkey",
            Analysis::Keyfamily => "keyfamily",
            Analysis::Hotslot => "hotslot",
        }
    }

    /// Path segment of the single-task endpoints (create / show / delete).
    pub fn task_segment(self) -> &'static str {
        match self {
            Analysis::Hotkey => "hotkey-task",
            Analysis::Bigkey => "bigkey-task",
            Analysis::Keyfamily => KEY_ANALYSIS_SEGMENT,
            Analysis::Hotslot => "hotslot",
        }
    }

    /// Path segment of the list endpoint.
    pub fn tasks_segment(self) -> &'static str {
        match self {
            Analysis::Hotkey => "hotkey-tasks",
            Analysis::Bigkey => "bigkey-tasks",
            Analysis::Keyfamily => KEY_ANALYSIS_SEGMENT,
            Analysis::Hotslot => "hotslot",
        }
    }

    /// Path segment of the autoscan endpoints (`/{instance}/{segment}/autoscan`).
    pub fn autoscan_segment(self) -> &'static str {
        self.as_str()
    }

    /// The official SDK's operation name, used as the `operation` metric label. The offline key
    /// analysis has no autoscan: those two names are the big key ones' counterparts that do not
    /// exist, and no call uses them; hot slots have no DCS operation at all.
    pub fn operation(self, op: Operation) -> &'static str {
        use Analysis::*;
        use Operation::*;
        match (op, self) {
            (ListTasks, Hotkey) => "ListHotKeyScanTasks",
            (ListTasks, Bigkey) => "ListBigkeyScanTasks",
            (ListTasks, Keyfamily) => "ListOfflineKeyAnalysisTask",
            (CreateTask, Hotkey) => "CreateHotkeyScanTask",
            (CreateTask, Bigkey) => "CreateBigkeyScanTask",
            (CreateTask, Keyfamily) => "CreateOfflineKeyAnalysis",
            (ShowTask, Hotkey) => "ShowHotkeyTaskDetails",
            (ShowTask, Bigkey) => "ShowBigkeyScanTaskDetails",
            (ShowTask, Keyfamily) => "ShowOfflineKeyAnalysisTask",
            (DeleteTask, Hotkey) => "DeleteHotkeyScanTask",
            (DeleteTask, Bigkey) => "DeleteBigkeyScanTask",
            (DeleteTask, Keyfamily) => "DeleteOfflineKeyAnalysisTask",
            (ShowAutoscan, Hotkey) => "ShowHotkeyAutoscanConfig",
            (ShowAutoscan, Bigkey) => "ShowBigkeyAutoscanConfig",
            (ShowAutoscan, Keyfamily) => "ShowOfflineKeyAnalysisAutoscanConfig",
            (UpdateAutoscan, Hotkey) => "UpdateHotkeyAutoScanConfig",
            (UpdateAutoscan, Bigkey) => "UpdateBigkeyAutoscanConfig",
            (UpdateAutoscan, Keyfamily) => "UpdateOfflineKeyAnalysisAutoscanConfig",
            // Read from the servers themselves: no DCS operation exists, none is called.
            (_, Hotslot) => "ClusterSlotStats",
        }
    }
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-analysis operations (see [`Analysis::operation`] for their SDK names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    ListTasks,
    CreateTask,
    ShowTask,
    DeleteTask,
    ShowAutoscan,
    UpdateAutoscan,
}

/// Declares a string enum that keeps unknown values instead of failing.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this crate does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::from(s.as_ref()))
            }
        }
    };
}

open_enum!(
    /// Lifecycle of an analysis task.
    TaskStatus { Waiting => "waiting", Running => "running", Success => "success", Failed => "failed" }
);

impl TaskStatus {
    /// `waiting` or `running`: the task has not ended yet.
    pub fn is_active(&self) -> bool {
        matches!(self, TaskStatus::Waiting | TaskStatus::Running)
    }
}

open_enum!(
    /// Whether a task was created through the API/console (`manual`) or by the autoscan schedule.
    ScanType { Manual => "manual", Auto => "auto" }
);

open_enum!(
    /// Redis value type of a reported key.
    KeyType { String => "string", List => "list", Set => "set", Zset => "zset", Hash => "hash" }
);

open_enum!(
    /// Unit of a key's `size`: bytes (strings) or element count (collections).
    SizeUnit { Byte => "byte", Count => "count" }
);

/// One key reported by a hot key or big key analysis (`HotkeysBody` / `BigkeysBody`).
///
/// Hot keys carry `freq`; big keys do not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyRecord {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub name: String,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::open_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_type: Option<KeyType>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub shard: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub db: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub size: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient::open_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub unit: Option<SizeUnit>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub freq: Option<i64>,
    /// Bytes the server attributes to the key (`MEMORY USAGE`); only the exporter's own scans
    /// of Redis and Valkey targets know it.
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<i64>,
    /// What a hot key source other than the LFU counter measured (the exporter's own analyses
    /// of Redis and Valkey targets: `HOTKEYS`, a `MONITOR` sample); never on the DCS wire.
    #[serde(skip)]
    pub rates: Option<HotRates>,
}

/// Per-second measures of a hot key over its source's window. Each is present only where the
/// source measures it: accesses (Valkey `HOTKEYS`, `MONITOR`), CPU time and network bytes
/// (Redis `HOTKEYS`). Values are finite and not negative (see [`HotRates::rate`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HotRates {
    pub accesses_per_second: Option<f64>,
    pub cpu_seconds_per_second: Option<f64>,
    pub network_bytes_per_second: Option<f64>,
}

// Never NaN: every value goes through `HotRates::rate`.
impl Eq for HotRates {}

impl HotRates {
    /// `amount / seconds` when both make a finite rate that is not negative, else `None`.
    pub fn rate(amount: f64, seconds: f64) -> Option<f64> {
        let r = amount / seconds;
        (seconds > 0.0 && r.is_finite() && r >= 0.0).then_some(r)
    }

    /// How two keys rank, hottest first: by CPU time (Redis `HOTKEYS`), then accesses, then
    /// network bytes; a key without a measure below every key with it.
    pub fn hotter(&self, other: &HotRates) -> std::cmp::Ordering {
        let key = |r: &HotRates| {
            [
                r.cpu_seconds_per_second,
                r.accesses_per_second,
                r.network_bytes_per_second,
            ]
            .map(|v| v.unwrap_or(-1.0))
        };
        let (a, b) = (key(self), key(other));
        b[0].total_cmp(&a[0])
            .then(b[1].total_cmp(&a[1]))
            .then(b[2].total_cmp(&a[2]))
    }
}

/// Keys kept per ranking when a task is read: the hottest, and the biggest of each size unit.
/// The largest `top_n` the config accepts, so cutting here never changes what is exported.
pub const KEPT_KEYS: usize = 1000;
/// Records DCS keeps per instance and analysis kind: one list page of this size sees them all,
/// whatever their (undocumented) order.
pub const DCS_KEPT_RECORDS: u32 = 100;

/// Records of a task list kept when it is read: ten times the 100 records DCS keeps per
/// instance and analysis (and the exporter asks for); a longer page ignored its limit.
pub const KEPT_RECORDS: usize = 1000;
/// Size units whose biggest keys are kept (the first ones met; DCS documents two). Keys of
/// further units are kept only when they are among the hottest.
pub const KEPT_UNITS: usize = 16;

/// A task record: the body of create, show and delete responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireTaskRecord")]
pub struct TaskRecord {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_type: Option<ScanType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Keys the analysis reported. When DCS leaves it out and more keys were listed than
    /// [`KEPT_KEYS`] allows keeping, the number listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num: Option<i64>,
    /// The reported keys, cut to what can be exported (see [`KEPT_KEYS`]) in the order DCS
    /// listed them; an entry that is not a key object is dropped, not fatal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyRecord>>,
}

/// [`TaskRecord`] as read from the wire.
#[derive(Deserialize)]
struct WireTaskRecord {
    id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    instance_id: Option<String>,
    status: TaskStatus,
    #[serde(default, deserialize_with = "lenient::open_enum")]
    scan_type: Option<ScanType>,
    #[serde(default, deserialize_with = "lenient::string")]
    created_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    started_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    finished_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::integer")]
    num: Option<i64>,
    #[serde(default, deserialize_with = "lenient::keys")]
    keys: Option<KeySelection>,
}

impl From<WireTaskRecord> for TaskRecord {
    fn from(w: WireTaskRecord) -> Self {
        let (keys, listed, cut) = match w.keys {
            Some(sel) => {
                let (keys, listed, cut) = sel.finish();
                (Some(keys), listed, cut)
            }
            None => (None, 0, false),
        };
        TaskRecord {
            id: w.id,
            instance_id: w.instance_id,
            status: w.status,
            scan_type: w.scan_type,
            created_at: w.created_at,
            started_at: w.started_at,
            finished_at: w.finished_at,
            num: w
                .num
                .or_else(|| cut.then(|| i64::try_from(listed).unwrap_or(i64::MAX))),
            keys,
        }
    }
}

/// Keeps, out of a stream of keys, those that can be exported: the `budget` hottest (by
/// `freq`) and the `budget` biggest (by `size`) of each of the first [`KEPT_UNITS`] units, in
/// the order they came. Ties go to the earlier key, as the store's stable ranking does.
#[derive(Debug)]
pub struct KeySelection {
    budget: usize,
    /// (arrival number, key)
    keys: Vec<(u64, KeyRecord)>,
    units: Vec<Option<SizeUnit>>,
    /// Compact when `keys` reaches this length.
    threshold: usize,
    /// Keys offered.
    listed: u64,
    /// Whether a key was dropped.
    cut: bool,
}

impl KeySelection {
    pub fn new(budget: usize) -> Self {
        let budget = budget.max(1);
        KeySelection {
            budget,
            keys: Vec::new(),
            units: Vec::new(),
            threshold: 4 * budget,
            listed: 0,
            cut: false,
        }
    }

    pub fn push(&mut self, key: KeyRecord) {
        if self.units.len() < KEPT_UNITS && !self.units.contains(&key.unit) {
            self.units.push(key.unit.clone());
        }
        self.keys.push((self.listed, key));
        self.listed += 1;
        if self.keys.len() >= self.threshold {
            self.compact();
            self.threshold = (2 * self.keys.len()).max(4 * self.budget);
        }
    }

    fn compact(&mut self) {
        let n = self.keys.len();
        let mut keep = vec![false; n];
        let mut order: Vec<usize> = (0..n).collect();
        // `keys` is in arrival order, so a stable sort breaks ties by arrival.
        order.sort_by_key(|&i| std::cmp::Reverse(self.keys[i].1.freq.unwrap_or(i64::MIN)));
        for &i in order.iter().take(self.budget) {
            keep[i] = true;
        }
        order.sort_by_key(|&i| {
            let k = &self.keys[i].1;
            let unit = self.units.iter().position(|u| *u == k.unit);
            (unit, std::cmp::Reverse(k.size.unwrap_or(i64::MIN)), i)
        });
        let mut current: Option<Option<usize>> = None;
        let mut taken = 0;
        for &i in &order {
            let unit = self.units.iter().position(|u| *u == self.keys[i].1.unit);
            if current != Some(unit) {
                current = Some(unit);
                taken = 0;
            }
            if unit.is_some() && taken < self.budget {
                keep[i] = true;
                taken += 1;
            }
        }
        let mut i = 0;
        self.keys.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
        self.cut |= self.keys.len() < n;
        self.keys.shrink_to_fit();
    }

    /// The kept keys in the order they came, how many were offered, and whether any was
    /// dropped.
    pub fn finish(mut self) -> (Vec<KeyRecord>, u64, bool) {
        if self.keys.len() > self.budget {
            self.compact();
        }
        let keys = self.keys.into_iter().map(|(_, k)| k).collect();
        (keys, self.listed, self.cut)
    }

    /// Keys offered so far.
    pub fn listed(&self) -> u64 {
        self.listed
    }
}

impl TaskRecord {
    /// Number of keys the analysis reported: `num`, or the length of `keys` when `num` is absent.
    pub fn key_count(&self) -> u64 {
        match self.num {
            Some(n) if n >= 0 => n as u64,
            _ => self.keys.as_ref().map_or(0, |k| k.len() as u64),
        }
    }
}

/// One entry of a task list (`RecordsResponse`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_type: Option<ScanType>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<String>,
}

/// Body of `ListHotKeyScanTasks` / `ListBigkeyScanTasks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Total number of matching records (not the page length).
    #[serde(default, deserialize_with = "lenient::integer")]
    pub count: Option<i64>,
    /// The records; one that lacks an id or a status is dropped, not fatal. At most
    /// [`KEPT_RECORDS`] are kept.
    #[serde(default, deserialize_with = "lenient::records")]
    pub records: Vec<TaskSummary>,
}

/// Query of the task list endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskListQuery {
    pub offset: Option<u32>,
    pub limit: Option<u32>,
    pub status: Option<TaskStatus>,
}

/// Request body of the autoscan update endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoscanConfigRequest {
    pub enable_auto_scan: bool,
    /// Daily run times in UTC, `HH:MM`.
    pub schedule_at: Vec<String>,
}

/// Response of the autoscan show and update endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoscanConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub enable_auto_scan: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub schedule_at: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A resource tag of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// The instance attributes this crate uses, from `ListInstances` or `ShowInstance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstanceInfo {
    pub instance_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding_count: Option<i64>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<Tag>,
}

/// Query of `ListInstances`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceListQuery {
    pub offset: Option<u32>,
    pub limit: Option<u32>,
    pub status: Option<String>,
    pub name: Option<String>,
    pub instance_id: Option<String>,
}

/// Body of `ListInstances`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstanceList {
    #[serde(default)]
    pub instance_num: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub instances: Vec<InstanceInfo>,
}

/// The error body of DCS (`error_code`/`error_msg`) and API Gateway (`request_id`) answers, with
/// the fall-backs the official SDK accepts (`errorCode`/`errorMsg`, `code`/`message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    #[serde(default, alias = "errorCode", alias = "code")]
    pub error_code: Option<String>,
    #[serde(default, alias = "errorMsg", alias = "message")]
    pub error_msg: Option<String>,
    #[serde(default)]
    pub error_ext_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Deserialises `null` as the type's default (an empty list), as real clients must.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Field deserialisers that take what they can from a value of the wrong shape instead of
/// failing the whole response: one odd key or record must not cost a result.
///
/// Each reads its value as raw JSON text first (serde_json skips it without parsing numbers or
/// recursing), then parses that text alone: a number beyond `f64` or nesting deeper than
/// serde_json's limit costs the field, not the response. Lists are read entry by entry.
pub(crate) mod lenient {
    use std::fmt;

    use serde::de::{self, DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};
    use serde_json::value::RawValue;
    use serde_json::Value;

    use super::{KeyRecord, KeySelection, TaskSummary, KEPT_KEYS, KEPT_RECORDS};

    /// Parses JSON text on its own; on failure, once more with lone surrogate escapes
    /// repaired (see [`crate::dcs::client`]); `None` if it still cannot be read.
    pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Option<T> {
        match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(_) => {
                serde_json::from_str(&crate::dcs::transport::repair_json(text.as_bytes())?).ok()
            }
        }
    }

    /// The field's value, or `None` when it cannot be read.
    fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(parse(raw.get()))
    }

    /// A string; a number or boolean in its JSON spelling; anything else is absent.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match value(d)? {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        })
    }

    /// Like [`string`], with the empty string for absent.
    pub fn string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(string(d)?.unwrap_or_default())
    }

    /// An integer: JSON integers (saturated to `i64`), floats (truncated, saturated), numeric
    /// strings; anything else (including a number beyond `f64`) is absent.
    pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let from_f64 = |f: f64| f.is_finite().then_some(f as i64);
        Ok(match value(d)? {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                .or_else(|| n.as_f64().and_then(from_f64)),
            Some(Value::String(s)) => {
                let s = s.trim();
                s.parse::<i64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().and_then(from_f64))
            }
            _ => None,
        })
    }

    /// A string enum that keeps unknown values; a non-string is absent.
    pub fn open_enum<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: for<'a> From<&'a str>,
    {
        Ok(match value(d)? {
            Some(Value::String(s)) => Some(T::from(s.as_str())),
            _ => None,
        })
    }

    /// Reads a JSON array entry by entry, handing each entry that is an object of the expected
    /// shape to `sink`; other entries are dropped. `None` when the value is not an array.
    fn each<'de, D, T>(d: D, sink: impl FnMut(T)) -> Result<Option<()>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        struct Each<F, T>(F, std::marker::PhantomData<T>);
        impl<'de, F: FnMut(T), T: DeserializeOwned> Visitor<'de> for Each<F, T> {
            type Value = Option<()>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
                while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
                    // serde would also read a struct from an array: only objects count.
                    if raw.get().trim_start().starts_with('{') {
                        if let Some(item) = parse::<T>(raw.get()) {
                            (self.0)(item);
                        }
                    }
                }
                Ok(Some(()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(Each(sink, std::marker::PhantomData))
    }

    /// A list of objects: the entries of the expected shape (others are dropped); empty when
    /// the value is not a list.
    pub fn list_or_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        let mut out = Vec::new();
        each(d, |item: T| out.push(item))?;
        Ok(out)
    }

    /// A task list's records: the entries that are objects of the expected shape (others are
    /// dropped), at most [`KEPT_RECORDS`] of them; none when the value is not a list.
    pub fn records<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TaskSummary>, D::Error> {
        let mut out = Vec::new();
        each(d, |r: TaskSummary| {
            if out.len() < KEPT_RECORDS {
                out.push(r);
            }
        })?;
        Ok(out)
    }

    /// A task's keys, cut while they are read to what can be exported (see [`KEPT_KEYS`]).
    pub fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeySelection>, D::Error> {
        let mut sel = KeySelection::new(KEPT_KEYS);
        Ok(each(d, |k: KeyRecord| sel.push(k))?.map(|()| sel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_response_example_parses_without_optional_fields() {
        // The documented create example: no started_at, finished_at or keys.
        let body = r#"{"id":"1ba8b8a5-ffab-4d3b-b2f9-4e5e8c5b4e3a","instance_id":"5560df16",
            "status":"waiting","scan_type":"manual","created_at":"2020-06-15T02:21:18.669Z","num":0}"#;
        let t: TaskRecord = serde_json::from_str(body).unwrap();
        assert_eq!(t.status, TaskStatus::Waiting);
        assert_eq!(t.scan_type, Some(ScanType::Manual));
        assert_eq!(t.started_at, None);
        assert_eq!(t.keys, None);
        assert_eq!(t.key_count(), 0);
    }

    #[test]
    fn details_without_num_count_keys_and_keep_unknown_enums() {
        let body = r#"{"id":"x","status":"paused","scan_type":"cron","extra":{"a":1},
            "keys":[{"name":"k1","type":"stream","shard":null,"db":0,"size":3000,"unit":"bit","freq":4},
                    {"name":"k2","type":"hash","db":1,"size":7,"unit":"count"}]}"#;
        let t: TaskRecord = serde_json::from_str(body).unwrap();
        assert_eq!(t.status, TaskStatus::Other("paused".into()));
        assert_eq!(t.scan_type, Some(ScanType::Other("cron".into())));
        assert_eq!(t.key_count(), 2);
        let keys = t.keys.unwrap();
        assert_eq!(keys[0].key_type, Some(KeyType::Other("stream".into())));
        assert_eq!(keys[0].unit, Some(SizeUnit::Other("bit".into())));
        assert_eq!(keys[0].shard, None);
        assert_eq!(keys[1].key_type, Some(KeyType::Hash));
        assert_eq!(keys[1].freq, None);
    }

    #[test]
    fn null_lists_are_empty() {
        let l: TaskList =
            serde_json::from_str(r#"{"instance_id":"i","count":0,"records":null}"#).unwrap();
        assert!(l.records.is_empty());
        let l: InstanceList = serde_json::from_str(r#"{"instance_num":0}"#).unwrap();
        assert!(l.instances.is_empty());
    }

    #[test]
    fn error_body_accepts_sdk_fallback_names() {
        let e: ErrorBody =
            serde_json::from_str(r#"{"errorCode":"DCS.4918","errorMsg":"running"}"#).unwrap();
        assert_eq!(e.error_code.as_deref(), Some("DCS.4918"));
        assert_eq!(e.error_msg.as_deref(), Some("running"));
    }

    #[test]
    fn enums_round_trip_their_wire_names() {
        for s in ["waiting", "running", "success", "failed", "weird"] {
            let v: TaskStatus = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(serde_json::to_value(&v).unwrap(), serde_json::json!(s));
        }
    }

    #[test]
    fn odd_values_cost_a_field_not_the_response() {
        let body = r#"{"id":"t","status":"success","num":"12","created_at":1718000000,
            "started_at":{"x":1},"finished_at":"2024-06-10 06:13:20",
            "keys":[
              {"name":"ok","type":"string","size":-5,"unit":"byte","freq":9999,"db":"3"},
              {"name":42,"type":7,"size":1e300,"freq":-3.7,"shard":true,"db":null},
              {"name":"huge","size":18446744073709551615,"freq":"lots"},
              "not a key", 17, null, [1,2]
            ]}"#;
        let t: TaskRecord = serde_json::from_str(body).unwrap();
        assert_eq!(t.num, Some(12));
        assert_eq!(t.created_at.as_deref(), Some("1718000000"));
        assert_eq!(t.started_at, None);
        let keys = t.keys.unwrap();
        assert_eq!(keys.len(), 3, "entries that are not objects are dropped");
        assert_eq!(
            (keys[0].size, keys[0].freq, keys[0].db),
            (Some(-5), Some(9999), Some(3))
        );
        assert_eq!(keys[1].name, "42");
        assert_eq!(keys[1].key_type, None);
        assert_eq!(keys[1].size, Some(i64::MAX), "1e300 saturates");
        assert_eq!(keys[1].freq, Some(-3));
        assert_eq!(keys[1].shard.as_deref(), Some("true"));
        assert_eq!(keys[2].size, Some(i64::MAX), "u64::MAX saturates");
        assert_eq!(keys[2].freq, None);

        let l: TaskList = serde_json::from_str(
            r#"{"count":"2","records":[{"id":"a","status":"running"},{"status":"success"},
                {"id":null,"status":"failed"},{"id":"b","status":"success","finished_at":5}]}"#,
        )
        .unwrap();
        let ids: Vec<_> = l.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "records without an id are dropped");
        assert_eq!(l.count, Some(2));
        assert_eq!(l.records[1].finished_at.as_deref(), Some("5"));
    }

    #[test]
    fn unreadable_values_cost_their_field_not_the_key() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let body = format!(
            r#"{{"id":"t","status":"success","num":1e400,"extra":{deep_extra},
            "keys":[
              {{"name":"huge","type":"hash","size":1e400,"unit":"count","freq":3}},
              {{"name":"deep","type":{deep},"size":7,"freq":-1e999,"other":{deep_extra}}},
              {deep},
              {{"name":"fine","size":5,"unit":"byte","freq":2}}
            ]}}"#,
            deep = deep(300),
            deep_extra = deep(100_000),
        );
        let t: TaskRecord = serde_json::from_str(&body).unwrap();
        assert_eq!(t.num, None, "1e400 is no count");
        let keys = t.keys.unwrap();
        let names: Vec<_> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["huge", "deep", "fine"]);
        assert_eq!(
            (keys[0].size, keys[0].key_type.as_ref(), keys[0].freq),
            (None, Some(&KeyType::Hash), Some(3))
        );
        assert_eq!(
            (keys[1].key_type.as_ref(), keys[1].size, keys[1].freq),
            (None, Some(7), None)
        );
        assert_eq!(keys[2].size, Some(5));
    }

    #[test]
    fn a_long_key_list_is_cut_to_what_can_be_exported() {
        let keys: Vec<String> = (0..100_000)
            .map(|i| {
                let unit = if i % 2 == 0 { "byte" } else { "count" };
                format!(
                    r#"{{"name":"k{i}","type":"string","size":{},"unit":"{unit}","freq":{}}}"#,
                    i % 997,
                    i % 251
                )
            })
            .collect();
        let body = format!(
            r#"{{"id":"t","status":"success","keys":[{}]}}"#,
            keys.join(",")
        );
        let t: TaskRecord = serde_json::from_str(&body).unwrap();
        assert_eq!(t.num, Some(100_000), "the count survives the cut");
        assert_eq!(t.key_count(), 100_000);
        let kept = t.keys.unwrap();
        assert!(kept.len() <= 3 * KEPT_KEYS, "{} kept", kept.len());
        // With `num` given, it is kept as is.
        let body = body.replacen(r#""keys""#, r#""num":7,"keys""#, 1);
        let t: TaskRecord = serde_json::from_str(&body).unwrap();
        assert_eq!(t.num, Some(7));
    }

    #[test]
    fn a_task_list_keeps_at_most_kept_records() {
        let records: Vec<String> = (0..KEPT_RECORDS + 50)
            .map(|i| format!(r#"{{"id":"r{i}","status":"success"}}"#))
            .collect();
        let body = format!(r#"{{"count":5000,"records":[{}]}}"#, records.join(","));
        let l: TaskList = serde_json::from_str(&body).unwrap();
        assert_eq!(l.records.len(), KEPT_RECORDS);
        assert_eq!(
            l.records[KEPT_RECORDS - 1].id,
            format!("r{}", KEPT_RECORDS - 1)
        );
        let l: TaskList = serde_json::from_str(r#"{"records":{"a":[1,2]}}"#).unwrap();
        assert!(l.records.is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        /// The field names of the models, so that generated objects often hit them.
        const FIELDS: &[&str] = &[
            "id",
            "status",
            "keys",
            "records",
            "name",
            "type",
            "size",
            "unit",
            "freq",
            "db",
            "shard",
            "num",
            "count",
            "created_at",
            "finished_at",
        ];
        /// Enum values the models know.
        const WORDS: &[&str] = &["string", "hash", "byte", "count", "success", "running"];

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::String),
                prop::sample::select(WORDS).prop_map(|s| Value::String(s.to_owned())),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                let field = prop::sample::select(FIELDS).prop_map(str::to_owned);
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(field, inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(WORDS).prop_map(str::to_owned),
                "\\PC{0,10}",
            ]
        }

        fn key() -> impl Strategy<Value = KeyRecord> {
            (
                any::<String>(),
                proptest::option::of(word()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(word()),
                proptest::option::of(any::<i64>()),
            )
                .prop_map(|(name, ty, shard, db, size, unit, freq)| KeyRecord {
                    name,
                    key_type: ty.as_deref().map(KeyType::from),
                    shard,
                    db,
                    size,
                    unit: unit.as_deref().map(SizeUnit::from),
                    freq,
                    memory: None,
                    rates: None,
                })
        }

        fn record() -> impl Strategy<Value = TaskRecord> {
            (
                any::<String>(),
                word(),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(prop::collection::vec(key(), 0..5)),
            )
                .prop_map(|(id, status, created_at, finished_at, num, keys)| {
                    TaskRecord {
                        id,
                        instance_id: None,
                        status: TaskStatus::from(status.as_str()),
                        scan_type: Some(ScanType::Manual),
                        created_at,
                        started_at: None,
                        finished_at,
                        num,
                        keys,
                    }
                })
        }

        fn unit() -> impl Strategy<Value = Option<SizeUnit>> {
            proptest::option::of(prop::sample::select(&["byte", "count", "bit"][..]))
                .prop_map(|u| u.map(SizeUnit::from))
        }

        fn small_key() -> impl Strategy<Value = KeyRecord> {
            (
                proptest::option::of(0i64..6),
                proptest::option::of(0i64..6),
                unit(),
            )
                .prop_map(|(size, freq, unit)| KeyRecord {
                    size,
                    freq,
                    unit,
                    ..KeyRecord::default()
                })
        }

        proptest! {
            /// Cutting while reading never changes the top N the store exports, for any N up
            /// to the budget, ties included.
            #[test]
            fn the_cut_keeps_every_exported_key(
                mut keys in prop::collection::vec(small_key(), 0..120),
                budget in 1usize..8,
            ) {
                use crate::metrics::store::rank_keys;
                for (i, k) in keys.iter_mut().enumerate() {
                    k.name = format!("k{i}");
                }
                let mut sel = KeySelection::new(budget);
                for k in &keys {
                    sel.push(k.clone());
                }
                let (kept, listed, cut) = sel.finish();
                prop_assert_eq!(listed, keys.len() as u64);
                prop_assert_eq!(cut, kept.len() < keys.len());
                for a in Analysis::ALL {
                    for n in 1..=budget {
                        prop_assert_eq!(rank_keys(a, &kept, n), rank_keys(a, &keys, n));
                    }
                }
            }

            #[test]
            fn any_json_value_parses_or_errs_without_panicking(v in json()) {
                let text = v.to_string();
                let _ = serde_json::from_str::<TaskRecord>(&text);
                let _ = serde_json::from_str::<TaskList>(&text);
                let _ = serde_json::from_str::<InstanceList>(&text);
                let _ = serde_json::from_str::<ErrorBody>(&text);
                if let Ok(t) = serde_json::from_value::<TaskRecord>(v) {
                    let _ = t.key_count();
                }
            }

            #[test]
            fn any_bytes_parse_or_err_without_panicking(
                bytes in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                let _ = serde_json::from_slice::<TaskRecord>(&bytes);
                let _ = serde_json::from_slice::<TaskList>(&bytes);
            }

            #[test]
            fn valid_records_round_trip(t in record()) {
                let text = serde_json::to_string(&t).unwrap();
                let back: TaskRecord = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(back, t);
            }

            #[test]
            fn valid_lists_round_trip(
                records in prop::collection::vec(record(), 0..4),
                count in proptest::option::of(any::<i64>()),
            ) {
                let list = TaskList {
                    instance_id: Some("i".into()),
                    count,
                    records: records
                        .into_iter()
                        .map(|r| TaskSummary {
                            id: r.id,
                            status: r.status,
                            scan_type: r.scan_type,
                            created_at: r.created_at,
                            started_at: r.started_at,
                            finished_at: r.finished_at,
                        })
                        .collect(),
                };
                let text = serde_json::to_string(&list).unwrap();
                let back: TaskList = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(back, list);
            }
        }
    }
}
