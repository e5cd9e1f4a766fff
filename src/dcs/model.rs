//! Typed models of the DCS v2 cache-analysis, autoscan and instance APIs.
//!
//! Shared by the client (which parses them) and the simulator (which serialises them). Parsing is
//! tolerant the way a real client must be: optional fields may be missing or `null`, unknown fields
//! are ignored, and an enum value this crate does not know is kept as [`Other`](TaskStatus::Other)
//! instead of failing the whole response.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The two key analyses DCS offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Analysis {
    Hotkey,
    Bigkey,
}

impl Analysis {
    pub const ALL: [Analysis; 2] = [Analysis::Hotkey, Analysis::Bigkey];

    /// The value of the `analysis` metric label and the config key.
    pub fn as_str(self) -> &'static str {
        match self {
            Analysis::Hotkey => "hotkey",
            Analysis::Bigkey => "bigkey",
        }
    }

    /// Path segment of the single-task endpoints (create / show / delete).
    pub fn task_segment(self) -> &'static str {
        match self {
            Analysis::Hotkey => "hotkey-task",
            Analysis::Bigkey => "bigkey-task",
        }
    }

    /// Path segment of the list endpoint.
    pub fn tasks_segment(self) -> &'static str {
        match self {
            Analysis::Hotkey => "hotkey-tasks",
            Analysis::Bigkey => "bigkey-tasks",
        }
    }

    /// Path segment of the autoscan endpoints (`/{instance}/{segment}/autoscan`).
    pub fn autoscan_segment(self) -> &'static str {
        self.as_str()
    }

    /// The official SDK's operation name, used as the `operation` metric label.
    pub fn operation(self, op: Operation) -> &'static str {
        use Analysis::*;
        use Operation::*;
        match (op, self) {
            (ListTasks, Hotkey) => "ListHotKeyScanTasks",
            (ListTasks, Bigkey) => "ListBigkeyScanTasks",
            (CreateTask, Hotkey) => "CreateHotkeyScanTask",
            (CreateTask, Bigkey) => "CreateBigkeyScanTask",
            (ShowTask, Hotkey) => "ShowHotkeyTaskDetails",
            (ShowTask, Bigkey) => "ShowBigkeyScanTaskDetails",
            (DeleteTask, Hotkey) => "DeleteHotkeyScanTask",
            (DeleteTask, Bigkey) => "DeleteBigkeyScanTask",
            (ShowAutoscan, Hotkey) => "ShowHotkeyAutoscanConfig",
            (ShowAutoscan, Bigkey) => "ShowBigkeyAutoscanConfig",
            (UpdateAutoscan, Hotkey) => "UpdateHotkeyAutoScanConfig",
            (UpdateAutoscan, Bigkey) => "UpdateBigkeyAutoscanConfig",
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
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<SizeUnit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freq: Option<i64>,
}

/// A task record: the body of create, show and delete responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_type: Option<ScanType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyRecord>>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// Body of `ListHotKeyScanTasks` / `ListBigkeyScanTasks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Total number of matching records (not the page length).
    #[serde(default)]
    pub count: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
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
}
