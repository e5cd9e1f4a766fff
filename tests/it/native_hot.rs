//! Hot key sources and hot slots against real servers: a bounded `MONITOR` sample of a
//! `noeviction` server (the first listed: Debian's Redis 7.0 in CI) under a known read
//! workload; `auto` on every listed server, none of which has `HOTKEYS` (Redis 8.2 and Valkey
//! 9.1 answer "unknown command"); and the hot slot of a hot key on clusters of every listed
//! server with `CLUSTER SLOT-STATS` (Redis 8.2+, Valkey 8.0+) and
//! `cluster-slot-stats-enabled yes`.
//!
//! Ground truth is the workload the test runs (its fixed proportions) and what the servers
//! answer themselves (`CLIENT LIST`, `CLUSTER KEYSLOT`, `CLUSTER COUNTKEYSINSLOT`). Which
//! servers there are is `common::servers`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{available, resp, start_cluster, Server};
use crate::common::servers::{on_each, Outcome, ServerBin};
use crate::common::{start_exporter, wait_for, Exporter, Metrics, TempDir};
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config;

const DEADLINE: Duration = Duration::from_secs(60);

async fn start(yaml: &str) -> Exporter {
    let dir = TempDir::new("native-hot");
    let config = config::load_str(yaml, "t.yaml", Some(dir.dir()), &|_| None)
        .unwrap_or_else(|e| panic!("config loads: {e}"));
    start_exporter(config, RunOptions::default(), Duration::from_secs(15)).await
}

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

/// Reads in fixed proportions until stopped, per round: `k:7` 9 times (8 `GET`s and an `MGET`
/// with `k:3`), `k:42` 5 times (4 `GET`s and a script that reads it: the script's own line
/// counts, not the `[0 lua]` line of its read), `k:3` of database 2 three times, `k:99`
/// twice, `k:3` of database 0 once, and one of 500 cold keys once.
fn workload(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let conn = |db: u8| {
            redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))
                .unwrap()
                .get_connection()
                .unwrap()
        };
        let (mut c, mut db2) = (conn(0), conn(2));
        let mut rounds = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut p = redis::pipe();
            for _ in 0..8 {
                p.cmd("GET").arg("k:7").ignore();
            }
            p.cmd("MGET").arg("k:7").arg("k:3").ignore();
            for _ in 0..4 {
                p.cmd("GET").arg("k:42").ignore();
            }
            p.cmd("EVAL")
                .arg("return redis.call('GET', KEYS[1])")
                .arg(1)
                .arg("k:42")
                .ignore();
            p.cmd("GET").arg("k:99").ignore();
            p.cmd("GET").arg("k:99").ignore();
            p.cmd("GET").arg(format!("cold:{}", rounds % 500)).ignore();
            let mut p2 = redis::pipe();
            for _ in 0..3 {
                p2.cmd("GET").arg("k:3").ignore();
            }
            if p.query::<()>(&mut c).is_err() || p2.query::<()>(&mut db2).is_err() {
                break;
            }
            rounds += 1;
        }
        rounds
    })
}

fn plant(server: &Server) {
    let mut out = Vec::new();
    for k in ["k:7", "k:42", "k:99", "k:3"] {
        out.extend(resp(&[b"SET", k.as_bytes(), b"value"]));
    }
    for i in 0..500 {
        out.extend(resp(&[b"SET", format!("cold:{i}").as_bytes(), b"v"]));
    }
    out.extend(resp(&[b"SELECT", b"2"]));
    out.extend(resp(&[b"SET", b"k:3", b"in db 2"]));
    server.pipe(&out);
}

/// Whether the server lists the exporter's monitor connection (by name, or any client in
/// monitor mode).
fn monitoring(server: &Server) -> bool {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .any(|l| l.contains("name=dcs-key-exporter-monitor") || l.contains(" flags=O "))
}

