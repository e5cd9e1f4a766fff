//! An in-process simulator of the Huawei Cloud DCS cache-analysis API, for `--demo`, the
//! `simulate` command and tests.
//!
//! It serves the documented endpoints (`docs/dcs-api.md` §2 in the repository) over hyper with the
//! documented paths, JSON shapes (the models of [`crate::dcs::model`]), status codes and error
//! bodies, and verifies AK/SK signatures the way the API gateway does (only the headers named in
//! `SignedHeaders`, a 15-minute date window). It can also act as IAM (`POST /v3/auth/tokens`) and
//! accept the tokens it issued.
//!
//! # Layout
//! - [`clock`]: the injectable simulated clock (real, tokio-driven or manual).
//! - [`keyspace`]: the synthetic keyspace per instance and the hot key / big key results.
//! - [`offline`]: backups, nodes and the offline key analysis (key families) of a backup.
//! - `state`: instances, task lifecycles computed lazily from timestamps, autoscan schedules.
//! - `auth`: AK/SK signature verification and IAM tokens.
//! - `http`: the hyper server and the handling of one request: the request faults (latency,
//!   throttling, errors), the simulated IAM, authentication and each operation.
//! - `routes`: method and path parsed into the operation they name; query and paging helpers.
//! - `reply`: answers, the DCS and gateway error bodies, and the response body type.
//! - `faults`: the body faults (malformed, truncated, huge) applied to an answer.
//! - `views`: the ListInstances and ShowInstance JSON of simulated instances.
//! - `presets`: the instance sets of [`SimConfig::demo`] and [`SimConfig::generated`].
//!
//! # Behaviour where the documentation is silent (choices, not facts)
//! - A second hot key task while one is waiting or running is refused like big key: 400 DCS.4918.
//! - Deleting an unknown task: 400 DCS.4941 (hot) / DCS.4942 (big); deleting a task that is still
//!   waiting or running: 400 DCS.4957.
//! - A path project id other than the configured one: 401 DCS.1004 when the credentials name a
//!   project (`X-Project-Id` header, or an IAM token), else 403 DCS.2003.
//! - Creating a task on an instance whose status is not `RUNNING`: 400 DCS.4049.
//! - Offline key analysis: a second one while one is active, or deleting an active one: 400
//!   DCS.4231; an unknown task: 400 DCS.4232; an unknown node or a backup that is not listed as
//!   `succeed`: 400 DCS.4800 naming `node_id` / `backup_id` (see [`offline`]).
//! - Autoscan skips a scheduled run while a task of the same kind is active.
//! - Faults: the effective faults of a request are the global ones combined with those of the
//!   instance in its path (rates and durations: the larger; switches: either).

pub mod clock;
pub mod keyspace;
pub mod offline;

mod auth;
mod faults;
mod http;
mod presets;
mod refusal;
mod reply;
mod routes;
mod state;
mod views;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use clock::SimClock;
pub use state::MAX_RECORDS;

use crate::dcs::model::{Analysis, KeyRecord, ScanType, TaskRecord, TaskStatus};
use crate::secret::Secret;
use state::InstanceState;

/// Default access key of the simulator (documented in README, "Command line").
pub const DEFAULT_ACCESS_KEY: &str = "SIMULATORACCESSKEY00";
/// Default secret key of the simulator (documented in README, "Command line").
pub const DEFAULT_SECRET_KEY: &str = "simulator-secret-key";
/// Default project id of the simulator (documented in README, "Command line").
pub const DEFAULT_PROJECT_ID: &str = "0123456789abcdef0123456789abcdef";

/// Everything a simulator needs: credentials, instances, time scale and clock.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub access_key: String,
    pub secret_key: Secret,
    pub project_id: String,
    /// Seeds keyspaces, task ids, durations and fault draws: same seed, same answers.
    pub seed: u64,
    pub instances: Vec<SimInstance>,
    /// 1.0 = realistic task durations and drift periods; the demo uses e.g. 0.05.
    pub time_scale: f64,
    /// When set, `POST /v3/auth/tokens` issues tokens accepted as `X-Auth-Token`.
    pub iam: Option<SimIam>,
    /// The simulated clock (task lifecycles, schedules, drift, token expiry).
    pub clock: SimClock,
}

