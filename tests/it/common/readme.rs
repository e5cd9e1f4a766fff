//! The README's own text as test input: the `ACL SETUSER` lines of its "ACL permissions"
//! section, so that the list users paste and the code cannot drift apart.

/// The README, as written.
pub fn text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The README's `ACL SETUSER exporter` lines, as argument lists with `>PASSWORD` replaced by
/// `password`: the base line, the `CLIENT NO-TOUCH` line (Redis 7.2+, Valkey) and the
/// `CLUSTER SLOT-STATS` line (Redis 8.2+, Valkey 8.0+).
pub fn acl_lines(password: &str) -> [Vec<String>; 3] {
    let readme = text();
    let (_, section) = readme
        .split_once("### ACL permissions")
        .expect("README has a section \"ACL permissions\"");
    let section = section.split("\n## ").next().unwrap_or_default();
    let lines: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("ACL SETUSER exporter"))
        .map(|l| {
            l.split_whitespace()
                .map(|t| match t {
                    ">PASSWORD" => format!(">{password}"),
                    t => t.to_owned(),
                })
                .collect()
        })
        .collect();
    let [base, no_touch, slot_stats]: [Vec<String>; 3] =
        lines.try_into().unwrap_or_else(|l: Vec<_>| {
            panic!("three ACL SETUSER lines in the README, not {}", l.len())
        });
    assert!(base.iter().any(|a| a == "+scan"), "{base:?}");
    assert!(
        no_touch.iter().any(|a| a == "+client|no-touch"),
        "{no_touch:?}"
    );
    assert!(
        slot_stats.iter().any(|a| a == "+cluster|slot-stats"),
        "{slot_stats:?}"
    );
    [base, no_touch, slot_stats]
}
