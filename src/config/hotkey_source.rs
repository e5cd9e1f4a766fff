//! Where the hot keys of a Redis or Valkey target come from (`analysis.hotkey.source`, with
//! its `monitor:` and `hotkeys:` settings), and hot slots (`analysis.hotslot`): the settings,
//! their defaults, and their part of the [`Validator`].
//!
//! Both exist only for targets the exporter analyses itself: a DCS instance's hot keys come
//! from DCS, and DCS has no hot slot analysis, so writing either under a DCS instance is a
//! problem naming the key. The global `analysis:` gives every `redis:` target its defaults,
//! which a target overrides field by field.

use std::time::Duration;

use serde::Deserialize;

use super::raw::{RawAnalysis, RawAnalysisSet};
use super::validate::Validator;
use super::{duration, AnalysisSettings};
use crate::dcs::Analysis;

/// `analysis.hotkey.source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HotkeySource {
    /// `HOTKEYS` where the server has it on, else the LFU counters where the eviction policy
    /// keeps them, else unsupported (with a message naming the other choices).
    Auto,
    /// The server's own hot key tracking: `HOTKEYS` (Redis 8.6+, Valkey 9.2+).
    Hotkeys,
    /// `OBJECT FREQ` of every key (needs an LFU `maxmemory-policy`).
    Lfu,
    /// A bounded `MONITOR` sample per interval, only when chosen (it costs throughput while it
    /// runs; see the README).
    Monitor,
}

impl HotkeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            HotkeySource::Auto => "auto",
            HotkeySource::Hotkeys => "hotkeys",
            HotkeySource::Lfu => "lfu",
            HotkeySource::Monitor => "monitor",
        }
    }
}

/// `analysis.hotkey.monitor`: the bounds of one `MONITOR` sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorSettings {
    /// How long the sample reads, per node and interval.
    pub window: Duration,
    /// The sample ends early after this many commands...
    pub max_commands: u64,
    /// ... or after this many bytes of `MONITOR` output.
    pub max_bytes: u64,
}

impl MonitorSettings {
    pub const DEFAULT: MonitorSettings = MonitorSettings {
        window: Duration::from_secs(2),
        max_commands: 100_000,
        max_bytes: 16 << 20,
    };
    /// The bounds the config accepts.
    pub const MIN_WINDOW: Duration = Duration::from_millis(100);
    pub const MAX_WINDOW: Duration = Duration::from_secs(60);
    pub const MAX_COMMANDS: u64 = 10_000_000;
    pub const MIN_BYTES: u64 = 64 << 10;
    pub const MAX_BYTES: u64 = 1 << 30;
}

/// How a target's hot keys are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotkeySourceSettings {
    pub source: HotkeySource,
    pub monitor: MonitorSettings,
    /// `analysis.hotkey.hotkeys.window`: how long a Redis `HOTKEYS` session collects (its
    /// `DURATION`; Valkey's window is the server's `hotkeys-window-seconds`).
    pub hotkeys_window: Duration,
}

impl HotkeySourceSettings {
    pub const DEFAULT_HOTKEYS_WINDOW: Duration = Duration::from_secs(10);
    pub const MAX_HOTKEYS_WINDOW: Duration = Duration::from_secs(3600);
}

impl Default for HotkeySourceSettings {
    fn default() -> Self {
        HotkeySourceSettings {
            source: HotkeySource::Auto,
            monitor: MonitorSettings::DEFAULT,
            hotkeys_window: Self::DEFAULT_HOTKEYS_WINDOW,
        }
    }
}

/// What the global `analysis:` gives every `redis:` target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeDefaults {
    pub hotkey_source: HotkeySourceSettings,
    pub hotslot: AnalysisSettings,
}

/// `analysis.hotkey.monitor` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    pub window: Option<String>,
    pub max_commands: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// `analysis.hotkey.hotkeys` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHotkeys {
    pub window: Option<String>,
}

