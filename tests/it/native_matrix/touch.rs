//! The scans leave keys untouched where the server can do that (`CLIENT NO-TOUCH`: Redis 7.2+,
//! Valkey), and say so where it cannot: every key's LFU counter (`OBJECT FREQ`, under
//! `allkeys-lfu`) and idle time (`OBJECT IDLETIME`, under `allkeys-lru`) are read before and
//! after a big key, key family and hot key scan. Where the server has `CLIENT NO-TOUCH` none may
//! have moved and `dcs_analysis_scan_touches_keys` is 0; on older servers they move and the
//! metric is 1. Neither `OBJECT` subcommand touches a key itself.
//!
//! The counters start from a known value set with `RESTORE … FREQ` / `IDLETIME` (far from
//! the counter's cap of 255, and idle for a day), so a single touch would show: with
//! `lfu-log-factor 0` every access adds one, and an access resets the idle time to 0.

use std::collections::BTreeMap;

use super::{calls, dataset, plant, start, wait_failure, wait_success, Planted};
use crate::common::redis_server::Server;
use crate::common::servers::{assert_ran_on_each_engine, on_each, Outcome, ServerBin};
use crate::common::{Metrics, TempDir};

const SET_FREQ: i64 = 10;
const SET_IDLE: i64 = 86_400;

/// On a server with `CLIENT NO-TOUCH`, nothing moved and the exporter says it touched
/// nothing; on one without, keys moved (else the test proves nothing) and the exporter says so.
fn judge(bin: &ServerBin, what: &str, moved: &[String], of: usize, m: &Metrics, id: &str) {
    let touches = m.get(
        "dcs_analysis_scan_touches_keys",
        &[("instance_id", id), ("analysis", "bigkey")],
    );
    if bin.has_no_touch() {
        assert!(
            moved.is_empty(),
            "{} of {of} {what} moved: {:?}",
            moved.len(),
            &moved[..moved.len().min(10)]
        );
        assert_eq!(touches, Some(0.0), "dcs_analysis_scan_touches_keys");
    } else {
        assert!(
            !moved.is_empty(),
            "no {what} moved on a server without CLIENT NO-TOUCH"
        );
        assert_eq!(touches, Some(1.0), "dcs_analysis_scan_touches_keys");
    }
}

/// Re-creates every key with `RESTORE … REPLACE <modifier> <value>` (its own `DUMP`).
fn restore_with(server: &Server, keys: &[Planted], modifier: &str, value: i64) {
    let mut conn = server.conn();
    let mut dump = redis::pipe();
    for k in keys {
        dump.cmd("SELECT").arg(k.db).ignore();
        dump.cmd("DUMP").arg(&k.name);
    }
    let payloads: Vec<Vec<u8>> = dump.query(&mut conn).unwrap();
    let mut restore = redis::pipe();
    for (k, payload) in keys.iter().zip(payloads) {
        restore.cmd("SELECT").arg(k.db).ignore();
        restore
            .cmd("RESTORE")
            .arg(&k.name)
            .arg(0)
            .arg(payload)
            .arg("REPLACE")
            .arg(modifier)
            .arg(value)
            .ignore();
    }
    restore.exec(&mut conn).unwrap();
}

/// `OBJECT <what>` of every key, by (db, name).
fn object(server: &Server, keys: &[Planted], what: &str) -> BTreeMap<(i64, Vec<u8>), i64> {
    let mut conn = server.conn();
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("SELECT").arg(k.db).ignore();
        p.cmd("OBJECT").arg(what).arg(&k.name);
    }
    let values: Vec<i64> = p.query(&mut conn).unwrap();
    keys.iter()
        .map(|k| (k.db, k.name.clone()))
        .zip(values)
        .collect()
}

