//! The simulated offline key analysis of a backup, with the backups and nodes it reads.
//!
//! - **Nodes.** One group per shard (`group-0`, `group-1`, …); each has a master and, except on
//!   single-node instances, a standby. Ids are stable: derived from the instance id. A cluster
//!   group's master address is the `shard` address its keys report in big key results.
//! - **Backups.** An automatic backup every day at 02:00 UTC since the instance was created, of
//!   which the last [`KEPT_BACKUPS`] are listed (one in [`FAILED_EVERY`] failed), plus the
//!   backups taken for analyses created without `backup_id`. Single-node instances have none.
//! - **Analyses.** The lifecycle is fixed at creation (`waiting` a few seconds, then `running`
//!   for a time that grows with the key count). The status appears only in the list; the show
//!   answer carries the inputs and, once the task succeeded, the result. A second analysis
//!   while one is waiting or running is refused with DCS.4231, and so is deleting an active one.
//!   Unknown tasks answer DCS.4232. The result is computed from the instance's keyspace as it
//!   was when the backup was taken: prefixes (see [`key_prefix`]) of the same keys that the big
//!   key analysis sees, top [`PREFIXES_PER_TYPE`] per type by key count, top
//!   [`LARGEST_KEYS`] keys by bytes, totals per type.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;

use super::keyspace::{key_prefix, stable_hash, Keyspace, OfflineKey};
use super::refusal::{uuid_from, Refusal};
use super::SimInstance;
use crate::dcs::model::{KeyType, TaskStatus, TaskSummary};
use crate::dcs::offline::{
    BackupRecord, Group, LargestKey, LargestKeyPrefix, NodeInfo, OfflineTaskDetails, Replication,
    TypeBytes, TypeNum,
};
use crate::dcs::timestamp;

/// Automatic backups listed per instance.
pub const KEPT_BACKUPS: i64 = 7;
/// One automatic backup in this many fails (by day number).
pub const FAILED_EVERY: i64 = 5;
/// Prefixes reported per key type.
pub const PREFIXES_PER_TYPE: usize = 50;
/// Largest keys reported.
pub const LARGEST_KEYS: usize = 100;
/// Backups taken for analyses kept per instance; the oldest is dropped beyond this.
pub const MAX_MANUAL_BACKUPS: usize = 20;
/// Analyses kept per instance; the oldest is dropped beyond this.
pub const MAX_TASKS: usize = 100;

/// Why an offline request was refused, beyond the shared refusals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfflineRefusal {
    /// DCS.4231: an offline key analysis is waiting or running.
    Running,
    /// DCS.4232: no such task.
    NotFound,
    /// A shared refusal (instance not running, invalid parameter).
    Other(Refusal),
}

/// One node of the instance.
#[derive(Clone, Debug)]
pub struct SimNode {
    pub node_id: String,
    pub group: u32,
    pub master: bool,
    pub ip: String,
}

/// One offline key analysis, its lifecycle fixed at creation.
#[derive(Clone, Debug)]
pub struct OfflineTask {
    pub id: String,
    pub node_id: String,
    pub group: u32,
    pub backup_id: String,
    /// When the analysed backup was taken: the keyspace is read as of then.
    pub backup_at: OffsetDateTime,
    pub new_backup: bool,
    pub created_at: OffsetDateTime,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

impl OfflineTask {
    pub fn status_at(&self, now: OffsetDateTime) -> TaskStatus {
        if now < self.started_at {
            TaskStatus::Waiting
        } else if now < self.finished_at {
            TaskStatus::Running
        } else {
            TaskStatus::Success
        }
    }

