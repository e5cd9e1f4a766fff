//! The status page served at `/`: a self-contained HTML summary of the snapshot.
//!
//! One section per configured instance and one table per analysis: mode, support, last success,
//! last error, running task, consecutive failures and the top keys of the newest result. The page
//! has inline CSS, no scripts and no external assets. Everything that comes from DCS or the config
//! (names, ids, messages, key names) is hostile text: it is HTML-escaped, and control characters in
//! key names are shown as escapes.

use std::fmt::Write as _;

use time::macros::format_description;
use time::OffsetDateTime;

use crate::dcs::Analysis;
use crate::metrics::keyrewrite::export_key;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::{AnalysisState, InstanceState, Snapshot};

/// Keys shown per analysis.
pub const TOP_KEYS: usize = 5;
/// Characters of a key name shown before it is cut with `…`.
const KEY_DISPLAY_CHARS: usize = 120;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
.id,.muted{color:#666;font-weight:normal;font-size:.85em}\
table{border-collapse:collapse;margin:.4em 0 1em}\
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}table.state th{width:12em}\
td.key{font-family:monospace;word-break:break-all}.bad{color:#a00}.ok{color:#070}";

/// The whole page for `snapshot` at `now_unix` (Unix seconds), linking to `telemetry_path`.
/// Key names are shown as `/metrics` exports them (`keys`: rewrite rules and key label mode).
pub fn render_page(
    snapshot: &Snapshot,
    telemetry_path: &str,
    now_unix: f64,
    keys: &RenderOptions,
) -> String {
    let mut h = String::with_capacity(8192);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<title>dcs-key-exporter</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n<h1>dcs-key-exporter</h1>\n");
    h.push_str(
        "<p>Prometheus exporter for the hot key and big key analyses of Huawei Cloud DCS \
         (managed Redis). It runs the analyses on a schedule (or picks up existing ones) and \
         exports the newest completed result of each.</p>\n",
    );
    let _ = write!(
        h,
        "<p>Metrics: <a href=\"{p}\">{p}</a> · health: <a href=\"/-/healthy\">/-/healthy</a> \
         · readiness: <a href=\"/-/ready\">/-/ready</a></p>\n\
         <p class=\"muted\">Version {v} · page generated {t}</p>\n",
        p = esc(telemetry_path),
        v = esc(env!("CARGO_PKG_VERSION")),
        t = utc(now_unix),
    );
    if snapshot.instances.is_empty() {
        h.push_str("<p>No instances are configured or discovered yet.</p>\n");
    }
    for inst in snapshot.instances.values() {
        instance(&mut h, inst, now_unix, keys);
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn instance(h: &mut String, inst: &InstanceState, now: f64, keys: &RenderOptions) {
    let _ = write!(
        h,
        "<section>\n<h2>{} <span class=\"id\">{}</span></h2>\n",
        esc(&inst.name),
        esc(&inst.id)
    );
    if let Some(info) = &inst.info {
        let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("?"));
        let _ = writeln!(
            h,
            "<p class=\"muted\">engine {} {} · spec {} · status {}</p>",
            opt(&info.engine),
            opt(&info.engine_version),
            opt(&info.spec_code),
            opt(&info.status),
        );
    }
    if inst.analyses.is_empty() {
        h.push_str("<p>No analyses enabled.</p>\n");
    }
    for (analysis, state) in &inst.analyses {
        self::analysis(h, *analysis, state, now, keys);
    }
    h.push_str("</section>\n");
}

fn analysis(
    h: &mut String,
    analysis: Analysis,
    st: &AnalysisState,
    now: f64,
    keys: &RenderOptions,
) {
    let _ = write!(
        h,
        "<h3>{}</h3>\n<table class=\"state\">\n<tr><th>mode</th><td>{}</td></tr>\n",
        analysis.as_str(),
        esc(st.spec.mode)
    );
    let supported = if st.supported {
        "<span class=\"ok\">yes</span>"
    } else {
        "<span class=\"bad\">no (DCS reports the analysis as unsupported)</span>"
    };
    let _ = writeln!(h, "<tr><th>supported</th><td>{supported}</td></tr>");

    h.push_str("<tr><th>last success</th><td>");
    match &st.result {
        Some(r) => {
            match r.finished_at {
                Some(t) => h.push_str(&when(t, now)),
                None => h.push_str("finish time unknown"),
            }
            let _ = write!(
                h,
                " · task {} · {} keys reported",
                esc(&r.task_id),
                r.key_count
            );
            if let Some(st) = &r.scan_type {
                let _ = write!(h, " · {} scan", esc(st.as_str()));
            }
        }
        None => h.push_str("never"),
    }
    h.push_str("</td></tr>\n<tr><th>last error</th><td>");
    match &st.last_error {
        Some(e) => {
            let _ = write!(
                h,
                "{} · <span class=\"bad\">{}</span>: {}",
                when(e.at, now),
                e.reason.as_str(),
                esc(&e.message)
            );
        }
        None => h.push_str("none"),
    }
    h.push_str("</td></tr>\n<tr><th>running task</th><td>");
    match &st.running {
        Some(t) => {
            let _ = write!(
                h,
                "{} ({}) since {}",
                esc(&t.id),
                esc(&t.status),
                when(t.since, now)
            );
            if let Some(p) = &st.progress {
                let _ = write!(h, "; {} of {} keys scanned", p.keys_scanned, p.keys_total);
                if let Some(eta) = p.estimated_completion() {
                    let _ = write!(h, ", done about {}", when(eta, now));
                }
            }
        }
        None => h.push_str("none"),
    }
    let failures = if st.consecutive_failures > 0 {
        format!("<span class=\"bad\">{}</span>", st.consecutive_failures)
    } else {
        "0".to_owned()
    };
    let _ = write!(
        h,
        "</td></tr>\n<tr><th>consecutive failures</th><td>{failures}</td></tr>\n</table>\n"
    );

    let Some(result) = &st.result else {
        return;
    };
    if result.keys.is_empty() {
        h.push_str("<p>The newest result reported no keys.</p>\n");
        return;
    }
    let value_header = match analysis {
        Analysis::Hotkey => "freq",
        Analysis::Bigkey => "size",
    };
    let _ = write!(
        h,
        "<table class=\"keys\">\n<tr><th>top key</th><th>type</th><th>db</th><th>shard</th>\
         <th>{value_header}</th></tr>\n"
    );
    // Keys that share a label after rewriting are one series on /metrics: shown once, the
    // first-ranked one.
    let mut seen = std::collections::HashSet::new();
    let shown = result.keys.iter().filter_map(|k| {
        let label = export_key(&k.name, &keys.key_rewrite, &keys.key_label);
        let id = (label.clone(), k.key_type.clone(), k.db, k.shard.clone());
        seen.insert(id).then_some((label, k))
    });
    for (label, k) in shown.take(TOP_KEYS) {
        let value = match analysis {
            Analysis::Hotkey => k.freq.map_or_else(|| "?".to_owned(), |f| f.to_string()),
            Analysis::Bigkey => match (k.size, &k.unit) {
                (Some(s), Some(u)) => format!("{s} {}", esc(u.as_str())),
                (Some(s), None) => s.to_string(),
                _ => "?".to_owned(),
            },
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"key\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&display_key(&label)),
            esc(k.key_type.as_ref().map_or("", |t| t.as_str())),
            k.db.map(|d| d.to_string()).unwrap_or_default(),
            esc(k.shard.as_deref().unwrap_or("")),
            value,
        );
    }
    h.push_str("</table>\n");
}

/// HTML-escapes text for element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A key name for display: control characters as escapes (`\n`, `\u{0}`), cut to
/// [`KEY_DISPLAY_CHARS`] characters with `…`. Not yet HTML-escaped.
fn display_key(name: &str) -> String {
    let mut out = String::new();
    for (n, c) in name.chars().enumerate() {
        if n == KEY_DISPLAY_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `2024-01-01 00:01:00 UTC (3m 20s ago)`.
fn when(t: f64, now: f64) -> String {
    let delta = now - t;
    if delta >= 0.0 {
        format!("{} ({} ago)", utc(t), age(delta))
    } else {
        format!("{} (in {})", utc(t), age(-delta))
    }
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss UTC`, or `unknown time`.
fn utc(t: f64) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    if !t.is_finite() {
        return "unknown time".to_owned();
    }
    OffsetDateTime::from_unix_timestamp(t.floor() as i64)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_else(|| "unknown time".to_owned())
}

/// A duration in its two largest units: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
fn age(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".to_owned();
    }
    let s = secs.max(0.0).floor() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::dcs::{InstanceInfo, KeyRecord, KeyType, ScanType, SizeUnit};
    use crate::metrics::store::{
        AnalysisResult, AnalysisSpec, FailureReason, LastError, RunningTask,
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
            running: Some(RunningTask {
                id: "task-<2>".into(),
                status: "running".into(),
                since: JAN1 + 3600.0,
            }),
            progress: None,
            consecutive_failures: 1,
            failures: BTreeMap::new(),
            tasks_created: 2,
            tasks_adopted: 0,
            result: Some(Arc::new(AnalysisResult {
                task_id: "task-1".into(),
                scan_type: Some(ScanType::Manual),
                created_at: Some(JAN1),
                started_at: Some(JAN1),
                finished_at: Some(JAN1 + 60.0),
                key_count: 8,
                keys,
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
            }],
        }));
        let inst = InstanceState {
            id: "5560df16-id".into(),
            name: "orders-<b>cache</b>".into(),
            lfu_log_factor: 10,
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
        assert!(page
            .contains("2024-01-01 00:30:00 UTC (1h 30m ago) · <span class=\"bad\">timeout</span>"));
        assert!(page.contains("task-&lt;2&gt; (running) since 2024-01-01 01:00:00 UTC (1h 0m ago)"));
        assert!(page.contains("<td>observe</td>"));
        assert!(page.contains("70000 count"));
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
        result.keys[0].name = h(10);
        result.keys[0].shard = Some(h(11));
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
}
