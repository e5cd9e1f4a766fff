//! Where the hot keys of a Redis or Valkey target come from (`analysis.hotkey.source`, with
//! its `monitor:` and `hotkeys:` settings), and hot slots (`analysis.hotslot`): the settings
//! and their defaults (validated in `validate/hotkey_source.rs`).
//!
//! Both exist only for targets the exporter analyses itself: a DCS instance's hot keys come
//! from DCS, and DCS has no hot slot analysis, so the parser refuses either under a DCS
//! instance, saying where they belong. The global `analysis:` gives every `redis:` target its
//! defaults, which a target overrides field by field.

use std::time::Duration;

use serde::Deserialize;

use super::AnalysisSettings;

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
    /// The longest session: well below the time after which a scan with `timeout: auto` that
    /// made no progress counts as stalled (a session shows progress only at its end).
    pub const MAX_HOTKEYS_WINDOW: Duration = Duration::from_secs(300);
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
            "clouds[0].instances[0].analysis.hotkey.source: unknown field `source`",
            "a DCS instance's hot keys come from DCS: source, monitor and hotkeys apply to Redis",
            "clouds[0].instances[0].analysis.hotslot: unknown field `hotslot`",
            "hot slots are read from Redis Cluster servers the exporter analyses itself",
            "analysis.bigkey.source: unknown field `source`",
            "only analysis.hotkey takes source",
            "redis[0].analysis.hotkey.source",
            "redis[1].analysis.hotkey.monitor.window: must be between 100ms and 1m",
            "redis[1].analysis.hotkey.monitor.max_commands: must be between 1 and 10000000",
            "redis[1].analysis.hotkey.monitor.max_bytes: must be between 65536",
            "redis[1].analysis.hotkey.hotkeys.window: must be whole seconds",
            "redis[1].analysis.hotslot.mode: observe has no meaning",
            "redis[1].analysis.hotslot.monitor: unknown field `monitor`",
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
        // A session longer than 5 minutes: a scan without progress that long counts as stalled.
        let p = load(
            "redis:\n  - address: redis://h\n    analysis: {hotkey: {hotkeys: {window: 10m}}}\n",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            p.contains("redis[0].analysis.hotkey.hotkeys.window: must be between 1s and 5m"),
            "{p}"
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
