//! The exporter's own metrics about its DCS API calls.
//!
//! `dcs_api_requests_total{operation,code}` and `dcs_api_request_duration_seconds{operation}`,
//! registered in an explicit registry (never the global one). The client records every attempt,
//! retries included.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Handles to the API request metrics; cheap to clone.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl ApiMetrics {
    /// Creates the metrics under `namespace` and registers them in `registry`.
    pub fn register(registry: &Registry, namespace: &str) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "api_requests_total",
                "DCS API requests sent by this exporter, retries included, by SDK operation name \
                 and HTTP status code (\"error\" when no response was received).",
            )
            .namespace(namespace),
            &["operation", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "api_request_duration_seconds",
                "Latency of DCS API requests sent by this exporter, by SDK operation name.",
            )
            .namespace(namespace)
            .buckets(vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["operation"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(ApiMetrics { requests, duration })
    }

    /// Records one attempt. `code` is the HTTP status, or `None` for a transport failure.
    pub fn observe(&self, operation: &str, code: Option<u16>, seconds: f64) {
        let code = code.map(|c| c.to_string());
        self.requests
            .with_label_values(&[operation, code.as_deref().unwrap_or("error")])
            .inc();
        self.duration
            .with_label_values(&[operation])
            .observe(seconds);
    }
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiMetrics")
    }
}
