//! The config file: loading, `${VAR}` expansion, secret files and validation.
//!
//! Two stages, as ripgrep does with its arguments: [`raw`] holds serde structs that refuse
//! unknown keys, [`validate`] turns them into a [`Config`] with real types (durations, URLs,
//! non-empty ids, client settings) and collects every problem it finds, each naming the key.
//! Syntax and type errors come from the YAML parser with their line and column.

pub mod duration;
mod locate;
pub mod raw;
pub mod redis;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::dcs::{Analysis, Auth, ClientConfig};
use crate::metrics::keyrewrite::{KeyRewrite, KeyRule};
use crate::secret::Secret;
use raw::{RawAnalysis, RawAuth, RawCloud, RawConfig, RawInstance};

/// The largest config file accepted; anything bigger is refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

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

/// How the `key` label is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLabelKind {
    /// The key name, truncated with a hash suffix beyond `key_label_max_bytes`.
    Name,
    /// A stable digest of the key name (for keys that carry personal data).
    Hash,
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
}

impl InstanceConfig {
    pub fn analysis(&self, analysis: Analysis) -> &AnalysisSettings {
        match analysis {
            Analysis::Hotkey => &self.hotkey,
            Analysis::Bigkey => &self.bigkey,
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
}

/// Metric output settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `None`: the `--metrics.namespace` flag (default `dcs`) decides.
    pub namespace: Option<String>,
    pub key_label: KeyLabelKind,
    pub key_label_max_bytes: usize,
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

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: config file is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path}: config file is not valid UTF-8 (line {line})")]
    NotUtf8 { path: String, line: usize },
    #[error("{path}: {key}: {message}")]
    Parse {
        path: String,
        key: String,
        message: String,
    },
    #[error("{path}: {}", problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
}

impl ConfigError {
    /// Every problem, one per line, for `check-config`.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => {
                problems.iter().map(|p| format!("{path}: {p}")).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// Reads and validates a config file. Environment variables come from the process.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    load_file_with_env(path, &|name| std::env::var(name).ok())
}

/// Reads and validates a config file, looking environment variables up with `env`.
pub fn load_file_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let read_err = |source| ConfigError::Read {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: shown,
            limit: MAX_CONFIG_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
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
    load_str(&text, &shown, path.parent(), env)
}

/// Parses and validates config text. `source` names it in errors; relative secret file paths
/// are resolved against `base_dir`.
pub fn load_str(
    text: &str,
    source: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            // `?` stands for a key the parser never got to read (a syntax error): leave it out.
            let mut key = e.path().to_string();
            while let Some(k) = key.strip_suffix(".?") {
                key = k.to_owned();
            }
            let mut message = e.into_inner().to_string();
            // The YAML error names the enclosing mapping itself (`clouds[0]: unknown field …`);
            // the key path is more precise, so drop that prefix.
            if let Some((prefix, rest)) = message.split_once(": ") {
                if key.starts_with(prefix) && !prefix.contains(' ') {
                    message = rest.to_owned();
                }
            }
            ConfigError::Parse {
                path: source.to_owned(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            }
        })?
    };
    let mut v = Validator {
        problems: Vec::new(),
        env,
        base_dir,
    };
    let config = v.config(raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        // Say where each problem is, as the parser's own errors do.
        let problems = v
            .problems
            .into_iter()
            .map(|p| {
                let line = p
                    .split_once(": ")
                    .and_then(|(key, _)| locate::line_of(text, key));
                match line {
                    Some(n) => format!("{p} (line {n})"),
                    None => p,
                }
            })
            .collect();
        Err(ConfigError::Invalid {
            path: source.to_owned(),
            problems,
        })
    }
}

struct Validator<'a> {
    problems: Vec<String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: Option<&'a Path>,
}

