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
use crate::fleet::FleetOptions;
use crate::metrics::store::Store;
use crate::scheduler::{Clock, NativePlan};

/// The targets for `config`, reusing the running one of each target whose settings did not
/// change (so that a reload neither restarts its scans nor drops its connections).
pub fn reuse(
    running: &[Arc<NativeTarget>],
    config: &[RedisTarget],
    store: &Arc<Store>,
    clock: Clock,
) -> Vec<Arc<NativeTarget>> {
    config
        .iter()
        .map(|t| {
            running
                .iter()
                .find(|r| r.config() == t)
                .cloned()
                .unwrap_or_else(|| Arc::new(NativeTarget::new(t.clone(), store.clone(), clock)))
        })
        .collect()
}

/// The targets this replica scans.
pub fn plan(targets: &[Arc<NativeTarget>], opts: &FleetOptions) -> Vec<NativePlan> {
    if opts.observe_only {
        return Vec::new();
    }
    targets
        .iter()
        .filter(|t| opts.shard.owns(&t.config().id))
        .map(|t| NativePlan {
            source: t.clone(),
            instance: t.config().instance(),
        })
        .collect()
}
