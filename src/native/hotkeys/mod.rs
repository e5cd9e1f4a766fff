//! Hot keys of a Redis or Valkey node from the best source it has (`analysis.hotkey.source`):
//!
//! - `hotkeys`: the server's own tracking, `HOTKEYS` ([`redis`]: Redis 8.6+, a session per
//!   analysis, CPU time and network bytes per key; [`valkey`]: Valkey 9.2+, accesses per second
//!   of its last window, when its detection is on);
//! - `lfu`: the LFU counters (`OBJECT FREQ` of every key, [`crate::native::scan::hotkeys`]),
//!   where the eviction policy keeps them;
//! - `monitor`: a bounded `MONITOR` sample ([`monitor`]), only when chosen.
//!
//! `auto` (the default) takes `HOTKEYS` where the server has it on, else the LFU counters, else
//! the analysis is `unsupported` with a message naming the other choices. Support is read from
//! the server itself (`COMMAND INFO HOTKEYS`; where `COMMAND` is refused, the engine and its
//! version), never assumed. Each node resolves its own source (a cluster in the middle of an
//! upgrade may mix them), and says which one in the result (`dcs_hotkey_source_info`).
//!
//! Keys from `HOTKEYS` and `MONITOR` are then asked their type and size, as the LFU scan asks
//! its winners (`TYPE` does not touch a key; the size commands run on the node's connection,
//! which has `CLIENT NO-TOUCH` where the server offers it).

pub mod keyspecs;
pub mod line;
pub mod monitor;
pub mod redis;
pub mod valkey;

use std::collections::BTreeMap;

use tracing::info;

use super::conn::Connector;
use super::error::{Error, Result};
use super::guess::Kind;
use super::pace::{Counter, Pace};
use super::resp::{Cmd, Expect, Limits, Value};
use super::topology::{Engine, Node, Topology, Unit};
use super::walk::Guard;
use crate::config::hotkey_source::{HotkeySource, HotkeySourceSettings};
use crate::dcs::{HotRates, KeyRecord, KeyType, SizeUnit};
use crate::metrics::keylabel::name_from_bytes;
use crate::metrics::store::Store;

/// One key as a source other than the LFU counters measured it.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub name: Vec<u8>,
    /// `None` where the source does not say (Redis `HOTKEYS`).
    pub db: Option<i64>,
    pub rates: HotRates,
}

/// Hottest first by the source's measure; ties by database and name.
pub(crate) fn rank(keys: &mut [Measured]) {
    keys.sort_by(|a, b| {
        a.rates
            .hotter(&b.rates)
            .then(a.db.cmp(&b.db))
            .then(a.name.cmp(&b.name))
    });
}

/// The source a node's hot keys come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    RedisHotkeys,
    ValkeyHotkeys,
    Lfu,
    Monitor,
}

impl Resolved {
    /// The `source` label.
    pub fn label(self) -> &'static str {
        match self {
            Resolved::RedisHotkeys | Resolved::ValkeyHotkeys => "hotkeys",
            Resolved::Lfu => "lfu",
            Resolved::Monitor => "monitor",
        }
    }
}

/// Which `HOTKEYS` a server has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    None,
    /// Sessions: `START`, `STOP`, `GET`, `RESET` (Redis 8.6+).
    Redis,
    /// A running detection read with `GET` (Valkey 9.2+).
    Valkey,
}

/// Reads which `HOTKEYS` a `COMMAND INFO HOTKEYS` reply describes: nil for an unknown command,
/// else the command with its subcommands (`hotkeys|start` only where sessions exist).
pub fn offer_of(v: &Value) -> Offer {
    fn names(v: &Value, out: &mut Vec<Vec<u8>>) {
        match v {
            Value::Array(a) => a.iter().for_each(|e| names(e, out)),
            Value::Bulk(b) => out.push(b.to_ascii_lowercase()),
            Value::Simple(s) => out.push(s.to_ascii_lowercase().into_bytes()),
            _ => {}
        }
    }
    let entry = match v {
        Value::Array(a) => a.first(),
        _ => None,
    };
    let Some(entry @ Value::Array(_)) = entry else {
        return Offer::None;
    };
    let mut all = Vec::new();
    names(entry, &mut all);
    if all.iter().any(|n| n == b"hotkeys|start") {
        Offer::Redis
    } else if all.iter().any(|n| n == b"hotkeys|get") {
        Offer::Valkey
    } else {
        Offer::None
    }
}

