//! Key families from the DCS offline key analysis, end to end: the simulator and the exporter
//! on 127.0.0.1:0. Expectations come from the simulator's ground truth (the keys each shard's
//! backup holds), aggregated here by prefix independently of the exporter's code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{start_sim, Exporter, Metrics, Sim};
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config::SchedulerSettings;
use dcs_key_exporter::config::{AnalysisSettings, Config, KeyfamilySettings, Mode};
use dcs_key_exporter::dcs::{DcsApi, DcsClient, OfflineAnalysisRequest};
use dcs_key_exporter::demo;
use dcs_key_exporter::metrics::keylabel::KeyLabelMode;
use dcs_key_exporter::simulator::{SimConfig, SimInstance, Simulator};

const DEADLINE: Duration = Duration::from_secs(30);
const CLUSTER: &str = "5560df16-cebf-4473-95c4-d1b573c16e01";
const HA: &str = "5560df16-cebf-4473-95c4-d1b573c16e02";
const K: usize = 6;

fn sim_config() -> SimConfig {
    let mut cluster = SimInstance::new(CLUSTER, "orders-cluster");
    cluster.cache_mode = "cluster".into();
    cluster.shards = 3;
    cluster.key_count = 1500;
    let mut ha = SimInstance::new(HA, "sessions-ha");
    ha.key_count = 800;
    SimConfig {
        seed: 11,
        instances: vec![cluster, ha],
        time_scale: 0.02,
        ..SimConfig::with_defaults()
    }
}

const OFF: AnalysisSettings = AnalysisSettings {
    mode: Mode::Off,
    interval: Duration::from_secs(3600),
    timeout: Duration::from_secs(60),
    top_n: 10,
};

fn config(sim: &Sim, key_label: KeyLabelMode) -> Config {
    let mut config = demo::config_for(&sim.sim, &sim.config, sim.url.clone());
    let kf = KeyfamilySettings {
        analysis: AnalysisSettings {
            mode: Mode::Trigger,
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(20),
            top_n: K,
        },
        fresh_backup: false,
    };
    for inst in &mut config.clouds[0].instances {
        inst.hotkey = OFF;
        inst.bigkey = OFF;
        inst.keyfamily = kf;
    }
    config.metrics.key_label = key_label;
    config.scheduler = SchedulerSettings {
        start_jitter: Duration::from_millis(100),
    };
    config
}

async fn start_exporter(config: Config) -> Exporter {
    let opts = RunOptions {
        telemetry_path: "/metrics".into(),
        namespace: "dcs".into(),
        ..RunOptions::default()
    };
    crate::common::start_exporter(config, opts, DEADLINE).await
}

/// The prefix rule of the simulated analysis, restated: up to and including the first `:`.
fn prefix(name: &str) -> String {
    match name.find(':') {
        Some(i) => name[..=i].to_owned(),
        None => name.to_owned(),
    }
}

type Series = BTreeMap<(String, String, String), (u64, u64)>;

/// What the exporter must show for an instance: the simulator's keys of each analysed shard,
/// summed by (prefix, type, shard), the K largest by bytes, the rest per (type, shard) as
/// `other`. Also the per-type totals.
fn expected(sim: &Simulator, id: &str) -> (Series, BTreeMap<String, (u64, u64)>) {
    let mut all: Series = BTreeMap::new();
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let tasks = sim.offline_tasks(id);
    let groups: BTreeSet<u32> = tasks.iter().map(|t| t.group).collect();
    for g in groups {
        // The newest task of the group is the published one.
        let t = tasks.iter().find(|t| t.group == g).unwrap();
        for k in sim.offline_keys(id, g, t.backup_at) {
            let ty = k.key_type.to_string();
            let e = all
                .entry((prefix(&k.name), ty.clone(), format!("group-{g}")))
                .or_default();
            e.0 += 1;
            e.1 += k.bytes;
            let e = totals.entry(ty).or_default();
            e.0 += 1;
            e.1 += k.bytes;
        }
    }
    let mut ranked: Vec<_> = all.into_iter().collect();
    ranked.sort_by(|a, b| {
        b.1 .1
            .cmp(&a.1 .1)
            .then(b.1 .0.cmp(&a.1 .0))
            .then(a.0.cmp(&b.0))
    });
    let mut out: Series = BTreeMap::new();
    for (i, ((p, ty, shard), (n, bytes))) in ranked.into_iter().enumerate() {
        let key = if i < K {
            (p, ty, shard)
        } else {
            ("other".into(), ty, shard)
        };
        let e = out.entry(key).or_default();
        e.0 += n;
        e.1 += bytes;
    }
    (out, totals)
}

