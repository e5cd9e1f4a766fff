//! Hot hash slots of a Redis Cluster target: the `hotslot` analysis.
//!
//! `CLUSTER SLOT-STATS SLOTSRANGE 0 16383` (Valkey 8.0+, Redis 8.2+) answers, for each slot the
//! node serves, its `key-count`, and where `cluster-slot-stats-enabled` is `yes` (off by
//! default) its `cpu-usec`, `network-bytes-in` and `network-bytes-out`: counters that only grow
//! while the server process lives. Each analysis polls every shard's master once; the rates are
//! the difference to the node's previous poll (kept between analyses) over the time between
//! them. A node without a usable previous poll (the first analysis, a restarted server, counters
//! reset by `CONFIG RESETSTAT`) is polled twice, [`FIRST_WINDOW`] apart. Each node's top N slots
//! by CPU rate are published (by key count where the server does not measure CPU), with their
//! key counts and network rates. Replicas count only the reads they serve, and are not polled.
//!
//! The analysis is `unsupported` on a target that is no cluster, and on servers without
//! `CLUSTER SLOT-STATS`, with what would change that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::{info, warn};

use super::conn::Connector;
use super::error::{Error, Result};
use super::resp::{Cmd, Expect, Limits, Value};
use super::topology::{Node, Topology};
use super::{runtime, Tasks};
use crate::config::redis::RedisTarget;
use crate::dcs::{timestamp, Analysis, HotRates, TaskRecord, TaskStatus};
use crate::metrics::hot::HotSlot;
use crate::metrics::store::Store;
use crate::scheduler::Clock;

/// The time between the two polls of a node without a previous one (at most a third of the
/// analysis timeout).
pub const FIRST_WINDOW: Duration = Duration::from_secs(10);
/// What `CLUSTER SLOT-STATS` may answer: every slot with four counters.
const STATS_LIMITS: Limits = Limits {
    bulk: 64,
    elements: 16_384 * 11 + 16,
    total: 16 << 20,
    depth: 3,
};

/// One slot's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotStat {
    pub slot: u16,
    pub keys: u64,
    pub cpu_usec: Option<u64>,
    pub net_in: Option<u64>,
    pub net_out: Option<u64>,
}

/// One poll of a node.
#[derive(Clone, Debug)]
pub struct Poll {
    pub at: Instant,
    /// The server process (`run_id`): counters of another process do not compare.
    pub run_id: String,
    pub slots: HashMap<u16, SlotStat>,
}

/// Each node's newest poll, kept between analyses.
pub type Baselines = Mutex<HashMap<Node, Poll>>;

fn pairs(v: &Value) -> Option<Vec<(&Value, &Value)>> {
    match v {
        Value::Map(m) => Some(m.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(a) if a.len() % 2 == 0 => {
            Some(a.chunks_exact(2).map(|p| (&p[0], &p[1])).collect())
        }
        _ => None,
    }
}

/// Reads a `CLUSTER SLOT-STATS` reply: `[[slot, {name: value, ...}], ...]` (the fields a RESP2
/// flat array or a RESP3 map; the whole reply a map of slots also accepted). Unknown fields
/// are ignored.
pub fn parse(v: &Value) -> std::result::Result<Vec<SlotStat>, String> {
    let entries: Vec<(&Value, &Value)> = match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(a) => a
            .iter()
            .map(|e| match e {
                Value::Array(p) if p.len() == 2 => Ok((&p[0], &p[1])),
                other => Err(format!("a slot entry is {}", other.kind())),
            })
            .collect::<std::result::Result<_, _>>()?,
        other => return Err(format!("{} where slot entries were expected", other.kind())),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (slot, fields) in entries {
        let slot = slot
            .as_int()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| *s < 16_384)
            .ok_or_else(|| format!("{} is no slot number", slot.kind()))?;
        let fields = pairs(fields).ok_or_else(|| format!("slot {slot}: no fields"))?;
        let mut s = SlotStat {
            slot,
            keys: 0,
            cpu_usec: None,
            net_in: None,
            net_out: None,
        };
        let mut keys = None;
        for (name, value) in fields {
            let n = value.as_int().and_then(|n| u64::try_from(n).ok());
            match name.as_text() {
                Some("key-count") => keys = n,
                Some("cpu-usec") => s.cpu_usec = n,
                Some("network-bytes-in") => s.net_in = n,
                Some("network-bytes-out") => s.net_out = n,
                _ => {}
            }
        }
        s.keys = keys.ok_or_else(|| format!("slot {slot}: no key-count"))?;
        out.push(s);
    }
    Ok(out)
}

