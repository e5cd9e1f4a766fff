//! The exporter's own metrics about discovery and sharding, registered in the exposition's
//! explicit registry:
//! - `{ns}_discovery_errors_total{cloud}` (counter): failed discovery refreshes.
//! - `{ns}_discovery_instances{cloud}` (gauge): instances discovery found, after its filters and
//!   before sharding.
//! - `{ns}_discovery_last_success_timestamp_seconds{cloud}` (gauge): the last listing that
//!   worked, Unix seconds.
//! - `{ns}_exporter_shard_instances{shard_index, shard_count}` (gauge): instances this replica
//!   analyses (explicit and discovered, after sharding).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::shard::Shard;

/// Handles to the fleet metrics; cheap to clone.
#[derive(Clone)]
pub struct FleetMetrics {
    errors: IntCounterVec,
    discovered: IntGaugeVec,
    last_success: GaugeVec,
    shard_instances: IntGauge,
    /// Clouds with series, so that removed clouds' series can be dropped.
    clouds: Arc<Mutex<BTreeSet<String>>>,
}

impl FleetMetrics {
    /// Creates the metrics under `namespace` and registers them in `registry`.
    pub fn register(
        registry: &Registry,
        namespace: &str,
        shard: Shard,
    ) -> prometheus::Result<Self> {
        let errors = IntCounterVec::new(
            Opts::new(
                "discovery_errors_total",
                "Instance discovery refreshes (ListInstances over all pages) that failed; the \
                 previous instance set is kept.",
            )
            .namespace(namespace),
            &["cloud"],
        )?;
        let discovered = IntGaugeVec::new(
            Opts::new(
                "discovery_instances",
                "Instances found by discovery in the last successful refresh, after the \
                 discovery filters and before sharding.",
            )
            .namespace(namespace),
            &["cloud"],
        )?;
        let last_success = GaugeVec::new(
            Opts::new(
                "discovery_last_success_timestamp_seconds",
                "When instance discovery last listed the cloud's instances successfully, in \
                 Unix seconds.",
            )
            .namespace(namespace),
            &["cloud"],
        )?;
        let shard_instances = IntGauge::with_opts(
            Opts::new(
                "exporter_shard_instances",
                "Instances this replica analyses: explicit and discovered, after sharding.",
            )
            .namespace(namespace)
            .const_label("shard_index", shard.index().to_string())
            .const_label("shard_count", shard.count().to_string()),
        )?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(discovered.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(shard_instances.clone()))?;
        Ok(FleetMetrics {
            errors,
            discovered,
            last_success,
            shard_instances,
            clouds: Arc::default(),
        })
    }

    /// Counts a failed refresh of `cloud`.
    pub fn discovery_failed(&self, cloud: &str) {
        self.errors.with_label_values(&[cloud]).inc();
    }

    /// Records a successful refresh of `cloud` now; makes its error counter visible at 0.
    pub fn discovery_succeeded(&self, cloud: &str) {
        self.errors.with_label_values(&[cloud]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.with_label_values(&[cloud]).set(now);
    }

    /// Sets the instances discovery found in `cloud` (after its filters).
    pub fn set_discovered(&self, cloud: &str, n: usize) {
        self.discovered
            .with_label_values(&[cloud])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Drops the series of clouds that no longer run discovery.
    pub fn retain_clouds(&self, keep: &[&str]) {
        let mut clouds = self.clouds.lock().unwrap_or_else(|e| e.into_inner());
        clouds.retain(|cloud| {
            let kept = keep.contains(&cloud.as_str());
            if !kept {
                let _ = self.errors.remove_label_values(&[cloud]);
                let _ = self.discovered.remove_label_values(&[cloud]);
                let _ = self.last_success.remove_label_values(&[cloud]);
            }
            kept
        });
        clouds.extend(keep.iter().map(|c| (*c).to_owned()));
    }

    /// Sets the number of instances this replica analyses.
    pub fn set_shard_instances(&self, n: usize) {
        self.shard_instances
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

impl std::fmt::Debug for FleetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetMetrics")
    }
}
