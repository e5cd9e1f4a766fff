//! The bad-config corpus in `tests/fixtures/config/`: every file must be refused by the real
//! binary, both by `check-config` and when starting the server, with exit code 2, a message
//! naming the key (and its line where it has one), no panic, and no hang.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

/// Longest a refusal may take: parsing is bounded, a hang is a bug.
const LIMIT: Duration = Duration::from_secs(15);

/// File name → fragments the message must contain (key, line, what is wrong).
const CASES: &[(&str, &[&str])] = &[
    (
        "unknown_key.yaml",
        &["clouds[0].regoin", "unknown field `regoin`", "line 4"],
    ),
    (
        "unknown_top_level_key.yaml",
        &["scrape", "unknown field", "line 11"],
    ),
    (
        "wrong_type_top_n.yaml",
        &[
            "clouds[0].instances[0].analysis.hotkey.top_n",
            "invalid type",
            "line 13",
        ],
    ),
    (
        "wrong_type_clouds.yaml",
        &["clouds", "expected a sequence", "line 3"],
    ),
    (
        "wrong_type_mode.yaml",
        &[
            "clouds[0].instances[0].analysis.bigkey.mode",
            "`sometimes`",
            "line 13",
        ],
    ),
    (
        "negative_number.yaml",
        &["api.max_retries", "-1", "line 12"],
    ),
    (
        "number_overflow.yaml",
        &["api.max_concurrent_requests", "line 12"],
    ),
    (
        "bad_duration.yaml",
        &[
            "clouds[0].instances[0].analysis.hotkey.interval",
            "invalid duration \"5 parsecs\"",
            "line 13",
        ],
    ),
    (
        "negative_duration.yaml",
        &[
            "api.timeout",
            "invalid duration \"-30s\": durations cannot be negative",
            "line 12",
        ],
    ),
    (
        "zero_timeout.yaml",
        &["api.timeout", "must be greater than 0", "line 12"],
    ),
    (
        "impossible_top_n.yaml",
        &[
            "clouds[0].instances[0].analysis.bigkey.top_n",
            "between 1 and 1000",
            "line 13",
        ],
    ),
    (
        "impossible_interval.yaml",
        &["analysis.hotkey.interval", "at least 1s", "line 13"],
    ),
    (
        "impossible_retries.yaml",
        &["api.max_retries", "at most 10", "line 12"],
    ),
    (
        "impossible_response_cap.yaml",
        &["api.max_response_bytes", "at least 1024", "line 12"],
    ),
    (
        "bad_endpoint.yaml",
        &["clouds[0].endpoint", "http:// or https://", "line 4"],
    ),
    (
        "bad_namespace.yaml",
        &["metrics.namespace", "9lives", "line 12"],
    ),
    (
        "bad_instance_id.yaml",
        &[
            "clouds[0].instances[0].id",
            "not a DCS instance id",
            "line 10",
        ],
    ),
    (
        "missing_project_id.yaml",
        &["clouds[0].project_id", "is required", "line 3"],
    ),
    (
        "missing_auth.yaml",
        &["clouds[0].auth", "is required", "line 3"],
    ),
    (
        "missing_secret_key.yaml",
        &["clouds[0].auth.secret_key", "is required", "line 6"],
    ),
    (
        "missing_instance_id.yaml",
        &["clouds[0].instances[0].id", "is required", "line 10"],
    ),
    (
        "missing_instances.yaml",
        &["clouds[0].instances", "at least one instance", "line 3"],
    ),
    (
        "unset_env_var.yaml",
        &[
            "clouds[0].auth.access_key",
            "DCS_EXPORTER_TEST_SURELY_UNSET_VARIABLE is not set",
            "line 7",
        ],
    ),
    (
        "missing_secret_file.yaml",
        &[
            "clouds[0].auth.secret_key_file",
            "cannot read",
            "no-such-dir/secret-key",
            "line 8",
        ],
    ),
    (
        "unreadable_secret_file.yaml",
        &["clouds[0].auth.secret_key_file", "cannot read", "line 8"],
    ),
    (
        "both_secret_and_file.yaml",
        &["clouds[0].auth.secret_key", "not both", "line 8"],
    ),
    (
        "duplicate_instances.yaml",
        &[
            "clouds[0].instances[1].id",
            "duplicate instance 5560df16-cebf-4473-95c4-d1b573c16e79",
            "line 12",
        ],
    ),
    (
        "duplicate_key.yaml",
        &["clouds[0].instances[0]", "duplicate field `id`", "line 10"],
    ),
    ("yaml_bomb.yaml", &["unknown field `a`", "line 2"]),
    (
        "yaml_bomb_in_tags.yaml",
        &["clouds[0].discovery.tags.a", "invalid type", "line 11"],
    ),
    (
        "deep_nesting.yaml",
        &["clouds[0]", "invalid type", "line 2"],
    ),
    ("syntax_tab_indent.yaml", &["clouds", "line 3"]),
    ("syntax_unclosed.yaml", &["clouds[0]: ", "line 4"]),
    ("not_utf8.yaml", &["not valid UTF-8", "line 3"]),
    ("empty.yaml", &["clouds", "at least one cloud is required"]),
    (
        "only_comments.yaml",
        &["clouds", "at least one cloud is required"],
    ),
    ("scalar_document.yaml", &["(top level)", "invalid type"]),
    (
        "unknown_key_redis_hotkey.yaml",
        &[
            "redis[0].analysis.hotkey.fresh_backup: unknown field `fresh_backup`, expected one \
             of `mode`, `interval`, `timeout`, `top_n`, `source`, `monitor`, `hotkeys`; only \
             analysis.keyfamily takes fresh_backup",
            "line 8",
        ],
    ),
    (
        "unknown_key_redis_keyfamily.yaml",
        &[
            "redis[0].analysis.keyfamily.interval: unknown field `interval`, expected one of \
             `mode`, `top_n`, `families`; the key families of a Redis or Valkey target come \
             with every big key scan: set analysis.bigkey.interval",
            "line 7",
        ],
    ),
    (
        "redis_port_zero.yaml",
        &[
            "redis[0].address: port 0 is not a port a server listens on",
            "line 4",
        ],
    ),
    (
        "redis_bad_escape.yaml",
        &[
            "redis[0].address: the password in the address has an invalid percent escape",
            "write a literal `%` as %25",
            "line 4",
        ],
    ),
    (
        "redis_password_procfs.yaml",
        &[
            "redis[0].password_file: cannot read /proc/self/environ: is not a regular file (it \
             is on procfs",
            "line 5",
        ],
    ),
    (
        "redis_bad_address.yaml",
        &[
            "redis[0].address: not a Redis address",
            "write redis://HOST:PORT (rediss:// for TLS) or HOST:PORT",
            "line 3",
        ],
    ),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// Runs the binary with `args`, killing it (and failing) after [`LIMIT`].
async fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcs-key-exporter"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The flags' environment variables must not leak in from the caller.
    for (k, _) in std::env::vars() {
        if k.starts_with("DCS_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    match tokio::time::timeout(LIMIT, cmd.output()).await {
        Ok(out) => out.expect("binary runs"),
        Err(_) => panic!("{args:?} still running after {LIMIT:?}"),
    }
}

/// Checks one refusal; returns what is wrong with it, if anything.
async fn check(file: &Path, fragments: &[&str]) -> Vec<String> {
    let path = file.to_str().expect("UTF-8 path");
    let config_flag = format!("--config.file={path}");
    let mut wrong = Vec::new();
    for (mode, args) in [
        ("check-config", vec!["check-config", config_flag.as_str()]),
        (
            "server",
            vec![config_flag.as_str(), "--web.listen-address=127.0.0.1:0"],
        ),
    ] {
        let out = run(&args).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let name = file.file_name().unwrap().to_string_lossy();
        if out.status.code() != Some(2) {
            wrong.push(format!("{name} ({mode}): exit {:?}\n{text}", out.status));
        }
        if text.contains("panicked") {
            wrong.push(format!("{name} ({mode}): panicked\n{text}"));
        }
        for f in fragments {
            if !text.contains(f) {
                wrong.push(format!("{name} ({mode}): no {f:?} in\n{text}"));
            }
        }
    }
    wrong
}

#[tokio::test]
async fn every_bad_config_is_refused_clearly() {
    let dir = corpus();
    let mut wrong = Vec::new();
    for (file, fragments) in CASES {
        wrong.extend(check(&dir.join(file), fragments).await);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn the_table_covers_the_whole_corpus() {
    let mut files: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every fixture has a row, every row a fixture"
    );
}

/// A refused address is named by its key, never repeated: it may hold a password.
#[tokio::test]
async fn a_refused_address_never_repeats_its_password() {
    let path = corpus().join("redis_bad_escape.yaml");
    let path = path.to_str().expect("UTF-8 path");
    for args in [
        vec!["check-config".to_owned(), format!("--config.file={path}")],
        vec![
            format!("--config.file={path}"),
            "--web.listen-address=127.0.0.1:0".to_owned(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("redis[0].address"), "{text}");
        assert!(
            !text.contains("s3cr"),
            "{args:?} repeats the password: {text}"
        );
    }
}

#[tokio::test]
async fn a_huge_config_is_refused_before_parsing() {
    // Generated rather than committed: 2 MiB of comments after a valid start.
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("huge-config.yaml");
    let mut text = String::from("clouds: []\n");
    while text.len() < 2 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, text).unwrap();
    let wrong = check(&path, &["larger than 1048576 bytes"]).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[tokio::test]
async fn a_missing_config_file_is_refused() {
    let path = corpus().join("no-such-file.yaml");
    let wrong = check(&path, &["no-such-file.yaml", "cannot read config file"]).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// Every file a config names gets the checks the config file gets, in `check-config` and at
/// the start: a FIFO answers at once instead of blocking, `/dev/zero` and procfs are refused
/// unread, and so is a file of 100 MiB. Generated: a FIFO cannot be committed.
#[tokio::test]
async fn files_named_by_a_config_are_refused_without_blocking() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("config-files");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let huge = dir.join("huge.pem");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let mut wrong = Vec::new();
    let not_a_file =
        |it: &str| format!("is not a regular file (it is {it}); give the path of a file");
    let procfs = not_a_file("on procfs, made up by the kernel as it is read");
    for (file, what) in [
        (
            fifo.display().to_string(),
            [not_a_file("a FIFO"), not_a_file("a FIFO")],
        ),
        (
            "/dev/zero".to_owned(),
            [not_a_file("a device"), not_a_file("a device")],
        ),
        (
            "/proc/self/environ".to_owned(),
            [procfs.clone(), procfs.clone()],
        ),
        (
            huge.display().to_string(),
            // Secrets and keys, certificates.
            [
                "is larger than 65536 bytes".to_owned(),
                "is larger than 1048576 bytes".to_owned(),
            ],
        ),
    ] {
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "redis:\n  - address: rediss://127.0.0.1:6380\n    password_file: {file}\n    tls:\n      ca_file: {file}\n      cert_file: {file}\n      key_file: {file}\n"
            ),
        )
        .unwrap();
        let fragments: Vec<String> = [
            ("redis[0].password_file", 3, &what[0]),
            ("redis[0].tls.ca_file", 5, &what[1]),
            ("redis[0].tls.cert_file", 6, &what[1]),
            ("redis[0].tls.key_file", 7, &what[0]),
        ]
        .iter()
        .map(|(key, line, what)| format!("{key}: cannot read {file}: {what} (line {line})"))
        .collect();
        let fragments: Vec<&str> = fragments.iter().map(String::as_str).collect();
        wrong.extend(check(&config, &fragments).await);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
