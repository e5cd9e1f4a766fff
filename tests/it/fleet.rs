//! Fleet tests: discovery, sharding and high availability, with DCS simulators (one per project)
//! and exporters on 127.0.0.1:0 talking HTTP with real signatures. The expected instance sets
//! are computed here from the simulators' own instance lists (their ground truth) with plain
//! code, never from what the exporter printed.
//!
//! Time: the simulators run on their real clock with task durations scaled down; discovery
//! refreshes every few hundred milliseconds; tests wait for observable conditions with a
//! deadline, never for fixed periods.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{start_sim, wait_for, Exporter, Metrics, Sim};

use dcs_key_exporter::app::{self, ConfigSource, RunOptions};
use dcs_key_exporter::config::{
    AnalysisSettings, Config, DiscoveryConfig, InstanceDefaults, Mode, SchedulerSettings,
};
use dcs_key_exporter::dcs::DcsClient;
use dcs_key_exporter::dcs::{timestamp, Analysis, TaskStatus};
use dcs_key_exporter::demo;
use dcs_key_exporter::fleet::discovery::list_all;
use dcs_key_exporter::fleet::{FleetOptions, Shard};
use dcs_key_exporter::simulator::{
    Faults, SimConfig, SimInstance, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest wait for any condition.
const DEADLINE: Duration = Duration::from_secs(40);
/// Discovery refresh interval in these tests.
const REFRESH: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Harness

/// A generated fleet in its own project.
fn project(seed: u64, n: usize, project_id: &str) -> SimConfig {
    SimConfig {
        project_id: project_id.into(),
        time_scale: 0.05,
        ..SimConfig::generated(seed, n)
    }
}

fn settings(mode: Mode, interval: Duration) -> AnalysisSettings {
    AnalysisSettings {
        mode,
        interval,
        timeout: Duration::from_secs(20),
        top_n: 10,
    }
}

const OFF: AnalysisSettings = AnalysisSettings {
    mode: Mode::Off,
    interval: Duration::from_secs(3600),
    timeout: Duration::from_secs(60),
    top_n: 10,
};

fn discovery() -> DiscoveryConfig {
    DiscoveryConfig {
        refresh_interval: REFRESH,
        name_include: None,
        name_exclude: None,
        tags: BTreeMap::new(),
        engine: "Redis".into(),
        status: "RUNNING".into(),
    }
}

/// A config with one discovering cloud per simulator (named `cloud0`, `cloud1`, …), no explicit
/// instances, and `defaults` for what is discovered.
fn discovery_config(
    sims: &[&Sim],
    filters: Vec<DiscoveryConfig>,
    defaults: InstanceDefaults,
) -> Config {
    let cloud_for = |(i, (sim, filter)): (usize, (&&Sim, DiscoveryConfig))| {
        let mut cloud = demo::config_for(&sim.sim, &sim.config, sim.url.clone())
            .clouds
            .remove(0);
        cloud.name = format!("cloud{i}");
        cloud.instances.clear();
        cloud.discovery = Some(filter);
        cloud.defaults = defaults;
        cloud
    };
    let mut config = demo::config_for(&sims[0].sim, &sims[0].config, sims[0].url.clone());
    config.clouds = sims
        .iter()
        .zip(filters)
        .enumerate()
        .map(cloud_for)
        .collect();
    config.scheduler = SchedulerSettings {
        start_jitter: Duration::from_millis(200),
    };
    config
}

fn defaults(hotkey: AnalysisSettings) -> InstanceDefaults {
    InstanceDefaults {
        lfu_log_factor: 10,
        hotkey,
        bigkey: OFF,
        keyfamily: Default::default(),
    }
}

async fn start_exporter(config: Config, fleet: FleetOptions) -> Exporter {
    let opts = RunOptions {
        fleet,
        ..RunOptions::default()
    };
    crate::common::start_exporter(config, opts, DEADLINE).await
}

/// The instance ids of `dcs_instance_info`.
async fn instances(exp: &Exporter) -> BTreeSet<String> {
    exp.scrape()
        .await
        .label_values("dcs_instance_info", "instance_id")
}

/// Waits until the exporter's instance set is `want`.
async fn wait_instances(exp: &Exporter, what: &str, want: &BTreeSet<String>) {
    wait_for(what, DEADLINE, || async {
        let got = instances(exp).await;
        (got == *want).then_some(())
    })
    .await
}

fn ids<'a>(it: impl IntoIterator<Item = &'a SimInstance>) -> BTreeSet<String> {
    it.into_iter().map(|i| i.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_every_instance_of_several_projects_with_filters() {
    // Two projects of several hundred instances; some not running, some Memcached.
    let a = start_sim(project(11, 320, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")).await;
    let b = start_sim(project(12, 260, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")).await;
    for (k, inst) in a.sim.instances().iter().enumerate() {
        match k % 10 {
            3 => assert!(a
                .sim
                .update_instance(&inst.id, |i| i.status = "RESTARTING".into())),
            7 => assert!(a
                .sim
                .update_instance(&inst.id, |i| i.engine = "Memcached".into())),
            _ => {}
        }
    }
    // Project A: production instances except rate limiters. Project B: one team, any status.
    let filter_a = DiscoveryConfig {
        name_include: Some(regex::Regex::new("^prod-").unwrap()),
        name_exclude: Some(regex::Regex::new("-ratelimit-").unwrap()),
        ..discovery()
    };
    let mut filter_b = DiscoveryConfig {
        status: String::new(),
        ..discovery()
    };
    filter_b.tags.insert("team".into(), "search".into());
    filter_b.tags.insert("env".into(), "prod".into());
    let mut config = discovery_config(&[&a, &b], vec![filter_a, filter_b], defaults(OFF));

    // An explicit entry that the filters leave out is analysed anyway, under its own name.
    let staging = a
        .sim
        .instances()
        .into_iter()
        .find(|i| i.name.starts_with("staging-") && i.engine == "Redis")
        .expect("a staging instance");
    config.clouds[0]
        .instances
        .push(dcs_key_exporter::config::InstanceConfig {
            id: staging.id.clone(),
            name: Some("pinned".into()),
            lfu_log_factor: 10,
            hotkey: OFF,
            bigkey: OFF,
            keyfamily: Default::default(),
        });

    // Ground truth, from the simulators' instance lists.
    let want_a: Vec<SimInstance> = a
        .sim
        .instances()
        .into_iter()
        .filter(|i| {
            i.engine == "Redis"
                && i.status == "RUNNING"
                && i.name.starts_with("prod-")
                && !i.name.contains("-ratelimit-")
        })
        .collect();
    let want_b: Vec<SimInstance> = b
        .sim
        .instances()
        .into_iter()
        .filter(|i| {
            i.tags.contains(&("team".into(), "search".into()))
                && i.tags.contains(&("env".into(), "prod".into()))
        })
        .collect();
    assert!(
        want_a.len() > 100 && !want_b.is_empty(),
        "{} {}",
        want_a.len(),
        want_b.len()
    );
    let mut want = ids(&want_a);
    want.extend(ids(&want_b));
    want.insert(staging.id.clone());

    let exp = start_exporter(config, FleetOptions::default()).await;
    wait_instances(&exp, "every matching instance", &want).await;

    // The exporter's own metrics are cached for up to a second between scrapes: wait until
    // they show the discovery that the instance series already reflect.
    let want_shard = Some(want.len() as f64);
    let m = wait_for("discovery and shard gauges", DEADLINE, || async {
        let m = exp.scrape().await;
        let shard = m.get(
            "dcs_exporter_shard_instances",
            &[("shard_index", "0"), ("shard_count", "1")],
        );
        (shard == want_shard
            && m.get("dcs_discovery_instances", &[("cloud", "cloud1")])
                .is_some())
        .then_some(m)
    })
    .await;
    // Details come from the listing: names, versions, specs, statuses.
    for inst in want_a.iter().chain(&want_b) {
        let labels = [
            ("instance_id", inst.id.as_str()),
            ("instance_name", inst.name.as_str()),
            ("engine_version", inst.engine_version.as_str()),
            ("spec_code", inst.spec_code.as_str()),
            ("status", inst.status.as_str()),
        ];
        assert_eq!(m.get("dcs_instance_info", &labels), Some(1.0), "{labels:?}");
    }
    assert_eq!(
        m.get(
            "dcs_instance_info",
            &[("instance_id", &staging.id), ("instance_name", "pinned")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get("dcs_discovery_instances", &[("cloud", "cloud0")]),
        Some(want_a.len() as f64)
    );
    assert_eq!(
        m.get("dcs_discovery_instances", &[("cloud", "cloud1")]),
        Some(want_b.len() as f64)
    );
    assert_eq!(
        m.get(
            "dcs_exporter_shard_instances",
            &[("shard_index", "0"), ("shard_count", "1")]
        ),
        Some(want.len() as f64)
    );
    assert_eq!(
        m.get("dcs_discovery_errors_total", &[("cloud", "cloud0")]),
        Some(0.0)
    );
    // No ShowInstance per discovered instance: the listing says it all. Only the explicit entry
    // may have been shown once, before the first listing arrived.
    assert!(a.sim.operation_count("ShowInstance") <= 1);
    assert_eq!(b.sim.operation_count("ShowInstance"), 0);
    for cloud in ["cloud0", "cloud1"] {
        let last = m.get(
            "dcs_discovery_last_success_timestamp_seconds",
            &[("cloud", cloud)],
        );
        assert!(last.is_some_and(|t| t > 1.7e9), "{cloud}: {last:?}");
    }
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_reads_every_page_of_a_large_project() {
    let s = start_sim(project(41, 2600, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")).await;
    let cloud = demo::config_for(&s.sim, &s.config, s.url.clone())
        .clouds
        .remove(0);
    let client = DcsClient::new(cloud.client, None).unwrap();
    let want = ids(&s.sim.instances());
    for (page_size, pages) in [(1000u32, 3u64), (7, 2600u64.div_ceil(7))] {
        let before = s.sim.operation_count("ListInstances");
        let got = list_all(&client, page_size).await.expect("listing");
        let got_ids: BTreeSet<String> = got.iter().map(|i| i.instance_id.clone()).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "page size {page_size}: each instance once"
        );
        assert_eq!(got_ids, want, "page size {page_size}");
        assert_eq!(s.sim.operation_count("ListInstances") - before, pages);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_removes_and_outages_are_picked_up_live() {
    let s = start_sim(project(21, 40, "cccccccccccccccccccccccccccccccc")).await;
    // Discovered instances run hot key analyses: their series must come and go with them.
    let hot = settings(Mode::Trigger, Duration::from_secs(3600));
    let config = discovery_config(&[&s], vec![discovery()], defaults(hot));
    let exp = start_exporter(config, FleetOptions::default()).await;
    let mut want = ids(&s.sim.instances());
    wait_instances(&exp, "the initial fleet", &want).await;

    // A new instance is discovered and analysed.
    let new = SimInstance::new("99999999-9999-4999-8999-999999999999", "prod-new-cache");
    assert!(s.sim.add_instance(new.clone()));
    want.insert(new.id.clone());
    wait_instances(&exp, "the added instance", &want).await;
    wait_for("the new instance's analysis", DEADLINE, || async {
        let m = exp.scrape().await;
        let shown = m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &[("instance_id", &new.id), ("analysis", "hotkey")],
        )?;
        let task = s
            .sim
            .tasks(&new.id, Analysis::Hotkey)
            .into_iter()
            .find(|t| t.status == TaskStatus::Success)?;
        let finished = timestamp::parse(task.finished_at.as_deref()?)?;
        ((shown - finished).abs() < 1e-3).then_some(())
    })
    .await;

    // Deleted, stopped and renamed instances.
    let all = s.sim.instances();
    let (gone, stopped, renamed) = (&all[0], &all[1], &all[2]);
    assert!(s.sim.remove_instance(&gone.id));
    assert!(s
        .sim
        .update_instance(&stopped.id, |i| i.status = "RESTARTING".into()));
    assert!(s
        .sim
        .update_instance(&renamed.id, |i| i.name = "prod-renamed".into()));
    want.remove(&gone.id);
    want.remove(&stopped.id);
    wait_instances(&exp, "removals", &want).await;
    let m = exp.scrape().await;
    for id in [&gone.id, &stopped.id] {
        assert!(
            !m.0.iter().any(|s| s.labels.get("instance_id") == Some(id)),
            "series of {id} remain"
        );
    }
    wait_for("the new name", DEADLINE, || async {
        let m = exp.scrape().await;
        m.get(
            "dcs_instance_info",
            &[
                ("instance_id", &renamed.id),
                ("instance_name", "prod-renamed"),
            ],
        )
    })
    .await;

    // An outage of ListInstances keeps the instance set, and is counted.
    s.sim.set_faults(
        None,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    let victim = all[3].id.clone();
    assert!(s.sim.remove_instance(&victim));
    wait_for("a counted discovery error", DEADLINE, || async {
        let m = exp.scrape().await;
        let errors = m.get("dcs_discovery_errors_total", &[("cloud", "cloud0")])?;
        (errors >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        instances(&exp).await,
        want,
        "the set stays during the outage"
    );
    s.sim.set_faults(None, Faults::default());
    want.remove(&victim);
    wait_instances(&exp, "the removal after the outage", &want).await;
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refilters_the_kept_listing() {
    let s = start_sim(project(51, 60, "ffffffffffffffffffffffffffffffff")).await;
    let dir = std::env::temp_dir().join(format!("dcs-fleet-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    let write = |include: &str| {
        let yaml = format!(
            "clouds:\n  - name: p\n    endpoint: {url}\n    project_id: {project}\n    \
             auth: {{access_key: {ak}, secret_key: {sk}}}\n    discovery:\n      \
             refresh_interval: 1h\n      name_include: \"{include}\"\n\
             analysis:\n  hotkey: {{mode: off}}\n  bigkey: {{mode: off}}\n",
            url = s.url,
            project = s.config.project_id,
            ak = DEFAULT_ACCESS_KEY,
            sk = DEFAULT_SECRET_KEY,
        );
        std::fs::write(&path, yaml).unwrap();
    };
    let named = |prefix: &str| -> BTreeSet<String> {
        ids(s
            .sim
            .instances()
            .iter()
            .filter(|i| i.name.starts_with(prefix)))
    };
    assert!(!named("prod-").is_empty() && !named("staging-").is_empty());
    write("^prod-");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reload_tx, reload_rx) = app::reload_channel();
    let cancel = CancellationToken::new();
    let join = tokio::spawn(app::run(
        ConfigSource::File(path.clone()),
        listener,
        RunOptions::default(),
        (reload_tx.clone(), reload_rx),
        cancel.clone(),
    ));
    let exp = Exporter {
        addr,
        cancel,
        join,
        http: reqwest::Client::new(),
        stop_deadline: DEADLINE,
    };
    wait_instances(&exp, "the prod instances", &named("prod-")).await;

    // Another filter: applied at once to the listing already held, without listing again.
    write("^staging-");
    let (reply, answer) = tokio::sync::oneshot::channel();
    reload_tx.send(reply).await.unwrap();
    let answer = answer.await.unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    // A scrape may reuse the previous body for up to 250 ms and the exporter's own metrics for
    // up to 1 s: wait for the new filter to show, then check no second listing was needed.
    wait_instances(&exp, "the staging instances", &named("staging-")).await;
    let staging = Some(named("staging-").len() as f64);
    let m = wait_for("the discovery gauge after reload", DEADLINE, || async {
        let m = exp.scrape().await;
        (m.get("dcs_discovery_instances", &[("cloud", "p")]) == staging).then_some(m)
    })
    .await;
    assert_eq!(s.sim.operation_count("ListInstances"), 1);
    assert_eq!(
        m.get("dcs_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    exp.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Sharding

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_disjoint_cover_everything_and_move_little_when_growing() {
    let s = start_sim(project(31, 400, "dddddddddddddddddddddddddddddddd")).await;
    let all = ids(&s.sim.instances());
    let config = discovery_config(&[&s], vec![discovery()], defaults(OFF));

    let mut by_count: BTreeMap<u32, Vec<BTreeSet<String>>> = BTreeMap::new();
    for count in [3u32, 4] {
        let mut exporters = Vec::new();
        for index in 0..count {
            let fleet = FleetOptions {
                shard: Shard::new(index, count).unwrap(),
                observe_only: false,
            };
            exporters.push(start_exporter(config.clone(), fleet).await);
        }
        // Each replica settles on its part once it has listed the project.
        let mut parts = Vec::new();
        for (index, exp) in exporters.iter().enumerate() {
            let part = wait_for("a listed shard", DEADLINE, || async {
                let m = exp.scrape().await;
                m.get("dcs_discovery_instances", &[("cloud", "cloud0")])?;
                let n = m.get(
                    "dcs_exporter_shard_instances",
                    &[
                        ("shard_index", &index.to_string()),
                        ("shard_count", &count.to_string()),
                    ],
                )?;
                let part = m.label_values("dcs_instance_info", "instance_id");
                (part.len() == n as usize).then_some(part)
            })
            .await;
            parts.push(part);
        }
        let union: BTreeSet<String> = parts.iter().flatten().cloned().collect();
        assert_eq!(union, all, "{count} shards cover every instance");
        assert_eq!(
            parts.iter().map(BTreeSet::len).sum::<usize>(),
            all.len(),
            "{count} shards are disjoint"
        );
        for part in &parts {
            let fair = all.len() / count as usize;
            assert!(
                part.len() * 2 > fair && part.len() < fair * 2,
                "{} vs {fair}",
                part.len()
            );
        }
        for exp in exporters {
            exp.stop().await;
        }
        by_count.insert(count, parts);
    }
    // 3 → 4 replicas: only instances that went to the new shard moved, about 1/4 of them.
    let owner = |parts: &[BTreeSet<String>], id: &str| parts.iter().position(|p| p.contains(id));
    let moved = all
        .iter()
        .filter(|id| owner(&by_count[&3], id) != owner(&by_count[&4], id))
        .count();
    assert_eq!(moved, by_count[&4][3].len(), "only moves to the new shard");
    let expected = all.len() as f64 / 4.0;
    assert!(
        (moved as f64 - expected).abs() < expected * 0.25,
        "moved {moved}, expected about {expected}"
    );
}

// ---------------------------------------------------------------------------------------------
// High availability

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_and_observe_replicas_share_tasks_and_survive_each_other() {
    let sim_config = SimConfig {
        seed: 5,
        time_scale: 0.05,
        instances: (0..3)
            .map(|i| {
                SimInstance::new(
                    format!("{i}0000000-0000-4000-8000-000000000000"),
                    format!("ha-{i}"),
                )
            })
            .collect(),
        ..SimConfig::with_defaults()
    };
    let s = start_sim(sim_config).await;
    let mut config = demo::config_for(&s.sim, &s.config, s.url.clone());
    for inst in &mut config.clouds[0].instances {
        inst.hotkey = settings(Mode::Trigger, Duration::from_secs(2));
        inst.bigkey = OFF;
    }
    config.scheduler.start_jitter = Duration::from_millis(200);
    let ids: Vec<String> = s.sim.instances().into_iter().map(|i| i.id).collect();

    let trigger = start_exporter(config.clone(), FleetOptions::default()).await;
    let observe = start_exporter(
        config,
        FleetOptions {
            observe_only: true,
            ..FleetOptions::default()
        },
    )
    .await;

    // Both publish the simulator's newest result of every instance, after at least two tasks.
    let newest = |id: &str| {
        s.sim
            .tasks(id, Analysis::Hotkey)
            .into_iter()
            .filter(|t| t.status == TaskStatus::Success)
            .filter_map(|t| timestamp::parse(t.finished_at.as_deref()?))
            .fold(None, |a: Option<f64>, f| Some(a.map_or(f, |a| a.max(f))))
    };
    // Each instance must be seen once with both replicas on the simulator's newest result (the
    // observer lags by up to one interval, so not necessarily all at the same moment), and
    // then both must show the same keys.
    let keys = |m: &Metrics, id: &str| -> BTreeSet<String> {
        m.family("dcs_hotkey_frequency")
            .into_iter()
            .filter(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
            .map(|s| format!("{} {}", s.labels["key"], s.value))
            .collect()
    };
    let aligned = std::sync::Mutex::new(BTreeSet::new());
    wait_for(
        "both replicas showing the same newest results",
        DEADLINE,
        || async {
            let (mt, mo) = (trigger.scrape().await, observe.scrape().await);
            for id in &ids {
                if s.sim.created_count(id, Analysis::Hotkey) < 2 {
                    continue;
                }
                let Some(want) = newest(id) else { continue };
                let labels = [("instance_id", id.as_str()), ("analysis", "hotkey")];
                let t = mt.get("dcs_analysis_last_success_timestamp_seconds", &labels);
                let o = mo.get("dcs_analysis_last_success_timestamp_seconds", &labels);
                let on_newest = |v: Option<f64>| v.is_some_and(|v| (v - want).abs() < 1e-3);
                if on_newest(t) && on_newest(o) {
                    let (kt, ko) = (keys(&mt, id), keys(&mo, id));
                    assert!(!kt.is_empty());
                    assert_eq!(kt, ko, "{id}: same result, same keys");
                    aligned.lock().unwrap().insert(id.clone());
                }
            }
            (aligned.lock().unwrap().len() == ids.len()).then_some(())
        },
    )
    .await;

    // Every task in DCS was created by the trigger replica, none by the observer.
    let mt = trigger.scrape().await;
    let mo = observe.scrape().await;
    for id in &ids {
        let created = |m: &Metrics| {
            m.get(
                "dcs_analysis_tasks_total",
                &[
                    ("instance_id", id),
                    ("analysis", "hotkey"),
                    ("origin", "created"),
                ],
            )
            .unwrap_or(0.0)
        };
        let in_dcs = s.sim.created_count(id, Analysis::Hotkey) as f64;
        // The counter was read before the simulator: a task created in between counts there.
        assert!(
            created(&mt) <= in_dcs && in_dcs <= created(&mt) + 1.0,
            "{id}"
        );
        assert_eq!(created(&mo), 0.0, "{id}: the observer created tasks");
    }

    // The trigger replica dies: no more tasks, the observer keeps serving its last results.
    let last: BTreeMap<String, f64> = ids
        .iter()
        .map(|id| {
            let v = mo
                .get(
                    "dcs_analysis_last_success_timestamp_seconds",
                    &[("instance_id", id), ("analysis", "hotkey")],
                )
                .unwrap();
            (id.clone(), v)
        })
        .collect();
    trigger.stop().await;
    let created_after_stop: Vec<usize> = ids
        .iter()
        .map(|id| s.sim.created_count(id, Analysis::Hotkey))
        .collect();
    // Two observe intervals later, it has looked again and still shows every instance's
    // newest result (at least as new as before).
    let looks = s.sim.operation_count("ListHotKeyScanTasks");
    wait_for("two more looks by the observer", DEADLINE, || async {
        (s.sim.operation_count("ListHotKeyScanTasks") >= looks + 2 * ids.len() as u64).then_some(())
    })
    .await;
    wait_for(
        "the observer showing every newest result",
        DEADLINE,
        || async {
            let mo = observe.scrape().await;
            for (id, before) in &last {
                let labels = [("instance_id", id.as_str()), ("analysis", "hotkey")];
                let now = mo.get("dcs_analysis_last_success_timestamp_seconds", &labels)?;
                assert!(now >= *before, "{id}: an older result replaced a newer one");
                let keys = mo
                    .family("dcs_hotkey_frequency")
                    .into_iter()
                    .any(|s| s.labels.get("instance_id") == Some(id));
                if !keys || Some(now) != newest(id) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let created_now: Vec<usize> = ids
        .iter()
        .map(|id| s.sim.created_count(id, Analysis::Hotkey))
        .collect();
    assert_eq!(
        created_now, created_after_stop,
        "the observer created tasks"
    );
    observe.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// The documents of a multi-document YAML file.
fn yaml_documents(path: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML"))
        .collect()
}

#[test]
fn statefulset_manifests_agree_with_the_flags() {
    let sharded = yaml_documents("deploy/kubernetes/statefulset-sharded.yaml");
    let standby = yaml_documents("deploy/kubernetes/statefulset-standby.yaml");
    let kind = |d: &serde_yaml_ng::Value| d["kind"].as_str().unwrap_or_default().to_owned();
    let sets: Vec<&serde_yaml_ng::Value> = sharded
        .iter()
        .chain(&standby)
        .filter(|d| kind(d) == "StatefulSet")
        .collect();
    assert_eq!(sets.len(), 2);
    for set in &sets {
        let name = set["metadata"]["name"].as_str().unwrap();
        let replicas = set["spec"]["replicas"].as_u64().unwrap() as u32;
        let container = &set["spec"]["template"]["spec"]["containers"][0];
        let env = |key: &str| -> String {
            container["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["name"].as_str() == Some(key))
                .and_then(|e| e["value"].as_str())
                .unwrap_or_else(|| panic!("{name}: {key}"))
                .to_owned()
        };
        assert_eq!(
            env("DCS_EXPORTER_SHARD_COUNT"),
            replicas.to_string(),
            "{name}"
        );
        // Every pod name maps to its own shard.
        for ordinal in 0..replicas {
            let shard = Shard::from_flags(
                &env("DCS_EXPORTER_SHARD_INDEX"),
                replicas,
                Some(&format!("{name}-{ordinal}")),
            )
            .unwrap();
            assert_eq!(shard.index(), ordinal);
        }
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let observe = args.contains(&"--analysis.observe-only");
        assert_eq!(observe, name.ends_with("-standby"), "{name}: {args:?}");
        // Both read the config from the ConfigMap's directory.
        let config_file = args
            .iter()
            .find_map(|a| a.strip_prefix("--config.file="))
            .unwrap();
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str() == Some("config"))
            .unwrap();
        let dir = mount["mountPath"].as_str().unwrap();
        assert_eq!(config_file, format!("{dir}/config.yaml"));
    }
    assert_eq!(
        sets[0]["spec"]["replicas"], sets[1]["spec"]["replicas"],
        "one standby per primary"
    );

    // The ConfigMap's config is valid, with the Secret's files in place.
    let map = sharded.iter().find(|d| kind(d) == "ConfigMap").unwrap();
    let dir = std::env::temp_dir().join(format!("dcs-fleet-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret_key"), "sk\n").unwrap();
    let text = map["data"]["config.yaml"].as_str().unwrap().replace(
        "/etc/dcs-exporter/credentials/secret_key",
        dir.join("secret_key").to_str().unwrap(),
    );
    let env = |name: &str| (name == "HUAWEICLOUD_SDK_AK").then(|| "ak".to_owned());
    let config = dcs_key_exporter::config::load_str(&text, "configmap", None, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.clouds[0].discovery.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