/// The keys whose value moved the wrong way (`changed(before, after)`), for the message.
fn moved(
    before: &BTreeMap<(i64, Vec<u8>), i64>,
    after: &BTreeMap<(i64, Vec<u8>), i64>,
    changed: impl Fn(i64, i64) -> bool,
) -> Vec<String> {
    before
        .iter()
        .filter(|(k, b)| changed(**b, after[*k]))
        .map(|((db, name), b)| {
            let after = after[&(*db, name.clone())];
            format!("db {db} {}: {b} -> {after}", String::from_utf8_lossy(name))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfu_counters_stay_where_the_server_has_no_touch_and_moves_are_said_elsewhere() {
    let outcomes = on_each("matrix_no_touch_lfu", |bin| async move {
        let lfu = [
            "--maxmemory-policy",
            "allkeys-lfu",
            "--lfu-log-factor",
            "0",
            "--lfu-decay-time",
            "0",
        ];
        let server = Server::start_bin(bin, &lfu, Vec::new(), false).await;
        let keys = dataset();
        plant(&server, &keys);
        restore_with(&server, &keys, "FREQ", SET_FREQ);
        let before = object(&server, &keys, "FREQ");
        assert!(before.values().all(|f| *f == SET_FREQ), "RESTORE FREQ took");
        let dir = TempDir::new("matrix");
        let id = server.url();
        let (e, _stop) = start(
            &format!(
                "redis:\n  - address: {id}\n    analysis: {{hotkey: {{top_n: 10}}, bigkey: {{top_n: 10}}, keyfamily: {{mode: trigger}}}}\nscheduler: {{start_jitter: 0s}}\n"
            ),
            &dir,
        )
        .await;
        wait_success(&e, &id, "bigkey").await;
        let m = wait_success(&e, &id, "hotkey").await;
        assert!(!m.family("dcs_keyfamily_keys").is_empty(), "families built");
        let m = e.scrape().await;
        e.stop().await;
        // The scans read every key: sizes, memory and counters came from this server.
        for command in ["scan", "memory|usage", "object|freq"] {
            assert!(calls(&server, command) > 0, "no {command} call");
        }
        let after = object(&server, &keys, "FREQ");
        let touched = moved(&before, &after, |b, a| a != b);
        judge(bin, "LFU counters", &touched, keys.len(), &m, &id);
        Outcome::Ran
    })
    .await;
    if let Some(o) = outcomes {
        assert_ran_on_each_engine("matrix_no_touch_lfu", &o);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_times_stay_where_the_server_has_no_touch_and_resets_are_said_elsewhere() {
    let outcomes = on_each("matrix_no_touch_lru", |bin| async move {
        let server =
            Server::start_bin(bin, &["--maxmemory-policy", "allkeys-lru"], Vec::new(), false)
                .await;
        let keys = dataset();
        plant(&server, &keys);
        restore_with(&server, &keys, "IDLETIME", SET_IDLE);
        let before = object(&server, &keys, "IDLETIME");
        assert!(before.values().all(|i| *i >= SET_IDLE), "RESTORE IDLETIME took");
        let dir = TempDir::new("matrix");
        let id = server.url();
        // Hot keys need an LFU policy: that scan fails, after asking the server.
        let (e, _stop) = start(
            &format!(
                "redis:\n  - address: {id}\n    analysis: {{bigkey: {{top_n: 10}}, keyfamily: {{mode: trigger}}}}\nscheduler: {{start_jitter: 0s}}\n"
            ),
            &dir,
        )
        .await;
        wait_success(&e, &id, "bigkey").await;
        let m = wait_failure(&e, &id, "hotkey", "unsupported").await;
        e.stop().await;
        for command in ["scan", "memory|usage"] {
            assert!(calls(&server, command) > 0, "no {command} call");
        }
        // Idle times only grow while nothing touches a key.
        let after = object(&server, &keys, "IDLETIME");
        let touched = moved(&before, &after, |b, a| a < b);
        judge(bin, "idle times", &touched, keys.len(), &m, &id);
        Outcome::Ran
    })
    .await;
    if let Some(o) = outcomes {
        assert_ran_on_each_engine("matrix_no_touch_lru", &o);
    }
}
