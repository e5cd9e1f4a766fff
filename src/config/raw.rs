//! The config file as written: serde structs that refuse unknown keys.
//!
//! Strings stay unexpanded here (`${VAR}` is replaced during validation, where the key path is
//! known); durations stay strings. [`super::load_str`] turns this into the typed [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub clouds: Vec<RawCloud>,
    #[serde(default)]
    pub redis: Vec<RawRedis>,
    #[serde(default)]
    pub analysis: RawAnalysisSet,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub scheduler: RawScheduler,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    pub start_jitter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloud {
    pub name: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub project_id: Option<String>,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub instances: Vec<RawInstance>,
    pub discovery: Option<RawDiscovery>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<String>,
    pub security_token: Option<String>,
    pub security_token_file: Option<String>,
    pub iam_endpoint: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub id: Option<String>,
    pub name: Option<String>,
    pub lfu_log_factor: Option<u32>,
    #[serde(default)]
    pub analysis: RawAnalysisSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysisSet {
    pub hotkey: Option<RawAnalysis>,
    pub bigkey: Option<RawAnalysis>,
    pub keyfamily: Option<RawAnalysis>,
    /// Hot slots of Redis Cluster targets (see `hotkey_source`).
    pub hotslot: Option<RawAnalysis>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    pub mode: Option<super::Mode>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub top_n: Option<u64>,
    /// Offline key analysis only: omit `backup_id`, so DCS takes a new backup each time.
    pub fresh_backup: Option<bool>,
    /// Key families of Redis targets only: how key names become families.
    pub families: Option<RawFamilies>,
    /// Hot keys of Redis targets only: where they come from, and the bounds of the sources
    /// that take some (see `hotkey_source`).
    pub source: Option<super::hotkey_source::HotkeySource>,
    pub monitor: Option<super::hotkey_source::RawMonitor>,
    pub hotkeys: Option<super::hotkey_source::RawHotkeys>,
}

/// `analysis.keyfamily.families`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFamilies {
    pub delimiter: Option<String>,
    pub depth: Option<u64>,
    #[serde(default)]
    pub rules: Vec<RawFamilyRule>,
}

/// One `analysis.keyfamily.families.rules` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFamilyRule {
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    pub family: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub refresh_interval: Option<String>,
    pub name_include: Option<String>,
    pub name_exclude: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub engine: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub namespace: Option<String>,
    pub key_label: Option<RawKeyLabel>,
    pub key_label_max_bytes: Option<u64>,
    pub lfu_log_factor: Option<u32>,
    #[serde(default)]
    pub key_rewrite: Vec<RawKeyRewrite>,
}

/// `metrics.key_label` as written; with `key_label_max_bytes` it becomes a
/// [`KeyLabelMode`](crate::metrics::keylabel::KeyLabelMode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawKeyLabel {
    Name,
    Hash,
}

/// One `metrics.key_rewrite` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyRewrite {
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    pub replace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub timeout: Option<String>,
    pub max_retries: Option<u32>,
    pub max_concurrent_requests: Option<u32>,
    pub max_response_bytes: Option<u64>,
}

/// One `redis:` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub name: Option<String>,
    pub address: Option<String>,
    pub id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub tls: Option<RawRedisTls>,
    pub throttle: Option<RawThrottle>,
    #[serde(default)]
    pub analysis: RawAnalysisSet,
}

/// `redis[].tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
}

/// `redis[].throttle`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    pub keys_per_second: Option<u64>,
}
