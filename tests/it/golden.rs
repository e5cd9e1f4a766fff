//! The golden `/metrics` example: `tests/golden/demo.prom` is the exact body the exporter serves
//! for a fixed state, compared byte for byte, so any change to the exposition (a family, a label,
//! a HELP text, the order of series, number formatting) shows up as a diff of that file.
//!
//! The state is deterministic: the simulator's `--demo` instances with their fixed seed on a
//! manual clock, one task per instance and analysis created and read through the real client
//! (results, an unsupported analysis), then a failed task and a task left running; the exposition
//! without process metrics and with fixed build info; fixed API request observations (the
//! client's real latencies are not recorded) and fixed fleet gauges; key families from one
//! offline key analysis per instance (refused on the single-node one, which has no backup),
//! taken through the scheduler's own steps. Every family the exporter
//! exposes today is in the file, except `process_*` and
//! `dcs_discovery_last_success_timestamp_seconds`, which read the system clock.
//!
//! The file is not trusted blindly: the test checks its results against the simulator's ground
//! truth (finish times, key counts, every hot key's frequency, the keyspace totals of every key
//! family result) and runs `promtool check metrics`
//! on it (here when promtool is installed; CI requires it and also checks the file in `.ci/run`).
//!
//! After an intended change, regenerate the file and review its diff:
//! `UPDATE_GOLDEN=1 cargo test --locked golden`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::{
    expected_key_label, finished, newest_success, parse_exposition, promtool_check, start_sim,
    Metrics,
};
use dcs_key_exporter::config::{Config, Mode};
use dcs_key_exporter::dcs::{timestamp, Analysis, DcsApi, DcsClient, Operation, TaskStatus};
use dcs_key_exporter::demo;
use dcs_key_exporter::fleet::metrics::FleetMetrics;
use dcs_key_exporter::fleet::Shard;
use dcs_key_exporter::metrics::exposition::{BuildInfo, Exposition};
use dcs_key_exporter::metrics::render::RenderOptions;
use dcs_key_exporter::metrics::store::{
    AnalysisSpec, FailureReason, InstanceSpec, RunningTask, Store, TaskOrigin,
};
use dcs_key_exporter::scheduler::{offline, SchedulerMetrics};
use dcs_key_exporter::server::{self, ServerState};
use dcs_key_exporter::simulator::{Faults, SimClock, SimConfig, Simulator};

/// The golden file, relative to the crate root.
const GOLDEN: &str = "tests/golden/demo.prom";
/// Set to regenerate [`GOLDEN`] instead of comparing with it.
const UPDATE: &str = "UPDATE_GOLDEN";
/// The simulator's clock when the tasks are created.
const T0: OffsetDateTime = datetime!(2024-03-01 12:00:00 UTC);
/// How far the clock moves between creating the tasks and reading them: longer than any task of
/// the demo preset takes.
const LATER: Duration = Duration::from_secs(3600);
/// The latency recorded for every API request.
const LATENCY: f64 = 0.05;

/// The build info of the golden exposition: independent of the crate version and the revision.
const BUILD: BuildInfo = BuildInfo {
    version: "0.0.0-golden",
    revision: "golden",
};

