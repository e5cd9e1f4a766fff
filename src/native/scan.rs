//! The scans: big keys on a replica (else the master), hot keys on the master.
//!
//! Both walk the whole keyspace of every database that holds keys (`INFO keyspace`) with
//! `SCAN` and a large `COUNT`, and keep only the top N per unit in a bounded heap: memory does
//! not grow with the keyspace. Nothing here sends `KEYS`, a script or `DEBUG`.
//!
//! - **Big keys**: per batch, one pipeline of the size command of each key's type (`STRLEN`,
//!   `LLEN`, `SCARD`, `ZCARD`, `HLEN`, `XLEN`), the type guessed from the shape of the key's
//!   name ([`super::guess`]); keys whose guess the answer does not prove are asked `TYPE`
//!   (which does not touch the key), then the right size command. `MEMORY USAGE` (default
//!   sampling, which does not touch the key) is asked for the final top N only. Every key
//!   passes through [`KeyObserver`], the hook a per-key aggregation (key families,
//!   [`super::families`]) plugs into; an observer that wants every key's memory
//!   (`MEMORY USAGE`) and TTL (`PTTL`, which does not touch the key either) gets them in the
//!   same pipeline as the size.
//! - **Hot keys**: per batch, one pipeline of `OBJECT FREQ`, which reads the LFU counter
//!   without touching the key, before anything else looks at it; only the final top N are then
//!   asked for their type and size. The server's own error tells that no LFU policy is set
//!   (`CONFIG` may be disabled on managed services), which makes the analysis `unsupported`.
//! - **Pipelining** (`walk`): the `SCAN` chain runs ahead of the per-key work, and at full
//!   speed up to [`MAX_DEPTH`] batches are in flight on one connection, so the server has the
//!   next batch queued while the exporter reads the last one.
//! - **Throttle**: each node gets `keys_per_second`; batches are `keys_per_second / 1000` keys
//!   (10 to 1000), one at a time until the budget exceeds full batches, and the scan sleeps
//!   whenever it is ahead of its budget; one that fell behind does not catch up in a burst.
//! - **Connection loss**: a walk that fails on a broken connection goes on, on a new one, from
//!   the cursor after the last batch it processed (a `SCAN` cursor is valid on any
//!   connection), up to [`MAX_RECONNECTS`] times in a row; the final `MEMORY USAGE`, type and
//!   size requests for the winners reconnect the same way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::time::Instant;

use super::conn::{keyspace, Connector, Node, Unit};
use super::error::{retryable, Error, Result};
use super::guess::{Kind, TypeGuess};
use crate::dcs::{KeyRecord, KeyType, SizeUnit};

/// Reconnects in a row before a node's scan gives up.
pub const MAX_RECONNECTS: u32 = 5;
/// The largest `SCAN COUNT` used.
pub const MAX_BATCH: u32 = 1000;
/// The most batches of one node's scan in flight at once.
pub const MAX_DEPTH: u32 = 4;
/// Wait before the first reconnect of a broken scan (times the failures in a row).
pub const RECONNECT_DELAY: Duration = Duration::from_millis(200);

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
    /// Keys per `SCAN`: a thousandth of a second's budget (10 to [`MAX_BATCH`]), so that
    /// one pipelined batch keeps the server busy only briefly at the default throttle (the
    /// server's other clients wait behind it) and round trips vanish at full speed.
    fn batch(&self) -> u32 {
        (self.keys_per_second / 1000).clamp(10, MAX_BATCH)
    }

    /// Batches in flight at once: one while the throttle holds batches below [`MAX_BATCH`]
    /// (a batch's work is then a short burst followed by a pause, and a second batch would only
    /// make the burst longer), more as the budget grows past full batches, up to
    /// [`MAX_DEPTH`], so that at full speed the server always has the next batch queued while
    /// the exporter reads the previous one.
    fn depth(&self) -> usize {
        (self.keys_per_second / (1000 * MAX_BATCH)).clamp(1, MAX_DEPTH) as usize
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

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::SimpleString(s) => Some(s),
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// A per-key server error that must end the scan (a missing ACL permission, a cluster that is
/// down) rather than skip the key (it vanished, changed type or moved to another shard between
/// two round trips: see [`moved_away`]).
fn fatal(node: &Node, v: &Value) -> Option<Error> {
    let Value::ServerError(e) = v else {
        return None;
    };
    let e: redis::RedisError = e.clone().into();
    match e.code() {
        Some("NOPERM" | "NOAUTH") => Some(Error::from_redis(&node.label(), &e)),
        Some("CLUSTERDOWN" | "TRYAGAIN") => Some(Error::Redis {
            node: node.label(),
            message: format!("cluster not serving keys (failover?): {e}"),
        }),
        _ => None,
    }
}

/// Whether a per-key answer says the key now lives on another shard (`MOVED`, `ASK`): a
/// cluster resharding moved it between `SCAN` and the command. Such a key is left out of this
/// shard's result, as a key deleted in between would be; the scan goes on.
fn moved_away(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if is_moved(e.code()))
}