fn exported(m: &Metrics, id: &str) -> Series {
    let mut out: Series = BTreeMap::new();
    for (name, slot) in [("dcs_keyfamily_keys", 0), ("dcs_keyfamily_memory_bytes", 1)] {
        for s in m.family(name) {
            if s.labels.get("instance_id").map(String::as_str) != Some(id) {
                continue;
            }
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            let e = out
                .entry((l("family"), l("key_type"), l("shard")))
                .or_default();
            if slot == 0 {
                e.0 = s.value as u64;
            } else {
                e.1 = s.value as u64;
            }
        }
    }
    out
}

#[tokio::test]
async fn families_match_the_backups_of_every_shard() {
    let sim = start_sim(sim_config()).await;
    let exp = start_exporter(config(&sim, KeyLabelMode::Name { max_bytes: 200 })).await;
    let m = crate::common::wait_for("every shard analysed", DEADLINE, || async {
        let m = exp.scrape().await;
        let shards = m.label_values("dcs_keyfamily_memory_bytes", "shard");
        let ha = m.count("dcs_keyfamily_memory_bytes", HA) > 0;
        (shards.len() == 3 && ha).then_some(m)
    })
    .await;

    for id in [CLUSTER, HA] {
        let tasks = sim.sim.offline_tasks(id);
        // One task per shard, each reading the newest existing successful backup.
        let groups: BTreeSet<u32> = tasks.iter().map(|t| t.group).collect();
        assert_eq!(groups.len(), tasks.len(), "{id}: one task per shard");
        assert_eq!(sim.sim.offline_created_count(id), tasks.len());
        for t in &tasks {
            assert!(!t.new_backup, "{id}: backup_id must be given");
        }
        let (want, totals) = expected(&sim.sim, id);
        assert_eq!(exported(&m, id), want, "{id}: families");
        assert!(want.keys().filter(|k| k.0 != "other").count() <= K);
        for (ty, (n, bytes)) in totals {
            let l = [("instance_id", id), ("key_type", ty.as_str())];
            assert_eq!(m.get("dcs_keyspace_keys", &l), Some(n as f64), "{id} {ty}");
            assert_eq!(
                m.get("dcs_keyspace_memory_bytes", &l),
                Some(bytes as f64),
                "{id} {ty}"
            );
        }
        assert_eq!(
            m.count("dcs_keyfamily_keys_without_ttl", id),
            0,
            "DCS does not report TTLs"
        );
        let al = [("instance_id", id), ("analysis", "keyfamily")];
        assert_eq!(m.get("dcs_analysis_consecutive_failures", &al), Some(0.0));
    }
    exp.stop().await;
}

#[tokio::test]
async fn a_running_task_is_adopted_not_doubled() {
    let sim = start_sim(sim_config()).await;
    let cfg = config(&sim, KeyLabelMode::Name { max_bytes: 200 });
    // Someone else's analysis of the HA instance runs when the exporter starts.
    let client = DcsClient::new(cfg.clouds[0].client.clone(), None).unwrap();
    let node = sim.sim.nodes(HA).into_iter().find(|n| !n.master).unwrap();
    let theirs = client
        .create_offline_task(
            HA,
            &OfflineAnalysisRequest {
                node_id: node.node_id,
                backup_id: None,
            },
        )
        .await
        .unwrap();
    let exp = start_exporter(cfg).await;
    let al = [("instance_id", HA), ("analysis", "keyfamily")];
    let m = crate::common::wait_for("adopted task published", DEADLINE, || async {
        let m = exp.scrape().await;
        (m.count("dcs_keyfamily_memory_bytes", HA) > 0).then_some(m)
    })
    .await;
    let adopted = [al.as_slice(), &[("origin", "adopted")]].concat();
    let created = [al.as_slice(), &[("origin", "created")]].concat();
    assert_eq!(m.get("dcs_analysis_tasks_total", &adopted), Some(1.0));
    assert_eq!(m.get("dcs_analysis_tasks_total", &created), Some(0.0));
    // The HA instance has one shard, which the adopted task covered: nothing else was created.
    assert_eq!(sim.sim.offline_created_count(HA), 1);
    assert_eq!(sim.sim.offline_tasks(HA)[0].id, theirs.task_id);
    exp.stop().await;
}

#[tokio::test]
async fn hashed_key_labels_hide_family_names() {
    let sim = start_sim(sim_config()).await;
    let exp = start_exporter(config(&sim, KeyLabelMode::Hash)).await;
    let m = crate::common::wait_for("families", DEADLINE, || async {
        let m = exp.scrape().await;
        (m.count("dcs_keyfamily_memory_bytes", HA) > 0).then_some(m)
    })
    .await;
    let names = m.label_values("dcs_keyfamily_memory_bytes", "family");
    let (want, _) = expected(&sim.sim, HA);
    assert!(
        names.contains("other"),
        "`other` is not a key name: never hashed"
    );
    assert_eq!(m.count("dcs_keyfamily_memory_bytes", HA), want.len());
    let text = exp.text().await;
    for (family, _, _) in want.keys().filter(|k| k.0 != "other") {
        assert!(!names.contains(family), "{family} exported in clear");
        assert!(!text.contains(&format!("family=\"{family}\"")));
    }
    exp.stop().await;
}

