//! Prometheus-style durations: `30s`, `5m`, `1h30m`, `1d`, `500ms`.
//!
//! Units `ms`, `s`, `m`, `h`, `d`, `w`, `y` (365 days), largest first, each at most once, as
//! Prometheus' `model.ParseDuration` accepts them. `0` alone is zero.

use std::fmt;
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    why: &'static str,
}

impl std::error::Error for DurationError {}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match suggest(&self.input) {
            // `15 minutes`, `1 hour`, `30 sec`: say what was meant.
            Some(s) => write!(
                f,
                "invalid duration {:?}: write {s} (a number and a unit, no spaces; units ms, s, \
                 m, h, d, w, y)",
                self.input
            ),
            None => write!(
                f,
                "invalid duration {:?}: {} (expected e.g. 30s, 5m, 1h30m)",
                self.input, self.why
            ),
        }
    }
}

/// The duration a human-style spelling (`15 minutes`, `1 hour 30 min`, `2 Days`) means, in this
/// syntax; `None` when it is not such a spelling.
fn suggest(input: &str) -> Option<String> {
    const WORDS: [(&str, &[&str]); 7] = [
        (
            "ms",
            &["msec", "msecs", "millisecond", "milliseconds", "millis"],
        ),
        ("s", &["sec", "secs", "second", "seconds"]),
        ("m", &["min", "mins", "minute", "minutes"]),
        ("h", &["hr", "hrs", "hour", "hours"]),
        ("d", &["day", "days"]),
        ("w", &["wk", "wks", "week", "weeks"]),
        ("y", &["yr", "yrs", "year", "years"]),
    ];
    let lower = input.trim().to_ascii_lowercase();
    let mut out = String::new();
    let mut rest = lower.as_str();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        out.push_str(&rest[..digits]);
        rest = rest[digits..].trim_start();
        let len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let word = &rest[..len];
        let unit = UNITS
            .iter()
            .map(|(u, _)| *u)
            .find(|u| *u == word)
            .or_else(|| {
                WORDS
                    .iter()
                    .find(|(_, ws)| ws.contains(&word))
                    .map(|(u, _)| *u)
            })?;
        out.push_str(unit);
        rest = rest[len..].trim_start_matches([' ', ',']);
        rest = rest.strip_prefix("and ").unwrap_or(rest);
    }
    (out != input && parse(&out).is_ok()).then_some(out)
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus-style duration.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: input.to_owned(),
        why,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(err("empty"));
    }
    // Say what is wrong instead of "expected a number" / "missing unit".
    if input.starts_with('-') {
        return Err(err("durations cannot be negative"));
    }
    if input.bytes().any(|b| b == b'.' || b == b',') {
        return Err(err(
            "no fractions: combine units instead, e.g. 1h30m for 1.5h",
        ));
    }
    let mut rest = input;
    let mut total_ms: u64 = 0;
    let mut last_unit = None::<usize>;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(err(if unit.is_empty() {
                "missing unit"
            } else {
                "unknown unit"
            }));
        };
        if last_unit.is_some_and(|l| l >= idx) {
            return Err(err("units must go from largest to smallest, each once"));
        }
        last_unit = Some(idx);
        total_ms = value
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| err("too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way Prometheus does (`1h30m`, `500ms`, `0s`).
pub fn format(d: Duration) -> String {
    struct F(Duration);
    impl fmt::Display for F {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut ms = self.0.as_millis() as u64;
            if ms == 0 {
                return f.write_str("0s");
            }
            for (unit, size) in UNITS {
                if ms >= size {
                    write!(f, "{}{}", ms / size, unit)?;
                    ms %= size;
                }
            }
            Ok(())
        }
    }
    F(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1w").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("1s500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn human_spellings_get_the_right_one_suggested() {
        let cases = [
            ("15 minutes", "15m"),
            ("1 hour", "1h"),
            ("1 hour 30 min", "1h30m"),
            ("2 Days", "2d"),
            ("30sec", "30s"),
            ("15 m", "15m"),
        ];
        for (input, want) in cases {
            let e = parse(input).expect_err(input).to_string();
            assert!(e.contains(&format!("write {want} ")), "{input}: {e}");
            assert!(!e.contains("missing unit"), "{input}: {e}");
        }
        // Nothing to suggest: the plain reason.
        let e = parse("5 parsecs").unwrap_err().to_string();
        assert!(e.contains("expected e.g. 30s"), "{e}");
        // A suggestion must itself parse: units out of order are not "fixed".
        let e = parse("5 minutes 1 hour").unwrap_err().to_string();
        assert!(!e.contains("write"), "{e}");
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "1m1h",
            "1m1m",
            "-5s",
            "1.5h",
            " 5s",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn negative_and_fractional_durations_say_why() {
        let e = parse("-5s").unwrap_err().to_string();
        assert!(e.contains("cannot be negative"), "{e}");
        for input in ["1.5h", "0.5s", "2,5m"] {
            let e = parse(input).unwrap_err().to_string();
            assert!(e.contains("no fractions"), "{input}: {e}");
            assert!(!e.contains("missing unit"), "{input}: {e}");
        }
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