/// Which `HOTKEYS` `node` has: its own description, or where `COMMAND` is refused, what its
/// engine and version promise.
pub async fn offer(conn: &Connector, node: &Node, engine: &Engine) -> Result<Offer> {
    let v = conn
        .get(node)
        .await?
        .one(
            None,
            Cmd::new("COMMAND INFO")
                .arg("HOTKEYS")
                .expect(Expect::Array, Limits::list(2000, 1024, 8)),
        )
        .await
        .map_err(|e| Error::from_conn(&node.label(), e))?;
    match v {
        Value::Error(e) if e.code() == "NOPERM" => Ok(match engine.name {
            "valkey" if engine.version_at_least(9, 2) => Offer::Valkey,
            "redis" if engine.version_at_least(8, 6) => Offer::Redis,
            _ => Offer::None,
        }),
        Value::Error(e) => Err(Error::from_server(&node.label(), "COMMAND INFO", &e)),
        v => Ok(offer_of(&v)),
    }
}

/// The message of a node without any source `auto` may take.
fn none_left(node: &Node, lfu: &Error, offer: Offer) -> Error {
    let (hotkeys, turn_on) = match offer {
        Offer::Valkey => (
            "its HOTKEYS detection is off (hotkeys-top-k 0)",
            ", turn the server's HOTKEYS on",
        ),
        _ => ("it has no HOTKEYS command (Redis 8.6+, Valkey 9.2+)", ""),
    };
    let why = match lfu {
        Error::Unsupported { message, .. } => message.clone(),
        other => other.to_string(),
    };
    // The server's own message may end a sentence already.
    let why = why.trim_end_matches('.');
    Error::Unsupported {
        node: node.label(),
        message: format!(
            "no hot key source: {hotkeys}, and {why}. Choose one: set an LFU \
             maxmemory-policy{turn_on}, or set analysis.hotkey.source: monitor (a bounded \
             MONITOR sample per interval, which costs throughput while it runs)"
        ),
    }
}

/// The source `node` gives its hot keys from under `settings`, or why it has none.
pub async fn resolve(
    conn: &Connector,
    node: &Node,
    engine: &Engine,
    settings: &HotkeySourceSettings,
) -> Result<Resolved> {
    match settings.source {
        HotkeySource::Lfu => return Ok(Resolved::Lfu),
        HotkeySource::Monitor => return Ok(Resolved::Monitor),
        HotkeySource::Hotkeys | HotkeySource::Auto => {}
    }
    let offer = offer(conn, node, engine).await?;
    if settings.source == HotkeySource::Hotkeys {
        return match offer {
            Offer::Redis => Ok(Resolved::RedisHotkeys),
            Offer::Valkey => Ok(Resolved::ValkeyHotkeys),
            Offer::None => Err(Error::Unsupported {
                node: node.label(),
                message: format!(
                    "analysis.hotkey.source is hotkeys, but the server ({}) has no HOTKEYS \
                     command (Redis 8.6+, Valkey 9.2+); choose auto, lfu or monitor",
                    engine.describe()
                ),
            }),
        };
    }
    match offer {
        Offer::Redis => return Ok(Resolved::RedisHotkeys),
        Offer::Valkey => match valkey::enabled(conn, node).await? {
            Some(true) => return Ok(Resolved::ValkeyHotkeys),
            Some(false) => {}
            // `CONFIG` refused: on if it reports anything.
            None => {
                if !valkey::get(conn, node).await?.is_empty() {
                    return Ok(Resolved::ValkeyHotkeys);
                }
            }
        },
        Offer::None => {}
    }
    match super::probe::lfu(conn, node).await {
        Ok(()) => Ok(Resolved::Lfu),
        Err(e @ Error::Unsupported { .. }) => Err(none_left(node, &e, offer)),
        Err(e) => Err(e),
    }
}

