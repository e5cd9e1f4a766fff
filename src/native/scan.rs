//! The scans of one node: big keys on a replica (else the master), hot keys on the master.
//!
//! Both walk the whole keyspace of every database that holds keys (`INFO keyspace`, see
//! [`super::walk`]) and keep only the top N in a bounded heap: memory does not grow with the
//! keyspace. Nothing here sends `KEYS`, a script or `DEBUG`.
//!
//! - **Big keys**: per batch, one pipeline of the size command of each key's type (`STRLEN`,
//!   `LLEN`, `SCARD`, `ZCARD`, `HLEN`, `XLEN`), the type guessed from the shape of the key's
//!   name ([`super::guess`]); keys whose guess the answer does not prove are asked `TYPE`
//!   (which does not touch the key), then the right size command. Every key passes through
//!   [`KeyObserver`], the hook a per-key aggregation (key families, [`super::families`]) plugs
//!   into; an observer that wants every key's memory (`MEMORY USAGE`) and TTL (`PTTL`, which
//!   does not touch the key either) gets them in the same pipeline as the size. At the end the
//!   winners are asked `MEMORY USAGE` (default sampling, which does not touch the key): a
//!   winner deleted meanwhile answers nil and is left out.
//! - **Hot keys**: per batch, one pipeline of `OBJECT FREQ`, which reads the LFU counter
//!   without touching the key, before anything else looks at it; only the final top N are then
//!   asked their type and size (a winner whose type is `none` by then is left out). The
//!   server's own error tells that no LFU policy is set (`CONFIG` may be disabled on managed
//!   services), which makes the analysis `unsupported`.
//! - **Errors per key**: a key that moved to another shard (`MOVED`, `ASK`) or changed type
//!   between two commands is left out, as a key deleted in between would be; any other error
//!   ends the scan with a reason (a refused command is `auth` and names the command; `LOADING`,
//!   `BUSY`, `OOM`, `CLUSTERDOWN` and the like are `server_error`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, PoisonError};

use super::conn::Connector;
use super::error::{Error, Result};
use super::guess::{Kind, TypeGuess};
use super::pace::{Counter, Pace};
use super::resp::{Cmd, Connection, Expect, Limits, Value};
use super::topology::{Node, Unit};
use super::walk::{walk, with_reconnect, Guard};
use crate::dcs::{KeyRecord, KeyType, SizeUnit};
use crate::metrics::keylabel::name_from_bytes;

/// One key seen by a big key scan, for [`KeyObserver`]s.
pub struct ScannedKey<'a> {
    pub db: i64,
    pub name: &'a [u8],
    pub key_type: &'a str,
    /// Elements, or bytes for strings.
    pub size: Option<i64>,
    pub memory: Option<i64>,
    /// `PTTL` (-1: no TTL), when the observer wants it.
    pub ttl_ms: Option<i64>,
}

/// Sees every key a big key scan visits (the hook for per-key aggregation).
pub trait KeyObserver: Send {
    /// Whether [`ScannedKey::memory`] is wanted: it costs a `MEMORY USAGE` per key, so by
    /// default only the final top N are asked.
    fn wants_memory(&self) -> bool {
        false
    }
    /// Whether [`ScannedKey::ttl_ms`] is wanted: a `PTTL` per key, pipelined with the rest.
    fn wants_ttl(&self) -> bool {
        false
    }
    fn observe(&mut self, key: &ScannedKey<'_>);
}

/// An observer that does nothing.
pub struct NoObserver;

impl KeyObserver for NoObserver {
    fn observe(&mut self, _: &ScannedKey<'_>) {}
}

/// A heap entry: ordered by rank, ties broken by name so results are deterministic.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    rank: i64,
    name: Vec<u8>,
    db: i64,
    key_type: String,
    memory: Option<i64>,
}

/// The N highest-ranked entries seen (a min-heap of size N).
struct TopN {
    n: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl TopN {
    fn new(n: usize) -> Self {
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n + 1),
        }
    }

    fn push(&mut self, r: Ranked) {
        if self.heap.len() < self.n {
            self.heap.push(Reverse(r));
        } else if self.heap.peek().is_some_and(|Reverse(min)| r > *min) {
            self.heap.pop();
            self.heap.push(Reverse(r));
        }
    }

