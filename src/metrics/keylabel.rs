//! The `key` label of the per-key metrics: how a Redis key name becomes a label value.
//!
//! Redis keys can be long (up to 512 MB) and can carry personal data, so the label is either the
//! name cut to a maximum length with a collision-proof suffix, or a stable digest of the name.
//! Either way the result is a valid UTF-8 string; escaping it for the exposition format is the
//! renderer's job (`render.rs`).

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Default maximum length of a key label, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 200;

/// Marker between the kept prefix of a cut name and its hash.
const CUT_MARKER: &str = "~h:";
/// Hex digits of the SHA-256 digest used in a suffix or a hashed label (64 bits).
const HASH_HEX_DIGITS: usize = 16;
/// Prefix of a label in [`KeyLabelMode::Hash`].
const HASH_PREFIX: &str = "sha256:";

/// Length in bytes of the suffix appended to a cut name: `~h:` and 16 hex digits.
pub const HASH_SUFFIX_LEN: usize = CUT_MARKER.len() + HASH_HEX_DIGITS;

/// How key names are exported in the `key` label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLabelMode {
    /// The key name as DCS reports it. A name longer than `max_bytes` is cut on a UTF-8 character
    /// boundary at or below `max_bytes` and gets the suffix `~h:` followed by the first 16
    /// lower-case hex digits of the SHA-256 of the *full* name, e.g.
    /// `user:session:0123…~h:9f86d081884c7d65`.
    ///
    /// Two different long names therefore get different labels (barring a 64-bit hash collision),
    /// and a cut label never equals a name that was short enough to be kept as is: a cut label is
    /// always longer than `max_bytes`.
    Name { max_bytes: usize },
    /// A stable digest instead of the name: `sha256:` followed by the first 16 lower-case hex
    /// digits of the SHA-256 of the name, e.g. `sha256:9f86d081884c7d65` for `test`.
    ///
    /// The digest is unsalted, so it hides names from casual readers of dashboards but does not
    /// protect short or guessable names against someone who hashes candidate names.
    Hash,
}

impl Default for KeyLabelMode {
    fn default() -> Self {
        KeyLabelMode::Name {
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The `key` label value for a key name. Borrows the name when it is kept unchanged.
pub fn key_label<'a>(name: &'a str, mode: &KeyLabelMode) -> Cow<'a, str> {
    match *mode {
        KeyLabelMode::Name { max_bytes } => {
            if name.len() <= max_bytes {
                return Cow::Borrowed(name);
            }
            let cut = floor_char_boundary(name, max_bytes);
            let mut label = String::with_capacity(cut + HASH_SUFFIX_LEN);
            label.push_str(&name[..cut]);
            label.push_str(CUT_MARKER);
            push_digest_hex(&mut label, name);
            Cow::Owned(label)
        }
        KeyLabelMode::Hash => {
            let mut label = String::with_capacity(HASH_PREFIX.len() + HASH_HEX_DIGITS);
            label.push_str(HASH_PREFIX);
            push_digest_hex(&mut label, name);
            Cow::Owned(label)
        }
    }
}

/// Marker between the readable form of a name and the hash of its bytes.
const BYTES_MARKER: &str = "~b:";

/// A key name from its raw bytes (Redis and Valkey keys are byte strings): the name itself when
/// it is UTF-8 without control characters; otherwise its readable form, with each byte that is
/// not UTF-8 and each control character (NUL, CR, LF, ESC…) written `\xNN`, followed by `~b:`
/// and the first 16 hex digits of the SHA-256 of the raw bytes. So nothing raw reaches a label,
/// a log or a page, and two names that differ only in such bytes (`\xfe\xff`, `\xff\xfe`)
/// keep apart instead of becoming one label.
pub fn name_from_bytes(raw: &[u8]) -> Cow<'_, str> {
    if let Ok(name) = std::str::from_utf8(raw) {
        if !name.chars().any(char::is_control) {
            return Cow::Borrowed(name);
        }
    }
    let mut name = String::with_capacity(raw.len() + BYTES_MARKER.len() + HASH_HEX_DIGITS + 8);
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(name, "\\x{b:02x}");
                }
            } else {
                name.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(name, "\\x{b:02x}");
        }
    }
    name.push_str(BYTES_MARKER);
    push_hex(&mut name, &Sha256::digest(raw));
    Cow::Owned(name)
}

/// The largest index `<= max` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    // A UTF-8 character is at most 4 bytes, so this loop runs at most 3 times; index 0 is
    // always a boundary.
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// Appends the first [`HASH_HEX_DIGITS`] hex digits of SHA-256(`name`).
fn push_digest_hex(out: &mut String, name: &str) {
    push_hex(out, &Sha256::digest(name.as_bytes()));
}

