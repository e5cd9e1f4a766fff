//! Scheduler tests on tokio's paused clock against an in-memory fake of the DCS API.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::supervisor::Supervisor;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::dcs::{
    self, timestamp, AutoscanConfig, AutoscanConfigRequest, InstanceInfo, InstanceList,
    InstanceListQuery, KeyRecord, KeyType, ScanType, SizeUnit, TaskList, TaskListQuery, TaskRecord,
    TaskStatus, TaskSummary,
};
use crate::metrics::store::FailureReason;

const T0: f64 = 1_700_000_000.0;

#[derive(Clone)]
struct FakeTask {
    id: String,
    created: f64,
    duration: f64,
    fail: bool,
    scan_type: ScanType,
    /// Seconds the task's reported timestamps lie ahead of the shared clock (DCS clock skew).
    skew: f64,
}

#[derive(Default)]
struct FakeState {
    tasks: HashMap<(String, Analysis), Vec<FakeTask>>,
    calls: Vec<&'static str>,
    unsupported: HashSet<(String, Analysis)>,
    /// Errors returned by the next calls, whatever they are.
    errors: VecDeque<dcs::Error>,
    duration: f64,
    fail_next: bool,
    /// The skew of the next task added.
    skew_next: f64,
    /// The skew of every task added (on top of `skew_next`).
    skew_all: f64,
    /// Successful shows still to answer with `keys: null` and `num: 5`.
    hollow_shows: usize,
    /// Someone else starts a task just as the next create arrives (DCS.4918).
    race_on_create: bool,
    /// Every record reports this instead of its dates (`NaN`, `-1`, ...).
    odd_dates: Option<&'static str>,
    /// ShowInstance calls still to fail with a 503.
    show_errors: usize,
    /// ListTasks panics: a bug in the code a loop calls.
    panic_on_list: bool,
    next_id: u64,
}

/// An in-memory DCS: tasks end `duration` seconds after creation, as seen by the shared clock.
struct FakeDcs {
    state: Mutex<FakeState>,
    clock: Clock,
}

