//! Hot key sources against fakes of the servers this machine cannot run: Redis 8.6 `HOTKEYS`
//! sessions (both reply shapes the server and its documentation give, RESP2 and RESP3, a
//! session someone else started, a refused command) and Valkey 9.2 `HOTKEYS GET` (RESP2 and
//! RESP3 entries, detection off).
//!
//! Each fake answers as the server does, byte for byte, from the documented replies: the
//! commands and errors of Redis' `hotkeys.c` and Valkey's `hotkeys.c`. The ground truth is what
//! the fake was told to report (CPU microseconds, bytes, qps per key) and the commands it
//! received, never what the exporter printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::fake_resp::{resp, FakeServer};
use crate::common::{start_exporter, wait_for, Exporter, Metrics, TempDir};
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config;

const DEADLINE: Duration = Duration::from_secs(30);

/// The real error of a server without LFU counters.
const NO_LFU: &str = "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";

fn b(s: &str) -> Vec<u8> {
    resp::bulk(s.as_bytes())
}

/// `INFO` of a one-node server with three keys in db 0.
fn info(version_line: &str) -> Vec<u8> {
    resp::bulk(
        format!(
            "# Server\r\n{version_line}\r\nrun_id:0123456789abcdef0123456789abcdef01234567\r\n\
             # Replication\r\nrole:master\r\nconnected_slaves:0\r\n# Memory\r\n\
             maxmemory_policy:noeviction\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"
        )
        .as_bytes(),
    )
}

/// What every fake answers the same way: the connection's own commands, `INFO`, and the
/// type and size of the three keys.
fn common(args: &[Vec<u8>], version_line: &str) -> Option<Vec<u8>> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default();
    Some(match (name.as_str(), sub.as_str()) {
        ("PING", _) if args.len() > 1 => resp::bulk(&args[1]),
        ("PING", _) => resp::simple("PONG"),
        ("SELECT", _) | ("CLIENT", "NO-TOUCH") => resp::ok(),
        ("INFO", _) => info(version_line),
        ("TYPE", _) if args[1].starts_with(b"hot:") => resp::simple("string"),
        ("TYPE", _) => resp::simple("none"),
        ("STRLEN", _) => resp::int(5),
        ("RANDOMKEY", _) => b("hot:a"),
        ("OBJECT", "FREQ") => resp::err(NO_LFU),
        _ => return None,
    })
}

/// `COMMAND INFO HOTKEYS` with these subcommands (`hotkeys|start`, ...).
fn command_info(subs: &[&str]) -> Vec<u8> {
    let sub = |n: &str| {
        resp::array(&[
            b(n),
            resp::int(2),
            resp::array(&[resp::simple("admin"), resp::simple("noscript")]),
            resp::int(0),
            resp::int(0),
            resp::int(0),
            resp::array(&[
                resp::simple("@admin"),
                resp::simple("@slow"),
                resp::simple("@dangerous"),
            ]),
            resp::array(&[]),
            resp::array(&[]),
            resp::array(&[]),
        ])
    };
    let subs: Vec<Vec<u8>> = subs.iter().map(|s| sub(s)).collect();
    resp::array(&[resp::array(&[
        b("hotkeys"),
        resp::int(-2),
        resp::array(&[resp::simple("admin"), resp::simple("noscript")]),
        resp::int(0),
        resp::int(0),
        resp::int(0),
        resp::array(&[
            resp::simple("@admin"),
            resp::simple("@slow"),
            resp::simple("@dangerous"),
        ]),
        resp::array(&[]),
        resp::array(&[]),
        resp::array(&subs),
    ])])
}

/// How a fake Redis 8.6 shapes its `HOTKEYS GET` reply.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// What the server sends to a RESP2 client: a one-element array holding a flat array.
    Resp2,
    /// What it sends to a RESP3 client: a one-element array holding a map.
    Resp3,
    /// What the documentation's first examples show: the flat array, not wrapped.
    Unwrapped,
}

/// A fake Redis 8.6: one session per node, as `hotkeys.c` keeps it.
struct Redis86 {
    shape: Shape,
    /// A session someone else started (and never ends).
    foreign: bool,
    /// The ACL user may not run `HOTKEYS`.
    noperm: bool,
    /// `Some(active)`: a session exists.
    session: Mutex<Option<bool>>,
}

