//! Sharding: which exporter replica analyses which instance.
//!
//! Instances are assigned with rendezvous (highest-random-weight) hashing: every replica scores
//! each `(instance id, shard index)` pair with the same fixed hash and an instance belongs to the
//! shard with the highest score. Every replica computes the same answer from the instance id
//! alone, without talking to the others, so each instance is handled by exactly one replica.
//! When the shard count grows from N to N+1, an instance moves only if the new shard outscores
//! all N old ones, which happens for 1/(N+1) of the instances; shrinking moves only the
//! instances of the removed shard.
//!
//! The hash is pinned (FNV-1a 64 of the id, mixed with the shard index by the SplitMix64
//! finaliser), not `std`'s `DefaultHasher`, whose algorithm may change between Rust releases:
//! replicas of different versions during a rolling update must still agree.

use std::fmt;

/// The hostname value of `--shard.index` that takes the index from the hostname's trailing
/// `-N` (a StatefulSet pod ordinal).
pub const FROM_HOSTNAME: &str = "from-hostname";

/// The most shards supported (far more than anyone runs; bounds the per-instance work).
pub const MAX_SHARDS: u32 = 1024;

/// This replica's part of the fleet: shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// A `--shard.index` / `--shard.count` pair that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard.count must be between 1 and {MAX_SHARDS}, not {0}")]
    Count(u32),
    #[error("--shard.index {index} must be below --shard.count {count}")]
    IndexOutOfRange { index: u32, count: u32 },
    #[error("--shard.index: {0:?} is neither a number nor {FROM_HOSTNAME:?}")]
    Index(String),
    #[error("--shard.index={FROM_HOSTNAME}: the hostname {0:?} does not end in -N (a StatefulSet pod ordinal)")]
    NoOrdinal(String),
    #[error("--shard.index={FROM_HOSTNAME}: the hostname is unknown (HOSTNAME is not set)")]
    NoHostname,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::SINGLE
    }
}

impl Shard {
    /// One replica handling everything.
    pub const SINGLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Count(count));
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// Builds the shard from the `--shard.index` value (a number or [`FROM_HOSTNAME`]), the
    /// count and the hostname (for [`FROM_HOSTNAME`]).
    pub fn from_flags(
        index: &str,
        count: u32,
        hostname: Option<&str>,
    ) -> Result<Shard, ShardError> {
        let index = index.trim();
        let n = if index == FROM_HOSTNAME {
            let host = hostname
                .filter(|h| !h.is_empty())
                .ok_or(ShardError::NoHostname)?;
            ordinal_from_hostname(host).ok_or_else(|| ShardError::NoOrdinal(host.to_owned()))?
        } else {
            index
                .parse::<u32>()
                .map_err(|_| ShardError::Index(index.to_owned()))?
        };
        Shard::new(n, count)
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this replica handles the instance.
    pub fn owns(self, instance_id: &str) -> bool {
        self.count <= 1 || owner(instance_id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The trailing `-N` of a hostname such as `dcs-key-exporter-2` (a StatefulSet pod name), or
/// of its first label when the hostname is fully qualified.
pub fn ordinal_from_hostname(hostname: &str) -> Option<u32> {
    let first = hostname.split('.').next().unwrap_or(hostname);
    let (_, digits) = first.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The shard (of `count`) that handles `instance_id`: the highest rendezvous weight.
pub fn owner(instance_id: &str, count: u32) -> u32 {
    let h = fnv1a64(instance_id.as_bytes());
    let mut best = (0u64, 0u32);
    for j in 0..count.max(1) {
        let w = weight(h, j);
        // Ties (practically impossible) go to the lower index, identically everywhere.
        if j == 0 || w > best.0 {
            best = (w, j);
        }
    }
    best.1
}

/// The rendezvous weight of an id hash for shard `j`.
fn weight(id_hash: u64, j: u32) -> u64 {
    splitmix64(id_hash ^ splitmix64(u64::from(j).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 finaliser: a bijective mixer with full avalanche.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2000 distinct ids shaped like DCS instance ids (UUIDs).
    fn ids() -> Vec<String> {
        (0..2000u32)
            .map(|i| {
                let x = splitmix64(u64::from(i));
                format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    x >> 32,
                    (x >> 16) & 0xffff,
                    x & 0xfff,
                    (x >> 12) & 0xfff,
                    x.rotate_left(17) & 0xffff_ffff_ffff
                )
            })
            .collect()
    }

    #[test]
    fn known_vectors() {
        // FNV-1a 64 published test vectors (Fowler/Noll/Vo reference code).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // SplitMix64's first outputs for seed 0 are splitmix64(k * golden gamma).
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let ids = ids();
        for count in [1u32, 2, 3, 5, 8] {
            let mut per_shard = vec![0usize; count as usize];
            for id in &ids {
                let owners: Vec<u32> = (0..count)
                    .filter(|&i| Shard::new(i, count).unwrap().owns(id))
                    .collect();
                assert_eq!(owners.len(), 1, "{id} with {count} shards: {owners:?}");
                per_shard[owners[0] as usize] += 1;
            }
            // Balanced within ±25 % of the fair share.
            let fair = ids.len() / count as usize;
            for n in per_shard {
                assert!(
                    n * 4 >= fair * 3 && n * 4 <= fair * 5,
                    "{count}: {n} vs {fair}"
                );
            }
        }
    }

    #[test]
    fn growing_moves_about_one_in_n_plus_one_and_only_to_the_new_shard() {
        let ids = ids();
        for n in [1u32, 2, 3, 4, 7] {
            let mut moved = 0usize;
            for id in &ids {
                let (before, after) = (owner(id, n), owner(id, n + 1));
                if before != after {
                    assert_eq!(after, n, "{id} moved between old shards");
                    moved += 1;
                }
            }
            let expected = ids.len() as f64 / f64::from(n + 1);
            let dev = (moved as f64 - expected).abs() / expected;
            assert!(
                dev < 0.15,
                "{n}→{}: moved {moved}, expected ~{expected}",
                n + 1
            );
        }
    }

    #[test]
    fn shrinking_moves_only_the_removed_shard() {
        for id in ids() {
            let (before, after) = (owner(&id, 4), owner(&id, 3));
            if before < 3 {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn flags() {
        assert_eq!(
            Shard::from_flags("2", 3, None),
            Ok(Shard { index: 2, count: 3 })
        );
        assert_eq!(
            Shard::from_flags("from-hostname", 4, Some("dcs-key-exporter-3")),
            Ok(Shard { index: 3, count: 4 })
        );
        assert_eq!(
            Shard::from_flags("from-hostname", 4, Some("exp-1.exp.monitoring.svc")),
            Ok(Shard { index: 1, count: 4 })
        );
        assert_eq!(
            Shard::from_flags("from-hostname", 4, Some("laptop")),
            Err(ShardError::NoOrdinal("laptop".into()))
        );
        assert_eq!(
            Shard::from_flags("from-hostname", 4, None),
            Err(ShardError::NoHostname)
        );
        assert_eq!(
            Shard::from_flags("3", 3, None),
            Err(ShardError::IndexOutOfRange { index: 3, count: 3 })
        );
        assert_eq!(Shard::from_flags("0", 0, None), Err(ShardError::Count(0)));
        assert_eq!(
            Shard::from_flags("-1", 2, None),
            Err(ShardError::Index("-1".into()))
        );
        assert_eq!(ordinal_from_hostname("web-"), None);
        assert_eq!(ordinal_from_hostname("web-x1"), None);
        assert_eq!(ordinal_from_hostname("web-10"), Some(10));
    }
}