/// Checks, before a hot key analysis starts, that the first shard's master has a source (the
/// analysis is `unsupported` at once otherwise).
pub async fn probe(
    conn: &Connector,
    topology: &Topology,
    settings: &HotkeySourceSettings,
) -> Result<()> {
    let Some(unit) = topology.units.first() else {
        return Ok(());
    };
    let node = &unit.master;
    match resolve(conn, node, &topology.engine, settings).await? {
        // An empty server cannot tell yet, which is not an error.
        Resolved::Lfu => super::probe::lfu(conn, node).await,
        _ => Ok(()),
    }
}

/// What a node's hot key scan needs besides its connections.
pub struct Ctx<'a> {
    pub target_id: &'a str,
    pub task_id: &'a str,
    pub settings: &'a HotkeySourceSettings,
    pub engine: &'a Engine,
    pub store: &'a Store,
}

/// The hot keys of one shard's master, from its source (see the module docs).
pub async fn scan_node(
    ctx: Ctx<'_>,
    conn: &Connector,
    guard: &Guard,
    unit: &Unit,
    dbs: &[(i64, u64)],
    pace: Pace,
    counter: &Counter,
) -> Result<Vec<KeyRecord>> {
    let node = &unit.master;
    let source = resolve(conn, node, ctx.engine, ctx.settings).await?;
    let keys = match source {
        Resolved::Lfu => super::scan::hotkeys(conn, guard, unit, dbs, pace, counter).await?,
        other => {
            let measured = match other {
                Resolved::RedisHotkeys => {
                    redis::sample(conn, node, ctx.settings.hotkeys_window, pace.top_n).await?
                }
                Resolved::ValkeyHotkeys => valkey::sample(conn, node).await?,
                _ => {
                    let s = monitor::sample(conn, node, &ctx.settings.monitor).await?;
                    info!(node = %node.label(), commands = s.commands, bytes = s.bytes,
                        keys = s.counts.len(), seconds = s.seconds, ended = s.ended.as_str(),
                        "MONITOR sample taken");
                    from_counts(s.counts, s.seconds)
                }
            };
            // Every key of the node counts as seen: the source looked at all of them.
            counter.add(dbs.iter().map(|(_, n)| n).sum());
            describe(conn, unit, dbs, measured, pace.top_n).await?
        }
    };
    let shard = unit.shard.as_deref().unwrap_or("");
    ctx.store
        .stage_hotkey_source(ctx.target_id, ctx.task_id, shard, source.label());
    Ok(keys)
}

/// Accesses per second of a sample's counts.
fn from_counts(
    counts: std::collections::HashMap<(i64, Vec<u8>), u64>,
    seconds: f64,
) -> Vec<Measured> {
    let mut out: Vec<Measured> = counts
        .into_iter()
        .map(|((db, name), n)| Measured {
            name,
            db: Some(db),
            rates: HotRates {
                accesses_per_second: HotRates::rate(n as f64, seconds),
                ..HotRates::default()
            },
        })
        .collect();
    rank(&mut out);
    out
}

