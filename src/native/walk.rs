//! Walking one database of one node with `SCAN`, and what keeps a walk true to one server.
//!
//! - **Pipelining**: the `SCAN` chain runs ahead of the per-key work, and at full speed up to
//!   [`Pace::depth`] batches are in flight on the node's connection, so the server has the
//!   next batch queued while the exporter reads the last one.
//! - **Pace**: after each batch the walk spends the batch's keys from the node's budget
//!   ([`super::pace`]), shared with every other scan of the node.
//! - **Connection loss**: a walk whose connection breaks goes on, on a new one, from the
//!   cursor after the last batch it processed (a `SCAN` cursor is valid on any connection of
//!   the same server process), up to [`MAX_RECONNECTS`] times in a row.
//! - **One server process**: a cursor means nothing to another process (new dict seed, new
//!   table sizes). So before a walk goes on after a reconnect, and at the end of each
//!   database, it asks the node's `run_id` ([`Guard`]); a different one means the server
//!   restarted and the walk fails with [`Error::Changed`] (the scan then starts that node
//!   over). At the end of each database the walk also compares its key count with the count
//!   at the start: a keyspace that lost more than half its keys while it was walked (a
//!   `FLUSHDB`, a `FLUSHALL`) fails the same way, since the result would describe keys that
//!   are gone.
//!
//! What `SCAN` guarantees, and so what a scan can see: every key present for the whole walk
//! is seen (once or more); a key added or deleted during the walk may or may not be.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;

use super::conn::Connector;
use super::error::{Error, Result};
use super::pace::{Counter, Pace};
use super::resp::{Cmd, Connection, Expect, Limits, Value};
use super::topology::{keyspace, Node};

/// Reconnects in a row before a node's scan gives up.
pub const MAX_RECONNECTS: u32 = 5;
/// Wait before the first reconnect of a broken scan (times the failures in a row).
pub const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// The longest key name a scan accepts (Redis allows 512 MB; a name past this fails the
/// scan as "reply too large" rather than hold megabytes per key).
pub const MAX_KEY_BYTES: usize = 1 << 20;
/// The most bytes of one `SCAN` answer.
pub const MAX_SCAN_BYTES: usize = 16 << 20;
/// A database of at least this many keys that lost more than half of them during its walk
/// was flushed (or emptied) while the scan ran.
pub const COLLAPSE_MIN_KEYS: u64 = 16;

/// The identity of the server process a node's scan started on.
#[derive(Debug, Clone)]
pub struct Guard {
    node: Node,
    run_id: String,
}

impl Guard {
    /// Reads the node's identity now.
    pub async fn new(conn: &Connector, node: &Node) -> Result<Guard> {
        Ok(Guard {
            node: node.clone(),
            run_id: conn.run_id(node).await?,
        })
    }

    /// Fails with [`Error::Changed`] when another process serves the node now.
    pub async fn check(&self, conn: &Connector) -> Result<()> {
        let now = conn.run_id(&self.node).await?;
        if now == self.run_id {
            return Ok(());
        }
        Err(Error::Changed {
            node: self.node.label(),
            message: format!(
                "the server restarted during the scan (run_id {} is now {}): a scan cursor of \
                 one process means nothing to another, so the node is scanned again from the start",
                short(&self.run_id),
                short(&now)
            ),
        })
    }

    /// Fails with [`Error::Changed`] when database `db` lost more than half of the `before`
    /// keys it had when its walk started.
    pub async fn check_keyspace(&self, conn: &Connector, db: i64, before: u64) -> Result<()> {
        let info = conn.info(&self.node, "keyspace").await?;
        let after = keyspace(&info)
            .into_iter()
            .find(|&(d, _)| d == db)
            .map_or(0, |(_, n)| n);
        if before >= COLLAPSE_MIN_KEYS && after < before / 2 {
            return Err(Error::Changed {
                node: self.node.label(),
                message: format!(
                    "db {db} went from {before} keys to {after} during the scan (FLUSHDB, \
                     FLUSHALL or a mass deletion): the result would describe keys that are gone"
                ),
            });
        }
        Ok(())
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// The limits of a `SCAN COUNT count` answer: about `count` names (ten times that at most,
/// since a bucket's keys come together), each up to [`MAX_KEY_BYTES`].
pub fn scan_limits(count: u32) -> Limits {
    Limits {
        bulk: MAX_KEY_BYTES,
        elements: (count as usize * 10).max(1000) + 8,
        total: MAX_SCAN_BYTES,
        depth: 2,
    }
}

/// One `SCAN` page of database `db`: the next cursor and the names.
pub async fn scan_page(
    c: &Connection,
    node: &Node,
    db: i64,
    cursor: u64,
    count: u32,
) -> Result<(u64, Vec<Vec<u8>>)> {
    let cmd = Cmd::new("SCAN")
        .arg(cursor.to_string())
        .arg("COUNT")
        .arg(count.to_string())
        .expect(Expect::Scan, scan_limits(count));
    let v = c
        .one(Some(db), cmd)
        .await
        .map_err(|e| Error::from_conn(&node.label(), e))?;
    let bad = |why: &str| Error::Protocol {
        node: node.label(),
        message: format!("SCAN answered {why}"),
    };
    match v {
        Value::Error(e) => Err(Error::from_server(&node.label(), "SCAN", &e)),
        Value::Array(mut page) if page.len() == 2 => {
            let keys = match page.pop() {
                Some(Value::Array(keys)) => keys
                    .into_iter()
                    .filter_map(|k| match k {
                        Value::Bulk(b) => Some(b),
                        _ => None,
                    })
                    .collect(),
                _ => return Err(bad("without a list of names")),
            };
            let next = page[0]
                .as_bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| page[0].as_int().and_then(|i| u64::try_from(i).ok()))
                .ok_or_else(|| bad("a cursor that is not a number"))?;
            Ok((next, keys))
        }
        other => Err(bad(other.kind())),
    }
}

/// After a failed step of a walk of `node`: waits a little longer with each failure in a row
/// and allows another attempt; gives up with the error after [`MAX_RECONNECTS`] failures in a
/// row, or at once on an error a new connection cannot cure.
pub async fn recover(node: &Node, db: i64, failures: &mut u32, e: Error) -> Result<()> {
    if e.is_transient() && *failures < MAX_RECONNECTS {
        *failures += 1;
        tracing::warn!(node = %node.label(), db, attempt = *failures, error = %e,
            "connection lost during a scan; going on from where it was on a new one once the \
             server is known to be the same");
        tokio::time::sleep(RECONNECT_DELAY * *failures).await;
        return Ok(());
    }
    Err(e)
}

/// Runs `f` on the node's connection, on a new connection again when the connection breaks
/// (checking first that the server is the same).
pub async fn with_reconnect<T, F, Fut>(
    conn: &Connector,
    guard: &Guard,
    node: &Node,
    db: i64,
    mut f: F,
) -> Result<T>
where
    F: FnMut(Connection) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut failures = 0;
    loop {
        let step = async {
            let c = conn.get(node).await?;
            if failures > 0 {
                guard.check(conn).await?;
            }
            f(c).await
        };
        match step.await {
            Ok(t) => return Ok(t),
            Err(e) => recover(node, db, &mut failures, e).await?,
        }
    }
}

