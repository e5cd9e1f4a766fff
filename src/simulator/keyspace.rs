//! A synthetic Redis keyspace per instance, and the hot key / big key results it yields.
//!
//! The keyspace is a pool of named keys (at most [`POOL_MAX`], fewer for small instances) generated
//! with `ChaCha8Rng` from the simulator seed plus a stable hash of the instance id, so the same seed
//! always gives the same keys. Everything that varies with time is a pure function of (seed, key,
//! time), never of the order of requests:
//! - **Access pattern.** Keys are ranked; rank `r` gets `A / (r+1)^s` accesses in the current drift
//!   epoch (Zipf-like), times a small per-key, per-epoch jitter. Every epoch the ranking rotates by
//!   a few keys, so the hot set drifts: keys climb towards the top, then fall out.
//! - **LFU counter (`freq`).** Redis raises a key's 8-bit counter, which starts at 5, with
//!   probability `1 / ((counter - 5) * lfu_log_factor + 1)` per access, saturating at 255. The
//!   expected number of accesses from 5 to `c` is therefore `(c-5) + f(c-5)(c-6)/2`; the reported
//!   counter is the largest `c` whose expected cost is covered by the access count
//!   ([`lfu_counter`]), which is deterministic.
//! - **Sizes.** Heavy-tailed (Pareto) per type, drifting by up to ±10% per size epoch.
//!
//! Big key results follow the documented caps: keys over the documented thresholds (strings over
//! 10 KB, collections over 5000 elements), at most 20 per type, so at most 100 in all. Hot key
//! results are the keys whose counter reaches [`HOT_MIN_FREQ`], highest first, at most 100.

use std::collections::HashSet;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;

use crate::dcs::model::{KeyRecord, KeyType, SizeUnit};

/// Largest number of distinct keys modelled per instance.
pub const POOL_MAX: usize = 2000;
/// Big key results: at most this many keys per type.
pub const BIG_PER_TYPE: usize = 20;
/// Big key results: at most this many keys in all.
pub const BIG_TOTAL: usize = 100;
/// Hot key results: at most this many keys.
pub const HOT_MAX: usize = 100;
/// Hot key results only report keys whose LFU counter reaches this value.
pub const HOT_MIN_FREQ: i64 = 10;
/// Documented big key threshold for strings, in bytes.
pub const BIG_STRING_BYTES: i64 = 10 * 1024;
/// Documented big key threshold for collections, in elements.
pub const BIG_ELEMENTS: i64 = 5000;
/// The LFU counter's initial value for a new key (Redis `LFU_INIT_VAL`).
pub const LFU_INIT_VAL: i64 = 5;

/// Expected number of accesses that take a fresh key's counter from 5 to `c`.
pub fn accesses_for_counter(c: i64, log_factor: u32) -> f64 {
    if c <= LFU_INIT_VAL {
        return 0.0;
    }
    let k = (c - LFU_INIT_VAL) as f64;
    k + f64::from(log_factor) * k * (k - 1.0) / 2.0
}