    /// Whether an entry of `rank` may enter (ties are decided by name in [`TopN::push`]), so
    /// that a scan builds an entry only for keys that can.
    fn admits(&self, rank: i64) -> bool {
        self.heap.len() < self.n
            || self
                .heap
                .peek()
                .is_some_and(|Reverse(min)| rank >= min.rank)
    }

    fn into_sorted(self) -> Vec<Ranked> {
        let mut v: Vec<Ranked> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

fn unit_of(key_type: &str) -> SizeUnit {
    if key_type == "string" {
        SizeUnit::Byte
    } else {
        SizeUnit::Count
    }
}

/// What a per-key answer means for the scan.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// An answer to use.
    Fine,
    /// The key moved to another shard (`MOVED`, `ASK`: a resharding) since `SCAN` listed it.
    Moved,
    /// The key changed type since it was sized (`WRONGTYPE`): left out like a deleted key.
    Skip,
}

/// Judges the answer of `command` about one key: a usable answer, a key to leave out, or an
/// error that ends the scan (a refused command, a server that cannot serve).
fn judge(node: &Node, command: &str, v: &Value) -> Result<Verdict> {
    let Value::Error(e) = v else {
        return Ok(Verdict::Fine);
    };
    match e.code() {
        "MOVED" | "ASK" => Ok(Verdict::Moved),
        "WRONGTYPE" => Ok(Verdict::Skip),
        "CLUSTERDOWN" | "TRYAGAIN" => Err(Error::Server {
            node: node.label(),
            message: format!("{command}: cluster not serving keys (failover?): {e}"),
        }),
        _ => Err(Error::from_server(&node.label(), command, e)),
    }
}

/// Logs the keys a shard's scan left out because they moved to another shard.
fn report_moved(node: &Node, analysis: &str, moved: u64) {
    if moved > 0 {
        tracing::warn!(node = %node.label(), analysis, keys = moved,
            "keys moved to another shard while the scan ran (cluster resharding?); left out of \
             this shard's result");
    }
}

/// The `key_type` of a `TYPE` answer: one of Redis' own types, or a module type's name (nine
/// characters of `A-Z a-z 0-9 - _`, as modules must name their types). `None` for `none`
/// (the key is gone); anything else is no answer `TYPE` gives.
fn type_of(node: &Node, v: &Value) -> Result<Option<String>> {
    let t = v.as_text().unwrap_or_default();
    if t == "none" {
        return Ok(None);
    }
    let module = t.len() == 9
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if Kind::parse(t).is_some() || module {
        return Ok(Some(t.to_owned()));
    }
    Err(Error::Protocol {
        node: node.label(),
        message: format!(
            "TYPE answered {:?}, which is no key type",
            super::resp::codec::printable(v.as_bytes().unwrap_or_default(), 40)
        ),
    })
}

fn record(unit: &Unit, r: Ranked, freq: Option<i64>, size: Option<i64>) -> KeyRecord {
    KeyRecord {
        name: name_from_bytes(&r.name).into_owned(),
        key_type: Some(KeyType::from(r.key_type.as_str())),
        shard: unit.shard.clone(),
        db: Some(r.db),
        unit: size.map(|_| unit_of(&r.key_type)),
        size,
        freq,
        memory: r.memory,
        rates: None,
    }
}

fn conn_err(node: &Node) -> impl Fn(super::resp::ConnError) -> Error + '_ {
    move |e| Error::from_conn(&node.label(), e)
}

fn size_cmd(kind: Kind, key: &[u8]) -> Cmd {
    Cmd::new(kind.size_command())
        .arg(key)
        .expect(Expect::Int, Limits::SMALL)
}

fn memory_cmd(key: &[u8]) -> Cmd {
    Cmd::new("MEMORY USAGE")
        .arg(key)
        .expect(Expect::IntOrNil, Limits::SMALL)
}

fn type_cmd(key: &[u8]) -> Cmd {
    Cmd::new("TYPE").arg(key).expect(Expect::Text, Limits::WORD)
}

