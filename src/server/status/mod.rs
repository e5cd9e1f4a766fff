//! The status page served at `/`: a self-contained HTML summary of the snapshot.
//!
//! First a summary with one row per instance (the state of each analysis the fleet has, the
//! newest key result, hottest and biggest key), each linking to the instance's details further
//! down: one section per instance and one table per analysis (mode, support, last success, last
//! error, running task or scan, consecutive failures and the top keys of the newest result; the
//! top key families, for the key family analysis, beside the instance's top keys). A row stays
//! one line high, so a fleet of 300 instances fits in a few screens. Sizes are human-readable
//! (`12.5 KiB`, `70,000 elements`).
//!
//! Each instance is described in its own words: a DCS instance has tasks, manual and auto scans
//! and answers from DCS; a Redis or Valkey server that the exporter scans itself has scans and
//! answers from the server. The legend explains the words of the kinds the page shows.
//!
//! An analysis the instance does not support is shown as unsupported (grey), not as failing
//! (red): it is a property of the instance, not an error. Its details say when it is asked
//! again (every interval for a Redis or Valkey server, once a day on DCS, and at once on a
//! config reload).
//!
//! The page has inline CSS, no scripts and no external assets. Everything that comes from DCS,
//! the servers or the config (names, ids, messages, key names) is hostile text: it is
//! HTML-escaped, and control characters in key names are shown as escapes.
//!
//! This module lays out the page; `summary` writes the summary table, `details` each
//! analysis' details, `families` the key family tables, `hot` the hot key sources and hot
//! slots of Redis and Valkey targets, and `text` the values (escaping, key names, sizes, times
//! and ages).

use std::fmt::Write as _;

use crate::metrics::render::RenderOptions;
use crate::metrics::store::{InstanceState, Snapshot};
pub use text::esc;
use text::utc;

mod details;
mod families;
mod hot;
#[cfg(test)]
mod native_tests;
mod summary;
#[cfg(test)]
mod tests;
mod text;

/// Keys shown per analysis.
pub const TOP_KEYS: usize = 5;

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
        summary::summary(&mut h, &ordered, now_unix, keys);
        legend(
            &mut h,
            ordered.iter().any(|i| !i.native),
            ordered.iter().any(|i| i.native),
        );
    }
    for (n, inst) in ordered.iter().enumerate() {
        instance(&mut h, inst, &anchor(&inst.id, n), now_unix, keys);
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// What the words on the page mean, for the kinds of instance it shows: DCS instances
/// (`dcs`), Redis or Valkey servers (`native`), or both.
fn legend(h: &mut String, dcs: bool, native: bool) {
    let running = match (dcs, native) {
        (true, true) => {
            "a DCS task is waiting or running and the exporter follows it, or the exporter \
             scans a Redis or Valkey server now"
        }
        (true, false) => "a task is waiting or running in DCS and the exporter follows it",
        _ => "the exporter scans the server now; the details show how far it got",
    };
    let unsupported = match (dcs, native) {
        (true, true) => {
            "the instance cannot run this analysis, as DCS or the server answered (hot keys \
             need an LFU <code>maxmemory-policy</code>, or on a Redis or Valkey server another \
             hot key source). Not an error. Asked again at the time its details show: once a \
             day on DCS, every interval for a Redis or Valkey server (two commands)"
        }
        (true, false) => {
            "the instance cannot run this analysis, as DCS answered: hot keys need Redis 4.0 or \
             later and an LFU <code>maxmemory-policy</code>. Not an error. Asked again at the \
             time its details show (once a day)"
        }
        _ => {
            "the server cannot run this analysis (the details say why and what would change \
             it: hot keys need a hot key source, hot slots a Redis Cluster). Not an error. Asked \
             again at the time its details show (every interval; two commands)"
        }
    };
    let _ = write!(
        h,
        "<dl class=\"legend\">\n\
         <dt>ok</dt><dd>the analysis has a result, and no attempt failed since.</dd>\n\
         <dt>running</dt><dd>{running}.</dd>\n\
         <dt>failing ×N</dt><dd>the last N attempts produced no result; the last good result \
         stays exported. The details below give the error.</dd>\n\
         <dt>unsupported</dt><dd>{unsupported}; and at once on a config reload (SIGHUP or \
         <code>POST /-/reload</code>).</dd>\n\
         <dt>waiting</dt><dd>no result yet and no failure: the first analysis has not \
         finished.</dd>\n"
    );
    if native {
        h.push_str(
            "<dt>key families</dt><dd>Redis and Valkey servers: counted by every big key scan, \
             so they show the big key scan's state, and its failures.</dd>\n",
        );
    }
    if dcs {
        h.push_str(
            "<dt>manual scan</dt><dd>DCS: the result comes from a task created through the DCS \
             API: by this exporter (<code>trigger</code> mode) or by someone in the DCS console. \
             An <em>auto scan</em> is a run of DCS's own daily auto-scan schedule. The exporter \
             publishes the newest successful result of either kind.</dd>\n",
        );
    }
    let _ = write!(
        h,
        "<dt>last success</dt><dd>in the summary: when the newer of the instance's hot key and \
         big key results finished; each analysis' own is in the instance's details.</dd>\n\
         <dt>biggest key</dt><dd>the big key furthest over the big key thresholds: a string \
         over 10 KiB, or a collection over 5,000 elements ({}).</dd>\n\
         <dt>freq</dt><dd>the LFU counter (0–255, logarithmic); 255 is its cap, reached after \
         about 311,500 accesses at <code>lfu-log-factor</code> 10.</dd>\n</dl>\n",
        if dcs {
            "DCS's definition of a big key, and the alerts' defaults"
        } else {
            "the alerts' defaults"
        }
    );
    if native {
        h.push_str(hot::LEGEND);
    }
}

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
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", about(inst.native, info));
    }
    if inst.analyses.is_empty() {
        h.push_str("<p>No analyses enabled.</p>\n");
    }
    for (analysis, state) in &inst.analyses {
        details::analysis(h, inst, *analysis, state, now, keys);
    }
    h.push_str("</section>\n");
}

/// What is known of the instance (HTML-safe): the engine and its version, and for DCS the spec
/// and status, for a Redis or Valkey server its topology. Unknown parts are left out.
fn about(native: bool, info: &crate::dcs::InstanceInfo) -> String {
    let engine = [&info.engine, &info.engine_version]
        .into_iter()
        .flatten()
        .map(|s| esc(s))
        .collect::<Vec<_>>()
        .join(" ");
    let mut parts = vec![format!(
        "engine {}",
        if engine.is_empty() { "?" } else { &engine }
    )];
    if native {
        if let Some(kind) = &info.spec_code {
            parts.push(match info.sharding_count {
                Some(n) if kind == "cluster" => format!("cluster of {n} shards"),
                _ => esc(kind),
            });
        }
    } else {
        if let Some(spec) = &info.spec_code {
            parts.push(format!("spec {}", esc(spec)));
        }
        if let Some(status) = &info.status {
            parts.push(format!("status {}", esc(status)));
        }
    }
    parts.join(" · ")
}
