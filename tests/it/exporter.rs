//! End-to-end tests: the DCS simulator and the exporter on 127.0.0.1:0, talking HTTP with real
//! signatures. Every expectation comes from the simulator's own records (its ground truth), never
//! from what the exporter printed.
//!
//! Time: the simulator runs on its real clock with task durations scaled down to fractions of a
//! second, or on a manual clock that a test advances; the tests wait for observable conditions
//! (a readiness poll with a deadline), never for fixed periods.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{
    expected_key_label, newest_success, start_sim, wait_for, Exporter, Metrics, Sim,
};
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config::{AnalysisSettings, Config, Mode, SchedulerSettings};
use dcs_key_exporter::dcs::{timestamp, Analysis, KeyRecord, SizeUnit, TaskRecord};
use dcs_key_exporter::demo;
use dcs_key_exporter::simulator::{Faults, SimClock, SimConfig, SimInstance, Simulator};

/// Longest wait for any condition.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Harness

fn sim_config(instances: Vec<SimInstance>) -> SimConfig {
    SimConfig {
        seed: 7,
        instances,
        time_scale: 0.05,
        ..SimConfig::with_defaults()
    }
}

fn instance(id: &str, name: &str) -> SimInstance {
    SimInstance::new(id, name)
}

/// The exporter config for a simulator: both analyses on every instance with `hot` / `big`.
fn exporter_config(sim: &Sim, hot: AnalysisSettings, big: AnalysisSettings) -> Config {
    let mut config = demo::config_for(&sim.sim, &sim.config, sim.url.clone());
    for inst in &mut config.clouds[0].instances {
        inst.hotkey = hot;
        inst.bigkey = big;
    }
    config.scheduler = SchedulerSettings {
        start_jitter: Duration::from_millis(200),
    };
    config
}

fn settings(mode: Mode, interval_ms: u64, top_n: usize) -> AnalysisSettings {
    AnalysisSettings {
        mode,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_secs(20),
        top_n,
    }
}

const OFF: AnalysisSettings = AnalysisSettings {
    mode: Mode::Off,
    interval: Duration::from_secs(3600),
    timeout: Duration::from_secs(60),
    top_n: 10,
};

async fn start_exporter(config: Config) -> Exporter {
    let opts = RunOptions {
        telemetry_path: "/metrics".into(),
        namespace: "dcs".into(),
        ..RunOptions::default()
    };
    crate::common::start_exporter(config, opts, DEADLINE).await
}

/// Waits until the exporter shows the simulator's newest successful result of an analysis,
/// and returns that record with the scrape that shows it.
async fn published(
    exp: &Exporter,
    sim: &Simulator,
    id: &str,
    a: Analysis,
) -> (TaskRecord, Metrics) {
    wait_for(&format!("{id} {a} published"), DEADLINE, || async {
        let task = newest_success(sim, id, a)?;
        let finished = timestamp::parse(task.finished_at.as_deref()?)?;
        let m = exp.scrape().await;
        let shown = m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &[("instance_id", id), ("analysis", a.as_str())],
        )?;
        ((shown - finished).abs() < 1e-3).then_some((task, m))
    })
    .await
}

/// The keys the exporter must show for a result: hot keys by freq, big keys by size per unit.
fn expected_top(a: Analysis, keys: &[KeyRecord], top_n: usize) -> Vec<KeyRecord> {
    let mut keys = keys.to_vec();
    match a {
        Analysis::Hotkey => {
            keys.sort_by_key(|k| std::cmp::Reverse(k.freq));
            keys.truncate(top_n);
        }
        Analysis::Bigkey => {
            keys.sort_by_key(|k| std::cmp::Reverse(k.size));
            let mut per_unit = BTreeMap::<String, usize>::new();
            keys.retain(|k| {
                let n = per_unit
                    .entry(k.unit.as_ref().unwrap().to_string())
                    .or_default();
                *n += 1;
                *n <= top_n
            });
        }
        Analysis::Keyfamily | Analysis::Hotslot => {
            unreachable!("reports key families or slots, not keys")
        }
    }
    keys
}