/// Per key of a batch (by index): its type, then the answers of its size command and, with
/// `memory`, `MEMORY USAGE`, then with `ttl` `PTTL`. Keys that vanished (`none`) or have a
/// type without a size are left out.
///
/// One round trip for most keys: the size command of the type `guess` expects (see
/// [`super::guess`]), with `MEMORY USAGE` and `PTTL`, which do not depend on the type. A key
/// whose guess is answered `WRONGTYPE` or 0 (which does not prove the type: a vanished key, an
/// empty string or stream) is asked `TYPE`, then the size command of its type, in two more
/// round trips, as without a guess.
async fn sizes(
    c: &Connection,
    node: &Node,
    db: i64,
    keys: &[Vec<u8>],
    memory: bool,
    ttl: bool,
    guess: &Mutex<TypeGuess>,
) -> Result<Vec<(usize, Kind, Vec<Value>)>> {
    // SCAN may answer a batch without keys (it stops after ten times COUNT empty buckets).
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let guesses: Vec<Kind> = {
        let mut g = guess.lock().unwrap_or_else(PoisonError::into_inner);
        keys.iter().map(|k| g.guess(k)).collect()
    };
    let per = 1 + usize::from(memory) + usize::from(ttl);
    let mut cmds = Vec::with_capacity(keys.len() * per);
    for (k, &kind) in keys.iter().zip(&guesses) {
        cmds.push(size_cmd(kind, k));
        if memory {
            cmds.push(memory_cmd(k));
        }
        if ttl {
            cmds.push(Cmd::new("PTTL").arg(k).expect(Expect::Int, Limits::SMALL));
        }
    }
    let answers = c.run(Some(db), &cmds).await.map_err(conn_err(node))?;
    let mut out = Vec::with_capacity(keys.len());
    let mut unsure = Vec::new();
    for (i, (answer, &kind)) in answers.chunks(per).zip(&guesses).enumerate() {
        if proves_guess(&answer[0]) {
            out.push((i, kind, answer.to_vec()));
        } else {
            unsure.push((i, answer));
        }
    }
    if !unsure.is_empty() {
        let asked: Vec<Cmd> = unsure.iter().map(|(i, _)| type_cmd(&keys[*i])).collect();
        let types = c.run(Some(db), &asked).await.map_err(conn_err(node))?;
        let mut sized = Vec::new();
        let mut cmds = Vec::new();
        for ((i, answer), t) in unsure.into_iter().zip(&types) {
            match judge(node, "TYPE", t)? {
                Verdict::Fine => {}
                Verdict::Moved => {
                    // Counted as moved by the caller, from this answer.
                    let mut a = answer.to_vec();
                    a[0] = t.clone();
                    out.push((i, Kind::String, a));
                    continue;
                }
                Verdict::Skip => continue,
            }
            // `none` (gone) and module types (no size command) are left out.
            let Some(kind) = type_of(node, t)?.as_deref().and_then(Kind::parse) else {
                continue;
            };
            cmds.push(size_cmd(kind, &keys[i]));
            sized.push((i, kind, answer));
        }
        if !cmds.is_empty() {
            let sizes = c.run(Some(db), &cmds).await.map_err(conn_err(node))?;
            for ((i, kind, answer), size) in sized.into_iter().zip(sizes) {
                let mut answer = answer.to_vec();
                answer[0] = size;
                out.push((i, kind, answer));
            }
        }
    }
    let mut g = guess.lock().unwrap_or_else(PoisonError::into_inner);
    for (i, kind, answer) in &out {
        if matches!(answer[0], Value::Int(_)) {
            g.learn(&keys[*i], *kind);
        }
    }
    Ok(out)
}

/// Whether the answer to the size command of a guessed type proves the guess: a size above 0
/// does (only a key of that type has one); `WRONGTYPE` does not, nor does 0, which is also
/// what a vanished key answers. Another error (a permission, a cluster redirection) is passed
/// on for the scan to judge.
fn proves_guess(answer: &Value) -> bool {
    match answer {
        Value::Int(n) => *n > 0,
        Value::Error(e) => e.code() != "WRONGTYPE",
        _ => false,
    }
}

