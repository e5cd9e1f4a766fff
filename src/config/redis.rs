//! `redis:`: Redis and Valkey servers the exporter analyses itself (see [`crate::native`]).
//!
//! The raw entry ([`super::raw::RawRedis`]) refuses unknown keys like the rest of the file;
//! validation (`validate/redis.rs`) turns it into a [`RedisTarget`]: a parsed address (`redis://` or `rediss://`, host and port,
//! credentials in the URL allowed but kept out of the id), the password from `${ENV}` or
//! `password_file` as a [`Secret`], TLS files read once at load, the throttle, and the analysis
//! settings with the global `analysis:` defaults under the target's own overrides. `mode:
//! observe` means "ingest the records someone else created", which has no meaning for a server
//! the exporter scans itself, so it is a problem naming the key.

use super::hotkey_source::HotkeySourceSettings;
use super::{AnalysisSettings, InstanceConfig, Mode};
use crate::dcs::Analysis;
use crate::metrics::families::FamilyRules;
use crate::secret::Secret;

/// Keys per second and node scanned when `throttle.keys_per_second` is not set. See the
/// README ("Redis and Valkey targets") and BENCHMARKS.md for why this is no harder on the
/// server's clients than `redis-cli --bigkeys`.
pub const DEFAULT_KEYS_PER_SECOND: u32 = 20_000;
/// The largest `throttle.keys_per_second` accepted.
pub const MAX_KEYS_PER_SECOND: u32 = 10_000_000;

/// Where a target listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisAddress {
    /// `rediss://`.
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl RedisAddress {
    /// The address without credentials, e.g. `redis://10.0.0.5:6379` (the default id).
    pub fn display(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// TLS settings of a `rediss://` target; files are read when the config loads.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RedisTls {
    /// PEM CA certificates; `None` uses the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Secret>,
    /// The name the server's certificate must carry, when it differs from the host connected to
    /// (always the case for the nodes of a cluster, which announce IP addresses).
    pub server_name: Option<String>,
}

/// A validated `redis:` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisTarget {
    /// `instance_id` label.
    pub id: String,
    /// `instance_name` label; the id when not set.
    pub name: Option<String>,
    pub address: RedisAddress,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: RedisTls,
    /// Keys per second and node.
    pub keys_per_second: u32,
    pub lfu_log_factor: u32,
    pub hotkey: AnalysisSettings,
    pub bigkey: AnalysisSettings,
    /// Key families from the big key scan: `mode` (trigger: every big key scan also builds
    /// them) and `top_n` (families exported); interval and timeout are the big key scan's, as
    /// it has no loop of its own.
    pub keyfamily: AnalysisSettings,
    /// How key names become families.
    pub families: FamilyRules,
    /// The time limit of a hot key scan, when the target sets one (`None`: `auto`, see
    /// [`AUTO_FOLLOW`]).
    pub hotkey_timeout: Option<std::time::Duration>,
    /// The same for big key scans.
    pub bigkey_timeout: Option<std::time::Duration>,
    /// Where the hot keys come from (`analysis.hotkey.source` and its settings).
    pub hotkey_source: HotkeySourceSettings,
    /// Hot slots of a Redis Cluster (`analysis.hotslot`): `top_n` per node; its `timeout` is
    /// the time limit of each analysis (a few polls, never `auto`).
    pub hotslot: AnalysisSettings,
}

