//! The first stage: YAML text to [`RawConfig`], reporting every unknown key and every value of
//! the wrong type, not only the first.
//!
//! serde stops at the first error. So after an error at a key, that key and its value are
//! blanked out of the text (`locate::without`, which keeps line numbers) and the text is
//! parsed again, up to [`MAX_PARSE_PROBLEMS`] times. Each problem comes from the parser itself,
//! on the text as written, with its line.
//!
//! A key inside a flow mapping (`hotkey: {mode: observe, tpo_n: 5}`) cannot be blanked out of
//! the text line by line. From such a key on, the text is read once as a YAML value tree and
//! the faulty keys are left out of the tree instead; those problems get the line of the
//! nearest key the text shows (`locate::line_of`: the flow mapping's line). Only a syntax
//! error, which leaves no tree, stops the check: what follows is then not reported.

use super::locate;
use super::raw::{self, RawConfig};
use super::Problem;

/// Most parser problems reported for one file.
pub const MAX_PARSE_PROBLEMS: usize = 50;

/// Added to the last problem when parsing could not go past it (a syntax error, a bad key
/// inside a flow mapping `{…}`): the rest of the file is not checked yet.
pub const STOPPED: &str = "; the check stopped here: fix this to see any problem after it";

/// A parser problem: the key, its line (as the parser says), the message and the key's path
/// in the value tree (`None` when a segment cannot be named, such as a key never read).
struct Found {
    key: String,
    line: Option<usize>,
    message: String,
    path: Option<Vec<Step>>,
}

/// One step of a key's path in the value tree.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn found(e: serde_path_to_error::Error<serde_yaml_ng::Error>) -> Found {
    use serde_path_to_error::Segment;
    let path = e
        .path()
        .iter()
        .map(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect::<Option<Vec<_>>>();
    // `?` stands for a key the parser never got to read (a syntax error): leave it out.
    let mut key = e.path().to_string();
    while let Some(k) = key.strip_suffix(".?") {
        key = k.to_owned();
    }
    if key == "." || key == "?" {
        key = "(top level)".into();
    }
    let inner = e.into_inner();
    let line = inner.location().map(|l| l.line());
    let mut message = inner.to_string();
    if let Some(l) = inner.location() {
        let at = format!(" at line {} column {}", l.line(), l.column());
        if let Some(m) = message.strip_suffix(&at) {
            message = m.to_owned();
        }
    }
    // The YAML error names the enclosing mapping itself (`clouds[0]: unknown field …`);
    // the key path is more precise, so drop that prefix.
    if let Some((prefix, rest)) = message.split_once(": ") {
        if key.starts_with(prefix) && !prefix.contains(' ') {
            message = rest.to_owned();
        }
    }
    // Serde lists the fields valid where the key stands; where it belongs elsewhere, say so.
    if message.starts_with("unknown field") {
        if let Some(hint) = raw::elsewhere(&key) {
            message = format!("{message}; {hint}");
        }
    }
    Found {
        key,
        line,
        message,
        path,
    }
}

/// Whether a problem at `key` only repeats one already reported: blanking a key can leave
/// its parent empty or its item null, and what the parser then says about that parent
/// repeats the first problem.
fn repeats(removed: &[String], key: &str) -> bool {
    removed
        .iter()
        .any(|r| r == key || (r.starts_with(key) && r[key.len()..].starts_with(['.', '['])))
}

/// The parsed config, if the text parses once its faulty keys are left out, and the problems.
/// `None` with problems: the text could not be parsed at all (syntax).
pub fn parse(text: &str) -> (Option<RawConfig>, Vec<Problem>) {
    let mut problems: Vec<Problem> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let mut current = text.to_owned();
    loop {
        if current.trim().is_empty() {
            return (Some(RawConfig::default()), problems);
        }
        let de = serde_yaml_ng::Deserializer::from_str(&current);
        let f = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => return (Some(raw), problems),
            Err(e) => found(e),
        };
        // A syntax error stays where it is whatever is blanked: it is said once, and ends the
        // parse.
        if problems
            .iter()
            .any(|p| p.line == f.line && p.message == f.message)
        {
            return (None, problems);
        }
        if !repeats(&removed, &f.key) {
            problems.push(Problem {
                key: f.key.clone(),
                line: f.line,
                message: f.message,
            });
        }
        if removed.contains(&f.key) || problems.len() >= MAX_PARSE_PROBLEMS {
            return stopped(problems);
        }
        match locate::without(&current, &f.key) {
            Some(t) => {
                removed.push(f.key);
                current = t;
            }
            // Inside flow style: go on on the value tree.
            None => return on_tree(&current, problems, removed),
        }
    }
}

/// Nothing after the last problem was checked: say so, or the file looks clean once that one
/// is fixed.
fn stopped(mut problems: Vec<Problem>) -> (Option<RawConfig>, Vec<Problem>) {
    if let Some(p) = problems.last_mut() {
        p.message.push_str(STOPPED);
    }
    (None, problems)
}

/// Goes on from `text` (whose last problem is reported already) on its YAML value tree: each
/// faulty key is left out of the tree, and the tree deserialized again.
fn on_tree(
    text: &str,
    mut problems: Vec<Problem>,
    mut removed: Vec<String>,
) -> (Option<RawConfig>, Vec<Problem>) {
    let Ok(mut tree) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return stopped(problems);
    };
    loop {
        let f = match serde_path_to_error::deserialize::<_, RawConfig>(tree.clone()) {
            Ok(raw) => return (Some(raw), problems),
            Err(e) => found(e),
        };
        // The tree reports the text's last problem again first.
        let again = problems.last().is_some_and(|p| p.key == f.key);
        if !again && !repeats(&removed, &f.key) {
            problems.push(Problem {
                line: locate::line_of(text, &f.key),
                key: f.key.clone(),
                message: f.message,
            });
        }
        if removed.contains(&f.key) || problems.len() >= MAX_PARSE_PROBLEMS {
            return stopped(problems);
        }
        match f.path {
            Some(path) if remove(&mut tree, &path) => removed.push(f.key),
            _ => return stopped(problems),
        }
    }
}

