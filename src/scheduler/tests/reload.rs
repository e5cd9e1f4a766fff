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

/// An instance with both scan analyses on; hot keys with `hot_top` keys.
fn both(id: &str, hot_top: usize) -> InstanceConfig {
    let s = settings(Mode::Trigger, 600, 300);
    InstanceConfig {
        hotkey: AnalysisSettings {
            top_n: hot_top,
            ..s
        },
        bigkey: s,
        ..instance(id, s)
    }
}

fn loop_id(id: &str, a: Analysis) -> LoopId {
    (id.to_owned(), a)
}

/// A reload that changes one analysis' settings restarts that loop only, says which, and has
/// its source stop that loop's own task; the other analysis goes on with its task.
#[tokio::test(start_paused = true)]
async fn a_reload_restarts_only_the_loops_whose_settings_changed() {
    let mut h = Harness::new(200.0);
    let first = h.start_native(vec![both("r1", 2), both("r2", 2)]);
    assert_eq!(
        first.started,
        [
            loop_id("r1", Analysis::Hotkey),
            loop_id("r1", Analysis::Bigkey),
            loop_id("r2", Analysis::Hotkey),
            loop_id("r2", Analysis::Bigkey),
        ]
    );
    advance(10).await;
    let big = |h: &Harness| h.store.analysis_state("r1", Analysis::Bigkey).unwrap();
    let running = big(&h).running.expect("the big key task runs").id;
    let lists = h.fake.count("list");

    // Only r1's hot key settings change.
    let changes = h.start_native(vec![both("r1", 5), both("r2", 2)]);
    assert_eq!(changes.restarted, [loop_id("r1", Analysis::Hotkey)]);
    assert!(changes.started.is_empty() && changes.stopped.is_empty());
    assert_eq!(changes.unchanged, 3);
    assert_eq!(Changes::names(&changes.restarted).to_string(), "r1 hotkey");
    assert_eq!(
        *h.native.stopped.lock().unwrap(),
        [loop_id("r1", Analysis::Hotkey)],
        "the source stops the restarted loop's task, and only that"
    );
    advance(1).await;
    assert_eq!(
        h.fake.count("list"),
        lists + 1,
        "only the new hot key loop looked at the tasks"
    );
    // The big key loop follows its task to the end and publishes it.
    advance(200).await;
    let st = big(&h);
    assert_eq!(st.result.expect("published").task_id, running);
    assert_eq!((st.tasks_created, st.tasks_adopted), (1, 0));

    // r2 is removed, r1's big keys turned off.
    let off = InstanceConfig {
        bigkey: settings(Mode::Off, 600, 300),
        ..both("r1", 5)
    };
    let changes = h.start_native(vec![off]);
    assert_eq!(
        changes.stopped,
        [
            loop_id("r1", Analysis::Bigkey),
            loop_id("r2", Analysis::Hotkey),
            loop_id("r2", Analysis::Bigkey),
        ]
    );
    assert_eq!(changes.unchanged, 1);
    assert_eq!(h.sched.loop_count(), 1);
    h.stop().await;
}

#[test]
fn changes_name_at_most_twenty_loops() {
    let many: Vec<LoopId> = (0..25)
        .map(|i| loop_id(&format!("i{i:02}"), Analysis::Bigkey))
        .collect();
    let text = Changes::names(&many).to_string();
    assert!(text.starts_with("i00 bigkey, i01 bigkey, "), "{text}");
    assert!(text.ends_with("i19 bigkey and 5 more"), "{text}");
    assert_eq!(Changes::names(&[]).to_string(), "none");
}

/// One instance starts at once; a fleet spreads its first tasks over `start_jitter` (2m30s by
/// default), and an instance added later starts at once again.
#[tokio::test(start_paused = true)]
async fn the_start_spread_grows_with_the_instances_starting_together() {
    let mut h = Harness::new(30.0);
    h.start(vec![instance("one", settings(Mode::Trigger, 3600, 300))]);
    advance(1).await;
    assert_eq!(
        h.fake.count("create"),
        1,
        "a single instance starts at once"
    );
    h.stop().await;

    let mut h = Harness::new(30.0);
    let fleet: Vec<InstanceConfig> = (0..300)
        .map(|i| instance(&format!("i{i}"), settings(Mode::Trigger, 3600, 300)))
        .collect();
    h.start(fleet.clone());
    advance(1).await;
    assert!(h.fake.count("create") < 10, "{}", h.fake.count("create"));
    advance(74).await;
    let half = h.fake.count("create");
    assert!(
        (100..200).contains(&half),
        "{half} of 300 in the first half"
    );
    advance(76).await;
    assert_eq!(h.fake.count("create"), 300, "all within 2m30s");

    let mut grown = fleet;
    grown.push(instance("late", settings(Mode::Trigger, 3600, 300)));
    let changes = h.start(grown);
    assert_eq!(changes.started, [loop_id("late", Analysis::Hotkey)]);
    advance(1).await;
    assert_eq!(
        h.state("late").tasks_created,
        1,
        "a new instance starts at once"
    );
    h.stop().await;
}
