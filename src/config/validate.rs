//! The second stage: [`RawConfig`] to the typed [`Config`], collecting every [`Problem`].
//!
//! Each check names the key it concerns; the caller adds the line. Strings are `${VAR}`-expanded
//! here, where the key is known, and secret files are read here ([`file::read_bounded`], at most
//! [`MAX_SECRET_BYTES`]).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{self, RawAnalysis, RawAuth, RawCloud, RawConfig, RawInstance, RawKeyLabel};
use super::{
    duration, file, is_metric_namespace, AnalysisSettings, ApiSettings, CloudConfig, Config,
    DiscoveryConfig, InstanceConfig, InstanceDefaults, KeyfamilySettings, MetricsSettings, Mode,
    Problem, SchedulerSettings, MAX_SECRET_BYTES,
};
use crate::dcs::{Analysis, Auth, ClientConfig};
use crate::metrics::families::{FamilyRule, FamilyRules, MAX_DEPTH};
use crate::metrics::keylabel::{KeyLabelMode, DEFAULT_MAX_BYTES};
use crate::metrics::keyrewrite::{KeyRewrite, KeyRule};
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

pub(super) struct Validator<'a> {
    problems: Vec<Problem>,
    /// Legal but probably unintended settings.
    warnings: Vec<Problem>,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: Option<&'a Path>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(
        env: &'a dyn Fn(&str) -> Option<String>,
        base_dir: Option<&'a Path>,
    ) -> Validator<'a> {
        Validator {
            problems: Vec::new(),
            warnings: Vec::new(),
            env,
            base_dir,
        }
    }

    /// The problems and the warnings.
    /// Where relative paths in the config are resolved from.
    pub(super) fn base_dir(&self) -> Option<&'a Path> {
        self.base_dir
    }

    pub(super) fn finish(self) -> (Vec<Problem>, Vec<Problem>) {
        (self.problems, self.warnings)
    }

    pub(super) fn warning(&mut self, key: impl fmt::Display, msg: impl fmt::Display) {
        self.warnings
            .push(Problem::new(key.to_string(), msg.to_string()));
    }

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

    pub(super) fn problem(&mut self, key: impl fmt::Display, msg: impl fmt::Display) {
        self.problems
            .push(Problem::new(key.to_string(), msg.to_string()));
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

    pub(super) fn string(&mut self, key: &str, value: &Option<String>) -> Option<String> {
        value.as_deref().map(|v| self.expand(key, v))
    }

    pub(super) fn required(&mut self, key: &str, value: &Option<String>) -> String {
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
    pub(super) fn secret(
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
                let text = file::read_bounded(&path, MAX_SECRET_BYTES).and_then(|b| {
                    String::from_utf8(b).map_err(|_| {
                        file::ReadError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not valid UTF-8",
                        ))
                    })
                });
                match text {
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

    pub(super) fn config(&mut self, raw: RawConfig) -> Config {
        let max_bytes = raw
            .metrics
            .key_label_max_bytes
            .unwrap_or(DEFAULT_MAX_BYTES as u64) as usize;
        let metrics = MetricsSettings {
            namespace: self.string("metrics.namespace", &raw.metrics.namespace),
            key_label: match raw.metrics.key_label.unwrap_or(RawKeyLabel::Name) {
                RawKeyLabel::Name => KeyLabelMode::Name { max_bytes },
                RawKeyLabel::Hash => KeyLabelMode::Hash,
            },
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
        // Checked in hash mode too, where it is not used: a typo should not wait for a switch.
        if !(16..=65536).contains(&max_bytes) {
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
            keyfamily: self.keyfamily(
                "analysis.keyfamily",
                raw.analysis.keyfamily.as_ref(),
                KeyfamilySettings::default(),
            ),
        };
        for (key, raw) in [
            ("analysis.hotkey", &raw.analysis.hotkey),
            ("analysis.bigkey", &raw.analysis.bigkey),
        ] {
            self.no_fresh_backup(key, raw.as_ref());
        }
        let native = self.native_defaults(&raw.analysis);
        let families = self.families(
            "analysis.keyfamily.families",
            raw.analysis
                .keyfamily
                .as_ref()
                .and_then(|k| k.families.as_ref()),
            &FamilyRules::default(),
        );

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
        let redis: Vec<super::redis::RedisTarget> = raw
            .redis
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.redis_target(&format!("redis[{i}]"), r, &defaults, &families, &native)
            })
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
                Err(e) => self.problem(format!("{key}.{}", e.field()), e),
            }
        }
        KeyRewrite::new(rules)
    }

    fn keyfamily(
        &mut self,
        key: &str,
        raw: Option<&RawAnalysis>,
        base: KeyfamilySettings,
    ) -> KeyfamilySettings {
        KeyfamilySettings {
            analysis: self.analysis(key, raw, base.analysis),
            fresh_backup: raw
                .and_then(|r| r.fresh_backup)
                .unwrap_or(base.fresh_backup),
        }
    }

    /// `fresh_backup` and `families` belong to the key family analysis only.
    pub(super) fn no_fresh_backup(&mut self, key: &str, raw: Option<&RawAnalysis>) {
        if raw.is_some_and(|r| r.fresh_backup.is_some()) {
            self.problem(
                format!("{key}.fresh_backup"),
                "only analysis.keyfamily takes fresh_backup",
            );
        }
        if raw.is_some_and(|r| r.families.is_some()) {
            self.problem(
                format!("{key}.families"),
                "only analysis.keyfamily takes families",
            );
        }
    }

    /// `analysis.keyfamily.families`: how a Redis target's big key scan names key families;
    /// what is not given comes from `base`.
    pub(super) fn families(
        &mut self,
        key: &str,
        raw: Option<&raw::RawFamilies>,
        base: &FamilyRules,
    ) -> FamilyRules {
        let Some(raw) = raw else { return base.clone() };
        let delimiter = match &raw.delimiter {
            Some(d) if d.is_empty() => {
                self.problem(format!("{key}.delimiter"), "must not be empty");
                base.delimiter.clone()
            }
            Some(d) => d.clone(),
            None => base.delimiter.clone(),
        };
        let depth = match raw.depth {
            None => base.depth,
            Some(d) if (1..=MAX_DEPTH as u64).contains(&d) => d as usize,
            Some(_) => {
                self.problem(
                    format!("{key}.depth"),
                    format!("must be between 1 and {MAX_DEPTH}"),
                );
                base.depth
            }
        };
        let mut rules = if raw.rules.is_empty() {
            base.rules.clone()
        } else {
            Vec::new()
        };
        for (i, r) in raw.rules.iter().enumerate() {
            let k = format!("{key}.rules[{i}]");
            // No ${VAR} expansion: `$` belongs to the regex and capture group syntax.
            let pattern = match r.pattern.as_deref() {
                None => {
                    self.problem(format!("{k}.match"), "is required");
                    None
                }
                Some(p) => match regex::Regex::new(p) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        self.problem(format!("{k}.match"), format!("not a valid regex: {e}"));
                        None
                    }
                },
            };
            let family = match r.family.as_deref() {
                None => {
                    self.problem(format!("{k}.family"), "is required");
                    None
                }
                Some(f) if f.trim().is_empty() => {
                    self.problem(format!("{k}.family"), "must not be empty");
                    None
                }
                Some(f) if f == crate::metrics::families::OTHER => {
                    self.problem(
                        format!("{k}.family"),
                        "\"other\" is the family of everything outside the top N; pick \
                         another name",
                    );
                    None
                }
                Some(f) => Some(f.to_owned()),
            };
            if let (Some(pattern), Some(family)) = (pattern, family) {
                rules.push(FamilyRule { pattern, family });
            }
        }
        FamilyRules {
            delimiter,
            depth,
            rules,
        }
    }

    pub(super) fn analysis(
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
        // A task that may run longer than the interval can still be running when the next one
        // is due: allowed (short test cadences do it on purpose), but worth a word. Said where
        // the user wrote something; an inherited pair is checked where it was written.
        let written = raw.interval.is_some() || raw.timeout.is_some();
        if s.mode == Mode::Trigger && written && s.timeout > s.interval {
            let (field, whose) = if raw.timeout.is_some() {
                ("timeout", "")
            } else {
                ("interval", " (inherited)")
            };
            self.warning(
                format!("{key}.{field}"),
                format!(
                    "the timeout {}{whose} is longer than the interval {}: a task can still \
                     be running when the next is due (make the timeout at most the interval)",
                    duration::format(s.timeout),
                    duration::format(s.interval)
                ),
            );
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
                raw.analysis.keyfamily.as_ref(),
                defaults.keyfamily,
            ),
        };
        for (sub, r) in [
            ("hotkey", &raw.analysis.hotkey),
            ("bigkey", &raw.analysis.bigkey),
        ] {
            self.no_fresh_backup(&format!("{key}.analysis.{sub}"), r.as_ref());
        }
        self.dcs_analysis_set(&format!("{key}.analysis"), &raw.analysis);
        if raw
            .analysis
            .keyfamily
            .as_ref()
            .is_some_and(|k| k.families.is_some())
        {
            self.problem(
                format!("{key}.analysis.keyfamily.families"),
                "DCS names the families of its offline key analysis itself; families: applies \
                 to Redis targets (redis:) only",
            );
        }
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
