//! The limit on DCS requests in flight (`api.max_concurrent_requests`), held per attempt.
//!
//! The scheduler owns the limit and runs each API call inside [`scope`]; the client takes one
//! permit of that scope for each attempt and gives it back before it backs off or retries. A
//! permit held through a whole call (every timeout, backoff and retry) let a few hung instances
//! hold every permit for minutes while healthy ones waited; per attempt (and permits go to
//! waiters in turn), a healthy call waits behind one attempt of each call queued before it. A call outside any scope (discovery, the
//! `check-config --online` probe, tests) is not limited.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static PERMITS: Arc<Semaphore>;
}

/// Runs `call` with its attempts limited by `permits`.
pub async fn scope<F: Future>(permits: Arc<Semaphore>, call: F) -> F::Output {
    PERMITS.scope(permits, call).await
}

/// A permit for one attempt of the current scope; `None` outside a scope.
pub(crate) async fn acquire() -> Option<OwnedSemaphorePermit> {
    let permits = PERMITS.try_with(Arc::clone).ok()?;
    // The scheduler never closes its semaphore; if it ever is, the attempt goes unlimited.
    permits.acquire_owned().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_take_a_permit_of_their_scope_only() {
        assert!(acquire().await.is_none(), "no scope, no limit");
        let permits = Arc::new(Semaphore::new(2));
        scope(permits.clone(), async {
            let a = acquire().await.expect("a permit");
            assert_eq!(permits.available_permits(), 1);
            drop(a);
            assert_eq!(permits.available_permits(), 2);
        })
        .await;
    }
}