    fn summary(&self, now: OffsetDateTime) -> TaskSummary {
        let status = self.status_at(now);
        TaskSummary {
            id: self.id.clone(),
            scan_type: None,
            created_at: Some(timestamp::format(self.created_at)),
            started_at: (status != TaskStatus::Waiting).then(|| timestamp::format(self.started_at)),
            finished_at: (!status.is_active()).then(|| timestamp::format(self.finished_at)),
            status,
        }
    }
}

/// A backup taken for an analysis created without `backup_id`.
#[derive(Clone, Debug)]
struct ManualBackup {
    id: String,
    at: OffsetDateTime,
}

/// Offline analyses and manual backups of one instance.
#[derive(Clone, Debug, Default)]
pub struct OfflineState {
    /// Newest first.
    pub tasks: VecDeque<OfflineTask>,
    manual_backups: Vec<ManualBackup>,
    /// Analyses created through the API.
    pub created: usize,
}

fn id_from(seed: &str) -> String {
    let h1 = stable_hash(seed);
    let h2 = stable_hash(&format!("{seed}/2"));
    let b: Vec<u8> = h1
        .to_be_bytes()
        .into_iter()
        .chain(h2.to_be_bytes())
        .collect();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&b);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The nodes of an instance (see the module docs).
pub fn nodes(info: &SimInstance, keyspace: &Keyspace) -> Vec<SimNode> {
    let octet = (stable_hash(&info.id) % 200) as u8 + 20;
    let groups = if info.cache_mode == "cluster" {
        info.shards.max(1)
    } else {
        1
    };
    let standby = info.cache_mode != "single";
    let mut out = Vec::new();
    for g in 0..groups {
        let master_ip = keyspace
            .shard_address(g)
            .and_then(|a| a.split(':').next().map(str::to_owned))
            .unwrap_or_else(|| format!("192.168.{octet}.{}", 10 + g));
        out.push(SimNode {
            node_id: id_from(&format!("{}/node/{g}/master", info.id)),
            group: g,
            master: true,
            ip: master_ip,
        });
        if standby {
            out.push(SimNode {
                node_id: id_from(&format!("{}/node/{g}/slave", info.id)),
                group: g,
                master: false,
                ip: format!("192.168.{octet}.{}", 110 + g),
            });
        }
    }
    out
}

fn group_name(g: u32) -> String {
    format!("group-{g}")
}

fn group_id(info: &SimInstance, g: u32) -> String {
    id_from(&format!("{}/group/{g}", info.id))
}

/// `ShowNodesInformation` of the instance.
pub fn node_list(info: &SimInstance, keyspace: &Keyspace) -> Vec<NodeInfo> {
    nodes(info, keyspace)
        .into_iter()
        .map(|n| NodeInfo {
            logical_node_id: Some(id_from(&format!("{}/logical", n.node_id))),
            name: Some(format!(
                "{}-{}-{}",
                info.name,
                group_name(n.group),
                if n.master { "master" } else { "slave" }
            )),
            status: Some("Active".into()),
            node_role: Some("redis-server".into()),
            node_type: Some(if n.master { "master" } else { "slave" }.into()),
            node_ip: Some(n.ip),
            node_port: Some("6379".into()),
            group_id: Some(group_id(info, n.group)),
            group_name: Some(group_name(n.group)),
            node_id: n.node_id,
        })
        .collect()
}

/// `ListGroupReplicationInfo` of the instance.
pub fn group_list(info: &SimInstance, keyspace: &Keyspace) -> Vec<Group> {
    let mut groups: BTreeMap<u32, Group> = BTreeMap::new();
    for n in nodes(info, keyspace) {
        let g = groups.entry(n.group).or_insert_with(|| Group {
            group_id: group_id(info, n.group),
            group_name: group_name(n.group),
            replication_list: Vec::new(),
        });
        g.replication_list.push(Replication {
            replication_role: Some(if n.master { "master" } else { "slave" }.into()),
            replication_ip: Some(n.ip.clone()),
            replication_id: Some(id_from(&format!("{}/replication", n.node_id))),
            node_id: n.node_id,
            status: Some("ACTIVE".into()),
            az_code: Some("cn-north-4a".into()),
        });
    }
    groups.into_values().collect()
}

/// One listed backup: id, time, whether it succeeded.
struct SimBackup {
    id: String,
    at: OffsetDateTime,
    manual: bool,
    ok: bool,
}

impl OfflineState {
    pub fn new(_now: OffsetDateTime, _created: OffsetDateTime) -> Self {
        OfflineState::default()
    }

