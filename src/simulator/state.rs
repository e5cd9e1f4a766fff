//! The simulator's mutable world: instances, their analysis records and autoscan schedules.
//!
//! Task lifecycles are decided when a task is created: its start and finish times (growing with
//! the instance's key count, scaled by `time_scale`) and whether it fails. The status shown on each
//! read is computed from those timestamps and the clock, so nothing runs in the background and a
//! manual clock can move a task from `waiting` to `success` instantly. Autoscan schedules are
//! caught up the same way: whenever an instance is touched, every scheduled `HH:MM` (UTC) that
//! passed since the last look creates an `auto` task dated at that time.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::{OffsetDateTime, Time};

use super::keyspace::{Keyspace, KeyspaceParams};
pub use super::refusal::{uuid_from, Refusal};
use super::{Faults, SimInstance};
use crate::dcs::model::{
    Analysis, AutoscanConfig, KeyRecord, ScanType, TaskRecord, TaskStatus, TaskSummary,
};
use crate::dcs::timestamp;

/// Records kept per instance and analysis; the oldest is dropped beyond this.
pub const MAX_RECORDS: usize = 100;
/// Catch-up of missed autoscan runs looks back at most this many days.
const MAX_CATCH_UP_DAYS: i64 = 30;

/// One analysis task with its lifecycle fixed at creation.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub scan_type: ScanType,
    pub created_at: OffsetDateTime,
    pub started_at: OffsetDateTime,
    /// `None`: the task never leaves `running` (the `stuck_tasks` fault).
    pub finished_at: Option<OffsetDateTime>,
    pub fails: bool,
    /// Result, computed on first read after the task succeeded.
    keys: Option<Vec<KeyRecord>>,
}

impl Task {
    pub fn status_at(&self, now: OffsetDateTime) -> TaskStatus {
        if now < self.started_at {
            TaskStatus::Waiting
        } else {
            match self.finished_at {
                Some(f) if now >= f => {
                    if self.fails {
                        TaskStatus::Failed
                    } else {
                        TaskStatus::Success
                    }
                }
                _ => TaskStatus::Running,
            }
        }
    }

    /// Whether the task is waiting or running at `t`.
    pub fn active_at(&self, t: OffsetDateTime) -> bool {
        self.created_at <= t && self.finished_at.is_none_or(|f| t < f)
    }

    fn summary(&self, now: OffsetDateTime) -> TaskSummary {
        let status = self.status_at(now);
        TaskSummary {
            id: self.id.clone(),
            scan_type: Some(self.scan_type.clone()),
            created_at: Some(timestamp::format(self.created_at)),
            started_at: (status != TaskStatus::Waiting).then(|| timestamp::format(self.started_at)),
            finished_at: (!status.is_active())
                .then(|| self.finished_at.map(timestamp::format))
                .flatten(),
            status,
        }
    }
}

/// Autoscan settings of one instance and analysis.
#[derive(Clone, Debug)]
pub struct Autoscan {
    pub enabled: bool,
    /// Sorted, de-duplicated `HH:MM` times (UTC).
    pub schedule_at: Vec<String>,
    pub updated_at: OffsetDateTime,
}

/// Records and settings of one analysis on one instance.
#[derive(Clone, Debug)]
pub struct AnalysisState {
    /// Newest first.
    pub tasks: VecDeque<Task>,
    pub autoscan: Autoscan,
    /// Autoscan runs up to this time have been created.
    pub schedule_checked: OffsetDateTime,
    /// Tasks created through the API.
    pub manual_created: usize,
}

impl AnalysisState {
    fn new(now: OffsetDateTime, created: OffsetDateTime) -> Self {
        AnalysisState {
            tasks: VecDeque::new(),
            autoscan: Autoscan {
                enabled: false,
                schedule_at: Vec::new(),
                updated_at: created,
            },
            schedule_checked: now,
            manual_created: 0,
        }
    }

    pub fn active_task(&self, t: OffsetDateTime) -> Option<&Task> {
        self.tasks.iter().find(|x| x.active_at(t))
    }
}

/// One simulated instance: its description, keyspace and analysis records.
#[derive(Debug)]
pub struct InstanceState {
    pub info: SimInstance,
    /// Generated on first use, so a fleet of thousands of instances starts instantly.
    keyspace: OnceLock<Keyspace>,
    keyspace_params: KeyspaceParams,
    /// Faults set at run time for this instance (replacing `info.faults`).
    pub faults: Faults,
    hot: AnalysisState,
    big: AnalysisState,
    /// Backups, nodes and offline key analyses.
    pub offline: super::offline::OfflineState,
}

