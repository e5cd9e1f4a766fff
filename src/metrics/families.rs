//! Key families: keys and memory grouped by key pattern, whatever analysis produced them.
//!
//! A [`KeyFamily`] is one pattern (a DCS key prefix, or a pattern a native scan derives) of one
//! key type on one shard. The DCS offline key analysis yields them from its
//! `largest_key_prefixes` ([`from_offline`]); a native scan can build the same list. The
//! exported set is bounded: [`top_families`] keeps the K largest by memory per instance and sums
//! the rest into one [`OTHER`] family per key type and shard, so a keyspace of random names
//! cannot explode the series count.

use std::collections::BTreeMap;

use regex::Regex;

use crate::dcs::offline::OfflineTaskDetails;
use crate::dcs::KeyType;

/// The family that holds everything outside the top K.
pub const OTHER: &str = "other";

/// Keys and memory of one family of one key type on one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFamily {
    /// The pattern, as the source names it (a DCS prefix is taken verbatim).
    pub family: String,
    /// `string`, `list`, `set`, `zset`, `hash`, another type name, or empty when unknown.
    pub key_type: String,
    /// The shard (DCS group name, or node address); empty for a single-shard source.
    pub shard: String,
    pub keys: u64,
    pub memory_bytes: u64,
    /// Keys that never expire; `None` when the source does not tell (DCS).
    pub keys_without_ttl: Option<u64>,
}

#[cfg(test)]
impl KeyFamily {
    /// A family for tests, without a count of keys that never expire (as DCS gives them).
    pub(crate) fn sample(name: &str, ty: &str, shard: &str, keys: u64, bytes: u64) -> Self {
        KeyFamily {
            family: name.into(),
            key_type: ty.into(),
            shard: shard.into(),
            keys,
            memory_bytes: bytes,
            keys_without_ttl: None,
        }
    }
}

/// Keys and memory of one key type on one shard: the per-instance totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceTotal {
    pub key_type: String,
    pub shard: String,
    pub keys: u64,
    pub memory_bytes: u64,
}

/// The families and per-type totals of one shard, from one analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardFamilies {
    /// The task (or scan) that produced them.
    pub task_id: String,
    /// The backup analysed, when the source is a DCS backup.
    pub backup_id: Option<String>,
    /// Unix seconds.
    pub finished_at: Option<f64>,
    /// Every family the source reported for the shard (not cut).
    pub families: Vec<KeyFamily>,
    pub totals: Vec<KeyspaceTotal>,
    /// Keys on the shard (`total_num`), else the sum of the per-type totals.
    pub key_count: u64,
}

fn non_negative(v: Option<i64>) -> u64 {
    v.map_or(0, |n| n.max(0) as u64)
}

fn type_name(t: &Option<KeyType>) -> String {
    t.as_ref()
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default()
}

/// The families and totals of one offline key analysis result, filed under `shard` (the shard
/// the result is published for, which may be known better than the result names it).
///
/// Entries of `largest_key_prefixes` that repeat a (prefix, type) pair are summed, so that one
/// series never appears twice. The per-type totals come from `type_num` and `type_bytes`.
pub fn from_offline(
    d: &OfflineTaskDetails,
    shard: &str,
    finished_at: Option<f64>,
) -> ShardFamilies {
    let shard = shard.to_owned();
    let mut fams: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for p in &d.largest_key_prefixes {
        let e = fams
            .entry((p.key_prefix.clone(), type_name(&p.key_type)))
            .or_default();
        e.0 = e.0.saturating_add(non_negative(p.num));
        e.1 = e.1.saturating_add(non_negative(p.bytes));
    }
    let families = fams
        .into_iter()
        .map(|((family, key_type), (keys, memory_bytes))| KeyFamily {
            family,
            key_type,
            shard: shard.clone(),
            keys,
            memory_bytes,
            keys_without_ttl: None,
        })
        .collect();
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for t in &d.type_num {
        let e = totals.entry(type_name(&t.key_type)).or_default();
        e.0 = e.0.saturating_add(non_negative(t.num));
    }
    for t in &d.type_bytes {
        let e = totals.entry(type_name(&t.key_type)).or_default();
        e.1 = e.1.saturating_add(non_negative(t.bytes));
    }
    let totals: Vec<KeyspaceTotal> = totals
        .into_iter()
        .map(|(key_type, (keys, memory_bytes))| KeyspaceTotal {
            key_type,
            shard: shard.clone(),
            keys,
            memory_bytes,
        })
        .collect();
    let key_count = match d.total_num {
        Some(n) if n >= 0 => n as u64,
        _ => totals.iter().map(|t| t.keys).sum(),
    };
    ShardFamilies {
        task_id: d.id.clone(),
        backup_id: d.backup_id.clone(),
        finished_at,
        families,
        totals,
        key_count,
    }
}