/// Leaves the value at `path` out of `tree`: a key is removed from its mapping, an item is
/// made null (as blanking it in the text would). False when there is nothing at `path`.
fn remove(tree: &mut serde_yaml_ng::Value, path: &[Step]) -> bool {
    use serde_yaml_ng::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = tree;
    for step in parents {
        let next = match (step, at) {
            (Step::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match (last, at) {
        (Step::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Step::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
            Some(v) if !v.is_null() => {
                *v = Value::Null;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, Option<usize>)> {
        parse(text).1.into_iter().map(|p| (p.key, p.line)).collect()
    }

    fn keys_and_lines(problems: &[Problem]) -> Vec<(&str, Option<usize>)> {
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect()
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported_with_its_line() {
        let text = "\
clouds:
  - name: a
    regoin: x
    instances:
      - id: one
        analysis:
          hotkey:
            top_n: many
            intervall: 5m
      - id: two
        nmae: typo
scrape: yes
api:
  max_retries: -1
";
        let (raw, problems) = parse(text);
        assert_eq!(
            keys_and_lines(&problems),
            [
                ("clouds[0].regoin", Some(3)),
                ("clouds[0].instances[0].analysis.hotkey.top_n", Some(8)),
                ("clouds[0].instances[0].analysis.hotkey.intervall", Some(9)),
                ("clouds[0].instances[1].nmae", Some(11)),
                ("scrape", Some(12)),
                ("api.max_retries", Some(14)),
            ]
        );
        assert!(problems[0].message.starts_with("unknown field `regoin`"));
        assert!(problems[1].message.starts_with("invalid type"));
        assert!(
            !problems[0].message.contains("line"),
            "{}",
            problems[0].message
        );
        // What is left parses: the good keys are kept.
        let raw = raw.expect("parses without the faulty keys");
        assert_eq!(raw.clouds[0].instances.len(), 2);
        assert_eq!(raw.clouds[0].instances[1].id.as_deref(), Some("two"));
    }

    #[test]
    fn every_problem_inside_flow_mappings_is_reported_too() {
        let text = "\
clouds:
  - name: a
    auth: {acces_key: x, secret_key: y}
    instances:
      - {id: one, analysis: {hotkey: {tpo_n: 5, top_n: 7}}}
redis:
  - {address: \"redis://h\", bogus: 1, throttle: {keys_per_second: many}}
api:
  max_retries: -1
";
        let (raw, problems) = parse(text);
        assert_eq!(
            keys_and_lines(&problems),
            [
                ("clouds[0].auth.acces_key", Some(3)),
                // The nearest line the text shows: the item's.
                ("clouds[0].instances[0].analysis.hotkey.tpo_n", Some(5)),
                ("redis[0].bogus", Some(7)),
                ("redis[0].throttle.keys_per_second", Some(7)),
                ("api.max_retries", Some(9)),
            ]
        );
        assert!(
            problems.iter().all(|p| !p.message.contains(STOPPED)),
            "{problems:?}"
        );
        assert!(
            problems[1].message.starts_with("unknown field `tpo_n`"),
            "{problems:?}"
        );
        assert!(
            problems[3].message.starts_with("invalid type"),
            "{problems:?}"
        );
        // What is left parses: the good keys beside the faulty ones are kept.
        let raw = raw.expect("parses without the faulty keys");
        let cloud = &raw.clouds[0];
        assert_eq!(
            cloud.auth.as_ref().and_then(|a| a.secret_key.as_deref()),
            Some("y")
        );
        let hot = cloud.instances[0].analysis.hotkey.as_ref().expect("hotkey");
        assert_eq!(hot.top_n, Some(7));
        assert_eq!(raw.redis[0].address.as_deref(), Some("redis://h"));
    }

    #[test]
    fn a_problem_the_parser_cannot_skip_says_the_check_stopped() {
        // After a syntax error (a tab) nothing more can be read, so `api.max_retries` is not
        // reached: the last problem says that the check stopped there.
        let text = "clouds:\n  - name: a\n\tregion: x\napi:\n  max_retries: -1\n";
        let (raw, problems) = parse(text);
        assert!(raw.is_none());
        assert!(
            problems.iter().all(|p| p.key != "api.max_retries"),
            "{problems:?}"
        );
        let last = problems.last().expect("a problem");
        assert!(last.message.ends_with(STOPPED), "{problems:?}");
        // In block style every problem is reported, and none says the check stopped.
        let (_, problems) = parse("clouds:\n  - name: a\n    regoin: x\napi:\n  max_retries: -1\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| !p.message.contains(STOPPED)));
    }

    #[test]
    fn a_key_alone_in_its_item_is_reported_once() {
        let text = "clouds:\n  - regoin: x\n";
        assert_eq!(keys(text), [("clouds[0].regoin".to_owned(), Some(2))]);
    }

    #[test]
    fn a_syntax_error_is_one_problem() {
        let (_, problems) = parse("clouds:\n  - name: [unclosed\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].line.is_some());
        let (raw, problems) = parse("clouds:\n\t- name: tab\n");
        assert!(raw.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn wrong_type_at_the_top_level_is_one_problem() {
        let (raw, problems) = parse("just a string\n");
        assert!(raw.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