impl Redis86 {
    fn get(&self) -> Vec<u8> {
        let session = *self.session.lock().unwrap();
        let Some(active) = session else {
            return resp::nil();
        };
        // The documented fields: CPU µs and bytes per key over a 2000 ms window.
        let fields = vec![
            (b("tracking-active"), resp::int(i64::from(active))),
            (b("sample-ratio"), resp::int(1)),
            (
                b("selected-slots"),
                resp::array(&[resp::array(&[resp::int(0), resp::int(16383)])]),
            ),
            (b("all-commands-all-slots-us"), resp::int(42_600)),
            (b("net-bytes-all-commands-all-slots"), resp::int(100_000)),
            (
                b("collection-start-time-unix-ms"),
                resp::int(1_770_824_933_147),
            ),
            (b("collection-duration-ms"), resp::int(2000)),
            (b("total-cpu-time-user-ms"), resp::int(23)),
            (b("total-cpu-time-sys-ms"), resp::int(7)),
            (b("total-net-bytes"), resp::int(94_000)),
            (
                b("by-cpu-time-us"),
                resp::array(&[
                    b("hot:a"),
                    resp::int(30_000),
                    b("hot:b"),
                    resp::int(12_000),
                    b("hot:c"),
                    resp::int(500),
                ]),
            ),
            (
                b("by-net-bytes"),
                resp::array(&[b("hot:b"), resp::int(90_000), b("hot:a"), resp::int(4_000)]),
            ),
        ];
        match self.shape {
            Shape::Resp2 => resp::array(&[resp::flat(&fields)]),
            Shape::Resp3 => resp::array(&[resp::map(&fields)]),
            Shape::Unwrapped => resp::flat(&fields),
        }
    }

    fn answer(&self, args: &[Vec<u8>]) -> Vec<u8> {
        if let Some(a) = common(args, "redis_version:8.6.0") {
            return a;
        }
        let words: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["COMMAND", "INFO", "HOTKEYS"] => command_info(&[
                "hotkeys|start",
                "hotkeys|stop",
                "hotkeys|get",
                "hotkeys|reset",
            ]),
            ["HOTKEYS", ..] if self.noperm => resp::err(&format!(
                "NOPERM User exporter has no permissions to run the 'hotkeys|{}' command",
                words[1].to_ascii_lowercase()
            )),
            ["HOTKEYS", "START", ..] => {
                let mut s = self.session.lock().unwrap();
                if self.foreign || *s == Some(true) {
                    return resp::err("ERR hotkey tracking session already in progress");
                }
                *s = Some(true);
                resp::ok()
            }
            ["HOTKEYS", "STOP"] => {
                let mut s = self.session.lock().unwrap();
                if *s != Some(true) {
                    return resp::nil();
                }
                *s = Some(false);
                resp::ok()
            }
            ["HOTKEYS", "GET"] => self.get(),
            ["HOTKEYS", "RESET"] => {
                let mut s = self.session.lock().unwrap();
                if *s == Some(true) {
                    return resp::err(
                        "ERR hotkey tracking session in progress, stop tracking first",
                    );
                }
                *s = None;
                resp::ok()
            }
            _ => resp::err(&format!(
                "ERR unknown command '{}', with args beginning with: ",
                words[0].to_ascii_lowercase()
            )),
        }
    }
}

async fn redis86(shape: Shape, foreign: bool, noperm: bool) -> FakeServer {
    let fake = Arc::new(Redis86 {
        shape,
        foreign,
        noperm,
        session: Mutex::new(foreign.then_some(true)),
    });
    FakeServer::start(Arc::new(move |args: &[Vec<u8>]| fake.answer(args))).await
}