fn key_labels(id: &str, name: &str, k: &KeyRecord) -> BTreeMap<String, String> {
    [
        ("instance_id", id.to_owned()),
        ("instance_name", name.to_owned()),
        ("key", expected_key_label(&k.name)),
        (
            "key_type",
            k.key_type
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
        ("db", k.db.map(|d| d.to_string()).unwrap_or_default()),
        ("shard", k.shard.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The per-key series of a family for one instance, as label sets → values.
fn series(m: &Metrics, family: &str, id: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    m.family(family)
        .into_iter()
        .filter(|s| s.labels["instance_id"] == id)
        .map(|s| (s.labels.clone(), s.value))
        .collect()
}

/// `(c−5) + f·(c−5)(c−6)/2` for c ≥ 5, computed here independently of the exporter.
fn estimated(freq: i64, f: u32) -> f64 {
    if freq < 5 {
        return 0.0;
    }
    let c = freq as f64;
    (c - 5.0) + f as f64 * (c - 5.0) * (c - 6.0) / 2.0
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_matches_the_simulator() {
    let mut cluster = instance("c0ffee00-0000-4000-8000-000000000001", "orders-cluster");
    cluster.cache_mode = "cluster".into();
    cluster.shards = 3;
    cluster.spec_code = "redis.cluster.xu1.large.shard.3.24".into();
    let ha = instance("c0ffee00-0000-4000-8000-000000000002", "sessions-ha");
    let sim = start_sim(sim_config(vec![cluster.clone(), ha.clone()])).await;
    let (hot_n, big_n) = (7, 3);
    let exp = start_exporter(exporter_config(
        &sim,
        settings(Mode::Trigger, 3_600_000, hot_n),
        settings(Mode::Trigger, 3_600_000, big_n),
    ))
    .await;

    for inst in [&cluster, &ha] {
        let id = inst.id.as_str();
        let name = inst.name.as_str();
        for a in Analysis::ALL {
            let (task, m) = published(&exp, &sim.sim, id, a).await;
            let keys = task.keys.clone().unwrap();
            assert!(
                keys.len() > hot_n.max(big_n),
                "the simulator reports more than top N"
            );
            let top = expected_top(a, &keys, if a == Analysis::Hotkey { hot_n } else { big_n });
            let al = [
                ("instance_id", id),
                ("instance_name", name),
                ("analysis", a.as_str()),
            ];

            // Per analysis.
            let num = task.num.map_or(keys.len() as f64, |n| n as f64);
            assert_eq!(m.get("dcs_analysis_keys", &al), Some(num));
            let ts = |s: &Option<String>| timestamp::parse(s.as_deref().unwrap()).unwrap();
            let (c, s, f) = (
                ts(&task.created_at),
                ts(&task.started_at),
                ts(&task.finished_at),
            );
            let close = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() < 1e-3;
            assert!(close(m.get("dcs_analysis_duration_seconds", &al), f - s));
            assert!(close(m.get("dcs_analysis_queue_seconds", &al), s - c));
            assert!(close(
                m.get("dcs_analysis_last_success_timestamp_seconds", &al),
                f
            ));
            assert_eq!(m.get("dcs_analysis_consecutive_failures", &al), Some(0.0));
            assert_eq!(m.get("dcs_analysis_supported", &al), Some(1.0));
            for reason in ["task_failed", "timeout", "api_error", "auth", "unsupported"] {
                let l = [al.as_slice(), &[("reason", reason)]].concat();
                assert_eq!(
                    m.get("dcs_analysis_failures_total", &l),
                    Some(0.0),
                    "{reason}"
                );
            }
            let created = [al.as_slice(), &[("origin", "created")]].concat();
            assert_eq!(m.get("dcs_analysis_tasks_total", &created), Some(1.0));
            assert_eq!(sim.sim.created_count(id, a), 1);

            // Per key.
            match a {
                Analysis::Hotkey => {
                    let want: BTreeMap<_, _> = top
                        .iter()
                        .map(|k| (key_labels(id, name, k), k.freq.unwrap() as f64))
                        .collect();
                    assert_eq!(series(&m, "dcs_hotkey_frequency", id), want);
                    let want: BTreeMap<_, _> = top
                        .iter()
                        .map(|k| (key_labels(id, name, k), estimated(k.freq.unwrap(), 10)))
                        .collect();
                    assert_eq!(series(&m, "dcs_hotkey_estimated_accesses", id), want);
                    for (family, unit) in [
                        ("dcs_hotkey_size_bytes", SizeUnit::Byte),
                        ("dcs_hotkey_elements", SizeUnit::Count),
                    ] {
                        let want: BTreeMap<_, _> = top
                            .iter()
                            .filter(|k| k.unit.as_ref() == Some(&unit))
                            .map(|k| (key_labels(id, name, k), k.size.unwrap() as f64))
                            .collect();
                        assert_eq!(series(&m, family, id), want, "{family}");
                    }
                }
                Analysis::Bigkey => {
                    for (family, unit) in [
                        ("dcs_bigkey_size_bytes", SizeUnit::Byte),
                        ("dcs_bigkey_elements", SizeUnit::Count),
                    ] {
                        let want: BTreeMap<_, _> = top
                            .iter()
                            .filter(|k| k.unit.as_ref() == Some(&unit))
                            .map(|k| (key_labels(id, name, k), k.size.unwrap() as f64))
                            .collect();
                        assert!(!want.is_empty(), "the simulator reports {unit} big keys");
                        assert_eq!(series(&m, family, id), want, "{family}");
                    }
                }
                Analysis::Keyfamily | Analysis::Hotslot => {
                    unreachable!("reports key families or slots, not keys")
                }
            }
        }
        // Shards only on the cluster.
        let m = exp.scrape().await;
        let shards: BTreeSet<_> = series(&m, "dcs_hotkey_frequency", id)
            .keys()
            .map(|l| l["shard"].clone())
            .collect();
        if inst.cache_mode == "cluster" {
            assert!(shards.iter().all(|s| s.contains(':')), "{shards:?}");
        } else {
            assert_eq!(shards, BTreeSet::from([String::new()]));
        }
        // Instance info from ShowInstance.
        let info = wait_for("instance info", DEADLINE, || async {
            let m = exp.scrape().await;
            m.family("dcs_instance_info")
                .into_iter()
                .find(|s| s.labels["instance_id"] == id)
                .cloned()
        })
        .await;
        assert_eq!(info.value, 1.0);
        assert_eq!(info.labels["engine_version"], inst.engine_version);
        assert_eq!(info.labels["spec_code"], inst.spec_code);
        assert_eq!(info.labels["status"], "RUNNING");
    }

    // The exporter's own metrics.
    let m = exp.scrape().await;
    let creates = m.get(
        "dcs_api_requests_total",
        &[("operation", "CreateHotkeyScanTask"), ("code", "200")],
    );
    assert_eq!(creates, Some(2.0));
    assert_eq!(
        m.get("dcs_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(m.family("dcs_exporter_build_info")[0].labels["version"] == env!("CARGO_PKG_VERSION"));
    assert!(!m.family("process_resident_memory_bytes").is_empty());
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_that_leaves_the_top_n_disappears_and_observe_mode_creates_nothing() {
    let id = "c0ffee00-0000-4000-8000-000000000010";
    // In the past: the exporter never exports a DCS time ahead of its own clock, and the test
    // moves DCS time 6 h 20 min on.
    let start = time::OffsetDateTime::now_utc() - Duration::from_secs(8 * 3600);
    let config = SimConfig {
        clock: SimClock::manual(start),
        ..sim_config(vec![instance(id, "drifty")])
    };
    let sim = start_sim(config).await;
    // Observe mode: the exporter only ingests what DCS runs by itself.
    let exp = start_exporter(exporter_config(&sim, settings(Mode::Observe, 200, 5), OFF)).await;

    sim.sim.run_autoscan_now(id, Analysis::Hotkey);
    sim.sim.clock().advance(Duration::from_secs(600));
    let (first, m1) = published(&exp, &sim.sim, id, Analysis::Hotkey).await;
    let keys1: BTreeSet<_> = series(&m1, "dcs_hotkey_frequency", id)
        .keys()
        .map(|l| l["key"].clone())
        .collect();
    assert_eq!(keys1.len(), 5);

    // Hours later the hot set has drifted; the next auto-scan reports other keys.
    sim.sim.clock().advance(Duration::from_secs(6 * 3600));
    sim.sim.run_autoscan_now(id, Analysis::Hotkey);
    sim.sim.clock().advance(Duration::from_secs(600));
    let (second, m2) = published(&exp, &sim.sim, id, Analysis::Hotkey).await;
    assert_ne!(first.id, second.id);
    let want: BTreeSet<_> = expected_top(Analysis::Hotkey, second.keys.as_deref().unwrap(), 5)
        .iter()
        .map(|k| expected_key_label(&k.name))
        .collect();
    let keys2: BTreeSet<_> = series(&m2, "dcs_hotkey_frequency", id)
        .keys()
        .map(|l| l["key"].clone())
        .collect();
    assert_eq!(keys2, want);
    let gone: Vec<_> = keys1.difference(&want).collect();
    assert!(
        !gone.is_empty(),
        "the drift must have pushed some key out of the top 5"
    );
    for key in gone {
        assert!(
            !m2.0.iter().any(|s| s.labels.get("key") == Some(key)),
            "{key} left the top N but is still exported"
        );
    }
    let al = [("instance_id", id), ("analysis", "hotkey")];
    assert_eq!(
        m2.get(
            "dcs_analysis_tasks_total",
            &[al.as_slice(), &[("origin", "adopted")]].concat()
        ),
        Some(2.0)
    );
    assert_eq!(
        sim.sim.created_count(id, Analysis::Hotkey),
        0,
        "observe mode never creates"
    );
    assert_eq!(sim.sim.operation_count("CreateHotkeyScanTask"), 0);
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_task_is_adopted_and_restart_creates_no_duplicate() {
    let id = "c0ffee00-0000-4000-8000-000000000020";
    let start = time::OffsetDateTime::now_utc();
    let config = SimConfig {
        clock: SimClock::manual(start),
        ..sim_config(vec![instance(id, "adoptee")])
    };
    let sim = start_sim(config).await;
    // A task DCS is already running when the exporter starts.
    let running = sim.sim.run_autoscan_now(id, Analysis::Bigkey);
    let exp = start_exporter(exporter_config(
        &sim,
        OFF,
        settings(Mode::Trigger, 3_600_000, 5),
    ))
    .await;
    let al = [("instance_id", id), ("analysis", "bigkey")];
    wait_for("adoption", DEADLINE, || async {
        let m = exp.scrape().await;
        let adopted = m.get(
            "dcs_analysis_tasks_total",
            &[al.as_slice(), &[("origin", "adopted")]].concat(),
        );
        (adopted == Some(1.0) && m.get("dcs_analysis_running", &al) == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(
        sim.sim.created_count(id, Analysis::Bigkey),
        0,
        "adopted, not duplicated"
    );

    let wall = || time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let advanced_at = wall();
    sim.sim.clock().advance(Duration::from_secs(3600));
    // DCS may date the task's end ahead of the exporter's clock (the simulated clock stood
    // still, then jumped): then it is exported as the time the exporter saw it, never in the
    // future.
    let (task, m) = wait_for("the adopted task published", DEADLINE, || async {
        let task = newest_success(&sim.sim, id, Analysis::Bigkey)?;
        let m = exp.scrape().await;
        let shown = m.get("dcs_analysis_last_success_timestamp_seconds", &al)?;
        let want = timestamp::parse(task.finished_at.as_deref()?)?;
        let seen_when = want > advanced_at && shown >= advanced_at && shown <= wall();
        ((shown - want).abs() < 1e-3 || seen_when).then_some((task, m))
    })
    .await;
    assert_eq!(task.id, running.id);
    assert_eq!(m.get("dcs_analysis_running", &al), Some(0.0));
    assert_eq!(sim.sim.created_count(id, Analysis::Bigkey), 0);
    exp.stop().await;

    // A restart publishes the newest result before anything else and creates nothing.
    let requests_before = sim.sim.operation_count("CreateBigkeyScanTask");
    let exp = start_exporter(exporter_config(
        &sim,
        OFF,
        settings(Mode::Trigger, 3_600_000, 5),
    ))
    .await;
    let (again, _) = published(&exp, &sim.sim, id, Analysis::Bigkey).await;
    assert_eq!(again.id, running.id);
    assert_eq!(
        sim.sim.operation_count("CreateBigkeyScanTask"),
        requests_before
    );
    assert_eq!(sim.sim.created_count(id, Analysis::Bigkey), 0);
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_instance_stops_being_asked() {
    let id = "c0ffee00-0000-4000-8000-000000000030";
    let mut legacy = instance(id, "legacy");
    legacy.engine_version = "3.0".into();
    let sim = start_sim(sim_config(vec![legacy])).await;
    // Short intervals: without the rule the exporter would ask several times a second.
    let exp = start_exporter(exporter_config(
        &sim,
        settings(Mode::Trigger, 300, 5),
        settings(Mode::Trigger, 300, 5),
    ))
    .await;
    let hl = [("instance_id", id), ("analysis", "hotkey")];
    wait_for("unsupported", DEADLINE, || async {
        let m = exp.scrape().await;
        (m.get("dcs_analysis_supported", &hl) == Some(0.0)).then_some(())
    })
    .await;
    // Let big key analyses (supported) complete a few more cycles: time passes for both.
    let target = sim.sim.created_count(id, Analysis::Bigkey) + 3;
    wait_for("three more big key analyses", DEADLINE, || async {
        (sim.sim.created_count(id, Analysis::Bigkey) >= target).then_some(())
    })
    .await;
    let m = exp.scrape().await;
    assert_eq!(
        sim.sim.operation_count("CreateHotkeyScanTask"),
        1,
        "asked once, then left alone"
    );
    let unsupported = [hl.as_slice(), &[("reason", "unsupported")]].concat();
    assert_eq!(
        m.get("dcs_analysis_failures_total", &unsupported),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "dcs_analysis_supported",
            &[("instance_id", id), ("analysis", "bigkey")]
        ),
        Some(1.0)
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason_and_keep_the_last_result() {
    let ok_id = "c0ffee00-0000-4000-8000-000000000040";
    let err_id = "c0ffee00-0000-4000-8000-000000000041";
    let sim = start_sim(sim_config(vec![
        instance(ok_id, "flaky"),
        instance(err_id, "broken"),
    ]))
    .await;
    sim.sim.set_faults(
        Some(err_id),
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    let exp = start_exporter(exporter_config(&sim, settings(Mode::Trigger, 500, 5), OFF)).await;
    let (good, _) = published(&exp, &sim.sim, ok_id, Analysis::Hotkey).await;

    // From now on every task of the first instance fails.
    sim.sim.set_faults(
        Some(ok_id),
        Faults {
            fail_tasks: 1.0,
            ..Faults::default()
        },
    );
    let label = |id: &'static str, reason: &'static str| {
        [
            ("instance_id", id),
            ("analysis", "hotkey"),
            ("reason", reason),
        ]
    };
    let m = wait_for("task_failed and api_error counted", DEADLINE, || async {
        let m = exp.scrape().await;
        let failed = m.get("dcs_analysis_failures_total", &label(ok_id, "task_failed"))?;
        let api = m.get("dcs_analysis_failures_total", &label(err_id, "api_error"))?;
        (failed >= 1.0 && api >= 1.0).then_some(m)
    })
    .await;
    let al = [("instance_id", ok_id), ("analysis", "hotkey")];
    assert!(m.get("dcs_analysis_consecutive_failures", &al).unwrap() >= 1.0);
    let finished = timestamp::parse(good.finished_at.as_deref().unwrap()).unwrap();
    let shown = m
        .get("dcs_analysis_last_success_timestamp_seconds", &al)
        .unwrap();
    assert!(
        (shown - finished).abs() < 1e-3,
        "the last good result stays"
    );
    assert_eq!(
        series(&m, "dcs_hotkey_frequency", ok_id).len(),
        5,
        "its keys stay exported"
    );
    // 500s were retried by the client and counted per attempt.
    let errors = m
        .family("dcs_api_requests_total")
        .into_iter()
        .filter(|s| s.labels["code"] == "500")
        .map(|s| s.value)
        .sum::<f64>();
    assert!(errors >= 3.0, "each attempt is counted: {errors}");
    assert_eq!(
        m.get("dcs_analysis_failures_total", &label(ok_id, "api_error")),
        Some(0.0)
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_key_counts_as_auth_failure() {
    let id = "c0ffee00-0000-4000-8000-000000000050";
    let sim = start_sim(sim_config(vec![instance(id, "locked")])).await;
    let mut config = exporter_config(&sim, settings(Mode::Trigger, 500, 5), OFF);
    config.clouds[0].client.auth = dcs_key_exporter::dcs::Auth::AkSk {
        access_key: sim.config.access_key.clone(),
        secret_key: "not-the-secret".into(),
        security_token: None,
    };
    let exp = start_exporter(config).await;
    // The request counters are re-encoded at most once a second, so they may show the 401s a
    // scrape after the failure: wait for both.
    let unauthorised = |m: &Metrics| {
        m.family("dcs_api_requests_total")
            .into_iter()
            .filter(|s| s.labels["code"] == "401")
            .count()
    };
    let m = wait_for("auth failure and its 401 answers", DEADLINE, || async {
        let m = exp.scrape().await;
        let l = [
            ("instance_id", id),
            ("analysis", "hotkey"),
            ("reason", "auth"),
        ];
        (m.get("dcs_analysis_failures_total", &l)? >= 1.0 && unauthorised(&m) > 0).then_some(m)
    })
    .await;
    assert!(unauthorised(&m) > 0);
    let text = exp.text().await;
    assert!(!text.contains("not-the-secret"), "no secret in metrics");
    exp.stop().await;
}
