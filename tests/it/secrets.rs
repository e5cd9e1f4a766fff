//! Secrets never leave the process: the real binary runs at `--log.level=trace` against the DCS
//! simulator with distinctive secret keys, a security token and IAM passwords (right and wrong
//! ones, from `${ENV}`, `*_file` paths and inline), and none of them may appear in its stdout,
//! stderr, `/metrics`, the status page or the reload answer. The same run proves that a
//! `secret_key_file` is read again on reload (a rotated Kubernetes secret takes effect).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::TempDir;
use dcs_key_exporter::config;
use dcs_key_exporter::secret::Secret;
use dcs_key_exporter::simulator::{SimConfig, SimIam, SimInstance, Simulator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest wait for any condition.
const DEADLINE: Duration = Duration::from_secs(60);

const RIGHT_SK: &str = "sk-R1ght-5ecret-XYZZY";
const WRONG_SK: &str = "sk-Wr0ng-5ecret-FROBOZZ";
const TOKEN: &str = "tok-3phemeral-PLUGH";
const RIGHT_PW: &str = "pw-R1ght-horse-QUUX";
const WRONG_PW: &str = "pw-Wr0ng-horse-GRAULT";
const SECRETS: [&str; 5] = [RIGHT_SK, WRONG_SK, TOKEN, RIGHT_PW, WRONG_PW];

/// The config: four clouds against the one simulator.
/// - `env-sk`: secret key from `${DCS_TEST_SK}`, security token from `${DCS_TEST_TOKEN}`;
/// - `file-sk`: secret key from `sk.txt`, which starts out wrong and is fixed before a reload;
/// - `iam`: IAM password from `pw.txt`;
/// - `bad-iam`: a wrong inline IAM password.
fn config_yaml(endpoint: &str, project: &str) -> String {
    let analysis =
        "analysis:\n  hotkey:\n    interval: 1s\n    timeout: 20s\n  bigkey:\n    mode: off\n";
    let cloud = |name: &str, auth: &str, id: &str| {
        format!(
            "  - name: {name}\n    region: cn-north-4\n    endpoint: {endpoint}\n    project_id: {project}\n    auth:\n{auth}    instances:\n      - id: {id}\n"
        )
    };
    let iam = |password: &str| {
        format!(
            "      iam_endpoint: {endpoint}\n      user: simulator-user\n      domain: simulator-domain\n{password}"
        )
    };
    format!(
        "{analysis}scheduler:\n  start_jitter: 0s\napi:\n  timeout: 5s\n  max_retries: 1\nclouds:\n{}{}{}{}",
        cloud(
            "env-sk",
            "      access_key: SIMULATORACCESSKEY00\n      secret_key: ${DCS_TEST_SK}\n      security_token: ${DCS_TEST_TOKEN}\n",
            "e0000000-0000-4000-8000-000000000001"
        ),
        cloud(
            "file-sk",
            "      access_key: SIMULATORACCESSKEY00\n      secret_key_file: sk.txt\n",
            "e0000000-0000-4000-8000-000000000002"
        ),
        cloud("iam", &iam("      password_file: pw.txt\n"), "e0000000-0000-4000-8000-000000000003"),
        cloud(
            "bad-iam",
            &iam(&format!("      password: {WRONG_PW}\n")),
            "e0000000-0000-4000-8000-000000000004"
        ),
    )
}

/// Lines a child wrote, collected by a reader thread.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<String>>);

impl Output {
    fn collect(&self, pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let out = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                o.push_str(&line);
                o.push('\n');
            }
        })
    }

    fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Exporter {
    child: Child,
    stdout: Output,
    stderr: Output,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Exporter {
    fn start(config: &Path) -> Exporter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dcs-key-exporter"))
            .arg(format!("--config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=trace")
            .env("DCS_TEST_SK", RIGHT_SK)
            .env("DCS_TEST_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the exporter");
        let (stdout, stderr) = (Output::default(), Output::default());
        let readers = vec![
            stdout.collect(child.stdout.take().expect("stdout")),
            stderr.collect(child.stderr.take().expect("stderr")),
        ];
        Exporter {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// The address from the `listening` log line.
    async fn address(&self) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let log = self.stderr.text();
            if let Some(line) = log.lines().find(|l| l.contains("listening")) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("address="))
                {
                    return addr.trim_matches('"').to_owned();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no listening line:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process with SIGTERM and returns (stdout, stderr).
    fn stop(mut self) -> (String, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        assert!(status.success(), "exit status {status}");
        (self.stdout.text(), self.stderr.text())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls /metrics until `done` holds for it; returns that scrape.
async fn scrape_until(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = match http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last scrape:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a sample with all of `labels` and a value > 0 exists in family `name`.
fn positive(text: &str, name: &str, labels: &[&str]) -> bool {
    text.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels.iter().all(|x| l.contains(x))
            && l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
    })
}

fn succeeded(text: &str, id: &str) -> bool {
    positive(
        text,
        "dcs_analysis_last_success_timestamp_seconds",
        &[&format!("instance_id=\"{id}\""), "analysis=\"hotkey\""],
    )
}

fn auth_failed(text: &str, id: &str) -> bool {
    positive(
        text,
        "dcs_analysis_failures_total",
        &[&format!("instance_id=\"{id}\""), "reason=\"auth\""],
    )
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_nowhere_in_the_output_and_secret_files_are_reread_on_reload() {
    let sim_config = SimConfig {
        secret_key: Secret::new(RIGHT_SK),
        iam: Some(SimIam {
            password: Secret::new(RIGHT_PW),
            ..SimIam::example()
        }),
        instances: [
            "e0000000-0000-4000-8000-000000000001",
            "e0000000-0000-4000-8000-000000000002",
            "e0000000-0000-4000-8000-000000000003",
            "e0000000-0000-4000-8000-000000000004",
        ]
        .into_iter()
        .map(|id| SimInstance::new(id, id))
        .collect(),
        time_scale: 0.02,
        ..SimConfig::with_defaults()
    };
    let sim = Simulator::new(sim_config.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = CancellationToken::new();
    let (s, c) = (sim.clone(), cancel.clone());
    tokio::spawn(async move { s.serve(listener, c).await });
    let _stop_sim = cancel.drop_guard();

    let dir = TempDir::new("dcs-secrets-test");
    dir.write("sk.txt", &format!("{WRONG_SK}\n"));
    dir.write("pw.txt", &format!("{RIGHT_PW}\n"));
    let config = dir.write(
        "config.yml",
        &config_yaml(&endpoint, &sim_config.project_id),
    );

    let exporter = Exporter::start(&config);
    let base = format!("http://{}", exporter.address().await);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // Right credentials (env, env token, password file) succeed; wrong ones fail with `auth`.
    let first = scrape_until(&http, &base, "successes and auth failures", |t| {
        succeeded(t, "e0000000-0000-4000-8000-000000000001")
            && succeeded(t, "e0000000-0000-4000-8000-000000000003")
            && auth_failed(t, "e0000000-0000-4000-8000-000000000002")
            && auth_failed(t, "e0000000-0000-4000-8000-000000000004")
    })
    .await;
    assert!(
        !succeeded(&first, "e0000000-0000-4000-8000-000000000002"),
        "{first}"
    );

    // Rotate the secret file, reload: the new content is read and works.
    dir.write("sk.txt", &format!("{RIGHT_SK}\n"));
    let reload = http
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(reload.status(), reqwest::StatusCode::OK);
    let reload_body = reload.text().await.unwrap_or_default();
    let after = scrape_until(&http, &base, "the rotated secret file to work", |t| {
        succeeded(t, "e0000000-0000-4000-8000-000000000002")
    })
    .await;

    // A reload that fails (a secret file gone) says why without the secret.
    std::fs::remove_file(dir.path("pw.txt")).expect("rm");
    let failed = http
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(failed.status(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    let failed_body = failed.text().await.unwrap_or_default();
    assert!(failed_body.contains("password_file"), "{failed_body}");

    let status_page = http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("status page")
        .text()
        .await
        .expect("body");
    let (stdout, stderr) = exporter.stop();

    // The run did exercise the code paths that could leak: trace logging, auth failures.
    assert!(
        stderr.contains("level=trace") || stderr.contains("level=debug"),
        "{stderr}"
    );
    assert!(
        stderr.contains("auth") || stderr.contains("401"),
        "{stderr}"
    );
    for (what, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("/metrics", &first),
        ("/metrics after reload", &after),
        ("the status page", &status_page),
        ("the reload answer", &reload_body),
        ("the failed reload answer", &failed_body),
    ] {
        assert_no_secret(what, text);
    }
}

#[test]
fn debug_and_errors_of_a_loaded_config_hide_secrets() {
    let dir = TempDir::new("dcs-secrets-test");
    dir.write("sk.txt", RIGHT_SK);
    let path = dir.write(
        "config.yml",
        &config_yaml("http://127.0.0.1:9", "0123456789abcdef0123456789abcdef"),
    );
    dir.write("pw.txt", RIGHT_PW);
    let env = |name: &str| match name {
        "DCS_TEST_SK" => Some(RIGHT_SK.to_owned()),
        "DCS_TEST_TOKEN" => Some(TOKEN.to_owned()),
        _ => None,
    };
    let config = config::load_file_with_env(&path, &env).expect("loads");
    assert_no_secret("Debug of the config", &format!("{config:?}"));
    assert_no_secret("pretty Debug of the config", &format!("{config:#?}"));

    // Problems elsewhere in the file are reported without the secrets next to them.
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("interval: 1s", "interval: soon");
    let bad = dir.write("bad.yml", &text);
    let err = config::load_file_with_env(&bad, &env).expect_err("bad interval");
    assert_no_secret("the config error", &format!("{err} {err:?}"));
    assert_no_secret("the problems", &err.problems().join("\n"));
}

#[test]
fn secret_file_paths_expand_environment_variables() {
    // systemd hands credentials over in ${CREDENTIALS_DIRECTORY}.
    let dir = TempDir::new("dcs-secrets-test");
    dir.write("secret_key", &format!("{RIGHT_SK}\n"));
    let path = dir.write(
        "config.yml",
        "clouds:\n  - region: cn-north-4\n    project_id: 0123456789abcdef0123456789abcdef\n    auth:\n      access_key: AK\n      secret_key_file: ${CREDENTIALS_DIRECTORY}/secret_key\n    instances:\n      - id: 5560df16-cebf-4473-95c4-d1b573c16e79\n",
    );
    let creds = dir.dir().display().to_string();
    let env = |name: &str| (name == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
    let config = config::load_file_with_env(&path, &env).expect("loads");
    match &config.clouds[0].client.auth {
        dcs_key_exporter::dcs::Auth::AkSk { secret_key, .. } => {
            assert_eq!(secret_key.expose(), RIGHT_SK)
        }
        other => panic!("unexpected auth {other:?}"),
    }
}
