//! The instance sets of `--demo` and `simulate --instances=N`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::state::uuid_from;
use super::{Faults, SimConfig, SimInstance};

fn spec_code(mode: &str, capacity_mb: u64, shards: u32) -> String {
    let gb = (capacity_mb / 1024).max(1);
    match mode {
        "single" => format!("redis.single.xu1.large.{gb}"),
        "cluster" => format!("redis.cluster.xu1.large.shard.{shards}.{gb}"),
        _ => format!("redis.ha.xu1.large.r2.{gb}"),
    }
}

#[allow(clippy::too_many_arguments)] // a private table-row helper
fn instance(
    id: &str,
    name: &str,
    version: &str,
    mode: &str,
    shards: u32,
    policy: &str,
    keys: u64,
    capacity_mb: u64,
) -> SimInstance {
    SimInstance {
        engine_version: version.into(),
        cache_mode: mode.into(),
        shards,
        maxmemory_policy: policy.into(),
        key_count: keys,
        spec_code: spec_code(mode, capacity_mb, shards),
        capacity_mb,
        ..SimInstance::new(id, name)
    }
}

/// Five varied instances and task durations of a few seconds.
pub fn demo() -> SimConfig {
    let mut orders = instance(
        "6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a01",
        "orders-cluster",
        "6.0",
        "cluster",
        3,
        "allkeys-lfu",
        2_000_000,
        24 * 1024,
    );
    orders.tags = vec![
        ("env".into(), "demo".into()),
        ("team".into(), "orders".into()),
    ];
    let mut sessions = instance(
        "6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a02",
        "sessions-ha",
        "5.0",
        "ha",
        1,
        "volatile-lfu",
        500_000,
        8 * 1024,
    );
    sessions.tags = vec![
        ("env".into(), "demo".into()),
        ("team".into(), "identity".into()),
    ];
    let mut cache = instance(
        "6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a03",
        "page-cache-single",
        "6.0",
        "single",
        1,
        "allkeys-lfu",
        50_000,
        2 * 1024,
    );
    cache.tags = vec![("env".into(), "demo".into()), ("team".into(), "web".into())];
    let mut legacy = instance(
        "6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a04",
        "legacy-redis30",
        "3.0",
        "ha",
        1,
        "volatile-lru",
        200_000,
        4 * 1024,
    );
    legacy.tags = vec![
        ("env".into(), "demo".into()),
        ("team".into(), "legacy".into()),
    ];
    let mut flaky = instance(
        "6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a05",
        "batch-flaky",
        "5.0",
        "ha",
        1,
        "allkeys-lfu",
        300_000,
        4 * 1024,
    );
    flaky.tags = vec![
        ("env".into(), "demo".into()),
        ("team".into(), "batch".into()),
    ];
    flaky.faults = Faults {
        fail_tasks: 0.3,
        ..Faults::default()
    };
    SimConfig {
        seed: 42,
        instances: vec![orders, sessions, cache, legacy, flaky],
        time_scale: 0.05,
        ..SimConfig::with_defaults()
    }
}

const TEAMS: [&str; 6] = ["orders", "payments", "search", "identity", "catalog", "ads"];
const PURPOSES: [&str; 5] = ["cache", "sessions", "queue", "ranking", "ratelimit"];

/// `n` instances drawn from `seed`: mixed modes, versions and policies (about one in eight
/// refuses hot key analysis), key counts from a thousand to five million, all `RUNNING`.
pub fn generated(seed: u64, n: usize) -> SimConfig {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4745_4e45_5241_5445);
    let instances = (0..n)
        .map(|i| {
            let mode = match rng.gen_range(0..10) {
                0..=1 => "single",
                2..=6 => "ha",
                _ => "cluster",
            };
            let shards = if mode == "cluster" {
                rng.gen_range(3..=8)
            } else {
                1
            };
            let version = ["4.0", "5.0", "6.0", "6.0", "7.0"][rng.gen_range(0..5)];
            let (version, policy) = match rng.gen_range(0..16) {
                0 => ("3.0", "volatile-lru"),
                1 => (version, "allkeys-lru"),
                2..=9 => (version, "allkeys-lfu"),
                _ => (version, "volatile-lfu"),
            };
            let keys = 10f64.powf(rng.gen_range(3.0..6.7)) as u64;
            let capacity_mb = [1024, 2048, 4096, 8192, 16384, 32768][rng.gen_range(0..6)];
            let team = TEAMS[rng.gen_range(0..TEAMS.len())];
            let purpose = PURPOSES[rng.gen_range(0..PURPOSES.len())];
            let env = if rng.gen_range(0..4) == 0 {
                "staging"
            } else {
                "prod"
            };
            let id = uuid_from(&mut rng);
            let name = format!("{env}-{team}-{purpose}-{i:03}");
            let mut inst = instance(&id, &name, version, mode, shards, policy, keys, capacity_mb);
            inst.tags = vec![("env".into(), env.into()), ("team".into(), team.into())];
            inst
        })
        .collect();
    SimConfig {
        seed,
        instances,
        ..SimConfig::with_defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::state::hotkey_supported;

    #[test]
    fn demo_covers_the_documented_cases() {
        let d = demo();
        let modes: Vec<_> = d.instances.iter().map(|i| i.cache_mode.as_str()).collect();
        assert!(modes.contains(&"cluster") && modes.contains(&"ha") && modes.contains(&"single"));
        assert!(d.instances.iter().any(|i| !hotkey_supported(i)));
        assert!(d.instances.iter().any(|i| i.faults.fail_tasks > 0.0));
        assert!(d.time_scale < 0.1);
    }

    #[test]
    fn generated_is_deterministic_and_unique() {
        let a = generated(9, 50);
        let b = generated(9, 50);
        assert_eq!(a.instances.len(), 50);
        let ids: Vec<_> = a.instances.iter().map(|i| i.id.clone()).collect();
        let ids_b: Vec<_> = b.instances.iter().map(|i| i.id.clone()).collect();
        assert_eq!(ids, ids_b);
        let mut dedup = ids.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 50);
        assert!(a.instances.iter().all(|i| i.status == "RUNNING"));
    }
}
