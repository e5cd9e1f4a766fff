//! The native analyses on every Redis and Valkey server of the list (`DCS_EXPORTER_REDIS_SERVERS`,
//! see `common::servers`): each test runs its part on each server in turn and says on the
//! terminal which server each part ran on, how long it took, or why it does not apply there.
//!
//! Ground truth is what the test wrote and what each server itself answers (`MEMORY USAGE`,
//! `OBJECT FREQ`, `OBJECT IDLETIME`, `INFO`), never what the exporter printed. The truth tests
//! are in [`standalone`], the touch tests in [`touch`], replica, cluster and TLS in
//! [`topology`], the README's ACL user in [`acl`]. This module holds what they share: the
//! exporter's start, waits, and a planted keyspace of known types and sizes.

mod acl;
mod standalone;
mod topology;
mod touch;

use std::time::Duration;

use crate::common::redis_server::Server;
use crate::common::{start_exporter, wait_for, Exporter, Metrics, TempDir};
use crate::native::exported_name;
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config::{self, Config};

const DEADLINE: Duration = Duration::from_secs(60);

fn load(yaml: &str, dir: &TempDir) -> Config {
    config::load_str(yaml, "matrix-test.yaml", Some(dir.dir()), &|_| None)
        .unwrap_or_else(|e| panic!("config loads: {e}"))
}

/// Starts the exporter; it is stopped (cancelled) when the returned guard is dropped too, so a
/// server's failed part leaves nothing running into the next server's.
async fn start(yaml: &str, dir: &TempDir) -> (Exporter, tokio_util::sync::DropGuard) {
    let e = start_exporter(
        load(yaml, dir),
        RunOptions::default(),
        Duration::from_secs(15),
    )
    .await;
    let guard = e.cancel.clone().drop_guard();
    (e, guard)
}

/// Scrapes until `analysis` of `id` has a result.
async fn wait_success(e: &Exporter, id: &str, analysis: &str) -> Metrics {
    wait_for(&format!("{analysis} result of {id}"), DEADLINE, || async {
        let m = e.scrape().await;
        m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &[("instance_id", id), ("analysis", analysis)],
        )
        .map(|_| m)
    })
    .await
}

/// Scrapes until `analysis` of `id` failed with `reason` at least once.
async fn wait_failure(e: &Exporter, id: &str, analysis: &str, reason: &str) -> Metrics {
    wait_for(&format!("{reason} failure of {id}"), DEADLINE, || async {
        let m = e.scrape().await;
        let n = m.get(
            "dcs_analysis_failures_total",
            &[
                ("instance_id", id),
                ("analysis", analysis),
                ("reason", reason),
            ],
        );
        (n.unwrap_or(0.0) >= 1.0).then_some(m)
    })
    .await
}

/// (key label, key type, db, value) of every sample of `family` for `id`, in exposition order.
fn keys_of(m: &Metrics, family: &str, id: &str) -> Vec<(String, String, String, f64)> {
    m.family(family)
        .into_iter()
        .filter(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
        .map(|s| {
            (
                s.labels["key"].clone(),
                s.labels["key_type"].clone(),
                s.labels["db"].clone(),
                s.value,
            )
        })
        .collect()
}

/// The number of calls of `command` (`scan`, `memory|usage`) in the server's
/// `INFO commandstats`. Before 7.0 the server counts a command's subcommands together
/// (`cmdstat_memory`), so there it is the count of the whole command.
fn calls(server: &Server, command: &str) -> u64 {
    let command = match command.split_once('|') {
        Some((whole, _)) if server.bin.major_minor() < (7, 0) => whole,
        _ => command,
    };
    let info = server.cli(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A key the test writes, with the size the exporter must report (bytes for a string,
/// elements for the rest).
struct Planted {
    db: i64,
    name: Vec<u8>,
    key_type: &'static str,
    size: i64,
}

/// Writes `keys` through the `redis` crate, one pipeline (one round trip per batch).
fn plant(server: &Server, keys: &[Planted]) {
    let mut conn = server.conn();
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("SELECT").arg(k.db).ignore();
        let n = k.name.as_slice();
        let members = (0..k.size).map(|i| format!("m{i}"));
        match k.key_type {
            "string" => {
                p.cmd("SET")
                    .arg(n)
                    .arg(vec![b'x'; k.size as usize])
                    .ignore();
            }
            "list" => {
                p.cmd("RPUSH")
                    .arg(n)
                    .arg(members.collect::<Vec<_>>())
                    .ignore();
            }
            "set" => {
                p.cmd("SADD")
                    .arg(n)
                    .arg(members.collect::<Vec<_>>())
                    .ignore();
            }
            "zset" => {
                let c = p.cmd("ZADD").arg(n);
                for (i, m) in members.enumerate() {
                    c.arg(i).arg(m);
                }
                c.ignore();
            }
            "hash" => {
                let c = p.cmd("HSET").arg(n);
                for m in members {
                    c.arg(m).arg("v");
                }
                c.ignore();
            }
            "stream" => {
                for m in members {
                    p.cmd("XADD").arg(n).arg("*").arg("f").arg(m).ignore();
                }
            }
            other => panic!("unknown type {other}"),
        }
    }
    p.exec(&mut conn)
        .unwrap_or_else(|e| panic!("planting keys on {}: {e}", server.bin.describe()));
}

/// The top `n` per unit of `keys`, as the exporter must rank them: (name, type, db, size).
fn expected_top(keys: &[Planted], n: usize, strings: bool) -> Vec<(String, String, String, f64)> {
    let mut v: Vec<&Planted> = keys
        .iter()
        .filter(|k| (k.key_type == "string") == strings)
        .collect();
    v.sort_by(|a, b| b.size.cmp(&a.size).then(b.name.cmp(&a.name)));
    v.into_iter()
        .take(n)
        .map(|k| {
            (
                exported_name(&k.name),
                k.key_type.to_owned(),
                k.db.to_string(),
                k.size as f64,
            )
        })
        .collect()
}

/// Big keys of every type in databases 0 and 3, and smaller fillers of distinct sizes.
fn dataset() -> Vec<Planted> {
    let p = |db, name: &[u8], key_type, size| Planted {
        db,
        name: name.to_vec(),
        key_type,
        size,
    };
    let mut keys = vec![
        p(0, b"str:1", "string", 9000),
        p(0, b"str:2", "string", 7000),
        p(3, b"str:3", "string", 5000),
        p(0, b"list:big", "list", 3000),
        p(0, b"set:big", "set", 2500),
        p(3, b"zset:big", "zset", 2000),
        p(0, b"odd\xff\"quote\\ \nline\x00end", "hash", 1800),
        p(3, b"hash:big", "hash", 1500),
        p(0, b"stream:big", "stream", 1200),
    ];
    for i in 0..300i64 {
        let db = if i % 2 == 0 { 0 } else { 3 };
        keys.push(p(db, format!("fill:s:{i}").as_bytes(), "string", 10 + i));
        let t = ["list", "set", "zset", "hash", "stream"][(i % 5) as usize];
        keys.push(p(db, format!("fill:c:{i}").as_bytes(), t, 1 + i % 40));
    }
    keys
}