impl Validator<'_> {
    /// The global defaults of every `redis:` target (`analysis.hotkey.source` and its settings,
    /// `analysis.hotslot`), with the problems of settings written under the wrong analysis.
    pub(super) fn native_defaults(&mut self, raw: &RawAnalysisSet) -> NativeDefaults {
        self.source_only_under_hotkey("analysis", raw);
        let hotslot = self.analysis(
            "analysis.hotslot",
            raw.hotslot.as_ref(),
            AnalysisSettings::default_for(Analysis::Hotslot),
        );
        self.no_fresh_backup("analysis.hotslot", raw.hotslot.as_ref());
        NativeDefaults {
            hotkey_source: self.hotkey_source(
                "analysis.hotkey",
                raw.hotkey.as_ref(),
                &HotkeySourceSettings::default(),
            ),
            hotslot,
        }
    }

    /// A `redis:` target's hot key source (`key`: its `analysis` key), from `defaults` under its
    /// own overrides.
    pub(super) fn target_hotkey_source(
        &mut self,
        key: &str,
        raw: &RawAnalysisSet,
        defaults: &NativeDefaults,
    ) -> HotkeySourceSettings {
        self.source_only_under_hotkey(key, raw);
        self.no_fresh_backup(&format!("{key}.hotslot"), raw.hotslot.as_ref());
        self.hotkey_source(
            &format!("{key}.hotkey"),
            raw.hotkey.as_ref(),
            &defaults.hotkey_source,
        )
    }

    /// A source's window that the hot key analysis' `timeout` would cut short is a problem
    /// naming the window (`key`: the target's `analysis` key); a warning under `auto`, which
    /// takes a Redis `HOTKEYS` session only where the server has one.
    pub(super) fn windows_within_timeout(
        &mut self,
        key: &str,
        s: &HotkeySourceSettings,
        timeout: Duration,
    ) {
        let (field, window) = match s.source {
            HotkeySource::Monitor => ("monitor.window", s.monitor.window),
            HotkeySource::Auto | HotkeySource::Hotkeys => ("hotkeys.window", s.hotkeys_window),
            HotkeySource::Lfu => return,
        };
        if window >= timeout {
            let k = format!("{key}.hotkey.{field}");
            let msg = format!(
                "{} is not shorter than the analysis timeout {}: every analysis {} would time out",
                duration::format(window),
                duration::format(timeout),
                if s.source == HotkeySource::Auto {
                    "from a Redis HOTKEYS session"
                } else {
                    "from this source"
                }
            );
            if s.source == HotkeySource::Auto {
                self.warning(k, msg);
            } else {
                self.problem(k, msg);
            }
        }
    }

    /// A DCS instance's `analysis` (`key`): its hot keys come from DCS, and DCS has no hot
    /// slots.
    pub(super) fn dcs_analysis_set(&mut self, key: &str, raw: &RawAnalysisSet) {
        self.source_only_under_hotkey(key, raw);
        if let Some(h) = &raw.hotkey {
            for (field, given) in [
                ("source", h.source.is_some()),
                ("monitor", h.monitor.is_some()),
                ("hotkeys", h.hotkeys.is_some()),
            ] {
                if given {
                    self.problem(
                        format!("{key}.hotkey.{field}"),
                        "a DCS instance's hot keys come from DCS; source, monitor and hotkeys \
                         apply to Redis and Valkey targets (redis:) only",
                    );
                }
            }
        }
        if raw.hotslot.is_some() {
            self.problem(
                format!("{key}.hotslot"),
                "hot slots are read from Redis Cluster servers the exporter analyses itself \
                 (redis:); DCS has no hot slot analysis",
            );
        }
    }

    /// `source`, `monitor` and `hotkeys` belong to `hotkey` only.
    fn source_only_under_hotkey(&mut self, key: &str, raw: &RawAnalysisSet) {
        for (sub, r) in [
            ("bigkey", &raw.bigkey),
            ("keyfamily", &raw.keyfamily),
            ("hotslot", &raw.hotslot),
        ] {
            let Some(r) = r else { continue };
            for (field, given) in [
                ("source", r.source.is_some()),
                ("monitor", r.monitor.is_some()),
                ("hotkeys", r.hotkeys.is_some()),
            ] {
                if given {
                    self.problem(
                        format!("{key}.{sub}.{field}"),
                        format!("only analysis.hotkey takes {field}"),
                    );
                }
            }
        }
    }

    /// `key` is the `hotkey` analysis; what is not written comes from `base`.
    fn hotkey_source(
        &mut self,
        key: &str,
        raw: Option<&RawAnalysis>,
        base: &HotkeySourceSettings,
    ) -> HotkeySourceSettings {
        let Some(raw) = raw else { return *base };
        let source = raw.source.unwrap_or(base.source);
        let mut monitor = base.monitor;
        if let Some(m) = &raw.monitor {
            let k = format!("{key}.monitor");
            if let Some(w) = self.duration_in(
                &format!("{k}.window"),
                &m.window,
                MonitorSettings::MIN_WINDOW,
                MonitorSettings::MAX_WINDOW,
            ) {
                monitor.window = w;
            }
            if let Some(n) = m.max_commands {
                if (1..=MonitorSettings::MAX_COMMANDS).contains(&n) {
                    monitor.max_commands = n;
                } else {
                    self.problem(
                        format!("{k}.max_commands"),
                        format!("must be between 1 and {}", MonitorSettings::MAX_COMMANDS),
                    );
                }
            }
            if let Some(n) = m.max_bytes {
                if (MonitorSettings::MIN_BYTES..=MonitorSettings::MAX_BYTES).contains(&n) {
                    monitor.max_bytes = n;
                } else {
                    self.problem(
                        format!("{k}.max_bytes"),
                        format!(
                            "must be between {} (64 KiB) and {} (1 GiB)",
                            MonitorSettings::MIN_BYTES,
                            MonitorSettings::MAX_BYTES
                        ),
                    );
                }
            }
            if source != HotkeySource::Monitor {
                self.warning(
                    &k,
                    format!(
                        "has no effect: the source is {}, not monitor",
                        source.as_str()
                    ),
                );
            }
        }
        let mut hotkeys_window = base.hotkeys_window;
        if let Some(h) = &raw.hotkeys {
            let k = format!("{key}.hotkeys.window");
            if let Some(w) = self.duration_in(
                &k,
                &h.window,
                Duration::from_secs(1),
                HotkeySourceSettings::MAX_HOTKEYS_WINDOW,
            ) {
                if w.subsec_nanos() != 0 {
                    self.problem(&k, "must be whole seconds (HOTKEYS START ... DURATION)");
                } else {
                    hotkeys_window = w;
                }
            }
        }
        HotkeySourceSettings {
            source,
            monitor,
            hotkeys_window,
        }
    }

    /// A written duration between `min` and `max`.
    fn duration_in(
        &mut self,
        key: &str,
        value: &Option<String>,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let text = self.string(key, value)?;
        match duration::parse(&text) {
            Ok(d) if d >= min && d <= max => Some(d),
            Ok(_) => {
                self.problem(
                    key,
                    format!(
                        "must be between {} and {}",
                        duration::format(min),
                        duration::format(max)
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str_checked, Loaded, Mode};

    const DCS: &str = "clouds:\n  - name: c\n    region: r\n    project_id: 0123456789abcdef0123456789abcdef\n    auth: {access_key: a, secret_key: b}\n    instances:\n      - id: 5560df16-cebf-4473-95c4-d1b573c16e79\n";

    fn load(text: &str) -> Result<Loaded, Vec<String>> {
        load_str_checked(text, "t.yml", None, &|_| None).map_err(|e| e.problems())
    }

    #[test]
    fn redis_targets_get_the_documented_defaults() {
        let c = load("redis:\n  - address: redis://h\n").unwrap().config;
        let t = &c.redis[0];
        assert_eq!(t.hotkey_source, HotkeySourceSettings::default());
        assert_eq!(t.hotkey_source.source, HotkeySource::Auto);
        assert_eq!(t.hotkey_source.monitor.window, Duration::from_secs(2));
        assert_eq!(t.hotkey_source.monitor.max_commands, 100_000);
        assert_eq!(t.hotkey_source.monitor.max_bytes, 16 << 20);
        assert_eq!(t.hotkey_source.hotkeys_window, Duration::from_secs(10));
        assert_eq!(t.hotslot.mode, Mode::Trigger);
        assert_eq!(t.hotslot.interval, Duration::from_secs(60));
        assert_eq!(t.hotslot.top_n, 16);
    }

    #[test]
    fn global_settings_are_inherited_and_overridden_field_by_field() {
        let c = load(
            "analysis:\n  hotkey:\n    source: monitor\n    monitor: {window: 3s, max_commands: 500}\n  hotslot: {interval: 2m, top_n: 4}\nredis:\n  - address: redis://a\n  - address: redis://b\n    analysis:\n      hotkey: {monitor: {max_bytes: 1048576}, hotkeys: {window: 30s}}\n      hotslot: {mode: off}\n  - address: redis://c\n    analysis: {hotkey: {source: hotkeys}}\n",
        )
        .unwrap()
        .config;
        let (a, b, cc) = (&c.redis[0], &c.redis[1], &c.redis[2]);
        assert_eq!(a.hotkey_source.source, HotkeySource::Monitor);
        assert_eq!(a.hotkey_source.monitor.window, Duration::from_secs(3));
        assert_eq!(a.hotkey_source.monitor.max_commands, 500);
        assert_eq!(a.hotkey_source.monitor.max_bytes, 16 << 20);
        assert_eq!(
            (a.hotslot.interval, a.hotslot.top_n),
            (Duration::from_secs(120), 4)
        );
        assert_eq!(b.hotkey_source.source, HotkeySource::Monitor);
        assert_eq!(b.hotkey_source.monitor.window, Duration::from_secs(3));
        assert_eq!(b.hotkey_source.monitor.max_bytes, 1 << 20);
        assert_eq!(b.hotkey_source.hotkeys_window, Duration::from_secs(30));
        assert_eq!(b.hotslot.mode, Mode::Off);
        assert_eq!(b.hotslot.top_n, 4, "the rest inherited");
        assert_eq!(cc.hotkey_source.source, HotkeySource::Hotkeys);
    }

    #[test]
    fn misplaced_or_out_of_range_settings_are_problems_naming_the_key() {
        let text = format!(
            "{DCS}        analysis:\n          hotkey: {{source: lfu}}\n          hotslot: {{mode: off}}\nanalysis:\n  bigkey: {{source: monitor}}\nredis:\n  - address: redis://h\n    analysis:\n      hotkey:\n        source: sometimes\n  - address: redis://i\n    analysis:\n      hotkey:\n        source: monitor\n        monitor: {{window: 5m, max_commands: 0, max_bytes: 10}}\n        hotkeys: {{window: 1500ms}}\n      hotslot: {{mode: observe, monitor: {{window: 1s}}}}\n"
        );
        let p = load(&text).unwrap_err().join("\n");
        for want in [
            "clouds[0].instances[0].analysis.hotkey.source: a DCS instance's hot keys come from DCS",
            "clouds[0].instances[0].analysis.hotslot: hot slots are read from Redis Cluster",
            "analysis.bigkey.source: only analysis.hotkey takes source",
            "redis[0].analysis.hotkey.source",
            "redis[1].analysis.hotkey.monitor.window: must be between 100ms and 1m",
            "redis[1].analysis.hotkey.monitor.max_commands: must be between 1 and 10000000",
            "redis[1].analysis.hotkey.monitor.max_bytes: must be between 65536",
            "redis[1].analysis.hotkey.hotkeys.window: must be whole seconds",
            "redis[1].analysis.hotslot.mode: observe has no meaning",
            "redis[1].analysis.hotslot.monitor: only analysis.hotkey takes monitor",
        ] {
            assert!(p.contains(want), "missing {want:?} in:\n{p}");
        }
        assert!(p.contains("sometimes") && p.contains("auto"), "{p}");
    }

    #[test]
    fn a_window_the_timeout_would_cut_short_is_a_problem() {
        let p = load("redis:\n  - address: redis://h\n    analysis: {hotkey: {timeout: 30s, source: monitor, monitor: {window: 30s}}}\n  - address: redis://i\n    analysis: {hotkey: {timeout: 20s, source: hotkeys, hotkeys: {window: 1m}}}\n")
            .unwrap_err()
            .join("\n");
        assert!(p.contains("redis[0].analysis.hotkey.monitor.window: 30s is not shorter than the analysis timeout 30s"), "{p}");
        assert!(
            p.contains("redis[1].analysis.hotkey.hotkeys.window: 1m is not shorter"),
            "{p}"
        );
        // Under auto, a warning: the server may have no HOTKEYS.
        let l = load("redis:\n  - address: redis://h\n    analysis: {hotkey: {timeout: 5s}}\n")
            .unwrap();
        assert!(
            l.warnings
                .iter()
                .any(|w| w.key == "redis[0].analysis.hotkey.hotkeys.window"),
            "{:?}",
            l.warnings
        );
        // LFU has no window.
        assert!(load(
            "redis:\n  - address: redis://h\n    analysis: {hotkey: {timeout: 5s, source: lfu}}\n"
        )
        .is_ok());
    }

    #[test]
    fn monitor_settings_without_the_monitor_source_are_a_warning() {
        let l = load(
            "redis:\n  - address: redis://h\n    analysis: {hotkey: {monitor: {window: 1s}}}\n",
        )
        .unwrap();
        let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter().any(|w| w.starts_with(
                "redis[0].analysis.hotkey.monitor: has no effect: the source is auto"
            )),
            "{w:?}"
        );
    }
}