/// The LFU counter Redis is expected to show after `accesses` accesses of a fresh key.
pub fn lfu_counter(accesses: u64, log_factor: u32) -> i64 {
    let n = accesses as f64;
    // The cost is increasing in c, so a binary search over 5..=255 finds the largest covered c.
    let (mut lo, mut hi) = (LFU_INIT_VAL, 255_i64);
    while lo < hi {
        let mid = (lo + hi + 1) / 2;
        if accesses_for_counter(mid, log_factor) <= n {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// One key as the offline key analysis of a backup sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineKey {
    pub name: String,
    pub key_type: KeyType,
    /// Memory of the key.
    pub bytes: u64,
    /// Elements of a collection; the value's length for a string.
    pub elements: u64,
}

/// The prefix the simulated offline analysis groups a key under: the name up to and including
/// its first `:`, or the whole name when it has none. (How DCS derives prefixes is not
/// documented; this is the simulator's rule.)
pub fn key_prefix(name: &str) -> &str {
    match name.find(':') {
        Some(i) => &name[..=i],
        None => name,
    }
}

/// The knobs of one instance's keyspace.
#[derive(Clone, Debug)]
pub struct KeyspaceParams {
    pub seed: u64,
    pub key_count: u64,
    pub shards: u32,
    pub cluster: bool,
    pub lfu_log_factor: u32,
    /// How often the hot set rotates, in simulated time.
    pub drift_period: Duration,
    /// How often sizes drift, in simulated time.
    pub size_period: Duration,
}

#[derive(Clone, Debug)]
struct SimKey {
    name: String,
    key_type: KeyType,
    db: i64,
    shard: Option<String>,
    base_size: i64,
}

/// The generated keyspace of one instance.
#[derive(Clone, Debug)]
pub struct Keyspace {
    params: KeyspaceParams,
    keys: Vec<SimKey>,
    /// Accesses of the top-ranked key per drift epoch.
    peak_accesses: f64,
    zipf_s: f64,
    drift_step: usize,
    /// Third octet of the shard addresses of a cluster.
    shard_octet: u8,
}

/// FNV-1a, a hash that is stable across Rust releases (unlike `DefaultHasher`).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64: turns (seed, inputs) into well-mixed bits for per-key, per-epoch jitter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform value in [0, 1) from the inputs.
fn unit(seed: u64, a: u64, b: u64) -> f64 {
    let h = mix(seed ^ mix(a ^ mix(b.wrapping_add(0x5851_f42d))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// CRC16/XMODEM, the checksum Redis Cluster maps keys to slots with.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A Pareto draw with scale `xm` and shape `alpha`, capped at `max`.
fn pareto(rng: &mut ChaCha8Rng, xm: f64, alpha: f64, max: f64) -> i64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    (xm / u.powf(1.0 / alpha)).min(max).round() as i64
}

fn epoch_of(at: OffsetDateTime, period: Duration) -> u64 {
    let ms = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u128;
    let p = period.as_millis().max(1);
    (ms / p) as u64
}

const GAMES: [&str; 6] = ["chess", "racing", "puzzle", "arena", "quiz", "farm"];
const QUEUES: [&str; 6] = [
    "email",
    "sms",
    "billing",
    "thumbnails",
    "webhooks",
    "exports",
];
const REGIONS: [&str; 5] = ["eu-west", "us-east", "ap-south", "cn-north", "sa-east"];
const PAGES: [&str; 6] = ["home", "search", "product", "checkout", "help", "blog"];
const SERVICES: [&str; 5] = ["auth", "payments", "catalog", "gateway", "search"];

fn key_name(rng: &mut ChaCha8Rng, t: &KeyType) -> String {
    let n: u32 = rng.gen_range(1..10_000_000);
    let pick = |rng: &mut ChaCha8Rng, list: &[&str]| list[rng.gen_range(0..list.len())].to_owned();
    match t {
        KeyType::String => match rng.gen_range(0..6) {
            0 => format!("user:{n}:session"),
            1 => format!("session:{:016x}", rng.gen::<u64>()),
            2 => format!("product:{n}:stock"),
            3 => format!("cache:page:/{}/{}", pick(rng, &PAGES), n % 500),
            4 => format!(
                "rate_limit:10.{}.{}.{}",
                n % 256,
                (n / 256) % 256,
                (n / 65536) % 256
            ),
            _ => format!("token:{:012x}", rng.gen::<u64>() & 0xffff_ffff_ffff),
        },
        KeyType::Hash => match rng.gen_range(0..3) {
            0 => format!("user:{n}:profile"),
            1 => format!("order:{n}"),
            _ => format!("cart:{n}"),
        },
        KeyType::List => match rng.gen_range(0..3) {
            0 => format!("feed:{n}"),
            1 => format!("queue:{}:{}", pick(rng, &QUEUES), n % 64),
            _ => format!(
                "log:{}:2024-{:02}-{:02}",
                pick(rng, &SERVICES),
                n % 12 + 1,
                n % 28 + 1
            ),
        },
        KeyType::Set => match rng.gen_range(0..3) {
            0 => format!("tags:{n}"),
            1 => format!("followers:{n}"),
            _ => format!("online:{}:{}", pick(rng, &REGIONS), n % 100),
        },
        _ => match rng.gen_range(0..3) {
            0 => format!("leaderboard:{}:season{}", pick(rng, &GAMES), n % 40),
            1 => format!("ranking:{}:{}", pick(rng, &PAGES), n % 1000),
            _ => format!("delayed:{}", pick(rng, &QUEUES)),
        },
    }
}

/// Key names that stress label escaping and length limits downstream.
fn odd_names() -> Vec<String> {
    vec![
        "search:\"café\" \\ résumé".to_owned(),
        "line1\nline2:tab\there".to_owned(),
        "キャッシュ:ユーザー:42".to_owned(),
        format!("very:long:{}", "segment/".repeat(40)),
    ]
}

impl Keyspace {
    /// Generates the keyspace; the same parameters always give the same keyspace.
    pub fn generate(params: KeyspaceParams) -> Keyspace {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let pool = usize::try_from(params.key_count)
            .unwrap_or(usize::MAX)
            .min(POOL_MAX);
        let shard_octet: u8 = rng.gen_range(0..=255);
        let mut seen = HashSet::new();
        let mut keys = Vec::with_capacity(pool);
        // Spread the odd names through the pool at seeded positions.
        let mut odd: Vec<(usize, String)> = if pool >= 50 {
            odd_names()
                .into_iter()
                .map(|n| (rng.gen_range(0..pool), n))
                .collect()
        } else {
            Vec::new()
        };
        while keys.len() < pool {
            let t = match rng.gen_range(0..100) {
                0..=54 => KeyType::String,
                55..=69 => KeyType::Hash,
                70..=79 => KeyType::List,
                80..=89 => KeyType::Set,
                _ => KeyType::Zset,
            };
            let name = match odd.iter().position(|(at, _)| *at <= keys.len()) {
                Some(i) => odd.swap_remove(i).1,
                None => key_name(&mut rng, &t),
            };
            if name.is_empty() || !seen.insert(name.clone()) {
                continue;
            }
            let base_size = match t {
                KeyType::String => pareto(&mut rng, 100.0, 0.9, 512.0 * 1024.0 * 1024.0),
                _ => pareto(&mut rng, 20.0, 0.7, 20_000_000.0),
            };
            let db = if params.cluster || rng.gen_range(0..10) < 8 {
                0
            } else {
                rng.gen_range(1..=3)
            };
            let shard = if params.cluster && params.shards > 0 {
                let slot = u32::from(crc16(name.as_bytes()) % 16384);
                let idx = slot * params.shards / 16384;
                Some(format!("192.168.{shard_octet}.{}:6379", 10 + idx))
            } else {
                None
            };
            keys.push(SimKey {
                name,
                key_type: t,
                db,
                shard,
                base_size,
            });
        }
        let base = (params.key_count as f64 * 2.0).clamp(20_000.0, 3_000_000.0);
        let peak_accesses = base * rng.gen_range(0.5..1.5);
        let zipf_s = rng.gen_range(1.0..1.3);
        let drift_step = rng.gen_range(2..=4);
        Keyspace {
            params,
            keys,
            peak_accesses,
            zipf_s,
            drift_step,
            shard_octet,
        }
    }

    /// Number of modelled keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the keyspace holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn size_at(&self, idx: usize, at: OffsetDateTime) -> i64 {
        let k = &self.keys[idx];
        let e = epoch_of(at, self.params.size_period);
        let f = 0.9 + 0.2 * unit(self.params.seed, idx as u64, e);
        ((k.base_size as f64) * f).round().max(1.0) as i64
    }

    fn record(&self, idx: usize, at: OffsetDateTime, freq: Option<i64>) -> KeyRecord {
        let k = &self.keys[idx];
        let unit = if k.key_type == KeyType::String {
            SizeUnit::Byte
        } else {
            SizeUnit::Count
        };
        KeyRecord {
            name: k.name.clone(),
            key_type: Some(k.key_type.clone()),
            shard: k.shard.clone(),
            db: Some(k.db),
            size: Some(self.size_at(idx, at)),
            unit: Some(unit),
            freq,
            memory: None,
            rates: None,
        }
    }

    /// Accesses of the key at pool index `idx` during the drift epoch containing `at`.
    fn accesses_at(&self, idx: usize, at: OffsetDateTime) -> u64 {
        let n = self.keys.len();
        if n == 0 {
            return 0;
        }
        let e = epoch_of(at, self.params.drift_period);
        let shift = ((e % n as u64) as usize * self.drift_step) % n;
        // Rank r is held by pool[(r + shift) % n], so idx has rank (idx - shift) mod n.
        let rank = (idx + n - shift) % n;
        let jitter = 0.85 + 0.3 * unit(self.params.seed ^ 0x6a09_e667, idx as u64, e);
        let a = self.peak_accesses / ((rank + 1) as f64).powf(self.zipf_s) * jitter;
        a.max(0.0) as u64
    }

    /// The hot key result of an analysis finishing at `at`.
    pub fn hot_keys(&self, at: OffsetDateTime) -> Vec<KeyRecord> {
        let mut scored: Vec<(i64, usize)> = (0..self.keys.len())
            .map(|i| {
                let c = lfu_counter(self.accesses_at(i, at), self.params.lfu_log_factor);
                (c, i)
            })
            .filter(|(c, _)| *c >= HOT_MIN_FREQ)
            .collect();
        scored.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| self.keys[a.1].name.cmp(&self.keys[b.1].name))
        });
        scored.truncate(HOT_MAX);
        scored
            .into_iter()
            .map(|(c, i)| self.record(i, at, Some(c)))
            .collect()
    }

    /// The big key result of an analysis finishing at `at`.
    pub fn big_keys(&self, at: OffsetDateTime) -> Vec<KeyRecord> {
        let mut out = Vec::new();
        for t in [
            KeyType::String,
            KeyType::List,
            KeyType::Set,
            KeyType::Zset,
            KeyType::Hash,
        ] {
            let threshold = if t == KeyType::String {
                BIG_STRING_BYTES
            } else {
                BIG_ELEMENTS
            };
            let mut of_type: Vec<(i64, usize)> = (0..self.keys.len())
                .filter(|&i| self.keys[i].key_type == t)
                .map(|i| (self.size_at(i, at), i))
                .filter(|(s, _)| *s > threshold)
                .collect();
            of_type.sort_by(|a, b| {
                b.0.cmp(&a.0)
                    .then_with(|| self.keys[a.1].name.cmp(&self.keys[b.1].name))
            });
            of_type.truncate(BIG_PER_TYPE);
            out.extend(of_type.into_iter().map(|(_, i)| self.record(i, at, None)));
        }
        out.truncate(BIG_TOTAL);
        out
    }

    /// The `shard` address of the keys of cluster shard `index` (`None` off clusters).
    pub fn shard_address(&self, index: u32) -> Option<String> {
        (self.params.cluster && self.params.shards > 0)
            .then(|| format!("192.168.{}.{}:6379", self.shard_octet, 10 + index))
    }

    /// Bytes a key occupies at `at`: its value (strings) or 24 bytes per element, plus 50
    /// bytes of overhead, the same model as [`approx_bytes`](Self::approx_bytes).
    fn memory_at(&self, idx: usize, at: OffsetDateTime) -> u64 {
        let size = self.size_at(idx, at).max(0) as u64;
        match self.keys[idx].key_type {
            KeyType::String => size + 50,
            _ => size.saturating_mul(24) + 50,
        }
    }

    /// The offline key analysis of the backup of one shard (`None`: the whole keyspace of a
    /// non-cluster instance) taken at `at`: per key, its prefix (see [`key_prefix`]), type,
    /// memory and elements, over the same modelled keys the big key analysis sees.
    pub fn offline_keys(&self, shard: Option<&str>, at: OffsetDateTime) -> Vec<OfflineKey> {
        (0..self.keys.len())
            .filter(|&i| shard.is_none() || self.keys[i].shard.as_deref() == shard)
            .map(|i| OfflineKey {
                name: self.keys[i].name.clone(),
                key_type: self.keys[i].key_type.clone(),
                bytes: self.memory_at(i, at),
                elements: self.size_at(i, at).max(0) as u64,
            })
            .collect()
    }

    /// Approximate memory held by the modelled keys, in bytes (for `used_memory`).
    pub fn approx_bytes(&self) -> u64 {
        self.keys
            .iter()
            .map(|k| match k.key_type {
                KeyType::String => k.base_size.max(0) as u64 + 50,
                _ => k.base_size.max(0) as u64 * 24 + 50,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(seed: u64, key_count: u64, cluster: bool) -> KeyspaceParams {
        KeyspaceParams {
            seed,
            key_count,
            shards: if cluster { 3 } else { 1 },
            cluster,
            lfu_log_factor: 10,
            drift_period: Duration::from_secs(300),
            size_period: Duration::from_secs(3600),
        }
    }

    #[test]
    fn lfu_counter_matches_the_redis_expectation() {
        // From 5, reaching 6 costs 1 access, 7 costs 1 + 11 = 12, 8 costs 12 + 21 = 33.
        assert_eq!(lfu_counter(0, 10), 5);
        assert_eq!(lfu_counter(1, 10), 6);
        assert_eq!(lfu_counter(11, 10), 6);
        assert_eq!(lfu_counter(12, 10), 7);
        assert_eq!(lfu_counter(33, 10), 8);
        // 255 needs 250 + 10*250*249/2 = 311_500 accesses; beyond that it saturates.
        assert_eq!(lfu_counter(311_499, 10), 254);
        assert_eq!(lfu_counter(311_500, 10), 255);
        assert_eq!(lfu_counter(u64::MAX, 10), 255);
        // Factor 0: one step per access.
        assert_eq!(lfu_counter(7, 0), 12);
    }

    #[test]
    fn crc16_matches_redis_cluster_test_vector() {
        // The Redis Cluster spec gives CRC16("123456789") = 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn same_seed_same_keys_different_seed_different_keys() {
        let at = datetime!(2024-05-01 12:00 UTC);
        let a = Keyspace::generate(params(7, 100_000, true));
        let b = Keyspace::generate(params(7, 100_000, true));
        let c = Keyspace::generate(params(8, 100_000, true));
        assert_eq!(a.hot_keys(at), b.hot_keys(at));
        assert_eq!(a.big_keys(at), b.big_keys(at));
        assert_ne!(a.hot_keys(at), c.hot_keys(at));
    }

    #[test]
    fn big_keys_respect_caps_thresholds_and_units() {
        let at = datetime!(2024-05-01 12:00 UTC);
        for seed in 0..5 {
            let ks = Keyspace::generate(params(seed, 5_000_000, seed % 2 == 0));
            let big = ks.big_keys(at);
            assert!(!big.is_empty());
            assert!(big.len() <= BIG_TOTAL);
            for t in ["string", "list", "set", "zset", "hash"] {
                let n = big
                    .iter()
                    .filter(|k| k.key_type.as_ref().map(|x| x.as_str()) == Some(t))
                    .count();
                assert!(n <= BIG_PER_TYPE, "{t}: {n}");
            }
            for k in &big {
                let size = k.size.unwrap_or(0);
                if k.key_type == Some(KeyType::String) {
                    assert_eq!(k.unit, Some(SizeUnit::Byte));
                    assert!(size > BIG_STRING_BYTES);
                } else {
                    assert_eq!(k.unit, Some(SizeUnit::Count));
                    assert!(size > BIG_ELEMENTS);
                }
                assert_eq!(k.freq, None);
                assert_eq!(k.shard.is_some(), seed % 2 == 0);
            }
        }
    }

    #[test]
    fn hot_keys_are_sorted_capped_and_drift() {
        let ks = Keyspace::generate(params(3, 1_000_000, false));
        let t0 = datetime!(2024-05-01 12:00 UTC);
        let hot = ks.hot_keys(t0);
        assert!(!hot.is_empty() && hot.len() <= HOT_MAX);
        assert!(hot
            .windows(2)
            .all(|w| w[0].freq.unwrap_or(0) >= w[1].freq.unwrap_or(0)));
        assert!(hot
            .iter()
            .all(|k| (HOT_MIN_FREQ..=255).contains(&k.freq.unwrap_or(0))));
        // Within one drift epoch the answer is stable; a few epochs later the top set moved.
        assert_eq!(hot, ks.hot_keys(t0 + time::Duration::seconds(60)));
        let later = ks.hot_keys(t0 + time::Duration::minutes(5));
        let top: HashSet<_> = hot.iter().take(10).map(|k| k.name.clone()).collect();
        let top_later: HashSet<_> = later.iter().take(10).map(|k| k.name.clone()).collect();
        assert_ne!(top, top_later);
        assert!(!top.is_disjoint(&top_later), "drift should be gradual");
    }

    #[test]
    fn tiny_and_empty_keyspaces_work() {
        let at = datetime!(2024-05-01 12:00 UTC);
        let empty = Keyspace::generate(params(1, 0, false));
        assert!(empty.is_empty());
        assert!(empty.hot_keys(at).is_empty());
        assert!(empty.big_keys(at).is_empty());
        let tiny = Keyspace::generate(params(1, 3, false));
        assert_eq!(tiny.len(), 3);
    }
}