/// Fills `store` (and the API metrics) the way the scheduler would for one round of analyses of
/// every demo instance, through the client against the simulator, then a failed task on the
/// last instance and a task left running on the first.
async fn one_round(
    store: &Store,
    exposition: &Exposition,
    client: &DcsClient,
    sim: &Simulator,
    ids: &[String],
) {
    let api = exposition.api_metrics();
    let t0 = T0.unix_timestamp() as f64;
    let mut created = Vec::new();
    for id in ids {
        let info = client.show_instance(id).await.expect("ShowInstance");
        api.observe("ShowInstance", Some(200), LATENCY);
        store.set_instance_info(id, info);
        for a in Analysis::ALL {
            let op = a.operation(Operation::CreateTask);
            match client.create_task(id, a).await {
                Ok(task) => {
                    api.observe(op, Some(200), LATENCY);
                    store.count_task(id, a, &task.id, TaskOrigin::Created);
                    created.push((id.clone(), a, task.id));
                }
                Err(e) => {
                    assert!(e.is_unsupported(), "{id} {a}: {e:#}");
                    api.observe(op, Some(400), LATENCY);
                    store.record_failure(id, a, FailureReason::Unsupported, format!("{e:#}"), t0);
                    store.set_supported(id, a, false);
                }
            }
        }
    }
    // Key families: one offline key analysis per instance (of its first shard due), through
    // the scheduler's own steps, as the analysis loop takes them.
    let mut families = Vec::new();
    for id in ids {
        let mut topology = offline::Topology::default();
        let op = Analysis::Keyfamily.operation(Operation::CreateTask);
        let created = match offline::create(
            client,
            id,
            true,
            &BTreeMap::new(),
            t0,
            t0,
            &mut topology,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                // A single-node instance has no backup to analyse: DCS refuses the request.
                api.observe(op, Some(400), LATENCY);
                let reason = FailureReason::from_error(&e);
                store.record_failure(id, Analysis::Keyfamily, reason, format!("{e:#}"), t0);
                continue;
            }
        };
        api.observe(op, Some(200), LATENCY);
        let offline::Created::Task { record, shard } = created else {
            panic!("{id}: nothing to analyse");
        };
        store.count_task(id, Analysis::Keyfamily, &record.id, TaskOrigin::Created);
        families.push((id.clone(), record.id, shard, topology));
    }
    sim.clock().advance(LATER);
    let t1 = t0 + LATER.as_secs_f64();
    for (id, task_id, shard, topology) in &families {
        let (task, details) = offline::show(client, id, task_id)
            .await
            .expect("ShowOfflineKeyAnalysisTask");
        api.observe(
            Analysis::Keyfamily.operation(Operation::ShowTask),
            Some(200),
            LATENCY,
        );
        assert_eq!(task.status, TaskStatus::Success, "{id} {task_id}");
        let details = details.expect("a successful task has a result");
        assert_eq!(topology.shard_of(&details), *shard, "{id}");
        let finished = task.finished_at.as_deref().and_then(timestamp::parse);
        let fams = dcs_key_exporter::metrics::families::from_offline(&details, shard, finished);
        assert!(store.publish_families(id, Analysis::Keyfamily, &task, shard.clone(), fams));
    }
    for (id, a, task_id) in &created {
        let op = a.operation(Operation::ShowTask);
        let task = client.show_task(id, *a, task_id).await.expect("show task");
        api.observe(op, Some(200), LATENCY);
        match task.status {
            TaskStatus::Success => assert!(store.publish(id, *a, &task)),
            TaskStatus::Failed => {
                store.record_failure(id, *a, FailureReason::TaskFailed, "task failed".into(), t1)
            }
            other => panic!("{id} {a} {task_id} still {other:?} after {LATER:?}"),
        }
    }
    // The next hot key task of the last instance fails; its last result stays.
    let flaky = ids.last().expect("instances");
    sim.set_faults(
        Some(flaky),
        Faults {
            fail_tasks: 1.0,
            ..Faults::default()
        },
    );
    let a = Analysis::Hotkey;
    let task = client.create_task(flaky, a).await.expect("create");
    api.observe(a.operation(Operation::CreateTask), Some(200), LATENCY);
    store.count_task(flaky, a, &task.id, TaskOrigin::Created);
    sim.clock().advance(LATER);
    let t2 = t1 + LATER.as_secs_f64();
    let task = client.show_task(flaky, a, &task.id).await.expect("show");
    api.observe(a.operation(Operation::ShowTask), Some(200), LATENCY);
    assert_eq!(task.status, TaskStatus::Failed);
    store.record_failure(
        flaky,
        a,
        FailureReason::TaskFailed,
        "task failed".into(),
        t2,
    );
    // The next round has begun on the first instance.
    let (id, a, _) = &created[0];
    let next = client.create_task(id, *a).await.expect("the next task");
    api.observe(a.operation(Operation::CreateTask), Some(200), LATENCY);
    store.count_task(id, *a, &next.id, TaskOrigin::Created);
    store.set_running(
        id,
        *a,
        Some(RunningTask {
            id: next.id,
            status: "waiting".into(),
            since: t2,
        }),
    );
}

/// The instances and analyses of `config`, as the scheduler configures the store.
fn specs(config: &Config) -> Vec<InstanceSpec> {
    let cloud = &config.clouds[0];
    cloud
        .instances
        .iter()
        .map(|i| InstanceSpec {
            id: i.id.clone(),
            name: i.name.clone().unwrap_or_else(|| i.id.clone()),
            lfu_log_factor: i.lfu_log_factor,
            native: false,
            analyses: Analysis::EVERY
                .into_iter()
                .map(|a| (a, *i.analysis(a)))
                .filter(|(_, s)| s.mode != Mode::Off)
                .map(|(a, s)| AnalysisSpec {
                    analysis: a,
                    top_n: s.top_n,
                    mode: s.mode.as_str(),
                    interval: s.interval,
                })
                .collect(),
        })
        .collect()
}

