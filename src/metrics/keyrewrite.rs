//! `metrics.key_rewrite`: regex rules that rewrite key names before they are exported.
//!
//! Key names often carry customer data (`user:12345:cart`). A rule replaces the part of the
//! name its regex matches, expanding `$1`, `${1}` or `${name}` in `replace`:
//! `{match: '^user:\d+:(.*)$', replace: 'user:*:$1'}` turns `user:12345:cart` into
//! `user:*:cart`.
//!
//! # Semantics
//! - Rules are tried in order; the **first rule whose regex matches** rewrites the name and no
//!   other rule is tried. A name no rule matches is kept.
//! - The regex may match anywhere in the name (anchor it with `^…$` to match the whole name);
//!   only its first (leftmost) match is replaced, the rest of the name is kept.
//! - The rewritten name then goes through `key_label` (`name`: cut to `key_label_max_bytes`;
//!   `hash`: digested), for `/metrics` and for the status page alike.
//! - Several keys of one result can end up with the same label set. They are merged: the key
//!   ranked first is exported, i.e. the one with the highest `freq` (hot keys) or the largest
//!   size (big keys), and the others are dropped, so no series is duplicated.
//!
//! Rules are checked when the config is loaded: an invalid regex, or a `replace` that refers to
//! a group the regex does not have (`$1_x` means the group named `1_x`; write `${1}_x`), is an
//! error naming the rule's key.

use std::borrow::Cow;

use regex::Regex;

use super::keylabel::{key_label, KeyLabelMode};

/// What is wrong with a rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRuleError {
    /// The regex (`match`) does not compile.
    #[error("{0}")]
    Pattern(String),
    /// `replace` is malformed or names a group the regex does not have.
    #[error("{0}")]
    Replace(String),
}

impl KeyRuleError {
    /// The config key of the rule at fault: `match` or `replace`.
    pub fn field(&self) -> &'static str {
        match self {
            KeyRuleError::Pattern(_) => "match",
            KeyRuleError::Replace(_) => "replace",
        }
    }
}

/// One rewrite rule.
#[derive(Clone, Debug)]
pub struct KeyRule {
    regex: Regex,
    replace: String,
}

impl PartialEq for KeyRule {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.replace == other.replace
    }
}

impl Eq for KeyRule {}

impl KeyRule {
    /// Compiles a rule; the error says which of `pattern` or `replace` is wrong, and why.
    pub fn new(pattern: &str, replace: &str) -> Result<KeyRule, KeyRuleError> {
        let regex = Regex::new(pattern)
            .map_err(|e| KeyRuleError::Pattern(format!("invalid regex: {e}")))?;
        check_references(&regex, replace).map_err(KeyRuleError::Replace)?;
        Ok(KeyRule {
            regex,
            replace: replace.to_owned(),
        })
    }

    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    pub fn replacement(&self) -> &str {
        &self.replace
    }
}

/// The ordered rules of `metrics.key_rewrite` (empty: names are kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRewrite {
    rules: Vec<KeyRule>,
}

impl KeyRewrite {
    pub fn new(rules: Vec<KeyRule>) -> KeyRewrite {
        KeyRewrite { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[KeyRule] {
        &self.rules
    }

    /// The name after the first matching rule; borrowed when no rule matches.
    pub fn apply<'a>(&self, name: &'a str) -> Cow<'a, str> {
        for rule in &self.rules {
            if rule.regex.is_match(name) {
                return Cow::Owned(rule.regex.replace(name, rule.replace.as_str()).into_owned());
            }
        }
        Cow::Borrowed(name)
    }
}

/// The exported `key` label of a key name: rewritten, then formed by `mode`.
pub fn export_key<'a>(name: &'a str, rewrite: &KeyRewrite, mode: &KeyLabelMode) -> Cow<'a, str> {
    match rewrite.apply(name) {
        Cow::Borrowed(n) => key_label(n, mode),
        Cow::Owned(n) => Cow::Owned(key_label(&n, mode).into_owned()),
    }
}

