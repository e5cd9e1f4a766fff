//! Tests of the status page.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::summary::biggest_key;
use super::text::{age, display_key, human_bytes, thousands, when, KEY_DISPLAY_CHARS};
use super::*;
use crate::dcs::{Analysis, InstanceInfo, KeyRecord, KeyType, ScanType, SizeUnit};
use crate::metrics::store::{
    AnalysisResult, AnalysisSpec, AnalysisState, FailureReason, LastError, RunningTask,
};

/// 2024-01-01T00:00:00Z (`date -u -d 2024-01-01 +%s`).
const JAN1: f64 = 1_704_067_200.0;

fn key(name: &str, freq: i64) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        key_type: Some(KeyType::String),
        shard: Some("10.0.0.1:6379".into()),
        db: Some(2),
        size: Some(64),
        unit: Some(SizeUnit::Byte),
        freq: Some(freq),
        memory: None,
        rates: None,
    }
}

fn snapshot() -> Snapshot {
    let keys: Vec<KeyRecord> = [key("<script>alert('x')</script>\n", 200)]
        .into_iter()
        .chain((0..7).map(|i| key(&format!("key-{i}"), 100 - i)))
        .collect();
    let hot = AnalysisState {
        spec: AnalysisSpec {
            analysis: Analysis::Hotkey,
            top_n: 50,
            mode: "trigger",
            interval: std::time::Duration::from_secs(900),
        },
        supported: true,
        recheck_at: None,
        running: Some(RunningTask {
            id: "task-<2>".into(),
            status: "running".into(),
            since: JAN1 + 3600.0,
        }),
        progress: None,
        touch: None,
        consecutive_failures: 1,
        failures: BTreeMap::new(),
        tasks_created: 2,
        tasks_adopted: 0,
        last_counted_task: None,
        result: Some(Arc::new(AnalysisResult {
            task_id: "task-1".into(),
            scan_type: Some(ScanType::Manual),
            created_at: Some(JAN1),
            started_at: Some(JAN1),
            finished_at: Some(JAN1 + 60.0),
            key_count: 8,
            keys: keys.into(),
            shards: Default::default(),
            families: Vec::new(),
            sources: Vec::new(),
            slots: Vec::new(),
        })),
        last_error: Some(LastError {
            at: JAN1 + 1800.0,
            reason: FailureReason::Timeout,
            message: "gave up <after> \"10m\" & more".into(),
        }),
    };
    let mut first_key_is_hostile = hot.clone();
    first_key_is_hostile.spec.analysis = Analysis::Bigkey;
    first_key_is_hostile.spec.mode = "observe";
    first_key_is_hostile.supported = false;
    first_key_is_hostile.running = None;
    first_key_is_hostile.last_error = None;
    first_key_is_hostile.result = Some(Arc::new(AnalysisResult {
        task_id: "big-1".into(),
        scan_type: None,
        created_at: None,
        started_at: None,
        finished_at: None,
        key_count: 1,
        keys: vec![KeyRecord {
            name: "<script>alert(1)</script>".into(),
            key_type: Some(KeyType::Hash),
            shard: None,
            db: None,
            size: Some(70_000),
            unit: Some(SizeUnit::Count),
            freq: None,
            memory: None,
            rates: None,
        }]
        .into(),
        shards: Default::default(),
        families: Vec::new(),
        sources: Vec::new(),
        slots: Vec::new(),
    }));
    let inst = InstanceState {
        id: "5560df16-id".into(),
        name: "orders-<b>cache</b>".into(),
        lfu_log_factor: 10,
        native: false,
        info: Some(InstanceInfo {
            instance_id: "5560df16-id".into(),
            engine: Some("Redis".into()),
            engine_version: Some("6.0".into()),
            status: Some("RUNNING".into()),
            spec_code: Some("redis.ha.xu1.large.r2.2".into()),
            ..Default::default()
        }),
        analyses: [
            (Analysis::Hotkey, hot),
            (Analysis::Bigkey, first_key_is_hostile),
        ]
        .into_iter()
        .collect(),
    };
    Snapshot {
        instances: [(inst.id.clone(), inst)].into_iter().collect(),
    }
}

