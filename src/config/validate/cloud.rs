//! `clouds:`: each Huawei Cloud project with its endpoint, credentials (AK/SK or an IAM user),
//! explicit instances and discovery, and the DCS client settings they make.

use std::collections::HashSet;
use std::time::Duration;

use url::Url;

use super::super::raw::{RawAuth, RawCloud, RawDiscovery, RawInstance, RawInstanceKeyfamily};
use super::super::{ApiSettings, CloudConfig, DiscoveryConfig, InstanceConfig, InstanceDefaults};
use super::Validator;
use crate::dcs::{Auth, ClientConfig};
use crate::secret::Secret;

/// Whether `id` looks like a Huawei Cloud project id: 32 hexadecimal digits.
pub fn is_project_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `id` looks like a DCS instance id: a UUID in its hyphenated form
/// (`5560df16-cebf-4473-95c4-d1b573c16e79`).
pub fn is_instance_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl Validator<'_> {
    /// DCS writes project and instance ids in lower case (API answers, the console, labels of
    /// discovered instances): an id written with upper-case letters is used in lower case, so
    /// that it matches those and a duplicate differing only in case is found, with a warning.
    fn lower_case_id(&mut self, key: &str, id: String) -> String {
        if !id.bytes().any(|b| b.is_ascii_uppercase()) {
            return id;
        }
        let lower = id.to_ascii_lowercase();
        self.warning(
            key,
            format!("{id:?} has upper-case letters; DCS ids are lower case: using {lower:?}"),
        );
        lower
    }

    pub(super) fn cloud(
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
        let project_id = self.lower_case_id(&format!("{key}.project_id"), project_id);
        if !project_id.is_empty() && !is_project_id(&project_id) {
            self.problem(
                format!("{key}.project_id"),
                format!(
                    "{project_id:?} is not a project id: expected 32 hexadecimal digits \
                     (console: My Credentials, API Credentials)"
                ),
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
        let id = self.lower_case_id(&format!("{key}.id"), id);
        if !id.is_empty() && !is_instance_id(&id) {
            self.problem(
                format!("{key}.id"),
                format!(
                    "{id:?} is not a DCS instance id: expected a UUID such as \
                     5560df16-cebf-4473-95c4-d1b573c16e79"
                ),
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
            keyfamily: self.keyfamily(
                &format!("{key}.analysis.keyfamily"),
                raw.analysis
                    .keyfamily
                    .as_ref()
                    .map(RawInstanceKeyfamily::schedule)
                    .as_ref(),
                raw.analysis.keyfamily.as_ref().and_then(|k| k.fresh_backup),
                defaults.keyfamily,
            ),
        };
        (!id.is_empty()).then_some(cfg)
    }

    fn discovery(&mut self, key: &str, raw: &RawDiscovery) -> DiscoveryConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `f` returns and the problems it found.
    fn check<T>(f: impl FnOnce(&mut Validator<'_>) -> T) -> (T, Vec<String>) {
        let (out, problems, _) = crate::config::validate::check(f);
        (out, problems)
    }

    #[test]
    fn ids_in_the_format_dcs_uses() {
        assert!(is_project_id("0123456789abcdefABCDEF0123456789"));
        for bad in [
            "",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!is_project_id(bad), "{bad:?}");
        }
        assert!(is_instance_id("5560df16-cebf-4473-95c4-d1b573c16e79"));
        for bad in [
            "5560df16cebf447395c4d1b573c16e79",
            "5560df16-cebf-4473-95c4-d1b573c16e7",
            "5560df16-cebf-4473-95c4_d1b573c16e79",
            "5560df16-cebf-4473-95c4-d1b573c16e7z",
        ] {
            assert!(!is_instance_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn endpoints_are_http_urls_with_a_host() {
        let (u, p) = check(|v| v.url("e", "https://dcs.example.com:8443"));
        assert_eq!(
            u.map(String::from),
            Some("https://dcs.example.com:8443/".into())
        );
        assert!(p.is_empty());
        let (u, p) = check(|v| v.url("e", "ftp://x"));
        assert!(u.is_none());
        assert_eq!(
            p,
            ["e: \"ftp://x\" must be an http:// or https:// URL with a host"]
        );
        let (_, p) = check(|v| v.url("e", "dcs.example.com"));
        assert!(
            p[0].starts_with("e: \"dcs.example.com\" is not a URL"),
            "{p:?}"
        );
    }

    #[test]
    fn credentials_are_one_kind_or_the_other() {
        let both = RawAuth {
            access_key: Some("a".into()),
            user: Some("u".into()),
            ..RawAuth::default()
        };
        let (a, p) = check(|v| v.auth("auth", &both, Some("r")));
        assert!(a.is_none());
        assert_eq!(
            p,
            ["auth: use either access_key/secret_key or user/password, not both"]
        );
        let (_, p) = check(|v| v.auth("auth", &RawAuth::default(), Some("r")));
        assert_eq!(
            p,
            ["auth: give access_key and secret_key (or user, password and domain)"]
        );
        // An IAM user needs an IAM endpoint, from the region or given.
        let iam = RawAuth {
            user: Some("u".into()),
            password: Some("p".into()),
            domain: Some("d".into()),
            ..RawAuth::default()
        };
        let (a, p) = check(|v| v.auth("auth", &iam, None));
        assert!(a.is_none());
        assert_eq!(
            p,
            ["auth.iam_endpoint: is required when the cloud has no region"]
        );
    }

    #[test]
    fn discovery_defaults_and_limits() {
        let raw = RawDiscovery {
            refresh_interval: None,
            name_include: Some("^prod-".into()),
            name_exclude: Some("(".into()),
            tags: Default::default(),
            engine: None,
            status: None,
        };
        let (d, p) = check(|v| v.discovery("d", &raw));
        assert_eq!(d.refresh_interval, Duration::from_secs(300));
        assert_eq!((d.engine.as_str(), d.status.as_str()), ("Redis", "RUNNING"));
        assert!(d.name_include.is_some_and(|r| r.is_match("prod-a")));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("d.name_exclude: invalid regex"), "{p:?}");
        let fast = RawDiscovery {
            refresh_interval: Some("5s".into()),
            name_exclude: None,
            ..raw
        };
        assert_eq!(
            check(|v| v.discovery("d", &fast)).1,
            ["d.refresh_interval: must be at least 10s"]
        );
    }
}
