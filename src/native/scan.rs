//! The scans: big keys on a replica (else the master), hot keys on the master.
//!
//! Both walk the whole keyspace of every database that holds keys (`INFO keyspace`) with
//! `SCAN` and a large `COUNT`, one batch at a time, and keep only the top N per unit in a
//! bounded heap: memory does not grow with the keyspace. Nothing here sends `KEYS`, a script or
//! `DEBUG`.
//!
//! - **Big keys**: per batch, one pipeline of `TYPE` (which does not touch the key) and one of
//!   the size command of each key's type (`STRLEN`, `LLEN`, `SCARD`, `ZCARD`, `HLEN`, `XLEN`);
//!   the next batch's `SCAN` rides in the first pipeline, so a batch costs two round trips.
//!   `MEMORY USAGE` (default sampling, which does not touch the key) is asked for the final top
//!   N only. Every key passes through [`KeyObserver`], the hook a per-key aggregation (key
//!   families, [`super::families`]) plugs into; an observer that wants every key's memory
//!   (`MEMORY USAGE`) and TTL (`PTTL`, which does not touch the key either) gets them in the
//!   second pipeline of the batch.
//! - **Hot keys**: per batch, one pipeline of `OBJECT FREQ` (and the next `SCAN`), which reads the LFU counter
//!   without touching the key, before anything else looks at it; only the final top N are then
//!   asked for their type and size. The server's own error tells that no LFU policy is set
//!   (`CONFIG` may be disabled on managed services), which makes the analysis `unsupported`.
//! - **Throttle**: each node gets `keys_per_second`; batches are `keys_per_second / 200` keys
//!   (10 to 1000), and the scan sleeps whenever it is ahead of its budget.
//! - **Connection loss**: a batch that fails on a broken connection is retried on a new one
//!   from the same cursor (a `SCAN` cursor is valid on any connection), up to
//!   [`MAX_RECONNECTS`] times in a row.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::time::Instant;

use super::conn::{keyspace, Connector, Node, Unit};
use super::error::{retryable, Error, Result};
use crate::dcs::{KeyRecord, KeyType, SizeUnit};

/// Reconnects in a row before a node's scan gives up.
pub const MAX_RECONNECTS: u32 = 5;
/// The largest `SCAN COUNT` used.
pub const MAX_BATCH: u32 = 1000;

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

/// Counts keys across the nodes of one scan.
#[derive(Default)]
pub struct Counter {
    pub scanned: AtomicU64,
}

/// Per-node settings of a scan.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub keys_per_second: u32,
    pub top_n: usize,
}

impl Pace {
    /// Keys per `SCAN`: a two-hundredth of a second's budget (10 to [`MAX_BATCH`]), so that
    /// one pipelined batch keeps the server busy only briefly at the default throttle (the
    /// server's other clients wait behind it) and round trips vanish at full speed.
    fn batch(&self) -> u32 {
        (self.keys_per_second / 200).clamp(10, MAX_BATCH)
    }
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

