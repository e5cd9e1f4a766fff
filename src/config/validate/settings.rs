//! The settings of the whole process: `metrics:` (namespace, the `key` label, key rewriting),
//! `api:` (DCS API call limits) and `scheduler:`.

use std::time::Duration;

use super::super::raw::{RawApi, RawKeyLabel, RawKeyRewrite, RawMetrics, RawScheduler};
use super::super::{is_metric_namespace, ApiSettings, MetricsSettings, SchedulerSettings};
use super::Validator;
use crate::metrics::keylabel::{KeyLabelMode, DEFAULT_MAX_BYTES};
use crate::metrics::keyrewrite::{KeyRewrite, KeyRule};

impl Validator<'_> {
    pub(super) fn metrics(&mut self, raw: &RawMetrics) -> MetricsSettings {
        let max_bytes = raw.key_label_max_bytes.unwrap_or(DEFAULT_MAX_BYTES as u64) as usize;
        let metrics = MetricsSettings {
            namespace: self.string("metrics.namespace", &raw.namespace),
            key_label: match raw.key_label.unwrap_or(RawKeyLabel::Name) {
                RawKeyLabel::Name => KeyLabelMode::Name { max_bytes },
                RawKeyLabel::Hash => KeyLabelMode::Hash,
            },
            key_rewrite: self.key_rewrite(&raw.key_rewrite),
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
        metrics
    }

    fn key_rewrite(&mut self, raw: &[RawKeyRewrite]) -> KeyRewrite {
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

    pub(super) fn api(&mut self, raw: &RawApi) -> ApiSettings {
        let api = ApiSettings {
            timeout: self
                .duration("api.timeout", &raw.timeout)
                .unwrap_or(Duration::from_secs(30)),
            max_retries: raw.max_retries.unwrap_or(3),
            max_concurrent_requests: raw.max_concurrent_requests.unwrap_or(8) as usize,
            max_response_bytes: raw.max_response_bytes.unwrap_or(32 << 20) as usize,
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
        api
    }

    pub(super) fn scheduler(&mut self, raw: &RawScheduler) -> SchedulerSettings {
        SchedulerSettings {
            start_jitter: self
                .duration("scheduler.start_jitter", &raw.start_jitter)
                .unwrap_or(SchedulerSettings::default().start_jitter),
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
    fn api_defaults_and_limits() {
        let (api, p) = check(|v| v.api(&RawApi::default()));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            api,
            ApiSettings {
                timeout: Duration::from_secs(30),
                max_retries: 3,
                max_concurrent_requests: 8,
                max_response_bytes: 32 << 20,
            }
        );
        let raw = RawApi {
            timeout: Some("0s".into()),
            max_retries: Some(11),
            max_concurrent_requests: Some(0),
            max_response_bytes: Some(1023),
        };
        let (_, p) = check(|v| v.api(&raw));
        assert_eq!(
            p,
            [
                "api.timeout: must be greater than 0",
                "api.max_retries: must be at most 10",
                "api.max_concurrent_requests: must be at least 1",
                "api.max_response_bytes: must be at least 1024",
            ]
        );
    }

    #[test]
    fn key_rewrite_rules_need_both_parts() {
        let raw = [
            RawKeyRewrite {
                pattern: Some("^user:\\d+".into()),
                replace: Some("user:N".into()),
            },
            RawKeyRewrite {
                pattern: None,
                replace: None,
            },
        ];
        let (rules, p) = check(|v| v.key_rewrite(&raw));
        assert_eq!(
            p,
            [
                "metrics.key_rewrite[1].match: is required",
                "metrics.key_rewrite[1].replace: is required",
            ]
        );
        // The good rule is kept and applies.
        assert_eq!(rules.apply("user:42:cart"), "user:N:cart");
    }

    #[test]
    fn a_start_jitter_is_a_duration() {
        let (s, p) = check(|v| v.scheduler(&RawScheduler::default()));
        assert_eq!((s, p.len()), (SchedulerSettings::default(), 0));
        let raw = RawScheduler {
            start_jitter: Some("0s".into()),
        };
        assert_eq!(check(|v| v.scheduler(&raw)).0.start_jitter, Duration::ZERO);
        let raw = RawScheduler {
            start_jitter: Some("soon".into()),
        };
        let (_, p) = check(|v| v.scheduler(&raw));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("scheduler.start_jitter: invalid duration"),
            "{p:?}"
        );
    }
}
