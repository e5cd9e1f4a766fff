//! The loop that keeps one DCS instance's details current (`dcs_instance_info`: engine,
//! version, spec, status), unless discovery already lists them; it adopts the instance's DCS
//! name when none is configured.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dcs::DcsApi;
use crate::metrics::store::Store;

/// How often instance details are refreshed.
pub const INFO_REFRESH: Duration = Duration::from_secs(3600);

/// Retries of a failed ShowInstance: 1 min, 2 min, 4 min … up to [`INFO_REFRESH`], equal
/// jitter so the instances of a cloud that failed together do not retry together.
pub const INFO_RETRY: crate::backoff::Backoff = crate::backoff::Backoff::fixed(
    Duration::from_secs(60),
    INFO_REFRESH,
    crate::backoff::Backoff::EQUAL_JITTER,
);

/// Keeps one instance's details current; adopts its DCS name when none is configured.
pub(super) async fn info_loop<C: DcsApi>(
    client: Arc<C>,
    store: Arc<Store>,
    limiter: Arc<Semaphore>,
    id: String,
    use_dcs_name: bool,
    seed: Option<u64>,
    cancel: CancellationToken,
) {
    let mut rng = match seed {
        Some(s) => ChaCha8Rng::seed_from_u64(s),
        None => ChaCha8Rng::from_entropy(),
    };
    let mut failures = 0u32;
    let mut loaded = false;
    loop {
        // Boxed: the request future is large and only alive during the call (one of these
        // loops sleeps for each instance). Its attempts take the limiter's permits.
        let result = Box::pin(crate::dcs::limit::scope_until(
            limiter.clone(),
            cancel.clone(),
            client.show_instance(&id),
        ))
        .await;
        if cancel.is_cancelled() {
            return;
        }
        let wait = match result {
            Ok(info) => {
                failures = 0;
                if use_dcs_name && !info.name.is_empty() {
                    store.rename(&id, &info.name);
                }
                if !loaded {
                    loaded = true;
                    info!(name = %info.name, status = info.status.as_deref().unwrap_or("?"),
                        "instance details loaded");
                }
                store.set_instance_info(&id, info);
                INFO_REFRESH
            }
            Err(e) => {
                warn!(error = %e, "cannot load instance details");
                let wait = INFO_RETRY.delay(failures, &mut rng);
                failures = failures.saturating_add(1);
                wait
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
