//! Key families from the big key scan of a real `redis-server`.
//!
//! The test writes a keyspace whose families it knows by construction (which pattern each key
//! was written under, which keys have a TTL) and asks the server itself for every key's
//! `MEMORY USAGE`; the exported `dcs_keyfamily_*` must equal those sums exactly. A random-name
//! keyspace must stay within the configured family bound and lose no key into it. Skips
//! without redis-server unless `DCS_EXPORTER_REDIS_TESTS=require`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::redis_server::{available, resp, Server};
use crate::common::{start_exporter, wait_for, Exporter, Metrics, TempDir};
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config;

const DEADLINE: Duration = Duration::from_secs(60);

async fn start(yaml: &str, dir: &TempDir) -> Exporter {
    let cfg = config::load_str(yaml, "families-test.yaml", Some(dir.dir()), &|_| None)
        .unwrap_or_else(|e| panic!("config loads: {e}"));
    start_exporter(cfg, RunOptions::default(), Duration::from_secs(15)).await
}

async fn wait_families(e: &Exporter, id: &str) -> Metrics {
    wait_for(&format!("key families of {id}"), DEADLINE, || async {
        let m = e.scrape().await;
        m.family("dcs_keyfamily_keys")
            .iter()
            .any(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
            .then_some(m)
    })
    .await
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
            "{metric}: a repeated series"
        );
    }
    out
}

/// One key the test writes: its db, name, the family it belongs to, type, and whether it gets
/// a TTL.
struct Key {
    db: i64,
    name: String,
    family: &'static str,
    key_type: &'static str,
    ttl: bool,
}

fn write(server: &Server, keys: &[Key]) {
    let mut out = Vec::new();
    for k in keys {
        out.extend(resp(&[b"SELECT", k.db.to_string().as_bytes()]));
        let n = k.name.as_bytes();
        match k.key_type {
            "string" => out.extend(resp(&[b"SET", n, &vec![b'v'; 20 + k.name.len() * 3]])),
            "hash" => {
                for i in 0..(3 + k.name.len() % 9) {
                    out.extend(resp(&[b"HSET", n, format!("f{i}").as_bytes(), b"value"]));
                }
            }
            "list" => {
                for i in 0..(2 + k.name.len() % 5) {
                    out.extend(resp(&[b"RPUSH", n, format!("item-{i}").as_bytes()]));
                }
            }
            other => panic!("unknown type {other}"),
        }
        if k.ttl {
            out.extend(resp(&[b"EXPIRE", n, b"86400"]));
        }
    }
    server.pipe(&out);
}

/// The server's own `MEMORY USAGE` of every key, summed per (family, type).
fn memory_truth(server: &Server, keys: &[Key]) -> BTreeMap<(String, String), u64> {
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        redis::cmd("SELECT").arg(k.db).exec(&mut conn).unwrap();
        let m: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&k.name)
            .query(&mut conn)
            .unwrap();
        *out.entry((k.family.to_owned(), k.key_type.to_owned()))
            .or_default() += m;
    }
    out
}

fn count_where(keys: &[Key], f: impl Fn(&Key) -> bool) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for k in keys {
        let e = out
            .entry((k.family.to_owned(), k.key_type.to_owned()))
            .or_default();
        *e += u64::from(f(k));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_of_a_known_keyspace_match_the_servers_memory_usage() {
    if !available("native_families") {
        return;
    }
    let server = Server::start(&[]).await;
    let mut keys = Vec::new();
    let key = |db, name: String, family, key_type, ttl| Key {
        db,
        name,
        family,
        key_type,
        ttl,
    };
    for i in 0..40 {
        // Two databases: families are per target, not per database.
        keys.push(key(
            i % 2 * 3,
            format!("user:{}:cart", 1000 + i * 7),
            "user:*:cart",
            "hash",
            false,
        ));
    }
    for i in 0..30u64 {
        let id = format!("{:016x}", 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1));
        keys.push(key(
            0,
            format!("session:{id}"),
            "session:*",
            "string",
            i % 3 != 0,
        ));
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
    // A user rule wins over the automatic prefix (which would give `tenant-acme/...`).
    for i in 0..5 {
        keys.push(key(
            3,
            format!("tenant-acme/doc/{i}"),
            "tenant:acme",
            "string",
            i == 0,
        ));
    }
    // Deeper than the depth: cut, with `*` for the rest.
    for i in 0..4 {
        keys.push(key(0, format!("a:b:c:{i}:x"), "a:b:c:*", "string", false));
    }
    write(&server, &keys);

    let dir = TempDir::new("families");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - name: families\n    address: {id}\n    analysis:\n      hotkey: {{mode: off}}\n      bigkey: {{top_n: 3}}\n      keyfamily:\n        mode: trigger\n        top_n: 10\n        families:\n          rules:\n            - {{match: '^tenant-(\\w+)/', family: 'tenant:$1'}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_families(&e, &id).await;

    let want_keys = count_where(&keys, |_| true);
    assert_eq!(by_family(&m, "dcs_keyfamily_keys", &id), want_keys);
    assert_eq!(
        by_family(&m, "dcs_keyfamily_keys_without_ttl", &id),
        count_where(&keys, |k| !k.ttl)
    );
    assert_eq!(
        by_family(&m, "dcs_keyfamily_memory_bytes", &id),
        memory_truth(&server, &keys)
    );
    // The per-type totals of the same scan.
    let total = |t: &str| {
        m.get(
            "dcs_keyspace_keys",
            &[("instance_id", id.as_str()), ("key_type", t)],
        )
    };
    assert_eq!(total("hash"), Some(40.0));
    assert_eq!(total("string"), Some(39.0));
    assert_eq!(total("list"), Some(20.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_name_keyspace_stays_within_the_family_bound() {
    if !available("native_families_bound") {
        return;
    }
    let server = Server::start(&[]).await;
    // Names without a delimiter: every key is a family of its own.
    let keys: Vec<Key> = (0..3000u64)
        .map(|i| Key {
            db: 0,
            name: format!("k{:x}", 0x2545_f491_4f6c_dd1du64.wrapping_mul(i + 1)),
            family: "",
            key_type: "string",
            ttl: i % 4 == 0,
        })
        .collect();
    write(&server, &keys);
    let dir = TempDir::new("families-bound");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    analysis:\n      hotkey: {{mode: off}}\n      keyfamily: {{mode: trigger, top_n: 5}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_families(&e, &id).await;
    let fams = by_family(&m, "dcs_keyfamily_keys", &id);
    assert_eq!(fams.len(), 5 + 1, "the top 5 and one `other`: {fams:?}");
    assert!(fams.contains_key(&("other".to_owned(), "string".to_owned())));
    // Nothing is lost into the bound.
    assert_eq!(fams.values().sum::<u64>(), 3000);
    let no_ttl = by_family(&m, "dcs_keyfamily_keys_without_ttl", &id);
    assert_eq!(no_ttl.values().sum::<u64>(), 3000 - 750);
    let memory: u64 = by_family(&m, "dcs_keyfamily_memory_bytes", &id)
        .values()
        .sum();
    let truth: u64 = memory_truth(&server, &keys).values().sum();
    assert_eq!(memory, truth);
}
