//! The real binary as a process, against the DCS simulator running in this test process:
//! SIGKILL and restart (adoption, no duplicate task, the last result at once), config reload by
//! SIGHUP and `POST /-/reload` (broken configs rejected, instances added and removed, secret
//! files re-read), and SIGTERM during requests in flight (exit 0 within the grace period).
//!
//! The exporter listens on 127.0.0.1:0 and the test reads the bound address from its
//! `listening` log line. Signals are sent with `kill(1)` to the child's own pid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{finished, newest_success, parse_exposition, start_sim, wait_for, Metrics};
use dcs_key_exporter::dcs::{Analysis, TaskStatus};
use dcs_key_exporter::simulator::{Faults, SimClock, SimConfig, SimInstance};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Longest wait for any condition.
const DEADLINE: Duration = Duration::from_secs(60);
/// The exporter's documented shutdown grace period.
const GRACE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Harness

/// A scratch directory for one test's config and secret files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("process-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `instances:` entry.
fn instance_yaml(id: &str, hot: &str, big: &str) -> String {
    format!(
        "      - id: {id}\n        name: n-{id}\n        analysis:\n          hotkey: {hot}\n          bigkey: {big}\n"
    )
}

/// A config for the simulator at `url`; the secret key is read from the file `sk` next to it.
fn config_yaml(url: &url::Url, instances: &[String]) -> String {
    format!(
        "clouds:
  - name: sim
    endpoint: {url}
    project_id: {project}
    auth:
      access_key: {ak}
      secret_key_file: sk
    instances:
{instances}scheduler:
  start_jitter: 0s
api:
  timeout: 20s
  max_retries: 1
",
        project = dcs_key_exporter::simulator::DEFAULT_PROJECT_ID,
        ak = dcs_key_exporter::simulator::DEFAULT_ACCESS_KEY,
        instances = instances.concat(),
    )
}

fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn write_secret(dir: &Path, secret: &str) {
    std::fs::write(dir.join("sk"), format!("{secret}\n")).unwrap();
}

pub(crate) struct Exporter {
    child: Child,
    addr: SocketAddr,
    /// When its `listening` line appeared.
    listening_at: Instant,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

async fn spawn_exporter(config: &Path) -> Exporter {
    spawn_exporter_limited(config, None).await
}

/// The exporter as a process, with its open-file limit (`ulimit -n`) set to `nofile`.
pub(crate) async fn spawn_exporter_limited(config: &Path, nofile: Option<u32>) -> Exporter {
    let bin = env!("CARGO_BIN_EXE_dcs-key-exporter");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg(format!("--config.file={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("DCS_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    let (child, addr, log) = spawn_listening(cmd).await;
    Exporter {
        child,
        addr,
        listening_at: Instant::now(),
        log,
        http: reqwest::Client::new(),
    }
}

/// Starts `cmd` (the exporter, its stderr piped) and waits for its `listening` log line: the
/// child, the address it listens on, and its log, kept as it comes.
pub(crate) async fn spawn_listening(
    mut cmd: Command,
) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut child = cmd.spawn().expect("the exporter starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening") {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("address="))
                        .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok());
                    if let (Some(a), Some(tx)) = (addr, addr_tx.take()) {
                        let _ = tx.send(a);
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let addr = match tokio::time::timeout(DEADLINE, addr_rx).await {
        Ok(Ok(a)) => a,
        _ => panic!(
            "no listening line; log:\n{}",
            log.lock().unwrap().join("\n")
        ),
    };
    (child, addr, log)
}

impl Exporter {
    /// The process' peak resident memory (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("still running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub(crate) async fn scrape(&self) -> Metrics {
        let resp = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("scrape");
        assert_eq!(resp.status(), 200);
        Metrics(parse_exposition(&resp.text().await.unwrap()))
    }

    async fn reload(&self) -> (u16, String) {
        let resp = self
            .http
            .post(format!("http://{}/-/reload", self.addr))
            .send()
            .await
            .expect("reload request");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -s {name} {pid}");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for the exit; returns its code and how long it took.
    async fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => (status.unwrap().code(), started.elapsed()),
            Err(_) => panic!("still running after {limit:?}; log:\n{}", self.log()),
        }
    }
}