/// A fake Valkey 9.2: detection on (`top_k` > 0) or off, entries as RESP3 maps or their
/// RESP2 form.
async fn valkey92(top_k: i64, resp3: bool) -> FakeServer {
    FakeServer::start(Arc::new(move |args: &[Vec<u8>]| {
        if let Some(a) = common(args, "redis_version:7.2.4\r\nvalkey_version:9.2.0") {
            return a;
        }
        let words: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["COMMAND", "INFO", "HOTKEYS"] => {
                command_info(&["hotkeys|get", "hotkeys|reset", "hotkeys|help"])
            }
            ["CONFIG", "GET", "HOTKEYS-TOP-K"] => {
                resp::array(&[b("hotkeys-top-k"), b(&top_k.to_string())])
            }
            ["HOTKEYS", "GET"] if top_k == 0 => resp::array(&[]),
            ["HOTKEYS", "GET"] => {
                let entry = |key: &str, db: i64, qps: i64| {
                    let f = vec![
                        (b("key"), b(key)),
                        (b("db"), resp::int(db)),
                        (b("qps"), resp::int(qps)),
                    ];
                    if resp3 {
                        resp::map(&f)
                    } else {
                        resp::flat(&f)
                    }
                };
                resp::array(&[
                    entry("hot:a", 0, 48_200),
                    entry("hot:b", 0, 9_000),
                    entry("other-db", 5, 700),
                ])
            }
            _ => resp::err(&format!(
                "ERR unknown command '{}', with args beginning with: ",
                words[0].to_ascii_lowercase()
            )),
        }
    }))
    .await
}

async fn exporter(url: &str, source: &str) -> Exporter {
    exporter_with(url, &format!("source: {source}, hotkeys: {{window: 1s}}")).await
}

async fn exporter_with(url: &str, hotkey: &str) -> Exporter {
    let dir = TempDir::new("hotkey-sources");
    let yaml = format!(
        "redis:\n  - address: {url}\n    analysis:\n      hotkey: {{top_n: 3, interval: 1m, {hotkey}}}\n      bigkey: {{mode: off}}\n      hotslot: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n"
    );
    let config = config::load_str(&yaml, "t.yaml", Some(dir.dir()), &|_| None).unwrap();
    start_exporter(config, RunOptions::default(), Duration::from_secs(15)).await
}

async fn wait_success(e: &Exporter, id: &str) -> Metrics {
    wait_for("a hot key result", DEADLINE, || async {
        let m = e.scrape().await;
        m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &[("instance_id", id), ("analysis", "hotkey")],
        )
        .map(|_| m)
    })
    .await
}

