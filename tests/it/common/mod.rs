//! The harness shared by the integration tests: a DCS simulator and the exporter on
//! 127.0.0.1:0, a strict parser of the text format that is independent of the renderer,
//! `promtool check metrics`, a readiness poll with a deadline, the simulator's newest successful
//! task, the documented `key` label of a key name, and a scratch directory for config files.
//! Real Redis and Valkey servers: [`servers`] (which ones, and skipping without) and
//! [`redis_server`] (the processes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dcs_key_exporter::app::{self, ConfigSource, RunOptions};
use dcs_key_exporter::config::Config;
use dcs_key_exporter::dcs::{timestamp, Analysis, TaskRecord, TaskStatus};
use dcs_key_exporter::simulator::{SimConfig, Simulator};
use tokio::net::TcpListener;

pub mod fake_redis;
pub mod fake_resp;
pub mod readme;
pub mod redis_server;
pub mod servers;
use tokio_util::sync::CancellationToken;

/// A simulator serving on a loopback port; stops when dropped.
pub struct Sim {
    pub sim: Simulator,
    pub config: SimConfig,
    pub url: url::Url,
    pub cancel: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub async fn start_sim(config: SimConfig) -> Sim {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let sim = Simulator::new(config.clone());
    let cancel = CancellationToken::new();
    let (s, c) = (sim.clone(), cancel.clone());
    tokio::spawn(async move { s.serve(listener, c).await });
    Sim {
        sim,
        config,
        url,
        cancel,
    }
}

/// The exporter running in-process (`app::run`) on a loopback port.
pub struct Exporter {
    pub addr: SocketAddr,
    pub cancel: CancellationToken,
    pub join: tokio::task::JoinHandle<Result<(), app::Error>>,
    pub http: reqwest::Client,
    /// Longest wait for a clean exit in [`Exporter::stop`].
    pub stop_deadline: Duration,
}

/// Starts the exporter with a fixed config.
pub async fn start_exporter(config: Config, opts: RunOptions, stop_deadline: Duration) -> Exporter {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let join = tokio::spawn(app::run(
        ConfigSource::Fixed(Box::new(config)),
        listener,
        opts,
        app::reload_channel(),
        cancel.clone(),
    ));
    Exporter {
        addr,
        cancel,
        join,
        http: reqwest::Client::new(),
        stop_deadline,
    }
}

impl Exporter {
    pub async fn scrape(&self) -> Metrics {
        Metrics(parse_exposition(&self.text().await))
    }

    /// The raw `/metrics` body.
    pub async fn text(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    }

    /// The status page (`/`).
    pub async fn page(&self) -> String {
        self.http
            .get(format!("http://{}/", self.addr))
            .send()
            .await
            .expect("status page")
            .text()
            .await
            .expect("body")
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let r = tokio::time::timeout(self.stop_deadline, self.join)
            .await
            .expect("exporter stops");
        r.expect("no panic").expect("exporter exits cleanly");
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape, parsed.
pub struct Metrics(pub Vec<Sample>);

impl Metrics {
    pub fn family(&self, name: &str) -> Vec<&Sample> {
        self.0.iter().filter(|s| s.name == name).collect()
    }

    /// The one sample of `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self
            .family(name)
            .into_iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} matches {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    /// Number of samples of `name` for one instance.
    pub fn count(&self, name: &str, id: &str) -> usize {
        self.family(name)
            .into_iter()
            .filter(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
            .count()
    }

    /// Series of any family that carry `instance_id="id"`.
    pub fn series_of(&self, id: &str) -> usize {
        self.0
            .iter()
            .filter(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
            .count()
    }

    /// Sum of the samples of `name` whose `label` is `value`.
    pub fn sum(&self, name: &str, label: &str, value: &str) -> f64 {
        self.family(name)
            .into_iter()
            .filter(|s| s.labels.get(label).map(String::as_str) == Some(value))
            .map(|s| s.value)
            .sum()
    }

    /// The values of `label` over the samples of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.family(name)
            .into_iter()
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// A label-value reader independent of the renderer: `\\`, `\"` and `\n` are the only
/// escapes; returns the value and the rest after the closing quote, or `None` when the text is
/// not a well-formed label value.
pub fn read_label_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            },
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// A strict parser of the sample lines of the text format, independent of the renderer: it
/// panics on a line that is not well-formed (a bad metric name, an unknown escape, a repeated
/// label, anything but one space before the value, a value that is not a number).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = line[..name_end].to_owned();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let (key, r) = rest
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                let (value, r) =
                    read_label_value(r).unwrap_or_else(|| panic!("bad label value in {line:?}"));
                assert!(
                    labels.insert(key.to_owned(), value).is_none(),
                    "repeated label in {line:?}"
                );
                rest = r.strip_prefix(',').unwrap_or(r);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("bad value in {line:?}"));
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Runs `promtool check metrics` on `text` and fails on any complaint, lint remarks included
/// (e.g. a counter without `_total` would be ours to fix too). Without promtool on `PATH` the
/// check is skipped with a note, except in CI (`CI` set), where promtool is required.
pub fn promtool_check(text: &str) {
    let Some(promtool) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    }) else {
        assert!(std::env::var("CI").is_err(), "promtool is required in CI");
        eprintln!("note: promtool not on PATH; skipping the promtool check");
        return;
    };
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {report}");
    assert!(report.trim().is_empty(), "promtool: {report}");
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When a task finished, in Unix seconds; fails if it has not.
pub fn finished(t: &TaskRecord) -> f64 {
    timestamp::parse(t.finished_at.as_deref().expect("finished_at")).expect("timestamp")
}

/// The simulator's newest successful task of an analysis (its ground truth), if any.
pub fn newest_success(sim: &Simulator, id: &str, a: Analysis) -> Option<TaskRecord> {
    sim.tasks(id, a)
        .into_iter()
        .filter(|t| t.status == TaskStatus::Success)
        .max_by(|x, y| finished(x).total_cmp(&finished(y)))
}

/// The `key` label of a key name under the default `key_label: name` (max 200 bytes), by the
/// documented rule: a longer name is cut on a character boundary at or below 200 bytes and gets
/// `~h:` and the first 16 hex digits of the SHA-256 of the whole name. The simulator's keyspace
/// has such a name, and whether it ranks in the top N depends on the run.
pub fn expected_key_label(name: &str) -> String {
    use sha2::{Digest, Sha256};
    const MAX: usize = 200;
    if name.len() <= MAX {
        return name.to_owned();
    }
    let cut = (0..=MAX).rev().find(|&i| name.is_char_boundary(i)).unwrap();
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}~h:{}", &name[..cut], &digest[..16])
}

/// A scratch directory for config and secret files, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        TempDir(d)
    }

    /// Writes `name`, through a temporary file and a rename (as Kubernetes and editors do), so
    /// that a reader never sees half a file.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &p).expect("rename");
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
