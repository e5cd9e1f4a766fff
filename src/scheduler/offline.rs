//! The key family analysis on DCS: the offline key analysis of a backup, in the shape the
//! analysis loop follows (list, create, show).
//!
//! The offline analysis reads one node's backup, so one run covers one shard; the loop runs one
//! task at a time (DCS refuses a second with DCS.4231) and publishes each shard's families as
//! they come. [`create`] picks the shard whose result is missing or oldest, a node of it (a
//! standby first, see [`nodes_from_groups`]), and the newest *existing* successful backup;
//! `backup_id` is left out only when the config asks for fresh backups. A shard whose last
//! result already read that backup is not analysed again. The status of a task is only in the
//! list ([`show`] lists, then fetches the result once the task succeeded).

use std::collections::BTreeMap;

use crate::dcs::offline::{
    node_shards_from_groups, node_shards_from_node_list, nodes_from_groups, nodes_from_node_list,
    ShardNode,
};
use crate::dcs::{
    self, BackupListQuery, DcsApi, OfflineAnalysisRequest, OfflineTaskDetails, TaskList,
    TaskListQuery, TaskRecord, TaskStatus,
};

/// Records asked for per list call (the loop's own limit for the scan tasks).
const LIST_LIMIT: u32 = crate::dcs::DCS_KEPT_RECORDS;
/// Backups asked for per list call.
const BACKUP_LIMIT: u32 = 100;
/// The first backup listing looks back this far (the order of records is not documented, so
/// a bounded window keeps the newest within one page).
const BACKUP_WINDOW_SECS: i64 = 8 * 86_400;

/// What the published result holds for one shard: when it finished, which backup it read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardSeen {
    pub finished_at: Option<f64>,
    pub backup_id: Option<String>,
}

/// What [`create`] did.
#[derive(Debug)]
pub enum Created {
    /// A task was created for `shard`.
    Task {
        record: Box<TaskRecord>,
        shard: String,
    },
    /// Every due shard already has a result of the newest backup: nothing to analyse.
    UpToDate,
}

/// `ListOfflineKeyAnalysisTask` as a task list.
pub async fn list<C: DcsApi>(
    client: &C,
    instance_id: &str,
    query: &TaskListQuery,
) -> dcs::Result<TaskList> {
    let l = client.list_offline_tasks(instance_id, query).await?;
    Ok(TaskList {
        instance_id: l.instance_id,
        count: l.total,
        records: l.records,
    })
}

/// The task's record: status and times from the list, and once it succeeded, its result from
/// the show call. A task the list no longer has (deleted) ends as `failed`.
pub async fn show<C: DcsApi>(
    client: &C,
    instance_id: &str,
    task_id: &str,
) -> dcs::Result<(TaskRecord, Option<OfflineTaskDetails>)> {
    let query = TaskListQuery {
        offset: None,
        limit: Some(LIST_LIMIT),
        status: None,
    };
    let list = client.list_offline_tasks(instance_id, &query).await?;
    let Some(rec) = list.record(task_id).cloned() else {
        let record = TaskRecord {
            id: task_id.to_owned(),
            instance_id: Some(instance_id.to_owned()),
            status: TaskStatus::Failed,
            scan_type: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            num: None,
            keys: None,
        };
        return Ok((record, None));
    };
    let mut record = TaskRecord {
        id: rec.id,
        instance_id: Some(instance_id.to_owned()),
        status: rec.status,
        scan_type: rec.scan_type,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        num: None,
        keys: None,
    };
    if record.status != TaskStatus::Success {
        return Ok((record, None));
    }
    let details = client.show_offline_task(instance_id, task_id).await?;
    record.started_at = details.started_at.clone().or(record.started_at);
    record.finished_at = details.finished_at.clone().or(record.finished_at);
    record.num = details.total_num;
    Ok((record, Some(details)))
}

/// The shards of an instance: the node chosen to analyse each, and the shard of every node (so
/// that a result is filed under the shard it was asked for, whatever the show answer names).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    pub nodes: Vec<ShardNode>,
    pub node_shard: BTreeMap<String, String>,
}

impl Topology {
    pub fn shards(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.shard.clone()).collect()
    }

    /// The shard a result belongs to: that of its node when known, else what it names.
    pub fn shard_of(&self, details: &OfflineTaskDetails) -> String {
        details
            .node_id
            .as_ref()
            .and_then(|n| self.node_shard.get(n))
            .cloned()
            .unwrap_or_else(|| details.shard())
    }
}

