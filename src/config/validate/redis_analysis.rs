//! `redis[].analysis`: what the exporter's own scans of a Redis or Valkey target do, laid over
//! the global `analysis:` defaults.
//!
//! A target is analysed by the exporter itself, so DCS's notions do not apply: `mode: observe`
//! (ingest what someone else ran) is refused, also when inherited, and the key families come
//! with every big key scan, so they take the big key scan's interval and timeout and need it
//! on. The parser has already refused fields that have no meaning here (`fresh_backup`,
//! `keyfamily.interval`); settings only Redis targets know go in [`RawRedisAnalysisSet`] and
//! are checked here.

use super::super::raw::{RawAnalysis, RawRedisAnalysisSet, RawRedisKeyfamily};
use super::super::{AnalysisSettings, InstanceDefaults, Mode};
use super::Validator;
use crate::dcs::Analysis;
use crate::metrics::families::FamilyRules;

/// A target's validated analysis settings.
pub(super) struct RedisAnalysis {
    pub hotkey: AnalysisSettings,
    pub bigkey: AnalysisSettings,
    /// Mode and `top_n` of its own; interval and timeout of the big key scan.
    pub keyfamily: AnalysisSettings,
    pub families: FamilyRules,
}

impl Validator<'_> {
    /// `key` is the target's `analysis` (`redis[0].analysis`); `families` the global rules.
    pub(super) fn redis_analysis(
        &mut self,
        key: &str,
        raw: &RawRedisAnalysisSet,
        defaults: &InstanceDefaults,
        families: &FamilyRules,
    ) -> RedisAnalysis {
        let hotkey =
            self.native_analysis(key, Analysis::Hotkey, raw.hotkey.as_ref(), defaults.hotkey);
        let bigkey =
            self.native_analysis(key, Analysis::Bigkey, raw.bigkey.as_ref(), defaults.bigkey);
        let raw_kf = raw.keyfamily.as_ref();
        let kf = self.native_analysis(
            key,
            Analysis::Keyfamily,
            raw_kf.map(RawRedisKeyfamily::schedule).as_ref(),
            defaults.keyfamily.analysis,
        );
        let k = format!("{key}.keyfamily");
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
        RedisAnalysis {
            hotkey,
            bigkey,
            keyfamily,
            families,
        }
    }

    /// One analysis of a target: the common settings, without `observe`.
    fn native_analysis(
        &mut self,
        key: &str,
        analysis: Analysis,
        raw: Option<&RawAnalysis>,
        base: AnalysisSettings,
    ) -> AnalysisSettings {
        let k = format!("{key}.{analysis}");
        let s = self.analysis(&k, raw, base);
        if s.mode == Mode::Observe {
            let from = if raw.and_then(|r| r.mode).is_some() {
                String::new()
            } else {
                format!(" (inherited from analysis.{analysis}.mode)")
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyfamilySettings, Problem};

    fn defaults() -> InstanceDefaults {
        InstanceDefaults {
            lfu_log_factor: 10,
            hotkey: AnalysisSettings::default_for(Analysis::Hotkey),
            bigkey: AnalysisSettings::default_for(Analysis::Bigkey),
            keyfamily: KeyfamilySettings::default(),
        }
    }

    fn check(
        raw: &RawRedisAnalysisSet,
        defaults: &InstanceDefaults,
    ) -> (RedisAnalysis, Vec<String>) {
        let env = |_: &str| None;
        let mut v = Validator::new(&env, None);
        let out = v.redis_analysis("r.analysis", raw, defaults, &FamilyRules::default());
        let (p, _) = v.finish();
        (out, p.iter().map(Problem::to_string).collect())
    }

    #[test]
    fn key_families_follow_the_big_key_scan() {
        let raw = RawRedisAnalysisSet {
            bigkey: Some(RawAnalysis {
                interval: Some("2h".into()),
                timeout: Some("45m".into()),
                ..RawAnalysis::default()
            }),
            keyfamily: Some(RawRedisKeyfamily {
                mode: Some(Mode::Trigger),
                top_n: Some(5),
                families: None,
            }),
            ..RawRedisAnalysisSet::default()
        };
        let (a, p) = check(&raw, &defaults());
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            a.keyfamily,
            AnalysisSettings {
                mode: Mode::Trigger,
                interval: std::time::Duration::from_secs(7200),
                timeout: std::time::Duration::from_secs(45 * 60),
                top_n: 5,
            }
        );
        assert_eq!(a.hotkey, AnalysisSettings::default_for(Analysis::Hotkey));
        // Without the big key scan there is nothing to build them from.
        let off = RawRedisAnalysisSet {
            bigkey: Some(RawAnalysis {
                mode: Some(Mode::Off),
                ..RawAnalysis::default()
            }),
            ..raw
        };
        let (_, p) = check(&off, &defaults());
        assert_eq!(
            p,
            [
                "r.analysis.keyfamily.mode: trigger needs the big key scan, which is off; turn \
              analysis.bigkey on or set keyfamily to off"
            ]
        );
    }

    #[test]
    fn observe_is_refused_where_it_is_written_or_inherited() {
        let mut d = defaults();
        d.bigkey.mode = Mode::Observe;
        let raw = RawRedisAnalysisSet {
            hotkey: Some(RawAnalysis {
                mode: Some(Mode::Observe),
                ..RawAnalysis::default()
            }),
            ..RawRedisAnalysisSet::default()
        };
        let (_, p) = check(&raw, &d);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("r.analysis.hotkey.mode: observe has no meaning"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with(
                "r.analysis.bigkey.mode: observe (inherited from analysis.bigkey.mode) has no \
                 meaning"
            ),
            "{p:?}"
        );
    }
}