/// Whether the instance supports hot key analysis: not Redis 3.x, and an LFU eviction policy.
pub fn hotkey_supported(info: &SimInstance) -> bool {
    let v3 = info.engine_version == "3" || info.engine_version.starts_with("3.");
    let lfu = matches!(
        info.maxmemory_policy.as_str(),
        "allkeys-lfu" | "volatile-lfu"
    );
    !v3 && lfu
}

/// Parses an autoscan time `HH:MM` (24 h, UTC).
pub fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u8 = h.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    Time::from_hms(h, m, 0).ok()
}

fn scaled(d: Duration, scale: f64) -> Duration {
    let s = d.as_secs_f64() * scale;
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(86_400.0 * 365.0))
    } else {
        Duration::ZERO
    }
}

impl InstanceState {
    pub fn new(info: SimInstance, seed: u64, time_scale: f64, now: OffsetDateTime) -> Self {
        let ks_seed = seed.wrapping_add(super::keyspace::stable_hash(&info.id));
        let keyspace_params = KeyspaceParams {
            seed: ks_seed,
            key_count: info.key_count,
            shards: info.shards.max(1),
            cluster: info.cache_mode == "cluster",
            lfu_log_factor: info.lfu_log_factor,
            drift_period: scaled(Duration::from_secs(300), time_scale).max(Duration::from_secs(1)),
            size_period: scaled(Duration::from_secs(3600), time_scale).max(Duration::from_secs(1)),
        };
        let created = info.created_at;
        InstanceState {
            faults: info.faults.clone(),
            info,
            keyspace: OnceLock::new(),
            keyspace_params,
            hot: AnalysisState::new(now, created),
            big: AnalysisState::new(now, created),
            offline: super::offline::OfflineState::new(now, created),
        }
    }

    pub fn keyspace(&self) -> &Keyspace {
        self.keyspace
            .get_or_init(|| Keyspace::generate(self.keyspace_params.clone()))
    }

    pub fn analysis(&self, a: Analysis) -> &AnalysisState {
        match a {
            Analysis::Hotkey => &self.hot,
            Analysis::Bigkey => &self.big,
            Analysis::Keyfamily => unreachable!("offline key analyses live in `self.offline`"),
            Analysis::Hotslot => unreachable!("DCS has no hot slot analysis"),
        }
    }

    fn analysis_mut(&mut self, a: Analysis) -> &mut AnalysisState {
        match a {
            Analysis::Hotkey => &mut self.hot,
            Analysis::Bigkey => &mut self.big,
            Analysis::Keyfamily => unreachable!("offline key analyses live in `self.offline`"),
            Analysis::Hotslot => unreachable!("DCS has no hot slot analysis"),
        }
    }

    /// Ends every task stuck in `running` (the `stuck_tasks` fault) as `failed` at `now`;
    /// returns how many there were.
    pub fn fail_stuck_tasks(&mut self, a: Analysis, now: OffsetDateTime) -> usize {
        let mut n = 0;
        for t in self.analysis_mut(a).tasks.iter_mut() {
            if t.finished_at.is_none() {
                t.finished_at = Some(now.max(t.started_at));
                t.fails = true;
                n += 1;
            }
        }
        n
    }

    /// The result an analysis finishing at `at` reports (empty when unsupported).
    pub fn expected_result(&self, a: Analysis, at: OffsetDateTime) -> Vec<KeyRecord> {
        match a {
            Analysis::Hotkey if !hotkey_supported(&self.info) => Vec::new(),
            Analysis::Hotkey => self.keyspace().hot_keys(at),
            Analysis::Bigkey => self.keyspace().big_keys(at),
            // Reports families, not keys (see `simulator::offline`); DCS has no hot slots.
            Analysis::Keyfamily | Analysis::Hotslot => Vec::new(),
        }
    }

