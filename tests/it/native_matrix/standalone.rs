//! One standalone server of each version: the big keys with their sizes and `MEMORY USAGE`,
//! the hot keys with their LFU counters, the key families and per-type totals, and what the
//! exporter says the server is, each against what the server itself answers.

use std::collections::BTreeMap;

use super::{dataset, keys_of, load, plant, start, wait_success, DEADLINE};
use crate::common::redis_server::Server;
use crate::common::servers::{on_each, Engine, Outcome, ServerBin};
use crate::common::{promtool_check, wait_for, Exporter, Metrics, TempDir};
use crate::native::{assert_big_keys, exported_name};
use tokio_util::sync::DropGuard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_sizes_and_memory_are_what_each_server_says() {
    on_each("matrix_big_keys", |bin| async move {
        let server = Server::start_bin(bin, &[], Vec::new(), false).await;
        let keys = dataset();
        plant(&server, &keys);
        let dir = TempDir::new("matrix");
        let id = server.url();
        let (e, _stop) = start(
            &format!(
                "redis:\n  - address: {id}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 6}}}}\nscheduler: {{start_jitter: 0s}}\n"
            ),
            &dir,
        )
        .await;
        let m = wait_success(&e, &id, "bigkey").await;
        assert_big_keys(&m, &id, &keys, 6);
        assert_eq!(
            m.get(
                "dcs_analysis_supported",
                &[("instance_id", &id), ("analysis", "bigkey")]
            ),
            Some(1.0)
        );
        // The memory of every exported key is what the server says it is.
        let mut conn = server.conn();
        let by_label: BTreeMap<String, _> = keys
            .iter()
            .map(|k| (exported_name(&k.name), k))
            .collect();
        let memory = keys_of(&m, "dcs_bigkey_memory_bytes", &id);
        assert_eq!(memory.len(), 12);
        for (label, _, db, bytes) in memory {
            let k = by_label[&label];
            redis::cmd("SELECT").arg(k.db).exec(&mut conn).unwrap();
            let want: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&k.name)
                .query(&mut conn)
                .unwrap();
            assert_eq!(
                (label.as_str(), db, bytes),
                (label.as_str(), k.db.to_string(), want as f64)
            );
        }
        promtool_check(&e.text().await);
        e.stop().await;
        Outcome::Ran
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_are_each_servers_own_lfu_counters() {
    on_each("matrix_hot_keys", |bin| async move {
        // lfu-log-factor 0: every access counts.
        let lfu = [
            "--maxmemory-policy",
            "allkeys-lfu",
            "--lfu-log-factor",
            "0",
            "--lfu-decay-time",
            "0",
        ];
        let server = Server::start_bin(bin, &lfu, Vec::new(), false).await;
        let mut conn = server.conn();
        let mut p = redis::pipe();
        for i in 0..500 {
            p.cmd("SET").arg(format!("k:{i}")).arg("v").ignore();
        }
        for (key, reads) in [("k:7", 120), ("k:42", 80), ("k:300", 40), ("k:3", 20)] {
            for _ in 0..reads {
                p.cmd("GET").arg(key).ignore();
            }
        }
        for i in (0..500).step_by(7) {
            p.cmd("GET").arg(format!("k:{i}")).ignore();
        }
        p.exec(&mut conn).unwrap();
        let before: Vec<(String, f64)> = ["k:7", "k:42", "k:300", "k:3"]
            .iter()
            .map(|k| {
                let f: i64 = redis::cmd("OBJECT")
                    .arg("FREQ")
                    .arg(k)
                    .query(&mut conn)
                    .unwrap();
                (k.to_string(), f as f64)
            })
            .collect();
        assert!(before[0].1 > before[1].1 && before[1].1 > before[2].1);
        let dir = TempDir::new("matrix");
        let id = server.url();
        let (e, _stop) = start(
            &format!(
                "redis:\n  - address: {id}\n    analysis: {{hotkey: {{top_n: 4}}, bigkey: {{mode: off}}}}\nscheduler: {{start_jitter: 0s}}\n"
            ),
            &dir,
        )
        .await;
        let m = wait_success(&e, &id, "hotkey").await;
        let got: Vec<(String, f64)> = keys_of(&m, "dcs_hotkey_frequency", &id)
            .into_iter()
            .map(|(k, _, _, v)| (k, v))
            .collect();
        assert_eq!(got, before);
        assert_eq!(
            m.get(
                "dcs_hotkey_size_bytes",
                &[("instance_id", &id), ("key", "k:7")]
            ),
            Some(1.0)
        );
        e.stop().await;
        Outcome::Ran
    })
    .await;
}

/// One key of the families test: db, name, the family it belongs to, type, and a TTL or not.
struct Key {
    db: i64,
    name: String,
    family: &'static str,
    key_type: &'static str,
    ttl: bool,
}

/// Keys under known patterns: the automatic families (`user:*:cart`, `session:*`,
/// `feed:*:items`, a name deeper than the depth cut to `a:b:c:*`) and one user rule.
fn family_keys() -> Vec<Key> {
    let key = |db, name: String, family, key_type, ttl| Key {
        db,
        name,
        family,
        key_type,
        ttl,
    };
    let mut keys = Vec::new();
    for i in 0..40 {
        let name = format!("user:{}:cart", 1000 + i * 7);
        keys.push(key(i % 2 * 3, name, "user:*:cart", "hash", false));
    }
    for i in 0..30u64 {
        let id = format!("{:016x}", 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1));
        let name = format!("session:{id}");
        keys.push(key(0, name, "session:*", "string", i % 3 != 0));
    }
    for i in 0..20 {
        keys.push(key(
            0,
            format!("feed:{i}:items"),
            "feed:*:items",
            "list",
            false,
        ));
    }
    for i in 0..5 {
        let name = format!("tenant-acme/doc/{i}");
        keys.push(key(3, name, "tenant:acme", "string", i == 0));
    }
    for i in 0..4 {
        keys.push(key(0, format!("a:b:c:{i}:x"), "a:b:c:*", "string", false));
    }
    keys
}

fn write_family_keys(server: &Server, keys: &[Key]) {
    let mut conn = server.conn();
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("SELECT").arg(k.db).ignore();
        match k.key_type {
            "string" => p
                .cmd("SET")
                .arg(&k.name)
                .arg("v".repeat(20 + k.name.len() * 3)),
            "hash" => {
                let c = p.cmd("HSET").arg(&k.name);
                for i in 0..(3 + k.name.len() % 9) {
                    c.arg(format!("f{i}")).arg("value");
                }
                c
            }
            "list" => {
                let items: Vec<String> = (0..(2 + k.name.len() % 5))
                    .map(|i| format!("item-{i}"))
                    .collect();
                p.cmd("RPUSH").arg(&k.name).arg(items)
            }
            other => panic!("unknown type {other}"),
        }
        .ignore();
        if k.ttl {
            p.cmd("EXPIRE").arg(&k.name).arg(86400).ignore();
        }
    }
    p.exec(&mut conn).unwrap();
}