/// Waits for a failure of `reason`; answers the status page then.
async fn wait_failure(e: &Exporter, id: &str, reason: &str) -> String {
    wait_for(&format!("a {reason} failure"), DEADLINE, || async {
        let m = e.scrape().await;
        let n = m.get(
            "dcs_analysis_failures_total",
            &[
                ("instance_id", id),
                ("analysis", "hotkey"),
                ("reason", reason),
            ],
        );
        if n.unwrap_or(0.0) < 1.0 {
            return None;
        }
        let page = e
            .http
            .get(format!("http://{}/", e.addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(page)
    })
    .await
}

/// (key, value) of `family` in exposition order.
fn values(m: &Metrics, family: &str) -> Vec<(String, f64)> {
    m.family(family)
        .into_iter()
        .map(|s| (s.labels["key"].clone(), s.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sessions_in_every_reply_shape_give_the_keys_by_cpu_with_their_rates() {
    for shape in [Shape::Resp2, Shape::Resp3, Shape::Unwrapped] {
        let fake = redis86(shape, false, false).await;
        let id = fake.url();
        let e = exporter(&id, "auto").await;
        let m = wait_success(&e, &id).await;
        // 30 ms, 12 ms and 0.5 ms of CPU over the session's 2000 ms.
        assert_eq!(
            values(&m, "dcs_hotkey_cpu_seconds_per_second"),
            [
                ("hot:a".to_owned(), 0.015),
                ("hot:b".to_owned(), 0.006),
                ("hot:c".to_owned(), 0.00025)
            ],
            "{shape:?}"
        );
        assert_eq!(
            values(&m, "dcs_hotkey_network_bytes_per_second"),
            [("hot:a".to_owned(), 2000.0), ("hot:b".to_owned(), 45_000.0)],
            "{shape:?}"
        );
        assert!(m.family("dcs_hotkey_frequency").is_empty());
        assert_eq!(
            m.get(
                "dcs_hotkey_size_bytes",
                &[("key", "hot:a"), ("key_type", "string"), ("db", "0")]
            ),
            Some(5.0)
        );
        assert_eq!(
            m.get(
                "dcs_hotkey_source_info",
                &[("instance_id", &id), ("source", "hotkeys")]
            ),
            Some(1.0)
        );
        // One bounded session without SAMPLE: started, stopped, read, then reset.
        let hotkeys = fake.seen("HOTKEYS");
        assert_eq!(
            hotkeys[..4],
            [
                "HOTKEYS START METRICS 2 CPU NET COUNT 3 DURATION 6",
                "HOTKEYS STOP",
                "HOTKEYS GET",
                "HOTKEYS RESET"
            ],
            "{shape:?}"
        );
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_stopped_mid_window_stops_its_own_session_at_once() {
    let fake = redis86(Shape::Resp2, false, false).await;
    let id = fake.url();
    // A 60 s session that the 2 s timeout cuts short (auto only warns about that).
    let e = exporter_with(&id, "hotkeys: {window: 1m}, timeout: 2s").await;
    wait_for("the timeout", DEADLINE, || async {
        let m = e.scrape().await;
        m.get(
            "dcs_analysis_failures_total",
            &[
                ("instance_id", &id),
                ("analysis", "hotkey"),
                ("reason", "timeout"),
            ],
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    wait_for("the session stopped", Duration::from_secs(5), || async {
        (fake.seen("HOTKEYS").len() >= 3).then_some(())
    })
    .await;
    assert_eq!(
        fake.seen("HOTKEYS")[..3],
        [
            "HOTKEYS START METRICS 2 CPU NET COUNT 3 DURATION 65",
            "HOTKEYS STOP",
            "HOTKEYS RESET"
        ]
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_someone_else_started_is_reported_and_never_stopped_or_reset() {
    let fake = redis86(Shape::Resp2, true, false).await;
    let id = fake.url();
    let e = exporter(&id, "hotkeys").await;
    let page = wait_failure(&e, &id, "server_error").await;
    assert!(
        page.contains("hotkey tracking session already in progress")
            && page.contains("leaves it alone"),
        "{page}"
    );
    e.stop().await;
    assert!(!fake.seen("HOTKEYS START").is_empty());
    assert_eq!(fake.seen("HOTKEYS STOP"), Vec::<String>::new());
    assert_eq!(fake.seen("HOTKEYS RESET"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hotkeys_command_fails_as_auth_naming_the_permission() {
    let fake = redis86(Shape::Resp2, false, true).await;
    let id = fake.url();
    let e = exporter(&id, "auto").await;
    let page = wait_failure(&e, &id, "auth").await;
    assert!(
        page.contains("NOPERM") && page.contains("+hotkeys") && page.contains("monitor"),
        "{page}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_detection_in_both_shapes_gives_accesses_per_second_by_database() {
    for resp3 in [false, true] {
        let fake = valkey92(16, resp3).await;
        let id = fake.url();
        let e = exporter(&id, "auto").await;
        let m = wait_success(&e, &id).await;
        let got: Vec<(String, String, f64)> = m
            .family("dcs_hotkey_accesses_per_second")
            .into_iter()
            .map(|s| (s.labels["key"].clone(), s.labels["db"].clone(), s.value))
            .collect();
        assert_eq!(
            got,
            [
                ("hot:a".to_owned(), "0".to_owned(), 48_200.0),
                ("hot:b".to_owned(), "0".to_owned(), 9_000.0),
                ("other-db".to_owned(), "5".to_owned(), 700.0)
            ],
            "resp3: {resp3}"
        );
        assert_eq!(
            m.get("dcs_hotkey_source_info", &[("source", "hotkeys")]),
            Some(1.0)
        );
        e.stop().await;
        // Read only: the server's detection and settings are left as they are.
        assert_eq!(fake.seen("HOTKEYS RESET"), Vec::<String>::new());
        assert_eq!(fake.seen("CONFIG SET"), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_with_detection_off_says_what_to_turn_on_and_changes_nothing() {
    // Chosen explicitly: unsupported, naming the setting.
    let fake = valkey92(0, false).await;
    let id = fake.url();
    let e = exporter(&id, "hotkeys").await;
    let page = wait_failure(&e, &id, "unsupported").await;
    assert!(page.contains("hotkeys-top-k 0"), "{page}");
    e.stop().await;
    // auto: on to the LFU counters, which this server does not keep either: unsupported,
    // naming every choice.
    let e = exporter(&id, "auto").await;
    let page = wait_failure(&e, &id, "unsupported").await;
    assert!(
        page.contains("HOTKEYS detection is off")
            && page.contains("LFU maxmemory-policy")
            && page.contains("source: monitor"),
        "{page}"
    );
    e.stop().await;
    assert_eq!(fake.seen("CONFIG SET"), Vec::<String>::new());
}
