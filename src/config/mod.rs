//! The config file: loading, `${VAR}` expansion, secret files and validation.
//!
//! Two stages, as ripgrep does with its arguments: [`raw`] holds serde structs that refuse
//! unknown keys, [`validate`] turns them into a [`Config`] with real types (durations, URLs,
//! ids in DCS's format, client settings). Both stages report every problem they find, as a
//! [`Problem`] naming the key and its line: [`parse`] goes on past an unknown key or a value of
//! the wrong type by leaving that key out and parsing again, and the validator collects as it
//! goes. Files are read by [`mod@file`]: regular files only, opened without blocking, with a size
//! bound ([`MAX_CONFIG_BYTES`], [`MAX_SECRET_BYTES`], [`MAX_CERT_BYTES`]); every path the config
//! names is read that way. [`flags`] makes a config of `redis:` targets from `--redis.addr`
//! instead, through the same validator.

pub mod duration;
pub mod file;
pub mod flags;
pub mod hotkey_source;
mod locate;
pub mod parse;
pub mod raw;
pub mod redis;
pub mod reload;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::dcs::{Analysis, ClientConfig};
use crate::metrics::keylabel::KeyLabelMode;
use crate::metrics::keyrewrite::KeyRewrite;
pub use file::ReadError;

/// The largest config file accepted; anything bigger is refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The largest secret file accepted (`secret_key_file`, `security_token_file`,
/// `password_file`, `redis[].tls.key_file`); credentials and keys are far smaller.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// The largest certificate file accepted (`redis[].tls.ca_file` and `cert_file`): room for a
/// whole CA bundle such as Debian's (about 200 KiB).
pub const MAX_CERT_BYTES: u64 = 1024 * 1024;

/// What the scheduler does for one analysis of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Create a task every interval, poll it, publish its result.
    Trigger,
    /// Never create tasks: ingest newer successful records (autoscan, console runs).
    Observe,
    /// Do nothing.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Trigger => "trigger",
            Mode::Observe => "observe",
            Mode::Off => "off",
        }
    }
}

/// Settings of one analysis of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalysisSettings {
    pub mode: Mode,
    /// Time between analyses (trigger) or between looks for new records (observe).
    pub interval: Duration,
    /// A task still unfinished after this long counts as a `timeout` failure.
    pub timeout: Duration,
    /// Keys exported per analysis (per unit for big keys).
    pub top_n: usize,
}

impl AnalysisSettings {
    /// An analysis that does not run (what a DCS instance has for hot slots).
    pub const OFF: AnalysisSettings = AnalysisSettings {
        mode: Mode::Off,
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
        top_n: 16,
    };

    /// The documented defaults of each analysis.
    pub fn default_for(analysis: Analysis) -> Self {
        match analysis {
            Analysis::Hotkey => AnalysisSettings {
                mode: Mode::Trigger,
                interval: Duration::from_secs(15 * 60),
                timeout: Duration::from_secs(10 * 60),
                top_n: 50,
            },
            Analysis::Bigkey => AnalysisSettings {
                mode: Mode::Trigger,
                interval: Duration::from_secs(3600),
                timeout: Duration::from_secs(30 * 60),
                top_n: 100,
            },
            // Off unless configured: each run analyses a backup per shard. `top_n` is the number
            // of key families exported per instance.
            Analysis::Keyfamily => AnalysisSettings {
                mode: Mode::Off,
                interval: Duration::from_secs(24 * 3600),
                timeout: Duration::from_secs(2 * 3600),
                top_n: 20,
            },
            // Redis Cluster targets whose servers have `CLUSTER SLOT-STATS`: on, and cheap (one
            // command per master and interval). `top_n` is per node.
            Analysis::Hotslot => AnalysisSettings {
                mode: Mode::Trigger,
                ..AnalysisSettings::OFF
            },
        }
    }
}

/// Settings of the offline key analysis (key families) of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyfamilySettings {
    /// Mode, interval, timeout (per shard's task), and `top_n`: families exported per instance.
    pub analysis: AnalysisSettings,
    /// Let DCS take a new backup for every analysis (omit `backup_id`) instead of analysing the
    /// newest existing successful backup.
    pub fresh_backup: bool,
}

impl Default for KeyfamilySettings {
    fn default() -> Self {
        KeyfamilySettings {
            analysis: AnalysisSettings::default_for(Analysis::Keyfamily),
            fresh_backup: false,
        }
    }
}

/// One DCS instance to analyse.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceConfig {
    pub id: String,
    /// Display name; `None` means "use the discovered name, else the id".
    pub name: Option<String>,
    pub lfu_log_factor: u32,
    pub hotkey: AnalysisSettings,
    pub bigkey: AnalysisSettings,
    pub keyfamily: KeyfamilySettings,
}

impl InstanceConfig {
    pub fn analysis(&self, analysis: Analysis) -> &AnalysisSettings {
        match analysis {
            Analysis::Hotkey => &self.hotkey,
            Analysis::Bigkey => &self.bigkey,
            Analysis::Keyfamily => &self.keyfamily.analysis,
            // Read from Redis Cluster servers only (see `redis::RedisTarget::hotslot`).
            Analysis::Hotslot => &AnalysisSettings::OFF,
        }
    }
}

/// Instance discovery through ListInstances.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    pub refresh_interval: Duration,
    pub name_include: Option<regex::Regex>,
    pub name_exclude: Option<regex::Regex>,
    pub tags: BTreeMap<String, String>,
    pub engine: String,
    pub status: String,
}