/// The one IAM user the simulator knows.
#[derive(Clone, Debug)]
pub struct SimIam {
    pub user: String,
    pub password: Secret,
    /// The account (domain) name.
    pub domain: String,
    /// The project name a token may be scoped to (a region name, e.g. `cn-north-4`); the
    /// project id ([`SimConfig::project_id`]) is accepted too.
    pub project_name: String,
    pub token_lifetime: Duration,
}

impl SimIam {
    /// `simulator-user` / `simulator-password` in domain `simulator-domain`, project
    /// `cn-north-4`, tokens valid 24 h.
    pub fn example() -> Self {
        SimIam {
            user: "simulator-user".into(),
            password: Secret::new("simulator-password"),
            domain: "simulator-domain".into(),
            project_name: "cn-north-4".into(),
            token_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// One simulated DCS instance.
#[derive(Clone, Debug)]
pub struct SimInstance {
    pub id: String,
    pub name: String,
    /// `Redis` (or `Memcached`: listed, but not analysable).
    pub engine: String,
    /// `3.0`, `4.0`, `5.0`, `6.0`, `7.0`.
    pub engine_version: String,
    /// `single`, `ha` or `cluster`.
    pub cache_mode: String,
    /// Shards of a cluster (1 otherwise).
    pub shards: u32,
    /// Hot key analysis needs `allkeys-lfu` or `volatile-lfu`.
    pub maxmemory_policy: String,
    pub key_count: u64,
    pub spec_code: String,
    /// `RUNNING`, or another documented status (tasks are then refused with DCS.4049).
    pub status: String,
    pub tags: Vec<(String, String)>,
    pub faults: Faults,
    /// Capacity in MB (reported as `capacity` GB and `capacity_minor`).
    pub capacity_mb: u64,
    /// Redis `lfu-log-factor` used to derive `freq`.
    pub lfu_log_factor: u32,
    pub created_at: OffsetDateTime,
}

impl SimInstance {
    /// A running Redis 6.0 master/standby instance with 100 000 keys and `allkeys-lfu`.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        SimInstance {
            id: id.into(),
            name: name.into(),
            engine: "Redis".into(),
            engine_version: "6.0".into(),
            cache_mode: "ha".into(),
            shards: 1,
            maxmemory_policy: "allkeys-lfu".into(),
            key_count: 100_000,
            spec_code: "redis.ha.xu1.large.r2.8".into(),
            status: "RUNNING".into(),
            tags: Vec::new(),
            faults: Faults::default(),
            capacity_mb: 8192,
            lfu_log_factor: 10,
            created_at: time::macros::datetime!(2024-01-15 08:30:00 UTC),
        }
    }
}

/// Faults injected into requests (per instance or global, see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability (0..1) that a request fails with 500 DCS.5000.
    pub error_rate: f64,
    /// Delay before every answer.
    pub latency: Duration,
    /// Tasks created while set never leave `running`.
    pub stuck_tasks: bool,
    /// Probability (0..1) that a task created while set ends `failed`.
    pub fail_tasks: f64,
    /// Answer 200 with a body that is not JSON.
    pub malformed_body: bool,
    /// Announce the full Content-Length but send only half the body.
    pub truncated_body: bool,
    /// Probability (0..1) that a request is throttled with 429 APIG.0308.
    pub throttle_rate: f64,
    /// The signature check's clock runs this much ahead, so a correct signature falls outside the
    /// 15-minute window when it exceeds 15 minutes.
    pub clock_skew: Duration,
    /// Pad successful answers to at least this many bytes (a valid JSON object with a `padding`
    /// field), streamed.
    pub huge_body_bytes: Option<usize>,
    /// A create is carried out (the task exists and runs), but its answer is lost on the way
    /// back: the client sees 502 Bad Gateway from the gateway instead.
    pub lose_create_answers: bool,
}

impl Faults {
    /// Combines two fault sets: the larger rate or duration, either switch.
    pub fn combine(&self, other: &Faults) -> Faults {
        Faults {
            error_rate: self.error_rate.max(other.error_rate),
            latency: self.latency.max(other.latency),
            stuck_tasks: self.stuck_tasks || other.stuck_tasks,
            fail_tasks: self.fail_tasks.max(other.fail_tasks),
            malformed_body: self.malformed_body || other.malformed_body,
            truncated_body: self.truncated_body || other.truncated_body,
            throttle_rate: self.throttle_rate.max(other.throttle_rate),
            clock_skew: self.clock_skew.max(other.clock_skew),
            huge_body_bytes: self.huge_body_bytes.max(other.huge_body_bytes),
            lose_create_answers: self.lose_create_answers || other.lose_create_answers,
        }
    }
}

