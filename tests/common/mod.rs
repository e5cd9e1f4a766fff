//! The harness shared by the in-process end-to-end tests: a DCS simulator and the exporter on
//! 127.0.0.1:0, a small parser of the text format that is independent of the renderer, a
//! readiness poll with a deadline, and a scratch directory for config files.
// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dcs_key_exporter::app::{self, ConfigSource, RunOptions};
use dcs_key_exporter::config::Config;
use dcs_key_exporter::simulator::{SimConfig, Simulator};
use tokio::net::TcpListener;

pub mod redis_server;
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
        let body = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        Metrics(parse_exposition(&body))
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

    /// Sum of the samples of `name` whose `label` is `value`.
    /// Series of any family that carry `instance_id="id"`.
    pub fn series_of(&self, id: &str) -> usize {
        self.0
            .iter()
            .filter(|s| s.labels.get("instance_id").map(String::as_str) == Some(id))
            .count()
    }

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

/// A small parser of the text format, independent of the renderer.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_end, has_labels) = match line.find(['{', ' ']) {
            Some(i) => (i, line.as_bytes()[i] == b'{'),
            None => panic!("bad line {line:?}"),
        };
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if has_labels {
            rest = &rest[1..];
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find('=').expect("label =");
                let key = rest[..eq].to_owned();
                let mut chars = rest[eq + 2..].char_indices();
                let mut value = String::new();
                let end = loop {
                    let (i, c) = chars.next().expect("closing quote");
                    match c {
                        '\\' => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break i,
                        c => value.push(c),
                    }
                };
                labels.insert(key, value);
                rest = &rest[eq + 2 + end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value: f64 = rest
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `deadline`.
pub async fn wait_for_within<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
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
