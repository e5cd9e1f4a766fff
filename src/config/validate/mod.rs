//! The second stage: [`RawConfig`] to the typed [`Config`], collecting every [`Problem`].
//!
//! Each check names the key it concerns; the caller adds the line. Strings are `${VAR}`-expanded
//! here, where the key is known. The `Validator` holds what every check shares (the problems
//! found, the environment, the directory relative paths start from) and its basic readers
//! (strings, required values, durations); each part of the file has a file of its own:
//!
//! - `settings`: `metrics:`, `api:` and `scheduler:`, the settings of the whole process;
//! - `analysis`: the analysis settings (`analysis:` and each instance's or target's
//!   overrides) and the key family naming rules;
//! - `cloud`: `clouds:`, their credentials, instances and discovery;
//! - `redis`: `redis:` targets and their TLS settings, `address`: what their address says, and
//!   `redis_analysis`: what the exporter's own scans of them do, `hotkey_source`: where their
//!   hot keys come from and their hot slots;
//! - `files`: every file the config names (secrets, certificates), read with the same checks.

mod address;
mod analysis;
mod cloud;
mod files;
mod hotkey_source;
mod redis;
mod redis_analysis;
mod settings;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawConfig, RawHotkey, RawKeyfamily};
use super::{duration, AnalysisSettings, Config, InstanceDefaults, KeyfamilySettings, Problem};
use crate::dcs::Analysis;
use crate::metrics::families::FamilyRules;

pub use cloud::{is_instance_id, is_project_id};

pub(super) struct Validator<'a> {
    problems: Vec<Problem>,
    /// Legal but probably unintended settings.
    warnings: Vec<Problem>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether `${NAME}` is expanded (in a file; a value from the command line is taken as
    /// given: the shell has expanded what it meant to).
    expand_env: bool,
    base_dir: Option<&'a Path>,
}

/// The environment of a validator that expands nothing.
fn no_env(_: &str) -> Option<String> {
    None
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
            expand_env: true,
            base_dir,
        }
    }

    /// A validator of values given on the command line: taken as written, no `${NAME}`
    /// expansion; relative paths start from the working directory.
    pub(super) fn literal() -> Validator<'static> {
        Validator {
            expand_env: false,
            ..Validator::new(&no_env, None)
        }
    }

    /// The problems and the warnings.
    pub(super) fn finish(self) -> (Vec<Problem>, Vec<Problem>) {
        (self.problems, self.warnings)
    }

    fn warning(&mut self, key: impl fmt::Display, msg: impl fmt::Display) {
        self.warnings
            .push(Problem::new(key.to_string(), msg.to_string()));
    }

    fn problem(&mut self, key: impl fmt::Display, msg: impl fmt::Display) {
        self.problems
            .push(Problem::new(key.to_string(), msg.to_string()));
    }

    /// Expands `${NAME}` references; an unset variable is a problem.
    fn expand(&mut self, key: &str, value: &str) -> String {
        if !self.expand_env {
            return value.to_owned();
        }
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

    pub(super) fn config(&mut self, raw: RawConfig) -> Config {
        let metrics = self.metrics(&raw.metrics);
        let api = self.api(&raw.api);

        let lfu = raw.metrics.lfu_log_factor.unwrap_or(10);
        let defaults = InstanceDefaults {
            lfu_log_factor: lfu,
            hotkey: self.analysis(
                "analysis.hotkey",
                raw.analysis
                    .hotkey
                    .as_ref()
                    .map(RawHotkey::schedule)
                    .as_ref(),
                AnalysisSettings::default_for(Analysis::Hotkey),
            ),
            bigkey: self.analysis(
                "analysis.bigkey",
                raw.analysis.bigkey.as_ref(),
                AnalysisSettings::default_for(Analysis::Bigkey),
            ),
            keyfamily: self.keyfamily(
                "analysis.keyfamily",
                raw.analysis
                    .keyfamily
                    .as_ref()
                    .map(RawKeyfamily::schedule)
                    .as_ref(),
                raw.analysis.keyfamily.as_ref().and_then(|k| k.fresh_backup),
                KeyfamilySettings::default(),
            ),
        };
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
                self.redis_target(
                    &format!("redis[{i}]"),
                    r,
                    &defaults,
                    &families,
                    raw.analysis.keyfamily.as_ref().and_then(|k| k.mode),
                    &native,
                )
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
        let scheduler = self.scheduler(&raw.scheduler);
        Config {
            clouds,
            redis,
            metrics,
            api,
            scheduler,
        }
    }
}

/// Runs `f` on a validator with an empty environment: what it returns, then the problems and
/// the warnings it found, as text (for the tests of each part).
#[cfg(test)]
fn check<T>(f: impl FnOnce(&mut Validator<'_>) -> T) -> (T, Vec<String>, Vec<String>) {
    let env = |_: &str| None;
    let mut v = Validator::new(&env, None);
    let out = f(&mut v);
    let (p, w) = v.finish();
    let text = |v: Vec<crate::config::Problem>| v.iter().map(ToString::to_string).collect();
    (out, text(p), text(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B_2" => Some("beta".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn expand(value: &str) -> (String, Vec<String>) {
        let mut v = Validator::new(&env, None);
        let out = v.expand("k", value);
        let (problems, _) = v.finish();
        (out, problems.iter().map(Problem::to_string).collect())
    }

    #[test]
    fn expansion_replaces_every_reference_and_keeps_the_rest() {
        assert_eq!(expand("plain"), ("plain".into(), vec![]));
        assert_eq!(
            expand("${A}-${B_2}/${A}"),
            ("alpha-beta/alpha".into(), vec![])
        );
        // A lone `$` or `{` is text.
        assert_eq!(expand("$A {A} $"), ("$A {A} $".into(), vec![]));
        assert_eq!(expand("x${EMPTY}y"), ("xy".into(), vec![]));
    }

    #[test]
    fn expansion_names_what_is_wrong_with_a_reference() {
        let (_, p) = expand("${NOPE}");
        assert_eq!(p, ["k: environment variable NOPE is not set"]);
        let (_, p) = expand("${1A}");
        assert_eq!(p, ["k: invalid environment variable name \"1A\""]);
        let (_, p) = expand("${}");
        assert_eq!(p, ["k: invalid environment variable name \"\""]);
        let (out, p) = expand("a${A");
        assert_eq!(out, "a");
        assert_eq!(p, ["k: unterminated ${...} reference"]);
        // Every bad reference is reported, not only the first.
        let (_, p) = expand("${X} ${Y}");
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn a_literal_validator_expands_nothing() {
        let mut v = Validator::literal();
        assert_eq!(v.expand("k", "p${A}ss${"), "p${A}ss${");
        assert!(v.finish().0.is_empty());
    }

    #[test]
    fn an_empty_required_value_is_said_once() {
        let mut v = Validator::new(&env, None);
        assert_eq!(v.required("a", &Some("${EMPTY}".into())), "");
        assert_eq!(v.required("b", &Some("${NOPE}".into())), "");
        assert_eq!(v.required("c", &None), "");
        assert_eq!(v.required("d", &Some(" x ".into())), " x ");
        let (p, _) = v.finish();
        let p: Vec<String> = p.iter().map(Problem::to_string).collect();
        assert_eq!(
            p,
            [
                "a: must not be empty",
                // The unset variable, not also "must not be empty".
                "b: environment variable NOPE is not set",
                "c: is required",
            ]
        );
    }
}
