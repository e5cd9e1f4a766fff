//! `redis:`: each [`RawRedis`] entry into a [`RedisTarget`] (address, credentials, TLS,
//! throttle, and the analysis settings laid over the global defaults).

use super::super::hotkey_source::NativeDefaults;
use super::super::raw::{RawRedis, RawRedisTls};
use super::super::redis::{
    RedisAddress, RedisTarget, RedisTls, DEFAULT_KEYS_PER_SECOND, MAX_KEYS_PER_SECOND,
};
use super::super::InstanceDefaults;
use super::super::Mode;
use super::address;
use super::files::Holds;
use super::Validator;
use crate::metrics::families::FamilyRules;
use crate::secret::Secret;

impl Validator<'_> {
    pub(super) fn redis_target(
        &mut self,
        key: &str,
        raw: &RawRedis,
        defaults: &InstanceDefaults,
        families: &FamilyRules,
        global_keyfamily: Option<Mode>,
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
        let analysis = self.redis_analysis(
            &format!("{key}.analysis"),
            &raw.analysis,
            defaults,
            families,
            global_keyfamily,
            native,
        );
        RedisTarget {
            id,
            name,
            address,
            username,
            password,
            tls,
            keys_per_second,
            lfu_log_factor: defaults.lfu_log_factor,
            hotkey: analysis.hotkey,
            bigkey: analysis.bigkey,
            keyfamily: analysis.keyfamily,
            families: analysis.families,
            hotkey_timeout: analysis.hotkey_timeout,
            bigkey_timeout: analysis.bigkey_timeout,
            hotkey_source: analysis.hotkey_source,
            hotslot: analysis.hotslot,
        }
    }

    /// The `address` of the target at `key`: see [`address::parse`].
    fn redis_address(
        &mut self,
        key: &str,
        text: &str,
    ) -> (RedisAddress, Option<String>, Option<Secret>) {
        let key = format!("{key}.address");
        if text.is_empty() {
            let fallback = RedisAddress {
                tls: false,
                host: String::new(),
                port: address::DEFAULT_PORT,
            };
            return (fallback, None, None);
        }
        let parsed = address::parse(text);
        for p in parsed.problems {
            self.problem(&key, p);
        }
        (parsed.address, parsed.user, parsed.password)
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
        let mut read = |field: &str, path: &Option<String>, holds: Holds| {
            let k = format!("{key}.tls.{field}");
            let p = self.string(&k, path)?;
            self.file(&k, &p, holds)
        };
        let ca_pem = read("ca_file", &raw.ca_file, Holds::Certificates);
        let client_cert_pem = read("cert_file", &raw.cert_file, Holds::Certificates);
        let client_key_pem = read("key_file", &raw.key_file, Holds::Key)
            .and_then(|b| String::from_utf8(b).ok())
            .map(Secret::new);
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
