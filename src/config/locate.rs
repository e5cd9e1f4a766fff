//! Finds the line of a config key (`clouds[0].instances[1].id`) in the YAML text, so that a
//! validation problem can say where it is, as the YAML parser's own errors do.
//!
//! A line-based walk of block-style YAML (the style of every example config): mapping keys are
//! found by their column, sequence items by their `- `. Flow style (`{a: 1}`, `[x]`) is not
//! walked into; the deepest key found is reported instead, so a problem inside a flow mapping,
//! or a required key that is missing, points at its parent.

/// One piece of a key path.
#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && out.is_empty() {
            return None;
        }
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Segment::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

/// A meaningful line: its 1-based number, the column of its first character, and the column
/// and text of what follows any `- ` item markers.
struct Line<'a> {
    number: usize,
    indent: usize,
    key_col: usize,
    content: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let mut content = trimmed;
        let mut key_col = indent;
        while let Some(rest) = content.strip_prefix("- ") {
            let inner = rest.trim_start_matches(' ');
            key_col += content.len() - inner.len();
            content = inner;
        }
        out.push(Line {
            number: i + 1,
            indent,
            key_col,
            content,
        });
    }
    out
}

/// Whether `content` is the mapping key `name` (`name:` followed by a space, a comment or the
/// end of the line; quoted names are accepted).
fn is_key(content: &str, name: &str) -> bool {
    let unquoted = [name.to_owned(), format!("\"{name}\""), format!("'{name}'")];
    unquoted.iter().any(|k| {
        content.strip_prefix(k.as_str()).is_some_and(|rest| {
            rest.strip_prefix(':')
                .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
        })
    })
}

/// Where a key path was found.
struct Found {
    /// Index (into `lines`) of the line holding the deepest segment found.
    at: usize,
    /// One past the index of the last line of that segment's value.
    end: usize,
    /// Whether every segment was found (else `at` is the deepest ancestor found).
    exact: bool,
}

fn find(lines: &[Line<'_>], path: &str) -> Option<Found> {
    let segs = segments(path)?;
    // The block being searched: line indices [lo, hi), whose first line may carry the first
    // key after a `- ` marker.
    let (mut lo, mut hi) = (0, lines.len());
    let mut found = None;
    let count = segs.len();
    for (n, seg) in segs.into_iter().enumerate() {
        let Some(first) = lines[lo..hi].first() else {
            break;
        };
        let block = &lines[lo..hi];
        match seg {
            Segment::Key(name) => {
                let col = first.key_col;
                let at = block
                    .iter()
                    .position(|l| l.key_col == col && is_key(l.content, name));
                let Some(at) = at else { break };
                let line = &block[at];
                // The value: following lines indented deeper, or a compact sequence at the same
                // column.
                let start = lo + at + 1;
                let end = lines[start..hi]
                    .iter()
                    .position(|l| {
                        let item = l.key_col > l.indent;
                        !(l.indent > line.key_col || (l.indent == line.key_col && item))
                    })
                    .map_or(hi, |p| start + p);
                found = Some(Found {
                    at: lo + at,
                    end,
                    exact: n + 1 == count,
                });
                (lo, hi) = (start, end);
            }
            Segment::Index(i) => {
                let col = first.indent;
                let items: Vec<usize> = block
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.indent == col && l.key_col > l.indent)
                    .map(|(p, _)| p)
                    .collect();
                let Some(&at) = items.get(i) else { break };
                let end = items.get(i + 1).map_or(hi, |&n| lo + n);
                found = Some(Found {
                    at: lo + at,
                    end,
                    exact: n + 1 == count,
                });
                (lo, hi) = (lo + at, end);
            }
        }
        if lo >= hi {
            break;
        }
    }
    found
}

/// The 1-based line of `path` (or of its deepest ancestor found) in `text`.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines = lines(text);
    find(&lines, path).map(|f| lines[f.at].number)
}

