//! The self-hosted start: the real binary with `--redis.addr` and no config file, and
//! `config/redis.yaml`, against real `redis-server` processes.
//!
//! Ground truth is what the server answers (`STRLEN`, `LLEN`, `OBJECT FREQ` through
//! `redis-cli`), never what the exporter printed. Each test skips with a printed reason when
//! redis-server is missing, unless `DCS_EXPORTER_REDIS_TESTS=require`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::redis_server::{available, resp, Server};
use crate::common::{parse_exposition, wait_for, Metrics, TempDir};

/// Longest wait for any condition.
const DEADLINE: Duration = Duration::from_secs(60);

/// The binary with `args` and `env`, and nothing of the caller's `DCS_EXPORTER_*` variables.
fn binary(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcs-key-exporter"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("DCS_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

async fn output(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out: Output = tokio::time::timeout(DEADLINE, binary(args, env).output())
        .await
        .expect("the binary answers")
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The exporter as a process; its log is kept, its address read from the `listening` line.
struct Exporter {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Exporter {
    async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut all = vec!["--web.listen-address=127.0.0.1:0", "--log.level=debug"];
        all.extend_from_slice(args);
        let (child, addr, log) = crate::process::spawn_listening(binary(&all, env)).await;
        Exporter {
            child,
            addr,
            log,
            http: reqwest::Client::new(),
        }
    }

    async fn scrape(&self) -> Metrics {
        let resp = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("scrape");
        assert_eq!(resp.status(), 200);
        Metrics(parse_exposition(&resp.text().await.expect("body")))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// A number `redis-cli` answered.
fn number(server: &Server, args: &[&str]) -> f64 {
    let out = server.cli(args);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("redis-cli {args:?}: {out:?}"))
}

/// One flag and a password in the environment: no config file, no DCS settings. Big keys come
/// with their sizes as the server counts them, hot keys ranked by the server's own LFU counters,
/// and the password shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_addr_alone_publishes_big_and_hot_keys_of_a_server() {
    let test = "self_hosted::redis_addr_alone";
    if !available(test) {
        return;
    }
    let password = "s3cret-for-the-flag-test";
    let server = Server::start_with(
        &[
            "--requirepass",
            password,
            "--maxmemory-policy",
            "allkeys-lfu",
            "--lfu-decay-time",
            "0",
        ],
        vec!["--no-auth-warning".into(), "-a".into(), password.into()],
        None,
    )
    .await;
    let mut load = Vec::new();
    load.extend(resp(&[b"SET", b"big:blob", &vec![b'x'; 200_000]]));
    // One command: every write counts as an access for LFU.
    let jobs: Vec<Vec<u8>> = (0..300).map(|i| format!("job-{i}").into_bytes()).collect();
    let mut rpush: Vec<&[u8]> = vec![b"RPUSH", b"big:queue"];
    rpush.extend(jobs.iter().map(Vec::as_slice));
    load.extend(resp(&rpush));
    for i in 0..200 {
        load.extend(resp(&[b"SET", format!("small:{i}").as_bytes(), b"v"]));
    }
    for _ in 0..200 {
        load.extend(resp(&[b"GET", b"small:7"]));
    }
    server.pipe(&load);
    let strlen = number(&server, &["STRLEN", "big:blob"]);
    let llen = number(&server, &["LLEN", "big:queue"]);
    let freq = number(&server, &["OBJECT", "FREQ", "small:7"]);
    assert!(freq > 1.0, "the workload made small:7 hot: {freq}");

    let addr = format!("127.0.0.1:{}", server.port);
    let mut e = Exporter::spawn(
        &[&format!("--redis.addr={addr}")],
        &[("DCS_EXPORTER_REDIS_PASSWORD", password)],
    )
    .await;
    // host:port means redis://host:port, which is the target's id.
    let id = format!("redis://{addr}");
    let m = wait_for("big and hot keys", DEADLINE, || async {
        let m = e.scrape().await;
        let done = |a: &str| {
            m.get(
                "dcs_analysis_last_success_timestamp_seconds",
                &[("instance_id", &id), ("analysis", a)],
            )
            .is_some()
        };
        (done("bigkey") && done("hotkey")).then_some(m)
    })
    .await;
    let key = |k: &'static str| [("instance_id", id.as_str()), ("key", k)];
    assert_eq!(
        m.get("dcs_bigkey_size_bytes", &key("big:blob")),
        Some(strlen)
    );
    assert_eq!(m.get("dcs_bigkey_elements", &key("big:queue")), Some(llen));
    let hottest = m
        .family("dcs_hotkey_frequency")
        .into_iter()
        .filter(|s| s.labels.get("instance_id") == Some(&id))
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .expect("hot keys");
    assert_eq!(hottest.labels["key"], "small:7");
    assert_eq!(hottest.value, freq);
    let log = e.log();
    assert!(
        !log.contains(password),
        "the password is in the log:\n{log}"
    );
    e.child.start_kill().expect("kill");
    let _ = e.child.wait().await;
}

/// `config/redis.yaml` as shipped passes `check-config`, and with nothing but a reachable
/// server (its port put in) `check-config --online`; so do the flags, several of them from one
/// comma-separated variable.
#[tokio::test]
async fn the_redis_example_and_the_flags_pass_check_config_online() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/redis.yaml");
    let example_flag = format!("--config.file={}", example.display());
    let (code, text) = output(&["check-config", &example_flag], &[]).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("OK (1 Redis/Valkey target)"), "{text}");
    if !available("self_hosted::the_redis_example") {
        return;
    }
    let (a, b) = (Server::start(&[]).await, Server::start(&[]).await);
    let dir = TempDir::new("redis-example");
    let yaml = std::fs::read_to_string(&example)
        .expect("the example")
        .replace("127.0.0.1:6379", &format!("127.0.0.1:{}", a.port));
    let copy = dir.write("redis.yaml", &yaml);
    let copy_flag = format!("--config.file={}", copy.display());
    let (code, text) = output(&["check-config", "--online", &copy_flag], &[]).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("redis redis://127.0.0.1:{}: OK", a.port)),
        "{text}"
    );
    let both = format!("127.0.0.1:{},redis://127.0.0.1:{}", a.port, b.port);
    let (code, text) = output(
        &["check-config", "--online"],
        &[("DCS_EXPORTER_REDIS_ADDR", &both)],
    )
    .await;
    assert_eq!(code, Some(0), "{text}");
    for s in [&a, &b] {
        assert!(
            text.contains(&format!("redis redis://127.0.0.1:{}: OK", s.port)),
            "{text}"
        );
    }
    assert!(
        text.contains("command line: OK (2 Redis/Valkey targets)"),
        "{text}"
    );
}

/// A bad flag stops the start with exit code 2 before anything is bound, naming the flag.
#[tokio::test]
async fn a_bad_redis_addr_stops_the_start() {
    let (code, text) = output(
        &[
            "--redis.addr=redis://:hunter2@127.0.0.1:0",
            "--web.listen-address=127.0.0.1:0",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(
            "error: command line: --redis.addr: port 0 is not a port a server listens on"
        ),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
