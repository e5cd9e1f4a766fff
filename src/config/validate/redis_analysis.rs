//! `redis[].analysis`: what the exporter's own scans of a Redis or Valkey target do, laid over
//! the global `analysis:` defaults.
//!
//! A target is analysed by the exporter itself, so DCS's notions do not apply: `mode: observe`
//! (ingest what someone else ran) is refused, also when inherited, and the key families come
//! with every big key scan, so they take the big key scan's interval and timeout and need it
//! on. The parser has already refused fields that have no meaning here (`fresh_backup`,
//! `keyfamily.interval`); settings only Redis targets know go in [`RawRedisAnalysisSet`] and
//! are checked here.

use super::super::hotkey_source::{HotkeySourceSettings, NativeDefaults};
use super::super::raw::{RawAnalysis, RawHotkey, RawRedisAnalysisSet, RawRedisKeyfamily};
use super::super::redis::AUTO_FOLLOW;
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
    /// The scans' own time limits (`None`: `auto`).
    pub hotkey_timeout: Option<std::time::Duration>,
    pub bigkey_timeout: Option<std::time::Duration>,
    /// Where its hot keys come from, and its hot slots (see `hotkey_source`).
    pub hotkey_source: HotkeySourceSettings,
    pub hotslot: AnalysisSettings,
}

impl Validator<'_> {
    /// `key` is the target's `analysis` (`redis[0].analysis`); `families` the global rules;
    /// `global_keyfamily` the global `analysis.keyfamily.mode` when written.
    ///
    /// Key families are on for a Redis target unless the target or the global `analysis:`
    /// turns them off: at the default throttle they add about a sixth to the server work of a
    /// big key scan and nothing to its duration (BENCHMARKS.md), and they answer what eats
    /// the memory. The global default (off) is for DCS, where the offline key analysis backs
    /// up the instance. With the big key scan off they are off too, unless asked for.
    pub(super) fn redis_analysis(
        &mut self,
        key: &str,
        raw: &RawRedisAnalysisSet,
        defaults: &InstanceDefaults,
        families: &FamilyRules,
        global_keyfamily: Option<Mode>,
        native: &NativeDefaults,
    ) -> RedisAnalysis {
        let (hotkey, hotkey_timeout) = self.native_analysis(
            key,
            Analysis::Hotkey,
            raw.hotkey.as_ref().map(RawHotkey::schedule).as_ref(),
            defaults.hotkey,
        );
        let (bigkey, bigkey_timeout) =
            self.native_analysis(key, Analysis::Bigkey, raw.bigkey.as_ref(), defaults.bigkey);
        let raw_kf = raw.keyfamily.as_ref();
        let written = raw_kf.and_then(|r| r.mode).or(global_keyfamily);
        let base = AnalysisSettings {
            mode: written.unwrap_or(if bigkey.mode == Mode::Off {
                Mode::Off
            } else {
                Mode::Trigger
            }),
            ..defaults.keyfamily.analysis
        };
        let (kf, _) = self.native_analysis(
            key,
            Analysis::Keyfamily,
            raw_kf.map(RawRedisKeyfamily::schedule).as_ref(),
            base,
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
        let hotkey_source = self.target_hotkey_source(
            key,
            raw.hotkey.as_ref(),
            &native.hotkey_source,
            hotkey_timeout.filter(|_| hotkey.mode != Mode::Off),
        );
        let hotslot = self.target_hotslot(key, raw.hotslot.as_ref(), native.hotslot);
        RedisAnalysis {
            hotkey,
            bigkey,
            keyfamily,
            families,
            hotkey_timeout,
            bigkey_timeout,
            hotkey_source,
            hotslot,
        }
    }

    /// One analysis of a target: the common settings, without `observe`, and its scans' time
    /// limit. A scan's `timeout` is `auto` unless the target sets one: the global
    /// `analysis.*.timeout` is how long to follow a DCS task, and a native scan of a big node
    /// must not be cut off by it. `auto` follows the scan for [`AUTO_FOLLOW`] and cuts it off
    /// only when it stalls.
    fn native_analysis(
        &mut self,
        key: &str,
        analysis: Analysis,
        raw: Option<&RawAnalysis>,
        base: AnalysisSettings,
    ) -> (AnalysisSettings, Option<std::time::Duration>) {
        let k = format!("{key}.{analysis}");
        let fixed = raw.is_some_and(|r| r.timeout.as_deref().is_some_and(|t| t.trim() != "auto"));
        let raw_auto = raw.map(|r| RawAnalysis {
            timeout: r.timeout.clone().filter(|_| fixed),
            ..r.clone()
        });
        let mut s = self.analysis(&k, raw_auto.as_ref(), base);
        let timeout = if fixed {
            Some(s.timeout)
        } else {
            s.timeout = AUTO_FOLLOW;
            None
        };
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
        (s, timeout)
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
        let native = crate::config::hotkey_source::NativeDefaults {
            hotkey_source: HotkeySourceSettings::default(),
            hotslot: AnalysisSettings::default_for(Analysis::Hotslot),
        };
        let out = v.redis_analysis(
            "r.analysis",
            raw,
            defaults,
            &FamilyRules::default(),
            None,
            &native,
        );
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
        assert_eq!(
            a.hotkey,
            AnalysisSettings {
                timeout: AUTO_FOLLOW,
                ..AnalysisSettings::default_for(Analysis::Hotkey)
            }
        );
        assert_eq!(
            (a.hotkey_timeout, a.bigkey_timeout),
            (None, Some(std::time::Duration::from_secs(45 * 60)))
        );
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
    fn a_scan_timeout_is_auto_unless_the_target_sets_one() {
        // A global timeout (how long to follow a DCS task) does not cut native scans.
        let mut d = defaults();
        d.bigkey.timeout = std::time::Duration::from_secs(60);
        let raw = |t: Option<&str>| RawRedisAnalysisSet {
            bigkey: Some(RawAnalysis {
                timeout: t.map(Into::into),
                ..RawAnalysis::default()
            }),
            ..RawRedisAnalysisSet::default()
        };
        let (a, p) = check(&raw(None), &d);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((a.bigkey_timeout, a.bigkey.timeout), (None, AUTO_FOLLOW));
        let (a, p) = check(&raw(Some("auto")), &d);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(a.bigkey_timeout, None);
        let (a, p) = check(&raw(Some("5m")), &d);
        assert!(p.is_empty(), "{p:?}");
        let five = std::time::Duration::from_secs(300);
        assert_eq!((a.bigkey_timeout, a.bigkey.timeout), (Some(five), five));
        let (_, p) = check(&raw(Some("soon")), &d);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("r.analysis.bigkey.timeout"), "{p:?}");
    }

    #[test]
    fn observe_is_refused_where_it_is_written_or_inherited() {
        let mut d = defaults();
        d.bigkey.mode = Mode::Observe;
        let raw = RawRedisAnalysisSet {
            hotkey: Some(RawHotkey {
                mode: Some(Mode::Observe),
                ..RawHotkey::default()
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