#[test]
fn page_shows_state_and_escapes_everything() {
    let page = render_page(
        &snapshot(),
        "/metrics?x=\"1\"&y",
        JAN1 + 7200.0,
        &RenderOptions::default(),
    );
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<title>dcs-key-exporter</title>"));
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\\n"));
    assert!(page.contains("orders-&lt;b&gt;cache&lt;/b&gt;"));
    assert!(page.contains("<a href=\"/metrics?x=&quot;1&quot;&amp;y\">"));
    assert!(page.contains("gave up &lt;after&gt; &quot;10m&quot; &amp; more"));
    // Times: JAN1+60 is 2024-01-01 00:01:00 UTC, seen 7140 s = 1h 59m before "now".
    assert!(page.contains("2024-01-01 00:01:00 UTC (1h 59m ago) · task task-1 · 8 keys"));
    assert!(
        page.contains("2024-01-01 00:30:00 UTC (1h 30m ago) · <span class=\"bad\">timeout</span>")
    );
    assert!(page.contains("task-&lt;2&gt; (running) since 2024-01-01 01:00:00 UTC (1h 0m ago)"));
    assert!(page.contains("<td>observe</td>"));
    assert!(page.contains("70,000 elements"));
    // Only the top 5 hot keys: the hostile one, then key-0..key-3.
    assert!(page.contains(">key-3<"));
    assert!(!page.contains(">key-4<"));
    assert!(page.contains("engine Redis 6.0 · spec redis.ha.xu1.large.r2.2 · status RUNNING"));
}

/// A hostile string, distinct per field, and how it must appear once escaped.
fn hostile(field: &str) -> (String, String) {
    let raw = format!("<i>{field}</i>\"'&");
    let escaped = format!("&lt;i&gt;{field}&lt;/i&gt;&quot;&#39;&amp;");
    (raw, escaped)
}

#[test]
fn every_text_field_is_escaped() {
    let mut snap = snapshot();
    let mut inst = snap.instances.pop_first().expect("one instance").1;
    let fields = [
        "instance-id",
        "instance-name",
        "engine",
        "engine-version",
        "spec-code",
        "status",
        "task-id",
        "running-id",
        "running-status",
        "error-message",
        "key-name",
        "shard",
        "telemetry-path",
    ];
    let h = |i: usize| hostile(fields[i]).0;
    inst.id = h(0);
    inst.name = h(1);
    let info = inst.info.as_mut().expect("info");
    info.engine = Some(h(2));
    info.engine_version = Some(h(3));
    info.spec_code = Some(h(4));
    info.status = Some(h(5));
    let hot = inst.analyses.get_mut(&Analysis::Hotkey).expect("hot");
    let mut result = (**hot.result.as_ref().expect("result")).clone();
    result.task_id = h(6);
    let mut keys: Vec<_> = result.keys.iter().collect();
    keys[0].name = h(10);
    keys[0].shard = Some(h(11));
    result.keys = keys.into();
    hot.result = Some(Arc::new(result));
    let running = hot.running.as_mut().expect("running");
    running.id = h(7);
    running.status = h(8);
    hot.last_error.as_mut().expect("error").message = h(9);
    snap.instances.insert(inst.id.clone(), inst);

    let page = render_page(&snap, &h(12), JAN1, &RenderOptions::default());
    for field in fields {
        let (raw, escaped) = hostile(field);
        assert!(!page.contains(&raw), "{field} unescaped");
        assert!(page.contains(&escaped), "{field} missing");
    }
    assert!(!page.contains("<i>"));
}

#[test]
fn keys_are_shown_as_exported() {
    use crate::metrics::keylabel::KeyLabelMode;
    use crate::metrics::keyrewrite::{KeyRewrite, KeyRule};
    let rewrite = KeyRewrite::new(vec![KeyRule::new("^key-\\d+$", "key-N").expect("rule")]);
    let opts = RenderOptions {
        key_rewrite: rewrite,
        ..RenderOptions::default()
    };
    let page = render_page(&snapshot(), "/metrics", JAN1, &opts);
    assert!(!page.contains(">key-0<"), "{page}");
    // key-0..key-6 share one label: one row, plus the hostile key.
    assert_eq!(page.matches(">key-N<").count(), 1, "{page}");

    let hashed = RenderOptions {
        key_label: KeyLabelMode::Hash,
        ..RenderOptions::default()
    };
    let page = render_page(&snapshot(), "/metrics", JAN1, &hashed);
    assert!(!page.contains("key-0"), "{page}");
    assert!(!page.contains("script&gt;alert"), "{page}");
    // SHA-256("key-0") starts with the digest the metrics use.
    let digest = crate::metrics::keylabel::key_label("key-0", &KeyLabelMode::Hash);
    assert!(page.contains(digest.as_ref()), "{page}");
}