    /// Waiting and running durations of a new task: a few seconds of queueing, then a run that
    /// grows with the key count (about 55 s per million keys for hot keys, 1.5× for big keys).
    fn durations(&self, a: Analysis, rng: &mut ChaCha8Rng, scale: f64) -> (Duration, Duration) {
        let wait = Duration::from_secs_f64(rng.gen_range(1.0..3.0));
        let per_key = match a {
            Analysis::Hotkey => 1.0 / 20_000.0,
            Analysis::Bigkey | Analysis::Keyfamily | Analysis::Hotslot => 1.5 / 20_000.0,
        };
        let run = (5.0 + self.info.key_count as f64 * per_key) * rng.gen_range(0.8..1.2);
        (
            scaled(wait, scale),
            scaled(Duration::from_secs_f64(run.min(86_400.0)), scale),
        )
    }

    /// Adds a task created at `at`, deciding its lifecycle now.
    fn push_task(
        &mut self,
        a: Analysis,
        scan_type: ScanType,
        at: OffsetDateTime,
        rng: &mut ChaCha8Rng,
        faults: &Faults,
        scale: f64,
    ) -> &Task {
        let (wait, run) = self.durations(a, rng, scale);
        let unsupported = a == Analysis::Hotkey && !hotkey_supported(&self.info);
        let fails =
            unsupported || (faults.fail_tasks > 0.0 && rng.gen::<f64>() < faults.fail_tasks);
        let started_at = at + wait;
        let finished_at = (!faults.stuck_tasks).then_some(started_at + run);
        let task = Task {
            id: uuid_from(rng),
            scan_type,
            created_at: at,
            started_at,
            finished_at,
            fails,
            keys: None,
        };
        let st = self.analysis_mut(a);
        st.tasks.push_front(task);
        st.tasks.truncate(MAX_RECORDS);
        &st.tasks[0]
    }

    /// Creates every autoscan run scheduled in `(schedule_checked, now]` and moves the mark.
    pub fn catch_up(
        &mut self,
        now: OffsetDateTime,
        rng: &mut ChaCha8Rng,
        faults: &Faults,
        scale: f64,
    ) {
        for a in Analysis::ALL {
            let st = self.analysis(a);
            let from = st.schedule_checked;
            if !st.autoscan.enabled || st.autoscan.schedule_at.is_empty() || now <= from {
                self.analysis_mut(a).schedule_checked = now.max(from);
                continue;
            }
            let times: Vec<Time> = st
                .autoscan
                .schedule_at
                .iter()
                .filter_map(|s| parse_hhmm(s))
                .collect();
            let first_day = from
                .date()
                .max((now - time::Duration::days(MAX_CATCH_UP_DAYS)).date());
            let mut due = Vec::new();
            let mut day = first_day;
            while day <= now.date() {
                for t in &times {
                    let at = day.with_time(*t).assume_utc();
                    if at > from && at <= now {
                        due.push(at);
                    }
                }
                match day.next_day() {
                    Some(d) => day = d,
                    None => break,
                }
            }
            due.sort();
            for at in due {
                // The schedule skips a run while a task of the same kind is still active.
                if self.analysis(a).active_task(at).is_none() {
                    self.push_task(a, ScanType::Auto, at, rng, faults, scale);
                }
            }
            self.analysis_mut(a).schedule_checked = now;
        }
    }

    /// `Create*ScanTask` through the API.
    pub fn create_manual(
        &mut self,
        a: Analysis,
        now: OffsetDateTime,
        rng: &mut ChaCha8Rng,
        faults: &Faults,
        scale: f64,
    ) -> Result<TaskRecord, Refusal> {
        if a == Analysis::Hotkey && !hotkey_supported(&self.info) {
            return Err(Refusal::HotkeyUnsupported);
        }
        if self.info.status != "RUNNING" {
            return Err(Refusal::InstanceNotRunning);
        }
        if self.analysis(a).active_task(now).is_some() {
            return Err(Refusal::AlreadyRunning);
        }
        self.push_task(a, ScanType::Manual, now, rng, faults, scale);
        self.analysis_mut(a).manual_created += 1;
        Ok(self.record_at(a, 0, now))
    }

    /// Creates an `auto` task now, as the schedule would (without the running check).
    pub fn create_auto_now(
        &mut self,
        a: Analysis,
        now: OffsetDateTime,
        rng: &mut ChaCha8Rng,
        faults: &Faults,
        scale: f64,
    ) -> TaskRecord {
        self.push_task(a, ScanType::Auto, now, rng, faults, scale);
        self.record_at(a, 0, now)
    }

