//! Analysis settings: the global `analysis:` defaults and each instance's or target's overrides
//! (mode, interval, timeout, `top_n`; `fresh_backup` of the key family analysis), and the rules
//! that name key families (`analysis.keyfamily.families`).
//!
//! Settings inherit field by field: what an override does not give comes from the defaults it
//! is laid over, and a warning about an inherited value is said where the user wrote something.

use std::time::Duration;

use super::super::raw::{RawAnalysis, RawFamilies};
use super::super::{duration, AnalysisSettings, KeyfamilySettings, Mode};
use super::Validator;
use crate::metrics::families::{FamilyRule, FamilyRules, MAX_DEPTH};

impl Validator<'_> {
    /// DCS's key family analysis: its schedule, and `fresh_backup`.
    pub(super) fn keyfamily(
        &mut self,
        key: &str,
        schedule: Option<&RawAnalysis>,
        fresh_backup: Option<bool>,
        base: KeyfamilySettings,
    ) -> KeyfamilySettings {
        KeyfamilySettings {
            analysis: self.analysis(key, schedule, base.analysis),
            fresh_backup: fresh_backup.unwrap_or(base.fresh_backup),
        }
    }

    /// `analysis.keyfamily.families`: how a Redis target's big key scan names key families;
    /// what is not given comes from `base`.
    pub(super) fn families(
        &mut self,
        key: &str,
        raw: Option<&RawFamilies>,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::Analysis;

    use crate::config::validate::check;

    fn raw(interval: Option<&str>, timeout: Option<&str>) -> RawAnalysis {
        RawAnalysis {
            interval: interval.map(Into::into),
            timeout: timeout.map(Into::into),
            ..RawAnalysis::default()
        }
    }

    #[test]
    fn an_override_replaces_only_what_it_gives() {
        let base = AnalysisSettings::default_for(Analysis::Bigkey);
        let (s, p, w) = check(|v| v.analysis("k", None, base));
        assert_eq!((s, p.len(), w.len()), (base, 0, 0));
        let over = RawAnalysis {
            top_n: Some(7),
            ..raw(Some("2h"), None)
        };
        let (s, p, w) = check(|v| v.analysis("k", Some(&over), base));
        assert!(p.is_empty() && w.is_empty(), "{p:?} {w:?}");
        assert_eq!(
            s,
            AnalysisSettings {
                interval: Duration::from_secs(7200),
                top_n: 7,
                ..base
            }
        );
    }

    #[test]
    fn limits_are_checked_per_field() {
        let base = AnalysisSettings::default_for(Analysis::Hotkey);
        let over = RawAnalysis {
            top_n: Some(1001),
            ..raw(Some("500ms"), Some("0s"))
        };
        let (_, p, _) = check(|v| v.analysis("k", Some(&over), base));
        assert_eq!(
            p,
            [
                "k.interval: must be at least 1s",
                "k.timeout: must be at least 1s",
                "k.top_n: must be between 1 and 1000",
            ]
        );
    }

    #[test]
    fn a_long_timeout_is_a_warning_where_it_was_written() {
        let base = AnalysisSettings::default_for(Analysis::Hotkey); // 15m, 10m
        let (_, _, w) = check(|v| v.analysis("k", Some(&raw(None, Some("20m"))), base));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("k.timeout: the timeout 20m is longer"),
            "{w:?}"
        );
        let (_, _, w) = check(|v| v.analysis("k", Some(&raw(Some("5m"), None)), base));
        assert!(
            w[0].starts_with("k.interval: the timeout 10m (inherited)"),
            "{w:?}"
        );
        // Not in observe mode, which creates no task.
        let observe = RawAnalysis {
            mode: Some(Mode::Observe),
            ..raw(Some("5m"), None)
        };
        assert!(check(|v| v.analysis("k", Some(&observe), base))
            .2
            .is_empty());
    }

    #[test]
    fn family_rules_inherit_unless_given() {
        let base = FamilyRules {
            delimiter: "/".into(),
            depth: 3,
            rules: vec![FamilyRule {
                pattern: regex::Regex::new("^t-").unwrap(),
                family: "tenant".into(),
            }],
        };
        let (f, p, _) = check(|v| v.families("f", None, &base));
        assert_eq!((f, p.len()), (base.clone(), 0));
        let depth_only = RawFamilies {
            depth: Some(2),
            ..RawFamilies::default()
        };
        let (f, _, _) = check(|v| v.families("f", Some(&depth_only), &base));
        assert_eq!((f.delimiter.as_str(), f.depth, f.rules.len()), ("/", 2, 1));
        // Rules given replace the inherited ones; a bad value keeps the inherited one.
        let raw = RawFamilies {
            delimiter: Some(String::new()),
            depth: Some(MAX_DEPTH as u64 + 1),
            rules: vec![super::super::super::raw::RawFamilyRule {
                pattern: Some("^o-(\\w+)".into()),
                family: Some("org:$1".into()),
            }],
        };
        let (f, p, _) = check(|v| v.families("f", Some(&raw), &base));
        assert_eq!(
            p,
            [
                "f.delimiter: must not be empty".to_owned(),
                format!("f.depth: must be between 1 and {MAX_DEPTH}"),
            ]
        );
        assert_eq!((f.delimiter.as_str(), f.depth), ("/", 3));
        assert_eq!(f.family_of(b"o-acme/1"), "org:acme");
        // The inherited rule is gone: automatic prefixes (ids as `*`).
        assert_eq!(f.family_of(b"t-acme/1"), "t-acme/*");
    }
}
