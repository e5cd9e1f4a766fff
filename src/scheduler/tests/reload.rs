//! Applying a new plan: loops stopped, kept or restarted.

use super::*;

#[tokio::test(start_paused = true)]
async fn reload_stops_removed_instances_and_drops_their_series() {
    let mut h = Harness::new(10.0);
    h.start(vec![
        instance("i1", settings(Mode::Trigger, 60, 30)),
        instance("i2", settings(Mode::Trigger, 60, 30)),
    ]);
    advance(100).await;
    assert_eq!(h.sched.loop_count(), 2);
    h.start(vec![instance("i2", settings(Mode::Trigger, 60, 30))]);
    assert_eq!(h.sched.loop_count(), 1);
    assert!(h.store.analysis_state("i1", Analysis::Hotkey).is_none());
    let creates_i1 = h.fake.with(|s| {
        s.tasks
            .get(&("i1".to_string(), Analysis::Hotkey))
            .map_or(0, Vec::len)
    });
    advance(300).await;
    let after = h.fake.with(|s| {
        s.tasks
            .get(&("i1".to_string(), Analysis::Hotkey))
            .map_or(0, Vec::len)
    });
    assert_eq!(after, creates_i1, "a removed instance gets no new task");
    assert!(h.state("i2").result.is_some());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_restarts_a_loop_does_not_count_its_task_again() {
    let mut h = Harness::new(30.0);
    // A task that runs through every reload below.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 10.0, 3600.0, ScanType::Manual);
    let mut listed = 0;
    for (n, interval) in [600, 601, 602, 603].into_iter().enumerate() {
        // Changed settings: the loop is replaced, and the new one adopts the running task.
        h.start(vec![instance("i1", settings(Mode::Trigger, interval, 300))]);
        advance(2).await;
        assert!(
            h.fake.count("list") > listed,
            "a new loop looked at the tasks"
        );
        listed = h.fake.count("list");
        let st = h.state("i1");
        assert!(st.running.is_some(), "the task is followed");
        assert_eq!(
            (st.tasks_adopted, st.tasks_created),
            (1, 0),
            "after reload {n}"
        );
    }
    h.stop().await;
}