/// The node of each shard: from the groups (`ListGroupReplicationInfo`), else from the logical
/// nodes (`ShowNodesInformation`, documented for some engine versions only).
pub async fn shard_nodes<C: DcsApi>(client: &C, instance_id: &str) -> dcs::Result<Topology> {
    let from_groups = client.list_groups(instance_id).await.map(|g| Topology {
        nodes: nodes_from_groups(&g),
        node_shard: node_shards_from_groups(&g).into_iter().collect(),
    });
    match from_groups {
        Ok(t) if !t.nodes.is_empty() => Ok(t),
        other => {
            let t = match client.list_nodes(instance_id).await {
                Ok(n) => Topology {
                    nodes: nodes_from_node_list(&n),
                    node_shard: node_shards_from_node_list(&n).into_iter().collect(),
                },
                // Report the groups' error when both fail.
                Err(e) => return Err(other.err().unwrap_or(e)),
            };
            if t.nodes.is_empty() {
                return Err(dcs::Error::InvalidRequest {
                    operation: dcs::offline::OP_SHOW_NODES,
                    message: "the instance lists no data node to analyse".into(),
                });
            }
            Ok(t)
        }
    }
}

/// The newest successful backup's id, looking at the last days first, then at everything.
pub async fn newest_backup<C: DcsApi>(
    client: &C,
    instance_id: &str,
    now_unix: f64,
) -> dcs::Result<Option<String>> {
    let begin = time::OffsetDateTime::from_unix_timestamp(now_unix as i64 - BACKUP_WINDOW_SECS)
        .ok()
        .and_then(|t| {
            let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
            t.format(fmt).ok()
        });
    let mut query = BackupListQuery {
        offset: None,
        limit: Some(BACKUP_LIMIT),
        begin_time: begin,
        end_time: None,
    };
    for _ in 0..2 {
        let list = client.list_backups(instance_id, &query).await?;
        if let Some(b) = list.newest_succeeded() {
            return Ok(Some(b.backup_id.clone()));
        }
        if query.begin_time.take().is_none() {
            break;
        }
    }
    Ok(None)
}

/// Creates the task of the next shard due (see the module docs). `seen` is what the published
/// result holds per shard; `due_before` is the Unix time before which a shard's result counts
/// as due (its interval has passed). The shards listed are returned through `topology`.
pub async fn create<C: DcsApi>(
    client: &C,
    instance_id: &str,
    fresh_backup: bool,
    seen: &BTreeMap<String, ShardSeen>,
    due_before: f64,
    now_unix: f64,
    topology: &mut Topology,
) -> dcs::Result<Created> {
    *topology = shard_nodes(client, instance_id).await?;
    let nodes = topology.nodes.clone();
    let backup_id = if fresh_backup {
        None
    } else {
        match newest_backup(client, instance_id, now_unix).await? {
            Some(b) => Some(b),
            None => {
                return Err(dcs::Error::InvalidRequest {
                    operation: dcs::offline::OP_LIST_BACKUPS,
                    message: "no successful backup to analyse: take a backup, or set \
                              analysis.keyfamily.fresh_backup to let DCS take one"
                        .into(),
                })
            }
        }
    };
    let candidate = nodes
        .iter()
        .filter(|n| {
            let s = seen.get(&n.shard);
            let due = s.and_then(|s| s.finished_at).is_none_or(|f| f < due_before);
            let read_already =
                backup_id.is_some() && s.and_then(|s| s.backup_id.as_ref()) == backup_id.as_ref();
            due && !read_already
        })
        .min_by(|a, b| {
            let f = |n: &ShardNode| {
                seen.get(&n.shard)
                    .and_then(|s| s.finished_at)
                    .unwrap_or(f64::MIN)
            };
            f(a).total_cmp(&f(b)).then_with(|| a.shard.cmp(&b.shard))
        });
    let Some(node) = candidate else {
        return Ok(Created::UpToDate);
    };
    let request = OfflineAnalysisRequest {
        node_id: node.node_id.clone(),
        backup_id,
    };
    let created = client.create_offline_task(instance_id, &request).await?;
    if created.task_id.is_empty() {
        return Err(dcs::Error::Decode {
            operation: dcs::Analysis::Keyfamily.operation(dcs::Operation::CreateTask),
            status: 200,
            message: "the answer has no task_id".into(),
        });
    }
    Ok(Created::Task {
        record: Box::new(TaskRecord {
            id: created.task_id,
            instance_id: Some(instance_id.to_owned()),
            status: TaskStatus::Waiting,
            scan_type: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            num: None,
            keys: None,
        }),
        shard: node.shard.clone(),
    })
}