    fn into_sorted(self) -> Vec<Ranked> {
        let mut v: Vec<Ranked> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

fn size_command(key_type: &str) -> Option<&'static str> {
    Some(match key_type {
        "string" => "STRLEN",
        "list" => "LLEN",
        "set" => "SCARD",
        "zset" => "ZCARD",
        "hash" => "HLEN",
        "stream" => "XLEN",
        _ => return None,
    })
}

fn unit_of(key_type: &str) -> SizeUnit {
    if key_type == "string" {
        SizeUnit::Byte
    } else {
        SizeUnit::Count
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::SimpleString(s) => Some(s.clone()),
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// A per-key server error that must end the scan (a missing ACL permission, a cluster node
/// that sends the key elsewhere) rather than skip the key (it vanished or changed type between
/// two round trips).
fn fatal(node: &Node, v: &Value) -> Option<Error> {
    let Value::ServerError(e) = v else {
        return None;
    };
    let e: redis::RedisError = e.clone().into();
    match e.code() {
        Some("NOPERM" | "NOAUTH") => Some(Error::from_redis(&node.label(), &e)),
        Some("MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN") => Some(Error::Redis {
            node: node.label(),
            message: format!("key not served here (cluster resharding or failover?): {e}"),
        }),
        _ => None,
    }
}

fn record(unit: &Unit, r: Ranked, freq: Option<i64>, size: Option<i64>) -> KeyRecord {
    KeyRecord {
        name: String::from_utf8_lossy(&r.name).into_owned(),
        key_type: Some(KeyType::from(r.key_type.as_str())),
        shard: unit.shard.clone(),
        db: Some(r.db),
        unit: size.map(|_| unit_of(&r.key_type)),
        size,
        freq,
        memory: r.memory,
    }
}

/// Walks one database of one node batch by batch. A batch is committed (the cursor moves on)
/// only once the caller has processed it, so a connection that breaks in between costs a
/// reconnect and the same batch again, never a gap.
struct Walker<'a> {
    conn: &'a Connector,
    node: &'a Node,
    db: i64,
    count: u32,
    cursor: u64,
    next: Option<u64>,
    /// The batch after the current one, when the caller fetched it in its own pipeline.
    pending: Option<(u64, Vec<Vec<u8>>)>,
    failures: u32,
}

impl<'a> Walker<'a> {
    fn new(conn: &'a Connector, node: &'a Node, db: i64, pace: Pace) -> Self {
        Walker {
            conn,
            node,
            db,
            count: pace.batch(),
            cursor: 0,
            next: None,
            pending: None,
            failures: 0,
        }
    }

    /// Appends the `SCAN` for the batch after the current one to `pipe` (so that it costs no
    /// round trip of its own); returns whether it did (not after the last batch).
    fn prefetch(&self, pipe: &mut redis::Pipeline) -> bool {
        match self.next {
            Some(n) if n != 0 => {
                pipe.cmd("SCAN").arg(n).arg("COUNT").arg(self.count);
                true
            }
            _ => false,
        }
    }

    /// Takes the answer to the [`prefetch`](Walker::prefetch)ed `SCAN`.
    fn prefetched(&mut self, answer: Option<Value>) {
        self.pending = answer.and_then(|v| redis::from_redis_value(v).ok());
    }

    /// The next batch with the connection it came on; `None` once the walk is complete.
    async fn batch(&mut self) -> Result<Option<(MultiplexedConnection, Vec<Vec<u8>>)>> {
        loop {
            if self.next == Some(0) {
                return Ok(None);
            }
            if let Some((next, keys)) = self.pending.take() {
                let c = match self.conn.get(self.node, self.db).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.recover(e.into()).await?;
                        continue;
                    }
                };
                self.next = Some(next);
                return Ok(Some((c, keys)));
            }
            let attempt = async {
                let mut c = self.conn.get(self.node, self.db).await?;
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(self.cursor)
                    .arg("COUNT")
                    .arg(self.count)
                    .query_async(&mut c)
                    .await
                    .map_err(|e| self.classify(e))?;
                Ok::<_, Step>((c, next, keys))
            };
            match attempt.await {
                Ok((c, next, keys)) => {
                    self.next = Some(next);
                    return Ok(Some((c, keys)));
                }
                Err(e) => self.recover(e).await?,
            }
        }
    }

    /// Marks the current batch done.
    fn commit(&mut self) {
        self.failures = 0;
        if let Some(n) = self.next {
            self.cursor = n;
        }
    }

    fn classify(&self, e: redis::RedisError) -> Step {
        let retry = retryable(&e);
        let err = Error::from_redis(&self.node.label(), &e);
        if retry {
            Step::Retry(err)
        } else {
            Step::Fatal(err)
        }
    }

    /// After a failed step: waits and allows another attempt from the same cursor, or gives
    /// up with the error.
    async fn recover(&mut self, e: Step) -> Result<()> {
        self.conn.forget(self.node, self.db);
        self.next = None;
        self.pending = None;
        match e {
            Step::Retry(e) if self.failures < MAX_RECONNECTS => {
                self.failures += 1;
                tracing::warn!(node = %self.node.label(), db = self.db, attempt = self.failures,
                    error = %e, "connection lost during a scan; resuming from the same cursor");
                tokio::time::sleep(Duration::from_millis(200) * self.failures).await;
                Ok(())
            }
            Step::Retry(e) | Step::Fatal(e) => Err(e),
        }
    }
}

enum Step {
    /// The connection broke: reconnect and try the batch again.
    Retry(Error),
    Fatal(Error),
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        // Connecting failed: worth another try unless the server refused the credentials.
        match e {
            Error::Redis { .. } => Step::Retry(e),
            other => Step::Fatal(other),
        }
    }
}

/// The per-node key budget.
pub struct Budget {
    keys_per_second: f64,
    start: Instant,
    spent: u64,
}

