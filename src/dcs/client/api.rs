//! [`DcsApi`] for [`DcsClient`]: each operation's method, path, query and body, sent through
//! the client's retry loop (`call`).

use http::Method;

use super::{decode, invalid, DcsClient, OP_LIST_INSTANCES, OP_SHOW_INSTANCE};
use crate::dcs::{
    offline, BackupList, BackupListQuery, GroupList, NodeList, OfflineAnalysisRequest,
    OfflineTaskDetails, OfflineTaskId, OfflineTaskList,
};
use crate::dcs::{
    Analysis, AutoscanConfig, AutoscanConfigRequest, DcsApi, Error, InstanceInfo, InstanceList,
    InstanceListQuery, Operation, Result, TaskList, TaskListQuery, TaskRecord,
};

fn task_query(q: &TaskListQuery) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    if let Some(o) = q.offset {
        v.push(("offset", o.to_string()));
    }
    if let Some(l) = q.limit {
        v.push(("limit", l.to_string()));
    }
    if let Some(s) = &q.status {
        v.push(("status", s.as_str().to_owned()));
    }
    v
}

impl DcsApi for DcsClient {
    async fn list_tasks(
        &self,
        instance_id: &str,
        analysis: Analysis,
        query: &TaskListQuery,
    ) -> Result<TaskList> {
        let op = analysis.operation(Operation::ListTasks);
        let url = self.url(
            op,
            &[instance_id, analysis.tasks_segment()],
            &task_query(query),
        )?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn create_task(&self, instance_id: &str, analysis: Analysis) -> Result<TaskRecord> {
        let op = analysis.operation(Operation::CreateTask);
        let url = self.url(op, &[instance_id, analysis.task_segment()], &[])?;
        self.call(op, Method::POST, url, Vec::new())
            .await
            .map_err(|e| match e {
                // A 2xx answer: the task exists, whatever its unreadable answer says.
                Error::Decode { .. } => Error::OutcomeUnknown {
                    operation: op,
                    cause: Box::new(e),
                },
                e => e,
            })
    }

    async fn show_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> Result<TaskRecord> {
        let op = analysis.operation(Operation::ShowTask);
        let url = self.url(op, &[instance_id, analysis.task_segment(), task_id], &[])?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn delete_task(
        &self,
        instance_id: &str,
        analysis: Analysis,
        task_id: &str,
    ) -> Result<Option<TaskRecord>> {
        let op = analysis.operation(Operation::DeleteTask);
        let url = self.url(op, &[instance_id, analysis.task_segment(), task_id], &[])?;
        let answer = self.send(op, Method::DELETE, url, Vec::new()).await?;
        // 204 (documented) or any empty 2xx: deleted, no record returned.
        if answer.status == 204 || answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode(op, &answer).map(Some)
    }

    async fn show_autoscan(&self, instance_id: &str, analysis: Analysis) -> Result<AutoscanConfig> {
        let op = analysis.operation(Operation::ShowAutoscan);
        let url = self.url(
            op,
            &[instance_id, analysis.autoscan_segment(), "autoscan"],
            &[],
        )?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn update_autoscan(
        &self,
        instance_id: &str,
        analysis: Analysis,
        config: &AutoscanConfigRequest,
    ) -> Result<AutoscanConfig> {
        let op = analysis.operation(Operation::UpdateAutoscan);
        let url = self.url(
            op,
            &[instance_id, analysis.autoscan_segment(), "autoscan"],
            &[],
        )?;
        let body = serde_json::to_vec(config)
            .map_err(|e| invalid(op, format!("cannot encode the body: {e}")))?;
        self.call(op, Method::PUT, url, body).await
    }

    async fn show_instance(&self, instance_id: &str) -> Result<InstanceInfo> {
        let url = self.url(OP_SHOW_INSTANCE, &[instance_id], &[])?;
        self.call(OP_SHOW_INSTANCE, Method::GET, url, Vec::new())
            .await
    }

    async fn list_instances(&self, query: &InstanceListQuery) -> Result<InstanceList> {
        let mut q = Vec::new();
        if let Some(o) = query.offset {
            q.push(("offset", o.to_string()));
        }
        if let Some(l) = query.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(s) = &query.status {
            q.push(("status", s.clone()));
        }
        if let Some(n) = &query.name {
            q.push(("name", n.clone()));
        }
        if let Some(i) = &query.instance_id {
            q.push(("instance_id", i.clone()));
        }
        let url = self.url(OP_LIST_INSTANCES, &[], &q)?;
        self.call(OP_LIST_INSTANCES, Method::GET, url, Vec::new())
            .await
    }

    async fn list_offline_tasks(
        &self,
        instance_id: &str,
        query: &TaskListQuery,
    ) -> Result<OfflineTaskList> {
        let op = Analysis::Keyfamily.operation(Operation::ListTasks);
        let url = self.url(
            op,
            &[instance_id, OFFLINE, KEY_ANALYSIS],
            &task_query(query),
        )?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn create_offline_task(
        &self,
        instance_id: &str,
        request: &OfflineAnalysisRequest,
    ) -> Result<OfflineTaskId> {
        let op = Analysis::Keyfamily.operation(Operation::CreateTask);
        let url = self.url(op, &[instance_id, OFFLINE, KEY_ANALYSIS], &[])?;
        let body = serde_json::to_vec(request)
            .map_err(|e| invalid(op, format!("cannot encode the body: {e}")))?;
        self.call(op, Method::POST, url, body).await
    }

    async fn show_offline_task(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> Result<OfflineTaskDetails> {
        let op = Analysis::Keyfamily.operation(Operation::ShowTask);
        let url = self.url(op, &[instance_id, OFFLINE, KEY_ANALYSIS, task_id], &[])?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn delete_offline_task(&self, instance_id: &str, task_id: &str) -> Result<OfflineTaskId> {
        let op = Analysis::Keyfamily.operation(Operation::DeleteTask);
        let url = self.url(op, &[instance_id, OFFLINE, KEY_ANALYSIS, task_id], &[])?;
        let answer = self.send(op, Method::DELETE, url, Vec::new()).await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OfflineTaskId {
                task_id: task_id.to_owned(),
            });
        }
        decode(op, &answer)
    }

    async fn list_backups(&self, instance_id: &str, query: &BackupListQuery) -> Result<BackupList> {
        let op = offline::OP_LIST_BACKUPS;
        let mut q = Vec::new();
        if let Some(b) = &query.begin_time {
            q.push(("begin_time", b.clone()));
        }
        if let Some(e) = &query.end_time {
            q.push(("end_time", e.clone()));
        }
        if let Some(l) = query.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(o) = query.offset {
            q.push(("offset", o.to_string()));
        }
        let url = self.url(op, &[instance_id, "backups"], &q)?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn list_nodes(&self, instance_id: &str) -> Result<NodeList> {
        let op = offline::OP_SHOW_NODES;
        let url = self.url(op, &[instance_id, "logical-nodes"], &[])?;
        self.call(op, Method::GET, url, Vec::new()).await
    }

    async fn list_groups(&self, instance_id: &str) -> Result<GroupList> {
        let op = offline::OP_LIST_GROUPS;
        let url = self.url_in("instance", op, &[instance_id, "groups"], &[])?;
        self.call(op, Method::GET, url, Vec::new()).await
    }
}

/// Path segments of the offline key analysis endpoints (`.../{instance}/offline/key-analysis`).
const OFFLINE: &str = "offline";
const KEY_ANALYSIS: &str = "key-analysis";
