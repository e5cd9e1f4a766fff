//! Which arguments of a command are keys, as the server itself describes its commands
//! (`COMMAND`): the key specs of Redis 7+ and Valkey (where the first key is found by index or
//! after a keyword, and how many follow: a range, or a count given in an argument), else the
//! first/last/step triple of older servers. Container commands (`OBJECT FREQ`) are looked up by
//! subcommand. Admin commands are marked, so a `MONITOR` sample can leave them aside.
//!
//! A key spec whose search is `unknown` (the few commands whose keys only their own code can
//! find, such as `SORT ... STORE`) gives no key: the sample undercounts those rather than
//! guessing.

use std::collections::HashMap;

use crate::native::resp::Value;

/// How the first key of a spec is found.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Begin {
    Index(i64),
    /// After the first argument equal to `keyword` (ASCII case-insensitively), searching from
    /// `from` (negative: from the end, backwards).
    Keyword {
        keyword: Vec<u8>,
        from: i64,
    },
}

/// How many keys follow the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Find {
    /// Up to `last` (relative to the first; negative: from the end, or with `limit` > 1 the
    /// first `1/limit` of what remains), every `step`.
    Range { last: i64, step: i64, limit: i64 },
    /// The number of keys is in argument `numidx` (relative to the first), the keys start at
    /// `first` (relative too), every `step`.
    Keynum { numidx: i64, first: i64, step: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct KeySpec {
    begin: Begin,
    find: Find,
}

/// One command (or subcommand) as the server describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// `admin` flag: configuration and administration, not data access.
    pub admin: bool,
    /// Key specs (Redis 7+, Valkey); empty on older servers, which give `legacy`.
    specs: Vec<KeySpec>,
    /// First key, last key (negative: from the end), step (Redis before 7).
    legacy: (i64, i64, i64),
    movable: bool,
    subcommands: HashMap<Vec<u8>, Command>,
}

/// Every command of a server, by lower-case name.
#[derive(Clone, Debug, Default)]
pub struct Table {
    commands: HashMap<Vec<u8>, Command>,
}

/// The entries of a map, or of its RESP2 form (a flat array of names and values).
fn pairs(v: &Value) -> Vec<(&[u8], &Value)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_bytes()?, v)))
            .collect(),
        Value::Array(a) => a
            .chunks_exact(2)
            .filter_map(|p| Some((p[0].as_bytes()?, &p[1])))
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    pairs(v)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_int)
}

fn key_spec(v: &Value) -> Option<KeySpec> {
    let begin = field(v, "begin_search")?;
    let spec = field(begin, "spec")?;
    let begin = match field(begin, "type")?.as_text()? {
        "index" => Begin::Index(int(field(spec, "index"))?),
        "keyword" => Begin::Keyword {
            keyword: field(spec, "keyword")?.as_bytes()?.to_vec(),
            from: int(field(spec, "startfrom"))?,
        },
        _ => return None,
    };
    let find = field(v, "find_keys")?;
    let spec = field(find, "spec")?;
    let find = match field(find, "type")?.as_text()? {
        "range" => Find::Range {
            last: int(field(spec, "lastkey"))?,
            step: int(field(spec, "keystep"))?.max(1),
            limit: int(field(spec, "limit"))?,
        },
        "keynum" => Find::Keynum {
            numidx: int(field(spec, "keynumidx"))?,
            first: int(field(spec, "firstkey"))?,
            step: int(field(spec, "keystep"))?.max(1),
        },
        _ => return None,
    };
    Some(KeySpec { begin, find })
}

/// One entry of a `COMMAND` reply: `[name, arity, flags, first, last, step, acl categories,
/// tips, key specs, subcommands]` (older servers stop after step or the categories).
fn command(v: &Value) -> Option<(Vec<u8>, Command)> {
    let Value::Array(a) = v else { return None };
    let name = a.first()?.as_bytes()?.to_ascii_lowercase();
    let flags: Vec<&[u8]> = match a.get(2) {
        Some(Value::Array(f)) => f.iter().filter_map(Value::as_bytes).collect(),
        _ => Vec::new(),
    };
    let legacy = (
        int(a.get(3)).unwrap_or(0),
        int(a.get(4)).unwrap_or(0),
        int(a.get(5)).unwrap_or(0),
    );
    let specs = match a.get(8) {
        Some(Value::Array(s)) => s.iter().filter_map(key_spec).collect(),
        _ => Vec::new(),
    };
    let mut subcommands = HashMap::new();
    if let Some(Value::Array(subs)) = a.get(9) {
        for s in subs {
            if let Some((full, c)) = command(s) {
                // `object|freq`: looked up by what follows the bar.
                let sub = match full.iter().position(|&b| b == b'|') {
                    Some(i) => full[i + 1..].to_vec(),
                    None => full,
                };
                subcommands.insert(sub, c);
            }
        }
    }
    Some((
        name,
        Command {
            admin: flags.contains(&&b"admin"[..]),
            specs,
            legacy,
            movable: flags.contains(&&b"movablekeys"[..]),
            subcommands,
        },
    ))
}

