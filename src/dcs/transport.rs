//! The bytes of an answer, read and made safe to quote: shared by the DCS client
//! ([`crate::dcs::client`]) and the IAM token cache ([`crate::dcs::iam`]).
//!
//! An answer is untrusted: its body is read up to a cap (`read_body_capped`), quoted only as
//! a short printable excerpt with credentials redacted (`sanitised_excerpt`,
//! `redact_credentials`, `redact_secrets`), and parsed as JSON even when a Redis key name
//! in it is not valid UTF-8 (`decode_body`, `repair_json`). Transport errors are summed up
//! without their URL (`transport_summary`). Nothing here knows a DCS operation; this module
//! imports nothing else from the crate.

use serde::de::DeserializeOwned;

/// Longest excerpt of an unparseable error body kept in an error message.
const EXCERPT_CHARS: usize = 200;
/// Bytes of an answer looked at for an excerpt (credentials are redacted in these before the
/// excerpt is cut).
const EXCERPT_SCAN_BYTES: usize = 8 * 1024;
/// What replaces a redacted credential.
const REDACTED: &str = "***";

/// The value of a credential-bearing field in quoted text: `X-Auth-Token: v`, `"password":"v"`,
/// `Signature=v`, `security_token=v`, ...
static CREDENTIAL_FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r#"(?i)(\b(?:x-auth-token|x-subject-token|x-security-token|authorization|signature|password|passwd|secret[_-]?key|secret|security[_-]?token|access[_-]?token|auth[_-]?token|token|sk)["']?\s*[:=]\s*["']?)[^"'\s,;&}\]]+"#,
    )
    .expect("a valid pattern")
});
/// An opaque run of token characters long enough to be a credential (IAM and security tokens
/// are hundreds of characters; an SDK-HMAC-SHA256 signature is 64 hex digits).
static OPAQUE_RUN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"[A-Za-z0-9+/_\-.=%]{64,}").expect("a valid pattern")
});

/// `text` with what looks like a credential replaced by `***`: values of credential-bearing
/// fields and long opaque runs (see [`CREDENTIAL_FIELD`], [`OPAQUE_RUN`]).
pub(crate) fn redact_credentials(text: &str) -> String {
    let named = CREDENTIAL_FIELD.replace_all(text, format!("${{1}}{REDACTED}").as_str());
    OPAQUE_RUN.replace_all(&named, REDACTED).into_owned()
}

/// `text` with every occurrence of one of `secrets` replaced by `***`.
pub(crate) fn redact_secrets(mut text: String, secrets: &[&str]) -> String {
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(s) {
            text = text.replace(s, REDACTED);
        }
    }
    text
}

/// Why a capped body read stopped.
#[derive(Debug)]
pub(crate) enum BodyReadError {
    TooLarge,
    Transport(String),
}

/// Reads a response body chunk by chunk, refusing (without buffering further) once it would
/// exceed `limit` bytes.
pub(crate) async fn read_body_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, BodyReadError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(BodyReadError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len().saturating_add(chunk.len()) > limit {
                    return Err(BodyReadError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(BodyReadError::Transport(transport_summary(&e))),
        }
    }
}

/// A short, printable excerpt of untrusted text: credentials redacted, control characters
/// replaced, whitespace collapsed, at most 200 characters; `(empty body)` when nothing printable
/// is left.
pub(crate) fn sanitised_excerpt(bytes: &[u8]) -> String {
    let s = sanitise(bytes);
    if s.is_empty() {
        "(empty body)".to_owned()
    } else {
        s
    }
}

/// Like [`sanitised_excerpt`] but may return an empty string.
pub(crate) fn sanitise(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_SCAN_BYTES)]);
    let text = redact_credentials(&text);
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_whitespace() {
            ' '
        } else if c.is_control() {
            '?'
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if count == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_owned()
}

/// A transport error's kind without the URL (which is harmless, but keeps messages short).
pub(crate) fn transport_summary(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_body() || e.is_decode() {
        "error reading the body".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    sanitised_excerpt(msg.as_bytes())
}

/// Parses a JSON body. Redis key names are bytes, and DCS passes them through: a body with
/// invalid UTF-8 or lone UTF-16 surrogate escapes (`"\udc80"`), which serde_json rejects, is
/// repaired (each bad byte sequence or lone surrogate becomes U+FFFD) and parsed again, so one
/// odd key name does not cost the whole result.
pub(crate) fn decode_body<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => match repair_json(body) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(|_| first),
            None => Err(first),
        },
    }
}

