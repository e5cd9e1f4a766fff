//! DCS dates ahead of the exporter's clock, or unreadable: never exported as such, and never
//! holding back the next task.

use super::*;

/// Every exported time of a result, which must not lie after `now`.
fn assert_not_after(r: &crate::metrics::store::AnalysisResult, now: f64) {
    for t in [r.created_at, r.started_at, r.finished_at] {
        let t = t.expect("dated");
        assert!(
            t <= now + 1e-3,
            "{} is {} s in the future",
            r.task_id,
            t - now
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_dated_in_the_future_neither_leaks_nor_freezes_the_analysis() {
    let mut h = Harness::new(30.0);
    // An auto-scan result that finished before start, dated an hour ahead by DCS.
    h.fake.with(|s| s.skew_next = 3600.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 100.0, 20.0, ScanType::Auto);
    let metrics = SchedulerMetrics::register(&prometheus::Registry::new(), "dcs").unwrap();
    h.sched.set_metrics(metrics.clone());
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let r = h.state("i1").result.expect("published");
    assert_eq!(r.task_id, "task-1");
    assert_not_after(&r, T0 + 1.0);
    // Counted, for the clock-skew alert.
    assert_eq!(metrics.future_timestamps(), 1);

    // The interval counts from when the result was seen: the loop creates its own task after
    // ~600 s and publishes it, although the old record still claims to be newer.
    advance(700).await;
    let st = h.state("i1");
    assert_eq!(h.fake.count("create"), 1);
    let r = st.result.expect("published");
    assert_eq!(r.task_id, "task-2");
    assert_not_after(&r, T0 + 701.0);
    assert_eq!(st.consecutive_failures, 0);
    // The loop's own task was dated right: nothing more counted.
    assert_eq!(metrics.future_timestamps(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_result_without_a_readable_end_time_still_has_a_last_success_time() {
    for odd in ["NaN", "-1", "", "9999-99-99T99:99:99Z"] {
        let mut h = Harness::new(30.0);
        h.fake.with(|s| s.odd_dates = Some(odd));
        h.fake
            .add_task("i1", Analysis::Hotkey, T0 - 100.0, 20.0, ScanType::Auto);
        h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
        advance(1).await;
        let r = h.state("i1").result.expect("published");
        assert_eq!(r.task_id, "task-1");
        // The time it was seen: exported, so `time() - last_success` alerts keep working.
        let f = r
            .finished_at
            .unwrap_or_else(|| panic!("{odd:?}: no last success time"));
        assert!((T0..=T0 + 1.001).contains(&f), "{odd:?}: {f}");

        // The loop goes on creating and publishing its own tasks.
        advance(700).await;
        let r = h.state("i1").result.expect("published");
        assert_eq!(
            (h.fake.count("create"), r.task_id.as_str()),
            (1, "task-2"),
            "{odd:?}"
        );
        let f = r.finished_at.expect("dated");
        assert!(f > T0 + 600.0 && f <= T0 + 701.001, "{odd:?}: {f}");
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_dcs_clock_ahead_of_ours_does_not_stop_task_creation() {
    let mut h = Harness::new(30.0);
    // Every task, the exporter's own included, is dated two hours ahead.
    h.fake.with(|s| s.skew_all = 7200.0);
    h.start(vec![instance("i1", settings(Mode::Trigger, 600, 300))]);
    let mut published = Vec::new();
    for cycle in 1..=4u64 {
        advance(600).await;
        let r = h.state("i1").result.expect("published");
        assert_not_after(&r, T0 + (600 * cycle) as f64);
        published.push(r.task_id.clone());
    }
    published.dedup();
    assert!(
        published.len() >= 3 && h.fake.count("create") >= 4,
        "one task per interval: {published:?}, {} creates",
        h.fake.count("create")
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn observe_mode_follows_a_dcs_clock_far_ahead_without_going_back() {
    let mut h = Harness::new(30.0);
    // DCS' clock runs six hours ahead: every record is dated in the future.
    h.fake.with(|s| s.skew_all = 6.0 * 3600.0);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 900.0, 20.0, ScanType::Auto);
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 - 500.0, 20.0, ScanType::Auto);
    h.start(vec![instance("i1", settings(Mode::Observe, 60, 30))]);
    advance(1).await;
    let r = h.state("i1").result.expect("published");
    assert_eq!(r.task_id, "task-2", "the newest by DCS' own dates");
    assert_not_after(&r, T0 + 1.0);

    // A new auto-scan result appears: it succeeded since the last listing, so it is newer,
    // whatever DCS' dates say; the older records are not published again.
    h.fake
        .add_task("i1", Analysis::Hotkey, T0 + 10.0, 20.0, ScanType::Auto);
    advance(120).await;
    let st = h.state("i1");
    let r = st.result.expect("published");
    assert_eq!(r.task_id, "task-3");
    assert_not_after(&r, T0 + 121.0);
    advance(600).await;
    assert_eq!(h.state("i1").result.unwrap().task_id, "task-3");
    assert_eq!(h.state("i1").tasks_adopted, 2);
    h.stop().await;
}
