//! The summary at the top of the status page: one row per instance with the state of each
//! analysis the fleet has (one column each), the newest key result, and the hottest and
//! biggest key; its heading counts the very cells the table shows.

use std::fmt::Write as _;

use super::text::{ago, display_key, esc, size_text, utc};
use super::{anchor, hot};
use crate::dcs::{Analysis, KeyRecord, SizeUnit};
use crate::metrics::keylist::KeyList;
use crate::metrics::keyrewrite::export_key;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::{AnalysisState, InstanceState};

/// Characters of a key name shown in the summary (the cell also cuts it to its width).
const SUMMARY_KEY_CHARS: usize = 60;

/// The heading of an analysis' column.
fn column_name(analysis: Analysis) -> &'static str {
    match analysis {
        Analysis::Hotkey => "hot keys",
        Analysis::Bigkey => "big keys",
        Analysis::Keyfamily => "key families",
        Analysis::Hotslot => "hot slots",
    }
}

/// The analyses that get a column: every one that some instance has, in the order of
/// [`Analysis`]. Hot and big keys always do, as before any instance is configured.
fn columns(instances: &[&InstanceState]) -> Vec<Analysis> {
    let mut cols = vec![Analysis::Hotkey, Analysis::Bigkey];
    for a in [Analysis::Keyfamily, Analysis::Hotslot] {
        if instances.iter().any(|i| i.analyses.contains_key(&a)) {
            cols.push(a);
        }
    }
    cols
}

/// The summary table: one row per instance (in the order given), linking to its details.
pub(super) fn summary(
    h: &mut String,
    instances: &[&InstanceState],
    now: f64,
    keys: &RenderOptions,
) {
    let cols = columns(instances);
    let (mut ok, mut failing, mut unsupported, mut running, mut waiting) = (0, 0, 0, 0, 0);
    for inst in instances {
        for a in &cols {
            match inst.analyses.get(a).map(|st| state(inst, *a, st)) {
                Some(State::Unsupported) => unsupported += 1,
                Some(State::Failing(_)) => failing += 1,
                Some(State::Running) => running += 1,
                Some(State::Ok) => ok += 1,
                Some(State::Waiting) => waiting += 1,
                None => {}
            }
        }
    }
    let _ = write!(
        h,
        "<h2 id=\"summary\">Summary <span class=\"muted\">{n} instance{s} · analyses: {ok} ok, \
         {running} running, {failing} failing, {unsupported} unsupported, {waiting} waiting\
         </span></h2>\n<table class=\"summary\">\n<tr><th>instance</th>",
        n = instances.len(),
        s = if instances.len() == 1 { "" } else { "s" },
    );
    for a in &cols {
        let _ = write!(h, "<th>{}</th>", column_name(*a));
    }
    let hottest: Vec<Option<KeyRecord>> = instances
        .iter()
        .map(|inst| {
            inst.analyses
                .get(&Analysis::Hotkey)
                .and_then(|st| st.result.as_ref()?.keys.first())
        })
        .collect();
    // The column says `freq` when every hottest key is measured by its LFU counter.
    let measure = if hottest.iter().flatten().all(|k| k.freq.is_some()) {
        "freq"
    } else {
        "measure"
    };
    let _ = writeln!(
        h,
        "<th>last success</th><th>hottest key</th><th>{measure}</th><th>biggest key</th>\
         <th>size</th></tr>"
    );
    for (n, inst) in instances.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td><a href=\"#{}\" title=\"{}\">{}</a></td>",
            esc(&anchor(&inst.id, n)),
            esc(&inst.id),
            esc(&inst.name)
        );
        for a in &cols {
            let cell = match inst.analyses.get(a) {
                Some(st) => state(inst, *a, st).html(),
                None => "<span class=\"na\">off</span>".to_owned(),
            };
            let _ = write!(h, "<td>{cell}</td>");
        }
        // The newer of the hot and big key results, as an age: hot slots (every minute) and
        // key families (with the big key scan, or daily on DCS) would hide a stale key result.
        let last = [Analysis::Hotkey, Analysis::Bigkey]
            .iter()
            .filter_map(|a| inst.analyses.get(a)?.result.as_ref()?.finished_at)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        match last {
            Some(t) => {
                let _ = write!(h, "<td title=\"{}\">{}</td>", utc(t), ago(t, now));
            }
            None => h.push_str("<td class=\"na\">never</td>"),
        }
        match &hottest[n] {
            Some(k) => {
                let _ = write!(
                    h,
                    "{}<td class=\"num\">{}</td>",
                    key_cell(&export_key(&k.name, &keys.key_rewrite, &keys.key_label)),
                    hot::measure(k)
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

/// The big key furthest over the big key thresholds: size / 10 KiB for strings (bytes),
/// elements / 5,000 for collections. Bytes and elements cannot be compared directly.
pub(super) fn biggest_key(keys: &KeyList) -> Option<KeyRecord> {
    let ratio = |k: &KeyRecord| {
        let size = k.size.unwrap_or(0) as f64;
        match k.unit {
            Some(SizeUnit::Count) => size / 5000.0,
            _ => size / 10240.0,
        }
    };
    keys.iter()
        .filter(|k| k.size.is_some())
        .fold(None, |best: Option<KeyRecord>, k| match best {
            Some(b) if ratio(&b) >= ratio(&k) => Some(b),
            _ => Some(k),
        })
}

/// The state of one analysis, most important first.
#[derive(Debug, PartialEq)]
pub(super) enum State {
    Unsupported,
    Failing(u64),
    Running,
    Ok,
    Waiting,
}

/// The state of `analysis` of `inst` (`st` its own state). The key families of a Redis or
/// Valkey target come with its big key scan: they are running, failing or unsupported when
/// that scan is, and ok or waiting by their own result.
pub(super) fn state(inst: &InstanceState, analysis: Analysis, st: &AnalysisState) -> State {
    let own = own_state(st);
    if let (true, Analysis::Keyfamily) = (inst.native, analysis) {
        if let Some(big) = inst.analyses.get(&Analysis::Bigkey) {
            return match own_state(big) {
                State::Ok | State::Waiting => own,
                scan => scan,
            };
        }
    }
    own
}

fn own_state(st: &AnalysisState) -> State {
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
    pub(super) fn html(&self) -> String {
        match self {
            State::Unsupported => "<span class=\"na\">unsupported</span>".to_owned(),
            State::Failing(n) => format!("<span class=\"bad\">failing ×{n}</span>"),
            State::Running => "<span class=\"run\">running</span>".to_owned(),
            State::Ok => "<span class=\"ok\">ok</span>".to_owned(),
            State::Waiting => "<span class=\"na\">waiting</span>".to_owned(),
        }
    }
}
