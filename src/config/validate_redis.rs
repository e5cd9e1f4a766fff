//! Validation of `redis:` targets: [`RawRedis`] entries into [`RedisTarget`]s, a part of the
//! [`Validator`] kept beside the types it produces.

use std::path::PathBuf;

use url::Url;

use super::hotkey_source::NativeDefaults;
use super::raw::{RawRedis, RawRedisTls};
use super::redis::{
    RedisAddress, RedisTarget, RedisTls, DEFAULT_KEYS_PER_SECOND, MAX_KEYS_PER_SECOND,
};
use super::validate::Validator;
use super::{AnalysisSettings, InstanceDefaults, Mode};
use crate::dcs::Analysis;
use crate::metrics::families::FamilyRules;
use crate::secret::Secret;

impl Validator<'_> {
    pub(super) fn redis_target(
        &mut self,
        key: &str,
        raw: &RawRedis,
        defaults: &InstanceDefaults,
        families: &FamilyRules,
        native: &NativeDefaults,
    ) -> RedisTarget {
        let name = self.string(&format!("{key}.name"), &raw.name);
        let address_text = self.required(&format!("{key}.address"), &raw.address);
        let (address, url_user, url_password) = self.redis_address(key, &address_text);
        let mut username = self.string(&format!("{key}.username"), &raw.username);
        if let Some(u) = url_user {
            if username.is_some() {
                self.problem(
                    format!("{key}.username"),
                    "given both here and in the address; keep one",
                );
            } else {
                username = Some(u);
            }
        }
        if username.as_deref().is_some_and(|u| u.trim().is_empty()) {
            self.problem(format!("{key}.username"), "must not be empty");
        }
        let mut password = self.secret(
            &format!("{key}.password"),
            &raw.password,
            &raw.password_file,
            false,
        );
        if let Some(p) = url_password {
            if password.is_some() {
                self.problem(
                    format!("{key}.password"),
                    "given both here and in the address; keep one",
                );
            } else {
                password = Some(p);
            }
        }
        let id = match self.string(&format!("{key}.id"), &raw.id) {
            Some(id) if id.trim().is_empty() => {
                self.problem(format!("{key}.id"), "must not be empty");
                id
            }
            Some(id) => id,
            None => address.display(),
        };
        let tls = self.redis_tls(key, raw.tls.as_ref(), address.tls);
        let keys_per_second = match raw.throttle.as_ref().and_then(|t| t.keys_per_second) {
            None => DEFAULT_KEYS_PER_SECOND,
            Some(n) if (1..=u64::from(MAX_KEYS_PER_SECOND)).contains(&n) => n as u32,
            Some(_) => {
                self.problem(
                    format!("{key}.throttle.keys_per_second"),
                    format!("must be between 1 and {MAX_KEYS_PER_SECOND}"),
                );
                DEFAULT_KEYS_PER_SECOND
            }
        };
        let mut settings = |a: Analysis, raw_a, base: AnalysisSettings| {
            let k = format!("{key}.analysis.{a}");
            let s = self.analysis(&k, raw_a, base);
            if s.mode == Mode::Observe {
                let from = if raw_a.and_then(|r| r.mode).is_some() {
                    String::new()
                } else {
                    format!(" (inherited from analysis.{a}.mode)")
                };
                self.problem(
                    format!("{k}.mode"),
                    format!(
                        "observe{from} has no meaning for a Redis or Valkey target, which the \
                         exporter analyses itself; use trigger or off"
                    ),
                );
            }
            s
        };
        let hotkey = settings(
            Analysis::Hotkey,
            raw.analysis.hotkey.as_ref(),
            defaults.hotkey,
        );
        let bigkey = settings(
            Analysis::Bigkey,
            raw.analysis.bigkey.as_ref(),
            defaults.bigkey,
        );
        let hotslot = settings(
            Analysis::Hotslot,
            raw.analysis.hotslot.as_ref(),
            native.hotslot,
        );
        let raw_kf = raw.analysis.keyfamily.as_ref();
        let kf = settings(Analysis::Keyfamily, raw_kf, defaults.keyfamily.analysis);
        for (sub, r) in [
            ("hotkey", &raw.analysis.hotkey),
            ("bigkey", &raw.analysis.bigkey),
        ] {
            self.no_fresh_backup(&format!("{key}.analysis.{sub}"), r.as_ref());
        }
        let k = format!("{key}.analysis.keyfamily");
        if let Some(r) = raw_kf {
            for (field, given) in [
                ("interval", r.interval.is_some()),
                ("timeout", r.timeout.is_some()),
            ] {
                if given {
                    self.problem(
                        format!("{k}.{field}"),
                        format!(
                            "the key families of a Redis or Valkey target come with every big \
                             key scan; set analysis.bigkey.{field}"
                        ),
                    );
                }
            }
            if r.fresh_backup.is_some() {
                self.problem(
                    format!("{k}.fresh_backup"),
                    "a Redis or Valkey target has no DCS backups; its key families come from \
                     the big key scan",
                );
            }
        }
        if kf.mode == Mode::Trigger && bigkey.mode == Mode::Off {
            let from = if raw_kf.and_then(|r| r.mode).is_some() {
                String::new()
            } else {
                " (inherited from analysis.keyfamily.mode)".to_owned()
            };
            self.problem(
                format!("{k}.mode"),
                format!(
                    "trigger{from} needs the big key scan, which is off; turn \
                     analysis.bigkey on or set keyfamily to off"
                ),
            );
        }
        let keyfamily = AnalysisSettings {
            interval: bigkey.interval,
            timeout: bigkey.timeout,
            ..kf
        };
        let families = self.families(
            &format!("{k}.families"),
            raw_kf.and_then(|r| r.families.as_ref()),
            families,
        );
        let hotkey_source =
            self.target_hotkey_source(&format!("{key}.analysis"), &raw.analysis, native);
        if hotkey.mode != Mode::Off {
            self.windows_within_timeout(&format!("{key}.analysis"), &hotkey_source, hotkey.timeout);
        }
        RedisTarget {
            id,
            name,
            address,
            username,
            password,
            tls,
            keys_per_second,
            lfu_log_factor: defaults.lfu_log_factor,
            hotkey,
            bigkey,
            keyfamily,
            families,
            hotkey_source,
            hotslot,
        }
    }

    /// Parses `redis://[user[:password]@]host[:port]` (or `rediss://`).
    fn redis_address(
        &mut self,
        key: &str,
        text: &str,
    ) -> (RedisAddress, Option<String>, Option<Secret>) {
        let key = format!("{key}.address");
        let fallback = RedisAddress {
            tls: false,
            host: String::new(),
            port: 6379,
        };
        if text.is_empty() {
            return (fallback, None, None);
        }
        let url = match Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                // Never echo the value: it may carry a password.
                self.problem(&key, format!("not a redis:// or rediss:// URL: {e}"));
                return (fallback, None, None);
            }
        };
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                self.problem(
                    &key,
                    format!("scheme {other}:// is not supported; use redis:// or rediss://"),
                );
                return (fallback, None, None);
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => {
                self.problem(&key, "has no host");
                return (fallback, None, None);
            }
        };
        if !matches!(url.path(), "" | "/") {
            self.problem(
                &key,
                "must not name a database: every database of the server is analysed",
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.problem(&key, "must not have a query or fragment");
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = Some(decode(url.username())).filter(|u| !u.is_empty());
        let password = url.password().map(|p| Secret::new(decode(p)));
        (
            RedisAddress {
                tls,
                host,
                port: url.port().unwrap_or(6379),
            },
            user,
            password,
        )
    }

    fn redis_tls(&mut self, key: &str, raw: Option<&RawRedisTls>, scheme_tls: bool) -> RedisTls {
        let Some(raw) = raw else {
            return RedisTls::default();
        };
        if !scheme_tls {
            self.problem(
                format!("{key}.tls"),
                "is set but the address is redis://; use rediss:// for TLS",
            );
        }
        let read = |v: &mut Self, field: &str, path: &Option<String>| -> Option<Vec<u8>> {
            let k = format!("{key}.tls.{field}");
            let p = v.string(&k, path)?;
            let mut path = PathBuf::from(&p);
            if path.is_relative() {
                if let Some(base) = v.base_dir() {
                    path = base.join(path);
                }
            }
            match std::fs::read(&path) {
                Ok(b) if b.is_empty() => {
                    v.problem(&k, format!("{} is empty", path.display()));
                    None
                }
                Ok(b) => Some(b),
                Err(e) => {
                    v.problem(&k, format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        };
        let ca_pem = read(self, "ca_file", &raw.ca_file);
        let client_cert_pem = read(self, "cert_file", &raw.cert_file);
        let client_key_pem = read(self, "key_file", &raw.key_file)
            .map(|b| Secret::new(String::from_utf8_lossy(&b).into_owned()));
        if client_cert_pem.is_some() != client_key_pem.is_some() {
            self.problem(
                format!("{key}.tls"),
                "cert_file and key_file go together (mutual TLS needs both)",
            );
        }
        let server_name = self.string(&format!("{key}.tls.server_name"), &raw.server_name);
        if server_name.as_deref().is_some_and(|s| s.trim().is_empty()) {
            self.problem(format!("{key}.tls.server_name"), "must not be empty");
        }
        RedisTls {
            ca_pem,
            client_cert_pem,
            client_key_pem,
            server_name,
        }
    }
}
