//! Tests of the status page for Redis and Valkey servers the exporter scans itself: their own
//! words, the summary's columns and counts, and key families that come with the big key scan.

use std::sync::Arc;

use super::*;
use crate::dcs::{Analysis, InstanceInfo, KeyRecord, KeyType, ScanType, SizeUnit};
use crate::metrics::families::KeyFamily;
use crate::metrics::store::{
    AnalysisResult, AnalysisSpec, AnalysisState, FailureReason, LastError, RunningTask,
};

/// 2024-01-01T00:00:00Z.
const JAN1: f64 = 1_704_067_200.0;

fn spec(analysis: Analysis) -> AnalysisSpec {
    AnalysisSpec {
        analysis,
        top_n: 20,
        mode: "trigger",
        interval: std::time::Duration::from_secs(3600),
    }
}

fn result(task: &str, key_count: u64) -> AnalysisResult {
    AnalysisResult {
        task_id: task.into(),
        scan_type: Some(ScanType::Manual),
        created_at: Some(JAN1),
        started_at: Some(JAN1),
        finished_at: Some(JAN1 + 35.0),
        key_count,
        keys: Default::default(),
        shards: Default::default(),
        families: Vec::new(),
        sources: Vec::new(),
        slots: Vec::new(),
    }
}

fn error(reason: FailureReason, message: &str) -> LastError {
    LastError {
        at: JAN1 + 3600.0,
        reason,
        message: message.into(),
    }
}

/// A Valkey server: no hot key source, a big key scan that failed twice after one success,
/// the key families of that success, and hot slots (not a cluster).
fn server() -> InstanceState {
    let mut hot = AnalysisState::new(spec(Analysis::Hotkey));
    hot.supported = false;
    hot.recheck_at = Some(JAN1 + 4500.0);
    hot.last_error = Some(error(FailureReason::Unsupported, "no hot key source"));

    let mut big = AnalysisState::new(spec(Analysis::Bigkey));
    let mut r = result("bigkey-1704067200-1", 2);
    r.keys = vec![KeyRecord {
        name: "feed:all".into(),
        key_type: Some(KeyType::List),
        db: Some(0),
        size: Some(6000),
        unit: Some(SizeUnit::Count),
        ..KeyRecord::default()
    }]
    .into();
    big.result = Some(Arc::new(r));
    big.consecutive_failures = 2;
    big.last_error = Some(error(
        FailureReason::Auth,
        "127.0.0.1:6379: PTTL refused: NOPERM this user has no permissions to run the 'pttl' command",
    ));

    let mut fam = AnalysisState::new(spec(Analysis::Keyfamily));
    let mut r = result("bigkey-1704067200-1", 20_302);
    r.families = vec![KeyFamily {
        family: "user:*:profile".into(),
        key_type: "string".into(),
        shard: String::new(),
        keys: 20_000,
        memory_bytes: 23_433_320,
        keys_without_ttl: Some(19_990),
    }];
    fam.result = Some(Arc::new(r));

    let mut slots = AnalysisState::new(spec(Analysis::Hotslot));
    slots.supported = false;
    slots.last_error = Some(error(FailureReason::Unsupported, "not a Redis Cluster"));

    InstanceState {
        id: "redis://127.0.0.1:6379".into(),
        name: "cache".into(),
        lfu_log_factor: 10,
        native: true,
        info: Some(InstanceInfo {
            instance_id: "redis://127.0.0.1:6379".into(),
            engine: Some("valkey".into()),
            engine_version: Some("8.1.8".into()),
            spec_code: Some("standalone".into()),
            sharding_count: Some(1),
            ..InstanceInfo::default()
        }),
        analyses: [hot, big, fam, slots]
            .into_iter()
            .map(|a| (a.spec.analysis, a))
            .collect(),
    }
}

fn render(instances: Vec<InstanceState>) -> String {
    let snap = Snapshot {
        instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
    };
    render_page(&snap, "/metrics", JAN1 + 3600.0, &RenderOptions::default())
}

