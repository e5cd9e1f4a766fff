//! Instance discovery: listing a project's instances with ListInstances and filtering them.
//!
//! [`list_all`] pages through ListInstances without trusting the order of the answers: it keeps
//! the first record of each instance id and stops on a short or empty page, once the offset
//! reaches `instance_num`, or after [`MAX_PAGES`] pages. [`matches()`] applies the `discovery:`
//! filters on the client side (the API has no engine filter, and its name filter is a substring
//! match). [`run_loop`] refreshes one cloud's listing on its interval and sends every successful
//! listing to the app, which merges it with the explicit instances and applies the plan; a failed
//! refresh sends nothing, so the previous instance set stays.
//!
//! Listing calls do not take the scheduler's request permits (`api.max_concurrent_requests`): a
//! refresh is one call per 1000 instances, made one after the other.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::FleetMetrics;
use crate::backoff::Backoff;
use crate::config::DiscoveryConfig;
use crate::dcs::{self, DcsApi, InstanceInfo, InstanceListQuery};

/// Instances asked for per ListInstances call: the documented maximum.
pub const PAGE_SIZE: u32 = 1000;
/// Pages read at most per listing (a guard against a server that never ends a listing).
pub const MAX_PAGES: usize = 1000;
/// First retry delay after a failed refresh; doubled per failure up to the refresh interval.
pub const RETRY_DELAY: Duration = Duration::from_secs(10);

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("ListInstances failed at offset {offset}: {source}")]
    Api {
        offset: u64,
        #[source]
        source: dcs::Error,
    },
    #[error("ListInstances did not end after {MAX_PAGES} pages")]
    TooManyPages,
}

/// Every instance of the project, each once, in the order first seen.
pub async fn list_all<C: DcsApi>(
    client: &C,
    page_size: u32,
) -> Result<Vec<InstanceInfo>, ListError> {
    let page_size = page_size.clamp(1, PAGE_SIZE);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut offset: u64 = 0;
    for _ in 0..MAX_PAGES {
        let query = InstanceListQuery {
            offset: Some(u32::try_from(offset).map_err(|_| ListError::TooManyPages)?),
            limit: Some(page_size),
            ..InstanceListQuery::default()
        };
        let page = client
            .list_instances(&query)
            .await
            .map_err(|source| ListError::Api { offset, source })?;
        let n = page.instances.len();
        for inst in page.instances {
            // Pages of a listing that changes underneath may overlap: keep the first copy.
            if !inst.instance_id.is_empty() && seen.insert(inst.instance_id.clone()) {
                out.push(inst);
            }
        }
        offset += n as u64;
        let total = page.instance_num.map(|t| u64::try_from(t).unwrap_or(0));
        if n == 0 || n < page_size as usize || total.is_some_and(|t| offset >= t) {
            return Ok(out);
        }
    }
    Err(ListError::TooManyPages)
}

/// Whether a listed instance passes a cloud's discovery filters. An empty `engine` or `status`
/// matches any.
pub fn matches(filter: &DiscoveryConfig, inst: &InstanceInfo) -> bool {
    let field = |want: &str, have: &Option<String>| {
        want.is_empty()
            || have
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(want))
    };
    field(&filter.engine, &inst.engine)
        && field(&filter.status, &inst.status)
        && filter
            .name_include
            .as_ref()
            .is_none_or(|r| r.is_match(&inst.name))
        && !filter
            .name_exclude
            .as_ref()
            .is_some_and(|r| r.is_match(&inst.name))
        && filter
            .tags
            .iter()
            .all(|(k, v)| inst.tags.iter().any(|t| &t.key == k && &t.value == v))
}

/// A successful listing of one discovery loop.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The loop that produced it (see [`super::Discoveries`]).
    pub source: u64,
    /// Every instance of the project, unfiltered.
    pub instances: Arc<Vec<InstanceInfo>>,
}

/// One cloud's discovery loop: lists at once, then every `refresh`; retries a failed listing
/// sooner ([`retry_backoff`]: up to 10 s, doubling up to `refresh`, with jitter). Ends when
/// `cancel` fires or the app is gone.
pub async fn run_loop<C: DcsApi>(
    source: u64,
    cloud: String,
    client: Arc<C>,
    refresh: Duration,
    metrics: FleetMetrics,
    tx: mpsc::Sender<Listing>,
    cancel: CancellationToken,
) {
    let backoff = retry_backoff(refresh);
    let mut rng = ChaCha8Rng::from_entropy();
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = list_all(&*client, PAGE_SIZE) => r,
        };
        let wait = match result {
            Ok(instances) => {
                if failures > 0 {
                    info!(
                        listed = instances.len(),
                        after_failures = failures,
                        "instance discovery works again"
                    );
                } else {
                    debug!(listed = instances.len(), "instances listed");
                }
                failures = 0;
                metrics.discovery_succeeded(&cloud);
                let listing = Listing {
                    source,
                    instances: Arc::new(instances),
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    sent = tx.send(listing) => if sent.is_err() { return },
                }
                refresh
            }
            Err(e) => {
                failures += 1;
                metrics.discovery_failed(&cloud);
                // Logged once per failure streak; the counter shows every one.
                if failures == 1 {
                    warn!(error = %format!("{e:#}"),
                        "instance discovery failed; keeping the previous instance set");
                } else {
                    debug!(error = %format!("{e:#}"), failures, "instance discovery failed again");
                }
                backoff.delay(failures - 1, &mut rng)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The backoff after failed listings: [`RETRY_DELAY`] doubling up to `refresh`, with equal
/// jitter, so the replicas of a fleet that failed together (an API outage) spread their
/// retries, yet never retry sooner than half the ceiling.
pub fn retry_backoff(refresh: Duration) -> Backoff {
    // `refresh` is at least 10 s in a validated config; a shorter one (tests) caps the base.
    let base = RETRY_DELAY.min(refresh);
    Backoff::new(base, refresh, Backoff::EQUAL_JITTER).unwrap_or(Backoff::fixed(
        RETRY_DELAY,
        RETRY_DELAY,
        Backoff::EQUAL_JITTER,
    ))
}

// Tests: `super::tests` (with a fake ListInstances), and tests/it/fleet.rs against the simulator.