/// The node a big key scan of `unit` reads: the first replica that answers, else the master.
pub async fn bigkey_node(conn: &Connector, unit: &Unit) -> Node {
    for r in &unit.replicas {
        if conn.info(r, "replication").await.is_ok() {
            return r.clone();
        }
    }
    unit.master.clone()
}

/// Big key scan of one node: the top N per unit (bytes, elements) of every database, with
/// the `MEMORY USAGE` of the winners (of every key when the observer wants it).
#[allow(clippy::too_many_arguments)]
pub async fn bigkeys(
    conn: &Connector,
    guard: &Guard,
    unit: &Unit,
    node: &Node,
    dbs: &[(i64, u64)],
    pace: Pace,
    counter: &Counter,
    observer: &mut dyn KeyObserver,
) -> Result<Vec<KeyRecord>> {
    let mut bytes = TopN::new(pace.top_n);
    let mut elements = TopN::new(pace.top_n);
    let memory = observer.wants_memory();
    let ttl = observer.wants_ttl();
    let guess = &Mutex::new(TypeGuess::new());
    let mut moved = 0u64;
    for &(db, before) in dbs {
        let work = |c: Connection, keys: Vec<Vec<u8>>| async move {
            let answers = sizes(&c, node, db, &keys, memory, ttl, guess).await?;
            Ok((keys, answers))
        };
        let take = |keys: Vec<Vec<u8>>, answers: Vec<(usize, Kind, Vec<Value>)>| {
            'key: for (i, kind, answer) in answers {
                let key_type = kind.name();
                let names = [kind.size_command(), "MEMORY USAGE", "PTTL"];
                let commands = std::iter::once(names[0])
                    .chain(memory.then_some(names[1]))
                    .chain(ttl.then_some(names[2]));
                for (command, v) in commands.zip(&answer) {
                    match judge(node, command, v)? {
                        Verdict::Fine => {}
                        Verdict::Moved => {
                            moved += 1;
                            continue 'key;
                        }
                        Verdict::Skip => continue 'key,
                    }
                }
                let size = answer[0].as_int();
                let mem = if memory {
                    match answer[1].as_int() {
                        Some(m) => Some(m),
                        // Nil: the key is gone.
                        None => continue,
                    }
                } else {
                    None
                };
                let ttl_ms = answer.last().filter(|_| ttl).and_then(Value::as_int);
                observer.observe(&ScannedKey {
                    db,
                    name: &keys[i],
                    key_type,
                    size,
                    memory: mem,
                    ttl_ms,
                });
                let Some(size) = size else { continue };
                let top = if key_type == "string" {
                    &mut bytes
                } else {
                    &mut elements
                };
                if top.admits(size) {
                    top.push(Ranked {
                        rank: size,
                        name: keys[i].clone(),
                        db,
                        key_type: key_type.to_owned(),
                        memory: mem,
                    });
                }
            }
            Ok(())
        };
        walk(conn, guard, node, db, pace, counter, work, take).await?;
        guard.check_keyspace(conn, db, before).await?;
    }
    report_moved(node, "bigkey", moved);
    let mut winners: Vec<Ranked> = bytes.into_sorted();
    winners.extend(elements.into_sorted());
    let winners = memory_of(conn, guard, node, winners).await?;
    guard.check(conn).await?;
    Ok(winners
        .into_iter()
        .map(|r| {
            let size = Some(r.rank);
            record(unit, r, None, size)
        })
        .collect())
}

/// The winners that still exist, with their `MEMORY USAGE` now (one pipeline per database).
async fn memory_of(
    conn: &Connector,
    guard: &Guard,
    node: &Node,
    keys: Vec<Ranked>,
) -> Result<Vec<Ranked>> {
    let mut dbs: Vec<i64> = keys.iter().map(|k| k.db).collect();
    dbs.sort_unstable();
    dbs.dedup();
    let mut answers = vec![None; keys.len()];
    for db in dbs {
        let idx: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].db == db).collect();
        let cmds: Vec<Cmd> = idx.iter().map(|&i| memory_cmd(&keys[i].name)).collect();
        let got = with_reconnect(conn, guard, node, db, |c| {
            let cmds = &cmds;
            async move { c.run(Some(db), cmds).await.map_err(conn_err(node)) }
        })
        .await?;
        for (&i, v) in idx.iter().zip(got) {
            if judge(node, "MEMORY USAGE", &v)? == Verdict::Fine {
                answers[i] = v.as_int();
            }
        }
    }
    Ok(keys
        .into_iter()
        .zip(answers)
        // Nil (or moved): the key is gone from this node since it was sized.
        .filter_map(|(k, m)| {
            m.map(|m| Ranked {
                memory: Some(m),
                ..k
            })
        })
        .collect())
}

