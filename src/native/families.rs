//! Key families from a big key scan: every key the walk visits, grouped by pattern.
//!
//! A [`FamilyObserver`] is the [`KeyObserver`] a big key scan feeds when key families are on:
//! it asks for every key's `MEMORY USAGE` and `PTTL` (pipelined with the size commands, neither
//! touches the key) and adds the key to its family: keys, memory bytes, keys without a TTL.
//!
//! # Naming a key's family ([`FamilyRules`])
//! 1. The user's rules, in order: the first regex that matches the key name gives the family
//!    (`$1`, `${name}` expand capture groups), like `metrics.key_rewrite`.
//! 2. Else the automatic prefix: the name split at the delimiter (default `:`), the first
//!    `depth` segments kept (default 3), numeric and hex-id segments (all digits; 8 or more hex
//!    digits with at least one digit; UUIDs) collapsed to `*`, and `*` appended when segments
//!    were cut: `user:123:cart` → `user:*:cart`, `a:b:c:d` → `a:b:c:*`. A name without the
//!    delimiter is its own family; names are cut at [`MAX_FAMILY_BYTES`].
//!
//! # Bounded memory ([`FamilyTable`])
//! A random-name keyspace must not grow the exporter with the keyspace, so the table tracks at
//! most [`TRACKED_FAMILIES`] families per shard. When it is full, the smaller half by memory
//! (ties: fewer keys) is folded into the family `other` of its key type, and tracking goes on.
//! Nothing is lost: `other` and the tracked families always sum to the exact totals of the
//! shard. A family that is tracked at the end has exact counts unless it was folded before
//! (its earlier keys are then in `other`); a large family is never folded while there are
//! smaller ones to fold, so the families that reach the exported top K are the large ones.
//! The exported top K per target, and `other` for the rest, are then cut by
//! [`crate::metrics::families::top_families`].

use std::collections::{BTreeMap, HashMap};

use super::scan::{KeyObserver, ScannedKey};
pub use crate::metrics::families::{
    FamilyRule, FamilyRules, DEFAULT_DELIMITER, DEFAULT_DEPTH, MAX_DEPTH, MAX_FAMILY_BYTES,
};
use crate::metrics::families::{KeyFamily, KeyspaceTotal, ShardFamilies, OTHER};

/// Families tracked per shard while scanning (see the module docs).
pub const TRACKED_FAMILIES: usize = 10_000;
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    keys: u64,
    memory: u64,
    without_ttl: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.keys = self.keys.saturating_add(o.keys);
        self.memory = self.memory.saturating_add(o.memory);
        self.without_ttl = self.without_ttl.saturating_add(o.without_ttl);
    }
}

/// Families of one shard, at most `capacity` tracked (see the module docs).
#[derive(Debug)]
pub struct FamilyTable {
    capacity: usize,
    tracked: HashMap<(String, String), Counts>,
    /// Folded families, per key type.
    other: BTreeMap<String, Counts>,
    /// Everything, per key type (`dcs_keyspace_*`).
    totals: BTreeMap<String, Counts>,
}

impl FamilyTable {
    pub fn new(capacity: usize) -> Self {
        FamilyTable {
            capacity: capacity.max(2),
            tracked: HashMap::new(),
            other: BTreeMap::new(),
            totals: BTreeMap::new(),
        }
    }

    /// Families tracked right now.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// Adds one key.
    pub fn add(&mut self, family: String, key_type: &str, memory: u64, without_ttl: bool) {
        let c = Counts {
            keys: 1,
            memory,
            without_ttl: u64::from(without_ttl),
        };
        match self.totals.get_mut(key_type) {
            Some(t) => t.add(c),
            None => {
                self.totals.insert(key_type.to_owned(), c);
            }
        }
        let k = (family, key_type.to_owned());
        if let Some(t) = self.tracked.get_mut(&k) {
            t.add(c);
            return;
        }
        if self.tracked.len() >= self.capacity {
            self.fold();
        }
        self.tracked.insert(k, c);
    }

    /// Folds the smaller half of the tracked families into `other`.
    fn fold(&mut self) {
        let mut all: Vec<((String, String), Counts)> = self.tracked.drain().collect();
        all.sort_by(|a, b| {
            (b.1.memory, b.1.keys)
                .cmp(&(a.1.memory, a.1.keys))
                .then_with(|| a.0.cmp(&b.0))
        });
        // `all` is now largest first; keep the larger half.
        let keep = self.capacity / 2;
        for ((_, key_type), c) in all.drain(keep..) {
            self.other.entry(key_type).or_default().add(c);
        }
        self.tracked.extend(all);
    }

    /// The shard's families (tracked ones, then `other` per key type) and per-type totals.
    pub fn finish(self, shard: &str, task_id: &str, finished_at: Option<f64>) -> ShardFamilies {
        let fam = |family: String, key_type: String, c: Counts| KeyFamily {
            family,
            key_type,
            shard: shard.to_owned(),
            keys: c.keys,
            memory_bytes: c.memory,
            keys_without_ttl: Some(c.without_ttl),
        };
        let mut families: Vec<KeyFamily> = self
            .tracked
            .into_iter()
            .map(|((f, t), c)| fam(f, t, c))
            .collect();
        families.sort_by(|a, b| (&a.family, &a.key_type).cmp(&(&b.family, &b.key_type)));
        families.extend(
            self.other
                .into_iter()
                .map(|(t, c)| fam(OTHER.to_owned(), t, c)),
        );
        let key_count = self.totals.values().map(|c| c.keys).sum();
        let totals = self
            .totals
            .into_iter()
            .map(|(key_type, c)| KeyspaceTotal {
                key_type,
                shard: shard.to_owned(),
                keys: c.keys,
                memory_bytes: c.memory,
            })
            .collect();
        ShardFamilies {
            task_id: task_id.to_owned(),
            backup_id: None,
            finished_at,
            families,
            totals,
            key_count,
        }
    }
}

