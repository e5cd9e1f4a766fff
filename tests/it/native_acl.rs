//! The README's ACL user, as written there, against a real server: every analysis works with
//! it, and without any one of its permissions the analyses that need it fail as `auth` and
//! `check-config --online` names the permission. The README and the code cannot drift apart.

use std::collections::BTreeMap;

use crate::common::redis_server::{available, Server};
use crate::common::TempDir;
use crate::native::{dataset, plant, start, wait_failure, wait_success};

/// Whether the server has `CLIENT NO-TOUCH` (Redis 7.2+, Valkey).
fn has_no_touch(server: &Server) -> bool {
    let info = server.cli(&["INFO", "server"]);
    if info.contains("valkey_version:") {
        return true;
    }
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("0.0")
        .trim()
        .to_owned();
    let mut p = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    (p.next().unwrap_or(0), p.next().unwrap_or(0)) >= (7, 2)
}

fn setuser(server: &Server, line: &[String], user: &str, without: Option<&str>) {
    let args: Vec<String> = line
        .iter()
        .map(|a| match a.as_str() {
            "exporter" => user.to_owned(),
            ">PASSWORD" => ">s3cret-pw".to_owned(),
            other => other.to_owned(),
        })
        .filter(|a| Some(a.as_str()) != without)
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = server.cli(&args);
    assert_eq!(out.trim(), "OK", "{args:?}: {out}");
}

/// `check-config --online` of the config at `path`: the line of each target, by id.
async fn check_lines(path: &std::path::Path) -> impl Fn(&str) -> String {
    let report = dcs_key_exporter::cli::check_config(path, true).await;
    move |id: &str| {
        report
            .lines
            .iter()
            .find(|l| l.starts_with(&format!("redis {id}:")))
            .unwrap_or_else(|| panic!("no line for {id} in:\n{}", report.lines.join("\n")))
            .clone()
    }
}