/// Whether an error code is a cluster redirection to the key's new shard.
fn is_moved(code: &str) -> bool {
    matches!(code, "MOVED" | "ASK")
}

/// Logs the keys a shard's scan left out because they moved to another shard.
fn report_moved(node: &Node, analysis: &str, moved: u64) {
    if moved > 0 {
        tracing::warn!(node = %node.label(), analysis, keys = moved,
            "keys moved to another shard while the scan ran (cluster resharding?); left out of \
             this shard's result");
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

/// What a failed step leads to.
enum Step {
    /// The connection broke: reconnect and try again from the same place.
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

fn classify(node: &Node, e: redis::RedisError) -> Step {
    let retry = retryable(&e);
    let err = Error::from_redis(&node.label(), &e);
    if retry {
        Step::Retry(err)
    } else {
        Step::Fatal(err)
    }
}

/// After a failed step on `db` of `node`: drops the pooled connection, waits a little longer
/// with each failure in a row, and allows another attempt; gives up with the error after
/// [`MAX_RECONNECTS`] failures in a row or on an error a new connection cannot cure.
async fn recover(
    conn: &Connector,
    node: &Node,
    db: i64,
    failures: &mut u32,
    step: Step,
) -> Result<()> {
    conn.forget(node, db);
    match step {
        Step::Retry(e) if *failures < MAX_RECONNECTS => {
            *failures += 1;
            tracing::warn!(node = %node.label(), db, attempt = *failures, error = %e,
                "connection lost during a scan; going on from where it was on a new one");
            tokio::time::sleep(RECONNECT_DELAY * *failures).await;
            Ok(())
        }
        Step::Retry(e) | Step::Fatal(e) => Err(e),
    }
}

/// Runs `f` on a pooled connection to `db` of `node`, on a new connection again when the
/// connection breaks (as [`walk`] does).
async fn with_reconnect<T, F, Fut>(conn: &Connector, node: &Node, db: i64, mut f: F) -> Result<T>
where
    F: FnMut(MultiplexedConnection) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let mut failures = 0;
    loop {
        let step = match conn.get(node, db).await {
            Ok(c) => match f(c).await {
                Ok(t) => return Ok(t),
                Err(e) => classify(node, e),
            },
            Err(e) => Step::from(e),
        };
        recover(conn, node, db, &mut failures, step).await?;
    }
}

/// Walks database `db` of `node`: `SCAN` batch after batch, `work` on each batch's keys, with
/// up to [`Pace::depth`] batches in flight on one pipelined connection (the next `SCAN` goes
/// out as soon as the previous cursor is known, not after the batch's work), then `take` on
/// each batch's outcome in `SCAN` order, then the budget.
///
/// A batch is done only once `take` had it: when the connection breaks, the batches in flight
/// are dropped and the walk goes on, on a new connection, from the cursor after the last batch
/// taken (a `SCAN` cursor is valid on any connection): no gap, and no key seen twice beyond
/// what `SCAN` itself may repeat.
#[allow(clippy::too_many_arguments)]
async fn walk<T, W, Fut>(
    conn: &Connector,
    node: &Node,
    db: i64,
    pace: Pace,
    budget: &mut Budget,
    counter: &Counter,
    work: W,
    mut take: impl FnMut(Vec<Vec<u8>>, T) -> Result<()>,
) -> Result<()>
where
    W: Fn(MultiplexedConnection, Vec<Vec<u8>>) -> Fut,
    Fut: Future<Output = redis::RedisResult<(Vec<Vec<u8>>, T)>>,
{
    let count = pace.batch();
    let mut cursor = 0u64;
    let mut failures = 0u32;
    loop {
        let c = match conn.get(node, db).await {
            Ok(c) => c,
            Err(e) => {
                recover(conn, node, db, &mut failures, e.into()).await?;
                continue;
            }
        };
        // `Some(cursor)`: the next `SCAN` to send; `None`: the walk is complete.
        let scans = stream::unfold(Some(cursor), |at| {
            let mut c = c.clone();
            async move {
                let at = at?;
                let r: redis::RedisResult<(u64, Vec<Vec<u8>>)> = redis::cmd("SCAN")
                    .arg(at)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await;
                let then = match &r {
                    Ok((next, _)) if *next != 0 => Some(*next),
                    _ => None,
                };
                Some((r, then))
            }
        });
        let work = &work;
        let batches = scans
            .map(|r| {
                let c = c.clone();
                async move {
                    let (next, keys) = r?;
                    let (keys, t) = work(c, keys).await?;
                    Ok::<_, redis::RedisError>((next, keys, t))
                }
            })
            .buffered(pace.depth());
        // The batches in flight end with this block, before the wait for a new connection.
        let e = {
            let mut batches = std::pin::pin!(batches);
            loop {
                match batches.next().await {
                    None => return Ok(()),
                    Some(Ok((next, keys, t))) => {
                        let n = keys.len() as u64;
                        take(keys, t)?;
                        cursor = next;
                        failures = 0;
                        counter.scanned.fetch_add(n, Ordering::Relaxed);
                        budget.spend(n).await;
                    }
                    Some(Err(e)) => break e,
                }
            }
        };
        recover(conn, node, db, &mut failures, classify(node, e)).await?;
    }
}

/// The per-node key budget: after each batch the scan waits until the batch's share of
/// `keys_per_second` has passed. A scan that fell behind (a slow batch, a late timer) goes on
/// at its pace from there instead of catching up in a burst of back-to-back batches, which
/// would hold up the server's other clients just as a bigger batch would.
pub struct Budget {
    keys_per_second: f64,
    due: Instant,
}

impl Budget {
    pub fn new(keys_per_second: u32) -> Self {
        Budget {
            keys_per_second: f64::from(keys_per_second.max(1)),
            due: Instant::now(),
        }
    }

    /// Counts `n` keys and sleeps until their share of the budget has passed.
    pub async fn spend(&mut self, n: u64) {
        let share = Duration::from_secs_f64(n as f64 / self.keys_per_second);
        let now = Instant::now();
        // Behind by more than this batch's share: the lost time is not made up.
        let earliest = now.checked_sub(share).unwrap_or(now);
        self.due = self.due.max(earliest) + share;
        if self.due > now {
            tokio::time::sleep_until(self.due).await;
        }
    }
}

/// Per key of a batch (by index): its type, its size (elements, or bytes for strings) and,
/// with `memory`, its `MEMORY USAGE`, then with `ttl` its `PTTL`. Keys that vanished (`none`)
/// or have a type without a size are left out.
///
/// One round trip for most keys: the size command of the type `guess` expects (see
/// [`super::guess`]), with `MEMORY USAGE` and `PTTL`, which do not depend on the type. A key
/// whose guess is answered `WRONGTYPE` or 0 (which does not prove the type: a vanished key, an
/// empty string or stream) is asked `TYPE`, then the size command of its type, in two more
/// round trips, as without a guess.
async fn sizes(
    c: &mut MultiplexedConnection,
    keys: &[Vec<u8>],
    memory: bool,
    ttl: bool,
    guess: &Mutex<TypeGuess>,
) -> redis::RedisResult<Vec<(usize, Kind, Vec<Value>)>> {
    // SCAN may answer a batch without keys (it stops after ten times COUNT empty buckets), and
    // the client refuses an empty pipeline.
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let guesses: Vec<Kind> = {
        let mut g = guess.lock().unwrap_or_else(PoisonError::into_inner);
        keys.iter().map(|k| g.guess(k)).collect()
    };
    let mut p = redis::pipe();
    p.ignore_errors();
    for (k, kind) in keys.iter().zip(&guesses) {
        p.cmd(kind.size_command()).arg(k);
        if memory {
            p.cmd("MEMORY").arg("USAGE").arg(k);
        }
        if ttl {
            p.cmd("PTTL").arg(k);
        }
    }
    let answers: Vec<Value> = p.query_async(c).await?;
    let per = 1 + usize::from(memory) + usize::from(ttl);
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
        let mut p = redis::pipe();
        p.ignore_errors();
        for (i, _) in &unsure {
            p.cmd("TYPE").arg(&keys[*i]);
        }
        let types: Vec<Value> = p.query_async(c).await?;
        let mut p = redis::pipe();
        p.ignore_errors();
        let mut asked = Vec::new();
        for ((i, answer), t) in unsure.into_iter().zip(&types) {
            let Some(kind) = text(t).and_then(Kind::parse) else {
                continue;
            };
            p.cmd(kind.size_command()).arg(&keys[i]);
            asked.push((i, kind, answer));
        }
        if !asked.is_empty() {
            let sizes: Vec<Value> = p.query_async(c).await?;
            for ((i, kind, answer), size) in asked.into_iter().zip(sizes) {
                let mut answer = answer.to_vec();
                answer[0] = size;
                out.push((i, kind, answer));
            }
        }
    }
    let mut g = guess.lock().unwrap_or_else(PoisonError::into_inner);
    for (i, kind, _) in &out {
        g.learn(&keys[*i], *kind);
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
        Value::ServerError(e) => e.code() != "WRONGTYPE",
        _ => false,
    }
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
    let guess = &Mutex::new(TypeGuess::new());
    let mut moved = 0u64;
    for &(db, _) in dbs {
        let work = |mut c: MultiplexedConnection, keys: Vec<Vec<u8>>| async move {
            let answers = sizes(&mut c, &keys, memory, ttl, guess).await?;
            Ok((keys, answers))
        };
        let take = |keys: Vec<Vec<u8>>, answers: Vec<(usize, Kind, Vec<Value>)>| {
            for (i, kind, answer) in answers {
                let key_type = kind.name();
                if answer.first().is_some_and(moved_away) {
                    moved += 1;
                    continue;
                }
                if let Some(e) = answer.iter().find_map(|v| fatal(node, v)) {
                    return Err(e);
                }
                let size = answer.first().and_then(int);
                let memory = answer.get(1).filter(|_| memory).and_then(int);
                let ttl_ms = answer.last().filter(|_| ttl).and_then(int);
                observer.observe(&ScannedKey {
                    db,
                    name: &keys[i],
                    key_type,
                    size,
                    memory,
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
                        memory,
                    });
                }
            }
            Ok(())
        };
        walk(conn, node, db, pace, &mut budget, counter, work, take).await?;
    }
    report_moved(node, "bigkey", moved);
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
        let idx: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].db == db).collect();
        let mut p = redis::pipe();
        p.ignore_errors();
        for &i in &idx {
            p.cmd("MEMORY").arg("USAGE").arg(&keys[i].name);
        }
        let answers: Vec<Value> = with_reconnect(conn, node, db, |mut c| {
            let p = &p;
            async move { p.query_async(&mut c).await }
        })
        .await?;
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
    let mut moved = 0u64;
    for &(db, _) in dbs {
        let work = |mut c: MultiplexedConnection, keys: Vec<Vec<u8>>| async move {
            if keys.is_empty() {
                return Ok((keys, Vec::new()));
            }
            let mut p = redis::pipe();
            p.ignore_errors();
            for k in &keys {
                p.cmd("OBJECT").arg("FREQ").arg(k);
            }
            let freqs: Vec<Value> = p.query_async(&mut c).await?;
            Ok((keys, freqs))
        };
        let take = |keys: Vec<Vec<u8>>, freqs: Vec<Value>| {
            for (name, v) in keys.into_iter().zip(&freqs) {
                if moved_away(v) {
                    moved += 1;
                    continue;
                }
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
        walk(conn, node, db, pace, &mut budget, counter, work, take).await?;
    }
    report_moved(node, "hotkey", moved);
    // Type and size of the winners only, after their frequency was read.
    let winners = top.into_sorted();
    let mut out = Vec::with_capacity(winners.len());
    for r in winners {
        let (key_type, size) = with_reconnect(conn, node, r.db, |mut c| {
            let name = &r.name;
            async move {
                let key_type: String = match redis::cmd("TYPE").arg(name).query_async(&mut c).await
                {
                    Ok(t) => t,
                    // Moved to another shard since its frequency was read: as if gone.
                    Err(e) if e.code().is_some_and(is_moved) => {
                        return Ok(("none".to_owned(), None))
                    }
                    Err(e) => return Err(e),
                };
                let size = match Kind::parse(&key_type) {
                    Some(kind) => redis::cmd(kind.size_command())
                        .arg(name)
                        .query_async::<i64>(&mut c)
                        .await
                        .ok(),
                    None => None,
                };
                Ok((key_type, size))
            }
        })
        .await?;
        if key_type == "none" {
            continue;
        }
        let freq = Some(r.rank);
        out.push(record(unit, Ranked { key_type, ..r }, freq, size));
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

    /// A server answer from its RESP text.
    fn parse(resp: &[u8]) -> Value {
        redis::parse_redis_value(resp).unwrap()
    }

    #[test]
    fn only_a_positive_size_or_another_error_proves_a_guessed_type() {
        assert!(proves_guess(&Value::Int(16)));
        // A vanished key answers 0 to every size command; so do empty strings and streams.
        assert!(!proves_guess(&Value::Int(0)));
        assert!(!proves_guess(&parse(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        )));
        assert!(proves_guess(&parse(
            b"-NOPERM this user has no permissions\r\n"
        )));
        assert!(proves_guess(&parse(b"-MOVED 3999 127.0.0.1:6381\r\n")));
        assert!(!proves_guess(&Value::Nil));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_behind_its_budget_does_not_catch_up_in_a_burst() {
        let mut b = Budget::new(1000);
        let start = Instant::now();
        b.spend(10).await;
        assert_eq!(start.elapsed(), Duration::from_millis(10));
        // A slow batch: 100 ms instead of 10.
        tokio::time::advance(Duration::from_millis(100)).await;
        let late = Instant::now();
        // The next batch goes at once, the one after waits its share: no run of batches
        // making up the 90 ms lost.
        b.spend(10).await;
        assert_eq!(late.elapsed(), Duration::ZERO);
        b.spend(10).await;
        b.spend(10).await;
        assert_eq!(late.elapsed(), Duration::from_millis(20));
    }

    #[test]
    fn a_key_moved_to_another_shard_is_skipped_and_a_cluster_down_ends_the_scan() {
        let node = Node {
            host: "10.0.0.1".into(),
            port: 6379,
        };
        let moved = parse(b"-MOVED 3999 10.0.0.2:6379\r\n");
        let ask = parse(b"-ASK 3999 10.0.0.2:6379\r\n");
        for v in [&moved, &ask] {
            assert!(moved_away(v));
            assert!(fatal(&node, v).is_none());
        }
        let down = parse(b"-CLUSTERDOWN The cluster is down\r\n");
        assert!(!moved_away(&down));
        assert!(fatal(&node, &down).is_some());
        let noperm = parse(b"-NOPERM this user has no permissions to run the 'strlen' command\r\n");
        assert!(!moved_away(&noperm));
        assert!(fatal(&node, &noperm).is_some());
        let wrongtype = parse(b"-WRONGTYPE Operation against a key holding the wrong kind\r\n");
        assert!(!moved_away(&wrongtype));
        assert!(fatal(&node, &wrongtype).is_none());
        assert!(!moved_away(&Value::Int(0)));
    }

    #[test]
    fn batch_follows_the_throttle_within_bounds() {
        let p = |k| Pace {
            keys_per_second: k,
            top_n: 1,
        };
        assert_eq!(p(10_000_000).batch(), 1000);
        assert_eq!(p(20_000).batch(), 20);
        assert_eq!(p(5).batch(), 10);
        // One batch at a time at the default throttle; more only at full batches.
        assert_eq!(p(20_000).depth(), 1);
        assert_eq!(p(1_000_000).depth(), 1);
        assert_eq!(p(2_000_000).depth(), 2);
        assert_eq!(p(10_000_000).depth(), MAX_DEPTH as usize);
    }
}
