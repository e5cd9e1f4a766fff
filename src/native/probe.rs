//! Questions a target answers in one or two commands: whether it can give hot keys from its LFU
//! counters, and, for `check-config --online`, what it is.

use super::conn::{Connector, MAX_INFO_BYTES};
use super::error::{Error, Result};
use super::resp::{Cmd, Expect, Limits, NoTouch, Value};
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

/// A name no key has, for asking permissions: commands on a key that does not exist answer
/// without touching, creating or changing anything.
const PROBE_KEY: &str = "dcs-key-exporter:acl-probe";

/// The ACL permissions (`+command`) the configured analyses of `target` need on a node that
/// the user lacks, each with what needs it: every command is sent once, harmlessly (on a key
/// that does not exist), and those answered `NOPERM` are missing. The same list as the
/// README's `ACL SETUSER` line, so that the two cannot drift apart unnoticed (a test builds
/// the user from the README).
pub async fn missing_permissions(
    conn: &Connector,
    node: &Node,
    target: &RedisTarget,
    cluster: bool,
) -> Result<Vec<(String, &'static str)>> {
    use crate::config::Mode;
    let big = target.bigkey.mode != Mode::Off;
    let hot = target.hotkey.mode != Mode::Off;
    let families = target.families_on();
    let mut asked: Vec<(&'static str, &'static str, Cmd)> = vec![
        ("+info", "every analysis", Cmd::new("INFO").arg("server")),
        ("+select", "every analysis", Cmd::new("SELECT").arg("0")),
        (
            "+scan",
            "every analysis",
            Cmd::new("SCAN").arg("0").arg("COUNT").arg("1"),
        ),
    ];
    if big {
        asked.push(("+type", "big keys", Cmd::new("TYPE").arg(PROBE_KEY)));
        for (perm, command) in [
            ("+strlen", "STRLEN"),
            ("+llen", "LLEN"),
            ("+scard", "SCARD"),
            ("+zcard", "ZCARD"),
            ("+hlen", "HLEN"),
            ("+xlen", "XLEN"),
        ] {
            asked.push((perm, "big keys", Cmd::new(command).arg(PROBE_KEY)));
        }
        asked.push((
            "+memory|usage",
            "big keys",
            Cmd::new("MEMORY USAGE").arg(PROBE_KEY),
        ));
    }
    if families {
        asked.push(("+pttl", "key families", Cmd::new("PTTL").arg(PROBE_KEY)));
    }
    if hot {
        asked.push(("+randomkey", "hot keys", Cmd::new("RANDOMKEY")));
        asked.push((
            "+object|freq",
            "hot keys",
            Cmd::new("OBJECT FREQ").arg(PROBE_KEY),
        ));
        asked.push(("+type", "hot keys", Cmd::new("TYPE").arg(PROBE_KEY)));
    }
    if cluster {
        asked.push((
            "+cluster|nodes",
            "cluster targets",
            Cmd::new("CLUSTER NODES"),
        ));
        asked.push(("+readonly", "cluster targets", Cmd::new("READONLY")));
    }
    let cmds: Vec<Cmd> = asked
        .iter()
        .map(|(_, _, c)| {
            c.clone()
                .expect(Expect::Any, Limits::list(1000, MAX_INFO_BYTES, 3))
        })
        .collect();
    let c = conn.get(node).await?;
    let answers = match c.run(None, &cmds).await {
        Ok(a) => a,
        // Every batch ends with a `PING`: without it nothing can be asked.
        Err(super::resp::ConnError::Auth(m)) if m.starts_with("PING") => {
            return Ok(vec![("+ping".to_owned(), "every analysis")])
        }
        Err(e) => return Err(Error::from_conn(&node.label(), e)),
    };
    let mut missing: Vec<(String, &'static str)> = Vec::new();
    for ((perm, what, _), v) in asked.iter().zip(&answers) {
        let refused = v.as_error().is_some_and(|e| e.code() == "NOPERM");
        if refused && !missing.iter().any(|(p, _)| p == perm) {
            missing.push(((*perm).to_owned(), what));
        }
    }
    if conn.no_touch(node) == Some(NoTouch::Refused) {
        missing.push((
            "+client|no-touch".to_owned(),
            "scans that change no LFU counter or idle time",
        ));
    }
    Ok(missing)
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
    /// ACL permissions the configured analyses need and the user lacks, with what needs them.
    pub missing: Vec<(String, &'static str)>,
}

impl Report {
    /// Hot key analysis needs an LFU policy.
    pub fn hotkey_possible(&self) -> bool {
        self.eviction_policy.contains("lfu")
    }

    /// What would make the configured analyses fail (missing permissions).
    pub fn problems(&self) -> Vec<String> {
        self.missing
            .iter()
            .map(|(perm, what)| format!("the ACL user lacks {perm} (needed by {what})"))
            .collect()
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
            if self.hotkey_possible() {
                "possible"
            } else {
                "not possible (needs an LFU maxmemory-policy)"
            }
        )?;
        for p in self.problems() {
            write!(f, "; {p}")?;
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
    conn.retain(&topology);
    // Permissions: on the seed, and on each node the scans read (key commands on a cluster
    // replica need READONLY, which the connection sends).
    let mut missing = missing_permissions(&conn, &seed, target, topology.cluster).await?;
    for unit in &topology.units {
        for node in std::iter::once(&unit.master).chain(&unit.replicas) {
            if *node == seed {
                continue;
            }
            for m in missing_permissions(&conn, node, target, topology.cluster).await? {
                if !missing.contains(&m) {
                    missing.push(m);
                }
            }
        }
    }
    Ok(Report {
        version,
        role,
        cluster: topology.cluster,
        shards,
        eviction_policy,
        missing,
    })
}
