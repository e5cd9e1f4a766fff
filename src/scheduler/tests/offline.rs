//! The key family analysis on DCS (the offline key analysis of a backup, see
//! [`crate::scheduler::offline`]) through the analysis loop, against an in-memory fake of its
//! API with two shards, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{AnalysisSettings, Mode};
use crate::dcs::offline::{BackupRecord, Group, LargestKeyPrefix, OfflineTaskId, Replication};
use crate::dcs::{
    self, timestamp, Analysis, AutoscanConfig, AutoscanConfigRequest, BackupList, BackupListQuery,
    DcsApi, GroupList, InstanceInfo, InstanceList, InstanceListQuery, OfflineAnalysisRequest,
    OfflineTaskDetails, OfflineTaskList, TaskList, TaskListQuery, TaskRecord, TaskStatus,
    TaskSummary,
};
use crate::metrics::store::{AnalysisSpec, InstanceSpec, Store};
use crate::scheduler::{AnalysisLoop, Clock, Shared};

const T0: f64 = 1_700_000_000.0;
const TASK_SECS: f64 = 30.0;

struct FakeTask {
    id: String,
    node: String,
    created: f64,
    backup: Option<String>,
}

#[derive(Default)]
struct State {
    tasks: Vec<FakeTask>,
    requests: Vec<OfflineAnalysisRequest>,
    calls: Vec<&'static str>,
    /// The next create finds someone else's task on `g1` just started (DCS.4231).
    race: bool,
    backups: Vec<(&'static str, &'static str, f64)>,
}

/// An offline key analysis API with two shards (`g0`: nodes m0/s0, `g1`: m1/s1).
struct Fake {
    state: Mutex<State>,
    clock: Clock,
}

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn add(&self, node: &str) -> String {
        let now = self.clock.now_unix();
        self.with(|s| add_task(s, node, now, None))
    }

    fn status(&self, t: &FakeTask) -> TaskStatus {
        if self.clock.now_unix() >= t.created + TASK_SECS {
            TaskStatus::Success
        } else {
            TaskStatus::Running
        }
    }
}

fn add_task(s: &mut State, node: &str, created: f64, backup: Option<&str>) -> String {
    let id = format!("t{}", s.tasks.len() + 1);
    s.tasks.push(FakeTask {
        id: id.clone(),
        node: node.into(),
        created,
        backup: backup.map(Into::into),
    });
    id
}

fn api_err(code: &str) -> dcs::Error {
    dcs::Error::Api {
        operation: "fake",
        status: 400,
        code: Some(code.into()),
        message: "injected".into(),
        request_id: None,
    }
}

impl DcsApi for Fake {
    async fn list_tasks(&self, _: &str, _: Analysis, _: &TaskListQuery) -> dcs::Result<TaskList> {
        unimplemented!("scan tasks are not part of these tests")
    }
    async fn create_task(&self, _: &str, _: Analysis) -> dcs::Result<TaskRecord> {
        unimplemented!("scan tasks are not part of these tests")
    }
    async fn show_task(&self, _: &str, _: Analysis, _: &str) -> dcs::Result<TaskRecord> {
        unimplemented!("scan tasks are not part of these tests")
    }
    async fn delete_task(&self, _: &str, _: Analysis, _: &str) -> dcs::Result<Option<TaskRecord>> {
        unimplemented!("the scheduler never deletes tasks")
    }
    async fn show_autoscan(&self, _: &str, _: Analysis) -> dcs::Result<AutoscanConfig> {
        unimplemented!("no autoscan here")
    }
    async fn update_autoscan(
        &self,
        _: &str,
        _: Analysis,
        _: &AutoscanConfigRequest,
    ) -> dcs::Result<AutoscanConfig> {
        unimplemented!("no autoscan here")
    }
    async fn show_instance(&self, _: &str) -> dcs::Result<InstanceInfo> {
        unimplemented!("no instance details here")
    }
    async fn list_instances(&self, _: &InstanceListQuery) -> dcs::Result<InstanceList> {
        unimplemented!("no discovery here")
    }

