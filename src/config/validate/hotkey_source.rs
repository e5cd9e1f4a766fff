//! `analysis.hotkey.source` with its `monitor:` and `hotkeys:` bounds, and `analysis.hotslot`:
//! the settings of the hot key sources and hot slots of Redis and Valkey targets (see
//! [`crate::config::hotkey_source`]), globally and per target.
//!
//! The parser has already refused them where they have no meaning (under a DCS instance,
//! under another analysis). Here: the bounds of each window and cap, a window the analysis'
//! own `timeout` would cut short, and `monitor:` settings that the chosen source ignores.

use std::time::Duration;

use super::super::hotkey_source::{
    HotkeySource, HotkeySourceSettings, MonitorSettings, NativeDefaults,
};
use super::super::raw::{RawAnalysis, RawAnalysisSet, RawHotkey};
use super::super::{duration, AnalysisSettings, Mode};
use super::Validator;
use crate::dcs::Analysis;

impl Validator<'_> {
    /// The global defaults of every `redis:` target: `analysis.hotkey.source` and its settings,
    /// `analysis.hotslot`.
    pub(super) fn native_defaults(&mut self, raw: &RawAnalysisSet) -> NativeDefaults {
        NativeDefaults {
            hotkey_source: self.hotkey_source(
                "analysis.hotkey",
                raw.hotkey.as_ref(),
                &HotkeySourceSettings::default(),
            ),
            hotslot: self.analysis(
                "analysis.hotslot",
                raw.hotslot.as_ref(),
                AnalysisSettings::default_for(Analysis::Hotslot),
            ),
        }
    }

    /// A target's hot slot settings (`key`: its `analysis`): the common ones over the global
    /// defaults, without `observe`. Their `timeout` bounds each analysis (a few polls), so it
    /// is never `auto`.
    pub(super) fn target_hotslot(
        &mut self,
        key: &str,
        raw: Option<&RawAnalysis>,
        base: AnalysisSettings,
    ) -> AnalysisSettings {
        let k = format!("{key}.hotslot");
        let s = self.analysis(&k, raw, base);
        if s.mode == Mode::Observe {
            let from = if raw.and_then(|r| r.mode).is_some() {
                ""
            } else {
                " (inherited from analysis.hotslot.mode)"
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

    /// A target's hot key source (`key`: its `analysis`), from `base` under its own
    /// overrides; `timeout` is its hot key analysis' own time limit (`None`: `auto`).
    pub(super) fn target_hotkey_source(
        &mut self,
        key: &str,
        raw: Option<&RawHotkey>,
        base: &HotkeySourceSettings,
        timeout: Option<Duration>,
    ) -> HotkeySourceSettings {
        let s = self.hotkey_source(&format!("{key}.hotkey"), raw, base);
        if let Some(t) = timeout {
            self.windows_within_timeout(key, &s, t);
        }
        s
    }

    /// A source's window that the hot key analysis' `timeout` would cut short is a problem
    /// naming the window (`key`: the target's `analysis` key); a warning under `auto`, which
    /// takes a Redis `HOTKEYS` session only where the server has one.
    fn windows_within_timeout(&mut self, key: &str, s: &HotkeySourceSettings, timeout: Duration) {
        let (field, window) = match s.source {
            HotkeySource::Monitor => ("monitor.window", s.monitor.window),
            HotkeySource::Auto | HotkeySource::Hotkeys => ("hotkeys.window", s.hotkeys_window),
            HotkeySource::Lfu => return,
        };
        if window < timeout {
            return;
        }
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

    /// `key` is the `hotkey` analysis; what is not written comes from `base`.
    fn hotkey_source(
        &mut self,
        key: &str,
        raw: Option<&RawHotkey>,
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
        let d = self.duration(key, value)?;
        if d < min || d > max {
            self.problem(
                key,
                format!(
                    "must be between {} and {}",
                    duration::format(min),
                    duration::format(max)
                ),
            );
            return None;
        }
        Some(d)
    }
}