/// The part of the page about `analysis` (its heading up to the end of its state table).
fn section<'a>(page: &'a str, analysis: &str) -> &'a str {
    let s = &page[page.find(&format!("<h3>{analysis}</h3>")).expect(analysis)..];
    &s[..s.find("</table>").expect("state table")]
}

#[test]
fn a_server_is_described_in_its_own_words() {
    let page = render(vec![server()]);
    // Below the page's introduction, nothing speaks of DCS, its tasks, console or scans.
    let body = &page[page.find("<h2 id=\"summary\"").expect("summary")..];
    for word in ["DCS", "task", "console", "manual scan", "auto scan"] {
        assert!(!body.contains(word), "{word:?} on a server's page: {body}");
    }
    assert!(
        page.contains("<p class=\"muted\">engine valkey 8.1.8 · standalone</p>"),
        "{page}"
    );
    let big = section(&page, "bigkey");
    assert!(
        big.contains("2024-01-01 00:00:35 UTC (59m 25s ago) · scan bigkey-1704067200-1 · 2 keys reported</td>"),
        "{big}"
    );
    assert!(big.contains("<th>running scan</th><td>none"), "{big}");
    let hot = section(&page, "hotkey");
    assert!(
        hot.contains("no: the server has no hot key source: it needs HOTKEYS"),
        "{hot}"
    );
    assert!(
        hot.contains("asked again 2024-01-01 01:15:00 UTC (in 15m 0s)"),
        "{hot}"
    );
    // The legend explains the words of servers: scans, every interval, families, sources.
    assert!(page.contains("the exporter scans the server now"), "{page}");
    assert!(page.contains("(every interval; two commands)"), "{page}");
    assert!(page.contains("<dt>key families</dt>"), "{page}");
    assert!(page.contains("<dt>source</dt>"), "{page}");
}

#[test]
fn a_cluster_says_how_many_shards_it_has() {
    let mut s = server();
    let info = s.info.as_mut().expect("info");
    info.spec_code = Some("cluster".into());
    info.sharding_count = Some(3);
    let page = render(vec![s]);
    assert!(
        page.contains("engine valkey 8.1.8 · cluster of 3 shards</p>"),
        "{page}"
    );
}

#[test]
fn the_summary_has_a_column_for_every_analysis_it_counts() {
    let page = render(vec![server()]);
    let start = page.find("<table class=\"summary\">").expect("summary");
    let table = &page[start..start + page[start..].find("</table>").expect("end")];
    assert!(
        table.contains(
            "<tr><th>instance</th><th>hot keys</th><th>big keys</th><th>key families</th>\
             <th>hot slots</th><th>last success</th>"
        ),
        "{table}"
    );
    // Four cells: hot keys and hot slots unsupported, big keys failing, and the key families
    // failing with the big key scan they come with.
    assert!(
        table.contains(
            "<td><span class=\"na\">unsupported</span></td>\
             <td><span class=\"bad\">failing ×2</span></td>\
             <td><span class=\"bad\">failing ×2</span></td>\
             <td><span class=\"na\">unsupported</span></td>"
        ),
        "{table}"
    );
    assert!(
        page.contains(
            ">1 instance · analyses: 0 ok, 0 running, 2 failing, 2 unsupported, 0 waiting<"
        ),
        "{page}"
    );
}