impl Budget {
    pub fn new(keys_per_second: u32) -> Self {
        Budget {
            keys_per_second: f64::from(keys_per_second.max(1)),
            start: Instant::now(),
            spent: 0,
        }
    }

    /// Counts `n` keys and sleeps while the scan is ahead of its budget.
    pub async fn spend(&mut self, n: u64) {
        self.spent += n;
        let due = self.start + Duration::from_secs_f64(self.spent as f64 / self.keys_per_second);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Per key of a batch (by index): its type, its size (elements, or bytes for strings) and,
/// with `memory`, its `MEMORY USAGE`, then with `ttl` its `PTTL`. Keys that vanished (`none`) or have a type without a
/// size are left out. The next batch's `SCAN` rides along in the first pipeline.
async fn sizes(
    c: &mut MultiplexedConnection,
    keys: &[Vec<u8>],
    walker: &mut Walker<'_>,
    memory: bool,
    ttl: bool,
) -> redis::RedisResult<Vec<(usize, String, Vec<Value>)>> {
    let mut p = redis::pipe();
    p.ignore_errors();
    for k in keys {
        p.cmd("TYPE").arg(k);
    }
    let prefetch = walker.prefetch(&mut p);
    let mut types: Vec<Value> = p.query_async(c).await?;
    let next = if prefetch { types.pop() } else { None };
    let mut p = redis::pipe();
    p.ignore_errors();
    let mut asked = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let Some(t) = text(t) else { continue };
        let Some(cmd) = size_command(&t) else {
            continue;
        };
        p.cmd(cmd).arg(&keys[i]);
        if memory {
            p.cmd("MEMORY").arg("USAGE").arg(&keys[i]);
        }
        if ttl {
            p.cmd("PTTL").arg(&keys[i]);
        }
        asked.push((i, t));
    }
    let answers: Vec<Value> = if asked.is_empty() {
        Vec::new()
    } else {
        p.query_async(c).await?
    };
    walker.prefetched(next);
    let per = 1 + usize::from(memory) + usize::from(ttl);
    Ok(asked
        .into_iter()
        .zip(answers.chunks(per))
        .map(|((i, t), pair)| (i, t, pair.to_vec()))
        .collect())
}

/// The databases of `node` that hold keys, with their key counts.
pub async fn databases(conn: &Connector, node: &Node) -> Result<Vec<(i64, u64)>> {
    Ok(keyspace(&conn.info(node, "keyspace").await?))
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

/// Big key scan of one shard: the top N per unit (bytes, elements) of every database, with
/// the `MEMORY USAGE` of the winners (of every key when the observer wants it).
pub async fn bigkeys(
    conn: &Connector,
    unit: &Unit,
    node: &Node,
    dbs: &[(i64, u64)],
    pace: Pace,
    counter: &Counter,
    observer: &mut dyn KeyObserver,
) -> Result<Vec<KeyRecord>> {
    let mut bytes = TopN::new(pace.top_n);
    let mut elements = TopN::new(pace.top_n);
    let mut budget = Budget::new(pace.keys_per_second);
    let memory = observer.wants_memory();
    let ttl = observer.wants_ttl();
    for &(db, _) in dbs {
        let mut w = Walker::new(conn, node, db, pace);
        while let Some((mut c, keys)) = w.batch().await? {
            let answers = match sizes(&mut c, &keys, &mut w, memory, ttl).await {
                Ok(a) => a,
                Err(e) => {
                    let step = w.classify(e);
                    w.recover(step).await?;
                    continue;
                }
            };
            for (name, key_type, answer) in answers {
                if let Some(e) = answer.iter().find_map(|v| fatal(node, v)) {
                    return Err(e);
                }
                let size = answer.first().and_then(int);
                let memory = answer.get(1).filter(|_| memory).and_then(int);
                let ttl_ms = answer.last().filter(|_| ttl).and_then(int);
                observer.observe(&ScannedKey {
                    db,
                    name: &keys[name],
                    key_type: &key_type,
                    size,
                    memory,
                    ttl_ms,
                });
                let Some(size) = size else { continue };
                let r = Ranked {
                    rank: size,
                    name: keys[name].clone(),
                    db,
                    key_type,
                    memory,
                };
                if r.key_type == "string" {
                    bytes.push(r);
                } else {
                    elements.push(r);
                }
            }
            w.commit();
            counter
                .scanned
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
            budget.spend(keys.len() as u64).await;
        }
    }
    let mut winners: Vec<Ranked> = bytes.into_sorted();
    winners.extend(elements.into_sorted());
    if !memory {
        memory_of(conn, node, &mut winners).await?;
    }
    Ok(winners
        .into_iter()
        .map(|r| {
            let size = Some(r.rank);
            record(unit, r, None, size)
        })
        .collect())
}

/// Fills in the `MEMORY USAGE` of `keys` (one pipeline per database).
async fn memory_of(conn: &Connector, node: &Node, keys: &mut [Ranked]) -> Result<()> {
    let mut dbs: Vec<i64> = keys.iter().map(|k| k.db).collect();
    dbs.sort_unstable();
    dbs.dedup();
    for db in dbs {
        let mut c = conn.get(node, db).await?;
        let mut p = redis::pipe();
        p.ignore_errors();
        let idx: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].db == db).collect();
        for &i in &idx {
            p.cmd("MEMORY").arg("USAGE").arg(&keys[i].name);
        }
        let answers: Vec<Value> = p.query_async(&mut c).await.map_err(|e| {
            conn.forget(node, db);
            Error::from_redis(&node.label(), &e)
        })?;
        for (&i, v) in idx.iter().zip(&answers) {
            if let Some(e) = fatal(node, v) {
                return Err(e);
            }
            keys[i].memory = int(v);
        }
    }
    Ok(())
}