    fn backups(&self, info: &SimInstance, now: OffsetDateTime) -> Vec<SimBackup> {
        if info.cache_mode == "single" {
            return Vec::new();
        }
        let day = 86_400;
        let first = (info.created_at.unix_timestamp() / day) + 1;
        let last = (now.unix_timestamp() - 2 * 3600) / day;
        let mut out: Vec<SimBackup> = (first.max(last - KEPT_BACKUPS + 1)..=last)
            .filter_map(|d| {
                let at = OffsetDateTime::from_unix_timestamp(d * day + 2 * 3600).ok()?;
                Some(SimBackup {
                    id: id_from(&format!("{}/backup/{d}", info.id)),
                    at,
                    manual: false,
                    ok: d % FAILED_EVERY != 0,
                })
            })
            .collect();
        out.extend(
            self.manual_backups
                .iter()
                .filter(|b| b.at <= now)
                .map(|b| SimBackup {
                    id: b.id.clone(),
                    at: b.at,
                    manual: true,
                    ok: true,
                }),
        );
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// `ListBackupRecords`: newest first, within `[begin, end]` when given.
    pub fn backup_records(
        &self,
        info: &SimInstance,
        now: OffsetDateTime,
        begin: Option<OffsetDateTime>,
        end: Option<OffsetDateTime>,
    ) -> Vec<BackupRecord> {
        self.backups(info, now)
            .into_iter()
            .filter(|b| begin.is_none_or(|t| b.at >= t) && end.is_none_or(|t| b.at <= t))
            .map(|b| {
                let finished = b.at + Duration::from_secs(40);
                BackupRecord {
                    backup_name: Some(format!(
                        "{}-{}",
                        if b.manual { "manual" } else { "auto" },
                        b.at.unix_timestamp()
                    )),
                    instance_id: Some(info.id.clone()),
                    size: Some((info.key_count as i64).saturating_mul(120)),
                    backup_type: Some(if b.manual { "manual" } else { "auto" }.into()),
                    backup_format: Some("rdb".into()),
                    status: Some(if b.ok { "succeed" } else { "failed" }.into()),
                    progress: Some("100.00".into()),
                    created_at: Some(timestamp::format(b.at)),
                    updated_at: Some(timestamp::format(finished)),
                    execution_at: Some(timestamp::format(b.at)),
                    is_support_restore: Some(if b.ok { "TRUE" } else { "FALSE" }.into()),
                    error_code: (!b.ok).then(|| "dcs.08.0001".into()),
                    remark: None,
                    backup_id: b.id,
                }
            })
            .collect()
    }

    pub fn active(&self, now: OffsetDateTime) -> Option<&OfflineTask> {
        self.tasks.iter().find(|t| t.status_at(now).is_active())
    }

    /// `CreateOfflineKeyAnalysis`.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        info: &SimInstance,
        keyspace: &Keyspace,
        node_id: &str,
        backup_id: Option<&str>,
        now: OffsetDateTime,
        rng: &mut ChaCha8Rng,
        scale: f64,
    ) -> Result<String, OfflineRefusal> {
        if info.status != "RUNNING" {
            return Err(OfflineRefusal::Other(Refusal::InstanceNotRunning));
        }
        let Some(node) = nodes(info, keyspace)
            .into_iter()
            .find(|n| n.node_id == node_id)
        else {
            return Err(OfflineRefusal::Other(Refusal::Invalid("node_id")));
        };
        if self.active(now).is_some() {
            return Err(OfflineRefusal::Running);
        }
        let (backup_id, backup_at, new_backup) = match backup_id {
            Some(b) => {
                let found = self
                    .backups(info, now)
                    .into_iter()
                    .find(|x| x.id == b && x.ok);
                match found {
                    Some(x) => (x.id, x.at, false),
                    None => return Err(OfflineRefusal::Other(Refusal::Invalid("backup_id"))),
                }
            }
            None => {
                if info.cache_mode == "single" {
                    return Err(OfflineRefusal::Other(Refusal::Invalid("backup_id")));
                }
                let id = uuid_from(rng);
                self.manual_backups.push(ManualBackup {
                    id: id.clone(),
                    at: now,
                });
                if self.manual_backups.len() > MAX_MANUAL_BACKUPS {
                    self.manual_backups.remove(0);
                }
                (id, now, true)
            }
        };
        let wait = scaled(rng.gen_range(1.0..3.0), scale);
        let keys = keyspace.len() as f64;
        let run = scaled((5.0 + keys / 400.0) * rng.gen_range(0.8..1.2), scale);
        let id = uuid_from(rng);
        self.tasks.push_front(OfflineTask {
            id: id.clone(),
            node_id: node.node_id,
            group: node.group,
            backup_id,
            backup_at,
            new_backup,
            created_at: now,
            started_at: now + wait,
            finished_at: now + wait + run,
        });
        self.tasks.truncate(MAX_TASKS);
        self.created += 1;
        Ok(id)
    }

    /// `ListOfflineKeyAnalysisTask`: total and the page, newest first.
    pub fn list(
        &self,
        status: Option<&TaskStatus>,
        offset: usize,
        limit: usize,
        now: OffsetDateTime,
    ) -> (usize, Vec<TaskSummary>) {
        let all: Vec<TaskSummary> = self
            .tasks
            .iter()
            .map(|t| t.summary(now))
            .filter(|s| status.is_none_or(|st| &s.status == st))
            .collect();
        let total = all.len();
        (total, all.into_iter().skip(offset).take(limit).collect())
    }

