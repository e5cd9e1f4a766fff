//! The config file as written: serde structs that refuse unknown keys.
//!
//! Strings stay unexpanded here (`${VAR}` is replaced during validation, where the key path is
//! known); durations stay strings. Each place has a struct of its own, even where two differ by
//! one field, so that the parser's "unknown field, expected one of" lists only the fields valid
//! where the key stands (`redis[].analysis` takes other key family fields than a DCS instance);
//! [`elsewhere`] adds where a misplaced field belongs. [`super::load_str`] turns this into the typed [`super::Config`].

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
    pub analysis: RawInstanceAnalysisSet,
}

/// The global `analysis:`: defaults for DCS instances and Redis targets alike, so its key
/// family settings take what either uses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysisSet {
    pub hotkey: Option<RawHotkey>,
    pub bigkey: Option<RawAnalysis>,
    pub keyfamily: Option<RawKeyfamily>,
    /// Hot slots of Redis Cluster targets (see `hotkey_source`).
    pub hotslot: Option<RawAnalysis>,
}

/// `clouds[].instances[].analysis`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstanceAnalysisSet {
    pub hotkey: Option<RawAnalysis>,
    pub bigkey: Option<RawAnalysis>,
    pub keyfamily: Option<RawInstanceKeyfamily>,
}

/// `redis[].analysis`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisAnalysisSet {
    pub hotkey: Option<RawHotkey>,
    pub bigkey: Option<RawAnalysis>,
    pub keyfamily: Option<RawRedisKeyfamily>,
    pub hotslot: Option<RawAnalysis>,
}

/// A hot key or big key analysis, wherever it stands; also the schedule part of the key
/// family settings ([`RawKeyfamily::schedule`] and its siblings).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    pub mode: Option<super::Mode>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub top_n: Option<u64>,
}

/// `analysis.hotkey` and `redis[].analysis.hotkey`: the schedule, and where a Redis target's
/// hot keys come from (see `hotkey_source`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHotkey {
    pub mode: Option<super::Mode>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub top_n: Option<u64>,
    pub source: Option<super::hotkey_source::HotkeySource>,
    pub monitor: Option<super::hotkey_source::RawMonitor>,
    pub hotkeys: Option<super::hotkey_source::RawHotkeys>,
}

impl RawHotkey {
    /// Mode, interval, timeout and `top_n`.
    pub fn schedule(&self) -> RawAnalysis {
        RawAnalysis {
            mode: self.mode,
            interval: self.interval.clone(),
            timeout: self.timeout.clone(),
            top_n: self.top_n,
        }
    }
}

/// `analysis.keyfamily`: the defaults of both kinds of key family analysis.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyfamily {
    pub mode: Option<super::Mode>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub top_n: Option<u64>,
    /// DCS instances: omit `backup_id`, so DCS takes a new backup each time.
    pub fresh_backup: Option<bool>,
    /// Redis targets: how key names become families.
    pub families: Option<RawFamilies>,
}

/// `clouds[].instances[].analysis.keyfamily`: DCS's offline key analysis, which names the
/// families itself.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstanceKeyfamily {
    pub mode: Option<super::Mode>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub top_n: Option<u64>,
    pub fresh_backup: Option<bool>,
}

/// `redis[].analysis.keyfamily`: families built by every big key scan, which has the interval
/// and timeout.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisKeyfamily {
    pub mode: Option<super::Mode>,
    pub top_n: Option<u64>,
    pub families: Option<RawFamilies>,
}

impl RawKeyfamily {
    /// Mode, interval, timeout and `top_n`.
    pub fn schedule(&self) -> RawAnalysis {
        RawAnalysis {
            mode: self.mode,
            interval: self.interval.clone(),
            timeout: self.timeout.clone(),
            top_n: self.top_n,
        }
    }
}

impl RawInstanceKeyfamily {
    /// Mode, interval, timeout and `top_n`.
    pub fn schedule(&self) -> RawAnalysis {
        RawAnalysis {
            mode: self.mode,
            interval: self.interval.clone(),
            timeout: self.timeout.clone(),
            top_n: self.top_n,
        }
    }
}

