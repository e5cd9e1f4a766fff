//! The scheduler's own metrics, registered in the exposition's explicit registry:
//! - `{ns}_exporter_future_timestamps_total` (counter): task records DCS dated more than
//!   [`FUTURE_TOLERANCE`](super::analysis_loop::FUTURE_TOLERANCE) seconds later than this
//!   exporter's clock. Their times were replaced by the time the exporter saw them, so results
//!   and staleness alerts stay right; a rising count says a clock is off.

use prometheus::{IntCounter, Opts, Registry};

/// Handles to the scheduler metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    future_timestamps: IntCounter,
}

impl SchedulerMetrics {
    /// Creates the metrics under `namespace` and registers them in `registry`.
    pub fn register(registry: &Registry, namespace: &str) -> prometheus::Result<Self> {
        let future_timestamps = IntCounter::with_opts(
            Opts::new(
                "exporter_future_timestamps_total",
                "Task records DCS dated more than 60 s later than this exporter's clock; their \
                 times were replaced by the time the exporter saw them. Rising: the exporter's \
                 or DCS's clock is off.",
            )
            .namespace(namespace),
        )?;
        registry.register(Box::new(future_timestamps.clone()))?;
        Ok(SchedulerMetrics { future_timestamps })
    }

    /// Counts a task record dated in the future.
    pub fn future_timestamp(&self) {
        self.future_timestamps.inc();
    }

    /// The count so far (tests).
    pub fn future_timestamps(&self) -> u64 {
        self.future_timestamps.get()
    }
}
