//! Typed models of the DCS offline (full) key analysis of a backup, and of the backup and node
//! listings that choose what it analyses.
//!
//! The offline key analysis (`CreateOfflineKeyAnalysis`, `ListOfflineKeyAnalysisTask`,
//! `ShowOfflineKeyAnalysisTask`, `DeleteOfflineKeyAnalysisTask`) analyses one node's backup file
//! and reports the largest key prefixes per type, the largest keys, and totals per type. Its
//! show answer carries no status: the status lives only in the list. Backups come from
//! `ListBackupRecords`; the node of each shard from `ListGroupReplicationInfo` (replicas per
//! group) or `ShowNodesInformation` (logical nodes).
//!
//! Parsing is as tolerant as the rest of the client (see [`model`](super::model)): absent or
//! `null` fields are `None` or empty, integers may arrive as strings or floats (the Go SDK
//! declares them int32, the Python SDK int), array order means nothing, and an entry of the wrong
//! shape is dropped instead of failing the answer. How DCS derives a prefix is not documented;
//! prefixes are taken verbatim.

use serde::{Deserialize, Serialize};

use super::model::{lenient, KeyType, TaskStatus, TaskSummary};

pub use super::model::KEY_ANALYSIS_SEGMENT;

/// SDK operation names of the calls around the offline key analysis.
pub const OP_LIST_BACKUPS: &str = "ListBackupRecords";
pub const OP_SHOW_NODES: &str = "ShowNodesInformation";
pub const OP_LIST_GROUPS: &str = "ListGroupReplicationInfo";

/// Body of `CreateOfflineKeyAnalysis`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineAnalysisRequest {
    /// The node whose backup is analysed.
    pub node_id: String,
    /// The backup to analyse; absent makes DCS take a new backup first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
}

/// Answer of `CreateOfflineKeyAnalysis` and `DeleteOfflineKeyAnalysisTask`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OfflineTaskId {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub task_id: String,
}

/// Answer of `ListOfflineKeyAnalysisTask`. Its records have the shape of the scan-task lists'.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OfflineTaskList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::integer")]
    pub total: Option<i64>,
    /// The records; one that lacks an id or a status is dropped, not fatal.
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub records: Vec<TaskSummary>,
}

impl OfflineTaskList {
    /// The record of one task, if listed.
    pub fn record(&self, task_id: &str) -> Option<&TaskSummary> {
        self.records.iter().find(|r| r.id == task_id)
    }
}

/// One prefix of `largest_key_prefixes`: the keys of one type sharing a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LargestKeyPrefix {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub key_prefix: String,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::open_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_type: Option<KeyType>,
    /// Bytes of the prefix' keys.
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes: Option<i64>,
    /// Number of keys with the prefix.
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub num: Option<i64>,
}

/// One key of `largest_keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LargestKey {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub key: String,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::open_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_type: Option<KeyType>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes: Option<i64>,
    /// Elements of a collection; the value's size in bytes for a string.
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_of_elem: Option<i64>,
}

/// One entry of `type_bytes` (`KeyTypeByte`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TypeBytes {
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::open_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_type: Option<KeyType>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes: Option<i64>,
}

/// One entry of `type_num` (`KeyTypeNum`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TypeNum {
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::open_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_type: Option<KeyType>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub num: Option<i64>,
}

/// Answer of `ShowOfflineKeyAnalysisTask`: inputs, node, times and the result. No status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OfflineTaskDetails {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub id: String,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_id: Option<String>,
    /// The shard (group) the node belongs to.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_ip: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_ipv6: Option<String>,
    /// `master` or `slave`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_type: Option<String>,
    /// `new_backup` or `old_backup`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub analysis_type: Option<String>,
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
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub largest_key_prefixes: Vec<LargestKeyPrefix>,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub largest_keys: Vec<LargestKey>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_bytes: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_num: Option<i64>,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub type_bytes: Vec<TypeBytes>,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub type_num: Vec<TypeNum>,
}

impl OfflineTaskDetails {
    /// The shard the result describes: the group name, else the node address, else the node id,
    /// else empty (a single-shard instance whose answer names none).
    pub fn shard(&self) -> String {
        [&self.group_name, &self.node_ip, &self.node_id]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_default()
    }
}

