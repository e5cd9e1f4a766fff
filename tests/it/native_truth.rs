//! Native results stay true while the server changes under the scan: a restart (with and
//! without its data), a `FLUSHALL`, a winner deleted after it was sized, and key names that
//! differ only in invalid UTF-8. The ground truth is what the server holds when the scan ends,
//! read with an independent client.

use crate::common::redis_server::{available, Server};
use crate::common::{wait_for, Exporter, Metrics, TempDir};
use crate::native::{
    expected_top, exported_name, keys_of, plant, start, wait_success, Planted, DEADLINE,
};

/// Keys of every type in databases 0 and 3, with `fill` one-byte strings in database 3 so that
/// the walk takes a while at a slow throttle.
fn keyspace(fill: usize) -> Vec<Planted> {
    let mut keys = crate::native::dataset();
    for i in 0..fill {
        keys.push(Planted {
            db: 3,
            name: format!("fill:more:{i}").into_bytes(),
            key_type: "string",
            size: 1,
        });
    }
    keys
}

fn labels<'a>(id: &'a str, analysis: &'a str) -> [(&'a str, &'a str); 2] {
    [("instance_id", id), ("analysis", analysis)]
}

/// Waits until the running big key scan of `id` has visited at least `at_least` keys, and is
/// not done.
async fn wait_scanned(e: &Exporter, id: &str, at_least: f64) {
    wait_for("scan under way", DEADLINE, || async {
        let m = e.scrape().await;
        let scanned = m.get("dcs_analysis_scan_keys_scanned", &labels(id, "bigkey"))?;
        let total = m.get("dcs_analysis_scan_keyspace_keys", &labels(id, "bigkey"))?;
        assert!(
            scanned < total,
            "the scan got too far before the change; the test would prove nothing"
        );
        (scanned >= at_least).then_some(())
    })
    .await
}

/// Keys of every database of `server`, counted by the server.
fn dbsize(server: &Server) -> f64 {
    ["0", "3"]
        .iter()
        .map(|db| {
            server
                .cli(&["-n", db, "DBSIZE"])
                .trim()
                .parse::<f64>()
                .unwrap()
        })
        .sum()
}

fn family_keys(m: &Metrics, id: &str) -> f64 {
    m.family("dcs_keyfamily_keys")
        .into_iter()
        .filter(|s| s.labels["instance_id"] == id)
        .map(|s| s.value)
        .sum()
}