/// Appends the first [`HASH_HEX_DIGITS`] hex digits of `digest`.
fn push_hex(out: &mut String, digest: &[u8]) {
    for byte in &digest[..HASH_HEX_DIGITS / 2] {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // SHA-256("test") = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    // (FIPS 180-2 style known answer, also `printf test | sha256sum`).
    const SHA256_TEST_PREFIX: &str = "9f86d081884c7d65";

    #[test]
    fn names_that_differ_only_in_invalid_bytes_keep_apart() {
        assert!(matches!(
            name_from_bytes(b"user:1"),
            Cow::Borrowed("user:1")
        ));
        assert!(matches!(
            name_from_bytes("ключ:é".as_bytes()),
            Cow::Borrowed(_)
        ));
        let a = name_from_bytes(b"k\xfe\xff");
        let b = name_from_bytes(b"k\xff\xfe");
        assert_ne!(a, b);
        // The suffix is the hash of the raw bytes: `printf 'k\xfe\xff' | sha256sum`.
        assert_eq!(a, "k\\xfe\\xff~b:6c24e0c1a55b2d8e");
        // Control characters are written out too, never raw.
        let c = name_from_bytes(b"a\x00b\r\n\x1b[31m");
        assert!(c.starts_with("a\\x00b\\x0d\\x0a\\x1b[31m~b:"), "{c}");
        assert!(!c.chars().any(char::is_control));
    }

    #[test]
    fn short_names_are_kept_and_borrowed() {
        let mode = KeyLabelMode::default();
        let name = "user:1000:\"quoted\"\\\n";
        assert!(matches!(key_label(name, &mode), Cow::Borrowed(n) if n == name));
        let exact = "x".repeat(DEFAULT_MAX_BYTES);
        assert_eq!(key_label(&exact, &mode), exact.as_str());
    }

    #[test]
    fn long_names_are_cut_with_the_hash_of_the_full_name() {
        let mode = KeyLabelMode::Name { max_bytes: 2 };
        // "test" is longer than 2 bytes: prefix "te", then the digest of "test".
        assert_eq!(
            key_label("test", &mode),
            format!("te~h:{SHA256_TEST_PREFIX}")
        );
    }

    #[test]
    fn cut_respects_utf8_boundaries() {
        // "é" is two bytes; cutting at 3 bytes must keep "aé" (3 bytes) and cutting at 2 only "a".
        let name = "aéé";
        let l3 = key_label(name, &KeyLabelMode::Name { max_bytes: 3 });
        assert!(l3.starts_with("aé~h:"), "{l3}");
        let l2 = key_label(name, &KeyLabelMode::Name { max_bytes: 2 });
        assert!(l2.starts_with("a~h:"), "{l2}");
        let l0 = key_label(name, &KeyLabelMode::Name { max_bytes: 0 });
        assert!(l0.starts_with("~h:"), "{l0}");
    }

    #[test]
    fn hash_mode_exports_a_digest() {
        assert_eq!(
            key_label("test", &KeyLabelMode::Hash),
            format!("sha256:{SHA256_TEST_PREFIX}")
        );
        assert_eq!(
            key_label("", &KeyLabelMode::Hash),
            // SHA-256("") = e3b0c44298fc1c149afbf4c8996fb924...
            "sha256:e3b0c44298fc1c14"
        );
    }

    proptest! {
        #[test]
        fn any_name_gives_a_bounded_label(name in any::<String>(), max in 0usize..64) {
            let mode = KeyLabelMode::Name { max_bytes: max };
            let label = key_label(&name, &mode);
            prop_assert!(label.len() <= max + HASH_SUFFIX_LEN);
            // A &str is valid UTF-8 by construction; check the cut did not split a character.
            prop_assert!(std::str::from_utf8(label.as_bytes()).is_ok());
            if name.len() <= max {
                prop_assert_eq!(label.as_ref(), name.as_str());
            } else {
                prop_assert!(label.len() > max);
            }
            let hashed = key_label(&name, &KeyLabelMode::Hash);
            prop_assert_eq!(hashed.len(), HASH_PREFIX.len() + HASH_HEX_DIGITS);
        }

        #[test]
        fn distinct_long_names_get_distinct_labels(
            prefix in "[a-zé]{8,20}",
            a in any::<String>(),
            b in any::<String>(),
        ) {
            prop_assume!(a != b);
            // Same prefix beyond the cut, different tails: only the hash tells them apart.
            let mode = KeyLabelMode::Name { max_bytes: 8 };
            let na = format!("{prefix}{a}");
            let nb = format!("{prefix}{b}");
            prop_assert_ne!(key_label(&na, &mode), key_label(&nb, &mode));
            prop_assert_ne!(key_label(&na, &KeyLabelMode::Hash), key_label(&nb, &KeyLabelMode::Hash));
        }
    }
}
