//! One analysis in an instance's details: its state table (mode, support, last success, last
//! error, the task or scan running now, failures in a row) in the words of the instance's kind
//! (DCS tasks, or scans of a Redis or Valkey server), then the top keys, key families or hot
//! slots of its newest result.
//!
//! The key families of a Redis or Valkey target have no schedule of their own: every big key
//! scan counts them. Their table therefore shows the big key scan's support, run and failures,
//! and says that they come with it, so a failing big key scan never hides behind a key family
//! analysis that looks fine.

use std::fmt::Write as _;

use super::text::{display_key, esc, size_text, thousands, when};
use super::{families, hot, TOP_KEYS};
use crate::dcs::Analysis;
use crate::metrics::keyrewrite::export_key;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::{AnalysisState, FailureReason, InstanceState, LastError};

/// The details of `analysis` of `inst`, whose own state is `st`.
pub(super) fn analysis(
    h: &mut String,
    inst: &InstanceState,
    analysis: Analysis,
    st: &AnalysisState,
    now: f64,
    keys: &RenderOptions,
) {
    let native = inst.native;
    // The big key scan that the key families of a Redis or Valkey target come with.
    let scan = match analysis {
        Analysis::Keyfamily if native => inst.analyses.get(&Analysis::Bigkey),
        _ => None,
    };
    let run = scan.unwrap_or(st);
    let mode = match scan {
        Some(_) => "with the big key scan (its interval and timeout)".to_owned(),
        None => esc(st.spec.mode),
    };
    let _ = write!(
        h,
        "<h3>{}</h3>\n<table class=\"state\">\n<tr><th>mode</th><td>{mode}</td></tr>\n",
        analysis.as_str(),
    );
    let supported = if run.supported {
        "<span class=\"ok\">yes</span>".to_owned()
    } else {
        let next = run
            .recheck_at
            .map_or_else(|| "at the next check".to_owned(), |t| when(t, now));
        let why = match scan {
            Some(_) => format!(
                "the big key scan they come with cannot run: {}",
                hot::unsupported(Analysis::Bigkey, native)
            ),
            None => hot::unsupported(analysis, native).to_owned(),
        };
        format!(
            "<span class=\"na\">no: {why}. Not an error: asked again {next}, or at once on a \
             config reload</span>"
        )
    };
    let _ = writeln!(h, "<tr><th>supported</th><td>{supported}</td></tr>");

    h.push_str("<tr><th>last success</th><td>");
    last_success(h, analysis, st, native, now);
    h.push_str("</td></tr>\n<tr><th>last error</th><td>");
    match scan {
        Some(big) => scan_error(h, big, st.result.is_some(), now),
        None => match &st.last_error {
            Some(e) => error(h, e, now),
            None => h.push_str("none"),
        },
    }
    let _ = write!(
        h,
        "</td></tr>\n<tr><th>{}</th><td>",
        if native {
            "running scan"
        } else {
            "running task"
        }
    );
    running(h, run, scan.is_some(), now);
    if let Some(t) = st.touch.as_ref().filter(|t| t.touches) {
        let _ = write!(
            h,
            "</td></tr>\n<tr><th>touches keys</th><td><span class=\"bad\">yes</span>: {}",
            esc(&t.why)
        );
    }
    let failures = if run.consecutive_failures > 0 {
        format!("<span class=\"bad\">{}</span>", run.consecutive_failures)
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
    match analysis {
        Analysis::Keyfamily => families::table(h, result, keys),
        Analysis::Hotslot => hot::slots(h, result),
        Analysis::Hotkey | Analysis::Bigkey => key_table(h, analysis, result, keys),
    }
}

/// When the newest result finished, its task or scan, and where it came from.
fn last_success(h: &mut String, analysis: Analysis, st: &AnalysisState, native: bool, now: f64) {
    let Some(r) = &st.result else {
        h.push_str("never");
        return;
    };
    match r.finished_at {
        Some(t) => h.push_str(&when(t, now)),
        None => h.push_str("finish time unknown"),
    }
    let counted = match (native, analysis) {
        (true, Analysis::Keyfamily) => "keys counted",
        (_, Analysis::Hotslot) => "slots polled",
        _ => "keys reported",
    };
    let _ = write!(
        h,
        " · {} {} · {} {counted}",
        if native { "scan" } else { "task" },
        esc(&r.task_id),
        thousands(i64::try_from(r.key_count).unwrap_or(i64::MAX))
    );
    if native {
        // A scan the exporter ran itself: DCS's manual and auto scans do not apply.
        return;
    }
    match r.scan_type.as_ref().map(|s| s.as_str()) {
        Some("manual") => h.push_str(
            " · manual scan (a task created through the API: by this exporter or in the DCS \
             console)",
        ),
        Some("auto") => h.push_str(" · auto scan (DCS's daily schedule)"),
        Some(other) => {
            let _ = write!(h, " · {} scan", esc(other));
        }
        None => {}
    }
}

/// A failure: when, the reason (grey when the analysis is unsupported, else red) and the message.
fn error(h: &mut String, e: &LastError, now: f64) {
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

/// The last error of key families that come with the big key scan `big`: theirs is the scan's.
/// `kept`: the families of an earlier success are still exported.
fn scan_error(h: &mut String, big: &AnalysisState, kept: bool, now: f64) {
    h.push_str("none of their own: they come with the big key scan");
    match (&big.last_error, big.consecutive_failures) {
        (Some(e), n) if n > 0 => {
            let _ = write!(
                h,
                ", whose last {} failed: ",
                if n == 1 {
                    "attempt".to_owned()
                } else {
                    format!("{n} attempts")
                }
            );
            error(h, e, now);
            if kept {
                h.push_str(" (the families of its last success stay exported)");
            }
        }
        _ => h.push_str(", which has not failed since its last success"),
    }
}

/// The task (DCS) or scan (Redis and Valkey targets) running now, with its progress.
fn running(h: &mut String, st: &AnalysisState, big_key_scan: bool, now: f64) {
    let Some(t) = &st.running else {
        h.push_str("none");
        return;
    };
    if big_key_scan {
        h.push_str("the big key scan ");
    }
    let _ = write!(
        h,
        "{} ({}) since {}",
        esc(&t.id),
        esc(&t.status),
        when(t.since, now)
    );
    if let Some(p) = &st.progress {
        let n = |v: u64| thousands(i64::try_from(v).unwrap_or(i64::MAX));
        let _ = write!(
            h,
            "; {} of {} keys scanned",
            n(p.keys_scanned),
            n(p.keys_total)
        );
        if let Some(eta) = p.estimated_completion() {
            let _ = write!(h, ", done about {}", when(eta, now));
        }
        if let (true, Some(d)) = (p.misses_deadline(), p.deadline) {
            let _ = write!(
                h,
                "; <span class=\"bad\">cut off by its timeout {} before it can finish</span> \
                 (set the target's timeout to auto, or raise it or throttle.keys_per_second)",
                when(d, now)
            );
        }
    }
}

/// The top keys of a hot or big key result, as `/metrics` exports them.
fn key_table(
    h: &mut String,
    analysis: Analysis,
    result: &crate::metrics::store::AnalysisResult,
    keys: &RenderOptions,
) {
    hot::sources(h, result);
    if result.keys.is_empty() {
        h.push_str("<p>The newest result reported no keys.</p>\n");
        return;
    }
    let hot_keys = analysis == Analysis::Hotkey;
    let value_header = if hot_keys {
        hot::header(result)
    } else {
        "size"
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
        let value = if hot_keys {
            hot::measure(&k)
        } else {
            size_text(&k)
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