/// The top `top_n` of `measured` as key records, with the type and size of those that exist
/// in a known database (one pipeline of `TYPE`, then one of size commands, per database). A
/// key a source reported that does not exist (a client reading a key never written) stays,
/// without a type: its load is real.
async fn describe(
    conn: &Connector,
    unit: &Unit,
    dbs: &[(i64, u64)],
    mut measured: Vec<Measured>,
    top_n: usize,
) -> Result<Vec<KeyRecord>> {
    measured.truncate(top_n);
    let node = &unit.master;
    // A source that does not name the database (Redis `HOTKEYS`): database 0 where it is the
    // only one with keys, which a cluster always is.
    let only_db0 = dbs.iter().all(|(db, _)| *db == 0);
    for m in &mut measured {
        if m.db.is_none() && only_db0 {
            m.db = Some(0);
        }
    }
    let mut found: Vec<Option<(String, Option<i64>)>> = vec![None; measured.len()];
    let mut by_db: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, m) in measured.iter().enumerate() {
        if let Some(db) = m.db {
            by_db.entry(db).or_default().push(i);
        }
    }
    let c = conn.get(node).await?;
    let conn_err = |e| Error::from_conn(&node.label(), e);
    for (db, idx) in by_db {
        let types = c
            .run(
                Some(db),
                &idx.iter()
                    .map(|&i| {
                        Cmd::new("TYPE")
                            .arg(&measured[i].name)
                            .expect(Expect::Text, Limits::WORD)
                    })
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(conn_err)?;
        let mut sized = Vec::new();
        let mut cmds = Vec::new();
        for (&i, t) in idx.iter().zip(&types) {
            match t {
                // Moved (a resharding) or refused: the key stays, without a type.
                Value::Error(e) if e.code() == "NOPERM" => {
                    return Err(Error::from_server(&node.label(), "TYPE", e))
                }
                Value::Error(_) => continue,
                _ => {}
            }
            let Some(t) = t.as_text().filter(|t| *t != "none") else {
                continue;
            };
            if let Some(kind) = Kind::parse(t) {
                cmds.push(
                    Cmd::new(kind.size_command())
                        .arg(&measured[i].name)
                        .expect(Expect::Int, Limits::SMALL),
                );
                sized.push(i);
            }
            found[i] = Some((super::resp::codec::printable(t.as_bytes(), 16), None));
        }
        if cmds.is_empty() {
            continue;
        }
        let sizes = c.run(Some(db), &cmds).await.map_err(conn_err)?;
        for (i, v) in sized.into_iter().zip(sizes) {
            if let (Some(f), Value::Int(n)) = (found[i].as_mut(), v) {
                f.1 = Some(n);
            }
        }
    }
    Ok(measured
        .into_iter()
        .zip(found)
        .map(|(m, f)| {
            let (key_type, size) = match f {
                Some((t, size)) => (Some(t), size),
                None => (None, None),
            };
            let unit_of = key_type.as_deref().map(|t| {
                if t == "string" {
                    SizeUnit::Byte
                } else {
                    SizeUnit::Count
                }
            });
            KeyRecord {
                name: name_from_bytes(&m.name).into_owned(),
                key_type: key_type.as_deref().map(KeyType::from),
                shard: unit.shard.clone(),
                db: m.db,
                unit: size.and(unit_of),
                size,
                freq: None,
                memory: None,
                rates: Some(m.rates),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    /// `COMMAND INFO HOTKEYS` the way each server answers it (trimmed to what matters).
    #[test]
    fn the_servers_own_description_tells_sessions_from_detection_from_nothing() {
        let sub = |name: &str| Value::Array(vec![b(name), Value::Int(2), Value::Array(vec![])]);
        let cmd = |subs: Vec<Value>| {
            Value::Array(vec![Value::Array(vec![
                b("hotkeys"),
                Value::Int(-2),
                Value::Array(vec![Value::Simple("admin".into())]),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Array(vec![]),
                Value::Array(vec![]),
                Value::Array(vec![]),
                Value::Array(subs),
            ])])
        };
        let redis = cmd(vec![
            sub("hotkeys|start"),
            sub("hotkeys|stop"),
            sub("hotkeys|get"),
            sub("hotkeys|reset"),
        ]);
        let valkey = cmd(vec![
            sub("hotkeys|get"),
            sub("hotkeys|reset"),
            sub("hotkeys|help"),
        ]);
        assert_eq!(offer_of(&redis), Offer::Redis);
        assert_eq!(offer_of(&valkey), Offer::Valkey);
        // Redis 8.2 and Valkey 9.1: a nil entry for a command they do not have.
        assert_eq!(offer_of(&Value::Array(vec![Value::Nil])), Offer::None);
        assert_eq!(offer_of(&Value::Array(vec![])), Offer::None);
    }

    #[test]
    fn sample_counts_become_rates_hottest_first() {
        let mut counts = std::collections::HashMap::new();
        counts.insert((0, b"a".to_vec()), 10);
        counts.insert((1, b"a".to_vec()), 30);
        counts.insert((0, b"b".to_vec()), 30);
        let m = from_counts(counts, 2.0);
        let got: Vec<(Option<i64>, &[u8], Option<f64>)> = m
            .iter()
            .map(|k| (k.db, k.name.as_slice(), k.rates.accesses_per_second))
            .collect();
        assert_eq!(
            got,
            [
                (Some(0), &b"b"[..], Some(15.0)),
                (Some(1), &b"a"[..], Some(15.0)),
                (Some(0), &b"a"[..], Some(5.0))
            ]
        );
    }
}