/// Hot key scan of one shard's master: the top N by LFU frequency.
pub async fn hotkeys(
    conn: &Connector,
    guard: &Guard,
    unit: &Unit,
    dbs: &[(i64, u64)],
    pace: Pace,
    counter: &Counter,
) -> Result<Vec<KeyRecord>> {
    let node = &unit.master;
    let mut top = TopN::new(pace.top_n);
    let mut moved = 0u64;
    for &(db, before) in dbs {
        let work = |c: Connection, keys: Vec<Vec<u8>>| async move {
            let cmds: Vec<Cmd> = keys
                .iter()
                .map(|k| {
                    Cmd::new("OBJECT FREQ")
                        .arg(k)
                        .expect(Expect::IntOrNil, Limits::SMALL)
                })
                .collect();
            let freqs = c.run(Some(db), &cmds).await.map_err(conn_err(node))?;
            Ok((keys, freqs))
        };
        let take = |keys: Vec<Vec<u8>>, freqs: Vec<Value>| {
            for (name, v) in keys.into_iter().zip(&freqs) {
                if let Value::Error(e) = v {
                    if e.line().contains("LFU") {
                        return Err(Error::Unsupported {
                            node: node.label(),
                            message: format!(
                                "hot key analysis from OBJECT FREQ needs an LFU maxmemory-policy: {e}"
                            ),
                        });
                    }
                }
                match judge(node, "OBJECT FREQ", v)? {
                    Verdict::Fine => {}
                    Verdict::Moved => {
                        moved += 1;
                        continue;
                    }
                    Verdict::Skip => continue,
                }
                // Nil: the key is gone.
                let Some(freq) = v.as_int() else { continue };
                if top.admits(freq) {
                    top.push(Ranked {
                        rank: freq,
                        name,
                        db,
                        key_type: String::new(),
                        memory: None,
                    });
                }
            }
            Ok(())
        };
        walk(conn, guard, node, db, pace, counter, work, take).await?;
        guard.check_keyspace(conn, db, before).await?;
    }
    report_moved(node, "hotkey", moved);
    // Type and size of the winners only, after their frequency was read.
    let out = types_and_sizes(conn, guard, node, top.into_sorted()).await?;
    guard.check(conn).await?;
    Ok(out
        .into_iter()
        .map(|(r, size)| {
            let freq = Some(r.rank);
            record(unit, r, freq, size)
        })
        .collect())
}