/// The analyses (of hot key, big key with families) that must fail without `perm` on a
/// standalone server; the others must succeed.
fn needed_by(perm: &str) -> &'static [&'static str] {
    match perm {
        "+ping" | "+select" | "+info" | "+scan" | "+type" => &["hotkey", "bigkey"],
        "+randomkey" | "+object|freq" => &["hotkey"],
        "+strlen" | "+llen" | "+scard" | "+zcard" | "+hlen" | "+xlen" | "+memory|usage"
        | "+pttl" => &["bigkey"],
        // Only clusters need these.
        "+cluster|nodes" | "+readonly" => &[],
        other => panic!("the README lists {other}: say here which analyses need it"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_user_runs_every_analysis_and_each_permission_is_needed() {
    if !available("readme acl") {
        return;
    }
    let server = Server::start(&["--maxmemory-policy", "allkeys-lfu"]).await;
    let lines = crate::common::readme::acl_lines("PASSWORD");
    let no_touch = has_no_touch(&server);
    setuser(&server, &lines[0], "exporter", None);
    if no_touch {
        setuser(&server, &lines[1], "exporter", None);
    }
    let perms: Vec<String> = lines[0]
        .iter()
        .filter(|a| a.starts_with('+'))
        .cloned()
        .collect();
    assert!(perms.len() >= 17, "{perms:?}");
    let mut users = BTreeMap::new();
    for (i, perm) in perms.iter().enumerate() {
        let user = format!("without{i}");
        setuser(&server, &lines[0], &user, Some(perm));
        users.insert(user, perm.clone());
    }
    // Keys in databases 0 and 3 of every type, with names whose shapes mislead the type guess,
    // so that every command of the list is sent.
    let keys = dataset();
    plant(&server, &keys);
    for k in ["mixed:1", "mixed:2"] {
        server.cli(&["SET", k, "v"]);
    }
    server.cli(&["RPUSH", "mixed:3", "a"]);

    let dir = TempDir::new("acl");
    dir.write("password", "s3cret-pw\n");
    let url = server.url();
    let target = |id: &str, user: &str| {
        format!(
            "  - id: {id}\n    address: {url}\n    username: {user}\n    password_file: password\n    analysis: {{bigkey: {{top_n: 3}}, keyfamily: {{mode: trigger}}}}\n"
        )
    };
    let mut yaml = String::from("redis:\n");
    yaml.push_str(&target("readme", "exporter"));
    for user in users.keys() {
        yaml.push_str(&target(user, user));
    }
    yaml.push_str("scheduler: {start_jitter: 0s}\n");
    let path = dir.write("config.yaml", &yaml);

    // check-config --online: OK for the README's user, the missing permission named for the
    // others (those a standalone server does not need aside).
    let line_of = check_lines(&path).await;
    let readme_line = line_of("readme");
    assert!(readme_line.contains(": OK: "), "{readme_line}");
    for (user, perm) in &users {
        let line = line_of(user);
        if needed_by(perm).is_empty() {
            assert!(line.contains(": OK: "), "{perm}: {line}");
        } else {
            assert!(
                line.contains(&format!("lacks {perm} ")) || line.contains("FAILED"),
                "{perm}: {line}"
            );
            assert!(line.contains("FAILED"), "{perm}: {line}");
        }
    }

    let e = start(&yaml, &dir).await;
    for analysis in ["hotkey", "bigkey", "keyfamily"] {
        wait_success(&e, "readme", analysis).await;
    }
    let m = e.scrape().await;
    assert_eq!(
        m.get(
            "dcs_analysis_scan_touches_keys",
            &[("instance_id", "readme"), ("analysis", "bigkey")]
        ),
        Some(if no_touch { 0.0 } else { 1.0 }),
        "touching is said as it is"
    );
    for (user, perm) in &users {
        let needs = needed_by(perm);
        for analysis in ["hotkey", "bigkey"] {
            // The hot key winners are sized too: whether a size command is needed there
            // depends on their types.
            let sizes_winners = analysis == "hotkey"
                && matches!(
                    perm.as_str(),
                    "+strlen" | "+llen" | "+scard" | "+zcard" | "+hlen" | "+xlen"
                );
            if sizes_winners {
                continue;
            }
            if needs.contains(&analysis) {
                wait_failure(&e, user, analysis, "auth").await;
            } else {
                wait_success(&e, user, analysis).await;
            }
        }
    }
    // The status page names the refused command.
    let page = e.page().await;
    assert!(
        page.contains("no permissions to run the &#39;pttl&#39; command")
            || page.contains("no permissions to run the 'pttl' command"),
        "pttl named on the status page"
    );
    e.stop().await;
}

/// `source: monitor` needs `+command` beside `+monitor` (the README's list for the other
/// sources): `check-config --online` names it when it is missing, and a sample without it
/// fails as `auth`; with the README's permissions the sample runs. `source: hotkeys` on a
/// server without `HOTKEYS` is not reported as lacking `+hotkeys` (the server does not know
/// the command, which no permission changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_samples_need_the_command_table_and_check_config_says_so() {
    if !available("monitor acl") {
        return;
    }
    let server = Server::start(&[]).await;
    let lines = crate::common::readme::acl_lines("PASSWORD");
    // The permissions the README lists for MONITOR samples, on top of the first line.
    let monitor = ["+monitor", "+command", "+client|info", "+client|setname"];
    let readme = crate::common::readme::text();
    assert!(
        readme.contains("`+monitor +command\n+client|info +client|setname` (`source: monitor`)"),
        "the README lists the MONITOR permissions"
    );
    let with = |user: &str, without: Option<&str>| {
        setuser(&server, &lines[0], user, None);
        let extra: Vec<&str> = monitor
            .iter()
            .copied()
            .filter(|p| Some(*p) != without)
            .collect();
        let mut args = vec!["ACL", "SETUSER", user];
        args.extend(extra);
        assert_eq!(server.cli(&args).trim(), "OK");
    };
    with("full", None);
    with("nocommand", Some("+command"));
    setuser(&server, &lines[0], "nohotkeys", None);
    for i in 0..50 {
        server.cli(&["SET", &format!("k:{i}"), "v"]);
    }

    let dir = TempDir::new("acl-monitor");
    dir.write("password", "s3cret-pw\n");
    let url = server.url();
    let target = |id: &str, user: &str, source: &str| {
        format!(
            "  - id: {id}\n    address: {url}\n    username: {user}\n    password_file: password\n    analysis: {{hotkey: {{source: {source}, monitor: {{window: 1s}}}}, bigkey: {{mode: off}}, keyfamily: {{mode: off}}}}\n"
        )
    };
    let yaml = format!(
        "redis:\n{}{}{}scheduler: {{start_jitter: 0s}}\n",
        target("full", "full", "monitor"),
        target("nocommand", "nocommand", "monitor"),
        target("nohotkeys", "nohotkeys", "hotkeys"),
    );
    let path = dir.write("config.yaml", &yaml);
    let line_of = check_lines(&path).await;
    let full = line_of("full");
    assert!(full.contains(": OK: "), "{full}");
    let line = line_of("nocommand");
    assert!(
        line.contains("FAILED") && line.contains("lacks +command "),
        "{line}"
    );
    let nohotkeys = line_of("nohotkeys");
    assert!(!nohotkeys.contains("+hotkeys"), "{nohotkeys}");

    let e = start(&yaml, &dir).await;
    wait_success(&e, "full", "hotkey").await;
    wait_failure(&e, "nocommand", "hotkey", "auth").await;
    e.stop().await;
}