fn al<'a>(id: &'a str, a: &'a str) -> [(&'a str, &'a str); 2] {
    [("instance_id", id), ("analysis", a)]
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_adopts_the_running_task_and_publishes_at_once() {
    let id = "b0000000-0000-4000-8000-000000000001";
    // A manual clock: tasks move only when the test advances it.
    let start = time::OffsetDateTime::now_utc() - Duration::from_secs(3600);
    let clock = SimClock::manual(start);
    let sim = start_sim(SimConfig {
        seed: 5,
        instances: vec![SimInstance::new(id, "restarted")],
        time_scale: 0.05,
        clock: clock.clone(),
        ..SimConfig::with_defaults()
    })
    .await;
    // An hour-old result exists before the exporter ever runs.
    sim.sim.run_autoscan_now(id, Analysis::Bigkey);
    clock.advance(Duration::from_secs(3600));
    let seeded = newest_success(&sim.sim, id, Analysis::Bigkey).expect("seeded result");

    let dir = scratch("restart");
    write_secret(&dir, dcs_key_exporter::simulator::DEFAULT_SECRET_KEY);
    let big = "{mode: trigger, interval: 30m, timeout: 2h, top_n: 5}";
    let config = write_config(
        &dir,
        &config_yaml(&sim.url, &[instance_yaml(id, "{mode: \"off\"}", big)]),
    );
    let l = al(id, "bigkey");

    // The result is older than the interval: the first exporter creates a task, which stays
    // waiting while the simulated clock stands still.
    let mut first = spawn_exporter(&config).await;
    wait_for("a task created and running", DEADLINE, || async {
        let m = first.scrape().await;
        let running = m.get("dcs_analysis_running", &l) == Some(1.0);
        (running && sim.sim.created_count(id, Analysis::Bigkey) == 1).then_some(())
    })
    .await;
    let running = sim
        .sim
        .tasks(id, Analysis::Bigkey)
        .into_iter()
        .find(|t| t.status.is_active())
        .expect("an active task");
    let creates = sim.sim.operation_count("CreateBigkeyScanTask");
    first.child.start_kill().expect("SIGKILL");
    let (code, _) = first.wait_exit(DEADLINE).await;
    assert_eq!(code, None, "killed by a signal");

    // The second exporter shows the last result at once and follows the same task.
    let second = spawn_exporter(&config).await;
    let shown_after = wait_for("the last result", DEADLINE, || async {
        let m = second.scrape().await;
        let shown = m.get("dcs_analysis_last_success_timestamp_seconds", &l)?;
        ((shown - finished(&seeded)).abs() < 1e-3).then(|| second.listening_at.elapsed())
    })
    .await;
    eprintln!("the restarted exporter showed the last result {shown_after:?} after listening");
    assert!(
        shown_after < Duration::from_secs(3),
        "the last result took {shown_after:?} to appear"
    );
    let m = wait_for("the running task adopted", DEADLINE, || async {
        let m = second.scrape().await;
        let adopted = [l.as_slice(), &[("origin", "adopted")]].concat();
        (m.get("dcs_analysis_running", &l) == Some(1.0)
            && m.get("dcs_analysis_tasks_total", &adopted)? >= 1.0)
            .then_some(m)
    })
    .await;
    // top_n 5 per unit: the seeded result's strings and collections.
    assert_eq!(m.count("dcs_bigkey_size_bytes", id), 5);
    assert_eq!(m.count("dcs_bigkey_elements", id), 5);
    let created = [l.as_slice(), &[("origin", "created")]].concat();
    assert_eq!(m.get("dcs_analysis_tasks_total", &created), Some(0.0));
    assert!(
        second.log().contains(&running.id),
        "the log names the adopted task"
    );

    // The adopted task ends; the restarted exporter publishes it, still without a new task.
    let wall = || time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let advanced_at = wall();
    clock.advance(Duration::from_secs(600));
    let done = sim
        .sim
        .tasks(id, Analysis::Bigkey)
        .into_iter()
        .find(|t| t.id == running.id)
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    // DCS may date its end ahead of the exporter's clock (the simulated clock stood still, then
    // jumped): then it is exported as the time the exporter saw it, never in the future.
    let want = finished(&done);
    wait_for("the adopted task's result", DEADLINE, || async {
        let m = second.scrape().await;
        let shown = m.get("dcs_analysis_last_success_timestamp_seconds", &l)?;
        let seen_when = want > advanced_at && shown >= advanced_at && shown <= wall();
        ((shown - want).abs() < 1e-3 || seen_when).then_some(())
    })
    .await;
    assert_eq!(
        sim.sim.created_count(id, Analysis::Bigkey),
        1,
        "no duplicate"
    );
    assert_eq!(sim.sim.operation_count("CreateBigkeyScanTask"), creates);
    let mut second = second;
    second.signal("TERM");
    assert_eq!(second.wait_exit(DEADLINE).await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_sighup_and_http_rejects_broken_configs_and_rereads_secrets() {
    let (a, b) = (
        "b0000000-0000-4000-8000-00000000000a",
        "b0000000-0000-4000-8000-00000000000b",
    );
    let sim = start_sim(SimConfig {
        seed: 6,
        instances: vec![SimInstance::new(a, "first"), SimInstance::new(b, "second")],
        time_scale: 0.05,
        ..SimConfig::with_defaults()
    })
    .await;
    let dir = scratch("reload");
    write_secret(&dir, dcs_key_exporter::simulator::DEFAULT_SECRET_KEY);
    let hot = "{mode: trigger, interval: 1s, timeout: 30s, top_n: 3}";
    let off = "{mode: \"off\"}";
    let only_a = config_yaml(&sim.url, &[instance_yaml(a, hot, off)]);
    let only_b = config_yaml(&sim.url, &[instance_yaml(b, hot, off)]);
    let config = write_config(&dir, &only_a);
    let mut exp = spawn_exporter(&config).await;
    let reloaded = |m: &Metrics| m.get("dcs_exporter_config_last_reload_successful", &[]);
    let hl = al(a, "hotkey");
    let first = wait_for("instance a's keys", DEADLINE, || async {
        let m = exp.scrape().await;
        (m.count("dcs_hotkey_frequency", a) == 3).then(|| {
            m.get("dcs_analysis_last_success_timestamp_seconds", &hl)
                .unwrap()
        })
    })
    .await;
    assert_eq!(reloaded(&exp.scrape().await), Some(1.0));

    // A broken config is refused with its reason; the old one keeps running.
    write_config(&dir, &only_a.replace("top_n: 3", "top_n: lots"));
    let (status, body) = exp.reload().await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("top_n"), "the reason names the key: {body}");
    wait_for("a newer result under the old config", DEADLINE, || async {
        let m = exp.scrape().await;
        assert_eq!(reloaded(&m), Some(0.0));
        let shown = m.get("dcs_analysis_last_success_timestamp_seconds", &hl)?;
        (shown > first && m.count("dcs_hotkey_frequency", a) == 3).then_some(())
    })
    .await;

    // A secret "file" that is a FIFO is refused at once, naming the key and the file: the
    // reload does not wait for a writer that never comes.
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    write_config(
        &dir,
        &only_a.replace("secret_key_file: sk", "secret_key_file: fifo"),
    );
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), exp.reload())
        .await
        .expect("a reload with a FIFO answers");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("clouds[0].auth.secret_key_file")
            && body.contains("fifo: is not a regular file (it is a FIFO)"),
        "{body}"
    );

    // SIGHUP with a good config: b starts, a stops and its series disappear.
    write_config(&dir, &only_b);
    exp.signal("HUP");
    wait_for("b in, a out", DEADLINE, || async {
        let m = exp.scrape().await;
        (reloaded(&m) == Some(1.0)
            && m.count("dcs_hotkey_frequency", b) == 3
            && m.series_of(a) == 0)
            .then_some(())
    })
    .await;
    let creates_a = sim.sim.created_count(a, Analysis::Hotkey);

    // The secret file is read again on reload: a wrong secret turns into auth failures...
    write_secret(&dir, "not-the-secret");
    let (status, body) = exp.reload().await;
    assert_eq!(status, 200, "{body}");
    let auth = [al(b, "hotkey").as_slice(), &[("reason", "auth")]].concat();
    wait_for("auth failures with the wrong secret", DEADLINE, || async {
        let m = exp.scrape().await;
        (m.get("dcs_analysis_failures_total", &auth)? >= 1.0).then_some(())
    })
    .await;
    // ...and the right one brings results back.
    write_secret(&dir, dcs_key_exporter::simulator::DEFAULT_SECRET_KEY);
    let before = newest_success(&sim.sim, b, Analysis::Hotkey).map_or(0.0, |t| finished(&t));
    exp.signal("HUP");
    wait_for("results with the right secret again", DEADLINE, || async {
        let m = exp.scrape().await;
        let shown = m.get(
            "dcs_analysis_last_success_timestamp_seconds",
            &al(b, "hotkey"),
        )?;
        (shown > before).then_some(())
    })
    .await;
    assert_eq!(
        sim.sim.created_count(a, Analysis::Hotkey),
        creates_a,
        "the removed instance is left alone"
    );
    assert!(
        !exp.log().contains("not-the-secret"),
        "no secret in the log"
    );
    exp.signal("TERM");
    assert_eq!(exp.wait_exit(DEADLINE).await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_requests_in_flight_exits_0_within_the_grace_period() {
    let id = "b0000000-0000-4000-8000-000000000020";
    let sim = start_sim(SimConfig {
        seed: 7,
        instances: vec![SimInstance::new(id, "slow")],
        time_scale: 0.05,
        ..SimConfig::with_defaults()
    })
    .await;
    // Every answer takes 4 s.
    sim.sim.set_faults(
        None,
        Faults {
            latency: Duration::from_secs(4),
            ..Faults::default()
        },
    );
    let dir = scratch("shutdown");
    write_secret(&dir, dcs_key_exporter::simulator::DEFAULT_SECRET_KEY);
    let config = write_config(
        &dir,
        &config_yaml(
            &sim.url,
            &[instance_yaml(
                id,
                "{mode: trigger, interval: 1s, timeout: 30s, top_n: 3}",
                "{mode: trigger, interval: 1s, timeout: 30s, top_n: 3}",
            )],
        ),
    );
    let mut exp = spawn_exporter(&config).await;
    wait_for("requests in flight", DEADLINE, || async {
        (sim.sim.request_count() >= 2).then_some(())
    })
    .await;
    exp.signal("TERM");
    let (code, took) = exp.wait_exit(GRACE + Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "log:\n{}", exp.log());
    eprintln!("shutdown with requests in flight took {took:?}");
    assert!(took < GRACE, "shutdown took {took:?}");
}

/// `--version` names the source revision: the one `git rev-parse` reports for this checkout
/// (or the `DCS_EXPORTER_REVISION` override the build was given, else `unknown`).
#[test]
fn version_flag_names_the_source_revision() {
    let expected = std::env::var("DCS_EXPORTER_REVISION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
        })
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcs-key-exporter"))
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "dcs-key-exporter {} (revision {expected})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
