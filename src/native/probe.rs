//! Questions a target answers in one or two commands: whether it can give hot keys from its LFU
//! counters, and, for `check-config --online`, what it is and where its hot keys (and, for a
//! cluster, its hot slots) would come from.

use super::conn::Connector;
use super::error::{Error, Result};
use super::resp::{Cmd, Expect, Limits, Value};
use super::topology::{field, keyspace, Engine, Node};
use crate::config::redis::RedisTarget;

/// Whether `node` keeps LFU counters: its answer to `OBJECT FREQ` on a random key of each
/// database that has keys (neither command touches the key). An empty server cannot tell yet,
/// which is not an error.
pub async fn lfu(conn: &Connector, node: &Node) -> Result<()> {
    for (db, _) in keyspace(&conn.info(node, "keyspace").await?) {
        let key = conn
            .call(
                node,
                Some(db),
                Cmd::new("RANDOMKEY").expect(Expect::TextOrNil, Limits::text(1 << 20)),
            )
            .await?;
        let Some(key) = key.as_bytes().map(<[u8]>::to_vec) else {
            continue;
        };
        let freq = conn
            .get(node)
            .await?
            .one(
                Some(db),
                Cmd::new("OBJECT FREQ")
                    .arg(&key)
                    .expect(Expect::IntOrNil, Limits::SMALL),
            )
            .await
            .map_err(|e| Error::from_conn(&node.label(), e))?;
        return match freq {
            Value::Error(e) if e.line().contains("LFU") => Err(Error::Unsupported {
                node: node.label(),
                message: format!(
                    "hot key analysis from OBJECT FREQ needs an LFU maxmemory-policy: {e}"
                ),
            }),
            Value::Error(e) => Err(Error::from_server(&node.label(), "OBJECT FREQ", &e)),
            _ => Ok(()),
        };
    }
    Ok(())
}

/// What the server says about itself, for `check-config --online`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `redis 7.0.15` or `valkey 8.0.1`.
    pub version: String,
    /// `master` or `replica` (the node given in the config).
    pub role: String,
    pub cluster: bool,
    /// One `master (replicas: …)` entry per shard.
    pub shards: Vec<String>,
    /// `maxmemory-policy` (from `INFO memory`, so it works where `CONFIG` is disabled).
    pub eviction_policy: String,
    /// Where hot keys would come from under the target's `analysis.hotkey.source` (`hotkeys`,
    /// `lfu`, `monitor`), or why nowhere.
    pub hotkey_source: std::result::Result<&'static str, String>,
    /// Clusters only: whether hot slots can be read, and with which measures.
    pub hotslots: Option<String>,
}

impl Report {
    /// Whether the hot key analysis has a source.
    pub fn hotkey_possible(&self) -> bool {
        self.hotkey_source.is_ok()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.cluster {
            "cluster"
        } else {
            "standalone"
        };
        write!(
            f,
            "{}, {kind} {}, {} shard{}: {}; maxmemory-policy {}; hot key analysis {}",
            self.version,
            self.role,
            self.shards.len(),
            if self.shards.len() == 1 { "" } else { "s" },
            self.shards.join(", "),
            self.eviction_policy,
            match &self.hotkey_source {
                Ok(source) => format!("possible (source {source})"),
                Err(why) => format!("not possible: {why}"),
            }
        )?;
        if let Some(h) = &self.hotslots {
            write!(f, "; hot slots {h}")?;
        }
        Ok(())
    }
}

/// Connects to `target` and reports what it is.
pub async fn check_online(target: &RedisTarget) -> Result<Report> {
    let conn = Connector::new(target.clone());
    let seed = conn.seed();
    let info = conn.info(&seed, "all").await?;
    let topology = conn.topology().await?;
    let version = Engine::from_info(&info).describe();
    let role = match field(&info, "role") {
        Some("slave") => "replica",
        Some(r) => r,
        None => "?",
    }
    .to_owned();
    // The policy that matters for hot keys is the master's.
    let master = &topology.units.first().map(|u| u.master.clone());
    let policy_info = match master {
        Some(m) if *m != seed => conn.info(m, "memory").await.unwrap_or(info.clone()),
        _ => info.clone(),
    };
    let eviction_policy = field(&policy_info, "maxmemory_policy")
        .unwrap_or("unknown")
        .to_owned();
    let hotkey_source = match topology.units.first() {
        None => Err("no master found".to_owned()),
        Some(u) => {
            match super::hotkeys::resolve(&conn, &u.master, &topology.engine, &target.hotkey_source)
                .await
            {
                Ok(s) => Ok(s.label()),
                Err(Error::Unsupported { message, .. }) => Err(message),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let hotslots = if topology.cluster {
        Some(match super::hotslot::probe(&conn, &topology).await {
            Err(e) => format!("not possible: {e}"),
            Ok(()) => {
                let measured = match topology.units.first() {
                    Some(u) => super::hotslot::poll(&conn, &u.master)
                        .await
                        .map(|p| p.slots.values().any(|s| s.cpu_usec.is_some())),
                    None => Ok(false),
                };
                match measured {
                    Ok(true) => "possible".to_owned(),
                    Ok(false) => "possible with key counts only (set \
                                  cluster-slot-stats-enabled yes for CPU and network rates)"
                        .to_owned(),
                    Err(e) => format!("not possible: {e}"),
                }
            }
        })
    } else {
        None
    };
    let shards = topology
        .units
        .iter()
        .map(|u| {
            let replicas: Vec<String> = u.replicas.iter().map(|r| r.label()).collect();
            if replicas.is_empty() {
                format!("{} (no replica)", u.master.label())
            } else {
                format!("{} (replicas: {})", u.master.label(), replicas.join(" "))
            }
        })
        .collect();
    Ok(Report {
        version,
        role,
        cluster: topology.cluster,
        shards,
        eviction_policy,
        hotkey_source,
        hotslots,
    })
}