/// Checks that every `$ref` in `replace` names a group of `regex` (the regex crate would
/// silently expand an unknown group to nothing).
fn check_references(regex: &Regex, replace: &str) -> Result<(), String> {
    let bytes = replace.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        // `$$` is a literal dollar.
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
            match replace[i + 2..].find('}') {
                Some(end) => (&replace[i + 2..i + 2 + end], i + 3 + end),
                None => return Err(format!("unterminated ${{ in replace {replace:?}")),
            }
        } else {
            let len = replace[i + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if len == 0 {
                return Err(format!(
                    "a lone $ in replace {replace:?}; write $$ for a literal dollar"
                ));
            }
            (&replace[i + 1..i + 1 + len], i + 1 + len)
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|g| g == name),
        };
        if !known {
            return Err(format!(
                "replace refers to group {name:?}, which the regex does not have \
                 (write ${{1}}x rather than $1x when a name or digit follows)"
            ));
        }
        i = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&str, &str)]) -> KeyRewrite {
        KeyRewrite::new(
            list.iter()
                .map(|(m, r)| KeyRule::new(m, r).expect("valid rule"))
                .collect(),
        )
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rw = rules(&[
            (r"^user:\d+:(.*)$", "user:*:$1"),
            (r"^user:", "never-reached:"),
            (r"\d{6,}", "<id>"),
        ]);
        assert_eq!(rw.apply("user:12345:cart"), "user:*:cart");
        // Only the leftmost match of the rule is replaced.
        assert_eq!(
            rw.apply("order:1234567:item:7654321"),
            "order:<id>:item:7654321"
        );
        assert!(matches!(rw.apply("session"), Cow::Borrowed("session")));
    }

    #[test]
    fn named_groups_and_literal_dollars() {
        let rw = rules(&[(r"^(?P<kind>\w+):\d+$", "${kind}:$$id")]);
        assert_eq!(rw.apply("cart:42"), "cart:$id");
    }

    #[test]
    fn bad_rules_are_refused() {
        let e = KeyRule::new("(", "x").unwrap_err();
        assert!(e.to_string().contains("invalid regex"));
        assert_eq!(e.field(), "match");
        let e = KeyRule::new("^(a)$", "$2").unwrap_err();
        assert!(e.to_string().contains("\"2\""));
        assert_eq!(e.field(), "replace");
        // `$1_x` is the group named `1_x`.
        let e = KeyRule::new("^(a)$", "$1_x").unwrap_err();
        assert!(e.to_string().contains("1_x"));
        assert!(KeyRule::new("^(a)$", "${1}_x").is_ok());
        assert!(KeyRule::new("^(a)$", "cost: $").is_err());
        assert!(KeyRule::new("^(a)$", "${1").is_err());
        assert!(KeyRule::new("^(?P<n>a)$", "$n").is_ok());
        assert!(KeyRule::new("^a$", "$0").is_ok());
    }

    #[test]
    fn rewrite_comes_before_hashing_and_cutting() {
        let rw = rules(&[(r"^user:\d+:(.*)$", "user:*:$1")]);
        // Both users hash to the digest of the rewritten name, "user:*:cart".
        let a = export_key("user:1:cart", &rw, &KeyLabelMode::Hash);
        let b = export_key("user:2:cart", &rw, &KeyLabelMode::Hash);
        assert_eq!(a, b);
        assert_eq!(a, key_label("user:*:cart", &KeyLabelMode::Hash));
        let long = format!("user:1:{}", "x".repeat(300));
        let cut = export_key(&long, &rw, &KeyLabelMode::Name { max_bytes: 16 });
        assert!(cut.starts_with("user:*:xxxxxxxxx~h:"), "{cut}");
        // No rules: the name itself, borrowed.
        let none = KeyRewrite::default();
        assert!(matches!(
            export_key("k", &none, &KeyLabelMode::default()),
            Cow::Borrowed("k")
        ));
    }
}