#[tokio::test]
async fn the_client_and_the_simulator_agree_on_the_offline_calls() {
    use dcs_key_exporter::dcs::{BackupListQuery, TaskListQuery, TaskStatus};
    let sim = start_sim(sim_config()).await;
    let cfg = config(&sim, KeyLabelMode::Name { max_bytes: 200 });
    let client = DcsClient::new(cfg.clouds[0].client.clone(), None).unwrap();

    // Groups (under the singular `instance` path) and logical nodes name the same nodes.
    let groups = client.list_groups(CLUSTER).await.unwrap();
    let nodes = client.list_nodes(CLUSTER).await.unwrap();
    let truth: BTreeSet<String> = sim
        .sim
        .nodes(CLUSTER)
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    let from_groups: BTreeSet<String> = groups
        .group_list
        .iter()
        .flat_map(|g| g.replication_list.iter().map(|r| r.node_id.clone()))
        .collect();
    let from_nodes: BTreeSet<String> = nodes.nodes.iter().map(|n| n.node_id.clone()).collect();
    assert_eq!(groups.group_count, Some(3));
    assert_eq!((&from_groups, &from_nodes), (&truth, &truth));

    // Backups: a window that ends before the newest one leaves it out.
    let all = client
        .list_backups(CLUSTER, &BackupListQuery::default())
        .await
        .unwrap();
    let newest = all.newest_succeeded().expect("a successful backup").clone();
    assert!(all.backup_record_response.len() >= 2);
    let newest_at = newest.finished_unix().unwrap() as i64 - 3600;
    let end = time::OffsetDateTime::from_unix_timestamp(newest_at)
        .unwrap()
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap();
    let older = client
        .list_backups(
            CLUSTER,
            &BackupListQuery {
                end_time: Some(end),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(older
        .backup_record_response
        .iter()
        .all(|b| b.backup_id != newest.backup_id));

    // Create, a refused second create and delete while it runs (DCS.4231), a bad backup id.
    let node = sim
        .sim
        .nodes(CLUSTER)
        .into_iter()
        .find(|n| !n.master)
        .unwrap();
    let req = OfflineAnalysisRequest {
        node_id: node.node_id.clone(),
        backup_id: Some(newest.backup_id.clone()),
    };
    let task = client
        .create_offline_task(CLUSTER, &req)
        .await
        .unwrap()
        .task_id;
    let e = client.create_offline_task(CLUSTER, &req).await.unwrap_err();
    assert!(e.is_already_running(), "{e}");
    let e = client
        .delete_offline_task(CLUSTER, &task)
        .await
        .unwrap_err();
    assert!(e.is_already_running(), "{e}");
    let bad = OfflineAnalysisRequest {
        node_id: node.node_id.clone(),
        backup_id: Some("no-such-backup".into()),
    };
    let e = client.create_offline_task(HA, &bad).await.unwrap_err();
    assert_eq!(e.api_code(), None);
    assert!(e.to_string().contains("DCS.4800"), "{e}");

    // The status is only in the list; the show answer echoes the inputs and, at the end, the
    // result of the backup.
    let query = TaskListQuery {
        offset: None,
        limit: Some(100),
        status: None,
    };
    crate::common::wait_for("task succeeds", DEADLINE, || async {
        let list = client.list_offline_tasks(CLUSTER, &query).await.unwrap();
        let rec = list.record(&task)?;
        (rec.status == TaskStatus::Success).then_some(())
    })
    .await;
    let d = client.show_offline_task(CLUSTER, &task).await.unwrap();
    assert_eq!(d.backup_id.as_deref(), Some(newest.backup_id.as_str()));
    assert_eq!(d.node_id.as_deref(), Some(node.node_id.as_str()));
    assert_eq!(d.analysis_type.as_deref(), Some("old_backup"));
    let group = sim.sim.offline_tasks(CLUSTER)[0].group;
    let at = sim.sim.offline_tasks(CLUSTER)[0].backup_at;
    let keys = sim.sim.offline_keys(CLUSTER, group, at);
    assert_eq!(d.total_num, Some(keys.len() as i64));
    assert_eq!(
        d.total_bytes,
        Some(keys.iter().map(|k| k.bytes as i64).sum::<i64>())
    );

    // Deleted: gone from the list, and unknown to show (DCS.4232).
    assert_eq!(
        client
            .delete_offline_task(CLUSTER, &task)
            .await
            .unwrap()
            .task_id,
        task
    );
    let list = client.list_offline_tasks(CLUSTER, &query).await.unwrap();
    assert!(list.record(&task).is_none());
    let e = client.show_offline_task(CLUSTER, &task).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}
