//! The status page served at `/`: a self-contained HTML summary of the snapshot.
//!
//! First a summary with one row per instance (state of each analysis, last success, hottest and
//! biggest key), each linking to the instance's details further down: one section per instance
//! and one table per analysis (mode, support, last success, last error, running task, consecutive
//! failures and the top keys of the newest result; the top key families, for the key family
//! analysis, beside the instance's top keys). A row stays one line high, so a fleet of 300
//! instances fits in a few screens. Sizes are human-readable (`12.5 KiB`, `70,000 elements`).
//!
//! An analysis the instance does not support is shown as unsupported (grey), not as failing
//! (red): it is a property of the instance, re-checked daily, not an error.
//!
//! The page has inline CSS, no scripts and no external assets. Everything that comes from DCS or
//! the config (names, ids, messages, key names) is hostile text: it is HTML-escaped, and control
//! characters in key names are shown as escapes.

use std::fmt::Write as _;

use time::macros::format_description;
use time::OffsetDateTime;

use crate::dcs::Analysis;
use crate::metrics::families::OTHER;
use crate::metrics::keyrewrite::export_key;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::{
    AnalysisResult, AnalysisState, FailureReason, InstanceState, Snapshot,
};

/// Keys shown per analysis.
pub const TOP_KEYS: usize = 5;
/// Characters of a key name shown before it is cut with `…`.
const KEY_DISPLAY_CHARS: usize = 120;