/// The `k` largest families by memory (ties: more keys first, then name), followed by one
/// [`OTHER`] family per key type and shard summing the rest. A source family literally named
/// `other` is counted in the rest, so no series repeats.
pub fn top_families(all: &[KeyFamily], k: usize) -> Vec<KeyFamily> {
    let mut ranked: Vec<&KeyFamily> = all.iter().filter(|f| f.family != OTHER).collect();
    ranked.sort_by(|a, b| {
        b.memory_bytes
            .cmp(&a.memory_bytes)
            .then_with(|| b.keys.cmp(&a.keys))
            .then_with(|| {
                (&a.family, &a.key_type, &a.shard).cmp(&(&b.family, &b.key_type, &b.shard))
            })
    });
    let mut out: Vec<KeyFamily> = ranked.iter().take(k).map(|f| (*f).clone()).collect();
    let kept = out.len();
    let mut rest: BTreeMap<(String, String), KeyFamily> = BTreeMap::new();
    let cut = ranked
        .into_iter()
        .skip(kept)
        .chain(all.iter().filter(|f| f.family == OTHER));
    for f in cut {
        let e = rest
            .entry((f.key_type.clone(), f.shard.clone()))
            .or_insert_with(|| KeyFamily {
                family: OTHER.to_owned(),
                key_type: f.key_type.clone(),
                shard: f.shard.clone(),
                keys: 0,
                memory_bytes: 0,
                keys_without_ttl: Some(0),
            });
        e.keys = e.keys.saturating_add(f.keys);
        e.memory_bytes = e.memory_bytes.saturating_add(f.memory_bytes);
        e.keys_without_ttl = match (e.keys_without_ttl, f.keys_without_ttl) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
    }
    out.extend(rest.into_values());
    out
}

// How key names become family names: the naming rules shared by the config (which validates
// them) and the sources that aggregate keys (the Redis-native big key scan).

/// Longest family name kept (bytes); longer names are cut at a character boundary.
pub const MAX_FAMILY_BYTES: usize = 200;
/// Default delimiter of automatic prefixes.
pub const DEFAULT_DELIMITER: &str = ":";
/// Default number of segments kept by automatic prefixes.
pub const DEFAULT_DEPTH: usize = 3;
/// Largest `depth` accepted.
pub const MAX_DEPTH: usize = 16;

/// One user rule: a key name matching `pattern` belongs to `family` (capture groups expanded).
#[derive(Clone, Debug)]
pub struct FamilyRule {
    pub pattern: Regex,
    pub family: String,
}

/// How key names become family names (`analysis.keyfamily.families`).
#[derive(Clone, Debug)]
pub struct FamilyRules {
    pub delimiter: String,
    pub depth: usize,
    pub rules: Vec<FamilyRule>,
}

impl Default for FamilyRules {
    fn default() -> Self {
        FamilyRules {
            delimiter: DEFAULT_DELIMITER.to_owned(),
            depth: DEFAULT_DEPTH,
            rules: Vec::new(),
        }
    }
}

impl PartialEq for FamilyRules {
    fn eq(&self, o: &Self) -> bool {
        self.delimiter == o.delimiter
            && self.depth == o.depth
            && self.rules.len() == o.rules.len()
            && self
                .rules
                .iter()
                .zip(&o.rules)
                .all(|(a, b)| a.pattern.as_str() == b.pattern.as_str() && a.family == b.family)
    }
}