    async fn list_offline_tasks(&self, _: &str, _: &TaskListQuery) -> dcs::Result<OfflineTaskList> {
        self.with(|s| s.calls.push("list"));
        let records = self.with(|s| {
            s.tasks
                .iter()
                .map(|t| (t.id.clone(), t.created, self.status(t)))
                .collect::<Vec<_>>()
        });
        let records: Vec<TaskSummary> = records
            .into_iter()
            .map(|(id, created, status)| TaskSummary {
                id,
                finished_at: (status == TaskStatus::Success)
                    .then(|| timestamp::format_unix(created + TASK_SECS)),
                status,
                scan_type: None,
                created_at: Some(timestamp::format_unix(created)),
                started_at: Some(timestamp::format_unix(created)),
            })
            .collect();
        Ok(OfflineTaskList {
            instance_id: None,
            total: Some(records.len() as i64),
            records,
        })
    }

    async fn create_offline_task(
        &self,
        _: &str,
        request: &OfflineAnalysisRequest,
    ) -> dcs::Result<OfflineTaskId> {
        self.with(|s| s.calls.push("create"));
        if self.with(|s| std::mem::take(&mut s.race)) {
            self.add("s1");
        }
        let busy = self.with(|s| {
            s.tasks
                .iter()
                .any(|t| self.status(t) == TaskStatus::Running)
        });
        if busy {
            return Err(api_err("DCS.4231"));
        }
        self.with(|s| s.requests.push(request.clone()));
        let now = self.clock.now_unix();
        let backup = request.backup_id.as_deref();
        Ok(OfflineTaskId {
            task_id: self.with(|s| add_task(s, &request.node_id, now, backup)),
        })
    }