/// Characters of a key name shown in the summary (the cell also cuts it to its width).
const SUMMARY_KEY_CHARS: usize = 60;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:84em}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
.id,.muted{color:#666;font-weight:normal;font-size:.85em}\
table{border-collapse:collapse;margin:.4em 0 1em}\
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}table.state th{width:12em}\
td.key{font-family:monospace;word-break:break-all}.bad{color:#a00}.ok{color:#070}\
.na{color:#777}.run{color:#05a}\
table.summary{font-size:.85em}table.summary td,table.summary th{padding:.1em .5em;\
white-space:nowrap;line-height:1.3}\
table.summary td.num{text-align:right}\
span.k{display:inline-block;max-width:18em;overflow:hidden;text-overflow:ellipsis;\
vertical-align:bottom;font-family:monospace}\
dl.legend{font-size:.85em;color:#444}dl.legend dt{font-weight:bold;float:left;clear:left;\
width:9em}dl.legend dd{margin-left:9.5em}";

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
         <p class=\"muted\">Version {v} (revision {r}) · page generated {t}</p>\n",
        p = esc(telemetry_path),
        v = esc(env!("CARGO_PKG_VERSION")),
        r = esc(crate::REVISION),
        t = utc(now_unix),
    );
    // By name (then id), in the summary and in the details alike.
    let mut ordered: Vec<&InstanceState> = snapshot.instances.values().collect();
    ordered.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    if ordered.is_empty() {
        h.push_str("<p>No instances are configured or discovered yet.</p>\n");
    } else {
        summary(&mut h, &ordered, now_unix, keys);
        h.push_str(LEGEND);
    }
    for (n, inst) in ordered.iter().enumerate() {
        instance(&mut h, inst, &anchor(&inst.id, n), now_unix, keys);
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// What the words on the page mean.
const LEGEND: &str = "<dl class=\"legend\">\n\
<dt>ok</dt><dd>the analysis has a result, and no attempt failed since.</dd>\n\
<dt>running</dt><dd>a task is waiting or running in DCS and the exporter follows it.</dd>\n\
<dt>failing ×N</dt><dd>the last N attempts produced no result; the last good result stays \
exported. The details below give the error.</dd>\n\
<dt>unsupported</dt><dd>the instance cannot run this analysis, as DCS (or the Redis server) \
answered: hot keys need Redis 4.0 or later and an LFU <code>maxmemory-policy</code>. Not an \
error: asked again once a day.</dd>\n\
<dt>waiting</dt><dd>no result yet and no failure: the first analysis has not finished.</dd>\n\
<dt>manual scan</dt><dd>the result comes from a task created through the DCS API: by this \
exporter (<code>trigger</code> mode) or by someone in the DCS console. An <em>auto scan</em> is \
a run of DCS's own daily auto-scan schedule. The exporter publishes the newest successful \
result of either kind.</dd>\n\
<dt>last success</dt><dd>in the summary: when the newer of the instance's two analysis \
results finished, whichever analysis it was; each analysis' own is in the instance's details.</dd>\n\
<dt>biggest key</dt><dd>the big key furthest over DCS's definition of a big key: a string \
over 10 KiB, or a collection over 5,000 elements.</dd>\n\
<dt>freq</dt><dd>the LFU counter (0–255, logarithmic); 255 is its cap, reached after about \
311,500 accesses at <code>lfu-log-factor</code> 10.</dd>\n\
</dl>\n";

/// The id of an instance's section: `i-` and the instance id when it is made of letters, digits,
/// `-` and `_` (DCS ids are UUIDs), else `n-` and its position (so the anchor is always a safe
/// and unique URL fragment).
fn anchor(id: &str, position: usize) -> String {
    let safe = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        format!("i-{id}")
    } else {
        format!("n-{position}")
    }
}

/// The summary table: one row per instance (in the order given), linking to its details.
fn summary(h: &mut String, instances: &[&InstanceState], now: f64, keys: &RenderOptions) {
    let (mut ok, mut failing, mut unsupported, mut running) = (0, 0, 0, 0);
    for st in instances.iter().flat_map(|i| i.analyses.values()) {
        match state(st) {
            State::Unsupported => unsupported += 1,
            State::Failing(_) => failing += 1,
            State::Running => running += 1,
            State::Ok => ok += 1,
            State::Waiting => {}
        }
    }
    let _ = write!(
        h,
        "<h2 id=\"summary\">Summary <span class=\"muted\">{n} instances · analyses: {ok} ok, \
         {running} running, {failing} failing, {unsupported} unsupported</span></h2>\n\
         <table class=\"summary\">\n<tr><th>instance</th><th>hot key analysis</th>\
         <th>big key analysis</th><th>last success</th><th>hottest key</th><th>freq</th>\
         <th>biggest key</th><th>size</th></tr>\n",
        n = instances.len(),
    );
    for (n, inst) in instances.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td><a href=\"#{}\" title=\"{}\">{}</a></td>",
            esc(&anchor(&inst.id, n)),
            esc(&inst.id),
            esc(&inst.name)
        );
        for analysis in [Analysis::Hotkey, Analysis::Bigkey] {
            let cell = match inst.analyses.get(&analysis) {
                Some(st) => state(st).html(),
                None => "<span class=\"na\">off</span>".to_owned(),
            };
            let _ = write!(h, "<td>{cell}</td>");
        }
        // The newest success of any analysis, as an age.
        let last = inst
            .analyses
            .values()
            .filter_map(|st| st.result.as_ref()?.finished_at)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        match last {
            Some(t) => {
                let _ = write!(h, "<td title=\"{}\">{}</td>", utc(t), ago(t, now));
            }
            None => h.push_str("<td class=\"na\">never</td>"),
        }
        let hottest = inst
            .analyses
            .get(&Analysis::Hotkey)
            .and_then(|st| st.result.as_ref()?.keys.first());
        match hottest {
            Some(k) => {
                let freq = k.freq.map_or_else(|| "?".to_owned(), |f| f.to_string());
                let _ = write!(
                    h,
                    "{}<td class=\"num\">{freq}</td>",
                    key_cell(&export_key(&k.name, &keys.key_rewrite, &keys.key_label))
                );
            }
            None => h.push_str("<td></td><td></td>"),
        }
        let biggest = inst
            .analyses
            .get(&Analysis::Bigkey)
            .and_then(|st| biggest_key(&st.result.as_ref()?.keys));
        match biggest {
            Some(k) => {
                let _ = write!(
                    h,
                    "{}<td class=\"num\">{}</td>",
                    key_cell(&export_key(&k.name, &keys.key_rewrite, &keys.key_label)),
                    size_text(k)
                );
            }
            None => h.push_str("<td></td><td></td>"),
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// A key in a summary cell: cut to fit, the whole (displayable) name as its tooltip.
fn key_cell(label: &str) -> String {
    let shown = display_key(label);
    let short: String = shown.chars().take(SUMMARY_KEY_CHARS).collect();
    let short = if short.len() < shown.len() {
        format!("{short}…")
    } else {
        short
    };
    format!(
        "<td><span class=\"k\" title=\"{}\">{}</span></td>",
        esc(&shown),
        esc(&short)
    )
}

/// The big key furthest over DCS's definition of a big key: size / 10 KiB for strings (bytes),
/// elements / 5,000 for collections. Bytes and elements cannot be compared directly.
fn biggest_key(keys: &[crate::dcs::KeyRecord]) -> Option<&crate::dcs::KeyRecord> {
    use crate::dcs::SizeUnit;
    let ratio = |k: &crate::dcs::KeyRecord| {
        let size = k.size.unwrap_or(0) as f64;
        match k.unit {
            Some(SizeUnit::Count) => size / 5000.0,
            _ => size / 10240.0,
        }
    };
    keys.iter().filter(|k| k.size.is_some()).fold(
        None,
        |best: Option<&crate::dcs::KeyRecord>, k| match best {
            Some(b) if ratio(b) >= ratio(k) => Some(b),
            _ => Some(k),
        },
    )
}

/// The state of one analysis, most important first.
enum State {
    Unsupported,
    Failing(u64),
    Running,
    Ok,
    Waiting,
}

fn state(st: &AnalysisState) -> State {
    if !st.supported {
        State::Unsupported
    } else if st.consecutive_failures > 0 {
        State::Failing(st.consecutive_failures)
    } else if st.running.is_some() {
        State::Running
    } else if st.result.is_some() {
        State::Ok
    } else {
        State::Waiting
    }
}

impl State {
    fn html(&self) -> String {
        match self {
            State::Unsupported => "<span class=\"na\">unsupported</span>".to_owned(),
            State::Failing(n) => format!("<span class=\"bad\">failing ×{n}</span>"),
            State::Running => "<span class=\"run\">running</span>".to_owned(),
            State::Ok => "<span class=\"ok\">ok</span>".to_owned(),
            State::Waiting => "<span class=\"na\">waiting</span>".to_owned(),
        }
    }
}

/// A key's size for people: `64 B`, `12.5 KiB`, `3.0 MiB` for bytes; `70,000 elements` for
/// collections. HTML-safe (an unknown unit from DCS is escaped).
fn size_text(k: &crate::dcs::KeyRecord) -> String {
    use crate::dcs::SizeUnit;
    match (k.size, &k.unit) {
        (Some(s), Some(SizeUnit::Byte)) => human_bytes(s),
        (Some(s), Some(SizeUnit::Count)) => {
            format!("{} element{}", thousands(s), if s == 1 { "" } else { "s" })
        }
        (Some(s), Some(u)) => format!("{} {}", thousands(s), esc(u.as_str())),
        (Some(s), None) => thousands(s),
        (None, _) => "?".to_owned(),
    }
}

/// Bytes in binary units with one decimal above 1 KiB: `512 B`, `1.5 KiB`, `20.0 MiB`.
fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n.unsigned_abs() < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// An integer with `,` between thousands: `70,000`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn instance(h: &mut String, inst: &InstanceState, anchor: &str, now: f64, keys: &RenderOptions) {
    let _ = write!(
        h,
        "<section id=\"{}\">\n<h2>{} <span class=\"id\">{}</span> \
         <a class=\"muted\" href=\"#summary\">↑ summary</a></h2>\n",
        esc(anchor),
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
        "<span class=\"na\">no: the instance cannot run it, as DCS (or the Redis server) \
         answered (hot keys need Redis 4.0 or later and an LFU maxmemory-policy). Not an \
         error: asked again once a day</span>"
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
            match r.scan_type.as_ref().map(|s| s.as_str()) {
                Some("manual") => h.push_str(
                    " · manual scan (a task created through the API: by this exporter or in \
                     the DCS console)",
                ),
                Some("auto") => h.push_str(" · auto scan (DCS's daily schedule)"),
                Some(other) => {
                    let _ = write!(h, " · {} scan", esc(other));
                }
                None => {}
            }
        }
        None => h.push_str("never"),
    }
    h.push_str("</td></tr>\n<tr><th>last error</th><td>");
    match &st.last_error {
        Some(e) => {
            let class = if e.reason == FailureReason::Unsupported {
                "na"
            } else {
                "bad"
            };
            let _ = write!(
                h,
                "{} · <span class=\"{class}\">{}</span>: {}",
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
    if analysis == Analysis::Keyfamily {
        family_table(h, result, keys);
        return;
    }
    if result.keys.is_empty() {
        h.push_str("<p>The newest result reported no keys.</p>\n");
        return;
    }
    let value_header = match analysis {
        Analysis::Hotkey => "freq",
        Analysis::Bigkey | Analysis::Keyfamily => "size",
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
            Analysis::Bigkey | Analysis::Keyfamily => size_text(k),
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

/// The largest key families of a key family result, as exported (privacy rules applied).
fn family_table(h: &mut String, result: &AnalysisResult, keys: &RenderOptions) {
    let shown: Vec<_> = result
        .families
        .iter()
        .filter(|f| f.family != OTHER)
        .take(TOP_KEYS)
        .collect();
    if shown.is_empty() {
        h.push_str("<p>The newest result reported no key families.</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"keys families\">\n<tr><th>top family</th><th>type</th><th>shard</th>\
         <th>keys</th><th>memory</th></tr>\n",
    );
    for f in shown {
        let label = export_key(&f.family, &keys.key_rewrite, &keys.key_label);
        let _ = writeln!(
            h,
            "<tr><td class=\"key\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} bytes</td></tr>",
            esc(&display_key(&label)),
            esc(&f.key_type),
            esc(&f.shard),
            f.keys,
            f.memory_bytes,
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

/// `3m 20s ago` (or `in 10s` for a time ahead of `now`).
fn ago(t: f64, now: f64) -> String {
    let delta = now - t;
    if delta >= 0.0 {
        format!("{} ago", age(delta))
    } else {
        format!("in {}", age(-delta))
    }
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
            last_counted_task: None,
            result: Some(Arc::new(AnalysisResult {
                task_id: "task-1".into(),
                scan_type: Some(ScanType::Manual),
                created_at: Some(JAN1),
                started_at: Some(JAN1),
                finished_at: Some(JAN1 + 60.0),
                key_count: 8,
                keys,
                shards: Default::default(),
                families: Vec::new(),
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
            shards: Default::default(),
            families: Vec::new(),
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
        assert!(big_state.contains("<span class=\"na\">no: the instance cannot run it"));
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
        };
        // 40 KiB is 4 times the 10 KiB string threshold; 30,000 elements 6 times the 5,000 one.
        let keys = [
            big("s", 40 * 1024, SizeUnit::Byte),
            big("h", 30_000, SizeUnit::Count),
            big("l", 6_000, SizeUnit::Count),
        ];
        assert_eq!(biggest_key(&keys).map(|k| k.name.as_str()), Some("h"));
        assert_eq!(biggest_key(&keys[..1]).map(|k| k.name.as_str()), Some("s"));
        assert!(biggest_key(&[]).is_none());
    }

    #[test]
    fn top_families_are_shown_beside_the_top_keys_as_exported() {
        use crate::metrics::families::KeyFamily;
        use crate::metrics::keylabel::KeyLabelMode;
        let fam = |name: &str, bytes: u64| KeyFamily {
            family: name.into(),
            key_type: "hash".into(),
            shard: "group-<0>".into(),
            keys: 3,
            memory_bytes: bytes,
            keys_without_ttl: None,
        };
        let mut snap = snapshot();
        let inst = snap.instances.values_mut().next().expect("one instance");
        let mut kf = inst.analyses[&Analysis::Hotkey].clone();
        kf.spec.analysis = Analysis::Keyfamily;
        let mut result = (**kf.result.as_ref().expect("result")).clone();
        result.keys.clear();
        result.families = (0..7)
            .map(|i| fam(&format!("fam{i}:"), 1000 - i))
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
        assert!(page.contains("<td>group-&lt;0&gt;</td><td>3</td><td>1000 bytes</td>"));
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
}
