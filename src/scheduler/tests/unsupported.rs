//! Analyses an instance does not support: not a failure streak, and asked again after the
//! source's re-check period (DCS: a day; a native target: every interval), or at once on a
//! config reload.

use super::*;

#[tokio::test(start_paused = true)]
async fn unsupported_analysis_stops_creating_until_the_daily_recheck() {
    let mut h = Harness::new(30.0);
    h.fake
        .with(|s| s.unsupported.insert(("i1".into(), Analysis::Hotkey)));
    h.start(vec![instance("i1", settings(Mode::Trigger, 60, 30))]);
    advance(3600 * 12).await;
    let st = h.state("i1");
    assert!(!st.supported);
    assert_eq!(st.failures[&FailureReason::Unsupported], 1);
    assert_eq!(h.fake.count("create"), 1);
    assert_eq!(st.consecutive_failures, 0, "unsupported is not failing");
    // The status page says when: a day after the answer, which came at once.
    let at = st.recheck_at.expect("a re-check is planned");
    assert!((at - (T0 + 86_400.0)).abs() < 1.0, "{}", at - T0);
    advance(3600 * 13).await;
    assert_eq!(h.fake.count("create"), 2, "re-checked once a day");
    let st = h.state("i1");
    assert_eq!(st.failures[&FailureReason::Unsupported], 2);
    assert_eq!(
        st.consecutive_failures, 0,
        "the daily re-check does not build a failure streak"
    );
    h.stop().await;
}

/// For a native target the check costs two commands: it is asked again every interval, and
/// a policy fixed on the server is seen at the next one.
#[tokio::test(start_paused = true)]
async fn a_native_target_asks_again_every_interval() {
    let mut h = Harness::new(30.0);
    h.fake
        .with(|s| s.unsupported.insert(("r1".into(), Analysis::Hotkey)));
    h.start_native(vec![instance("r1", settings(Mode::Trigger, 600, 300))]);
    advance(1).await;
    let st = h.state("r1");
    assert!(!st.supported);
    assert_eq!(h.fake.count("create"), 1);
    let at = st.recheck_at.expect("a re-check is planned");
    assert!((at - (T0 + 600.0)).abs() < 1.0, "{}", at - T0);
    // Still unsupported at the next interval: asked once more, still no failure streak.
    advance(600).await;
    let st = h.state("r1");
    assert_eq!(h.fake.count("create"), 2);
    assert_eq!(st.failures[&FailureReason::Unsupported], 2);
    assert_eq!(st.consecutive_failures, 0);
    // The policy is fixed on the server: the next check finds out, and the result follows.
    h.fake.with(|s| s.unsupported.clear());
    advance(598).await;
    assert_eq!(h.fake.count("create"), 2, "not before the interval");
    advance(2).await;
    let st = h.state("r1");
    assert_eq!(h.fake.count("create"), 3);
    assert!(st.supported);
    assert_eq!(st.recheck_at, None);
    advance(40).await;
    assert!(h.state("r1").result.is_some());
    h.stop().await;
}

/// A config reload (SIGHUP, `POST /-/reload`) asks every unsupported analysis again at once,
/// DCS and native alike, and nothing else: a supported analysis keeps its cadence.
#[tokio::test(start_paused = true)]
async fn a_reload_asks_again_at_once_and_only_the_unsupported() {
    let mut h = Harness::new(30.0);
    h.fake.with(|s| {
        s.unsupported.insert(("d1".into(), Analysis::Hotkey));
        s.unsupported.insert(("r1".into(), Analysis::Hotkey));
    });
    let hourly = settings(Mode::Trigger, 3600, 300);
    let dcs = vec![instance("d1", hourly), instance("d2", hourly)];
    let native = vec![instance("r1", hourly)];
    h.apply(dcs.clone(), native.clone());
    advance(60).await;
    assert!(!h.state("d1").supported && !h.state("r1").supported);
    assert_eq!(h.state("d2").tasks_created, 1);
    // Fixed on the servers; nothing is asked before the re-checks (a day, an hour)...
    h.fake.with(|s| s.unsupported.clear());
    advance(1800).await;
    assert!(!h.state("d1").supported && !h.state("r1").supported);
    let creates = h.fake.count("create");
    // ...until a reload of the same config.
    let changes = h.apply(dcs, native);
    assert_eq!(
        changes.started.len() + changes.restarted.len(),
        0,
        "{changes:?}"
    );
    h.sched.recheck_unsupported();
    advance(1).await;
    for id in ["d1", "r1"] {
        let st = h.state(id);
        assert!(st.supported, "{id}");
        assert_eq!(st.tasks_created, 1, "{id}");
    }
    assert_eq!(
        h.fake.count("create"),
        creates + 2,
        "d2 was not asked again"
    );
    assert_eq!(h.state("d2").tasks_created, 1);
    h.stop().await;
}