/// Walks database `db` of `node`: `SCAN` batch after batch, `work` on each batch's keys, with
/// up to [`Pace::depth`] batches in flight on the node's connection (the next `SCAN` goes out
/// as soon as the previous cursor is known, not after the batch's work), then `take` on each
/// batch's outcome in `SCAN` order, then the node's budget.
///
/// A batch is done only once `take` had it: when the connection breaks, the batches in flight
/// are dropped and the walk goes on, on a new connection to the same server process, from the
/// cursor after the last batch taken: no gap, and no key seen twice beyond what `SCAN` itself
/// may repeat.
#[allow(clippy::too_many_arguments)]
pub async fn walk<T, W, Fut>(
    conn: &Connector,
    guard: &Guard,
    node: &Node,
    db: i64,
    pace: Pace,
    counter: &Counter,
    work: W,
    mut take: impl FnMut(Vec<Vec<u8>>, T) -> Result<()>,
) -> Result<()>
where
    W: Fn(Connection, Vec<Vec<u8>>) -> Fut,
    Fut: Future<Output = Result<(Vec<Vec<u8>>, T)>>,
{
    let mut batch_done = |_at: u64, keys: Vec<Vec<u8>>, t: T| -> Result<u64> {
        let n = keys.len() as u64;
        take(keys, t)?;
        Ok(n)
    };
    let slot = conn.slot(node);
    let count = pace.batch();
    let mut cursor = 0u64;
    let mut failures = 0u32;
    loop {
        let c = match conn.get(node).await {
            Ok(c) => c,
            Err(e) => {
                recover(node, db, &mut failures, e).await?;
                continue;
            }
        };
        if failures > 0 {
            if let Err(e) = guard.check(conn).await {
                recover(node, db, &mut failures, e).await?;
                continue;
            }
        }
        // Up to `depth` batches in flight: a `SCAN` page, then the work on its keys; the next
        // `SCAN` goes out once its cursor is known and there is room.
        let depth = pace.depth();
        let mut next = Some(cursor);
        let mut page = None;
        let mut works = FuturesOrdered::new();
        // The batches in flight end with this block, before the wait for a new connection.
        let e = loop {
            if page.is_none() && works.len() < depth {
                if let Some(at) = next.take() {
                    page = Some(Box::pin(scan_page(&c, node, db, at, count)));
                }
            }
            let Some(scan) = page.as_mut() else {
                // No page to ask for: the works in flight finish the walk.
                match works.next().await {
                    None => return Ok(()),
                    Some(Ok((at, keys, t))) => match batch_done(at, keys, t) {
                        Ok(n) => {
                            cursor = at;
                            failures = 0;
                            counter.add(n);
                            slot.budget.spend(n).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                    Some(Err(e)) => break e,
                }
            };
            tokio::select! {
                biased;
                done = works.next(), if !works.is_empty() => match done {
                    Some(Ok((at, keys, t))) => {
                        let n = batch_done(at, keys, t)?;
                        cursor = at;
                        failures = 0;
                        counter.add(n);
                        slot.budget.spend(n).await;
                    }
                    Some(Err(e)) => break e,
                    None => {}
                },
                r = scan => {
                    page = None;
                    match r {
                        Ok((at, keys)) => {
                            if at != 0 {
                                next = Some(at);
                            }
                            let job = work(c.clone(), keys);
                            works.push_back(async move {
                                let (keys, t) = job.await?;
                                Ok::<_, Error>((at, keys, t))
                            });
                        }
                        Err(e) => break e,
                    }
                }
            }
        };
        recover(node, db, &mut failures, e).await?;
    }
}