/// (family, key_type) → value of `metric` for `id`.
fn by_family(m: &Metrics, metric: &str, id: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for s in m.family(metric) {
        if s.labels.get("instance_id").map(String::as_str) != Some(id) {
            continue;
        }
        let k = (s.labels["family"].clone(), s.labels["key_type"].clone());
        assert!(
            out.insert(k, s.value as u64).is_none(),
            "{metric}: repeated"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_families_and_type_totals_sum_each_servers_memory_usage() {
    on_each("matrix_families", |bin| async move {
        let server = Server::start_bin(bin, &[], Vec::new(), false).await;
        let keys = family_keys();
        write_family_keys(&server, &keys);
        // The server's own MEMORY USAGE of every key, per family and per type.
        let mut conn = server.conn();
        let mut memory: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut by_type: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for k in &keys {
            redis::cmd("SELECT").arg(k.db).exec(&mut conn).unwrap();
            let bytes: u64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&k.name)
                .query(&mut conn)
                .unwrap();
            let t = k.key_type.to_owned();
            *memory.entry((k.family.to_owned(), t.clone())).or_default() += bytes;
            let e = by_type.entry(t).or_default();
            e.0 += 1;
            e.1 += bytes;
        }
        let count = |f: &dyn Fn(&Key) -> bool| {
            let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
            for k in &keys {
                let e = out.entry((k.family.to_owned(), k.key_type.to_owned()));
                *e.or_default() += u64::from(f(k));
            }
            out
        };
        let dir = TempDir::new("matrix");
        let id = server.url();
        let (e, _stop) = start(
            &format!(
                "redis:\n  - address: {id}\n    analysis:\n      hotkey: {{mode: off}}\n      bigkey: {{top_n: 3}}\n      keyfamily:\n        mode: trigger\n        top_n: 10\n        families:\n          rules:\n            - {{match: '^tenant-(\\w+)/', family: 'tenant:$1'}}\nscheduler: {{start_jitter: 0s}}\n"
            ),
            &dir,
        )
        .await;
        let m = wait_for(&format!("key families of {id}"), DEADLINE, || async {
            let m = e.scrape().await;
            (!by_family(&m, "dcs_keyfamily_keys", &id).is_empty()).then_some(m)
        })
        .await;
        assert_eq!(by_family(&m, "dcs_keyfamily_keys", &id), count(&|_| true));
        assert_eq!(
            by_family(&m, "dcs_keyfamily_keys_without_ttl", &id),
            count(&|k| !k.ttl)
        );
        assert_eq!(by_family(&m, "dcs_keyfamily_memory_bytes", &id), memory);
        for (t, (n, bytes)) in by_type {
            let labels = [("instance_id", id.as_str()), ("key_type", t.as_str())];
            assert_eq!(
                (
                    t.as_str(),
                    m.get("dcs_keyspace_keys", &labels),
                    m.get("dcs_keyspace_memory_bytes", &labels)
                ),
                (t.as_str(), Some(n as f64), Some(bytes as f64))
            );
        }
        e.stop().await;
        Outcome::Ran
    })
    .await;
}

/// The engine's own version, as its `INFO` says it (Valkey also says `redis_version:7.2.4`,
/// the Redis version it is compatible with, which is not its own).
fn own_version(server: &Server) -> String {
    let field = match server.bin.engine {
        Engine::Redis => "redis_version",
        Engine::Valkey => "valkey_version",
    };
    server
        .info_field("server", field)
        .unwrap_or_else(|| panic!("INFO server has no {field}"))
}

/// Starts a server with a few keys and waits for the exporter's first big key result.
async fn described(bin: &'static ServerBin) -> (Server, Exporter, DropGuard, Metrics, TempDir) {
    let server = Server::start_bin(bin, &[], Vec::new(), false).await;
    server.cli(&["RPUSH", "l", "a", "b"]);
    let dir = TempDir::new("matrix");
    let id = server.url();
    let (e, stop) = start(
        &format!(
            "redis:\n  - address: {id}\n    analysis: {{hotkey: {{mode: off}}}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_success(&e, &id, "bigkey").await;
    (server, e, stop, m, dir)
}

fn instance_info<'a>(m: &'a Metrics, id: &str) -> &'a BTreeMap<String, String> {
    let info: Vec<_> = m
        .family("dcs_instance_info")
        .into_iter()
        .filter(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
        .collect();
    assert_eq!(info.len(), 1, "one dcs_instance_info for {id}");
    &info[0].labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_info_and_check_config_give_the_engines_own_version() {
    on_each("matrix_version", |bin| async move {
        let (server, e, _stop, m, dir) = described(bin).await;
        let version = own_version(&server);
        // The binary's --version and INFO agree: the truth is known twice over.
        assert_eq!(version, bin.version);
        let id = server.url();
        assert_eq!(instance_info(&m, &id)["engine_version"], version);
        let target = &load(&format!("redis:\n  - address: {id}\n"), &dir).redis[0];
        let report = dcs_key_exporter::native::probe::check_online(target)
            .await
            .unwrap();
        assert_eq!(report.version, format!("{} {version}", bin.engine.as_str()));
        e.stop().await;
        Outcome::Ran
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_info_names_the_engine() {
    on_each("matrix_engine", |bin| async move {
        let (server, e, _stop, m, _dir) = described(bin).await;
        let info = instance_info(&m, &server.url());
        assert_eq!(
            info.get("engine").map(String::as_str),
            Some(bin.engine.as_str())
        );
        e.stop().await;
        Outcome::Ran
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_names_the_engine_and_its_version() {
    on_each("matrix_status_engine", |bin| async move {
        let (_server, e, _stop, _m, _dir) = described(bin).await;
        let page = e.page().await;
        let named = format!("engine {} {}", bin.engine.as_str(), bin.version);
        let line = page.lines().find(|l| l.contains("engine ")).unwrap_or("");
        assert!(
            line.to_lowercase().contains(&named),
            "the status page does not say {named:?}: {line:?}"
        );
        e.stop().await;
        Outcome::Ran
    })
    .await;
}
