//! Supervised tasks: a task that panics, fails or stops too early is seen, not lost.
//!
//! A detached `tokio::spawn` whose handle nobody awaits loses a panic (tokio catches it and
//! only the default panic hook prints it), and a long-running task that returns early is not
//! noticed at all. A [`Supervisor`] spawns each long-running task under a name, catches its
//! panic, and turns every way it can end badly into a [`TaskFailure`]:
//!
//! - it panics ([`Failure::Panicked`], with the panic message);
//! - it returns an error ([`Failure::Failed`]);
//! - it is a service ([`Supervisor::spawn_service`]) and returns before its token is cancelled
//!   ([`Failure::Stopped`]): the HTTP server, for example, must serve until shutdown.
//!
//! Each failure is logged at error level with the task's name; the first one is kept, and
//! [`Supervisor::failed`] wakes up for it. The exporter (`app`) answers with `/-/ready`
//! 503, an orderly shutdown and exit code 1, so an orchestrator restarts it instead of leaving a
//! process that serves stale metrics for ever.
//!
//! Clones share the same tasks and the same failure; the binary spawns its own tasks (signal
//! handling, the demo simulator) into the supervisor it then hands to `app::run`. The
//! tasks are tracked in a [`TaskTracker`], so shutdown can wait for them.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a supervised task ended badly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("panicked: {0}")]
    Panicked(String),
    #[error("failed: {0}")]
    Failed(String),
    #[error("stopped before it was asked to")]
    Stopped,
}

/// A supervised task that ended badly, by name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task `{task}` {failure}")]
pub struct TaskFailure {
    pub task: Cow<'static, str>,
    pub failure: Failure,
}

/// What a supervised task returns: `()`, or a `Result` whose error is a failure.
pub trait TaskOutput {
    /// The error message, if the task failed.
    fn into_error(self) -> Option<String>;
}

impl TaskOutput for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display> TaskOutput for Result<(), E> {
    fn into_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Spawns named tasks, catches their panics and keeps the first failure. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    tracker: TaskTracker,
    failure: Arc<watch::Sender<Option<TaskFailure>>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("tasks", &self.tracker.len())
            .field("failure", &*self.failure.borrow())
            .finish()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            tracker: TaskTracker::new(),
            failure: Arc::new(watch::Sender::new(None)),
        }
    }

    /// A supervisor with its own tracker (closed and waited for apart from this one) whose
    /// failures count as this one's: for a group of tasks that stops first at shutdown.
    pub fn child(&self) -> Supervisor {
        Supervisor {
            tracker: TaskTracker::new(),
            failure: self.failure.clone(),
        }
    }

    /// Spawns a task that may end whenever it is done; a panic or an error is a failure.
    pub fn spawn<F>(&self, task: impl Into<Cow<'static, str>>, fut: F) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.supervise(task.into(), None, fut)
    }

    /// Spawns a service: a task meant to run until `until` is cancelled. Ending earlier, even
    /// without an error, is a failure too.
    pub fn spawn_service<F>(
        &self,
        task: impl Into<Cow<'static, str>>,
        until: CancellationToken,
        fut: F,
    ) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.supervise(task.into(), Some(until), fut)
    }

    fn supervise<F>(
        &self,
        task: Cow<'static, str>,
        until: Option<CancellationToken>,
        fut: F,
    ) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let this = self.clone();
        self.tracker.spawn(async move {
            // The task's state is dropped with it after a panic, and nothing else sees it.
            let failure = match AssertUnwindSafe(fut).catch_unwind().await {
                Err(payload) => Some(Failure::Panicked(panic_message(payload.as_ref()))),
                Ok(output) => match output.into_error() {
                    Some(e) => Some(Failure::Failed(e)),
                    None if until.as_ref().is_some_and(|t| !t.is_cancelled()) => {
                        Some(Failure::Stopped)
                    }
                    None => None,
                },
            };
            if let Some(failure) = failure {
                this.report(TaskFailure { task, failure });
            }
        })
    }

    /// Logs a failure and keeps it if it is the first.
    fn report(&self, f: TaskFailure) {
        tracing::error!(task = %f.task, error = %f.failure, "supervised task failed");
        self.failure.send_if_modified(|first| {
            if first.is_none() {
                *first = Some(f);
                true
            } else {
                false
            }
        });
    }

    /// The first failure so far.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.failure.borrow().clone()
    }

    /// Waits for the first failure (returns at once if there was one already).
    pub async fn failed(&self) -> TaskFailure {
        let mut rx = self.failure.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            // The sender lives as long as `self`, so `changed` cannot fail; if it ever did, no
            // failure could be reported any more.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The tracker the tasks run in.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// No more tasks are expected: [`Supervisor::wait`] returns once the running ones end.
    pub fn close(&self) {
        self.tracker.close();
    }

    /// Waits until closed and every task has ended.
    pub async fn wait(&self) {
        self.tracker.wait().await
    }
}

/// The message of a panic: its `&str` or `String` payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// Panics with `message`; typed `()` so that a task calling it last returns `()`.
    pub(crate) fn bug(message: &str) {
        panic!("{message}")
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_caught_named_and_kept() {
        let s = Supervisor::new();
        s.spawn("worker", async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            bug("index out of bounds");
        });
        assert_eq!(s.failure(), None);
        let f = s.failed().await;
        assert_eq!(
            f,
            TaskFailure {
                task: "worker".into(),
                failure: Failure::Panicked("index out of bounds".into()),
            }
        );
        assert_eq!(f.to_string(), "task `worker` panicked: index out of bounds");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_a_failure_and_the_first_one_is_kept() {
        let s = Supervisor::new();
        let first = s.spawn("first", async {
            Err::<(), _>(std::io::Error::other("disk on fire"))
        });
        first.await.expect("the wrapper never panics");
        let n = 7;
        s.spawn("second", async move { bug(&format!("second failure {n}")) })
            .await
            .expect("the wrapper never panics");
        assert_eq!(
            s.failure(),
            Some(TaskFailure {
                task: "first".into(),
                failure: Failure::Failed("disk on fire".into()),
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_returns_before_its_token_is_a_failure() {
        let s = Supervisor::new();
        let token = CancellationToken::new();
        s.spawn_service("server", token.clone(), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let f = s.failed().await;
        assert_eq!(f.task, "server");
        assert_eq!(f.failure, Failure::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_has_its_own_tasks_and_reports_to_its_parent() {
        let parent = Supervisor::new();
        let token = CancellationToken::new();
        let t = token.clone();
        parent.spawn_service("long", token.clone(), async move { t.cancelled().await });
        let child = parent.child();
        child.spawn("short", async { Err::<(), _>("no luck") });
        child.close();
        child.wait().await;
        assert_eq!(parent.failed().await.task, "short");
        assert_eq!(parent.tracker().len(), 1, "the parent's task still runs");
        token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_end_as_asked_are_no_failure() {
        let s = Supervisor::new();
        let token = CancellationToken::new();
        let t = token.clone();
        s.spawn_service("server", token.clone(), async move { t.cancelled().await });
        s.spawn("job", async { Ok::<(), std::io::Error>(()) });
        s.spawn("unit job", async {});
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
        s.close();
        s.wait().await;
        assert_eq!(s.failure(), None);
    }
}