    /// The full record of the task at position `idx` (newest first), as seen at `now`.
    fn record_at(&mut self, a: Analysis, idx: usize, now: OffsetDateTime) -> TaskRecord {
        let status = self.analysis(a).tasks[idx].status_at(now);
        if status == TaskStatus::Success && self.analysis(a).tasks[idx].keys.is_none() {
            let at = self.analysis(a).tasks[idx].finished_at.unwrap_or(now);
            let keys = self.expected_result(a, at);
            self.analysis_mut(a).tasks[idx].keys = Some(keys);
        }
        let id = self.info.id.clone();
        let task = &self.analysis(a).tasks[idx];
        let s = task.summary(now);
        let keys = match status {
            TaskStatus::Success => task.keys.clone(),
            _ => None,
        };
        TaskRecord {
            id: s.id,
            instance_id: Some(id),
            status: s.status,
            scan_type: s.scan_type,
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            num: Some(keys.as_ref().map_or(0, |k| k.len() as i64)),
            keys,
        }
    }

    fn position(&self, a: Analysis, task_id: &str) -> Option<usize> {
        self.analysis(a).tasks.iter().position(|t| t.id == task_id)
    }

    /// `Show*TaskDetails`.
    pub fn show(
        &mut self,
        a: Analysis,
        task_id: &str,
        now: OffsetDateTime,
    ) -> Result<TaskRecord, Refusal> {
        let idx = self.position(a, task_id).ok_or(Refusal::TaskNotFound)?;
        Ok(self.record_at(a, idx, now))
    }

    /// `Delete*ScanTask`: only finished tasks can be deleted.
    pub fn delete(
        &mut self,
        a: Analysis,
        task_id: &str,
        now: OffsetDateTime,
    ) -> Result<TaskRecord, Refusal> {
        let idx = self.position(a, task_id).ok_or(Refusal::TaskNotFound)?;
        if self.analysis(a).tasks[idx].status_at(now).is_active() {
            return Err(Refusal::TaskActive);
        }
        let rec = self.record_at(a, idx, now);
        self.analysis_mut(a).tasks.remove(idx);
        Ok(rec)
    }

    /// `List*ScanTasks`: newest first, filtered, paged; `count` is the number of matching records.
    pub fn list(
        &self,
        a: Analysis,
        status: Option<&TaskStatus>,
        offset: usize,
        limit: usize,
        now: OffsetDateTime,
    ) -> (usize, Vec<TaskSummary>) {
        let matching: Vec<TaskSummary> = self
            .analysis(a)
            .tasks
            .iter()
            .map(|t| t.summary(now))
            .filter(|s| status.is_none_or(|want| &s.status == want))
            .collect();
        let total = matching.len();
        let page = matching.into_iter().skip(offset).take(limit).collect();
        (total, page)
    }

    /// All records with keys, newest first (ground truth for tests).
    pub fn all_records(&mut self, a: Analysis, now: OffsetDateTime) -> Vec<TaskRecord> {
        (0..self.analysis(a).tasks.len())
            .map(|i| self.record_at(a, i, now))
            .collect()
    }

    pub fn autoscan_config(&self, a: Analysis) -> AutoscanConfig {
        let s = &self.analysis(a).autoscan;
        AutoscanConfig {
            instance_id: Some(self.info.id.clone()),
            enable_auto_scan: s.enabled,
            schedule_at: s.schedule_at.clone(),
            updated_at: Some(timestamp::format(s.updated_at)),
        }
    }

    /// `Update*AutoscanConfig`.
    pub fn update_autoscan(
        &mut self,
        a: Analysis,
        enabled: bool,
        schedule_at: &[String],
        now: OffsetDateTime,
    ) -> Result<AutoscanConfig, Refusal> {
        if a == Analysis::Hotkey && !hotkey_supported(&self.info) {
            return Err(Refusal::HotkeyUnsupported);
        }
        let mut times = Vec::with_capacity(schedule_at.len());
        for s in schedule_at {
            let t = parse_hhmm(s.trim()).ok_or(Refusal::Invalid("schedule_at"))?;
            times.push(format!("{:02}:{:02}", t.hour(), t.minute()));
        }
        if enabled && times.is_empty() {
            return Err(Refusal::Invalid("schedule_at"));
        }
        times.sort();
        times.dedup();
        let st = self.analysis_mut(a);
        st.autoscan = Autoscan {
            enabled,
            schedule_at: times,
            updated_at: now,
        };
        st.schedule_checked = now;
        Ok(self.autoscan_config(a))
    }
}

/// Per-operation request counters, keyed by the SDK operation name.
pub type OpCounts = HashMap<&'static str, u64>;
