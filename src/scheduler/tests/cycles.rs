//! Creating, polling and adopting tasks: the calls a cycle makes, in `trigger` and `observe`
//! mode.

use super::*;

#[tokio::test(start_paused = true)]
async fn trigger_creates_polls_and_publishes_with_few_calls() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    // Start jitter is at most min(interval, 5m)/2 = 150 s; the task takes 30 s.
    advance(150 + 30 + 30).await;
    let st = h.state("i1");
    let r = st.result.expect("published");
    assert_eq!(r.task_id, "task-1");
    // top_n = 2 of the 3 keys, ranked by freq: key2 (103) then key1 (102).
    let names: Vec<_> = r.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["task-1:key2", "task-1:key1"]);
    assert_eq!(r.key_count, 3);
    assert_eq!(st.tasks_created, 1);
    assert_eq!(h.fake.count("create"), 1);

    // The second cycle knows the task takes 30 s: one poll at the expected end. Hot key
    // analyses list before every create (no DCS.4918 guard is documented for them).
    let before = h.fake.with(|s| s.calls.len());
    advance(600).await;
    let calls: Vec<_> = h.fake.with(|s| s.calls[before..].to_vec());
    assert_eq!(
        calls,
        ["list", "create", "show"],
        "one poll at the expected end"
    );
    assert_eq!(h.state("i1").result.unwrap().task_id, "task-2");
    assert_eq!(h.store.read(|s| s.instances["i1"].name.clone()), "name-i1");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn clean_big_key_cycles_skip_the_list_but_list_again_within_the_limit() {
    let mut h = Harness::new(30.0);
    h.start(vec![bigkey_instance(
        "i1",
        settings(Mode::Trigger, 600, 300),
    )]);
    advance(150 + 30 + 30).await;
    assert_eq!(h.fake.count("create"), 1);
    let before = h.fake.with(|s| s.calls.len());
    // MAX_UNLISTED_CYCLES cycles without a list, then one with it; one task per interval
    // (the cadence counts from each task's creation, not its end).
    let cycles = analysis_loop::MAX_UNLISTED_CYCLES as usize + 1;
    advance(600 * cycles as u64).await;
    let calls: Vec<_> = h.fake.with(|s| s.calls[before..].to_vec());
    let mut expected = Vec::new();
    for _ in 0..analysis_loop::MAX_UNLISTED_CYCLES {
        expected.extend(["create", "show"]);
    }
    expected.extend(["list", "create", "show"]);
    assert_eq!(calls, expected);
    assert_eq!(h.fake.count("create"), 1 + cycles);
    let st = h.store.analysis_state("i1", Analysis::Bigkey).unwrap();
    assert_eq!(st.tasks_created, 1 + cycles as u64);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_started_elsewhere_during_unlisted_cycles_is_adopted() {
    let mut h = Harness::new(30.0);
    h.start(vec![bigkey_instance(
        "i1",
        settings(Mode::Trigger, 600, 300),
    )]);
    advance(150 + 30 + 30).await;
    assert_eq!(h.fake.count("create"), 1);
    // The next cycle creates without listing; someone else's task makes the create fail with
    // DCS.4918, and the loop lists and adopts it instead of piling up another.
    h.fake.with(|s| s.race_on_create = true);
    advance(600).await;
    let st = h.store.analysis_state("i1", Analysis::Bigkey).unwrap();
    assert_eq!(st.tasks_adopted, 1);
    assert_eq!(st.tasks_created, 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_publishes_existing_result_first_and_creates_no_duplicate() {
    let mut h = Harness::new(30.0);
    // A result that finished 100 s before start, and nothing running.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 200.0, 100.0, ScanType::Manual);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let st = h.state("i1");
    assert_eq!(st.result.expect("published at once").task_id, "task-1");
    let calls: Vec<_> = h.fake.with(|s| s.calls.clone());
    let analysis_calls: Vec<_> = calls
        .into_iter()
        .filter(|c| *c != "show_instance")
        .collect();
    assert_eq!(
        analysis_calls,
        ["list", "show"],
        "only the existing result was fetched"
    );
    // The result is 100 s old: the next task is due 500 s later, not before.
    advance(480).await;
    assert_eq!(h.fake.count("create"), 0);
    advance(60).await;
    assert_eq!(h.fake.count("create"), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn running_task_is_adopted_not_duplicated() {
    let mut h = Harness::new(30.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 10.0, 50.0, ScanType::Auto);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let st = h.state("i1");
    assert_eq!(st.running.as_ref().map(|r| r.id.as_str()), Some("task-1"));
    assert_eq!(st.tasks_adopted, 1);
    advance(60).await;
    let st = h.state("i1");
    assert!(st.running.is_none());
    assert_eq!(st.result.unwrap().task_id, "task-1");
    assert_eq!(st.tasks_adopted, 1, "the adopted task is counted once");
    assert_eq!(h.fake.count("create"), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn already_running_on_create_adopts_the_running_task() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    // Someone starts a task between our list and our create: the list sees nothing, the
    // create gets DCS.4918, and the second list finds the task.
    h.fake.with(|s| s.race_on_create = true);
    advance(200).await;
    assert_eq!(
        h.fake.count("create"),
        1,
        "create was tried once and refused"
    );
    let st = h.state("i1");
    assert_eq!(st.tasks_adopted, 1);
    assert_eq!(st.tasks_created, 0);
    assert_eq!(st.running.as_ref().map(|r| r.id.as_str()), Some("task-1"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn observe_mode_never_creates_and_ingests_newer_records() {
    let mut h = Harness::new(30.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 500.0, 20.0, ScanType::Auto);
    h.start(vec![instance("i1", settings(Mode::Observe, 60, 30))]);
    advance(1).await;
    assert_eq!(h.state("i1").result.unwrap().task_id, "task-1");
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 + 10.0, 20.0, ScanType::Auto);
    advance(120).await;
    let st = h.state("i1");
    assert_eq!(st.result.unwrap().task_id, "task-2");
    assert_eq!(st.tasks_adopted, 2);
    assert_eq!(h.fake.count("create"), 0);
    h.stop().await;
}