    async fn show_offline_task(&self, _: &str, id: &str) -> dcs::Result<OfflineTaskDetails> {
        self.with(|s| s.calls.push("show"));
        let (node, created, backup) = self
            .with(|s| {
                s.tasks
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| (t.node.clone(), t.created, t.backup.clone()))
            })
            .ok_or_else(|| api_err("DCS.4232"))?;
        let group = format!("g{}", &node[1..]);
        // No group name: the loop files the result by its node (the answer's fields are
        // not all verified to be present).
        Ok(OfflineTaskDetails {
            id: id.into(),
            node_id: Some(node),
            backup_id: backup,
            group_name: None,
            finished_at: Some(timestamp::format_unix(created + TASK_SECS)),
            largest_key_prefixes: vec![LargestKeyPrefix {
                key_prefix: format!("{group}:"),
                key_type: Some(crate::dcs::KeyType::Hash),
                bytes: Some(100),
                num: Some(2),
            }],
            total_num: Some(2),
            ..Default::default()
        })
    }

    async fn list_backups(&self, _: &str, _: &BackupListQuery) -> dcs::Result<BackupList> {
        self.with(|s| s.calls.push("backups"));
        let records = self.with(|s| {
            s.backups
                .iter()
                .map(|(id, status, at)| BackupRecord {
                    backup_id: (*id).into(),
                    status: Some((*status).into()),
                    updated_at: Some(timestamp::format_unix(*at)),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        });
        Ok(BackupList {
            total_num: Some(records.len() as i64),
            backup_record_response: records,
        })
    }

    async fn list_groups(&self, _: &str) -> dcs::Result<GroupList> {
        self.with(|s| s.calls.push("groups"));
        let group = |g: u32| Group {
            group_id: format!("id{g}"),
            group_name: format!("g{g}"),
            replication_list: ["m", "s"]
                .into_iter()
                .map(|r| Replication {
                    replication_role: Some(if r == "m" { "master" } else { "slave" }.into()),
                    node_id: format!("{r}{g}"),
                    ..Default::default()
                })
                .collect(),
        };
        Ok(GroupList {
            group_count: Some(2),
            group_list: vec![group(1), group(0)],
        })
    }
}

struct Run {
    fake: Arc<Fake>,
    store: Arc<Store>,
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

fn start(fresh_backup: bool, setup: impl FnOnce(&mut State)) -> Run {
    let clock = Clock::anchored(T0);
    let mut state = State {
        backups: vec![
            ("b-old", "succeed", T0 - 2.0 * 86_400.0),
            ("b-new", "succeed", T0 - 3600.0),
            ("b-failed", "failed", T0 - 60.0),
        ],
        ..Default::default()
    };
    setup(&mut state);
    let fake = Arc::new(Fake {
        state: Mutex::new(state),
        clock,
    });
    let store = Arc::new(Store::new());
    let settings = AnalysisSettings {
        mode: Mode::Trigger,
        interval: Duration::from_secs(86_400),
        timeout: Duration::from_secs(600),
        top_n: 10,
    };
    store.configure(&[InstanceSpec {
        id: "i1".into(),
        name: "one".into(),
        lfu_log_factor: 10,
        native: false,
        analyses: vec![AnalysisSpec {
            analysis: Analysis::Keyfamily,
            top_n: 10,
            mode: "trigger",
            interval: settings.interval,
        }],
    }]);
    let shared = Shared {
        client: fake.clone(),
        store: store.clone(),
        limiter: Arc::new(Semaphore::new(4)),
        calls: Arc::new(Semaphore::new(16)),
        clock,
        start_jitter: Duration::from_secs(10),
        metrics: None,
        reloads: tokio::sync::watch::channel(0).1,
    };
    let lp = AnalysisLoop::new(shared, "i1".into(), Analysis::Keyfamily, settings, Some(1))
        .with_fresh_backup(fresh_backup);
    let cancel = CancellationToken::new();
    let join = tokio::spawn(Box::new(lp).run(cancel.clone()));
    Run {
        fake,
        store,
        cancel,
        join,
    }
}

impl Run {
    async fn stop(self) {
        self.cancel.cancel();
        self.join.await.unwrap();
    }

    fn state(&self) -> crate::metrics::store::AnalysisState {
        self.store
            .analysis_state("i1", Analysis::Keyfamily)
            .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn each_shard_reads_the_newest_backup_and_a_refused_create_adopts() {
    let run = start(false, |s| s.race = true);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let st = run.state();
    // The first create met someone else's task (DCS.4231): adopted, not doubled. Then the
    // other shard was analysed by a task of the loop's own, on its standby, reading the
    // newest successful backup.
    assert_eq!((st.tasks_adopted, st.tasks_created), (1, 1));
    assert!(
        st.failures.is_empty(),
        "DCS.4231 is no failure: {:?}",
        st.failures
    );
    let requests = run.fake.with(|s| s.requests.clone());
    assert_eq!(
        requests,
        [OfflineAnalysisRequest {
            node_id: "s0".into(),
            backup_id: Some("b-new".into()),
        }]
    );
    let r = st.result.expect("published");
    let shards: Vec<_> = r.shards.keys().cloned().collect();
    assert_eq!(shards, ["g0", "g1"]);
    let fams: Vec<_> = r
        .families
        .iter()
        .map(|f| (f.family.as_str(), f.shard.as_str()))
        .collect();
    assert_eq!(fams, [("g0:", "g0"), ("g1:", "g1")]);
    assert_eq!(r.key_count, 4);
    assert_eq!(st.consecutive_failures, 0);
    // Both shards are fresh: nothing more until the interval passes.
    let creates = run
        .fake
        .with(|s| s.calls.iter().filter(|c| **c == "create").count());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let later = run
        .fake
        .with(|s| s.calls.iter().filter(|c| **c == "create").count());
    assert_eq!(creates, later);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_existing_results_of_every_shard_are_taken_not_redone() {
    // Both shards were analysed from the newest backup an hour ago, the older one first.
    let run = start(false, |s| {
        add_task(s, "s0", T0 - 3.0 * 3600.0, Some("b-new"));
        add_task(s, "m1", T0 - 2.0 * 3600.0, Some("b-new"));
    });
    tokio::time::sleep(Duration::from_secs(600)).await;
    let st = run.state();
    assert_eq!((st.tasks_adopted, st.tasks_created), (2, 0));
    assert!(
        run.fake.with(|s| s.requests.is_empty()),
        "nothing analysed again"
    );
    let r = st.result.expect("published");
    let shards: Vec<_> = r
        .shards
        .iter()
        .map(|(k, v)| (k.as_str(), v.task_id.as_str()))
        .collect();
    assert_eq!(shards, [("g0", "t1"), ("g1", "t2")]);
    // One show per shard: no record is fetched twice.
    assert_eq!(
        run.fake
            .with(|s| s.calls.iter().filter(|c| **c == "show").count()),
        2
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fresh_backups_leave_out_backup_id_and_list_no_backups() {
    let run = start(true, |_| {});
    tokio::time::sleep(Duration::from_secs(600)).await;
    let requests = run.fake.with(|s| s.requests.clone());
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.backup_id.is_none()));
    assert!(!run.fake.with(|s| s.calls.contains(&"backups")));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_successful_backup_is_a_failure_that_names_the_cause() {
    let run = start(false, |s| s.backups.retain(|b| b.1 != "succeed"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = run.state();
    assert!(st.consecutive_failures >= 1);
    let e = st.last_error.expect("an error");
    assert!(e.message.contains("no successful backup"), "{}", e.message);
    assert!(run.fake.with(|s| s.requests.is_empty()), "nothing created");
    run.stop().await;
}