    /// `ShowOfflineKeyAnalysisTask`.
    pub fn show(
        &self,
        info: &SimInstance,
        keyspace: &Keyspace,
        task_id: &str,
        now: OffsetDateTime,
    ) -> Result<OfflineTaskDetails, OfflineRefusal> {
        let t = self
            .tasks
            .iter()
            .find(|t| t.id == task_id)
            .ok_or(OfflineRefusal::NotFound)?;
        let node = nodes(info, keyspace)
            .into_iter()
            .find(|n| n.node_id == t.node_id);
        let status = t.status_at(now);
        let mut d = OfflineTaskDetails {
            id: t.id.clone(),
            instance_id: Some(info.id.clone()),
            node_id: Some(t.node_id.clone()),
            backup_id: Some(t.backup_id.clone()),
            group_name: Some(group_name(t.group)),
            node_ip: node.as_ref().map(|n| n.ip.clone()),
            node_ipv6: None,
            node_type: node.map(|n| if n.master { "master" } else { "slave" }.to_owned()),
            analysis_type: Some(
                if t.new_backup {
                    "new_backup"
                } else {
                    "old_backup"
                }
                .into(),
            ),
            started_at: (status != TaskStatus::Waiting).then(|| timestamp::format(t.started_at)),
            finished_at: (status == TaskStatus::Success).then(|| timestamp::format(t.finished_at)),
            ..Default::default()
        };
        if status == TaskStatus::Success {
            let shard = keyspace.shard_address(t.group);
            let keys = keyspace.offline_keys(shard.as_deref(), t.backup_at);
            fill_result(&mut d, &keys);
        }
        Ok(d)
    }

    /// `DeleteOfflineKeyAnalysisTask`.
    pub fn delete(&mut self, task_id: &str, now: OffsetDateTime) -> Result<String, OfflineRefusal> {
        let pos = self
            .tasks
            .iter()
            .position(|t| t.id == task_id)
            .ok_or(OfflineRefusal::NotFound)?;
        if self.tasks[pos].status_at(now).is_active() {
            return Err(OfflineRefusal::Running);
        }
        self.tasks.remove(pos);
        Ok(task_id.to_owned())
    }
}

fn scaled(secs: f64, scale: f64) -> Duration {
    let s = secs * scale;
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(86_400.0))
    } else {
        Duration::ZERO
    }
}

const TYPES: [KeyType; 5] = [
    KeyType::String,
    KeyType::List,
    KeyType::Set,
    KeyType::Zset,
    KeyType::Hash,
];

/// Fills the result fields of `d` from the keys of the analysed backup.
pub fn fill_result(d: &mut OfflineTaskDetails, keys: &[OfflineKey]) {
    let mut prefixes: Vec<LargestKeyPrefix> = Vec::new();
    for t in TYPES {
        let mut by_prefix: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for k in keys.iter().filter(|k| k.key_type == t) {
            let e = by_prefix.entry(key_prefix(&k.name)).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(k.bytes as i64);
        }
        let mut ranked: Vec<_> = by_prefix.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1 .0
                .cmp(&a.1 .0)
                .then(b.1 .1.cmp(&a.1 .1))
                .then(a.0.cmp(b.0))
        });
        prefixes.extend(
            ranked
                .into_iter()
                .take(PREFIXES_PER_TYPE)
                .map(|(p, (num, bytes))| LargestKeyPrefix {
                    key_prefix: p.to_owned(),
                    key_type: Some(t.clone()),
                    bytes: Some(bytes),
                    num: Some(num),
                }),
        );
    }
    let mut largest: Vec<&OfflineKey> = keys.iter().collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    d.largest_keys = largest
        .into_iter()
        .take(LARGEST_KEYS)
        .map(|k| LargestKey {
            key: k.name.clone(),
            key_type: Some(k.key_type.clone()),
            bytes: Some(k.bytes as i64),
            num_of_elem: Some(k.elements as i64),
        })
        .collect();
    d.largest_key_prefixes = prefixes;
    d.type_num = TYPES
        .iter()
        .map(|t| TypeNum {
            key_type: Some(t.clone()),
            num: Some(keys.iter().filter(|k| &k.key_type == t).count() as i64),
        })
        .collect();
    d.type_bytes = TYPES
        .iter()
        .map(|t| TypeBytes {
            key_type: Some(t.clone()),
            bytes: Some(
                keys.iter()
                    .filter(|k| &k.key_type == t)
                    .map(|k| k.bytes as i64)
                    .sum(),
            ),
        })
        .collect();
    d.total_num = Some(keys.len() as i64);
    d.total_bytes = Some(keys.iter().map(|k| k.bytes as i64).sum());
}
