//! DCS timestamps: UTC ISO-8601 with milliseconds and `Z` (`2020-06-15T02:21:18.669Z`).
//!
//! Parsing is lenient (any RFC 3339 offset, with or without fractions, a missing zone read as
//! UTC, a space instead of `T`, or plain Unix seconds), because a timestamp in an odd format must
//! not cost a whole result.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Parses a DCS timestamp into Unix seconds (with fractions); `None` if it is not a timestamp.
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(unix(t));
    }
    let normalised = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&normalised, &Rfc3339) {
        return Some(unix(t));
    }
    let naive = normalised.trim_end_matches('Z');
    let with_frac =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    let without_frac = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    for fmt in [with_frac, without_frac] {
        if let Ok(t) = PrimitiveDateTime::parse(naive, fmt) {
            return Some(unix(t.assume_offset(UtcOffset::UTC)));
        }
    }
    match s.parse::<f64>() {
        // Milliseconds since the epoch are common in other Huawei APIs.
        Ok(v) if v.is_finite() && v > 1e11 => Some(v / 1000.0),
        Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => None,
    }
}

/// Formats a time the way DCS does: `2020-06-15T02:21:18.669Z`.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(f)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000Z"))
}

/// Formats Unix seconds the way DCS does.
pub fn format_unix(secs: f64) -> String {
    // Round to whole milliseconds first: f64 cannot hold nanoseconds at this magnitude.
    let nanos = (secs * 1000.0).round() as i128 * 1_000_000;
    format(OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        // 2020-06-15T02:21:18Z is 1592187678 (date -u -d ... +%s).
        assert_eq!(parse("2020-06-15T02:21:18.669Z"), Some(1592187678.669));
        assert_eq!(parse("2020-06-15T02:21:18Z"), Some(1592187678.0));
    }

    #[test]
    fn parses_odd_but_meaningful_formats() {
        assert_eq!(parse("2020-06-15T10:21:18+08:00"), Some(1592187678.0));
        assert_eq!(parse("2020-06-15T02:21:18"), Some(1592187678.0));
        assert_eq!(parse("2020-06-15 02:21:18.5"), Some(1592187678.5));
        assert_eq!(parse("1592187678"), Some(1592187678.0));
        assert_eq!(parse("1592187678669"), Some(1592187678.669));
        assert_eq!(parse(""), None);
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("NaN"), None);
    }

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(format_unix(1592187678.669), "2020-06-15T02:21:18.669Z");
        assert_eq!(parse(&format_unix(1592187678.25)), Some(1592187678.25));
    }
}
