//! Redis targets that lie, flood, stall or answer nonsense, beside a good one: each fails alone
//! with a reason a person can act on, the good target's result is exact, the last good result
//! of a target that turns bad stays, and nothing a server says reaches `/metrics`, a label or
//! the status page unbounded or raw. Also a real server of 3,000 databases scanned by the real
//! binary under `ulimit -n 1024`, with one connection, while `/metrics` keeps answering.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::fake_redis::{bulk, strings, FakeRedis, Twist};
use crate::common::redis_server::{available, resp, Server};
use crate::common::{wait_for, TempDir};
use crate::native::{dataset, expected_top, keys_of, plant, start, wait_failure, wait_success};

fn twist(f: impl Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync + 'static) -> Twist {
    Arc::new(f)
}

/// A twist answering `command` with `answer`, every other command faithfully.
fn answer(command: &'static [u8], answer: Vec<u8>) -> Twist {
    twist(move |args| (args[0] == command).then(|| answer.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_fail_alone_with_a_reason_and_reach_no_page_raw() {
    if !available("hostile") {
        return;
    }
    let good = Server::start(&[]).await;
    let keys = dataset();
    plant(&good, &keys);

    let huge_bulk = [b"$999999999999\r\n".as_slice(), &vec![b'x'; 4 << 20]].concat();
    let huge_array = [
        b"*2\r\n$1\r\n0\r\n*2000000000\r\n".as_slice(),
        &bulk(b"key").repeat(100_000),
    ]
    .concat();
    let long_error = [b"-ERR ".as_slice(), &vec![b'e'; 20 << 20], b"\r\n"].concat();
    let mut cases: Vec<(String, Twist, &str)> = vec![
        (
            "huge-bulk".into(),
            answer(b"INFO", huge_bulk),
            "protocol_error",
        ),
        (
            "huge-array".into(),
            answer(b"SCAN", huge_array),
            "protocol_error",
        ),
        (
            "long-error".into(),
            answer(b"STRLEN", long_error),
            "protocol_error",
        ),
        (
            "info-int".into(),
            answer(b"INFO", b":42\r\n".to_vec()),
            "protocol_error",
        ),
        (
            "info-empty".into(),
            answer(b"INFO", b"$0\r\n\r\n".to_vec()),
            "protocol_error",
        ),
        (
            "scan-nil".into(),
            answer(b"SCAN", b"*2\r\n$1\r\n0\r\n*-1\r\n".to_vec()),
            "protocol_error",
        ),
        (
            "type-junk".into(),
            twist(|args| match args[0].as_slice() {
                b"STRLEN" => Some(b"-WRONGTYPE Operation against a key\r\n".to_vec()),
                b"TYPE" => Some(b"+zs\x00et\x1b[31m\r\n".to_vec()),
                _ => None,
            }),
            "protocol_error",
        ),
    ];
    // Every answer twice: the sizes that would come out (one off) must never be published.
    cases.push((
        "twice".into(),
        twist(|args| {
            let one = match args[0].as_slice() {
                b"PING" if args.len() > 1 => bulk(&args[1]),
                b"STRLEN" => format!(":{}\r\n", args[1].len()).into_bytes(),
                _ => return None,
            };
            Some(one.repeat(2))
        }),
        "protocol_error",
    ));
    for code in ["LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM"] {
        let line = format!("-{code} the server cannot serve this now\r\n").into_bytes();
        cases.push((
            code.to_ascii_lowercase(),
            answer(b"STRLEN", line),
            "server_error",
        ));
    }
    let mut fakes = BTreeMap::new();
    let mut yaml = format!(
        "redis:\n  - id: good\n    address: {}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 6}}}}\n",
        good.url()
    );
    for (id, _, _) in &cases {
        let fake = FakeRedis::start(strings(50)).await;
        yaml.push_str(&format!(
            "  - id: {id}\n    address: {}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{interval: 2s}}}}\n",
            fake.url()
        ));
        fakes.insert(id.clone(), fake);
    }
    yaml.push_str("scheduler: {start_jitter: 0s}\n");
    let dir = TempDir::new("hostile");
    let e = start(&yaml, &dir).await;
    // First every fake answers faithfully: a good result each.
    for id in fakes.keys() {
        let m = wait_success(&e, id, "bigkey").await;
        assert_eq!(
            keys_of(&m, "dcs_bigkey_size_bytes", id).len(),
            50,
            "{id}: {}",
            e.text().await
        );
    }
    for (id, t, _) in &cases {
        fakes[id.as_str()].twist(t.clone());
    }
    for (id, _, reason) in &cases {
        let m = wait_failure(&e, id, "bigkey", reason).await;
        // The last good result stays published.
        assert_eq!(
            keys_of(&m, "dcs_bigkey_size_bytes", id).len(),
            50,
            "{id}: the last good result stays"
        );
    }
    let m = wait_success(&e, "good", "bigkey").await;
    assert_eq!(
        keys_of(&m, "dcs_bigkey_size_bytes", "good"),
        expected_top(&keys, 6, true)
    );
    // Nothing raw or unbounded reaches a page.
    let text = e.text().await;
    assert!(text.len() < 1 << 20, "/metrics is {} bytes", text.len());
    for line in text.lines() {
        assert!(
            !line.bytes().any(|b| b == 0 || b == 0x1b || b == b'\r'),
            "a raw control byte in /metrics: {line:?}"
        );
    }
    let page = e.page().await;
    assert!(
        page.len() < 1 << 20,
        "the status page is {} bytes",
        page.len()
    );
    assert!(!page.bytes().any(|b| b == 0 || b == 0x1b));
    for (id, words) in [
        ("huge-bulk", "reply too large"),
        ("twice", "desynchronised"),
        ("info-int", "an integer answered to INFO"),
        ("loading", "LOADING"),
        ("type-junk", "which is no key type"),
    ] {
        let Some(section) = page
            .split(&format!("<span class=\"id\">{id}</span>"))
            .nth(1)
        else {
            panic!("{id} has no section on the status page");
        };
        let section = section.split("</section>").next().unwrap_or_default();
        assert!(
            section.contains(words),
            "{id}: {words:?} not in:\n{section}"
        );
    }
    e.stop().await;
}

/// One key in each of 3,000 databases, scanned by the real binary under an open-file limit of
/// 1024: one connection to the node (SELECT between databases), every key found, and
/// `/metrics` answering all along; a target flooding its answers beside it costs no memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_databases_under_a_low_file_limit_take_one_connection() {
    if !available("3000 databases") {
        return;
    }
    let server = Server::start(&["--databases", "3000"]).await;
    let mut out = Vec::new();
    for db in 0..3000u32 {
        out.extend(resp(&[b"SELECT", db.to_string().as_bytes()]));
        let v = vec![b'v'; db as usize % 97 + 1];
        out.extend(resp(&[b"SET", format!("k:{db}").as_bytes(), &v]));
    }
    server.pipe(&out);
    let flood = FakeRedis::start(strings(10)).await;
    flood.twist(answer(
        b"INFO",
        [b"$999999999999\r\n".as_slice(), &vec![b'x'; 8 << 20]].concat(),
    ));
    let dir = TempDir::new("dbs");
    let config = dir.write(
        "config.yaml",
        &format!(
            "redis:\n  - id: many\n    address: {}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 5}}}}\n  - id: flood\n    address: {}\n    analysis: {{hotkey: {{mode: off}}}}\nscheduler: {{start_jitter: 0s}}\n",
            server.url(),
            flood.url()
        ),
    );
    let e = crate::process::spawn_exporter_limited(&config, Some(1024)).await;
    let most = std::sync::atomic::AtomicUsize::new(0);
    let m = wait_for(
        "the 3000-database scan",
        crate::native::DEADLINE,
        || async {
            // The exporter's connections to the node, while it scans.
            let clients = server.cli(&["CLIENT", "LIST"]).lines().count() - 1;
            most.fetch_max(clients, std::sync::atomic::Ordering::Relaxed);
            let m = e.scrape().await;
            m.get(
                "dcs_analysis_last_success_timestamp_seconds",
                &[("instance_id", "many"), ("analysis", "bigkey")],
            )
            .map(|_| m)
        },
    )
    .await;
    let most = most.into_inner();
    assert!(most <= 1, "{most} connections from one target");
    let mut got = keys_of(&m, "dcs_bigkey_size_bytes", "many");
    // The five biggest (97 bytes, in the databases whose index is 96 modulo 97), ties broken by
    // name as for every scan: the highest names first.
    let mut want: Vec<(String, String, String, f64)> = {
        let mut v: Vec<(String, u32, usize)> = (0..3000u32)
            .map(|db| (format!("k:{db}"), db, db as usize % 97 + 1))
            .collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(b.0.cmp(&a.0)));
        v.into_iter()
            .take(5)
            .map(|(name, db, n)| (name, "string".into(), db.to_string(), n as f64))
            .collect()
    };
    got.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    wait_for("the flood counted", crate::native::DEADLINE, || async {
        e.scrape()
            .await
            .get(
                "dcs_analysis_failures_total",
                &[
                    ("instance_id", "flood"),
                    ("analysis", "bigkey"),
                    ("reason", "protocol_error"),
                ],
            )
            .filter(|&n| n >= 1.0)
    })
    .await;
    let hwm = e.peak_rss_kib();
    assert!(hwm < 100 * 1024, "peak RSS {hwm} KiB");
}
