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
//! (red): it is a property of the instance, not an error. Its details say when it is asked
//! again (every interval for a Redis or Valkey server, once a day on DCS, and at once on a
//! config reload).
//!
//! The page has inline CSS, no scripts and no external assets. Everything that comes from DCS or
//! the config (names, ids, messages, key names) is hostile text: it is HTML-escaped, and control
//! characters in key names are shown as escapes.
//!
//! This module lays out the page; `text` writes the values in it (escaping, key names, sizes,
//! times and ages); `hot` the hot key sources and hot slots of Redis and Valkey targets.

use std::fmt::Write as _;

use crate::dcs::Analysis;
use crate::metrics::families::OTHER;
use crate::metrics::keyrewrite::export_key;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::{
    AnalysisResult, AnalysisState, FailureReason, InstanceState, Snapshot,
};
pub use text::esc;
use text::{ago, display_key, size_text, utc, when};

mod hot;
#[cfg(test)]
mod tests;
mod text;

/// Keys shown per analysis.
pub const TOP_KEYS: usize = 5;
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
         (managed Redis), and of Redis and Valkey servers it scans itself. It runs the analyses \
         on a schedule (or picks up existing ones) and exports the newest completed result of \
         each.</p>\n",
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
        h.push_str(hot::LEGEND);
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
error. Asked again at the time its details show: every interval for a Redis or Valkey server \
(two commands), once a day on DCS; and at once on a config reload (SIGHUP or \
<code>POST /-/reload</code>).</dd>\n\
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
        "<h2 id=\"summary\">Summary <span class=\"muted\">{n} instance{s} · analyses: {ok} ok, \
         {running} running, {failing} failing, {unsupported} unsupported</span></h2>\n\
         <table class=\"summary\">\n<tr><th>instance</th><th>hot key analysis</th>\
         <th>big key analysis</th><th>last success</th><th>hottest key</th><th>freq</th>\
         <th>biggest key</th><th>size</th></tr>\n",
        n = instances.len(),
        s = if instances.len() == 1 { "" } else { "s" },
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
                let freq = hot::measure(&k);
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
                    size_text(&k)
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
fn biggest_key(keys: &crate::metrics::keylist::KeyList) -> Option<crate::dcs::KeyRecord> {
    use crate::dcs::SizeUnit;
    let ratio = |k: &crate::dcs::KeyRecord| {
        let size = k.size.unwrap_or(0) as f64;
        match k.unit {
            Some(SizeUnit::Count) => size / 5000.0,
            _ => size / 10240.0,
        }
    };
    keys.iter()
        .filter(|k| k.size.is_some())
        .fold(None, |best: Option<crate::dcs::KeyRecord>, k| match best {
            Some(b) if ratio(&b) >= ratio(&k) => Some(b),
            _ => Some(k),
        })
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
        "<span class=\"ok\">yes</span>".to_owned()
    } else {
        let next = st
            .recheck_at
            .map_or_else(|| "at the next check".to_owned(), |t| when(t, now));
        format!(
            "<span class=\"na\">no: {}. Not an error: asked again {next}, or at once on a \
             config reload</span>",
            hot::unsupported(analysis)
        )
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
                if let (true, Some(d)) = (p.misses_deadline(), p.deadline) {
                    let _ = write!(
                        h,
                        "; <span class=\"bad\">cut off by its timeout {} before it can \
                         finish</span> (set the target's timeout to auto, or raise it or \
                         throttle.keys_per_second)",
                        when(d, now)
                    );
                }
            }
        }
        None => h.push_str("none"),
    }
    if let Some(t) = st.touch.as_ref().filter(|t| t.touches) {
        let _ = write!(
            h,
            "</td></tr>\n<tr><th>touches keys</th><td><span class=\"bad\">yes</span>: {}",
            esc(&t.why)
        );
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
    if analysis == Analysis::Hotslot {
        hot::slots(h, result);
        return;
    }
    hot::sources(h, result);
    if result.keys.is_empty() {
        h.push_str("<p>The newest result reported no keys.</p>\n");
        return;
    }
    let value_header = match analysis {
        Analysis::Hotkey => hot::header(result),
        Analysis::Bigkey | Analysis::Keyfamily | Analysis::Hotslot => "size",
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
        let label = export_key(&k.name, &keys.key_rewrite, &keys.key_label).into_owned();
        let id = (label.clone(), k.key_type.clone(), k.db, k.shard.clone());
        seen.insert(id).then_some((label, k))
    });
    for (label, k) in shown.take(TOP_KEYS) {
        let value = match analysis {
            Analysis::Hotkey => hot::measure(&k),
            Analysis::Bigkey | Analysis::Keyfamily | Analysis::Hotslot => size_text(&k),
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
