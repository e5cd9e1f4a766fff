//! Native Redis targets against real `redis-server` processes (Debian's redis-server 7.0 in
//! CI): standalone, master and replica, a 3-master/3-replica cluster, an ACL user and TLS.
//!
//! Ground truth is what the test wrote (keys of known type and size, a skewed read workload)
//! and what the server itself answers (`MEMORY USAGE`, `OBJECT FREQ`, `INFO commandstats`),
//! never what the exporter printed. Each test skips with a printed reason when redis-server is
//! missing, unless `DCS_EXPORTER_REDIS_TESTS=require`.

use std::time::Duration;

use crate::common::redis_server::{available, free_port, resp, Server};
use crate::common::{promtool_check, start_exporter, wait_for, Exporter, Metrics, TempDir};
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config::{self, Config};

pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn load(yaml: &str, dir: &TempDir) -> Config {
    config::load_str(yaml, "native-test.yaml", Some(dir.dir()), &|_| None)
        .unwrap_or_else(|e| panic!("config loads: {e}"))
}

pub(crate) async fn start(yaml: &str, dir: &TempDir) -> Exporter {
    start_exporter(
        load(yaml, dir),
        RunOptions::default(),
        Duration::from_secs(15),
    )
    .await
}

/// Scrapes until `analysis` of `id` has a result (or, with `failure`, a failure of that reason).
pub(crate) async fn wait_success(e: &Exporter, id: &str, analysis: &str) -> Metrics {
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

pub(crate) async fn wait_failure(e: &Exporter, id: &str, analysis: &str, reason: &str) -> Metrics {
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

/// (key label, value) of every sample of `family` for `id`, in exposition order.
pub(crate) fn keys_of(m: &Metrics, family: &str, id: &str) -> Vec<(String, String, String, f64)> {
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
pub(crate) fn calls(server: &Server, command: &str) -> u64 {
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

/// A key the test writes, with the size the exporter must report.
pub(crate) struct Planted {
    pub db: i64,
    pub name: Vec<u8>,
    pub key_type: &'static str,
    pub size: i64,
}

pub(crate) fn plant(server: &Server, keys: &[Planted]) {
    let mut out = Vec::new();
    let mut db = -1;
    for k in keys {
        if k.db != db {
            db = k.db;
            out.extend(resp(&[b"SELECT", db.to_string().as_bytes()]));
        }
        let n = k.name.as_slice();
        match k.key_type {
            "string" => out.extend(resp(&[b"SET", n, &vec![b'x'; k.size as usize]])),
            _ => {
                for i in 0..k.size {
                    let m = format!("m{i}");
                    let m = m.as_bytes();
                    out.extend(match k.key_type {
                        "list" => resp(&[b"RPUSH", n, m]),
                        "set" => resp(&[b"SADD", n, m]),
                        "zset" => resp(&[b"ZADD", n, i.to_string().as_bytes(), m]),
                        "hash" => resp(&[b"HSET", n, m, b"v"]),
                        "stream" => resp(&[b"XADD", n, b"*", b"f", m]),
                        other => panic!("unknown type {other}"),
                    });
                }
            }
        }
    }
    server.pipe(&out);
}

/// The name the exporter must give a key: itself when it is UTF-8 without control characters;
/// else its readable form (each byte that is not UTF-8 and each control character as `\xNN`),
/// `~b:` and the first 16 hex digits of the SHA-256 of its bytes (so that names differing only
/// in such bytes keep apart, and nothing raw reaches a label).
pub fn exported_name(raw: &[u8]) -> String {
    use sha2::Digest;
    if let Ok(s) = std::str::from_utf8(raw) {
        if !s.chars().any(char::is_control) {
            return s.to_owned();
        }
    }
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("\\x{byte:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    format!("{out}~b:{}", &hex::encode(sha2::Sha256::digest(raw))[..16])
}

/// The top `n` per unit of `keys`, as the exporter must rank them: (name, type, db, size).
pub(crate) fn expected_top(
    keys: &[Planted],
    n: usize,
    strings: bool,
) -> Vec<(String, String, String, f64)> {
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

/// The exported big strings and big collections of `id` are the top `n` of `keys` per unit.
pub(crate) fn assert_big_keys(m: &Metrics, id: &str, keys: &[Planted], n: usize) {
    assert_eq!(
        keys_of(m, "dcs_bigkey_size_bytes", id),
        expected_top(keys, n, true)
    );
    assert_eq!(
        keys_of(m, "dcs_bigkey_elements", id),
        expected_top(keys, n, false)
    );
}

pub(crate) fn dataset() -> Vec<Planted> {
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
    // Fillers of distinct sizes below the big ones, in both databases.
    for i in 0..300i64 {
        let db = if i % 2 == 0 { 0 } else { 3 };
        keys.push(p(db, format!("fill:s:{i}").as_bytes(), "string", 10 + i));
        let t = ["list", "set", "zset", "hash", "stream"][(i % 5) as usize];
        keys.push(p(db, format!("fill:c:{i}").as_bytes(), t, 1 + i % 40));
    }
    keys
}

/// Big key scans guess each key's type from the shape of its name; keys of one shape but
/// different types, and keys whose size (0) does not prove the guess, must come out exactly as
/// they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_types_under_one_name_shape_and_empty_values_come_out_exact() {
    if !available("mixed_shapes") {
        return;
    }
    let server = Server::start(&[]).await;
    let types = ["string", "list", "set", "zset", "hash", "stream"];
    let mut keys: Vec<Planted> = (0..60i64)
        .map(|i| Planted {
            db: 0,
            name: format!("mix:{i}").into_bytes(),
            key_type: types[(i % 6) as usize],
            size: 1 + i,
        })
        .collect();
    plant(&server, &keys);
    // An empty string and a stream emptied by XTRIM exist with size 0.
    server.cli(&["SET", "mix:1000", ""]);
    server.cli(&["XADD", "mix:1001", "*", "f", "v"]);
    server.cli(&["XTRIM", "mix:1001", "MAXLEN", "0"]);
    for (name, key_type) in [("mix:1000", "string"), ("mix:1001", "stream")] {
        keys.push(Planted {
            db: 0,
            name: name.as_bytes().to_vec(),
            key_type,
            size: 0,
        });
    }
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 100}}}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_success(&e, &id, "bigkey").await;
    assert_big_keys(&m, &id, &keys, 100);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hottest_keys_are_the_ones_the_workload_hit_most_read_before_any_touch() {
    if !available("hot_keys") {
        return;
    }
    // lfu-log-factor 0: every access counts, so any touch before the read would show.
    let server = Server::start(&[
        "--maxmemory-policy",
        "allkeys-lfu",
        "--lfu-log-factor",
        "0",
        "--lfu-decay-time",
        "0",
    ])
    .await;
    let mut out = Vec::new();
    for i in 0..500 {
        out.extend(resp(&[b"SET", format!("k:{i}").as_bytes(), b"v"]));
    }
    // A skewed workload: k:7 most, then k:42, k:300, k:3; everything else once or never.
    for (key, reads) in [("k:7", 120), ("k:42", 80), ("k:300", 40), ("k:3", 20)] {
        for _ in 0..reads {
            out.extend(resp(&[b"GET", key.as_bytes()]));
        }
    }
    for i in (0..500).step_by(7) {
        out.extend(resp(&[b"GET", format!("k:{i}").as_bytes()]));
    }
    server.pipe(&out);
    let mut conn = server.conn();
    let freq = |conn: &mut redis::Connection, k: &str| -> i64 {
        redis::cmd("OBJECT").arg("FREQ").arg(k).query(conn).unwrap()
    };
    let before: Vec<(String, f64)> = ["k:7", "k:42", "k:300", "k:3"]
        .iter()
        .map(|k| (k.to_string(), freq(&mut conn, k) as f64))
        .collect();
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    analysis:\n      hotkey: {{top_n: 4}}\n      bigkey: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_success(&e, &id, "hotkey").await;
    let got: Vec<(String, f64)> = keys_of(&m, "dcs_hotkey_frequency", &id)
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect();
    // The hottest keys, in order, with the counters they had before the scan: the scan read
    // them before anything touched them.
    assert_eq!(got, before);
    assert!(before[0].1 > before[1].1 && before[1].1 > before[2].1);
    // Sizes are read afterwards, for the winners only.
    assert_eq!(
        m.get(
            "dcs_hotkey_size_bytes",
            &[("instance_id", &id), ("key", "k:7")]
        ),
        Some(1.0)
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_lfu_policy_hot_keys_are_unsupported_from_the_servers_own_error() {
    if !available("no_lfu") {
        return;
    }
    let server = Server::start(&[]).await;
    server.cli(&["SET", "a", "1"]);
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    analysis:\n      bigkey: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_failure(&e, &id, "hotkey", "unsupported").await;
    let target = &load(&format!("redis:\n  - address: {id}\n"), &dir).redis[0];
    let report = dcs_key_exporter::native::probe::check_online(target)
        .await
        .unwrap();
    assert_eq!(report.eviction_policy, "noeviction");
    assert!(!report.hotkey_possible());
    assert_eq!(
        m.get(
            "dcs_analysis_supported",
            &[("instance_id", &id), ("analysis", "hotkey")]
        ),
        Some(0.0)
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_documented_permissions_works_and_one_without_fails_as_auth() {
    if !available("acl") {
        return;
    }
    let server = Server::start(&["--maxmemory-policy", "allkeys-lfu"]).await;
    // The permissions README documents for the exporter's user, as written there.
    let readme = crate::common::readme::acl_lines("s3cret-pw");
    let line: Vec<&str> = readme[0].iter().map(String::as_str).collect();
    assert_eq!(server.cli(&line).trim(), "OK");
    server.cli(&[
        "ACL",
        "SETUSER",
        "limited",
        "on",
        ">s3cret-pw",
        "~*",
        "-@all",
        "+scan",
        "+type",
        "+info",
        "+select",
        "+ping",
    ]);
    let keys = dataset();
    plant(&server, &keys);
    let dir = TempDir::new("native");
    dir.write("password", "s3cret-pw\n");
    let url = server.url();
    let e = start(
        &format!(
            "redis:\n  - id: good\n    address: {url}\n    username: exporter\n    password_file: password\n    analysis: {{bigkey: {{top_n: 3}}}}\n  - id: limited\n    address: {url}\n    username: limited\n    password_file: password\n  - id: wrong\n    address: {url}\n    username: exporter\n    password: not-it\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_success(&e, "good", "bigkey").await;
    wait_success(&e, "good", "hotkey").await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_elements", "good"),
        expected_top(&keys, 3, false)
    );
    wait_failure(&e, "limited", "bigkey", "auth").await;
    let m = wait_failure(&e, "wrong", "bigkey", "auth").await;
    let body = e.page().await;
    for text in [format!("{:?}", m.0), body] {
        assert!(!text.contains("s3cret-pw") && !text.contains("not-it"));
    }
    let config = load(
        "redis:\n  - address: redis://u:s3cret-pw@127.0.0.1:1\n",
        &dir,
    );
    assert_eq!(config.redis[0].id, "redis://127.0.0.1:1");
    assert!(!format!("{config:?}").contains("s3cret-pw"));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_keys_scan_finds_the_planted_big_keys() {
    if !available("million") {
        return;
    }
    let server = Server::start(&["--enable-debug-command", "yes"]).await;
    // The test's own setup only: the exporter never sends DEBUG.
    server.cli(&["DEBUG", "POPULATE", "1000000", "key", "16"]);
    let planted = vec![
        Planted {
            db: 0,
            name: b"huge:str".to_vec(),
            key_type: "string",
            size: 100_000,
        },
        Planted {
            db: 0,
            name: b"huge:zset".to_vec(),
            key_type: "zset",
            size: 5000,
        },
        Planted {
            db: 0,
            name: b"huge:hash".to_vec(),
            key_type: "hash",
            size: 4000,
        },
    ];
    plant(&server, &planted);
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    throttle: {{keys_per_second: 10000000}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 2}}}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let m = wait_for("million-key scan", Duration::from_secs(300), || async {
        let m = e.scrape().await;
        m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &[("instance_id", &id), ("analysis", "bigkey")],
        )
        .map(|_| m)
    })
    .await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_elements", &id),
        expected_top(&planted, 2, false)
    );
    let strings = keys_of(&m, "dcs_bigkey_size_bytes", &id);
    assert_eq!(
        strings[0],
        ("huge:str".into(), "string".into(), "0".into(), 100_000.0)
    );
    // Every populated value is 16 bytes, so the runner-up is one of them.
    assert_eq!(strings[1].3, 16.0);
    assert!(
        calls(&server, "scan") >= 1000,
        "the whole keyspace was walked"
    );
    // One command per key: the type of a populated key is guessed from its name's shape, so
    // `TYPE` is asked only while the guesses are learnt (and of the final winners).
    assert!(calls(&server, "strlen") >= 1_000_000);
    let types = calls(&server, "type");
    assert!(types < 1000, "TYPE asked {types} times");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_shows_progress_and_resumes_after_its_connection_is_killed() {
    if !available("resume") {
        return;
    }
    let server = Server::start(&[]).await;
    // Database 0 (walked first) is small, database 3 large: the kill lands while database 3 is
    // walked, and the connection (which serves both) is needed again for the winners'
    // `MEMORY USAGE` in both.
    let mut keys = dataset();
    for i in 0..6000 {
        keys.push(Planted {
            db: 3,
            name: format!("more:{i}").into_bytes(),
            key_type: "string",
            size: 1,
        });
    }
    plant(&server, &keys);
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    throttle: {{keys_per_second: 1000}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 3}}}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let labels = [("instance_id", id.as_str()), ("analysis", "bigkey")];
    let total = wait_for("scan progress", DEADLINE, || async {
        let m = e.scrape().await;
        let scanned = m.get("dcs_analysis_scan_keys_scanned", &labels)?;
        let eta = m.get(
            "dcs_analysis_scan_estimated_completion_timestamp_seconds",
            &labels,
        );
        let page = e
            .http
            .get(format!("http://{}/", e.addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        // The status page says it too.
        (scanned > 0.0 && eta.is_some() && page.contains(" keys scanned, done about "))
            .then(|| m.get("dcs_analysis_scan_keyspace_keys", &labels))
            .flatten()
    })
    .await;
    promtool_check(&e.text().await);
    let dbsize: f64 = ["0", "3"]
        .iter()
        .map(|db| {
            server
                .cli(&["-n", db, "DBSIZE"])
                .trim()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, dbsize);
    let killed: u64 = server
        .cli(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .trim()
        .parse()
        .unwrap();
    // One connection to the node, whatever the number of databases.
    assert_eq!(
        killed, 1,
        "the scan's one connection to the node was killed"
    );
    // Progress is withdrawn when a scan ends: still there, the scan was cut in the middle.
    let m = e.scrape().await;
    assert!(
        m.get("dcs_analysis_scan_keys_scanned", &labels).is_some(),
        "the kill came after the scan had ended; the test proves nothing"
    );
    let m = wait_success(&e, &id, "bigkey").await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_elements", &id),
        expected_top(&keys, 3, false)
    );
    for reason in ["api_error", "connection", "server_changed"] {
        assert_eq!(
            m.get(
                "dcs_analysis_failures_total",
                &[labels[0], labels[1], ("reason", reason)]
            )
            .unwrap_or(0.0),
            0.0,
            "{reason}"
        );
    }
    assert_eq!(m.get("dcs_analysis_scan_keys_scanned", &labels), None);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_past_its_timeout_fails_as_timeout_stops_and_keeps_the_last_result() {
    if !available("timeout") {
        return;
    }
    let server = Server::start(&[]).await;
    server.cli(&["RPUSH", "first", "a", "b", "c"]);
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    throttle: {{keys_per_second: 500}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{interval: 3s, timeout: 2s}}}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    let first = wait_success(&e, &id, "bigkey").await;
    let labels = [("instance_id", id.as_str()), ("key", "first")];
    assert_eq!(first.get("dcs_bigkey_elements", &labels), Some(3.0));
    // Now 20 s of keys at 500 keys/s: the next scan cannot finish in 2 s.
    let mut out = Vec::new();
    for i in 0..10_000 {
        out.extend(resp(&[b"SET", format!("slow:{i}").as_bytes(), b"v"]));
    }
    server.pipe(&out);
    let m = wait_failure(&e, &id, "bigkey", "timeout").await;
    assert_eq!(
        m.get("dcs_bigkey_elements", &labels),
        Some(3.0),
        "last result kept"
    );
    // The scan stopped with the timeout: the server sees no more SCAN calls. The window ends
    // well before the retry (the failure backoff is 2.5 s at least), leaving a second for a
    // scrape that saw the failure late on a loaded machine.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scans = calls(&server, "scan");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = calls(&server, "scan");
    assert!(
        later <= scans + 1,
        "scan went on after its timeout: {scans} -> {later}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_fails_alone() {
    if !available("unreachable") {
        return;
    }
    let server = Server::start(&[]).await;
    server.cli(&["RPUSH", "l", "a"]);
    let dead = free_port();
    let dir = TempDir::new("native");
    let id = server.url();
    let e = start(
        &format!(
            "redis:\n  - address: {id}\n    analysis: {{hotkey: {{mode: off}}}}\n  - address: redis://127.0.0.1:{dead}\n    analysis: {{hotkey: {{mode: off}}}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
        &dir,
    )
    .await;
    wait_success(&e, &id, "bigkey").await;
    let m = wait_failure(
        &e,
        &format!("redis://127.0.0.1:{dead}"),
        "bigkey",
        "connection",
    )
    .await;
    assert_eq!(
        m.get(
            "dcs_analysis_consecutive_failures",
            &[("instance_id", &id), ("analysis", "bigkey")]
        ),
        Some(0.0)
    );
    e.stop().await;
}
