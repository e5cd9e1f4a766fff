//! Big nodes: one key budget per node whatever the number of scans (measured on the server's
//! side), scans not cut off by a timeout meant for DCS, and a timeout that cannot be met said
//! before it bites (check-config --online) and while the scan runs (metric, status page).

use crate::common::redis_server::{available, resp, Server};
use crate::common::{wait_for, TempDir};
use crate::native::{calls, start, wait_success, DEADLINE};

/// `n` one-byte strings, written fast.
fn fill(server: &Server, n: usize) {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(resp(&[b"SET", format!("k:{i}").as_bytes(), b"v"]));
    }
    server.pipe(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_and_big_key_scans_of_one_node_share_its_budget() {
    if !available("one budget per node") {
        return;
    }
    let server = Server::start(&["--maxmemory-policy", "allkeys-lfu"]).await;
    fill(&server, 20_000);
    let dir = TempDir::new("pace");
    let e = start(
        &format!(
            "redis:\n  - id: p\n    address: {}\n    throttle: {{keys_per_second: 2000}}\nscheduler: {{start_jitter: 0s}}\n",
            server.url()
        ),
        &dir,
    )
    .await;
    // Both scans under way, then a window measured on the server: OBJECT FREQ is one per key
    // of the hot key walk, STRLEN one per key of the big key walk (all keys are strings).
    wait_for("both scans running", DEADLINE, || async {
        let m = e.scrape().await;
        let running = |a: &str| {
            m.get(
                "dcs_analysis_scan_keys_scanned",
                &[("instance_id", "p"), ("analysis", a)],
            )
            .is_some_and(|n| n > 0.0)
        };
        (running("hotkey") && running("bigkey")).then_some(())
    })
    .await;
    let walked = || (calls(&server, "object|freq") + calls(&server, "strlen")) as f64;
    let (before, t) = (walked(), tokio::time::Instant::now());
    // Four seconds of both scans: long enough that one batch more or less is noise.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let rate = (walked() - before) / t.elapsed().as_secs_f64();
    let m = e.scrape().await;
    for a in ["hotkey", "bigkey"] {
        assert!(
            m.get(
                "dcs_analysis_scan_keys_scanned",
                &[("instance_id", "p"), ("analysis", a)]
            )
            .is_some(),
            "{a} still running: the window measured both"
        );
    }
    assert!(
        (1500.0..=2300.0).contains(&rate),
        "the node saw {rate:.0} keys/s from two scans at a budget of 2000"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_longer_than_a_dcs_timeout_finishes_and_a_short_own_timeout_is_said_in_advance() {
    if !available("timeouts") {
        return;
    }
    let server = Server::start(&[]).await;
    fill(&server, 16_000);
    let dir = TempDir::new("timeouts");
    let url = server.url();
    // The global timeout (how long to follow a DCS task) is 3s; the scan takes about 8 s.
    let auto = format!(
        "analysis: {{bigkey: {{timeout: 3s}}}}\nredis:\n  - id: auto\n    address: {url}\n    throttle: {{keys_per_second: 2000}}\n    analysis: {{hotkey: {{mode: off}}}}\nscheduler: {{start_jitter: 0s}}\n"
    );
    let e = start(&auto, &dir).await;
    let m = wait_success(&e, "auto", "bigkey").await;
    let took = m
        .get(
            "dcs_analysis_duration_seconds",
            &[("instance_id", "auto"), ("analysis", "bigkey")],
        )
        .unwrap();
    assert!(took > 3.0, "the scan took {took} s: it proves nothing");
    e.stop().await;

    // A timeout the target sets, shorter than the scan: said before and while it runs.
    let short = format!(
        "redis:\n  - id: short\n    address: {url}\n    throttle: {{keys_per_second: 2000}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{timeout: 3s}}}}\nscheduler: {{start_jitter: 0s}}\n"
    );
    let path = dir.write("short.yaml", &short);
    let report = dcs_key_exporter::cli::check_config(&path, true).await;
    let text = report.lines.join("\n");
    assert!(
        text.contains("analysis.bigkey.timeout 3s is shorter than the scan takes (8s)"),
        "{text}"
    );
    assert!(text.contains("bigkey scan of 127.0.0.1:"), "{text}");
    assert!(text.contains("(16000 keys): about 8s"), "{text}");
    assert_eq!(report.exit, 1, "{text}");
    let e = start(&short, &dir).await;
    let labels = [("instance_id", "short"), ("analysis", "bigkey")];
    wait_for("a deadline before the estimate", DEADLINE, || async {
        let m = e.scrape().await;
        let deadline = m.get("dcs_analysis_scan_deadline_timestamp_seconds", &labels)?;
        let eta = m.get(
            "dcs_analysis_scan_estimated_completion_timestamp_seconds",
            &labels,
        )?;
        let page = e
            .http
            .get(format!("http://{}/", e.addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (eta > deadline && page.contains("cut off by its timeout")).then_some(())
    })
    .await;
    crate::native::wait_failure(&e, "short", "bigkey", "timeout").await;
    e.stop().await;
}
