//! Failed attempts: timeouts, API errors, failed tasks, malformed answers and panics; the last
//! good result always stays.

use super::*;

#[tokio::test(start_paused = true)]
async fn stuck_task_times_out_and_failures_keep_the_last_result() {
    let mut h = Harness::new(30.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 1000.0, 10.0, ScanType::Manual);
    // A task that never ends.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 5.0, 1e9, ScanType::Manual);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 120))]);
    advance(130).await;
    let st = h.state("i1");
    assert_eq!(st.failures.get(&FailureReason::Timeout), Some(&1));
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(
        st.result.unwrap().task_id,
        "task-1",
        "the last good result stays"
    );
    assert!(st.running.is_none());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn api_errors_back_off_and_recover() {
    let mut h = Harness::new(10.0);
    for _ in 0..3 {
        h.fake
            .with(|s| s.errors.push_back(api_err(503, "DCS.5000")));
    }
    h.start(vec![instance("i1", settings(Mode::Trigger, 3600, 300))]);
    advance(2).await;
    assert_eq!(h.state("i1").consecutive_failures, 1);
    // Backoff: 2.5–5 s, then 5–10 s, then 10–20 s.
    advance(5).await;
    assert_eq!(h.state("i1").consecutive_failures, 2);
    advance(10).await;
    assert_eq!(h.state("i1").consecutive_failures, 3);
    advance(200).await;
    let st = h.state("i1");
    assert_eq!(st.failures[&FailureReason::ApiError], 3);
    assert_eq!(st.consecutive_failures, 0);
    assert!(st.result.is_some());
    h.stop().await;
}

/// ShowInstance retries 1 min (with jitter: 30–60 s) after the first failure, then 1–2 min,
/// as [`INFO_RETRY`] says; not 2 min after the first.
#[tokio::test(start_paused = true)]
async fn instance_details_retry_after_a_minute_then_back_off() {
    let mut h = Harness::new(10.0);
    h.fake.with(|s| s.show_errors = 2);
    h.start(vec![instance("i1", settings(Mode::Observe, 3600, 300))]);
    advance(29).await;
    assert_eq!(h.fake.count("show_instance"), 1, "no retry before 30 s");
    advance(31).await;
    assert_eq!(
        h.fake.count("show_instance"),
        2,
        "the first retry within a minute"
    );
    // The second retry comes 1–2 min after the first: between 90 s and 180 s.
    advance(29).await;
    assert_eq!(
        h.fake.count("show_instance"),
        2,
        "the second retry waits 1–2 min"
    );
    advance(92).await;
    assert_eq!(h.fake.count("show_instance"), 3);
    let status = h.store.read(|s| {
        s.instances
            .get("i1")
            .and_then(|i| i.info.as_ref())
            .and_then(|i| i.status.clone())
    });
    assert_eq!(status.as_deref(), Some("RUNNING"));
    h.stop().await;
}

/// A loop that panics is not lost: the supervisor names it, which fails readiness and the exit
/// code in the app, and shutdown still completes.
#[tokio::test(start_paused = true)]
async fn a_loop_that_panics_is_seen_by_the_supervisor() {
    let mut h = Harness::new(10.0);
    h.fake.with(|s| s.panic_on_list = true);
    // Hot keys panic on their first ListTasks; big keys are off, their loop is never a failure.
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    let failure = tokio::time::timeout(Duration::from_secs(600), h.supervisor.failed())
        .await
        .expect("the panic is seen");
    assert_eq!(failure.task, "analysis loop i1 hotkey");
    assert_eq!(
        failure.failure,
        crate::supervisor::Failure::Panicked("injected bug in ListTasks".into())
    );
    h.cancel.cancel();
    h.supervisor.close();
    tokio::time::timeout(Duration::from_secs(5), h.supervisor.wait())
        .await
        .expect("the other loops stop");
}

#[tokio::test(start_paused = true)]
async fn failed_task_is_counted_as_task_failed() {
    let mut h = Harness::new(10.0);
    h.fake.with(|s| s.fail_next = true);
    h.start(vec![instance("i1", settings(Mode::Trigger, 60, 30))]);
    advance(60).await;
    let st = h.state("i1");
    assert_eq!(st.failures.get(&FailureReason::TaskFailed), Some(&1));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_success_that_counts_keys_but_lists_none_keeps_the_last_keys() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(300).await;
    let good = h.state("i1").result.expect("published");
    assert_eq!(good.keys.len(), 2);

    // One instance starts at once: the next task (created at 600 s, done at 630 s) is
    // answered hollow at its poll; the retry comes 2.5–5 s later.
    h.fake.with(|s| s.hollow_shows = 1);
    advance(332).await;
    let st = h.state("i1");
    assert_eq!(st.failures.get(&FailureReason::ApiError), Some(&1));
    assert_eq!(
        st.result.as_deref(),
        Some(&*good),
        "the last good keys stay"
    );
    assert!(st
        .last_error
        .unwrap()
        .message
        .contains("succeeded with num 5 but lists no keys"));

    // The task itself did succeed: the retry lists it and publishes its keys.
    advance(10).await;
    let r = h.state("i1").result.unwrap();
    assert_ne!(r.task_id, good.task_id);
    assert_eq!(r.keys.len(), 2);
    h.stop().await;
}

/// The log line of a failed attempt says when the next attempt comes, and it comes then: one
/// interval after a timeout (asking again soon cannot make a stuck task finish), the backoff
/// after an API error.
#[tokio::test(start_paused = true)]
async fn the_retry_log_line_says_when_the_next_attempt_comes() {
    let logs = Logs::capture();
    let mut h = Harness::new(30.0);
    // A task that never ends, created 5 s before start: it times out 115 s after start.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 5.0, 1e9, ScanType::Manual);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 120))]);
    advance(130).await;
    let timed_out = h.state("i1").last_error.expect("a failure");
    assert_eq!(timed_out.reason, FailureReason::Timeout);
    // The next attempt's list call fails.
    h.fake
        .with(|s| s.errors.push_back(api_err(503, "DCS.5000")));
    advance(610).await;
    // Then the list adopts the stuck task again, which times out at once: a third line.
    let lines = logs.lines("analysis attempt failed");
    assert!(lines.len() >= 2, "{lines:#?}");
    assert_eq!(field(&lines[0], "reason"), "\"timeout\"");
    assert_eq!(field(&lines[1], "reason"), "\"api_error\"");
    let retry_in = |line: &str| {
        crate::config::duration::parse(field(line, "retry_in"))
            .unwrap()
            .as_secs_f64()
    };
    let lists: Vec<f64> = h
        .times("list")
        .into_iter()
        .filter(|t| *t > timed_out.at)
        .collect();
    assert!(lists.len() >= 2, "{lists:?}");
    // Logged to the millisecond (cut), and tokio's timers fire on the next millisecond.
    let after_timeout = lists[0] - timed_out.at;
    assert!(
        (after_timeout - retry_in(&lines[0])).abs() < 2e-3,
        "logged {} but came after {after_timeout} s",
        lines[0]
    );
    assert_eq!(after_timeout.round(), 600.0, "one interval later");
    let after_error = lists[1] - lists[0];
    assert!(
        (after_error - retry_in(&lines[1])).abs() < 2e-3,
        "logged {} but came after {after_error} s",
        lines[1]
    );
    // The second failure in a row: 5–10 s.
    assert!((5.0..=10.0).contains(&after_error), "{after_error}");
    h.stop().await;
}