/// Whether a segment is an id: all digits, 8 or more hex digits with at least one digit, or a
/// UUID.
fn is_id(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let b = s.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    if b.len() >= 8 && has_digit && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // 8-4-4-4-12
    b.len() == 36
        && s.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-')
}

/// A family name as exported: control characters (NUL, CR, LF, ESC…) written `\xNN`, so that
/// none reaches a label or a page raw, then cut to [`MAX_FAMILY_BYTES`].
fn cut(s: String) -> String {
    let mut s = if s.chars().any(char::is_control) {
        let mut out = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            if c.is_control() {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("\\x{byte:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        s
    };
    if s.len() > MAX_FAMILY_BYTES {
        let mut end = MAX_FAMILY_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl FamilyRules {
    /// The family of a key name.
    pub fn family_of(&self, name: &[u8]) -> String {
        let name = String::from_utf8_lossy(name);
        for r in &self.rules {
            if let Some(c) = r.pattern.captures(&name) {
                let mut out = String::new();
                c.expand(&r.family, &mut out);
                return cut(out);
            }
        }
        let mut out = String::new();
        let mut parts = name.split(self.delimiter.as_str());
        for (i, seg) in parts.by_ref().take(self.depth).enumerate() {
            if i > 0 {
                out.push_str(&self.delimiter);
            }
            out.push_str(if is_id(seg) { "*" } else { seg });
            if out.len() > MAX_FAMILY_BYTES {
                return cut(out);
            }
        }
        if parts.next().is_some() {
            out.push_str(&self.delimiter);
            out.push('*');
        }
        cut(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_by_memory_and_the_rest_summed_per_type_and_shard() {
        let all = vec![
            KeyFamily::sample("a:", "hash", "g0", 10, 500),
            KeyFamily::sample("b:", "string", "g0", 99, 100),
            KeyFamily::sample("c:", "string", "g0", 5, 900),
            KeyFamily::sample("d:", "string", "g1", 7, 50),
            KeyFamily::sample("e:", "string", "g0", 1, 10),
            KeyFamily::sample("other", "string", "g0", 2, 3),
        ];
        let top = top_families(&all, 2);
        let got: Vec<_> = top
            .iter()
            .map(|f| {
                (
                    f.family.as_str(),
                    f.key_type.as_str(),
                    f.shard.as_str(),
                    f.keys,
                    f.memory_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("c:", "string", "g0", 5, 900),
                ("a:", "hash", "g0", 10, 500),
                ("other", "string", "g0", 99 + 1 + 2, 100 + 10 + 3),
                ("other", "string", "g1", 7, 50),
            ]
        );
        // Nothing is lost: the sums over the cut equal the sums over the input.
        let sum = |v: &[KeyFamily]| {
            v.iter()
                .fold((0, 0), |(k, b), f| (k + f.keys, b + f.memory_bytes))
        };
        assert_eq!(sum(&top), sum(&all));
        assert_eq!(
            top_families(&all, 100).len(),
            6,
            "the literal `other` is merged into one"
        );
    }

    #[test]
    fn offline_result_becomes_families_and_totals() {
        let d: OfflineTaskDetails = serde_json::from_str(
            r#"{"id":"t","group_name":"group-1","backup_id":"b",
                "largest_key_prefixes":[{"key_prefix":"user:","type":"hash","bytes":700,"num":7},
                                        {"key_prefix":"user:","type":"hash","bytes":300,"num":3},
                                        {"key_prefix":"s:","type":"string","bytes":-4,"num":2}],
                "type_num":[{"type":"hash","num":10},{"type":"string","num":5}],
                "type_bytes":[{"type":"hash","bytes":1000},{"type":"string","bytes":20}]}"#,
        )
        .unwrap();
        let s = from_offline(&d, &d.shard(), Some(5.0));
        assert_eq!(s.key_count, 15, "no total_num: the per-type sum");
        assert_eq!(
            s.families,
            vec![
                KeyFamily::sample("s:", "string", "group-1", 2, 0),
                KeyFamily::sample("user:", "hash", "group-1", 10, 1000),
            ]
        );
        assert_eq!(s.totals[0].memory_bytes, 1000);
        assert_eq!(s.backup_id.as_deref(), Some("b"));
    }
}