#[test]
fn summary_has_one_row_per_instance_linking_to_its_details() {
    let mut snap = snapshot();
    let template = snap.instances.pop_first().expect("one instance").1;
    for n in 0..300 {
        let mut inst = template.clone();
        inst.id = format!("{n:08x}-cebf-4473-95c4-d1b573c16e79");
        inst.name = format!("prod-orders-cache-{n:03}");
        snap.instances.insert(inst.id.clone(), inst);
    }
    // An id that is not safe in a URL fragment gets a positional anchor.
    let mut odd = template.clone();
    odd.id = "zz id/with \"odd\" chars".into();
    snap.instances.insert(odd.id.clone(), odd);

    let page = render_page(&snap, "/metrics", JAN1 + 7200.0, &RenderOptions::default());
    let start = page
        .find("<table class=\"summary\">")
        .expect("summary table");
    let table = &page[start..start + page[start..].find("</table>").expect("end")];
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("<tr><td>"))
        .collect();
    assert_eq!(rows.len(), 301);
    assert!(page.contains(">301 instances · analyses:"), "summary count");
    // Rows by name: the odd one ("orders-…") first, then prod-orders-cache-000 and on.
    let mut by_name: Vec<_> = snap.instances.values().collect();
    by_name.sort_by_key(|i| (i.name.clone(), i.id.clone()));
    for (row, inst) in rows.iter().zip(&by_name) {
        let id = &inst.id;
        let href = row
            .split("href=\"#")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a link");
        assert_eq!(page.matches(&format!("id=\"{href}\"")).count(), 1, "{row}");
        assert!(row.contains(&format!("title=\"{}\"", esc(id))), "{row}");
    }
    assert!(rows[0].contains("href=\"#n-0\""), "{}", rows[0]);
    assert!(rows[0].contains("&quot;odd&quot;"), "{}", rows[0]);
    assert!(rows[1].contains("href=\"#i-00000000-cebf-4473-95c4-d1b573c16e79\""));
    assert!(
        rows[300].contains(">prod-orders-cache-299<"),
        "{}",
        rows[300]
    );
    // State, the newest success, hottest and biggest key, human-readable.
    let row = rows[1];
    assert!(
        row.contains("<span class=\"bad\">failing ×1</span>"),
        "{row}"
    );
    assert!(
        row.contains("<span class=\"na\">unsupported</span>"),
        "{row}"
    );
    assert!(row.contains(">1h 59m ago<"), "{row}");
    assert!(
        row.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\\n"),
        "{row}"
    );
    assert!(row.contains("<td class=\"num\">200</td>"), "{row}");
    assert!(
        row.contains("<td class=\"num\">70,000 elements</td>"),
        "{row}"
    );
    assert!(page.contains("<dt>manual scan</dt>"));
    // The summary's one time column says it is the newer of the two analyses: an instance
    // whose hot key analysis fails can show a recent big key success there.
    assert!(
        page.contains("<dt>last success</dt><dd>in the summary: when the newer"),
        "legend"
    );
}

#[test]
fn one_instance_is_counted_in_the_singular() {
    let page = render_page(&snapshot(), "/metrics", JAN1, &RenderOptions::default());
    assert!(page.contains(">1 instance · analyses:"), "summary count");
}

#[test]
fn unsupported_is_grey_not_red() {
    let mut snap = snapshot();
    let inst = snap.instances.values_mut().next().expect("instance");
    let big = inst.analyses.get_mut(&Analysis::Bigkey).expect("bigkey");
    big.last_error = Some(LastError {
        at: JAN1,
        reason: FailureReason::Unsupported,
        message: "DCS.4919".into(),
    });
    // What the store keeps for an unsupported analysis: no failure streak.
    big.consecutive_failures = 0;
    let page = render_page(&snap, "/metrics", JAN1, &RenderOptions::default());
    let big_section = &page[page.find("<h3>bigkey</h3>").expect("bigkey")..];
    let big_state = &big_section[..big_section.find("</table>").expect("table")];
    assert!(!big_state.contains("class=\"bad\""), "{big_state}");
    assert!(big_state.contains("<span class=\"na\">unsupported</span>: DCS.4919"));
    assert!(
        big_state.contains("<span class=\"na\">no: DCS answered that the instance cannot run it")
    );
    assert!(
        big_state.contains("asked again at the next check, or at once on a config reload"),
        "{big_state}"
    );
}

/// The details say when an unsupported analysis is asked again, as the scheduler planned it:
/// for a Redis target one interval later, not "once a day".
#[test]
fn unsupported_says_when_it_is_asked_again() {
    let mut snap = snapshot();
    let inst = snap.instances.values_mut().next().expect("instance");
    let big = inst.analyses.get_mut(&Analysis::Bigkey).expect("bigkey");
    big.recheck_at = Some(JAN1 + 600.0);
    let page = render_page(&snap, "/metrics", JAN1, &RenderOptions::default());
    let big_section = &page[page.find("<h3>bigkey</h3>").expect("bigkey")..];
    let big_state = &big_section[..big_section.find("</table>").expect("table")];
    assert!(
        big_state.contains(
            "asked again 2024-01-01 00:10:00 UTC (in 10m 0s), or at once on a config reload"
        ),
        "{big_state}"
    );
    assert!(!page.contains("once a day</span>"), "no fixed period");
    // A page of DCS instances only explains DCS's period.
    assert!(
        page.contains("Asked again at the time its details show (once a day)"),
        "legend"
    );
    assert!(!page.contains("Redis or Valkey server"), "legend");
}