/// Query of `ListBackupRecords`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupListQuery {
    pub offset: Option<u32>,
    pub limit: Option<u32>,
    /// UTC `yyyyMMddHHmmss`.
    pub begin_time: Option<String>,
    /// UTC `yyyyMMddHHmmss`.
    pub end_time: Option<String>,
}

/// Status of a backup that can be analysed.
pub const BACKUP_SUCCEEDED: &str = "succeed";

/// One record of `ListBackupRecords` (`BackupRecordResponse`), the fields this crate uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackupRecord {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub backup_id: String,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub size: Option<i64>,
    /// `manual` or `auto`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_type: Option<String>,
    /// `rdb` or `aof`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_format: Option<String>,
    /// `waiting`, `backuping`, `succeed`, `failed`, `expired` or `deleted`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<String>,
    /// When the backup finished.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_at: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub execution_at: Option<String>,
    /// `TRUE` or `FALSE`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_support_restore: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub remark: Option<String>,
}

impl BackupRecord {
    /// Finish time (`updated_at`, else `created_at`) as Unix seconds, when readable.
    pub fn finished_unix(&self) -> Option<f64> {
        [&self.updated_at, &self.created_at]
            .into_iter()
            .flatten()
            .find_map(|s| super::timestamp::parse(s))
    }
}

/// Answer of `ListBackupRecords`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackupList {
    #[serde(default, deserialize_with = "lenient::integer")]
    pub total_num: Option<i64>,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub backup_record_response: Vec<BackupRecord>,
}

impl BackupList {
    /// The newest backup that succeeded and has an id: the one the offline analysis should
    /// read. Records without a readable time count as oldest; the order of the array means
    /// nothing.
    pub fn newest_succeeded(&self) -> Option<&BackupRecord> {
        self.backup_record_response
            .iter()
            .filter(|b| !b.backup_id.is_empty())
            .filter(|b| b.status.as_deref() == Some(BACKUP_SUCCEEDED))
            .max_by(|a, b| {
                let t = |r: &BackupRecord| r.finished_unix().unwrap_or(f64::MIN);
                t(a).total_cmp(&t(b))
                    .then_with(|| a.backup_id.cmp(&b.backup_id))
            })
    }
}

/// One node of `ShowNodesInformation` (`NodesInfoResp`), the fields this crate uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeInfo {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub node_id: String,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub logical_node_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// `Creating`, `Active`, `Inactive`, `Deleting` or `AddSharding`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    /// `redis-server` or `redis-proxy`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_role: Option<String>,
    /// `master`, `slave` or `proxy`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_ip: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_port: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_name: Option<String>,
}

/// Answer of `ShowNodesInformation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::integer")]
    pub total: Option<i64>,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub nodes: Vec<NodeInfo>,
}

/// One replica of a group in `ListGroupReplicationInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Replication {
    /// `master` or `slave`.
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub replication_role: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub replication_ip: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub replication_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub node_id: String,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "Option::is_none"
    )]
    pub az_code: Option<String>,
}

/// One group (shard) in `ListGroupReplicationInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Group {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub group_id: String,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub group_name: String,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub replication_list: Vec<Replication>,
}

/// Answer of `ListGroupReplicationInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GroupList {
    #[serde(default, deserialize_with = "lenient::integer")]
    pub group_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient::list_or_empty")]
    pub group_list: Vec<Group>,
}

/// The node chosen to analyse one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNode {
    /// The group (shard) name, or its id when it has no name.
    pub shard: String,
    pub node_id: String,
}

/// Preference of a node role for the analysis: a standby first (the analysis reads a backup
/// file, but a standby keeps any load off the master), then the master, then anything.
fn role_rank(role: Option<&str>) -> u8 {
    match role {
        Some("slave") => 0,
        Some("master") => 1,
        _ => 2,
    }
}