impl PartialEq for DiscoveryConfig {
    fn eq(&self, o: &Self) -> bool {
        let re = |r: &Option<regex::Regex>| r.as_ref().map(|r| r.as_str().to_owned());
        self.refresh_interval == o.refresh_interval
            && re(&self.name_include) == re(&o.name_include)
            && re(&self.name_exclude) == re(&o.name_exclude)
            && self.tags == o.tags
            && self.engine == o.engine
            && self.status == o.status
    }
}

/// One project (region) with its credentials and instances.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// Used in logs only.
    pub name: String,
    pub client: ClientConfig,
    pub instances: Vec<InstanceConfig>,
    pub discovery: Option<DiscoveryConfig>,
    /// Analysis settings for discovered instances.
    pub defaults: InstanceDefaults,
}

/// What a discovered instance gets when no explicit entry overrides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceDefaults {
    pub lfu_log_factor: u32,
    pub hotkey: AnalysisSettings,
    pub bigkey: AnalysisSettings,
    pub keyfamily: KeyfamilySettings,
}

/// Metric output settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `None`: the `--metrics.namespace` flag (default `dcs`) decides.
    pub namespace: Option<String>,
    /// `key_label` and `key_label_max_bytes`: how the `key` label is formed.
    pub key_label: KeyLabelMode,
    /// `key_rewrite`: rules applied to key names before the label is formed.
    pub key_rewrite: KeyRewrite,
}

/// DCS API call settings shared by every cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    pub timeout: Duration,
    pub max_retries: u32,
    /// Limit on DCS API calls in flight at once, over all instances.
    pub max_concurrent_requests: usize,
    pub max_response_bytes: usize,
}

/// Scheduler settings shared by every loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// Upper bound of the random delay before an analysis' first task after start (it is also
    /// at most half the analysis interval), so that a fleet does not fire at once.
    pub start_jitter: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            start_jitter: Duration::from_secs(150),
        }
    }
}

/// The validated config.
#[derive(Clone, Debug)]
pub struct Config {
    pub clouds: Vec<CloudConfig>,
    /// Redis and Valkey servers the exporter analyses itself.
    pub redis: Vec<redis::RedisTarget>,
    pub metrics: MetricsSettings,
    pub api: ApiSettings,
    pub scheduler: SchedulerSettings,
}

/// One thing wrong with a config: the key it concerns, its line when known, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key path (`clouds[0].instances[1].id`), or `(top level)`.
    pub key: String,
    /// 1-based line in the file, where the key (or its nearest ancestor) was found.
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }

    /// Whether this problem concerns `key`, one of its ancestors or one of its descendants.
    fn overlaps(&self, key: &str) -> bool {
        let within = |inner: &str, outer: &str| {
            inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        };
        within(&self.key, key) || within(key, &self.key)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(n) = self.line {
            write!(f, " (line {n})")?;
        }
        Ok(())
    }
}

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read { path: String, source: ReadError },
    #[error("{path}: config file is not valid UTF-8 (line {line})")]
    NotUtf8 { path: String, line: usize },
    #[error("{path}: {}", join(problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

fn join(problems: &[Problem]) -> String {
    let all: Vec<String> = problems.iter().map(Problem::to_string).collect();
    all.join("; ")
}

impl ConfigError {
    /// Every problem, one per line, each with the file's path, for `check-config`.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => {
                problems.iter().map(|p| format!("{path}: {p}")).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// A loaded config and what looked wrong in it without being an error.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// Legal but probably unintended settings (a `timeout` longer than its `interval`).
    pub warnings: Vec<Problem>,
}

/// Reads and validates a config file. Environment variables come from the process. Blocking:
/// async code runs it on a blocking thread.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    load_file_checked(path).map(|l| l.config)
}

/// [`load_file`], with the warnings.
pub fn load_file_checked(path: &Path) -> Result<Loaded, ConfigError> {
    load_file_with_env_checked(path, &|name| std::env::var(name).ok())
}

/// Reads and validates a config file, looking environment variables up with `env`.
pub fn load_file_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    load_file_with_env_checked(path, env).map(|l| l.config)
}

/// [`load_file_with_env`], with the warnings.
pub fn load_file_with_env_checked(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let shown = path.display().to_string();
    let bytes = file::read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        ConfigError::NotUtf8 {
            path: shown.clone(),
            line,
        }
    })?;
    load_str_checked(&text, &shown, path.parent(), env)
}

/// Parses and validates config text. `source` names it in errors; relative secret file paths
/// are resolved against `base_dir`. Every problem is reported, not only the first.
pub fn load_str(
    text: &str,
    source: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    load_str_checked(text, source, base_dir, env).map(|l| l.config)
}

/// [`load_str`], with the warnings.
pub fn load_str_checked(
    text: &str,
    source: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let (raw, mut problems) = parse::parse(text);
    let mut warnings = Vec::new();
    let config = raw.map(|raw| {
        let mut v = validate::Validator::new(env, base_dir);
        let config = v.config(raw);
        let (found, warned) = v.finish();
        // A key the parser refused was left out; what the validator says about it (or about
        // its parent, now missing a part) would only repeat the parser.
        let parsed = problems.clone();
        problems.extend(
            found
                .into_iter()
                .filter(|p| !parsed.iter().any(|q| p.overlaps(&q.key))),
        );
        warnings = warned;
        config
    });
    for p in problems.iter_mut().chain(&mut warnings) {
        if p.line.is_none() {
            p.line = locate::line_of(text, &p.key);
        }
    }
    // In the order of the file, as a reader goes through it.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    warnings.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    match config {
        Some(config) if problems.is_empty() => Ok(Loaded { config, warnings }),
        _ => Err(ConfigError::Invalid {
            path: source.to_owned(),
            problems,
        }),
    }
}

/// Whether `ns` can prefix metric names (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_namespace(ns: &str) -> bool {
    let mut chars = ns.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests;
