//! The threads native scans run on.
//!
//! Every scan, and the I/O of every connection to a Redis node (a connection's driver task
//! lives on the runtime that made it), runs on a Tokio runtime of its own, on threads named
//! [`THREAD_NAME`], not on the runtime that serves scrapes and calls DCS.
//!
//! On Linux these threads are scheduled `SCHED_BATCH` (sched(7)): the kernel treats them as
//! background work and does not let them preempt a running thread when they wake up. A scan
//! at the default throttle wakes up about a thousand times a second (each batch's answer, each
//! pause of the budget); when the exporter shares a host with the server it analyses (a
//! sidecar, the same VM), each of those wake-ups used to preempt the server or its clients
//! for a moment, which showed in their p99 latency (BENCHMARKS.md, "Redis and Valkey
//! targets"). The nice value is left as it is. On a host with no idle CPU a scan then runs
//! below its `keys_per_second` budget rather than take CPU from the server.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

/// The name of the scan threads (`ps -L`, `top -H`).
pub const THREAD_NAME: &str = "redis-scan";

/// The scan runtime, started on first use; `None` if its threads could not be started, in
/// which case scans run on the caller's runtime.
static SCANS: OnceLock<Option<Runtime>> = OnceLock::new();

fn handle() -> Handle {
    let scans = SCANS.get_or_init(|| {
        match Builder::new_multi_thread()
            .thread_name(THREAD_NAME)
            .enable_all()
            .on_thread_start(background)
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                warn!(error = %e, "cannot start the scan threads; scans share the exporter's threads");
                None
            }
        }
    });
    match scans {
        Some(rt) => rt.handle().clone(),
        None => Handle::current(),
    }
}

/// Whether the caller runs where scans belong: on a scan thread, or anywhere when the scan
/// threads could not be started. For `debug_assert!`s at the places that must run there.
pub fn on_scan_threads() -> bool {
    std::thread::current().name() == Some(THREAD_NAME) || matches!(SCANS.get(), Some(None))
}

/// Starts `fut` on the scan threads.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}

/// Runs `fut` on the scan threads and waits for it. Dropping the returned future stops `fut`
/// (a loop that is cancelled stops its work there too); a panic in `fut` goes on here.
pub async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match AbortOnDropHandle::new(spawn(fut)).await {
        Ok(out) => out,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only this function's handle could cancel the task, and it is not dropped yet;
            // the runtime lives as long as the process.
            Err(e) => panic!("a scan task was cancelled from elsewhere: {e}"),
        },
    }
}

/// Marks the calling thread as background work (`SCHED_BATCH`, nice value unchanged).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn background() {
    // SAFETY: `sched_param` is a plain C struct, valid when zeroed (priority 0, the only one
    // `SCHED_BATCH` accepts). `sched_setscheduler` reads it during the call only; pid 0 is the
    // calling thread. Moving from `SCHED_OTHER` to `SCHED_BATCH` needs no privilege.
    let failed = unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) != 0
    };
    // Said once, not once per thread (a seccomp profile refuses it on every thread alike).
    static SAID: std::sync::Once = std::sync::Once::new();
    if failed {
        let e = std::io::Error::last_os_error();
        SAID.call_once(|| {
            warn!(error = %e,
                "cannot mark the scan threads as background work (SCHED_BATCH); they keep the default policy");
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn background() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's scheduling policy and nice value, as the kernel reports them
    /// (`/proc/thread-self/stat`, fields 19 and 41).
    #[cfg(target_os = "linux")]
    fn policy_and_nice() -> (u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (rest[41 - 3].parse().unwrap(), rest[19 - 3].parse().unwrap())
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn scans_run_on_background_threads_of_their_own() {
        const SCHED_OTHER: u32 = 0;
        const SCHED_BATCH: u32 = 3;
        let here = policy_and_nice();
        assert_eq!(here.0, SCHED_OTHER, "the test's own thread is a normal one");
        let (name, (policy, nice)) = run(async {
            let name = std::thread::current().name().map(str::to_owned);
            (name, policy_and_nice())
        })
        .await;
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        assert!(
            !on_scan_threads(),
            "the test's own thread is not a scan thread"
        );
        assert!(run(async { on_scan_threads() }).await);
        assert_eq!(policy, SCHED_BATCH);
        assert_eq!(nice, here.1, "the nice value is left as it is");
    }

    #[tokio::test]
    async fn dropping_the_caller_stops_the_scan() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let waiting = run(async move {
            let _tx = tx; // dropped (closing `rx`) only when this task stops
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        });
        let caller = tokio::spawn(waiting);
        started.await.unwrap();
        caller.abort();
        // The channel closes only if the task on the scan threads was stopped.
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn a_panic_on_the_scan_threads_reaches_the_caller() {
        let r = tokio::spawn(run(async { panic!("boom") })).await;
        let panic = r.unwrap_err().into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    }
}
