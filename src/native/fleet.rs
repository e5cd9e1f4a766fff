//! Native targets in a fleet of replicas: which ones this replica scans, and keeping a
//! target's state (task table, connections) across config reloads.
//!
//! Targets are split over replicas by the same `--shard.index/--shard.count` hash of the
//! `instance_id` as DCS instances. A replica started with `--analysis.observe-only` scans none
//! of them: observe mode means "never start an analysis", and a native target has no records
//! that someone else created to observe.

use std::sync::Arc;

use super::NativeTarget;
use crate::config::redis::RedisTarget;
use crate::dcs::Analysis;
use crate::fleet::FleetOptions;
use crate::metrics::store::Store;
use crate::scheduler::{Clock, NativePlan};

/// The targets for `config`, reusing the running one of each target whose settings did not
/// change (so that a reload neither restarts its scans nor drops its connections), or whose
/// connection settings did not: that one takes the new settings in place, and the scheduler
/// restarts only the analyses whose own settings changed.
pub fn reuse(
    running: &[Arc<NativeTarget>],
    config: &[RedisTarget],
    store: &Arc<Store>,
    clock: Clock,
) -> Vec<Arc<NativeTarget>> {
    config
        .iter()
        .map(|t| {
            if let Some(same) = running.iter().find(|r| *r.config() == *t) {
                return same.clone();
            }
            if let Some(kept) = running.iter().find(|r| r.connects_as(t)) {
                kept.update(t.clone());
                return kept.clone();
            }
            Arc::new(NativeTarget::new(t.clone(), store.clone(), clock))
        })
        .collect()
}

/// The targets this replica scans.
pub fn plan(targets: &[Arc<NativeTarget>], opts: &FleetOptions) -> Vec<NativePlan<NativeTarget>> {
    if opts.observe_only {
        return Vec::new();
    }
    targets
        .iter()
        .filter(|t| opts.shard.owns(&t.config().id))
        .map(|t| NativePlan {
            source: t.clone(),
            instance: t.config().instance(),
            extra: vec![(Analysis::Hotslot, t.config().hotslot)],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::fleet::Shard;

    fn targets(n: usize) -> Vec<RedisTarget> {
        let mut yaml = String::from("redis:\n");
        for i in 0..n {
            yaml.push_str(&format!("  - address: redis://10.0.0.{i}:6379\n"));
        }
        load_str(&yaml, "t.yml", None, &|_| None).unwrap().redis
    }

    #[test]
    fn replicas_split_targets_by_the_instance_hash_and_observe_only_scans_none() {
        let store = Arc::new(Store::new());
        let all = reuse(&[], &targets(40), &store, Clock::System);
        let mut seen = Vec::new();
        for index in 0..3 {
            let opts = FleetOptions {
                shard: Shard::new(index, 3).unwrap(),
                observe_only: false,
            };
            for p in plan(&all, &opts) {
                // The same owner as a DCS instance of that id.
                assert_eq!(crate::fleet::shard::owner(&p.instance.id, 3), index);
                seen.push(p.instance.id);
            }
        }
        seen.sort();
        let mut want: Vec<String> = all.iter().map(|t| t.config().id.clone()).collect();
        want.sort();
        assert_eq!(seen, want, "every target scanned by exactly one replica");
        let standby = FleetOptions {
            shard: Shard::default(),
            observe_only: true,
        };
        assert!(plan(&all, &standby).is_empty());
    }

    #[test]
    fn a_reload_keeps_each_target_and_replaces_only_a_new_connection() {
        let store = Arc::new(Store::new());
        let first = targets(3);
        let running = reuse(&[], &first, &store, Clock::System);
        let mut changed = first.clone();
        // Its name and hot key settings: the same target takes them in place.
        changed[1].name = Some("renamed".into());
        changed[1].hotkey.top_n += 1;
        // Another key budget (which its connections hold): a new target.
        changed[2].keys_per_second += 1;
        let next = reuse(&running, &changed, &store, Clock::System);
        assert!(Arc::ptr_eq(&running[0], &next[0]));
        assert!(Arc::ptr_eq(&running[1], &next[1]));
        assert_eq!(*next[1].config(), changed[1]);
        assert!(!Arc::ptr_eq(&running[2], &next[2]));
        assert_eq!(*next[2].config(), changed[2]);
        assert_eq!(
            *running[2].config(),
            first[2],
            "the old one is left as it was"
        );
    }
}