/// The [`KeyObserver`] that builds a shard's [`FamilyTable`].
pub struct FamilyObserver<'a> {
    rules: &'a FamilyRules,
    pub table: FamilyTable,
}

impl<'a> FamilyObserver<'a> {
    pub fn new(rules: &'a FamilyRules, capacity: usize) -> Self {
        FamilyObserver {
            rules,
            table: FamilyTable::new(capacity),
        }
    }
}

impl KeyObserver for FamilyObserver<'_> {
    fn wants_memory(&self) -> bool {
        true
    }

    fn wants_ttl(&self) -> bool {
        true
    }

    fn observe(&mut self, key: &ScannedKey<'_>) {
        // A key that vanished between two round trips has no memory: it is not counted.
        let Some(memory) = key.memory else { return };
        let family = self.rules.family_of(key.name);
        self.table.add(
            family,
            key.key_type,
            memory.max(0) as u64,
            key.ttl_ms == Some(-1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(delim: &str, depth: usize, rules: &[(&str, &str)]) -> FamilyRules {
        FamilyRules {
            delimiter: delim.into(),
            depth,
            rules: rules
                .iter()
                .map(|(p, f)| FamilyRule {
                    pattern: regex::Regex::new(p).unwrap(),
                    family: (*f).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn automatic_prefixes_collapse_ids_and_cut_at_depth() {
        let r = FamilyRules::default();
        let cases = [
            ("user:123:cart", "user:*:cart"),
            ("user:123", "user:*"),
            ("session:5f3a9c2e7b", "session:*"),
            ("session:deadbeef", "session:deadbeef"), // no digit: a word, not an id
            (
                "order:550e8400-e29b-41d4-a716-446655440000:items",
                "order:*:items",
            ),
            ("a:b:c:d:e", "a:b:c:*"),
            ("plain", "plain"),
            ("v2:feed:7", "v2:feed:*"),
            ("", ""),
        ];
        for (k, want) in cases {
            assert_eq!(r.family_of(k.as_bytes()), want, "{k}");
        }
        assert_eq!(
            rules("/", 2, &[]).family_of(b"img/42/thumb/x"),
            "img/*/*",
            "a custom delimiter and depth"
        );
        let long = "x".repeat(1000);
        assert_eq!(r.family_of(long.as_bytes()).len(), MAX_FAMILY_BYTES);
        assert_eq!(
            r.family_of(b"k\xff:1"),
            "k\u{fffd}:*",
            "odd bytes stay readable"
        );
        assert_eq!(
            r.family_of(b"a\x00b\r\nc:1"),
            "a\\x00b\\x0d\\x0ac:*",
            "control characters never raw"
        );
    }

    #[test]
    fn user_rules_come_first_in_order_with_captures() {
        let r = rules(
            ":",
            3,
            &[
                (r"^tenant-(\w+)/", "tenant:$1"),
                (r"^cache\.", "cache"),
                (r"^cache", "never"),
            ],
        );
        assert_eq!(r.family_of(b"tenant-acme/u/1"), "tenant:acme");
        assert_eq!(r.family_of(b"cache.x.y"), "cache");
        assert_eq!(r.family_of(b"user:1"), "user:*", "no rule: automatic");
    }

    #[test]
    fn table_is_bounded_and_loses_nothing() {
        let mut t = FamilyTable::new(100);
        // One big family, then many one-key families of random names.
        for _ in 0..50 {
            t.add("big".into(), "hash", 1000, true);
        }
        for i in 0..10_000u64 {
            t.add(format!("r{i}"), "string", 10 + i % 7, i % 3 == 0);
            assert!(t.tracked() <= 100);
        }
        let s = t.finish("s", "task", Some(1.0));
        assert!(s.families.len() <= 100 + 1, "{}", s.families.len());
        let big = s.families.iter().find(|f| f.family == "big").unwrap();
        assert_eq!((big.keys, big.memory_bytes), (50, 50_000), "never folded");
        let keys: u64 = s.families.iter().map(|f| f.keys).sum();
        let mem: u64 = s.families.iter().map(|f| f.memory_bytes).sum();
        let nottl: u64 = s.families.iter().map(|f| f.keys_without_ttl.unwrap()).sum();
        let want_mem: u64 = 50_000 + (0..10_000u64).map(|i| 10 + i % 7).sum::<u64>();
        let want_nottl = 50 + (0..10_000u64).filter(|i| i % 3 == 0).count() as u64;
        assert_eq!((keys, mem, nottl), (10_050, want_mem, want_nottl));
        assert_eq!(s.key_count, 10_050);
        assert_eq!(s.totals.len(), 2);
        assert_eq!(s.totals[0].key_type, "hash");
        assert_eq!(s.totals[0].memory_bytes, 50_000);
    }
}
