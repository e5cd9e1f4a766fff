//! Analyses an instance does not support: not a failure streak, and asked again later.

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
