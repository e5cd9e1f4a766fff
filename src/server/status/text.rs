//! How the status page writes values: HTML escaping, key names, sizes, times and ages.

use time::macros::format_description;
use time::OffsetDateTime;

/// Characters of a key name shown before it is cut with `…`.
pub const KEY_DISPLAY_CHARS: usize = 120;

/// A key's size for people: `64 B`, `12.5 KiB`, `3.0 MiB` for bytes; `70,000 elements` for
/// collections. HTML-safe (an unknown unit from DCS is escaped).
pub(super) fn size_text(k: &crate::dcs::KeyRecord) -> String {
    use crate::dcs::SizeUnit;
    match (k.size, &k.unit) {
        (Some(s), Some(SizeUnit::Byte)) => human_bytes(s),
        (Some(s), Some(SizeUnit::Count)) => {
            format!("{} element{}", thousands(s), if s == 1 { "" } else { "s" })
        }
        (Some(s), Some(u)) => format!("{} {}", thousands(s), esc(u.as_str())),
        (Some(s), None) => thousands(s),
        (None, _) => "?".to_owned(),
    }
}

/// Bytes in binary units with one decimal above 1 KiB: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub(super) fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n.unsigned_abs() < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// An integer with `,` between thousands: `70,000`.
pub(super) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// HTML-escapes text for element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A key name for display: control characters as escapes (`\n`, `\u{0}`), cut to
/// [`KEY_DISPLAY_CHARS`] characters with `…`. Not yet HTML-escaped.
pub(super) fn display_key(name: &str) -> String {
    let mut out = String::new();
    for (n, c) in name.chars().enumerate() {
        if n == KEY_DISPLAY_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `3m 20s ago` (or `in 10s` for a time ahead of `now`).
pub(super) fn ago(t: f64, now: f64) -> String {
    let delta = now - t;
    if delta >= 0.0 {
        format!("{} ago", age(delta))
    } else {
        format!("in {}", age(-delta))
    }
}

/// `2024-01-01 00:01:00 UTC (3m 20s ago)`.
pub(super) fn when(t: f64, now: f64) -> String {
    let delta = now - t;
    if delta >= 0.0 {
        format!("{} ({} ago)", utc(t), age(delta))
    } else {
        format!("{} (in {})", utc(t), age(-delta))
    }
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss UTC`, or `unknown time`.
pub(super) fn utc(t: f64) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    if !t.is_finite() {
        return "unknown time".to_owned();
    }
    OffsetDateTime::from_unix_timestamp(t.floor() as i64)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_else(|| "unknown time".to_owned())
}

/// A duration in its two largest units: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub(super) fn age(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".to_owned();
    }
    let s = secs.max(0.0).floor() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}