impl Validator<'_> {
    fn problem(&mut self, key: impl fmt::Display, msg: impl fmt::Display) {
        self.problems.push(format!("{key}: {msg}"));
    }

    /// Expands `${NAME}` references; an unset variable is a problem.
    fn expand(&mut self, key: &str, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.problem(key, "unterminated ${...} reference");
                return out;
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                self.problem(key, format!("invalid environment variable name {name:?}"));
            } else {
                match (self.env)(name) {
                    Some(v) => out.push_str(&v),
                    None => self.problem(key, format!("environment variable {name} is not set")),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn string(&mut self, key: &str, value: &Option<String>) -> Option<String> {
        value.as_deref().map(|v| self.expand(key, v))
    }

    fn required(&mut self, key: &str, value: &Option<String>) -> String {
        let before = self.problems.len();
        match self.string(key, value) {
            Some(v) if !v.trim().is_empty() => v,
            Some(_) => {
                // An unset ${VAR} was reported already; "empty" would only repeat it.
                if self.problems.len() == before {
                    self.problem(key, "must not be empty");
                }
                String::new()
            }
            None => {
                self.problem(key, "is required");
                String::new()
            }
        }
    }

    fn duration(&mut self, key: &str, value: &Option<String>) -> Option<Duration> {
        let v = self.string(key, value)?;
        match duration::parse(&v) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    /// Reads a secret given inline or as a file; both or neither is a problem when required.
    fn secret(
        &mut self,
        key: &str,
        inline: &Option<String>,
        file: &Option<String>,
        required: bool,
    ) -> Option<Secret> {
        let file_key = format!("{key}_file");
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(key, format!("give either {key} or {file_key}, not both"));
                None
            }
            (Some(_), None) => {
                let v = self.required(key, inline);
                Some(Secret::new(v))
            }
            (None, Some(_)) => {
                let p = self.required(&file_key, file);
                let mut path = PathBuf::from(&p);
                if path.is_relative() {
                    if let Some(base) = self.base_dir {
                        path = base.join(path);
                    }
                }
                match std::fs::read_to_string(&path) {
                    Ok(s) if s.trim().is_empty() => {
                        self.problem(&file_key, format!("{} is empty", path.display()));
                        None
                    }
                    // Kubernetes secrets and `echo` leave a trailing newline.
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']))),
                    Err(e) => {
                        self.problem(&file_key, format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => {
                if required {
                    self.problem(key, format!("is required (or {file_key})"));
                }
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let metrics = MetricsSettings {
            namespace: self.string("metrics.namespace", &raw.metrics.namespace),
            key_label: raw.metrics.key_label.unwrap_or(KeyLabelKind::Name),
            key_label_max_bytes: raw.metrics.key_label_max_bytes.unwrap_or(200) as usize,
            key_rewrite: self.key_rewrite(&raw.metrics.key_rewrite),
        };
        if let Some(ns) = &metrics.namespace {
            if !is_metric_namespace(ns) {
                self.problem(
                    "metrics.namespace",
                    format!("{ns:?} is not a valid metric name prefix"),
                );
            }
        }
        if !(16..=65536).contains(&metrics.key_label_max_bytes) {
            self.problem(
                "metrics.key_label_max_bytes",
                "must be between 16 and 65536",
            );
        }
        let api = ApiSettings {
            timeout: self
                .duration("api.timeout", &raw.api.timeout)
                .unwrap_or(Duration::from_secs(30)),
            max_retries: raw.api.max_retries.unwrap_or(3),
            max_concurrent_requests: raw.api.max_concurrent_requests.unwrap_or(8) as usize,
            max_response_bytes: raw.api.max_response_bytes.unwrap_or(32 << 20) as usize,
        };
        if api.timeout.is_zero() {
            self.problem("api.timeout", "must be greater than 0");
        }
        if api.max_retries > 10 {
            self.problem("api.max_retries", "must be at most 10");
        }
        if api.max_concurrent_requests == 0 {
            self.problem("api.max_concurrent_requests", "must be at least 1");
        }
        if api.max_response_bytes < 1024 {
            self.problem("api.max_response_bytes", "must be at least 1024");
        }

        let lfu = raw.metrics.lfu_log_factor.unwrap_or(10);
        let defaults = InstanceDefaults {
            lfu_log_factor: lfu,
            hotkey: self.analysis(
                "analysis.hotkey",
                raw.analysis.hotkey.as_ref(),
                AnalysisSettings::default_for(Analysis::Hotkey),
            ),
            bigkey: self.analysis(
                "analysis.bigkey",
                raw.analysis.bigkey.as_ref(),
                AnalysisSettings::default_for(Analysis::Bigkey),
            ),
        };

        if raw.clouds.is_empty() && raw.redis.is_empty() {
            self.problem(
                "clouds",
                "at least one cloud is required (or a target under redis:)",
            );
        }
        let mut seen = HashSet::new();
        let clouds = raw
            .clouds
            .iter()
            .enumerate()
            .map(|(i, c)| self.cloud(&format!("clouds[{i}]"), c, &defaults, &api, &mut seen))
            .collect();
        let redis: Vec<redis::RedisTarget> = raw
            .redis
            .iter()
            .enumerate()
            .map(|(i, r)| self.redis_target(&format!("redis[{i}]"), r, &defaults))
            .collect();
        for (i, r) in redis.iter().enumerate() {
            if !r.id.is_empty() && !seen.insert(r.id.clone()) {
                self.problem(
                    format!("redis[{i}].id"),
                    format!("{} is listed more than once", r.id),
                );
            }
        }
        let scheduler = SchedulerSettings {
            start_jitter: self
                .duration("scheduler.start_jitter", &raw.scheduler.start_jitter)
                .unwrap_or(SchedulerSettings::default().start_jitter),
        };
        Config {
            clouds,
            redis,
            metrics,
            api,
            scheduler,
        }
    }

    fn key_rewrite(&mut self, raw: &[raw::RawKeyRewrite]) -> KeyRewrite {
        let mut rules = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let key = format!("metrics.key_rewrite[{i}]");
            // No ${VAR} expansion here: `$` belongs to the regex and replacement syntax.
            let (Some(pattern), Some(replace)) = (&r.pattern, &r.replace) else {
                if r.pattern.is_none() {
                    self.problem(format!("{key}.match"), "is required");
                }
                if r.replace.is_none() {
                    self.problem(format!("{key}.replace"), "is required");
                }
                continue;
            };
            match KeyRule::new(pattern, replace) {
                Ok(rule) => rules.push(rule),
                Err(e) => {
                    let field = if e.starts_with("invalid regex") {
                        "match"
                    } else {
                        "replace"
                    };
                    self.problem(format!("{key}.{field}"), e);
                }
            }
        }
        KeyRewrite::new(rules)
    }

    fn analysis(
        &mut self,
        key: &str,
        raw: Option<&RawAnalysis>,
        base: AnalysisSettings,
    ) -> AnalysisSettings {
        let Some(raw) = raw else { return base };
        let s = AnalysisSettings {
            mode: raw.mode.unwrap_or(base.mode),
            interval: self
                .duration(&format!("{key}.interval"), &raw.interval)
                .unwrap_or(base.interval),
            timeout: self
                .duration(&format!("{key}.timeout"), &raw.timeout)
                .unwrap_or(base.timeout),
            top_n: raw
                .top_n
                .map_or(base.top_n, |n| n.min(usize::MAX as u64) as usize),
        };
        if s.interval < Duration::from_secs(1) {
            self.problem(format!("{key}.interval"), "must be at least 1s");
        }
        if s.timeout < Duration::from_secs(1) {
            self.problem(format!("{key}.timeout"), "must be at least 1s");
        }
        if !(1..=1000).contains(&s.top_n) {
            self.problem(format!("{key}.top_n"), "must be between 1 and 1000");
        }
        s
    }

    fn cloud(
        &mut self,
        key: &str,
        raw: &RawCloud,
        defaults: &InstanceDefaults,
        api: &ApiSettings,
        seen: &mut HashSet<String>,
    ) -> CloudConfig {
        let name = self
            .string(&format!("{key}.name"), &raw.name)
            .unwrap_or_else(|| key.to_owned());
        let region = self.string(&format!("{key}.region"), &raw.region);
        let endpoint = match (
            self.string(&format!("{key}.endpoint"), &raw.endpoint),
            &region,
        ) {
            (Some(e), _) => self.url(&format!("{key}.endpoint"), &e),
            (None, Some(r)) if !r.is_empty() => self.url(
                &format!("{key}.region"),
                &format!("https://dcs.{r}.myhuaweicloud.com"),
            ),
            (None, _) => {
                self.problem(
                    format!("{key}.region"),
                    "is required unless endpoint is given",
                );
                None
            }
        };
        let project_id = self.required(&format!("{key}.project_id"), &raw.project_id);
        if !project_id.is_empty() && !project_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            self.problem(
                format!("{key}.project_id"),
                "must be letters and digits only",
            );
        }
        let auth = match &raw.auth {
            Some(a) => self.auth(&format!("{key}.auth"), a, region.as_deref()),
            None => {
                self.problem(format!("{key}.auth"), "is required");
                None
            }
        };

        let mut instances = Vec::new();
        for (i, inst) in raw.instances.iter().enumerate() {
            let ikey = format!("{key}.instances[{i}]");
            let Some(cfg) = self.instance(&ikey, inst, defaults) else {
                continue;
            };
            if !seen.insert(cfg.id.clone()) {
                self.problem(
                    format!("{ikey}.id"),
                    format!("duplicate instance {}", cfg.id),
                );
                continue;
            }
            instances.push(cfg);
        }
        let discovery = raw
            .discovery
            .as_ref()
            .map(|d| self.discovery(&format!("{key}.discovery"), d));
        if instances.is_empty() && discovery.is_none() {
            self.problem(
                format!("{key}.instances"),
                "list at least one instance or enable discovery",
            );
        }

        let placeholder = Url::parse("http://invalid.invalid").expect("static URL parses");
        let mut client = ClientConfig::new(
            endpoint.unwrap_or(placeholder),
            project_id,
            auth.unwrap_or(Auth::AkSk {
                access_key: String::new(),
                secret_key: Secret::default(),
                security_token: None,
            }),
        );
        client.request_timeout = api.timeout;
        client.max_retries = api.max_retries;
        client.max_body_bytes = api.max_response_bytes;
        CloudConfig {
            name,
            client,
            instances,
            discovery,
            defaults: *defaults,
        }
    }

    fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.problem(
                    key,
                    format!("{value:?} must be an http:// or https:// URL with a host"),
                );
                None
            }
            Err(e) => {
                self.problem(key, format!("{value:?} is not a URL: {e}"));
                None
            }
        }
    }

    fn auth(&mut self, key: &str, raw: &RawAuth, region: Option<&str>) -> Option<Auth> {
        let aksk =
            raw.access_key.is_some() || raw.secret_key.is_some() || raw.secret_key_file.is_some();
        let iam = raw.user.is_some() || raw.password.is_some() || raw.password_file.is_some();
        match (aksk, iam) {
            (true, true) => {
                self.problem(
                    key,
                    "use either access_key/secret_key or user/password, not both",
                );
                None
            }
            (false, false) => {
                self.problem(
                    key,
                    "give access_key and secret_key (or user, password and domain)",
                );
                None
            }
            (true, false) => {
                let access_key = self.required(&format!("{key}.access_key"), &raw.access_key);
                let secret_key = self.secret(
                    &format!("{key}.secret_key"),
                    &raw.secret_key,
                    &raw.secret_key_file,
                    true,
                );
                let security_token = self.secret(
                    &format!("{key}.security_token"),
                    &raw.security_token,
                    &raw.security_token_file,
                    false,
                );
                Some(Auth::AkSk {
                    access_key,
                    secret_key: secret_key?,
                    security_token,
                })
            }
            (false, true) => {
                let user = self.required(&format!("{key}.user"), &raw.user);
                let domain = self.required(&format!("{key}.domain"), &raw.domain);
                let password = self.secret(
                    &format!("{key}.password"),
                    &raw.password,
                    &raw.password_file,
                    true,
                );
                let ep_key = format!("{key}.iam_endpoint");
                let endpoint = match (self.string(&ep_key, &raw.iam_endpoint), region) {
                    (Some(e), _) => self.url(&ep_key, &e),
                    (None, Some(r)) => {
                        self.url(&ep_key, &format!("https://iam.{r}.myhuaweicloud.com"))
                    }
                    (None, None) => {
                        self.problem(&ep_key, "is required when the cloud has no region");
                        None
                    }
                };
                let project_name = region.unwrap_or_default().to_owned();
                Some(Auth::Iam {
                    endpoint: endpoint?,
                    user,
                    password: password?,
                    domain,
                    project_name,
                })
            }
        }
    }

    fn instance(
        &mut self,
        key: &str,
        raw: &RawInstance,
        defaults: &InstanceDefaults,
    ) -> Option<InstanceConfig> {
        let id = self.required(&format!("{key}.id"), &raw.id);
        if !id.is_empty()
            && !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.problem(
                format!("{key}.id"),
                format!("{id:?} is not a DCS instance id"),
            );
        }
        let name = self.string(&format!("{key}.name"), &raw.name);
        let cfg = InstanceConfig {
            id: id.clone(),
            name,
            lfu_log_factor: raw.lfu_log_factor.unwrap_or(defaults.lfu_log_factor),
            hotkey: self.analysis(
                &format!("{key}.analysis.hotkey"),
                raw.analysis.hotkey.as_ref(),
                defaults.hotkey,
            ),
            bigkey: self.analysis(
                &format!("{key}.analysis.bigkey"),
                raw.analysis.bigkey.as_ref(),
                defaults.bigkey,
            ),
        };
        (!id.is_empty()).then_some(cfg)
    }

    fn discovery(&mut self, key: &str, raw: &raw::RawDiscovery) -> DiscoveryConfig {
        let mut regex = |field: &str, v: &Option<String>| {
            let k = format!("{key}.{field}");
            let v = self.string(&k, v)?;
            match regex::Regex::new(&v) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problem(&k, format!("invalid regex: {e}"));
                    None
                }
            }
        };
        let name_include = regex("name_include", &raw.name_include);
        let name_exclude = regex("name_exclude", &raw.name_exclude);
        let refresh_key = format!("{key}.refresh_interval");
        let refresh_interval = self
            .duration(&refresh_key, &raw.refresh_interval)
            .unwrap_or(Duration::from_secs(300));
        if refresh_interval < Duration::from_secs(10) {
            self.problem(refresh_key, "must be at least 10s");
        }
        let tags = raw
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), self.expand(&format!("{key}.tags.{k}"), v)))
            .collect();
        DiscoveryConfig {
            refresh_interval,
            name_include,
            name_exclude,
            tags,
            engine: self
                .string(&format!("{key}.engine"), &raw.engine)
                .unwrap_or("Redis".into()),
            status: self
                .string(&format!("{key}.status"), &raw.status)
                .unwrap_or("RUNNING".into()),
        }
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
