//! The limit on DCS requests in flight (`api.max_concurrent_requests`), held per attempt.
//!
//! The scheduler owns the limit and runs each API call inside [`scope`]; the client takes one
//! permit of that scope for each attempt and gives it back before it backs off or retries. A
//! permit held through a whole call (every timeout, backoff and retry) let a few hung instances
//! hold every permit for minutes while healthy ones waited; per attempt (and permits go to
//! waiters in turn), a healthy call waits behind one attempt of each call queued before it. A call outside any scope (discovery, the
//! `check-config --online` probe, tests) is not limited.
//!
//! A scope may also carry a stop token ([`scope_until`]): once it fires, an attempt still
//! waiting for a permit is not sent, and a call backing off does not retry. A stopped analysis
//! loop therefore sends nothing more: without this, the calls of thousands of loops removed at
//! once (a discovery answer that shrank, a reload, a shutdown) queued for permits were still
//! sent, one after another, for minutes after their loops had stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Scope {
    permits: Arc<Semaphore>,
    stop: Option<CancellationToken>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// The scope's stop token fired: the call must send nothing more.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Runs `call` with its attempts limited by `permits`.
pub async fn scope<F: Future>(permits: Arc<Semaphore>, call: F) -> F::Output {
    SCOPE
        .scope(
            Scope {
                permits,
                stop: None,
            },
            call,
        )
        .await
}

/// Runs `call` with its attempts limited by `permits`, sending no further attempt once `stop`
/// fires (an attempt already sent is allowed to finish).
pub async fn scope_until<F: Future>(
    permits: Arc<Semaphore>,
    stop: CancellationToken,
    call: F,
) -> F::Output {
    let scope = Scope {
        permits,
        stop: Some(stop),
    };
    SCOPE.scope(scope, call).await
}

/// Whether the current scope's stop token has fired.
fn stopped(stop: Option<&CancellationToken>) -> bool {
    stop.is_some_and(CancellationToken::is_cancelled)
}

/// A permit for one attempt of the current scope; `Ok(None)` outside a scope, `Err` once the
/// scope is stopped (before or while waiting).
pub(crate) async fn acquire() -> Result<Option<OwnedSemaphorePermit>, Stopped> {
    let Ok(Scope { permits, stop }) = SCOPE.try_with(Clone::clone) else {
        return Ok(None);
    };
    if stopped(stop.as_ref()) {
        return Err(Stopped);
    }
    let Some(stop) = stop else {
        // The scheduler never closes its semaphore; if it ever is, the attempt goes unlimited.
        return Ok(permits.acquire_owned().await.ok());
    };
    tokio::select! {
        biased;
        () = stop.cancelled() => Err(Stopped),
        p = permits.acquire_owned() => Ok(p.ok()),
    }
}

/// Waits `delay` before a retry; `Err` (at once) when the current scope is stopped first.
pub(crate) async fn pause(delay: Duration) -> Result<(), Stopped> {
    let stop = SCOPE.try_with(|s| s.stop.clone()).ok().flatten();
    match stop {
        None => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
        Some(stop) => tokio::select! {
            biased;
            () = stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(delay) => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_take_a_permit_of_their_scope_only() {
        assert_eq!(
            acquire().await.map(|p| p.is_none()),
            Ok(true),
            "no scope, no limit"
        );
        let permits = Arc::new(Semaphore::new(2));
        scope(permits.clone(), async {
            let a = acquire().await.expect("not stopped").expect("a permit");
            assert_eq!(permits.available_permits(), 1);
            drop(a);
            assert_eq!(permits.available_permits(), 2);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_scope_sends_nothing_more() {
        let permits = Arc::new(Semaphore::new(1));
        let stop = CancellationToken::new();
        let held = permits.clone().acquire_owned().await.expect("open");
        let waiting = tokio::spawn(scope_until(permits.clone(), stop.clone(), async {
            let waited = acquire().await.map(|p| p.is_some());
            let paused = pause(Duration::from_secs(3600)).await;
            (waited, paused)
        }));
        tokio::task::yield_now().await;
        stop.cancel();
        // Stopped while waiting for the permit, and no backoff either: both end at once,
        // although the permit is still held and the pause is an hour long.
        let (waited, paused) = waiting.await.expect("joined");
        assert_eq!((waited, paused), (Err(Stopped), Err(Stopped)));
        drop(held);
        // Unstopped, a scope waits as before.
        let (waited, paused) = scope_until(permits, CancellationToken::new(), async {
            (
                acquire().await.map(|p| p.is_some()),
                pause(Duration::from_secs(1)).await,
            )
        })
        .await;
        assert_eq!((waited, paused), (Ok(true), Ok(())));
    }
}