/// Serves `/metrics` (and the other endpoints) from `store` and `exposition` on a loopback
/// port, the way the exporter does; returns the address and the token that stops it.
async fn serve(
    store: Arc<Store>,
    exposition: Arc<Exposition>,
) -> (std::net::SocketAddr, CancellationToken) {
    let (_ready, ready) = watch::channel(true);
    let state = Arc::new(ServerState {
        exposition,
        store,
        telemetry_path: "/metrics".into(),
        ready,
        reload: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(listener, state, shutdown.clone()));
    (addr, shutdown)
}

#[tokio::test]
async fn the_demo_exposition_matches_the_golden_file() {
    let sim_config = SimConfig {
        clock: SimClock::manual(T0),
        ..SimConfig::demo()
    };
    let sim = start_sim(sim_config.clone()).await;
    let mut config = demo::config_for(&sim.sim, &sim_config, sim.url.clone());
    demo::enable_key_families(&mut config);
    let client = DcsClient::new(config.clouds[0].client.clone(), None).expect("client");
    let ids: Vec<String> = config.clouds[0]
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();

    let store = Arc::new(Store::new());
    store.configure(&specs(&config));
    let exposition = Arc::new(
        Exposition::reproducible(store.clone(), RenderOptions::default(), BUILD)
            .expect("exposition"),
    );
    let (registry, namespace) = exposition.registry();
    let fleet = FleetMetrics::register(registry, namespace, Shard::new(1, 3).expect("shard"))
        .expect("fleet metrics");
    fleet.set_shard_instances(ids.len());
    fleet.discovery_failed("demo");
    fleet.set_discovered("demo", ids.len());
    SchedulerMetrics::register(registry, namespace).expect("scheduler metrics");

    one_round(&store, &exposition, &client, &sim.sim, &ids).await;

    let (addr, shutdown) = serve(store, exposition).await;
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    shutdown.cancel();

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os(UPDATE).is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
        std::fs::write(&path, &body).expect("write the golden file");
        eprintln!("wrote {}", path.display());
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with {UPDATE}=1", path.display()));
    promtool_check(&golden);
    agrees_with_the_simulator(&golden, &sim.sim, &ids);
    if let Some((line, want, got)) = first_difference(&golden, &body) {
        panic!(
            "/metrics differs from {GOLDEN} at line {line}:\n  golden: {want:?}\n  served: {got:?}\n\
             if the change is intended, run `{UPDATE}=1 cargo test --locked golden` and review the diff"
        );
    }
}

/// Checks the golden exposition against the simulator's ground truth, so that a regenerated file
/// cannot silently carry wrong values: every analysis the simulator finished successfully is
/// shown with its finish time and key count, and every hot key with its frequency.
fn agrees_with_the_simulator(golden: &str, sim: &Simulator, ids: &[String]) {
    let m = Metrics(parse_exposition(golden));
    let mut published = 0;
    for id in ids {
        for a in Analysis::ALL {
            let labels = [("instance_id", id.as_str()), ("analysis", a.as_str())];
            let shown = m.get("dcs_analysis_last_success_timestamp_seconds", &labels);
            let Some(task) = newest_success(sim, id, a) else {
                assert_eq!(shown, None, "{id} {a}: no success in the simulator");
                continue;
            };
            published += 1;
            assert_eq!(shown, Some(finished(&task)), "{id} {a}");
            let keys = task.keys.as_deref().unwrap_or_default();
            let num = task.num.map_or(keys.len() as f64, |n| n as f64);
            assert_eq!(m.get("dcs_analysis_keys", &labels), Some(num), "{id} {a}");
            if a == Analysis::Hotkey {
                let freqs = m.family("dcs_hotkey_frequency");
                let shown: Vec<_> = freqs
                    .iter()
                    .filter(|s| s.labels["instance_id"] == *id)
                    .collect();
                assert_eq!(shown.len(), keys.len().min(20), "{id}: top 20 hot keys");
                for s in shown {
                    let k = keys
                        .iter()
                        .find(|k| expected_key_label(&k.name) == s.labels["key"])
                        .unwrap_or_else(|| panic!("{id}: {:?} is not a hot key", s.labels["key"]));
                    assert_eq!(k.freq.map(|f| f as f64), Some(s.value), "{id} {}", k.name);
                }
            }
        }
    }
    // Key families: the keyspace totals of each analysed shard are the simulator's keys of
    // that shard as its backup held them.
    let mut analysed = 0;
    for id in ids {
        let Some(task) = sim.offline_tasks(id).into_iter().next() else {
            continue;
        };
        analysed += 1;
        let mut want: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for k in sim.offline_keys(id, task.group, task.backup_at) {
            let e = want.entry(k.key_type.to_string()).or_default();
            e.0 += 1.0;
            e.1 += k.bytes as f64;
        }
        assert!(!want.is_empty(), "{id}: an empty keyspace proves nothing");
        for (key_type, (keys, bytes)) in want {
            let labels = [
                ("instance_id", id.as_str()),
                ("key_type", key_type.as_str()),
            ];
            assert_eq!(
                m.get("dcs_keyspace_keys", &labels),
                Some(keys),
                "{id} {key_type}"
            );
            assert_eq!(
                m.get("dcs_keyspace_memory_bytes", &labels),
                Some(bytes),
                "{id} {key_type}"
            );
        }
    }
    assert!(analysed >= 3, "only {analysed} key family results");
    // The demo preset has supported and unsupported analyses, and a flaky instance.
    assert!(published >= 6, "only {published} results published");
    assert!(m.sum("dcs_analysis_failures_total", "reason", "unsupported") >= 1.0);
    assert!(m.sum("dcs_analysis_failures_total", "reason", "task_failed") >= 1.0);
}

/// The first line (1-based) where `want` and `got` differ, with both versions of it.
fn first_difference(want: &str, got: &str) -> Option<(usize, String, String)> {
    if want == got {
        return None;
    }
    let mut w = want.split('\n');
    let mut g = got.split('\n');
    for line in 1.. {
        match (w.next(), g.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                let show = |l: Option<&str>| l.map_or("<end of file>".to_owned(), str::to_owned);
                return Some((line, show(a), show(b)));
            }
        }
    }
    unreachable!()
}