impl FakeDcs {
    fn new(clock: Clock, duration: f64) -> Arc<Self> {
        Arc::new(FakeDcs {
            state: Mutex::new(FakeState {
                duration,
                ..Default::default()
            }),
            clock,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn count(&self, op: &str) -> usize {
        self.with(|s| s.calls.iter().filter(|c| **c == op).count())
    }

    fn add_task(
        &self,
        inst: &str,
        a: Analysis,
        created: f64,
        duration: f64,
        scan: ScanType,
    ) -> String {
        self.with(|s| {
            s.next_id += 1;
            let id = format!("task-{}", s.next_id);
            s.tasks.entry((inst.into(), a)).or_default().push(FakeTask {
                id: id.clone(),
                created,
                duration,
                fail: std::mem::take(&mut s.fail_next),
                scan_type: scan,
                skew: std::mem::take(&mut s.skew_next) + s.skew_all,
            });
            id
        })
    }

    /// The keys a task reports: derived from its id so a newer task reports other keys.
    fn keys_of(id: &str) -> Vec<KeyRecord> {
        let n: i64 = id.trim_start_matches("task-").parse().unwrap_or(0);
        (0..3)
            .map(|i| KeyRecord {
                name: format!("{id}:key{i}"),
                key_type: Some(KeyType::String),
                shard: None,
                db: Some(0),
                size: Some(1000 * (3 - i)),
                unit: Some(SizeUnit::Byte),
                freq: Some(100 + n + i),
                memory: None,
                rates: None,
            })
            .collect()
    }

    fn record(&self, t: &FakeTask, with_keys: bool) -> TaskRecord {
        let now = self.clock.now_unix();
        let done = now >= t.created + t.duration;
        let status = match (done, t.fail) {
            (false, _) => TaskStatus::Running,
            (true, false) => TaskStatus::Success,
            (true, true) => TaskStatus::Failed,
        };
        let date = |t: f64| {
            self.with(|s| s.odd_dates)
                .map_or_else(|| timestamp::format_unix(t), str::to_owned)
        };
        TaskRecord {
            id: t.id.clone(),
            instance_id: None,
            status: status.clone(),
            scan_type: Some(t.scan_type.clone()),
            created_at: Some(date(t.created + t.skew)),
            started_at: Some(date(t.created + t.skew)),
            finished_at: done.then(|| date(t.created + t.duration + t.skew)),
            num: None,
            keys: (with_keys && status == TaskStatus::Success).then(|| Self::keys_of(&t.id)),
        }
    }

    /// Logs a call; analysis calls take the next injected error, if any.
    fn begin(&self, op: &'static str) -> dcs::Result<()> {
        self.with(|s| {
            s.calls.push(op);
            if op == "show_instance" {
                return Ok(());
            }
            s.errors.pop_front().map_or(Ok(()), Err)
        })
    }
}

fn api_err(status: u16, code: &str) -> dcs::Error {
    dcs::Error::Api {
        operation: "fake",
        status,
        code: Some(code.into()),
        message: "injected".into(),
        request_id: None,
    }
}

impl DcsApi for FakeDcs {
    async fn list_tasks(
        &self,
        inst: &str,
        a: Analysis,
        _q: &TaskListQuery,
    ) -> dcs::Result<TaskList> {
        self.begin("list")?;
        if self.with(|s| s.panic_on_list) {
            crate::supervisor::tests::bug("injected bug in ListTasks");
        }
        let tasks = self.with(|s| {
            s.tasks
                .get(&(inst.to_owned(), a))
                .cloned()
                .unwrap_or_default()
        });
        // Oldest first: the scheduler must not assume newest-first.
        let records = tasks
            .iter()
            .map(|t| {
                let r = self.record(t, false);
                TaskSummary {
                    id: r.id,
                    status: r.status,
                    scan_type: r.scan_type,
                    created_at: r.created_at,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                }
            })
            .collect::<Vec<_>>();
        Ok(TaskList {
            instance_id: None,
            count: Some(records.len() as i64),
            records,
        })
    }

    async fn create_task(&self, inst: &str, a: Analysis) -> dcs::Result<TaskRecord> {
        self.begin("create")?;
        if self.with(|s| s.unsupported.contains(&(inst.to_owned(), a))) {
            return Err(api_err(400, "DCS.4922"));
        }
        let now = self.clock.now_unix();
        if self.with(|s| std::mem::take(&mut s.race_on_create)) {
            self.add_task(inst, a, now, 400.0, ScanType::Manual);
        }
        let running = self.with(|s| {
            s.tasks
                .get(&(inst.to_owned(), a))
                .is_some_and(|ts| ts.iter().any(|t| now < t.created + t.duration))
        });
        if running {
            return Err(api_err(400, "DCS.4918"));
        }
        let d = self.with(|s| s.duration);
        let id = self.add_task(inst, a, now, d, ScanType::Manual);
        let t = self
            .with(|s| {
                s.tasks[&(inst.to_owned(), a)]
                    .iter()
                    .find(|t| t.id == id)
                    .cloned()
            })
            .unwrap();
        let mut r = self.record(&t, false);
        r.status = TaskStatus::Waiting;
        Ok(r)
    }

    async fn show_task(&self, inst: &str, a: Analysis, id: &str) -> dcs::Result<TaskRecord> {
        self.begin("show")?;
        let t = self.with(|s| {
            s.tasks
                .get(&(inst.to_owned(), a))
                .and_then(|ts| ts.iter().find(|t| t.id == id).cloned())
        });
        let mut r = t
            .map(|t| self.record(&t, true))
            .ok_or_else(|| api_err(400, "DCS.4941"))?;
        if r.status == TaskStatus::Success
            && self
                .with(|s| s.hollow_shows.checked_sub(1).map(|n| s.hollow_shows = n))
                .is_some()
        {
            r.keys = None;
            r.num = Some(5);
        }
        Ok(r)
    }

    async fn delete_task(&self, _: &str, _: Analysis, _: &str) -> dcs::Result<Option<TaskRecord>> {
        unimplemented!("the scheduler never deletes tasks")
    }

    async fn show_autoscan(&self, _: &str, _: Analysis) -> dcs::Result<AutoscanConfig> {
        unimplemented!("the scheduler never reads autoscan settings")
    }

    async fn update_autoscan(
        &self,
        _: &str,
        _: Analysis,
        _: &AutoscanConfigRequest,
    ) -> dcs::Result<AutoscanConfig> {
        unimplemented!("the scheduler never changes autoscan settings")
    }

    async fn show_instance(&self, inst: &str) -> dcs::Result<InstanceInfo> {
        self.begin("show_instance")?;
        let fail = self.with(|s| {
            let fail = s.show_errors > 0;
            s.show_errors = s.show_errors.saturating_sub(1);
            fail
        });
        if fail {
            return Err(api_err(503, "DCS.5000"));
        }
        Ok(InstanceInfo {
            instance_id: inst.into(),
            name: format!("dcs-{inst}"),
            engine_version: Some("6.0".into()),
            status: Some("RUNNING".into()),
            ..Default::default()
        })
    }

    async fn list_instances(&self, _: &InstanceListQuery) -> dcs::Result<InstanceList> {
        unimplemented!("discovery is not part of these tests")
    }
}

fn settings(mode: Mode, interval: u64, timeout: u64) -> AnalysisSettings {
    AnalysisSettings {
        mode,
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        top_n: 2,
    }
}

fn instance(id: &str, hot: AnalysisSettings) -> InstanceConfig {
    InstanceConfig {
        id: id.into(),
        name: Some(format!("name-{id}")),
        lfu_log_factor: 10,
        hotkey: hot,
        bigkey: AnalysisSettings {
            mode: Mode::Off,
            ..hot
        },
        keyfamily: Default::default(),
    }
}

/// An instance with only the big key analysis on.
fn bigkey_instance(id: &str, big: AnalysisSettings) -> InstanceConfig {
    InstanceConfig {
        hotkey: AnalysisSettings {
            mode: Mode::Off,
            ..big
        },
        bigkey: big,
        ..instance(id, big)
    }
}

struct Harness {
    fake: Arc<FakeDcs>,
    store: Arc<Store>,
    sched: Scheduler<FakeDcs>,
    cancel: CancellationToken,
    supervisor: Supervisor,
}

impl Harness {
    fn new(duration: f64) -> Self {
        let clock = Clock::anchored(T0);
        let fake = FakeDcs::new(clock, duration);
        let store = Arc::new(Store::new());
        let cancel = CancellationToken::new();
        let supervisor = Supervisor::new();
        let sched = Scheduler::new(store.clone(), clock, 4, cancel.clone(), supervisor.clone())
            .with_seed(42);
        Harness {
            fake,
            store,
            sched,
            cancel,
            supervisor,
        }
    }

    fn start(&mut self, instances: Vec<InstanceConfig>) {
        let plan = vec![CloudPlan {
            name: "c".into(),
            client: self.fake.clone(),
            instances,
            known_details: HashMap::new(),
        }];
        self.sched.apply(plan);
    }

    fn state(&self, id: &str) -> crate::metrics::store::AnalysisState {
        self.store
            .analysis_state(id, Analysis::Hotkey)
            .expect("configured")
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.supervisor.close();
        tokio::time::timeout(Duration::from_secs(5), self.supervisor.wait())
            .await
            .expect("loops stop");
        assert_eq!(self.supervisor.failure(), None, "no loop failed");
    }
}

async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn trigger_creates_polls_and_publishes_with_few_calls() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    // Start jitter is at most min(interval, 5m)/2 = 150 s; the task takes 30 s.
    advance(150 + 30 + 30).await;
    let st = h.state("i1");
    let r = st.result.expect("published");
    assert_eq!(r.task_id, "task-1");
    // top_n = 2 of the 3 keys, ranked by freq: key2 (103) then key1 (102).
    let names: Vec<_> = r.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["task-1:key2", "task-1:key1"]);
    assert_eq!(r.key_count, 3);
    assert_eq!(st.tasks_created, 1);
    assert_eq!(h.fake.count("create"), 1);

    // The second cycle knows the task takes 30 s: one poll at the expected end. Hot key
    // analyses list before every create (no DCS.4918 guard is documented for them).
    let before = h.fake.with(|s| s.calls.len());
    advance(600).await;
    let calls: Vec<_> = h.fake.with(|s| s.calls[before..].to_vec());
    assert_eq!(
        calls,
        ["list", "create", "show"],
        "one poll at the expected end"
    );
    assert_eq!(h.state("i1").result.unwrap().task_id, "task-2");
    assert_eq!(h.store.read(|s| s.instances["i1"].name.clone()), "name-i1");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn clean_big_key_cycles_skip_the_list_but_list_again_within_the_limit() {
    let mut h = Harness::new(30.0);
    h.start(vec![bigkey_instance(
        "i1",
        settings(Mode::Trigger, 600, 300),
    )]);
    advance(150 + 30 + 30).await;
    assert_eq!(h.fake.count("create"), 1);
    let before = h.fake.with(|s| s.calls.len());
    // MAX_UNLISTED_CYCLES cycles without a list, then one with it; one task per interval
    // (the cadence counts from each task's creation, not its end).
    let cycles = analysis_loop::MAX_UNLISTED_CYCLES as usize + 1;
    advance(600 * cycles as u64).await;
    let calls: Vec<_> = h.fake.with(|s| s.calls[before..].to_vec());
    let mut expected = Vec::new();
    for _ in 0..analysis_loop::MAX_UNLISTED_CYCLES {
        expected.extend(["create", "show"]);
    }
    expected.extend(["list", "create", "show"]);
    assert_eq!(calls, expected);
    assert_eq!(h.fake.count("create"), 1 + cycles);
    let st = h.store.analysis_state("i1", Analysis::Bigkey).unwrap();
    assert_eq!(st.tasks_created, 1 + cycles as u64);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_started_elsewhere_during_unlisted_cycles_is_adopted() {
    let mut h = Harness::new(30.0);
    h.start(vec![bigkey_instance(
        "i1",
        settings(Mode::Trigger, 600, 300),
    )]);
    advance(150 + 30 + 30).await;
    assert_eq!(h.fake.count("create"), 1);
    // The next cycle creates without listing; someone else's task makes the create fail with
    // DCS.4918, and the loop lists and adopts it instead of piling up another.
    h.fake.with(|s| s.race_on_create = true);
    advance(600).await;
    let st = h.store.analysis_state("i1", Analysis::Bigkey).unwrap();
    assert_eq!(st.tasks_adopted, 1);
    assert_eq!(st.tasks_created, 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_publishes_existing_result_first_and_creates_no_duplicate() {
    let mut h = Harness::new(30.0);
    // A result that finished 100 s before start, and nothing running.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 200.0, 100.0, ScanType::Manual);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let st = h.state("i1");
    assert_eq!(st.result.expect("published at once").task_id, "task-1");
    let calls: Vec<_> = h.fake.with(|s| s.calls.clone());
    let analysis_calls: Vec<_> = calls
        .into_iter()
        .filter(|c| *c != "show_instance")
        .collect();
    assert_eq!(
        analysis_calls,
        ["list", "show"],
        "only the existing result was fetched"
    );
    // The result is 100 s old: the next task is due 500 s later, not before.
    advance(480).await;
    assert_eq!(h.fake.count("create"), 0);
    advance(60).await;
    assert_eq!(h.fake.count("create"), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn running_task_is_adopted_not_duplicated() {
    let mut h = Harness::new(30.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 10.0, 50.0, ScanType::Auto);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let st = h.state("i1");
    assert_eq!(st.running.as_ref().map(|r| r.id.as_str()), Some("task-1"));
    assert_eq!(st.tasks_adopted, 1);
    advance(60).await;
    let st = h.state("i1");
    assert!(st.running.is_none());
    assert_eq!(st.result.unwrap().task_id, "task-1");
    assert_eq!(st.tasks_adopted, 1, "the adopted task is counted once");
    assert_eq!(h.fake.count("create"), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn already_running_on_create_adopts_the_running_task() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    // Someone starts a task between our list and our create: the list sees nothing, the
    // create gets DCS.4918, and the second list finds the task.
    h.fake.with(|s| s.race_on_create = true);
    advance(200).await;
    assert_eq!(
        h.fake.count("create"),
        1,
        "create was tried once and refused"
    );
    let st = h.state("i1");
    assert_eq!(st.tasks_adopted, 1);
    assert_eq!(st.tasks_created, 0);
    assert_eq!(st.running.as_ref().map(|r| r.id.as_str()), Some("task-1"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unsupported_analysis_stops_creating_until_the_daily_recheck() {
    let mut h = Harness::new(30.0);
    h.fake
        .with(|s| s.unsupported.insert(("i1".into(), Analysis::Hotkey)));
    h.start(vec![instance("i1", settings(Mode::Trigger, 60, 30))]);
    advance(3600 * 12).await;
    let st = h.state("i1");
    assert!(!st.supported);
    assert_eq!(st.failures[&FailureReason::Unsupported], 1);
    assert_eq!(h.fake.count("create"), 1);
    assert_eq!(st.consecutive_failures, 0, "unsupported is not failing");
    advance(3600 * 13).await;
    assert_eq!(h.fake.count("create"), 2, "re-checked once a day");
    let st = h.state("i1");
    assert_eq!(st.failures[&FailureReason::Unsupported], 2);
    assert_eq!(
        st.consecutive_failures, 0,
        "the daily re-check does not build a failure streak"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn observe_mode_never_creates_and_ingests_newer_records() {
    let mut h = Harness::new(30.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 500.0, 20.0, ScanType::Auto);
    h.start(vec![instance("i1", settings(Mode::Observe, 60, 30))]);
    advance(1).await;
    assert_eq!(h.state("i1").result.unwrap().task_id, "task-1");
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 + 10.0, 20.0, ScanType::Auto);
    advance(120).await;
    let st = h.state("i1");
    assert_eq!(st.result.unwrap().task_id, "task-2");
    assert_eq!(st.tasks_adopted, 2);
    assert_eq!(h.fake.count("create"), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stuck_task_times_out_and_failures_keep_the_last_result() {
    let mut h = Harness::new(30.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 1000.0, 10.0, ScanType::Manual);
    // A task that never ends.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 5.0, 1e9, ScanType::Manual);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 120))]);
    advance(130).await;
    let st = h.state("i1");
    assert_eq!(st.failures.get(&FailureReason::Timeout), Some(&1));
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(
        st.result.unwrap().task_id,
        "task-1",
        "the last good result stays"
    );
    assert!(st.running.is_none());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn api_errors_back_off_and_recover() {
    let mut h = Harness::new(10.0);
    for _ in 0..3 {
        h.fake
            .with(|s| s.errors.push_back(api_err(503, "DCS.5000")));
    }
    h.start(vec![instance("i1", settings(Mode::Trigger, 3600, 300))]);
    advance(2).await;
    assert_eq!(h.state("i1").consecutive_failures, 1);
    // Backoff: 2.5–5 s, then 5–10 s, then 10–20 s.
    advance(5).await;
    assert_eq!(h.state("i1").consecutive_failures, 2);
    advance(10).await;
    assert_eq!(h.state("i1").consecutive_failures, 3);
    advance(200).await;
    let st = h.state("i1");
    assert_eq!(st.failures[&FailureReason::ApiError], 3);
    assert_eq!(st.consecutive_failures, 0);
    assert!(st.result.is_some());
    h.stop().await;
}

/// ShowInstance retries 1 min (with jitter: 30–60 s) after the first failure, then 1–2 min,
/// as [`INFO_RETRY`] says; not 2 min after the first.
#[tokio::test(start_paused = true)]
async fn instance_details_retry_after_a_minute_then_back_off() {
    let mut h = Harness::new(10.0);
    h.fake.with(|s| s.show_errors = 2);
    h.start(vec![instance("i1", settings(Mode::Observe, 3600, 300))]);
    advance(29).await;
    assert_eq!(h.fake.count("show_instance"), 1, "no retry before 30 s");
    advance(31).await;
    assert_eq!(
        h.fake.count("show_instance"),
        2,
        "the first retry within a minute"
    );
    // The second retry comes 1–2 min after the first: between 90 s and 180 s.
    advance(29).await;
    assert_eq!(
        h.fake.count("show_instance"),
        2,
        "the second retry waits 1–2 min"
    );
    advance(92).await;
    assert_eq!(h.fake.count("show_instance"), 3);
    let status = h.store.read(|s| {
        s.instances
            .get("i1")
            .and_then(|i| i.info.as_ref())
            .and_then(|i| i.status.clone())
    });
    assert_eq!(status.as_deref(), Some("RUNNING"));
    h.stop().await;
}

/// A loop that panics is not lost: the supervisor names it, which fails readiness and the exit
/// code in the app, and shutdown still completes.
#[tokio::test(start_paused = true)]
async fn a_loop_that_panics_is_seen_by_the_supervisor() {
    let mut h = Harness::new(10.0);
    h.fake.with(|s| s.panic_on_list = true);
    // Hot keys panic on their first ListTasks; big keys are off, their loop is never a failure.
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    let failure = tokio::time::timeout(Duration::from_secs(600), h.supervisor.failed())
        .await
        .expect("the panic is seen");
    assert_eq!(failure.task, "analysis loop i1 hotkey");
    assert_eq!(
        failure.failure,
        crate::supervisor::Failure::Panicked("injected bug in ListTasks".into())
    );
    h.cancel.cancel();
    h.supervisor.close();
    tokio::time::timeout(Duration::from_secs(5), h.supervisor.wait())
        .await
        .expect("the other loops stop");
}

#[tokio::test(start_paused = true)]
async fn failed_task_is_counted_as_task_failed() {
    let mut h = Harness::new(10.0);
    h.fake.with(|s| s.fail_next = true);
    h.start(vec![instance("i1", settings(Mode::Trigger, 60, 30))]);
    advance(60).await;
    let st = h.state("i1");
    assert_eq!(st.failures.get(&FailureReason::TaskFailed), Some(&1));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_stops_removed_instances_and_drops_their_series() {
    let mut h = Harness::new(10.0);
    h.start(vec![
        instance("i1", settings(Mode::Trigger, 60, 30)),
        instance("i2", settings(Mode::Trigger, 60, 30)),
    ]);
    advance(100).await;
    assert_eq!(h.sched.loop_count(), 2);
    h.start(vec![instance("i2", settings(Mode::Trigger, 60, 30))]);
    assert_eq!(h.sched.loop_count(), 1);
    assert!(h.store.analysis_state("i1", Analysis::Hotkey).is_none());
    let creates_i1 = h.fake.with(|s| {
        s.tasks
            .get(&("i1".to_string(), Analysis::Hotkey))
            .map_or(0, Vec::len)
    });
    advance(300).await;
    let after = h.fake.with(|s| {
        s.tasks
            .get(&("i1".to_string(), Analysis::Hotkey))
            .map_or(0, Vec::len)
    });
    assert_eq!(after, creates_i1, "a removed instance gets no new task");
    assert!(h.state("i2").result.is_some());
    h.stop().await;
}

/// Thousands of loops sleep most of the time: a sleeping loop's task must not be sized for the
/// request futures it only holds during a call (those are boxed). Unboxed, with the real
/// client, the analysis loop's future was over 4 KiB and the instance details loop's 2.3 KiB.
#[test]
fn sleeping_loops_stay_small() {
    /// The size of what `f` returns, without calling it.
    fn output_size<A, B, R>(_f: impl FnOnce(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    type Client = crate::dcs::DcsClient;
    let analysis = output_size(AnalysisLoop::<Client>::run);
    assert!(analysis <= 1024, "analysis loop future: {analysis} bytes");
    let (store, limiter) = (Arc::new(Store::new()), Arc::new(Semaphore::new(1)));
    let info = output_size(|client: Arc<Client>, cancel: CancellationToken| {
        info_loop(client, store, limiter, "id".into(), true, None, cancel)
    });
    assert!(info <= 1024, "instance details loop future: {info} bytes");
}

/// Every exported time of a result, which must not lie after `now`.
fn assert_not_after(r: &crate::metrics::store::AnalysisResult, now: f64) {
    for t in [r.created_at, r.started_at, r.finished_at] {
        let t = t.expect("dated");
        assert!(
            t <= now + 1e-3,
            "{} is {} s in the future",
            r.task_id,
            t - now
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_dated_in_the_future_neither_leaks_nor_freezes_the_analysis() {
    let mut h = Harness::new(30.0);
    // An auto-scan result that finished before start, dated an hour ahead by DCS.
    h.fake.with(|s| s.skew_next = 3600.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 100.0, 20.0, ScanType::Auto);
    let metrics = SchedulerMetrics::register(&prometheus::Registry::new(), "dcs").unwrap();
    h.sched.set_metrics(metrics.clone());
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let r = h.state("i1").result.expect("published");
    assert_eq!(r.task_id, "task-1");
    assert_not_after(&r, T0 + 1.0);
    // Counted, for the clock-skew alert.
    assert_eq!(metrics.future_timestamps(), 1);

    // The interval counts from when the result was seen: the loop creates its own task after
    // ~600 s and publishes it, although the old record still claims to be newer.
    advance(700).await;
    let st = h.state("i1");
    assert_eq!(h.fake.count("create"), 1);
    let r = st.result.expect("published");
    assert_eq!(r.task_id, "task-2");
    assert_not_after(&r, T0 + 701.0);
    assert_eq!(st.consecutive_failures, 0);
    // The loop's own task was dated right: nothing more counted.
    assert_eq!(metrics.future_timestamps(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_restarts_a_loop_does_not_count_its_task_again() {
    let mut h = Harness::new(30.0);
    // A task that runs through every reload below.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 10.0, 3600.0, ScanType::Manual);
    let mut listed = 0;
    for (n, interval) in [600, 601, 602, 603].into_iter().enumerate() {
        // Changed settings: the loop is replaced, and the new one adopts the running task.
        h.start(vec![instance("i1", settings(Mode::Trigger, interval, 300))]);
        advance(2).await;
        assert!(
            h.fake.count("list") > listed,
            "a new loop looked at the tasks"
        );
        listed = h.fake.count("list");
        let st = h.state("i1");
        assert!(st.running.is_some(), "the task is followed");
        assert_eq!(
            (st.tasks_adopted, st.tasks_created),
            (1, 0),
            "after reload {n}"
        );
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_result_without_a_readable_end_time_still_has_a_last_success_time() {
    for odd in ["NaN", "-1", "", "9999-99-99T99:99:99Z"] {
        let mut h = Harness::new(30.0);
        h.fake.with(|s| s.odd_dates = Some(odd));
        h.fake
            .add_task("i1", Analysis::Hotkey, T0 - 100.0, 20.0, ScanType::Auto);
        h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
        advance(1).await;
        let r = h.state("i1").result.expect("published");
        assert_eq!(r.task_id, "task-1");
        // The time it was seen: exported, so `time() - last_success` alerts keep working.
        let f = r
            .finished_at
            .unwrap_or_else(|| panic!("{odd:?}: no last success time"));
        assert!((T0..=T0 + 1.001).contains(&f), "{odd:?}: {f}");

        // The loop goes on creating and publishing its own tasks.
        advance(700).await;
        let r = h.state("i1").result.expect("published");
        assert_eq!(
            (h.fake.count("create"), r.task_id.as_str()),
            (1, "task-2"),
            "{odd:?}"
        );
        let f = r.finished_at.expect("dated");
        assert!(f > T0 + 600.0 && f <= T0 + 701.001, "{odd:?}: {f}");
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_dcs_clock_ahead_of_ours_does_not_stop_task_creation() {
    let mut h = Harness::new(30.0);
    // Every task, the exporter's own included, is dated two hours ahead.
    h.fake.with(|s| s.skew_all = 7200.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    let mut published = Vec::new();
    for cycle in 1..=4u64 {
        advance(600).await;
        let r = h.state("i1").result.expect("published");
        assert_not_after(&r, T0 + (600 * cycle) as f64);
        published.push(r.task_id.clone());
    }
    published.dedup();
    assert!(
        published.len() >= 3 && h.fake.count("create") >= 4,
        "one task per interval: {published:?}, {} creates",
        h.fake.count("create")
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_success_that_counts_keys_but_lists_none_keeps_the_last_keys() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(300).await;
    let good = h.state("i1").result.expect("published");
    assert_eq!(good.keys.len(), 2);

    // The next task (created at ~750 s, done at ~780 s) is answered hollow at its poll; the
    // retry comes 2.5–5 s later.
    h.fake.with(|s| s.hollow_shows = 1);
    advance(482).await;
    let st = h.state("i1");
    assert_eq!(st.failures.get(&FailureReason::ApiError), Some(&1));
    assert_eq!(
        st.result.as_deref(),
        Some(&*good),
        "the last good keys stay"
    );
    assert!(st
        .last_error
        .unwrap()
        .message
        .contains("succeeded with num 5 but lists no keys"));

    // The task itself did succeed: the retry lists it and publishes its keys.
    advance(10).await;
    let r = h.state("i1").result.unwrap();
    assert_ne!(r.task_id, good.task_id);
    assert_eq!(r.keys.len(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn observe_mode_follows_a_dcs_clock_far_ahead_without_going_back() {
    let mut h = Harness::new(30.0);
    // DCS' clock runs six hours ahead: every record is dated in the future.
    h.fake.with(|s| s.skew_all = 6.0 * 3600.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 900.0, 20.0, ScanType::Auto);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 500.0, 20.0, ScanType::Auto);
    h.start(vec![instance("i1", settings(Mode::Observe, 60, 30))]);
    advance(1).await;
    let r = h.state("i1").result.expect("published");
    assert_eq!(r.task_id, "task-2", "the newest by DCS' own dates");
    assert_not_after(&r, T0 + 1.0);

    // A new auto-scan result appears: it succeeded since the last listing, so it is newer,
    // whatever DCS' dates say; the older records are not published again.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 + 10.0, 20.0, ScanType::Auto);
    advance(120).await;
    let st = h.state("i1");
    let r = st.result.expect("published");
    assert_eq!(r.task_id, "task-3");
    assert_not_after(&r, T0 + 121.0);
    advance(600).await;
    assert_eq!(h.state("i1").result.unwrap().task_id, "task-3");
    assert_eq!(h.state("i1").tasks_adopted, 2);
    h.stop().await;
}