/// Hot key scan of one shard's master: the top N by LFU frequency.
pub async fn hotkeys(
    conn: &Connector,
    unit: &Unit,
    dbs: &[(i64, u64)],
    pace: Pace,
    counter: &Counter,
) -> Result<Vec<KeyRecord>> {
    let node = &unit.master;
    let mut top = TopN::new(pace.top_n);
    let mut budget = Budget::new(pace.keys_per_second);
    for &(db, _) in dbs {
        let mut w = Walker::new(conn, node, db, pace);
        while let Some((mut c, keys)) = w.batch().await? {
            let mut p = redis::pipe();
            p.ignore_errors();
            for k in &keys {
                p.cmd("OBJECT").arg("FREQ").arg(k);
            }
            let prefetch = w.prefetch(&mut p);
            let mut freqs: Vec<Value> = match p.query_async(&mut c).await {
                Ok(f) => f,
                Err(e) => {
                    let step = w.classify(e);
                    w.recover(step).await?;
                    continue;
                }
            };
            let next = if prefetch { freqs.pop() } else { None };
            let n = keys.len() as u64;
            for (name, v) in keys.into_iter().zip(&freqs) {
                if let Value::ServerError(e) = v {
                    let e: redis::RedisError = e.clone().into();
                    if e.to_string().contains("LFU") {
                        return Err(Error::Unsupported {
                            node: node.label(),
                            message: format!("hot key analysis needs an LFU maxmemory-policy: {e}"),
                        });
                    }
                    if let Some(err) = fatal(node, v) {
                        return Err(err);
                    }
                    continue;
                }
                let Some(freq) = int(v) else { continue };
                top.push(Ranked {
                    rank: freq,
                    name,
                    db,
                    key_type: String::new(),
                    memory: None,
                });
            }
            w.prefetched(next);
            w.commit();
            counter.scanned.fetch_add(n, Ordering::Relaxed);
            budget.spend(n).await;
        }
    }
    // Type and size of the winners only, after their frequency was read.
    let winners = top.into_sorted();
    let mut out = Vec::with_capacity(winners.len());
    for r in winners {
        let mut c = conn.get(node, r.db).await?;
        let key_type: String = redis::cmd("TYPE")
            .arg(&r.name)
            .query_async(&mut c)
            .await
            .map_err(|e| Error::from_redis(&node.label(), &e))?;
        let size = match size_command(&key_type) {
            Some(cmd) => redis::cmd(cmd)
                .arg(&r.name)
                .query_async::<i64>(&mut c)
                .await
                .ok(),
            None => None,
        };
        let freq = Some(r.rank);
        let r = Ranked { key_type, ..r };
        if r.key_type == "none" {
            continue;
        }
        out.push(record(unit, r, freq, size));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn batch_follows_the_throttle_within_bounds() {
        let p = |k| Pace {
            keys_per_second: k,
            top_n: 1,
        };
        assert_eq!(p(10_000_000).batch(), 1000);
        assert_eq!(p(20_000).batch(), 100);
        assert_eq!(p(5).batch(), 10);
    }
}