impl Table {
    /// From the reply to `COMMAND` (or `COMMAND INFO ...`); entries it cannot read are left
    /// out.
    pub fn from_reply(v: &Value) -> Table {
        let mut commands = HashMap::new();
        if let Value::Array(all) = v {
            for c in all {
                if let Some((name, cmd)) = command(c) {
                    commands.insert(name, cmd);
                }
            }
        }
        Table { commands }
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The command `args` run (its subcommand for a container command), if the server
    /// described it.
    pub fn lookup(&self, args: &[Vec<u8>]) -> Option<&Command> {
        let name = args.first()?.to_ascii_lowercase();
        let c = self.commands.get(&name)?;
        if c.subcommands.is_empty() {
            return Some(c);
        }
        let sub = args.get(1)?.to_ascii_lowercase();
        c.subcommands.get(&sub).or(Some(c))
    }
}

impl Command {
    /// The positions in `args` (the command name at 0) that hold keys, in order, a key named
    /// twice once.
    pub fn key_positions(&self, args: &[Vec<u8>]) -> Vec<usize> {
        let argc = args.len() as i64;
        let mut out: Vec<usize> = Vec::new();
        let mut push = |i: i64| {
            if (1..argc).contains(&i) && !out.iter().any(|&j| args[j] == args[i as usize]) {
                out.push(i as usize);
            }
        };
        if !self.specs.is_empty() {
            for spec in &self.specs {
                let Some(first) = begin(&spec.begin, args) else {
                    continue;
                };
                let (first, last, step) = match spec.find {
                    Find::Range { last, step, limit } => {
                        let last = if last >= 0 {
                            first + last
                        } else if limit <= 1 {
                            argc + last
                        } else {
                            first + ((argc - first) / limit + last)
                        };
                        (first, last, step)
                    }
                    Find::Keynum {
                        numidx,
                        first: from,
                        step,
                    } => {
                        let Some(n) = args
                            .get((first + numidx).max(0) as usize)
                            .and_then(|a| std::str::from_utf8(a).ok()?.parse::<i64>().ok())
                            .filter(|n| (0..=argc).contains(n))
                        else {
                            continue;
                        };
                        let start = first + from;
                        (start, start + (n - 1) * step, step)
                    }
                };
                let mut i = first;
                while i <= last && i < argc {
                    push(i);
                    i += step;
                }
            }
            return out;
        }
        let (first, last, step) = self.legacy;
        if first > 0 {
            let last = if last < 0 { argc + last } else { last };
            let mut i = first;
            while i <= last && step > 0 {
                push(i);
                i += step;
            }
        } else if self.movable {
            // Before key specs, the scripting commands give their keys as `numkeys key...`.
            let name = args[0].to_ascii_lowercase();
            if matches!(
                name.as_slice(),
                b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" | b"fcall" | b"fcall_ro"
            ) {
                if let Some(n) = args
                    .get(2)
                    .and_then(|a| std::str::from_utf8(a).ok()?.parse::<i64>().ok())
                {
                    for i in 3..3 + n.clamp(0, argc) {
                        push(i);
                    }
                }
            }
        }
        out
    }
}

/// Where a spec's first key is, if the command has one there.
fn begin(b: &Begin, args: &[Vec<u8>]) -> Option<i64> {
    let argc = args.len() as i64;
    match b {
        Begin::Index(i) => Some(*i),
        Begin::Keyword { keyword, from } => {
            let found = if *from >= 0 {
                (*from..argc).find(|&i| args[i as usize].eq_ignore_ascii_case(keyword))
            } else {
                (1..=(argc + from))
                    .rev()
                    .find(|&i| args[i as usize].eq_ignore_ascii_case(keyword))
            };
            found.map(|i| i + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }
    fn st(s: &str) -> Value {
        Value::Simple(s.into())
    }
    fn arr(v: Vec<Value>) -> Value {
        Value::Array(v)
    }
    fn spec(begin: Value, find: Value) -> Value {
        arr(vec![
            b("flags"),
            arr(vec![st("RO")]),
            b("begin_search"),
            begin,
            b("find_keys"),
            find,
        ])
    }
    fn index(i: i64) -> Value {
        arr(vec![
            b("type"),
            b("index"),
            b("spec"),
            arr(vec![b("index"), Value::Int(i)]),
        ])
    }
    fn keyword(k: &str, from: i64) -> Value {
        arr(vec![
            b("type"),
            b("keyword"),
            b("spec"),
            arr(vec![b("keyword"), b(k), b("startfrom"), Value::Int(from)]),
        ])
    }
    fn range(last: i64, step: i64, limit: i64) -> Value {
        arr(vec![
            b("type"),
            b("range"),
            b("spec"),
            arr(vec![
                b("lastkey"),
                Value::Int(last),
                b("keystep"),
                Value::Int(step),
                b("limit"),
                Value::Int(limit),
            ]),
        ])
    }
    fn keynum(idx: i64, first: i64, step: i64) -> Value {
        arr(vec![
            b("type"),
            b("keynum"),
            b("spec"),
            arr(vec![
                b("keynumidx"),
                Value::Int(idx),
                b("firstkey"),
                Value::Int(first),
                b("keystep"),
                Value::Int(step),
            ]),
        ])
    }
    fn entry(name: &str, flags: &[&str], legacy: (i64, i64, i64), specs: Vec<Value>) -> Value {
        arr(vec![
            b(name),
            Value::Int(-2),
            arr(flags.iter().map(|f| st(f)).collect()),
            Value::Int(legacy.0),
            Value::Int(legacy.1),
            Value::Int(legacy.2),
            arr(vec![]),
            arr(vec![]),
            arr(specs),
            arr(vec![]),
        ])
    }

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    fn keys(t: &Table, line: &str) -> Vec<String> {
        let a = args(line);
        let c = t.lookup(&a).expect("known command");
        c.key_positions(&a)
            .into_iter()
            .map(|i| String::from_utf8(a[i].clone()).unwrap())
            .collect()
    }

    /// The specs Redis 7.0 gives for these commands (`COMMAND INFO`).
    fn table() -> Table {
        let mut object = entry("object", &[], (0, 0, 0), vec![]);
        if let Value::Array(a) = &mut object {
            a[9] = arr(vec![entry(
                "object|freq",
                &["readonly"],
                (2, 2, 1),
                vec![spec(index(2), range(0, 1, 0))],
            )]);
        }
        Table::from_reply(&arr(vec![
            entry(
                "get",
                &["readonly", "fast"],
                (1, 1, 1),
                vec![spec(index(1), range(0, 1, 0))],
            ),
            entry(
                "mset",
                &["write"],
                (1, -1, 2),
                vec![spec(index(1), range(-1, 2, 0))],
            ),
            entry(
                "xread",
                &["readonly", "movablekeys"],
                (0, 0, 0),
                vec![spec(keyword("STREAMS", 1), range(-1, 1, 2))],
            ),
            entry(
                "eval",
                &["noscript", "movablekeys"],
                (0, 0, 0),
                vec![spec(index(2), keynum(0, 1, 1))],
            ),
            entry(
                "zunionstore",
                &["write", "movablekeys"],
                (1, 1, 1),
                vec![
                    spec(index(1), range(0, 1, 0)),
                    spec(index(2), keynum(0, 1, 1)),
                ],
            ),
            entry("config", &["admin"], (0, 0, 0), vec![]),
            object,
        ]))
    }

    #[test]
    fn keys_come_from_the_servers_own_key_specs() {
        let t = table();
        assert_eq!(keys(&t, "GET k"), ["k"]);
        assert_eq!(keys(&t, "MSET a 1 b 2 c 3"), ["a", "b", "c"]);
        assert_eq!(
            keys(&t, "XREAD COUNT 2 STREAMS s1 s2 0 0"),
            ["s1", "s2"],
            "half of what follows STREAMS"
        );
        assert_eq!(keys(&t, "EVAL body 2 k1 k2 arg"), ["k1", "k2"]);
        assert_eq!(keys(&t, "EVAL body 0 arg"), Vec::<String>::new());
        assert_eq!(
            keys(&t, "ZUNIONSTORE dst 2 z1 z2 WEIGHTS 1 2"),
            ["dst", "z1", "z2"]
        );
        assert_eq!(keys(&t, "object freq k"), ["k"], "by subcommand");
        // A key given twice is one access.
        assert_eq!(keys(&t, "MSET a 1 a 2"), ["a"]);
        assert!(t.lookup(&args("config get x")).unwrap().admin);
        assert!(!t.lookup(&args("get x")).unwrap().admin);
        assert!(t.lookup(&args("nosuch x")).is_none());
        // Broken arguments (the server refuses such a command) never reach past the end.
        assert_eq!(keys(&t, "EVAL body 99 k1"), Vec::<String>::new());
        assert_eq!(keys(&t, "EVAL body x k1"), Vec::<String>::new());
        assert_eq!(keys(&t, "XREAD COUNT 2"), Vec::<String>::new());
    }

    #[test]
    fn older_servers_give_first_last_step_and_scripts_their_numkeys() {
        let legacy = |name: &str, flags: &[&str], fls: (i64, i64, i64)| {
            arr(vec![
                b(name),
                Value::Int(-2),
                arr(flags.iter().map(|f| st(f)).collect()),
                Value::Int(fls.0),
                Value::Int(fls.1),
                Value::Int(fls.2),
            ])
        };
        let t = Table::from_reply(&arr(vec![
            legacy("mget", &["readonly"], (1, -1, 1)),
            legacy("mset", &["write"], (1, -1, 2)),
            legacy("evalsha", &["noscript", "movablekeys"], (0, 0, 0)),
        ]));
        assert_eq!(keys(&t, "MGET a b c"), ["a", "b", "c"]);
        assert_eq!(keys(&t, "MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(keys(&t, "EVALSHA sha 1 k a"), ["k"]);
    }
}