impl SimConfig {
    /// The documented simulator credentials, seed 1, no instances, realistic durations, the
    /// wall clock, no IAM.
    pub fn with_defaults() -> Self {
        SimConfig {
            access_key: DEFAULT_ACCESS_KEY.into(),
            secret_key: Secret::new(DEFAULT_SECRET_KEY),
            project_id: DEFAULT_PROJECT_ID.into(),
            seed: 1,
            instances: Vec::new(),
            time_scale: 1.0,
            iam: None,
            clock: SimClock::real(),
        }
    }

    /// A handful of varied instances with short task durations, for `--demo`.
    pub fn demo() -> Self {
        presets::demo()
    }

    /// `n` generated instances (for `simulate --instances=N` and fleet tests).
    pub fn generated(seed: u64, n: usize) -> Self {
        presets::generated(seed, n)
    }
}

/// Errors of [`run_standalone`]. The I/O error is the source, not part of the message, so an
/// error chain (`{:#}`) says it once.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("simulator server failed")]
    Serve(#[source] std::io::Error),
}

/// The mutable world behind the lock.
struct World {
    instances: Vec<InstanceState>,
    index: HashMap<String, usize>,
    rng: ChaCha8Rng,
    global_faults: Faults,
    tokens: HashMap<String, auth::IssuedToken>,
    op_counts: state::OpCounts,
}