/// One node per group from `ListGroupReplicationInfo`, groups sorted by name.
pub fn nodes_from_groups(groups: &GroupList) -> Vec<ShardNode> {
    let mut out: Vec<ShardNode> = groups
        .group_list
        .iter()
        .filter_map(|g| {
            let best = g
                .replication_list
                .iter()
                .filter(|r| !r.node_id.is_empty())
                .min_by_key(|r| (role_rank(r.replication_role.as_deref()), r.node_id.clone()))?;
            let shard = if g.group_name.is_empty() {
                g.group_id.clone()
            } else {
                g.group_name.clone()
            };
            Some(ShardNode {
                shard,
                node_id: best.node_id.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.shard.cmp(&b.shard));
    out.dedup_by(|a, b| a.shard == b.shard);
    out
}

/// The shard of every replica listed by `ListGroupReplicationInfo`, by node id.
pub fn node_shards_from_groups(groups: &GroupList) -> Vec<(String, String)> {
    groups
        .group_list
        .iter()
        .flat_map(|g| {
            let shard = if g.group_name.is_empty() {
                g.group_id.clone()
            } else {
                g.group_name.clone()
            };
            g.replication_list
                .iter()
                .filter(|r| !r.node_id.is_empty())
                .map(move |r| (r.node_id.clone(), shard.clone()))
        })
        .collect()
}

/// The shard of every node listed by `ShowNodesInformation`, by node id.
pub fn node_shards_from_node_list(list: &NodeList) -> Vec<(String, String)> {
    list.nodes
        .iter()
        .filter(|n| !n.node_id.is_empty())
        .map(|n| {
            let shard = [&n.group_name, &n.group_id]
                .into_iter()
                .flatten()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_default();
            (n.node_id.clone(), shard)
        })
        .collect()
}

/// One data node per group from `ShowNodesInformation` (proxies left out), groups sorted by
/// name; nodes without a group form one group.
pub fn nodes_from_node_list(list: &NodeList) -> Vec<ShardNode> {
    let mut by_group: std::collections::BTreeMap<String, &NodeInfo> = Default::default();
    for n in &list.nodes {
        if n.node_id.is_empty()
            || n.node_role.as_deref() == Some("redis-proxy")
            || n.node_type.as_deref() == Some("proxy")
        {
            continue;
        }
        let shard = [&n.group_name, &n.group_id]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_default();
        let better = |old: &NodeInfo| {
            (role_rank(n.node_type.as_deref()), &n.node_id)
                < (role_rank(old.node_type.as_deref()), &old.node_id)
        };
        match by_group.get(&shard) {
            Some(old) if !better(old) => {}
            _ => {
                by_group.insert(shard, n);
            }
        }
    }
    by_group
        .into_iter()
        .map(|(shard, n)| ShardNode {
            shard,
            node_id: n.node_id.clone(),
        })
        .collect()
}

/// Whether a listed offline task has ended.
pub fn is_finished(status: &TaskStatus) -> bool {
    matches!(status, TaskStatus::Success | TaskStatus::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_example_parses_with_odd_widths_and_unknown_types() {
        // The shape of the documented example; integers beyond int32, as strings and floats.
        let body = r#"{"id":"t1","instance_id":"i","node_id":"n1","backup_id":"b1",
            "group_name":"group-0","node_ip":"192.168.0.12","node_ipv6":null,"node_type":"slave",
            "analysis_type":"old_backup","started_at":"2025-06-15T02:21:20.001Z",
            "finished_at":"2025-06-15T02:23:02.410Z",
            "largest_key_prefixes":[{"key_prefix":"user:","type":"hash","bytes":5368709120,"num":"20000"},
                                    {"key_prefix":"s:","type":"stream","bytes":1.5e3,"num":2},
                                    "junk", null],
            "largest_keys":[{"key":"user:1001","type":"hash","bytes":1048576,"num_of_elem":5000}],
            "total_bytes":8388608,"total_num":20500,
            "type_bytes":[{"type":"hash","bytes":7340032},{"type":"string","bytes":1048576}],
            "type_num":[{"type":"hash","num":20000},{"type":"string","num":500}]}"#;
        let d: OfflineTaskDetails = serde_json::from_str(body).unwrap();
        assert_eq!(d.shard(), "group-0");
        assert_eq!(d.largest_key_prefixes.len(), 2, "non-objects are dropped");
        assert_eq!(d.largest_key_prefixes[0].bytes, Some(5_368_709_120));
        assert_eq!(d.largest_key_prefixes[0].num, Some(20_000));
        assert_eq!(
            d.largest_key_prefixes[1].key_type,
            Some(KeyType::Other("stream".into()))
        );
        assert_eq!(d.largest_key_prefixes[1].bytes, Some(1500));
        assert_eq!(d.total_num, Some(20_500));
        assert_eq!(d.type_num[1].num, Some(500));
        assert_eq!(d.node_ipv6, None);
    }

    #[test]
    fn an_empty_show_answer_is_still_a_result() {
        let d: OfflineTaskDetails = serde_json::from_str(r#"{"id":"t"}"#).unwrap();
        assert!(d.largest_key_prefixes.is_empty());
        assert_eq!(d.shard(), "");
        let d: OfflineTaskDetails =
            serde_json::from_str(r#"{"id":"t","largest_key_prefixes":null,"node_id":"n"}"#)
                .unwrap();
        assert_eq!(d.shard(), "n");
    }

    #[test]
    fn newest_succeeded_backup_ignores_order_failures_and_missing_ids() {
        let body = r#"{"total_num":4,"backup_record_response":[
            {"backup_id":"old","status":"succeed","updated_at":"2025-06-14T02:00:00.000Z"},
            {"backup_id":"failed","status":"failed","updated_at":"2025-06-16T02:00:00.000Z"},
            {"backup_id":"new","status":"succeed","updated_at":"2025-06-15T02:00:00.000Z"},
            {"backup_id":"","status":"succeed","updated_at":"2025-06-17T02:00:00.000Z"},
            {"backup_id":"running","status":"backuping","created_at":"2025-06-18T02:00:00.000Z"}]}"#;
        let l: BackupList = serde_json::from_str(body).unwrap();
        assert_eq!(l.newest_succeeded().unwrap().backup_id, "new");
        let none: BackupList = serde_json::from_str(
            r#"{"backup_record_response":[{"backup_id":"x","status":"failed"}]}"#,
        )
        .unwrap();
        assert!(none.newest_succeeded().is_none());
    }

    #[test]
    fn one_node_per_group_prefers_the_standby() {
        let body = r#"{"group_count":2,"group_list":[
            {"group_id":"g2","group_name":"group-1","replication_list":[
                {"replication_role":"master","node_id":"m1"},{"replication_role":"slave","node_id":"s1"}]},
            {"group_id":"g1","group_name":"group-0","replication_list":[
                {"replication_role":"master","node_id":"m0"}]},
            {"group_id":"g3","group_name":"empty","replication_list":[]}]}"#;
        let g: GroupList = serde_json::from_str(body).unwrap();
        let nodes = nodes_from_groups(&g);
        let got: Vec<_> = nodes
            .iter()
            .map(|n| (n.shard.as_str(), n.node_id.as_str()))
            .collect();
        assert_eq!(got, [("group-0", "m0"), ("group-1", "s1")]);

        let body = r#"{"total":4,"nodes":[
            {"node_id":"p","node_role":"redis-proxy","node_type":"proxy","group_name":"x"},
            {"node_id":"m","node_role":"redis-server","node_type":"master","group_name":"group-0"},
            {"node_id":"s","node_role":"redis-server","node_type":"slave","group_name":"group-0"},
            {"node_id":"lone","node_type":"master"}]}"#;
        let n: NodeList = serde_json::from_str(body).unwrap();
        let got: Vec<_> = nodes_from_node_list(&n)
            .into_iter()
            .map(|n| (n.shard, n.node_id))
            .collect();
        assert_eq!(
            got,
            [
                (String::new(), "lone".to_owned()),
                ("group-0".to_owned(), "s".to_owned())
            ]
        );
    }

    #[test]
    fn create_body_leaves_out_an_absent_backup() {
        let r = OfflineAnalysisRequest {
            node_id: "n".into(),
            backup_id: None,
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"node_id":"n"}"#);
        let l: OfflineTaskList = serde_json::from_str(
            r#"{"instance_id":"i","total":"1","records":[{"id":"t","status":"running"},{"status":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(l.total, Some(1));
        assert_eq!(l.record("t").unwrap().status, TaskStatus::Running);
        assert_eq!(l.records.len(), 1);
    }
}