/// How long the scheduler follows a native scan whose `timeout` is `auto` (the default): a
/// scan is not cut off while it makes progress at its pace, whatever the size of the node;
/// it fails as `timeout` only when it walks no key for [`STALL_LIMIT`]. This bound only keeps
/// a loop from following a scan forever.
pub const AUTO_FOLLOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// A native scan with `timeout: auto` that walks no key for this long fails as `timeout`.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl RedisTarget {
    /// The time limit of a scan of `analysis`: the target's own, or `None` for `auto` (cut off
    /// only when it stalls).
    pub fn scan_timeout(&self, analysis: Analysis) -> Option<std::time::Duration> {
        match analysis {
            Analysis::Hotkey => self.hotkey_timeout,
            Analysis::Bigkey | Analysis::Keyfamily => self.bigkey_timeout,
            Analysis::Hotslot => Some(self.hotslot.timeout),
        }
    }

    pub fn analysis(&self, analysis: Analysis) -> &AnalysisSettings {
        match analysis {
            Analysis::Hotkey => &self.hotkey,
            Analysis::Bigkey => &self.bigkey,
            Analysis::Keyfamily => &self.keyfamily,
            Analysis::Hotslot => &self.hotslot,
        }
    }

    /// Whether big key scans also build key families.
    pub fn families_on(&self) -> bool {
        self.keyfamily.mode != Mode::Off && self.bigkey.mode != Mode::Off
    }

    /// The scheduler's view of the target (labels and analysis settings).
    pub fn instance(&self) -> InstanceConfig {
        InstanceConfig {
            id: self.id.clone(),
            name: self.name.clone(),
            lfu_log_factor: self.lfu_log_factor,
            hotkey: self.hotkey,
            bigkey: self.bigkey,
            // Built by the big key scan (see `native`): no loop of its own runs.
            keyfamily: super::KeyfamilySettings {
                analysis: self.keyfamily,
                fresh_backup: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Config, ConfigError};
    use std::time::Duration;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| (name == "REDIS_PW").then(|| "from-env".to_owned());
        load_str(text, "test.yml", None, &env)
    }

    fn problems(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("config must be refused:\n{text}"),
            Err(e) => e.problems().join("\n"),
        }
    }

    #[test]
    fn a_config_with_only_redis_targets_is_valid_with_documented_defaults() {
        let c = load(
            "redis:\n  - name: sessions\n    address: redis://u%40x:p%3Aw@10.0.0.5\n  - address: rediss://[::1]:7000\n    password: ${REDIS_PW}\n    throttle: {keys_per_second: 500}\n    analysis: {hotkey: {mode: off}, bigkey: {top_n: 7}}\n",
        )
        .unwrap();
        assert!(c.clouds.is_empty());
        let a = &c.redis[0];
        assert_eq!(a.id, "redis://10.0.0.5:6379");
        assert_eq!(a.name.as_deref(), Some("sessions"));
        assert_eq!(a.username.as_deref(), Some("u@x"));
        assert_eq!(a.password.as_ref().map(Secret::expose), Some("p:w"));
        assert_eq!(a.keys_per_second, DEFAULT_KEYS_PER_SECOND);
        assert_eq!(
            a.hotkey,
            AnalysisSettings {
                timeout: crate::config::redis::AUTO_FOLLOW,
                ..AnalysisSettings::default_for(Analysis::Hotkey)
            }
        );
        assert_eq!(a.scan_timeout(Analysis::Hotkey), None, "auto");
        let b = &c.redis[1];
        assert_eq!(b.id, "rediss://[::1]:7000");
        assert!(b.address.tls);
        assert_eq!(b.password.as_ref().map(Secret::expose), Some("from-env"));
        assert_eq!(b.keys_per_second, 500);
        assert_eq!(b.hotkey.mode, Mode::Off);
        assert_eq!(b.bigkey.top_n, 7);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("p:w") && !debug.contains("from-env"),
            "{debug}"
        );
    }

    #[test]
    fn observe_mode_and_bad_entries_are_problems_naming_the_key() {
        let msg = problems(
            "analysis: {bigkey: {mode: observe}}\nredis:\n  - address: redis://h\n    analysis: {hotkey: {mode: observe}}\n  - address: http://h\n  - address: redis://h:1/2\n    tls: {ca_file: ca.pem}\n    throttle: {keys_per_second: 0}\n  - {}\n",
        );
        for want in [
            "redis[0].analysis.hotkey.mode: observe has no meaning",
            "redis[0].analysis.bigkey.mode: observe (inherited from analysis.bigkey.mode)",
            "redis[1].address: scheme http:// is not supported",
            "redis[2].address: must not name a database",
            "redis[2].tls: is set but the address is redis://",
            "redis[2].tls.ca_file: cannot read ca.pem",
            "redis[2].throttle.keys_per_second: must be between 1 and 10000000",
            "redis[3].address: is required",
        ] {
            assert!(msg.contains(want), "{want:?} missing from:\n{msg}");
        }
        // Unknown keys are refused by the parser, with their path.
        let msg = problems("redis:\n  - address: redis://h\n    bogus: 1\n");
        assert!(msg.contains("redis[0]") && msg.contains("bogus"), "{msg}");
        // Two targets with the same id.
        let msg = problems("redis:\n  - address: redis://h\n  - address: redis://h:6379\n");
        assert!(
            msg.contains("redis[1].id: redis://h:6379 is listed more than once"),
            "{msg}"
        );
        // A password in the address never shows in a problem.
        let msg = problems("redis:\n  - address: redis://u:hunter2@h\n    password: x\n");
        assert!(msg.contains("redis[0].password: given both"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn key_families_of_a_redis_target_inherit_and_override() {
        let c = load(
            "analysis:\n  keyfamily:\n    mode: trigger\n    top_n: 9\n    families: {delimiter: '/', rules: [{match: '^t-(\\w+)', family: 'tenant:$1'}]}\nredis:\n  - address: redis://10.0.0.5\n    analysis: {bigkey: {interval: 2h}}\n  - address: redis://10.0.0.6\n    analysis: {keyfamily: {top_n: 3, families: {depth: 2}}}\n  - address: redis://10.0.0.7\n    analysis: {keyfamily: {mode: off}}\n",
        )
        .unwrap();
        let a = &c.redis[0];
        assert!(a.families_on());
        assert_eq!(a.keyfamily.top_n, 9);
        assert_eq!(
            a.keyfamily.interval,
            Duration::from_secs(7200),
            "the big key scan's"
        );
        assert_eq!(a.families.delimiter, "/");
        assert_eq!(a.families.depth, crate::metrics::families::DEFAULT_DEPTH);
        assert_eq!(a.families.family_of(b"t-acme/1"), "tenant:acme");
        let b = &c.redis[1];
        assert_eq!(b.keyfamily.top_n, 3);
        assert_eq!((b.families.delimiter.as_str(), b.families.depth), ("/", 2));
        assert_eq!(
            b.families.rules.len(),
            1,
            "rules inherited when none are given"
        );
        assert!(!c.redis[2].families_on());
        // On unless the target or the global analysis: turns them off, or the big key scan
        // is off.
        let d = load("redis:\n  - address: redis://10.0.0.5\n").unwrap();
        assert!(d.redis[0].families_on());
        assert_eq!(d.redis[0].families, FamilyRules::default());
        let off =
            load("analysis: {keyfamily: {mode: off}}\nredis:\n  - address: redis://10.0.0.5\n")
                .unwrap();
        assert!(!off.redis[0].families_on());
        let nobig =
            load("redis:\n  - address: redis://10.0.0.5\n    analysis: {bigkey: {mode: off}}\n")
                .unwrap();
        assert_eq!(
            nobig.redis[0].keyfamily.mode,
            Mode::Off,
            "no problem either"
        );
    }

    #[test]
    fn key_family_settings_that_cannot_work_are_refused_by_key() {
        let p = problems(
            "redis:\n  - address: redis://10.0.0.5\n    analysis:\n      bigkey: {mode: off, families: {depth: 2}}\n      keyfamily:\n        mode: trigger\n        interval: 1h\n        fresh_backup: true\n        families:\n          delimiter: ''\n          depth: 0\n          rules:\n            - {match: '(', family: x}\n            - {match: 'a', family: other}\n            - {family: y}\n",
        );
        for want in [
            // Fields that have no meaning there: the parser lists those that have, and says
            // where these belong.
            "redis[0].analysis.bigkey.families: unknown field `families`, expected one of `mode`, `interval`, `timeout`, `top_n`; only analysis.keyfamily takes families (line 4)",
            "redis[0].analysis.keyfamily.interval: unknown field `interval`, expected one of `mode`, `top_n`, `families`; the key families of a Redis or Valkey target come with every big key scan: set analysis.bigkey.interval (line 7)",
            "redis[0].analysis.keyfamily.fresh_backup: unknown field `fresh_backup`, expected one of `mode`, `top_n`, `families`; a Redis or Valkey target has no DCS backups: its key families come from the big key scan (line 8)",
            "redis[0].analysis.keyfamily.mode: trigger needs the big key scan, which is off",
            "redis[0].analysis.keyfamily.families.delimiter: must not be empty",
            "redis[0].analysis.keyfamily.families.depth: must be between 1 and 16",
            "redis[0].analysis.keyfamily.families.rules[0].match: not a valid regex",
            "redis[0].analysis.keyfamily.families.rules[1].family: \"other\" is the family",
            "redis[0].analysis.keyfamily.families.rules[2].match: is required",
        ] {
            assert!(p.contains(want), "missing {want:?} in:\n{p}");
        }
        let unknown = problems(
            "redis:\n  - address: redis://10.0.0.5\n    analysis: {keyfamily: {families: {prefix: x}}}\n",
        );
        assert!(unknown.contains("prefix"), "{unknown}");
    }
}
