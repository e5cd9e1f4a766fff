//! The top key families of a key family result on the status page, as `/metrics` exports
//! them (privacy rules applied): keys, keys that never expire (where the source counts them:
//! Redis and Valkey targets) and memory, in the same units as the rest of the page.

use std::fmt::Write as _;

use super::text::{display_key, esc, human_bytes, thousands};
use super::TOP_KEYS;
use crate::metrics::families::OTHER;
use crate::metrics::keyrewrite::export_key;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::AnalysisResult;

/// A count for people, saturating at `i64::MAX`.
fn count(n: u64) -> String {
    thousands(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The largest key families of `result` (not `other`), at most [`TOP_KEYS`].
pub(super) fn table(h: &mut String, result: &AnalysisResult, keys: &RenderOptions) {
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
    let ttl = shown.iter().any(|f| f.keys_without_ttl.is_some());
    h.push_str(
        "<table class=\"keys families\">\n<tr><th>top family</th><th>type</th><th>shard</th>\
         <th>keys</th>",
    );
    if ttl {
        h.push_str("<th title=\"keys that never expire (PTTL -1)\">without TTL</th>");
    }
    h.push_str("<th>memory</th></tr>\n");
    for f in shown {
        let label = export_key(&f.family, &keys.key_rewrite, &keys.key_label);
        let _ = write!(
            h,
            "<tr><td class=\"key\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&display_key(&label)),
            esc(&f.key_type),
            esc(&f.shard),
            count(f.keys),
        );
        if ttl {
            let n = f.keys_without_ttl.map_or_else(|| "?".to_owned(), count);
            let _ = write!(h, "<td>{n}</td>");
        }
        let bytes = i64::try_from(f.memory_bytes).unwrap_or(i64::MAX);
        let _ = writeln!(h, "<td>{}</td></tr>", human_bytes(bytes));
    }
    h.push_str("</table>\n");
}