/// `body` as UTF-8 with lone surrogate escapes inside strings replaced by `\ufffd`; `None` when
/// nothing needed repair.
pub(crate) fn repair_json(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut changed = matches!(text, std::borrow::Cow::Owned(_));
    let b = text.as_bytes();
    let hex = |i: usize| -> Option<u16> {
        let digits = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut i, mut copied) = (false, 0, 0);
    while i < b.len() {
        match b[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if b.get(i + 1) == Some(&b'u') {
                    if let Some(unit) = hex(i + 2) {
                        let paired_high = (0xD800..0xDC00).contains(&unit)
                            && b.get(i + 6) == Some(&b'\\')
                            && b.get(i + 7) == Some(&b'u')
                            && hex(i + 8).is_some_and(|l| (0xDC00..0xE000).contains(&l));
                        if paired_high {
                            i += 12;
                            continue;
                        }
                        if (0xD800..0xE000).contains(&unit) {
                            out.push_str(&text[copied..i]);
                            out.push_str("\\ufffd");
                            changed = true;
                            i += 6;
                            copied = i;
                            continue;
                        }
                    }
                }
                // Skip the escaped character, whatever it is.
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&text[copied.min(text.len())..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_and_bad_utf8_cost_a_character_not_the_body() {
        use crate::dcs::TaskRecord;
        // serde_json alone refuses this body: a key name with a lone low surrogate.
        let body = br#"{"id":"t","status":"success","keys":[{"name":"a\udc80b","freq":5},
            {"name":"pair \ud83d\ude00 ok"},{"name":"high \ud800"},{"name":"end \ud800\u0041"},
            {"name":"not one \\udc80"}]}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        let t: TaskRecord = decode_body(body).unwrap();
        let names: Vec<_> = t.keys.unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(
            names,
            [
                "a\u{fffd}b",
                "pair \u{1f600} ok",
                "high \u{fffd}",
                "end \u{fffd}A",
                "not one \\udc80"
            ]
        );
        // Raw bytes that are not UTF-8 inside a string.
        let mut raw = br#"{"id":"t","status":"success","keys":[{"name":"x"#.to_vec();
        raw.extend_from_slice(&[0xff, 0xc3]);
        raw.extend_from_slice(br#"y"}]}"#);
        let t: TaskRecord = decode_body(&raw).unwrap();
        assert_eq!(t.keys.unwrap()[0].name, "x\u{fffd}\u{fffd}y");
        // A valid body is not touched; broken JSON stays an error.
        assert_eq!(repair_json(br#"{"a":"\u00e9\\u"}"#), None);
        assert!(decode_body::<TaskRecord>(br#"{"id":"t","status":"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn repair_never_panics_and_keeps_valid_json(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_body::<serde_json::Value>(&bytes);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                proptest::prop_assert_eq!(decode_body::<serde_json::Value>(&bytes).unwrap(), v);
            }
        }

        #[test]
        fn any_escape_soup_in_a_string_parses(units in proptest::collection::vec(0u16..=0xffff, 0..8)) {
            let escaped: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
            let body = format!(r#"{{"id":"t","status":"success","keys":[{{"name":"{escaped}"}}]}}"#);
            let t: crate::dcs::TaskRecord = decode_body(body.as_bytes()).unwrap();
            let want = String::from_utf16_lossy(&units);
            proptest::prop_assert_eq!(&t.keys.unwrap()[0].name, &want);
        }
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(
            sanitised_excerpt(b"<html>\n\t<b>Bad\x07 Gateway</b>  </html>"),
            "<html> <b>Bad? Gateway</b> </html>"
        );
        assert_eq!(sanitised_excerpt(b""), "(empty body)");
        let long = "word ".repeat(300);
        let e = sanitised_excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), 201);
        assert!(e.ends_with('…'));
        assert_eq!(sanitised_excerpt(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn quoted_credentials_are_redacted() {
        let sig = "a".repeat(64);
        let cases = [
            ("X-Auth-Token: abc.def ok", "X-Auth-Token: *** ok"),
            (r#"{"X-Security-Token":"st-1","id":"r1"}"#, r#"{"X-Security-Token":"***","id":"r1"}"#),
            ("password=hunter2&user=bob", "password=***&user=bob"),
            (
                &format!("Authorization: SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature={sig}"),
                "Authorization: *** Access=AK1, SignedHeaders=host, Signature=***",
            ),
            (&format!("echo {sig}{sig} end"), "echo *** end"),
            ("task_id=t-1 desk: 3", "task_id=t-1 desk: 3"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_credentials(text), want, "{text}");
        }
        // Redaction happens before the excerpt is cut, so no prefix of a token survives.
        let body = format!("{}X-Auth-Token: {}", "p ".repeat(95), "t".repeat(50));
        assert!(!sanitised_excerpt(body.as_bytes()).contains("ttt"));
        assert_eq!(
            redact_secrets("the sk is s3cr3t-value!".into(), &["s3cr3t-value", ""]),
            "the sk is ***!"
        );
    }
}