/// Whether `new` continues `old`: the same server process, and no counter went down.
fn continues(old: &Poll, new: &Poll) -> bool {
    old.run_id == new.run_id
        && new.slots.values().all(|n| {
            old.slots.get(&n.slot).is_none_or(|o| {
                let le = |a: Option<u64>, b: Option<u64>| match (a, b) {
                    (Some(a), Some(b)) => a <= b,
                    _ => true,
                };
                le(o.cpu_usec, n.cpu_usec) && le(o.net_in, n.net_in) && le(o.net_out, n.net_out)
            })
        })
}

/// The top `top_n` slots of one node between two polls of it.
pub fn hot_slots(old: &Poll, new: &Poll, shard: &str, top_n: usize) -> Vec<HotSlot> {
    let seconds = new.at.saturating_duration_since(old.at).as_secs_f64();
    let rate = |a: Option<u64>, b: Option<u64>, scale: f64| match (a, b) {
        (Some(a), Some(b)) if b >= a => HotRates::rate((b - a) as f64 * scale, seconds),
        _ => None,
    };
    let mut out: Vec<HotSlot> = new
        .slots
        .values()
        .map(|n| {
            let o = old.slots.get(&n.slot);
            let before = |f: fn(&SlotStat) -> Option<u64>| o.and_then(f);
            HotSlot {
                shard: shard.to_owned(),
                slot: n.slot,
                keys: n.keys,
                cpu_seconds_per_second: rate(before(|s| s.cpu_usec), n.cpu_usec, 1e-6),
                network_in_bytes_per_second: rate(before(|s| s.net_in), n.net_in, 1.0),
                network_out_bytes_per_second: rate(before(|s| s.net_out), n.net_out, 1.0),
            }
        })
        .collect();
    HotSlot::ranked(&mut out);
    out.truncate(top_n);
    out
}

fn stats_cmd(from: u16, to: u16) -> Cmd {
    Cmd::new("CLUSTER SLOT-STATS")
        .arg("SLOTSRANGE")
        .arg(from.to_string())
        .arg(to.to_string())
        .expect(Expect::MapOrArray, STATS_LIMITS)
}

/// Polls `node` once.
pub async fn poll(conn: &Connector, node: &Node) -> Result<Poll> {
    let run_id = conn.run_id(node).await?;
    let v = conn.call(node, None, stats_cmd(0, 16_383)).await?;
    let at = Instant::now();
    let slots = parse(&v).map_err(|m| Error::Protocol {
        node: node.label(),
        message: format!("CLUSTER SLOT-STATS: {m}"),
    })?;
    Ok(Poll {
        at,
        run_id,
        slots: slots.into_iter().map(|s| (s.slot, s)).collect(),
    })
}

/// Checks that `topology` can give hot slots: a cluster whose first master answers
/// `CLUSTER SLOT-STATS`.
pub async fn probe(conn: &Connector, topology: &Topology) -> Result<()> {
    let Some(unit) = topology.units.first().filter(|_| topology.cluster) else {
        return Err(Error::Unsupported {
            node: conn.seed().label(),
            message: "not a Redis Cluster: hash slots, and the hot slot analysis, exist only \
                      there (set analysis.hotslot.mode: off to stop asking)"
                .into(),
        });
    };
    let node = &unit.master;
    match conn.call(node, None, stats_cmd(0, 0)).await {
        Ok(_) => Ok(()),
        Err(Error::Server { message, .. }) if message.contains("ERR") => Err(Error::Unsupported {
            node: node.label(),
            message: format!(
                "{message}: hot slots need CLUSTER SLOT-STATS (Valkey 8.0+, Redis 8.2+), \
                     with cluster-slot-stats-enabled yes for CPU and network rates"
            ),
        }),
        Err(e) => Err(e),
    }
}

