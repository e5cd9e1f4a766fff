//! Redis targets across config reloads and policy changes, against a real `redis-server`:
//! an analysis found unsupported follows the server (asked again every interval, and at once
//! on a reload), and a reload that changes one analysis leaves the other's scan running.
//!
//! Ground truth is the server: its `maxmemory-policy`, set by the test with `CONFIG SET`, and
//! the keys the test wrote. Skips without redis-server unless `DCS_EXPORTER_REDIS_TESTS=require`.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::common::redis_server::{available, resp, Server};
use crate::common::{wait_for, Exporter, Metrics, TempDir};
use dcs_key_exporter::app::{self, ConfigSource, RunOptions};

const DEADLINE: Duration = Duration::from_secs(60);

/// The exporter on the config file `path`, with its reload channel.
async fn start_file(
    path: std::path::PathBuf,
) -> (Exporter, tokio::sync::mpsc::Sender<app::ReloadRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reload_tx, reload_rx) = app::reload_channel();
    let cancel = CancellationToken::new();
    let join = tokio::spawn(app::run(
        ConfigSource::File(path),
        listener,
        RunOptions::default(),
        (reload_tx.clone(), reload_rx),
        cancel.clone(),
    ));
    let e = Exporter {
        addr,
        cancel,
        join,
        http: reqwest::Client::new(),
        stop_deadline: Duration::from_secs(15),
    };
    (e, reload_tx)
}

/// Reloads the config, as `POST /-/reload` and SIGHUP do, and expects success.
async fn reload(tx: &tokio::sync::mpsc::Sender<app::ReloadRequest>) {
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(reply).await.unwrap();
    let answer = answer.await.unwrap();
    assert!(answer.is_ok(), "{answer:?}");
}

/// A value of `name` for `analysis` of `id`.
fn get(m: &Metrics, name: &str, id: &str, analysis: &str) -> Option<f64> {
    m.get(name, &[("instance_id", id), ("analysis", analysis)])
}

/// Scrapes until `f` says yes.
async fn until(e: &Exporter, what: &str, f: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_for(what, DEADLINE, || async {
        let m = e.scrape().await;
        f(&m).then_some(m)
    })
    .await
}

fn fill(server: &Server, keys: usize) {
    let mut out = Vec::new();
    for i in 0..keys {
        out.extend(resp(&[b"SET", format!("k:{i}").as_bytes(), b"v"]));
    }
    out.extend(resp(&[b"RPUSH", b"biggest", b"a", b"b", b"c", b"d"]));
    server.pipe(&out);
}

/// Without an LFU policy hot keys are unsupported; once the server has one, the next interval
/// finds out, with no reload and no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_analysis_is_asked_again_every_interval() {
    if !available("recheck_interval") {
        return;
    }
    let server = Server::start(&[]).await;
    fill(&server, 100);
    let dir = TempDir::new("native-reload");
    let id = server.url();
    let path = dir.write(
        "config.yaml",
        &format!(
            "redis:\n  - address: {id}\n    analysis:\n      hotkey: {{interval: 3s, timeout: 2s}}\n      bigkey: {{mode: off}}\nscheduler: {{start_jitter: 0s}}\n"
        ),
    );
    let (e, _reload) = start_file(path).await;
    until(&e, "hot keys unsupported", |m| {
        get(m, "dcs_analysis_supported", &id, "hotkey") == Some(0.0)
    })
    .await;
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    let m = until(&e, "hot keys supported again", |m| {
        get(m, "dcs_analysis_supported", &id, "hotkey") == Some(1.0)
            && get(
                m,
                "dcs_analysis_last_success_timestamp_seconds",
                &id,
                "hotkey",
            )
            .is_some()
    })
    .await;
    assert_eq!(
        get(&m, "dcs_analysis_consecutive_failures", &id, "hotkey"),
        Some(0.0)
    );
    e.stop().await;
}

/// A reload asks an unsupported analysis again at once (its interval is an hour), and a reload
/// that changes only the hot key settings leaves the big key scan running to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_asks_again_at_once_and_keeps_the_other_scan() {
    if !available("reload_keeps_scan") {
        return;
    }
    let server = Server::start(&[]).await;
    // 20 s of keys at 1,000 keys/s, which both scans share once hot keys run: the big key
    // scan outlasts both reloads.
    fill(&server, 20_000);
    let dir = TempDir::new("native-reload");
    let id = server.url();
    let config = |hot_top: usize| {
        format!(
            "redis:\n  - address: {id}\n    throttle: {{keys_per_second: 1000}}\n    analysis:\n      hotkey: {{interval: 1h, top_n: {hot_top}}}\n      bigkey: {{interval: 1h, top_n: 3}}\nscheduler: {{start_jitter: 0s}}\n"
        )
    };
    let path = dir.write("config.yaml", &config(5));
    let (e, tx) = start_file(path).await;
    let scanned = |m: &Metrics| get(m, "dcs_analysis_scan_keys_scanned", &id, "bigkey");
    let m = until(&e, "hot keys unsupported, big keys scanning", |m| {
        get(m, "dcs_analysis_supported", &id, "hotkey") == Some(0.0)
            && scanned(m).is_some_and(|n| n > 0.0)
    })
    .await;
    let before = scanned(&m).unwrap();

    // The policy is fixed on the server, and the same config reloaded: asked again at once.
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    reload(&tx).await;
    until(&e, "hot keys supported after the reload", |m| {
        get(m, "dcs_analysis_supported", &id, "hotkey") == Some(1.0)
    })
    .await;

    // Only the hot key settings change: the big key scan goes on.
    dir.write("config.yaml", &config(7));
    reload(&tx).await;
    let m = e.scrape().await;
    let after = scanned(&m).expect(
        "the big key scan ended before the second reload (or was stopped); the test proves nothing",
    );
    assert!(
        after >= before,
        "the big key scan started over: {before} -> {after}"
    );
    let created = |m: &Metrics| {
        m.get(
            "dcs_analysis_tasks_total",
            &[
                ("instance_id", &id),
                ("analysis", "bigkey"),
                ("origin", "created"),
            ],
        )
    };
    assert_eq!(created(&m), Some(1.0));
    let m = until(&e, "the big key result", |m| {
        get(
            m,
            "dcs_analysis_last_success_timestamp_seconds",
            &id,
            "bigkey",
        )
        .is_some()
    })
    .await;
    assert_eq!(created(&m), Some(1.0), "one scan, never restarted");
    assert_eq!(
        m.get(
            "dcs_bigkey_elements",
            &[("instance_id", id.as_str()), ("key", "biggest")]
        ),
        Some(4.0)
    );
    let failures = |analysis: &str| -> f64 {
        m.family("dcs_analysis_failures_total")
            .iter()
            .filter(|s| s.labels.get("analysis").map(String::as_str) == Some(analysis))
            .filter(|s| s.labels.get("reason").map(String::as_str) != Some("unsupported"))
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(failures("bigkey"), 0.0);
    // The hot key scan started before the second reload was stopped with its loop, which is
    // no failure, and the new loop started its own.
    assert_eq!(failures("hotkey"), 0.0);
    assert_eq!(
        m.get(
            "dcs_analysis_tasks_total",
            &[
                ("instance_id", &id),
                ("analysis", "hotkey"),
                ("origin", "created")
            ],
        ),
        Some(2.0)
    );
    e.stop().await;
}