/// Waits for the hot key result while watching `CLIENT LIST`; answers the metrics and whether
/// the monitor connection was seen during the wait.
async fn wait_watching(e: &Exporter, server: &Server, id: &str) -> (Metrics, bool) {
    let mut seen = false;
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        seen |= monitoring(server);
        let m = e.scrape().await;
        if m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &[("instance_id", id), ("analysis", "hotkey")],
        )
        .is_some()
        {
            return (m, seen);
        }
        assert!(tokio::time::Instant::now() < until, "no hot key result");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn monitor_config(id: &str, monitor: &str) -> String {
    format!(
        "redis:\n  - address: {id}\n    analysis:\n      hotkey: {{source: monitor, top_n: 5, interval: 10m, monitor: {monitor}}}\n      bigkey: {{mode: off}}\n      hotslot: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_sample_ranks_a_known_read_workload_on_a_noeviction_server() {
    if !available("monitor_ranking") {
        return;
    }
    let server = Server::start(&[]).await;
    assert!(server
        .cli(&["CONFIG", "GET", "maxmemory-policy"])
        .contains("noeviction"));
    plant(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(server.port, stop.clone());
    let id = server.url();
    // Caps out of the way: the window ends the sample.
    let e = start(&monitor_config(
        &id,
        "{window: 2s, max_commands: 10000000, max_bytes: 1073741824}",
    ))
    .await;
    let (m, seen) = wait_watching(&e, &server, &id).await;
    stop.store(true, Ordering::Relaxed);
    assert!(load.join().unwrap() > 100, "the workload ran");
    let got: Vec<(String, String, f64)> = m
        .family("dcs_hotkey_accesses_per_second")
        .into_iter()
        .map(|s| (s.labels["key"].clone(), s.labels["db"].clone(), s.value))
        .collect();
    let keys: Vec<(&str, &str)> = got
        .iter()
        .map(|(k, db, _)| (k.as_str(), db.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("k:7", "0"),
            ("k:42", "0"),
            ("k:3", "2"),
            ("k:99", "0"),
            ("k:3", "0")
        ],
        "{got:?}"
    );
    // The workload's proportions, 9 : 5 : 3 : 2 : 1, up to the rounds cut at the window's
    // edges (a script's inner read counted too would make k:42 6).
    let ratio = |i: usize| got[i].2 / got[4].2;
    for (i, want) in [(0, 9.0), (1, 5.0), (2, 3.0), (3, 2.0)] {
        assert!((ratio(i) - want).abs() < 0.05 * want, "{got:?}");
    }
    assert_eq!(
        m.get(
            "dcs_hotkey_source_info",
            &[("instance_id", &id), ("source", "monitor")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "dcs_hotkey_size_bytes",
            &[("key", "k:7"), ("key_type", "string")]
        ),
        Some(5.0)
    );
    // The window held, and the monitor connection was there during it, gone after it.
    let took = m
        .get(
            "dcs_analysis_duration_seconds",
            &[("instance_id", &id), ("analysis", "hotkey")],
        )
        .unwrap();
    assert!((2.0..10.0).contains(&took), "{took}");
    assert!(
        seen,
        "the monitor connection shows in CLIENT LIST while it runs"
    );
    assert!(!monitoring(&server), "{}", server.cli(&["CLIENT", "LIST"]));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_caps_end_the_sample_early_and_close_its_connection() {
    if !available("monitor_caps") {
        return;
    }
    let server = Server::start(&[]).await;
    plant(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(server.port, stop.clone());
    let id = server.url();
    // A 30 s window that each cap cuts short.
    for bounds in [
        "{window: 30s, max_commands: 2000}",
        "{window: 30s, max_bytes: 65536}",
    ] {
        let e = start(&monitor_config(&id, bounds)).await;
        let (m, _) = wait_watching(&e, &server, &id).await;
        let took = m
            .get(
                "dcs_analysis_duration_seconds",
                &[("instance_id", &id), ("analysis", "hotkey")],
            )
            .unwrap();
        assert!(took < 10.0, "{bounds}: the sample ran {took}s");
        assert_eq!(
            m.family("dcs_hotkey_accesses_per_second")[0].labels["key"],
            "k:7"
        );
        assert!(
            !monitoring(&server),
            "{bounds}: {}",
            server.cli(&["CLIENT", "LIST"])
        );
        e.stop().await;
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
}

/// `auto` on a server that answers "unknown command" to `HOTKEYS`: the LFU counters where
/// the policy keeps them, else unsupported naming the other choices.
async fn auto_falls_back(bin: &ServerBin) -> Outcome {
    let lfu = Server::start_bin(
        bin,
        &["--maxmemory-policy", "allkeys-lfu"],
        Vec::new(),
        false,
    )
    .await;
    // Ground truth: the server has no HOTKEYS.
    let answer = lfu.cli(&["HOTKEYS", "GET"]);
    if !answer.contains("unknown command") {
        return Outcome::NotApplicable(format!("it has HOTKEYS: {}", answer.trim()));
    }
    for i in 0..20 {
        lfu.cli(&["SET", &format!("k{i}"), "v"]);
    }
    for _ in 0..30 {
        lfu.cli(&["GET", "k3"]);
    }
    let none = Server::start_bin(bin, &[], Vec::new(), false).await;
    none.cli(&["SET", "a", "1"]);
    let yaml = format!(
        "redis:\n  - address: {}\n  - address: {}\nanalysis:\n  hotkey: {{top_n: 3}}\n  bigkey: {{mode: off}}\n  hotslot: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n",
        lfu.url(),
        none.url()
    );
    let e = start(&yaml).await;
    let m = wait_success(&e, &lfu.url(), "hotkey").await;
    assert_eq!(
        m.get(
            "dcs_hotkey_source_info",
            &[("instance_id", &lfu.url()), ("source", "lfu")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.family("dcs_hotkey_frequency")
            .iter()
            .find(|s| s.labels["instance_id"] == lfu.url())
            .map(|s| s.labels["key"].clone()),
        Some("k3".to_owned())
    );
    let page = wait_for("unsupported", DEADLINE, || async {
        let m = e.scrape().await;
        m.get(
            "dcs_analysis_supported",
            &[("instance_id", &none.url()), ("analysis", "hotkey")],
        )
        .filter(|v| *v == 0.0)?;
        e.http
            .get(format!("http://{}/", e.addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await;
    assert!(
        page.contains("no HOTKEYS command") && page.contains("source: monitor"),
        "{page}"
    );
    e.stop().await;
    Outcome::Ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_from_hotkeys_on_every_server() {
    on_each("auto_hotkeys_fallback", auto_falls_back).await;
}

/// A 3-master cluster of `bin` with slot stats on; a hot key read over and over on its master:
/// that key's slot is the master's top slot by CPU.
async fn hot_slot_of_a_hot_key(bin: &ServerBin) -> Outcome {
    if !bin.has_slot_stats() {
        return Outcome::NotApplicable("no CLUSTER SLOT-STATS (Valkey 8.0+, Redis 8.2+)".into());
    }
    let nodes = start_cluster(bin, 3, 0, &["--cluster-slot-stats-enabled", "yes"]).await;
    let hot = "user:{42}:profile";
    let slot: u16 = nodes[0]
        .cli(&["CLUSTER", "KEYSLOT", hot])
        .trim()
        .parse()
        .unwrap();
    // The master that serves the slot answers the key itself (the others redirect).
    let owner = nodes
        .iter()
        .find(|n| !n.cli(&["SET", hot, "v"]).contains("MOVED"))
        .expect("a master serves the slot");
    for i in 0..200 {
        let k = format!("cold:{i}");
        let _ = std::process::Command::new("redis-cli")
            .args(["-c", "-p", &nodes[0].port.to_string(), "SET", &k, "v"])
            .output();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (port, stop) = (owner.port, stop.clone());
        std::thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_connection()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let mut p = redis::pipe();
                for _ in 0..50 {
                    p.cmd("GET").arg(hot).ignore();
                }
                if p.query::<()>(&mut c).is_err() {
                    break;
                }
            }
        })
    };
    let id = format!("redis://127.0.0.1:{}", nodes[0].port);
    let e = start(&format!(
        "redis:\n  - address: {id}\n    analysis:\n      hotslot: {{interval: 5s, timeout: 6s, top_n: 3}}\n      hotkey: {{mode: off}}\n      bigkey: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n"
    ))
    .await;
    let m = wait_success(&e, &id, "hotslot").await;
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let shard = format!("127.0.0.1:{}", owner.port);
    let top = m
        .family("dcs_hotslot_cpu_seconds_per_second")
        .into_iter()
        .filter(|s| s.labels["shard"] == shard)
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .map(|s| (s.labels["slot"].clone(), s.value));
    assert!(
        matches!(&top, Some((s, v)) if *s == slot.to_string() && *v > 0.0),
        "{top:?}, want slot {slot}"
    );
    let keys = owner.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
    assert_eq!(
        m.get(
            "dcs_hotslot_keys",
            &[("shard", &shard), ("slot", &slot.to_string())]
        ),
        Some(keys.trim().parse::<f64>().unwrap())
    );
    // Each master reports its own top slots, network rates by direction among them.
    assert_eq!(
        m.label_values("dcs_hotslot_keys", "shard").len(),
        3,
        "one shard label per master"
    );
    assert!(m
        .get(
            "dcs_hotslot_network_bytes_per_second",
            &[("slot", &slot.to_string()), ("direction", "in")]
        )
        .is_some_and(|v| v > 0.0));
    e.stop().await;
    Outcome::Ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_keys_slot_is_the_top_cpu_slot_of_its_shard_on_every_server_with_slot_stats() {
    let outcomes = on_each("hot_slot_of_a_hot_key", hot_slot_of_a_hot_key).await;
    // A list with such servers must not pass on none of them.
    if let Some(o) = outcomes {
        let wanted = o.iter().filter(|(b, _)| b.has_slot_stats()).count();
        let ran = o.iter().filter(|(_, r)| *r == Outcome::Ran).count();
        assert_eq!(ran, wanted, "{o:?}");
    }
}
