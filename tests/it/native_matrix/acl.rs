//! An ACL user made from the README's own text (section "ACL permissions": the base
//! `ACL SETUSER` line, and on servers with `CLIENT NO-TOUCH` the line that adds it) runs every
//! analysis on every server, so the list and the code cannot drift on any version. (Removing
//! each permission in turn is `native_acl`, on the first server.)

use super::{dataset, expected_top, keys_of, plant, start, wait_success, DEADLINE};
use crate::common::redis_server::Server;
use crate::common::servers::{on_each, Outcome, ServerBin};
use crate::common::{wait_for, TempDir};

/// The README's `ACL SETUSER` commands for `bin`, with `>PASSWORD` replaced by `password`:
/// the base line, and the `CLIENT NO-TOUCH` and `CLUSTER SLOT-STATS` lines where `bin` has them.
fn readme_acl(bin: &ServerBin, password: &str) -> Vec<Vec<String>> {
    let [base, no_touch, slot_stats] = crate::common::readme::acl_lines(password);
    let mut lines = vec![base];
    if bin.has_no_touch() {
        lines.push(no_touch);
    }
    if bin.has_slot_stats() {
        lines.push(slot_stats);
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_user_runs_every_analysis_without_touching_where_it_can() {
    on_each("matrix_acl", |bin| async move {
        let server = Server::start_bin(
            bin,
            &["--maxmemory-policy", "allkeys-lfu"],
            Vec::new(),
            false,
        )
        .await;
        for line in readme_acl(bin, "s3cret-pw") {
            let args: Vec<&str> = line.iter().map(String::as_str).collect();
            assert_eq!(server.cli(&args).trim(), "OK", "{args:?}");
        }
        let keys = dataset();
        plant(&server, &keys);
        let dir = TempDir::new("matrix");
        dir.write("password", "s3cret-pw\n");
        let (e, _stop) = start(
            &format!(
                "redis:\n  - id: acl\n    address: {}\n    username: exporter\n    password_file: password\n    analysis: {{bigkey: {{top_n: 3}}, keyfamily: {{mode: trigger}}}}\nscheduler: {{start_jitter: 0s}}\n",
                server.url()
            ),
            &dir,
        )
        .await;
        // The big key scan (which also builds the families) ends one way or the other.
        let auth = |analysis| {
            [
                ("instance_id", "acl"),
                ("analysis", analysis),
                ("reason", "auth"),
            ]
        };
        let m = wait_for("the big key scan of acl", DEADLINE, || async {
            let m = e.scrape().await;
            let done = m
                .get(
                    "dcs_analysis_last_success_timestamp_seconds",
                    &[("instance_id", "acl"), ("analysis", "bigkey")],
                )
                .is_some()
                || m.get("dcs_analysis_failures_total", &auth("bigkey")) >= Some(1.0);
            done.then_some(m)
        })
        .await;
        let page = e.page().await;
        let refused: Vec<&str> = page.lines().filter(|l| l.contains("permission")).collect();
        assert_eq!(
            m.get("dcs_analysis_failures_total", &auth("bigkey")),
            Some(0.0),
            "auth failures; the status page says {refused:?}"
        );
        assert_eq!(
            keys_of(&m, "dcs_bigkey_elements", "acl"),
            expected_top(&keys, 3, false)
        );
        let families = m.family("dcs_keyfamily_keys");
        assert!(families
            .iter()
            .any(|s| s.labels.get("instance_id").map(String::as_str) == Some("acl")));
        let m = wait_success(&e, "acl", "hotkey").await;
        assert!(!keys_of(&m, "dcs_hotkey_frequency", "acl").is_empty());
        assert_eq!(
            m.get("dcs_analysis_failures_total", &auth("hotkey")),
            Some(0.0)
        );
        // With the README's second line, CLIENT NO-TOUCH is allowed where the server has it.
        let touches = m.get(
            "dcs_analysis_scan_touches_keys",
            &[("instance_id", "acl"), ("analysis", "bigkey")],
        );
        assert_eq!(touches, Some(if bin.has_no_touch() { 0.0 } else { 1.0 }));
        e.stop().await;
        Outcome::Ran
    })
    .await;
}
