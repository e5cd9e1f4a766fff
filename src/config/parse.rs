//! The first stage: YAML text to [`RawConfig`], reporting every unknown key and every value of
//! the wrong type, not only the first.
//!
//! serde stops at the first error. So after an error at a key, that key and its value are
//! blanked out of the text (`locate::without`, which keeps line numbers) and the text is
//! parsed again, up to [`MAX_PARSE_PROBLEMS`] times. Each problem comes from the parser itself,
//! on the text as written, with its line. Parsing stops early when an error cannot be
//! located exactly (a syntax error, flow style): what follows is then not reported.

use super::locate;
use super::raw::RawConfig;
use super::Problem;

/// Most parser problems reported for one file.
pub const MAX_PARSE_PROBLEMS: usize = 50;

/// Added to the last problem when parsing could not go past it (a syntax error, a bad key
/// inside a flow mapping `{…}`): the rest of the file is not checked yet.
pub const STOPPED: &str = "; the check stopped here: fix this to see any problem after it";

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
        let e = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => return (Some(raw), problems),
            Err(e) => e,
        };
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
        // A syntax error stays where it is whatever is blanked: it is said once, and ends the
        // parse.
        if problems
            .iter()
            .any(|p| p.line == line && p.message == message)
        {
            return (None, problems);
        }
        // Blanking a key can leave its parent empty or its item null; what the parser then
        // says about that parent repeats the first problem.
        let repeats = removed
            .iter()
            .any(|r| r == &key || (r.starts_with(&key) && r[key.len()..].starts_with(['.', '['])));
        if !repeats {
            problems.push(Problem {
                key: key.clone(),
                line,
                message,
            });
        }
        let next = (!removed.contains(&key) && problems.len() < MAX_PARSE_PROBLEMS)
            .then(|| locate::without(&current, &key))
            .flatten();
        match next {
            Some(t) => {
                removed.push(key);
                current = t;
            }
            None => {
                // Nothing after this point was checked: say so, or the file looks clean once
                // this one is fixed.
                if let Some(p) = problems.last_mut() {
                    p.message.push_str(STOPPED);
                }
                return (None, problems);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, Option<usize>)> {
        parse(text).1.into_iter().map(|p| (p.key, p.line)).collect()
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
        let got: Vec<_> = problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            got,
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
    fn a_problem_the_parser_cannot_skip_says_the_check_stopped() {
        // Inside a flow mapping the bad key cannot be left out, so `api.max_retries` is not
        // reached: the one problem says that the check stopped there.
        let text = "\
clouds:
  - name: a
    auth: {acces_key: x}
api:
  max_retries: -1
";
        let (raw, problems) = parse(text);
        assert!(raw.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "clouds[0].auth.acces_key");
        assert!(problems[0].message.ends_with(STOPPED), "{problems:?}");
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