/// `text` with the key at `path` and its value removed, line numbers kept: its lines are
/// blanked (an item marker `- ` in front of the key stays, so the item stays in its list).
/// `None` when the key is not found exactly (flow style, or not there).
pub fn without(text: &str, path: &str) -> Option<String> {
    let lines = lines(text);
    let f = find(&lines, path).filter(|f| f.exact)?;
    let first = &lines[f.at];
    let last = lines[f.end.max(f.at + 1) - 1].number;
    let mut out = String::with_capacity(text.len());
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let newline = if raw.ends_with('\n') { "\n" } else { "" };
        if number == first.number {
            // Keep the item markers (if any) of a key that follows them; an item removed
            // whole (a path ending in an index) keeps its marker as an empty item.
            let keep = if path.ends_with(']') {
                first.indent + 1
            } else {
                first.key_col
            };
            out.push_str(raw.get(..keep).unwrap_or(""));
            out.push_str(newline);
        } else if number > first.number && number <= last {
            out.push_str(newline);
        } else {
            out.push_str(raw);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# example
clouds:
  - name: prod
    region: cn-north-4
    auth:
      access_key: AK   # comment
      \"secret_key\": SK
    instances:
      - id: a
        analysis:
          hotkey: {top_n: 0}
      - id: b
        analysis:
          bigkey:
            interval: 5 parsecs
  - name: second
    instances:
    - id: c
api:
  timeout: 0s
";

    #[test]
    fn finds_keys_items_and_nested_values() {
        let cases = [
            ("clouds", Some(2)),
            ("clouds[0]", Some(3)),
            ("clouds[0].name", Some(3)),
            ("clouds[0].auth.access_key", Some(6)),
            ("clouds[0].auth.secret_key", Some(7)),
            ("clouds[0].instances[1].id", Some(12)),
            ("clouds[0].instances[1].analysis.bigkey.interval", Some(15)),
            ("clouds[1].name", Some(16)),
            ("clouds[1].instances[0].id", Some(18)),
            ("api.timeout", Some(20)),
            // Inside flow style, or missing: the deepest ancestor found.
            ("clouds[0].instances[0].analysis.hotkey.top_n", Some(11)),
            ("clouds[1].project_id", Some(16)),
            ("clouds[5].name", Some(2)),
            ("metrics.namespace", None),
            ("(top level)", None),
        ];
        for (path, want) in cases {
            assert_eq!(line_of(TEXT, path), want, "{path}");
        }
    }

    #[test]
    fn segments_parse_indices() {
        assert_eq!(
            segments("a[1][2].b").unwrap(),
            [
                Segment::Key("a"),
                Segment::Index(1),
                Segment::Index(2),
                Segment::Key("b")
            ]
        );
        assert_eq!(segments("a[x]"), None);
    }

    #[test]
    fn without_blanks_a_key_and_its_value() {
        let t = without(TEXT, "clouds[0].auth").expect("found");
        assert_eq!(t.lines().count(), TEXT.lines().count());
        assert_eq!(line_of(&t, "clouds[0].auth"), Some(3), "gone: parent found");
        assert_eq!(line_of(&t, "clouds[0].instances[1].id"), Some(12));
        // A key right after `- ` keeps the marker: the item stays.
        let t = without(TEXT, "clouds[0].instances[1].id").expect("found");
        assert_eq!(t.lines().nth(11), Some("      - "));
        assert_eq!(line_of(&t, "clouds[0].instances[1].analysis"), Some(13));
        // Not found exactly: nothing to remove.
        assert_eq!(
            without(TEXT, "clouds[0].instances[0].analysis.hotkey.top_n"),
            None
        );
        assert_eq!(without(TEXT, "metrics"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "[ a-z:\\-\\[\\]{}#\n\t\"']{0,200}", path in "[a-z\\[\\]0-9.]{0,20}") {
            let _ = line_of(&text, &path);
            let _ = without(&text, &path);
        }
    }
}
