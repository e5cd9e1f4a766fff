//! Scheduler tests on tokio's paused clock against an in-memory fake of the DCS API.
//!
//! This file holds the fakes and the harness; the tests are grouped by what they check:
//! `cycles` (creating, polling, adopting), `failures`, `dates` (DCS clocks ahead of ours),
//! `reload` (applying a new plan, start-up spread), `unsupported` and `offline` (key families
//! from DCS backups, with a fake of their own). A native target is the
//! same fake behind the seam's own implementation ([`FakeNative`]), as `native::NativeTarget`
//! implements it.

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

mod cycles;
mod dates;
mod failures;
mod offline;
mod reload;
mod unsupported;

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
    /// When each of `calls` came (Unix seconds).
    call_times: Vec<f64>,
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
        let now = self.clock.now_unix();
        self.with(|s| {
            s.calls.push(op);
            s.call_times.push(now);
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

/// A native target as the scheduler sees it: the fake's tasks behind the seam's own
/// implementation, which re-checks an unsupported analysis every interval (the check is cheap)
/// and stops its own tasks when a loop stops.
struct FakeNative {
    dcs: Arc<FakeDcs>,
    /// Every `stop_tasks` call.
    stopped: Mutex<Vec<LoopId>>,
}

impl AnalysisSource for FakeNative {
    type Error = dcs::Error;

    async fn list_tasks(&self, id: &str, a: Analysis, q: &TaskListQuery) -> dcs::Result<TaskList> {
        DcsApi::list_tasks(&*self.dcs, id, a, q).await
    }

    async fn create_task(&self, id: &str, a: Analysis) -> dcs::Result<TaskRecord> {
        DcsApi::create_task(&*self.dcs, id, a).await
    }

    async fn show_task(&self, id: &str, a: Analysis, task: &str) -> dcs::Result<TaskRecord> {
        DcsApi::show_task(&*self.dcs, id, a, task).await
    }

    fn unsupported_recheck(&self, interval: Duration) -> Duration {
        interval
    }

    fn stop_tasks(&self, instance_id: &str, analysis: Analysis) {
        self.stopped
            .lock()
            .unwrap()
            .push((instance_id.to_owned(), analysis));
    }
}

struct Harness {
    fake: Arc<FakeDcs>,
    native: Arc<FakeNative>,
    store: Arc<Store>,
    sched: Scheduler<FakeDcs, FakeNative>,
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
            native: Arc::new(FakeNative {
                dcs: fake.clone(),
                stopped: Mutex::new(Vec::new()),
            }),
            fake,
            store,
            sched,
            cancel,
            supervisor,
        }
    }

    /// Applies a plan of DCS instances (a start, or a reload).
    fn start(&mut self, instances: Vec<InstanceConfig>) -> Changes {
        self.apply(instances, Vec::new())
    }

    /// Applies a plan of native targets.
    fn start_native(&mut self, targets: Vec<InstanceConfig>) -> Changes {
        self.apply(Vec::new(), targets)
    }

    /// Applies a plan of DCS instances and native targets (all of them behind
    /// [`Harness::native`]).
    fn apply(&mut self, instances: Vec<InstanceConfig>, targets: Vec<InstanceConfig>) -> Changes {
        let clouds = vec![CloudPlan {
            name: "c".into(),
            client: self.fake.clone(),
            instances,
            known_details: HashMap::new(),
        }];
        let native = targets
            .into_iter()
            .map(|instance| NativePlan {
                source: self.native.clone(),
                instance,
                extra: Vec::new(),
            })
            .collect();
        self.sched.apply_plan(Plan { clouds, native })
    }

    /// When the calls named `op` came (Unix seconds).
    fn times(&self, op: &str) -> Vec<f64> {
        self.fake.with(|s| {
            s.calls
                .iter()
                .zip(&s.call_times)
                .filter(|(c, _)| **c == op)
                .map(|(_, t)| *t)
                .collect()
        })
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

/// The log lines written on this thread while it lives (a paused-clock test runs every loop on
/// its own thread), without colours.
struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

/// Where [`Logs`] writes.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide subscriber once [`Logs`] are captured: it takes no event, but says each
/// log statement may interest someone. Without it, while one subscriber is registered,
/// `tracing` asks only the default of the thread that reaches a statement first: reached first
/// by another test's thread (which has none), the statement is cached as "nobody listens",
/// and [`Logs`] would never see it.
struct Undecided;

impl tracing::Subscriber for Undecided {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::OFF)
    }

    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

impl Logs {
    fn capture() -> Logs {
        static UNDECIDED: std::sync::Once = std::sync::Once::new();
        UNDECIDED.call_once(|| {
            // Nothing else in the library's tests sets one; if something did, its own
            // subscriber decides, and registering this one fails harmlessly.
            let _ = tracing::subscriber::set_global_default(Undecided);
        });
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        Logs {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines that contain `text`.
    fn lines(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.buf.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

/// The value of `field=` in a log line (up to the next space).
fn field<'a>(line: &'a str, field: &str) -> &'a str {
    let at = line
        .find(&format!(" {field}="))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    let rest = &line[at + field.len() + 2..];
    rest.split(' ').next().unwrap_or("")
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
        let calls = limiter.clone();
        info_loop(
            client,
            store,
            limiter,
            calls,
            "id".into(),
            true,
            None,
            cancel,
        )
    });
    assert!(info <= 1024, "instance details loop future: {info} bytes");
}
