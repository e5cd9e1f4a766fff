//! An ACL user made from the README's own text (section "ACL permissions": the `ACL SETUSER`
//! block, and on servers with `CLIENT NO-TOUCH` the commands the next paragraph adds for Redis
//! 7.2+ and Valkey) runs every analysis on every server, so the list and the code cannot drift.

use super::{dataset, expected_top, keys_of, plant, start, wait_success};
use crate::common::redis_server::Server;
use crate::common::servers::{on_each, Outcome, ServerBin};
use crate::common::{wait_for, TempDir};

/// The README's `ACL SETUSER exporter …` arguments after the user name, with `>PASSWORD`
/// replaced by `password`, plus what it says to add on Redis 7.2+ and Valkey when `bin` is one.
fn readme_acl(bin: &ServerBin, password: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let (_, section) = readme
        .split_once("### ACL permissions")
        .expect("README has a section \"ACL permissions\"");
    let (_, from_setuser) = section
        .split_once("ACL SETUSER exporter")
        .expect("the section has an `ACL SETUSER exporter` block");
    let (block, after) = from_setuser
        .split_once("```")
        .expect("the ACL SETUSER block ends");
    let mut args: Vec<String> = block
        .split_whitespace()
        .map(|t| match t {
            ">PASSWORD" => format!(">{password}"),
            t => t.to_owned(),
        })
        .collect();
    assert!(
        args.iter().any(|a| a == "+scan"),
        "README's ACL block lists +scan"
    );
    if bin.has_no_touch() {
        let paragraph = after.trim_start().split("\n\n").next().unwrap_or_default();
        let (_, rest) = paragraph
            .split_once("On Redis 7.2+ and Valkey, add")
            .expect("README says what to add on Redis 7.2+ and Valkey");
        let clause = rest.split(';').next().unwrap_or_default();
        let extra: Vec<String> = clause
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.starts_with('+'))
            .map(str::to_owned)
            .collect();
        assert!(
            !extra.is_empty(),
            "no command named for Redis 7.2+: {clause:?}"
        );
        args.extend(extra);
    }
    args
}

/// A server with the README's user and the dataset; the exporter's config for it.
async fn with_readme_user(bin: &'static ServerBin, keyfamily: &str) -> (Server, String) {
    let server = Server::start_bin(
        bin,
        &["--maxmemory-policy", "allkeys-lfu"],
        Vec::new(),
        false,
    )
    .await;
    let mut setuser = vec!["ACL".to_owned(), "SETUSER".into(), "exporter".into()];
    setuser.extend(readme_acl(bin, "s3cret-pw"));
    let args: Vec<&str> = setuser.iter().map(String::as_str).collect();
    assert_eq!(server.cli(&args).trim(), "OK", "ACL SETUSER {args:?}");
    plant(&server, &dataset());
    let yaml = format!(
        "redis:\n  - id: acl\n    address: {}\n    username: exporter\n    password_file: password\n    analysis: {{bigkey: {{top_n: 3}}, keyfamily: {{mode: {keyfamily}}}}}\nscheduler: {{start_jitter: 0s}}\n",
        server.url()
    );
    (server, yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_user_runs_big_and_hot_key_scans() {
    on_each("matrix_acl", |bin| async move {
        let (_server, yaml) = with_readme_user(bin, "off").await;
        let dir = TempDir::new("matrix");
        dir.write("password", "s3cret-pw\n");
        let (e, _stop) = start(&yaml, &dir).await;
        let m = wait_success(&e, "acl", "bigkey").await;
        assert_eq!(
            keys_of(&m, "dcs_bigkey_elements", "acl"),
            expected_top(&dataset(), 3, false)
        );
        let m = wait_success(&e, "acl", "hotkey").await;
        assert!(!keys_of(&m, "dcs_hotkey_frequency", "acl").is_empty());
        e.stop().await;
        Outcome::Ran
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "README's ACL list lacks +pttl: on every server the big key scan with families \
            fails as auth, `not allowed: PTTL: NOPERM … no permissions to run the 'pttl' \
            command` (dcs_analysis_failures_total{reason=\"auth\"} left: Some(1.0), \
            right: Some(0.0))"]
async fn the_readme_acl_user_runs_key_families() {
    on_each("matrix_acl_families", |bin| async move {
        let (_server, yaml) = with_readme_user(bin, "trigger").await;
        let dir = TempDir::new("matrix");
        dir.write("password", "s3cret-pw\n");
        let (e, _stop) = start(&yaml, &dir).await;
        // The big key scan (which builds the families) ends one way or the other.
        let failures = [
            ("instance_id", "acl"),
            ("analysis", "bigkey"),
            ("reason", "auth"),
        ];
        let m = wait_for("the big key scan of acl", super::DEADLINE, || async {
            let m = e.scrape().await;
            let done = m
                .get(
                    "dcs_analysis_last_success_timestamp_seconds",
                    &[("instance_id", "acl"), ("analysis", "bigkey")],
                )
                .is_some()
                || m.get("dcs_analysis_failures_total", &failures) >= Some(1.0);
            done.then_some(m)
        })
        .await;
        let page = e
            .http
            .get(format!("http://{}/", e.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let refused: Vec<&str> = page.lines().filter(|l| l.contains("permission")).collect();
        assert_eq!(
            m.get("dcs_analysis_failures_total", &failures),
            Some(0.0),
            "auth failures; the status page says {refused:?}"
        );
        let families = m.family("dcs_keyfamily_keys");
        assert!(families
            .iter()
            .any(|s| s.labels.get("instance_id").map(String::as_str) == Some("acl")));
        e.stop().await;
        Outcome::Ran
    })
    .await;
}