#[test]
fn key_families_show_the_big_key_scan_they_come_with() {
    let page = render(vec![server()]);
    let fam = section(&page, "keyfamily");
    assert!(
        fam.contains("<th>mode</th><td>with the big key scan (its interval and timeout)</td>"),
        "{fam}"
    );
    // Not "none" while the big key scan fails: its error, and its failures in a row.
    assert!(
        fam.contains(
            "none of their own: they come with the big key scan, whose last 2 attempts failed: \
             2024-01-01 01:00:00 UTC (0s ago) · <span class=\"bad\">auth</span>: 127.0.0.1:6379: \
             PTTL refused"
        ),
        "{fam}"
    );
    assert!(
        fam.contains("PTTL refused: NOPERM this user has no permissions to run the &#39;pttl&#39; command (the families of its last success stay exported)"),
        "{fam}"
    );
    assert!(
        fam.contains("<th>consecutive failures</th><td><span class=\"bad\">2</span>"),
        "{fam}"
    );
    // Without an earlier success there are no families to keep.
    let mut s = server();
    s.analyses
        .get_mut(&Analysis::Keyfamily)
        .expect("families")
        .result = None;
    let fresh = render(vec![s]);
    let never = section(&fresh, "keyfamily");
    assert!(never.contains("&#39;pttl&#39; command</td>"), "{never}");
    assert!(never.contains("<th>last success</th><td>never"), "{never}");
    assert!(
        fam.contains("· scan bigkey-1704067200-1 · 20,302 keys counted</td>"),
        "{fam}"
    );
    // The families in the page's units: 23,433,320 B / 2^20 = 22.35 MiB, beside the keys that
    // never expire.
    assert!(
        page.contains(
            "<td class=\"key\">user:*:profile</td><td>string</td><td></td><td>20,000</td>\
             <td>19,990</td><td>22.3 MiB</td>"
        ),
        "{page}"
    );
    assert!(page.contains(">without TTL</th>"), "{page}");
    assert!(!page.contains("bytes</td>"), "{page}");

    // The big key scan succeeds again and runs the next scan: so do the families.
    let mut s = server();
    let big = s.analyses.get_mut(&Analysis::Bigkey).expect("bigkey");
    big.consecutive_failures = 0;
    big.running = Some(RunningTask {
        id: "bigkey-1704070800-2".into(),
        status: "running".into(),
        since: JAN1 + 3590.0,
    });
    let page = render(vec![s]);
    let fam = section(&page, "keyfamily");
    assert!(
        fam.contains(
            "they come with the big key scan, which has not failed since its last success"
        ),
        "{fam}"
    );
    assert!(
        fam.contains(
            "<th>running scan</th><td>the big key scan bigkey-1704070800-2 (running) since"
        ),
        "{fam}"
    );
    assert!(
        page.contains(
            ">1 instance · analyses: 0 ok, 2 running, 0 failing, 2 unsupported, 0 waiting<"
        ),
        "{page}"
    );
}

#[test]
fn a_mixed_fleet_explains_both_kinds() {
    let mut dcs = server();
    dcs.id = "5560df16-cebf-4473-95c4-d1b573c16e79".into();
    dcs.name = "orders".into();
    dcs.native = false;
    dcs.analyses.remove(&Analysis::Hotslot);
    dcs.info = None;
    let page = render(vec![server(), dcs]);
    assert!(page.contains("<dt>manual scan</dt><dd>DCS: "), "{page}");
    assert!(page.contains("<dt>key families</dt>"), "{page}");
    assert!(
        page.contains("once a day on DCS, every interval for a Redis or Valkey server"),
        "{page}"
    );
    // The DCS instance keeps its words; its key families have their own state and error.
    let orders = &page[page.find("<section id=\"i-5560df16").expect("dcs section")..];
    assert!(
        orders.contains("no: DCS answered that the instance cannot give hot keys"),
        "{orders}"
    );
    assert!(
        orders.contains("· task bigkey-1704067200-1 · 2 keys reported · manual scan"),
        "{orders}"
    );
    let fam = section(orders, "keyfamily");
    assert!(fam.contains("<th>mode</th><td>trigger</td>"), "{fam}");
    assert!(fam.contains("<th>last error</th><td>none</td>"), "{fam}");
    // Its key family cell is ok by its own state although its big key analysis fails.
    assert!(
        page.contains(
            ">2 instances · analyses: 1 ok, 0 running, 3 failing, 3 unsupported, 0 waiting<"
        ),
        "{page}"
    );
}