#[test]
fn sizes_are_human_readable() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(1024), "1.0 KiB");
    assert_eq!(human_bytes(12_800), "12.5 KiB");
    assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    assert_eq!(human_bytes(5 << 40), "5.0 TiB");
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(70_000), "70,000");
    assert_eq!(thousands(-1_234_567), "-1,234,567");
}

#[test]
fn biggest_key_is_the_one_furthest_over_the_big_key_definition() {
    let big = |name: &str, size: i64, unit: SizeUnit| KeyRecord {
        name: name.into(),
        key_type: None,
        shard: None,
        db: None,
        size: Some(size),
        unit: Some(unit),
        freq: None,
        memory: None,
        rates: None,
    };
    // 40 KiB is 4 times the 10 KiB string threshold; 30,000 elements 6 times the 5,000 one.
    let keys = [
        big("s", 40 * 1024, SizeUnit::Byte),
        big("h", 30_000, SizeUnit::Count),
        big("l", 6_000, SizeUnit::Count),
    ];
    let list = |keys: &[KeyRecord]| keys.iter().collect();
    assert_eq!(biggest_key(&list(&keys)).map(|k| k.name), Some("h".into()));
    assert_eq!(
        biggest_key(&list(&keys[..1])).map(|k| k.name),
        Some("s".into())
    );
    assert!(biggest_key(&list(&[])).is_none());
}

#[test]
fn top_families_are_shown_beside_the_top_keys_as_exported() {
    use crate::metrics::families::KeyFamily;
    use crate::metrics::keylabel::KeyLabelMode;
    let fam = |name: &str, bytes: u64| KeyFamily {
        family: name.into(),
        key_type: "hash".into(),
        shard: "group-<0>".into(),
        keys: 12_345,
        memory_bytes: bytes,
        keys_without_ttl: None,
    };
    let mut snap = snapshot();
    let inst = snap.instances.values_mut().next().expect("one instance");
    let mut kf = inst.analyses[&Analysis::Hotkey].clone();
    kf.spec.analysis = Analysis::Keyfamily;
    let mut result = (**kf.result.as_ref().expect("result")).clone();
    result.keys = Default::default();
    result.families = (0..7)
        .map(|i| fam(&format!("fam{i}:"), 23_433_320 - i))
        .chain([fam("<b>x</b>:", 10), fam("other", 5000)])
        .collect();
    kf.result = Some(Arc::new(result));
    inst.analyses.insert(Analysis::Keyfamily, kf);

    let page = render_page(&snap, "/metrics", JAN1, &RenderOptions::default());
    assert!(page.contains("<th>top family</th>"), "{page}");
    // The top 5 by memory; `other` is not a family of its own.
    assert!(
        page.contains(">fam4:<") && !page.contains(">fam5:<"),
        "{page}"
    );
    assert!(!page.contains(">other<"), "{page}");
    // Memory in binary units like every size on the page (23,433,320 B / 2^20 = 22.35 MiB),
    // counts with separators; DCS counts no keys without a TTL, so there is no such column.
    assert!(
        page.contains("<td>group-&lt;0&gt;</td><td>12,345</td><td>22.3 MiB</td>"),
        "{page}"
    );
    assert!(!page.contains("without TTL"), "{page}");
    // The hot key table is still there.
    assert!(page.contains("<th>top key</th>"));

    let hashed = RenderOptions {
        key_label: KeyLabelMode::Hash,
        ..RenderOptions::default()
    };
    let page = render_page(&snap, "/metrics", JAN1, &hashed);
    assert!(!page.contains("fam0:"), "{page}");
}

#[test]
fn ages_and_times_format() {
    assert_eq!(age(45.9), "45s");
    assert_eq!(age(200.0), "3m 20s");
    assert_eq!(age(7500.0), "2h 5m");
    assert_eq!(age(3.0 * 86_400.0 + 4.0 * 3600.0 + 5.0), "3d 4h");
    assert_eq!(utc(JAN1), "2024-01-01 00:00:00 UTC");
    assert_eq!(utc(f64::NAN), "unknown time");
    assert_eq!(when(JAN1 + 10.0, JAN1), "2024-01-01 00:00:10 UTC (in 10s)");
}

#[test]
fn long_and_control_key_names_are_displayed_safely() {
    assert_eq!(display_key("a\u{0}b\tc"), "a\\u{0}b\\tc");
    let long = "x".repeat(500);
    let shown = display_key(&long);
    assert_eq!(shown.chars().count(), KEY_DISPLAY_CHARS + 1);
    assert!(shown.ends_with('…'));
}

#[test]
fn empty_snapshot_says_so() {
    let page = render_page(
        &Snapshot::default(),
        "/metrics",
        JAN1,
        &RenderOptions::default(),
    );
    assert!(page.contains("No instances are configured"));
}