/// Waits for a big key result of `id` newer than `after` (Unix seconds).
async fn wait_result_after(e: &Exporter, id: &str, after: f64) -> Metrics {
    wait_for("a result after the change", DEADLINE, || async {
        let m = e.scrape().await;
        let at = m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &labels(id, "bigkey"),
        )?;
        (at > after).then_some(m)
    })
    .await
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn config(id: &str, url: &str, extra: &str) -> String {
    format!(
        "redis:\n  - id: {id}\n    address: {url}\n    throttle: {{keys_per_second: 2000}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 6}}, keyfamily: {{mode: trigger}}}}\n{extra}scheduler: {{start_jitter: 0s}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_scan_with_its_data_gives_the_whole_keyspace_once() {
    if !available("restart with rdb") {
        return;
    }
    let mut server = Server::start(&[]).await;
    let keys = keyspace(12_000);
    plant(&server, &keys);
    let dir = TempDir::new("truth");
    let e = start(&config("r", &server.url(), ""), &dir).await;
    wait_scanned(&e, "r", 2000.0).await;
    let before = now();
    server.restart(&[], true).await;
    let m = wait_result_after(&e, "r", before).await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_size_bytes", "r"),
        expected_top(&keys, 6, true)
    );
    assert_eq!(
        keys_of(&m, "dcs_bigkey_elements", "r"),
        expected_top(&keys, 6, false)
    );
    // Every key once: the families count exactly what the server holds.
    assert_eq!(family_keys(&m, "r"), dbsize(&server));
    assert_eq!(
        m.get(
            "dcs_analysis_failures_total",
            &[
                ("instance_id", "r"),
                ("analysis", "bigkey"),
                ("reason", "server_changed")
            ]
        )
        .unwrap_or(0.0),
        0.0,
        "one restart is handled by scanning the node again"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_scan_without_data_publishes_the_empty_server_not_the_old_keys() {
    if !available("restart empty") {
        return;
    }
    let mut server = Server::start(&[]).await;
    let keys = keyspace(12_000);
    plant(&server, &keys);
    let dir = TempDir::new("truth");
    let e = start(&config("e", &server.url(), ""), &dir).await;
    wait_scanned(&e, "e", 2000.0).await;
    let before = now();
    server.restart(&[], false).await;
    // One key written after the restart: the only one the result may show (if the scan after
    // the restart came after it).
    server.cli(&["RPUSH", "after:restart", "a", "b", "c"]);
    let m = wait_result_after(&e, "e", before).await;
    assert_eq!(keys_of(&m, "dcs_bigkey_size_bytes", "e"), vec![]);
    let lists = keys_of(&m, "dcs_bigkey_elements", "e");
    let after = vec![(
        "after:restart".to_owned(),
        "list".to_owned(),
        "0".to_owned(),
        3.0,
    )];
    assert!(lists.is_empty() || lists == after, "{lists:?}");
    assert_eq!(family_keys(&m, "e"), lists.len() as f64);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushall_mid_scan_publishes_only_what_is_there_after_it() {
    if !available("flushall") {
        return;
    }
    let server = Server::start(&[]).await;
    let keys = keyspace(12_000);
    plant(&server, &keys);
    let dir = TempDir::new("truth");
    let e = start(&config("f", &server.url(), ""), &dir).await;
    wait_scanned(&e, "f", 2000.0).await;
    let before = now();
    // At once (MULTI): no scan can see the server empty in between.
    let mut conn = server.conn();
    let _: () = redis::pipe()
        .atomic()
        .cmd("FLUSHALL")
        .ignore()
        .cmd("SET")
        .arg("after:flush")
        .arg("0123456789")
        .ignore()
        .query(&mut conn)
        .unwrap();
    let m = wait_result_after(&e, "f", before).await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_size_bytes", "f"),
        vec![("after:flush".into(), "string".into(), "0".into(), 10.0)]
    );
    assert_eq!(keys_of(&m, "dcs_bigkey_elements", "f"), vec![]);
    assert_eq!(family_keys(&m, "f"), 1.0);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_winner_deleted_after_it_was_sized_is_not_published() {
    if !available("deleted winner") {
        return;
    }
    let server = Server::start(&[]).await;
    // Database 0 (walked first) holds the biggest list; database 3 keeps the walk going.
    let keys = keyspace(12_000);
    plant(&server, &keys);
    let dir = TempDir::new("truth");
    let url = server.url();
    // With key families (memory read per key during the walk) and without (only the winners').
    let yaml = format!(
        "redis:\n  - id: fam\n    address: {url}\n    throttle: {{keys_per_second: 2000}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 6}}, keyfamily: {{mode: trigger}}}}\n  - id: plain\n    address: {url}\n    throttle: {{keys_per_second: 2000}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 6}}}}\nscheduler: {{start_jitter: 0s}}\n"
    );
    let e = start(&yaml, &dir).await;
    let db0 = keys.iter().filter(|k| k.db == 0).count() as f64;
    wait_scanned(&e, "fam", db0 + 1000.0).await;
    wait_scanned(&e, "plain", db0 + 1000.0).await;
    let before = now();
    assert_eq!(server.cli(&["-n", "0", "DEL", "list:big"]).trim(), "1");
    let remaining: Vec<Planted> = keys.into_iter().filter(|k| k.name != b"list:big").collect();
    for id in ["fam", "plain"] {
        let m = wait_result_after(&e, id, before).await;
        let got = keys_of(&m, "dcs_bigkey_elements", id);
        assert!(
            !got.iter().any(|(k, ..)| k == "list:big"),
            "{id}: the deleted list is not published: {got:?}"
        );
        // The others are as they are; the deleted one leaves a gap rather than a guess.
        let want: Vec<_> = expected_top(&remaining, 6, false)
            .into_iter()
            .filter(|w| got.contains(w))
            .collect();
        assert_eq!(got, want, "{id}");
        assert_eq!(got.len(), 5, "{id}");
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_differ_only_in_invalid_utf8_keep_their_own_series() {
    if !available("utf8 twins") {
        return;
    }
    let server = Server::start(&["--maxmemory-policy", "allkeys-lfu"]).await;
    let twins: [&[u8]; 2] = [b"twin:\xfe\xff", b"twin:\xff\xfe"];
    let keys = vec![
        Planted {
            db: 0,
            name: twins[0].to_vec(),
            key_type: "list",
            size: 3600,
        },
        Planted {
            db: 0,
            name: twins[1].to_vec(),
            key_type: "hash",
            size: 1200,
        },
    ];
    plant(&server, &keys);
    // Both read often: both among the hot keys.
    let mut conn = server.conn();
    for _ in 0..2000 {
        for k in twins {
            let _: i64 = redis::cmd("HLEN").arg(k).query(&mut conn).unwrap_or(0);
            let _: i64 = redis::cmd("LLEN").arg(k).query(&mut conn).unwrap_or(0);
        }
    }
    let dir = TempDir::new("truth");
    let url = server.url();
    let e = start(
        &format!("redis:\n  - id: t\n    address: {url}\nscheduler: {{start_jitter: 0s}}\n"),
        &dir,
    )
    .await;
    let m = wait_success(&e, "t", "bigkey").await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_elements", "t"),
        expected_top(&keys, 2, false)
    );
    let m = wait_success(&e, "t", "hotkey").await;
    let mut hot: Vec<String> = m
        .family("dcs_hotkey_frequency")
        .into_iter()
        .filter(|s| s.labels["instance_id"] == "t")
        .map(|s| s.labels["key"].clone())
        .collect();
    hot.sort();
    let mut want: Vec<String> = twins.iter().map(|k| exported_name(k)).collect();
    want.sort();
    assert_eq!(hot, want);
    assert_ne!(want[0], want[1]);
    e.stop().await;
}