/// The type and size of each of `keys` that still exists (a pipeline of `TYPE`, then one of
/// size commands, per database).
async fn types_and_sizes(
    conn: &Connector,
    guard: &Guard,
    node: &Node,
    keys: Vec<Ranked>,
) -> Result<Vec<(Ranked, Option<i64>)>> {
    let mut found: Vec<Option<(String, Option<i64>)>> = Vec::with_capacity(keys.len());
    found.resize_with(keys.len(), || None);
    let mut dbs: Vec<i64> = keys.iter().map(|k| k.db).collect();
    dbs.sort_unstable();
    dbs.dedup();
    for db in dbs {
        let idx: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].db == db).collect();
        let asked: Vec<Cmd> = idx.iter().map(|&i| type_cmd(&keys[i].name)).collect();
        let types = with_reconnect(conn, guard, node, db, |c| {
            let asked = &asked;
            async move { c.run(Some(db), asked).await.map_err(conn_err(node)) }
        })
        .await?;
        let mut sized = Vec::new();
        let mut cmds = Vec::new();
        for (&i, t) in idx.iter().zip(&types) {
            if judge(node, "TYPE", t)? != Verdict::Fine {
                continue;
            }
            let Some(key_type) = type_of(node, t)? else {
                continue;
            };
            if let Some(kind) = Kind::parse(&key_type) {
                cmds.push(size_cmd(kind, &keys[i].name));
                sized.push(i);
            }
            found[i] = Some((key_type, None));
        }
        let sizes = with_reconnect(conn, guard, node, db, |c| {
            let cmds = &cmds;
            async move { c.run(Some(db), cmds).await.map_err(conn_err(node)) }
        })
        .await?;
        for (i, v) in sized.into_iter().zip(sizes) {
            if judge(node, "size", &v)? == Verdict::Fine {
                if let Some(f) = found[i].as_mut() {
                    f.1 = v.as_int();
                }
            }
        }
    }
    Ok(keys
        .into_iter()
        .zip(found)
        .filter_map(|(r, f)| f.map(|(key_type, size)| (Ranked { key_type, ..r }, size)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::resp::ServerError;

    #[test]
    fn top_n_keeps_the_largest_in_order() {
        let mut t = TopN::new(3);
        for (i, rank) in [5, 1, 9, 7, 3, 9, 2].into_iter().enumerate() {
            t.push(Ranked {
                rank,
                name: format!("k{i}").into_bytes(),
                db: 0,
                key_type: String::new(),
                memory: None,
            });
        }
        let got: Vec<(i64, Vec<u8>)> = t
            .into_sorted()
            .into_iter()
            .map(|r| (r.rank, r.name))
            .collect();
        assert_eq!(
            got,
            vec![
                (9, b"k5".to_vec()),
                (9, b"k2".to_vec()),
                (7, b"k3".to_vec())
            ]
        );
    }

    fn err(line: &str) -> Value {
        Value::Error(ServerError::new(line.as_bytes()))
    }

    #[test]
    fn only_a_positive_size_or_another_error_proves_a_guessed_type() {
        assert!(proves_guess(&Value::Int(16)));
        // A vanished key answers 0 to every size command; so do empty strings and streams.
        assert!(!proves_guess(&Value::Int(0)));
        assert!(!proves_guess(&err(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        )));
        assert!(proves_guess(&err("NOPERM this user has no permissions")));
        assert!(proves_guess(&err("MOVED 3999 127.0.0.1:6381")));
        assert!(!proves_guess(&Value::Nil));
    }

    #[test]
    fn per_key_answers_are_judged_moved_skipped_or_fatal_with_the_command_named() {
        let node = Node {
            host: "10.0.0.1".into(),
            port: 6379,
        };
        for e in ["MOVED 3999 10.0.0.2:6379", "ASK 3999 10.0.0.2:6379"] {
            assert_eq!(judge(&node, "STRLEN", &err(e)).unwrap(), Verdict::Moved);
        }
        assert_eq!(
            judge(&node, "LLEN", &err("WRONGTYPE Operation against a key")).unwrap(),
            Verdict::Skip
        );
        assert_eq!(judge(&node, "LLEN", &Value::Int(0)).unwrap(), Verdict::Fine);
        let e = judge(
            &node,
            "TYPE",
            &err("NOPERM this user has no permissions to run the 'type' command"),
        )
        .unwrap_err();
        assert!(matches!(&e, Error::Auth { message, .. } if message.starts_with("TYPE: NOPERM")));
        for code in [
            "CLUSTERDOWN The cluster is down",
            "LOADING Redis is loading",
            "BUSY script",
            "OOM command not allowed",
            "MASTERDOWN Link with MASTER is down",
            "READONLY You can't write",
        ] {
            let e = judge(&node, "STRLEN", &err(code)).unwrap_err();
            assert!(matches!(e, Error::Server { .. }), "{code}: {e}");
        }
    }

    #[test]
    fn key_types_are_redis_own_or_module_names_never_arbitrary_text() {
        let node = Node {
            host: "h".into(),
            port: 1,
        };
        let t = |s: &str| type_of(&node, &Value::Simple(s.into()));
        assert_eq!(t("zset").unwrap().as_deref(), Some("zset"));
        assert_eq!(t("ReJSON-RL").unwrap().as_deref(), Some("ReJSON-RL"));
        assert_eq!(t("none").unwrap(), None);
        assert!(t("zset\r\nx").is_err());
        assert!(t("a very long answer that is no type").is_err());
        assert!(t("").is_err());
    }
}