struct Shared {
    access_key: String,
    secret_key: Secret,
    project_id: String,
    iam: Option<SimIam>,
    /// Seeds the keyspaces of instances added at run time.
    seed: u64,
    time_scale: f64,
    clock: SimClock,
    world: Mutex<World>,
    requests: AtomicU64,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl World {
    fn faults_for(&self, instance: Option<usize>) -> Faults {
        match instance {
            Some(i) => self.global_faults.combine(&self.instances[i].faults),
            None => self.global_faults.clone(),
        }
    }

    /// Catches up the autoscan schedule of instance `i`.
    fn touch(&mut self, i: usize, now: OffsetDateTime, scale: f64) {
        let faults = self.faults_for(Some(i));
        let World { instances, rng, .. } = self;
        instances[i].catch_up(now, rng, &faults, scale);
    }
}

/// The DCS API simulator. Cheap to clone; clones share the same world.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("access_key", &self.shared.access_key)
            .field("project_id", &self.shared.project_id)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        let now = config.clock.now();
        let scale = if config.time_scale.is_finite() && config.time_scale >= 0.0 {
            config.time_scale
        } else {
            1.0
        };
        let mut instances = Vec::new();
        let mut index = HashMap::new();
        for inst in config.instances {
            if index.contains_key(&inst.id) {
                continue;
            }
            index.insert(inst.id.clone(), instances.len());
            instances.push(InstanceState::new(inst, config.seed, scale, now));
        }
        let world = World {
            instances,
            index,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5349_4d55_4c41_5445),
            global_faults: Faults::default(),
            tokens: HashMap::new(),
            op_counts: HashMap::new(),
        };
        Simulator {
            shared: Arc::new(Shared {
                access_key: config.access_key,
                secret_key: config.secret_key,
                project_id: config.project_id,
                iam: config.iam,
                seed: config.seed,
                time_scale: scale,
                clock: config.clock,
                world: Mutex::new(world),
                requests: AtomicU64::new(0),
            }),
        }
    }

    /// Serves the API on `listener` until `shutdown` is cancelled, then drains open connections
    /// for at most 5 seconds.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        http::serve(self.shared.clone(), listener, shutdown).await
    }

    /// The simulated clock (advance a manual one to move task lifecycles).
    pub fn clock(&self) -> &SimClock {
        &self.shared.clock
    }

    pub fn access_key(&self) -> &str {
        &self.shared.access_key
    }

    pub fn project_id(&self) -> &str {
        &self.shared.project_id
    }

    /// The simulated instances, in configuration order.
    pub fn instances(&self) -> Vec<SimInstance> {
        self.shared
            .world()
            .instances
            .iter()
            .map(|i| i.info.clone())
            .collect()
    }

    /// Adds an instance at run time (a new purchase); `false` if the id exists already.
    pub fn add_instance(&self, instance: SimInstance) -> bool {
        let now = self.shared.clock.now();
        let mut w = self.shared.world();
        if w.index.contains_key(&instance.id) {
            return false;
        }
        let seed = self.shared.seed;
        let i = w.instances.len();
        w.index.insert(instance.id.clone(), i);
        w.instances.push(InstanceState::new(
            instance,
            seed,
            self.shared.time_scale,
            now,
        ));
        true
    }

    /// Deletes an instance with its records; `false` if unknown. Later requests naming it get
    /// the unknown-instance answer.
    pub fn remove_instance(&self, instance_id: &str) -> bool {
        let mut w = self.shared.world();
        let Some(i) = w.index.remove(instance_id) else {
            return false;
        };
        w.instances.remove(i);
        let World {
            instances, index, ..
        } = &mut *w;
        for (pos, inst) in instances.iter().enumerate().skip(i) {
            index.insert(inst.info.id.clone(), pos);
        }
        true
    }

    /// Changes an instance's description at run time (status, name, tags, engine …); `false`
    /// if unknown. Its keyspace and records stay.
    pub fn update_instance(&self, instance_id: &str, f: impl FnOnce(&mut SimInstance)) -> bool {
        let mut w = self.shared.world();
        let Some(&i) = w.index.get(instance_id) else {
            return false;
        };
        let id = w.instances[i].info.id.clone();
        f(&mut w.instances[i].info);
        // The id is the index key: it cannot change.
        w.instances[i].info.id = id;
        true
    }

    /// Whether hot key analysis is supported on the instance (`false` if unknown).
    pub fn hotkey_supported(&self, instance_id: &str) -> bool {
        let w = self.shared.world();
        w.index
            .get(instance_id)
            .is_some_and(|&i| state::hotkey_supported(&w.instances[i].info))
    }

    /// Replaces the faults of one instance (`Some(id)`) or the global faults (`None`).
    pub fn set_faults(&self, instance_id: Option<&str>, faults: Faults) {
        let mut w = self.shared.world();
        match instance_id {
            None => w.global_faults = faults,
            Some(id) => {
                if let Some(&i) = w.index.get(id) {
                    w.instances[i].faults = faults;
                }
            }
        }
    }

    /// Ends the tasks of an instance stuck by the `stuck_tasks` fault as `failed` now (as an
    /// operator or DCS itself eventually would); returns how many there were.
    pub fn fail_stuck_tasks(&self, instance_id: &str, analysis: Analysis) -> usize {
        if analysis == Analysis::Keyfamily {
            return 0;
        }
        let now = self.shared.clock.now();
        let mut w = self.shared.world();
        match w.index.get(instance_id).copied() {
            Some(i) => w.instances[i].fail_stuck_tasks(analysis, now),
            None => 0,
        }
    }

    /// All stored records of an instance and analysis, newest first, with keys for successful
    /// ones, as seen now (after catching up the autoscan schedule). Scan tasks only: the offline
    /// key analyses are in [`offline_tasks`](Self::offline_tasks).
    pub fn tasks(&self, instance_id: &str, analysis: Analysis) -> Vec<TaskRecord> {
        if analysis == Analysis::Keyfamily {
            return Vec::new();
        }
        let now = self.shared.clock.now();
        let mut w = self.shared.world();
        let Some(&i) = w.index.get(instance_id) else {
            return Vec::new();
        };
        w.touch(i, now, self.shared.time_scale);
        w.instances[i].all_records(analysis, now)
    }

    /// Number of tasks created through the API (`manual`) on an instance.
    pub fn created_count(&self, instance_id: &str, analysis: Analysis) -> usize {
        if analysis == Analysis::Keyfamily {
            return self.offline_created_count(instance_id);
        }
        let w = self.shared.world();
        w.index
            .get(instance_id)
            .map_or(0, |&i| w.instances[i].analysis(analysis).manual_created)
    }

    /// The offline key analyses of an instance, newest first.
    pub fn offline_tasks(&self, instance_id: &str) -> Vec<offline::OfflineTask> {
        let w = self.shared.world();
        w.index.get(instance_id).map_or_else(Vec::new, |&i| {
            w.instances[i].offline.tasks.iter().cloned().collect()
        })
    }

    /// Number of offline key analyses created through the API on an instance.
    pub fn offline_created_count(&self, instance_id: &str) -> usize {
        let w = self.shared.world();
        w.index
            .get(instance_id)
            .map_or(0, |&i| w.instances[i].offline.created)
    }

    /// The nodes of an instance (empty for an unknown one).
    pub fn nodes(&self, instance_id: &str) -> Vec<offline::SimNode> {
        let w = self.shared.world();
        w.index.get(instance_id).map_or_else(Vec::new, |&i| {
            let inst = &w.instances[i];
            offline::nodes(&inst.info, inst.keyspace())
        })
    }

    /// Ground truth of the offline key analysis: every key of group `group` of the instance as
    /// a backup taken at `at` holds it (empty for an unknown instance).
    pub fn offline_keys(
        &self,
        instance_id: &str,
        group: u32,
        at: OffsetDateTime,
    ) -> Vec<keyspace::OfflineKey> {
        let w = self.shared.world();
        w.index.get(instance_id).map_or_else(Vec::new, |&i| {
            let ks = w.instances[i].keyspace();
            ks.offline_keys(ks.shard_address(group).as_deref(), at)
        })
    }

    /// Number of HTTP requests received.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Number of requests routed to an operation, by its SDK name (`ListHotKeyScanTasks`,
    /// `ShowInstance`, `KeystoneCreateUserTokenByPassword`, ...), counted after authentication.
    pub fn operation_count(&self, operation: &str) -> u64 {
        self.shared
            .world()
            .op_counts
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Creates an `auto` task now, as the autoscan schedule would, bypassing the "already running"
    /// check. A hot key task on an instance that does not support it ends `failed`. For an unknown
    /// instance, or the offline key analysis (it has no autoscan), nothing is stored and a
    /// `failed` record with an empty id is returned.
    pub fn run_autoscan_now(&self, instance_id: &str, analysis: Analysis) -> TaskRecord {
        let now = self.shared.clock.now();
        let scale = self.shared.time_scale;
        let mut w = self.shared.world();
        let found = w
            .index
            .get(instance_id)
            .filter(|_| analysis != Analysis::Keyfamily);
        let Some(&i) = found else {
            return TaskRecord {
                id: String::new(),
                instance_id: Some(instance_id.to_owned()),
                status: TaskStatus::Failed,
                scan_type: Some(ScanType::Auto),
                created_at: None,
                started_at: None,
                finished_at: None,
                num: Some(0),
                keys: None,
            };
        };
        w.touch(i, now, scale);
        let faults = w.faults_for(Some(i));
        let World { instances, rng, .. } = &mut *w;
        instances[i].create_auto_now(analysis, now, rng, &faults, scale)
    }

    /// The keys an analysis of this instance finishing at `at` reports (empty for an unknown
    /// instance or an unsupported analysis). A successful task's `keys` equal this for its
    /// `finished_at`.
    pub fn expected_result(
        &self,
        instance_id: &str,
        analysis: Analysis,
        at: OffsetDateTime,
    ) -> Vec<KeyRecord> {
        let w = self.shared.world();
        w.index
            .get(instance_id)
            .map_or_else(Vec::new, |&i| w.instances[i].expected_result(analysis, at))
    }
}

/// Binds `listen` and serves `config` until `shutdown` is cancelled: the `simulate` command.
pub async fn run_standalone(
    listen: SocketAddr,
    config: SimConfig,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(
        address = %local,
        access_key = %config.access_key,
        project_id = %config.project_id,
        instances = config.instances.len(),
        seed = config.seed,
        "DCS API simulator listening"
    );
    let sim = Simulator::new(config);
    sim.serve(listener, shutdown).await.map_err(SimError::Serve)
}

#[cfg(test)]
mod standalone_tests {
    use super::*;

    /// `simulate` on a port in use: the reason is said once (it used to be repeated).
    #[tokio::test]
    async fn a_port_in_use_is_reported_once() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let e = run_standalone(addr, SimConfig::demo(), CancellationToken::new())
            .await
            .expect_err("the port is taken");
        let shown = format!("{:#}", anyhow::Error::new(e));
        assert!(
            shown.starts_with(&format!("cannot listen on {addr}: ")),
            "{shown}"
        );
        let os = shown.rsplit(": ").next().expect("reason");
        assert!(os.contains("in use"), "{shown}");
        assert_eq!(shown.matches(os).count(), 1, "{shown}");
    }
}