/// One hot slot analysis of a target, running as its own task on the scan threads.
pub(super) struct Collect {
    pub target: RedisTarget,
    pub conn: Arc<Connector>,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub tasks: Arc<Mutex<Tasks>>,
    pub task_id: String,
    pub created: f64,
    pub topology: Topology,
    pub baselines: Arc<Baselines>,
}

impl Collect {
    fn update(&self, f: impl FnOnce(&mut TaskRecord), error: Option<Error>) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).update(
            Analysis::Hotslot,
            &self.task_id,
            f,
            error,
        );
    }

    pub async fn go(self) {
        debug_assert!(runtime::on_scan_threads(), "hot slots off the scan threads");
        let timeout = self.target.hotslot.timeout;
        let started = self.clock.now_unix();
        self.update(
            |r| {
                r.status = TaskStatus::Running;
                r.started_at = Some(timestamp::format_unix(started));
            },
            None,
        );
        let outcome = std::panic::AssertUnwindSafe(tokio::time::timeout(timeout, self.collect()))
            .catch_unwind()
            .await;
        let now = self.clock.now_unix();
        match outcome {
            Ok(Ok(Ok((slots, polled)))) => {
                let task = TaskRecord {
                    id: self.task_id.clone(),
                    instance_id: Some(self.target.id.clone()),
                    status: TaskStatus::Success,
                    scan_type: Some(crate::dcs::ScanType::Manual),
                    created_at: Some(timestamp::format_unix(self.created)),
                    started_at: Some(timestamp::format_unix(started)),
                    finished_at: Some(timestamp::format_unix(now)),
                    num: Some(polled as i64),
                    keys: None,
                };
                // Published here, with its slots: the loop then finds this task's result.
                self.store
                    .publish_hotslots(&self.target.id, Analysis::Hotslot, &task, slots);
                self.update(|r| *r = task, None);
            }
            other => {
                let (why, error) = match other {
                    Ok(Ok(Err(e))) => (e.to_string(), Some(e)),
                    Ok(Err(_)) => (
                        format!(
                            "stopped at the {} timeout",
                            crate::config::duration::format(timeout)
                        ),
                        None,
                    ),
                    _ => ("the analysis panicked".to_owned(), None),
                };
                warn!(target = %self.target.id, analysis = "hotslot", error = %why,
                    "analysis failed");
                self.update(
                    |r| {
                        r.status = TaskStatus::Failed;
                        r.finished_at = Some(timestamp::format_unix(now));
                    },
                    error,
                );
            }
        }
    }

    /// Every master's top slots, and the number of slots polled.
    async fn collect(&self) -> Result<(Vec<HotSlot>, usize)> {
        let top_n = self.target.hotslot.top_n;
        let first_window = FIRST_WINDOW.min(self.target.hotslot.timeout / 3);
        let nodes = self.topology.units.iter().map(|u| async move {
            let node = &u.master;
            let previous = self
                .baselines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(node)
                .cloned();
            let mut new = poll(&self.conn, node).await?;
            let old = match previous.filter(|p| continues(p, &new)) {
                Some(p) => p,
                None => {
                    // No previous poll to compare with: a second one, a short while later.
                    tokio::time::sleep(first_window).await;
                    let first = new;
                    new = poll(&self.conn, node).await?;
                    if !continues(&first, &new) {
                        return Err(Error::Changed {
                            node: node.label(),
                            message: "the server restarted or reset its statistics between \
                                      two polls"
                                .into(),
                        });
                    }
                    first
                }
            };
            let shard = u.shard.clone().unwrap_or_else(|| node.label());
            let slots = hot_slots(&old, &new, &shard, top_n);
            let polled = new.slots.len();
            self.baselines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(node.clone(), new);
            Ok::<_, Error>((slots, polled))
        });
        let all = futures_util::future::try_join_all(nodes).await?;
        // Nodes the target no longer has are forgotten.
        let masters: Vec<&Node> = self.topology.units.iter().map(|u| &u.master).collect();
        self.baselines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n, _| masters.contains(&n));
        let polled = all.iter().map(|(_, n)| n).sum();
        let slots: Vec<HotSlot> = all.into_iter().flat_map(|(s, _)| s).collect();
        info!(target = %self.target.id, slots = slots.len(), polled, "hot slots read");
        Ok((slots, polled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn entry(slot: i64, fields: &[(&str, i64)]) -> Value {
        Value::Array(vec![
            Value::Int(slot),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [b(k), Value::Int(*v)])
                    .collect(),
            ),
        ])
    }

    fn stats(slot: u16, keys: u64, cpu: u64, net_in: u64, net_out: u64) -> SlotStat {
        SlotStat {
            slot,
            keys,
            cpu_usec: Some(cpu),
            net_in: Some(net_in),
            net_out: Some(net_out),
        }
    }

    fn poll_of(at: Instant, run_id: &str, slots: Vec<SlotStat>) -> Poll {
        Poll {
            at,
            run_id: run_id.into(),
            slots: slots.into_iter().map(|s| (s.slot, s)).collect(),
        }
    }

    #[test]
    fn replies_with_and_without_the_counters_are_read() {
        let v = Value::Array(vec![
            entry(
                12182,
                &[
                    ("key-count", 3),
                    ("cpu-usec", 120),
                    ("network-bytes-in", 53),
                    ("network-bytes-out", 9),
                    ("a-later-field", 1),
                ],
            ),
            entry(12183, &[("key-count", 0)]),
        ]);
        assert_eq!(
            parse(&v).unwrap(),
            vec![
                stats(12182, 3, 120, 53, 9),
                SlotStat {
                    slot: 12183,
                    keys: 0,
                    cpu_usec: None,
                    net_in: None,
                    net_out: None
                }
            ]
        );
        let resp3 = Value::Array(vec![Value::Array(vec![
            Value::Int(7),
            Value::Map(vec![(b("key-count"), Value::Int(1))]),
        ])]);
        assert_eq!(parse(&resp3).unwrap()[0].keys, 1);
        assert!(parse(&Value::Array(vec![entry(16_384, &[("key-count", 1)])])).is_err());
        assert!(parse(&Value::Array(vec![entry(1, &[("cpu-usec", 1)])])).is_err());
        assert!(parse(&Value::Int(1)).is_err());
    }

    #[test]
    fn rates_are_differences_over_the_time_between_polls_ranked_by_cpu() {
        let t0 = Instant::now();
        let old = poll_of(
            t0,
            "r1",
            vec![
                stats(1, 5, 1_000, 100, 100),
                stats(2, 50, 0, 0, 0),
                stats(3, 9, 10, 0, 0),
            ],
        );
        let new = poll_of(
            t0 + Duration::from_secs(10),
            "r1",
            vec![
                stats(1, 6, 2_001_000, 1_100, 5_100),
                stats(2, 50, 500_000, 0, 0),
                stats(3, 9, 10, 0, 0),
                // Newly served: no rate yet.
                stats(4, 1, 9_999_999, 0, 0),
            ],
        );
        assert!(continues(&old, &new));
        let hot = hot_slots(&old, &new, "10.0.0.1:7000", 2);
        assert_eq!(hot.len(), 2);
        assert_eq!(
            (hot[0].slot, hot[0].keys, hot[0].cpu_seconds_per_second),
            (1, 6, Some(0.2))
        );
        assert_eq!(hot[0].network_in_bytes_per_second, Some(100.0));
        assert_eq!(hot[0].network_out_bytes_per_second, Some(500.0));
        assert_eq!(
            (hot[1].slot, hot[1].cpu_seconds_per_second),
            (2, Some(0.05))
        );
        // Another process, or a counter that went down: no comparison.
        let restarted = poll_of(new.at, "r2", vec![stats(1, 6, 5, 0, 0)]);
        assert!(!continues(&old, &restarted));
        let reset = poll_of(new.at, "r1", vec![stats(1, 6, 5, 0, 0)]);
        assert!(!continues(&old, &reset));
    }
}