impl RawRedisKeyfamily {
    /// Mode and `top_n` (interval and timeout are the big key scan's).
    pub fn schedule(&self) -> RawAnalysis {
        RawAnalysis {
            mode: self.mode,
            top_n: self.top_n,
            ..RawAnalysis::default()
        }
    }
}

/// What to do instead, for a key refused as unknown where it stands that has a place elsewhere
/// (`key` is its full path, such as `redis[0].analysis.keyfamily.interval`). Said after the
/// parser's list of the fields valid there.
pub fn elsewhere(key: &str) -> Option<String> {
    let (parent, field) = key.rsplit_once('.')?;
    let parent = without_indices(parent);
    let analysis = parent.rsplit_once('.').map_or("", |(_, a)| a);
    let hint = match (parent.as_str(), analysis, field) {
        ("redis[].analysis.keyfamily", _, "interval" | "timeout") => format!(
            "the key families of a Redis or Valkey target come with every big key scan: set \
             analysis.bigkey.{field}"
        ),
        ("redis[].analysis.keyfamily", _, "fresh_backup") => "a Redis or Valkey target has no \
            DCS backups: its key families come from the big key scan"
            .into(),
        ("clouds[].instances[].analysis.keyfamily", _, "families") => "DCS names the families \
            of its offline key analysis itself: families applies to Redis targets \
            (redis[].analysis.keyfamily, or analysis.keyfamily for all of them)"
            .into(),
        (_, "hotkey" | "bigkey" | "hotslot", "fresh_backup" | "families") => {
            format!("only analysis.keyfamily takes {field}")
        }
        ("clouds[].instances[].analysis.hotkey", _, "source" | "monitor" | "hotkeys") => {
            "a DCS instance's hot keys come from DCS: source, monitor and hotkeys apply to Redis \
             and Valkey targets (redis[].analysis.hotkey, or analysis.hotkey for all of them)"
                .into()
        }
        ("clouds[].instances[].analysis", _, "hotslot") => "hot slots are read from Redis \
            Cluster servers the exporter analyses itself (redis:); DCS has no hot slot analysis"
            .into(),
        (_, "bigkey" | "keyfamily" | "hotslot", "source" | "monitor" | "hotkeys") => {
            format!("only analysis.hotkey takes {field}")
        }
        _ => return None,
    };
    Some(hint)
}

/// `redis[0].analysis` as `redis[].analysis`.
fn without_indices(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut skipping = false;
    for c in key.chars() {
        match c {
            '[' => {
                skipping = true;
                out.push('[');
            }
            ']' => {
                skipping = false;
                out.push(']');
            }
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
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
    pub analysis: RawRedisAnalysisSet,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misplaced_field_is_pointed_to_where_it_belongs() {
        assert_eq!(
            without_indices("redis[12].analysis[0].x"),
            "redis[].analysis[].x"
        );
        let hint = |k: &str| elsewhere(k).unwrap_or_default();
        assert!(
            hint("redis[3].analysis.keyfamily.timeout").ends_with("set analysis.bigkey.timeout")
        );
        assert!(hint("redis[0].analysis.keyfamily.fresh_backup").contains("no DCS backups"));
        assert!(hint("clouds[1].instances[2].analysis.keyfamily.families").starts_with("DCS names"));
        for k in [
            "analysis.hotkey.families",
            "redis[0].analysis.bigkey.fresh_backup",
            "clouds[0].instances[0].analysis.hotkey.fresh_backup",
        ] {
            assert!(hint(k).starts_with("only analysis.keyfamily takes"), "{k}");
        }
        // Valid elsewhere or nowhere: nothing to add.
        for k in [
            "analysis.keyfamily.interval",
            "redis[0].bogus",
            "clouds[0].regoin",
            "scrape",
        ] {
            assert_eq!(elsewhere(k), None, "{k}");
        }
    }
}
