//! Questions a target answers in one or two commands: whether it can give hot keys from its LFU
//! counters, and, for `check-config --online`, what it is and where its hot keys (and, for a
//! cluster, its hot slots) would come from.

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
        use crate::config::hotkey_source::HotkeySource;
        match target.hotkey_source.source {
            // The LFU counters.
            HotkeySource::Auto | HotkeySource::Lfu => {
                asked.push(("+randomkey", "hot keys", Cmd::new("RANDOMKEY")));
                asked.push((
                    "+object|freq",
                    "hot keys",
                    Cmd::new("OBJECT FREQ").arg(PROBE_KEY),
                ));
            }
            // Reading the newest ranking changes nothing (Redis 8.6 answers an error without
            // a session); a server without the command answers that it does not know it,
            // which is not a missing permission.
            HotkeySource::Hotkeys => asked.push((
                "+hotkeys",
                "hot keys from HOTKEYS",
                Cmd::new("HOTKEYS").arg("GET"),
            )),
            // The command table, which tells the keys of each command in the stream. `MONITOR`
            // itself is not asked: it cannot be tried without starting a stream, and a sample
            // it refuses fails as `auth`, naming it.
            HotkeySource::Monitor => asked.push((
                "+command",
                "hot keys from MONITOR samples",
                Cmd::new("COMMAND").arg("COUNT"),
            )),
        }
        asked.push(("+type", "hot keys", Cmd::new("TYPE").arg(PROBE_KEY)));
    }
    if cluster {
        asked.push((
            "+cluster|nodes",
            "cluster targets",
            Cmd::new("CLUSTER NODES"),
        ));
        asked.push(("+readonly", "cluster targets", Cmd::new("READONLY")));
        if target.hotslot.mode != Mode::Off {
            // A server without the command answers that it does not know it: not missing.
            asked.push((
                "+cluster|slot-stats",
                "hot slots",
                Cmd::new("CLUSTER SLOT-STATS")
                    .arg("SLOTSRANGE")
                    .arg("0")
                    .arg("0"),
            ));
        }
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
    /// How long each scan takes at the node's budget (`hotkey`/`bigkey`, node, keys, time).
    pub scans: Vec<ScanEstimate>,
    /// The target's own timeouts (`None`: `auto`).
    pub timeouts: [(&'static str, Option<std::time::Duration>); 2],
    /// Where hot keys would come from under the target's `analysis.hotkey.source` (`hotkeys`,
    /// `lfu`, `monitor`), or why nowhere.
    pub hotkey_source: std::result::Result<&'static str, String>,
    /// Clusters only: whether hot slots can be read, and with which measures.
    pub hotslots: Option<String>,
}

/// How long one analysis' scan of one node takes at the node's budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEstimate {
    pub analysis: &'static str,
    pub node: String,
    pub keys: u64,
    /// Alone on the node.
    pub alone: std::time::Duration,
    /// With the other analysis scanning the same node at the same time (they share its
    /// budget); `None` when they read different nodes or one is off.
    pub shared: Option<std::time::Duration>,
}

impl Report {
    /// Whether the hot key analysis has a source.
    pub fn hotkey_possible(&self) -> bool {
        self.hotkey_source.is_ok()
    }

    /// What would make the configured analyses fail: missing permissions, and a timeout the
    /// target sets that is shorter than its scans take at the throttle.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .missing
            .iter()
            .map(|(perm, what)| format!("the ACL user lacks {perm} (needed by {what})"))
            .collect();
        for (analysis, timeout) in self.timeouts {
            let Some(timeout) = timeout else { continue };
            let worst = self
                .scans
                .iter()
                .filter(|e| e.analysis == analysis)
                .map(|e| e.shared.unwrap_or(e.alone))
                .max();
            if let Some(worst) = worst.filter(|w| *w > timeout) {
                out.push(format!(
                    "analysis.{analysis}.timeout {} is shorter than the scan takes ({}): it \
                     would be cut off every time; use auto, or raise it or \
                     throttle.keys_per_second",
                    crate::config::duration::format(timeout),
                    crate::config::duration::format(worst)
                ));
            }
        }
        out
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
        for e in &self.scans {
            write!(
                f,
                "; {} scan of {} ({} keys): about {}",
                e.analysis,
                e.node,
                e.keys,
                crate::config::duration::format(e.alone)
            )?;
            if let Some(shared) = e.shared {
                write!(
                    f,
                    " ({} while the other scan of the node runs)",
                    crate::config::duration::format(shared)
                )?;
            }
        }
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
    let scans = estimates(&conn, &topology, target).await?;
    let (hotkey_source, hotslots) = sources(&conn, &topology, target).await;
    Ok(Report {
        version,
        role,
        cluster: topology.cluster,
        shards,
        eviction_policy,
        missing,
        scans,
        timeouts: [
            ("hotkey", target.hotkey_timeout),
            ("bigkey", target.bigkey_timeout),
        ],
        hotkey_source,
        hotslots,
    })
}

/// Where `target`'s hot keys would come from (its first master's source), and for a cluster
/// whether hot slots can be read with CPU and network rates (`cluster-slot-stats-enabled`).
async fn sources(
    conn: &Connector,
    topology: &super::topology::Topology,
    target: &RedisTarget,
) -> (std::result::Result<&'static str, String>, Option<String>) {
    let hotkey_source = match topology.units.first() {
        None => Err("no master found".to_owned()),
        Some(u) => {
            match super::hotkeys::resolve(conn, &u.master, &topology.engine, &target.hotkey_source)
                .await
            {
                Ok(s) => Ok(s.label()),
                Err(Error::Unsupported { message, .. }) => Err(message),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    if !topology.cluster {
        return (hotkey_source, None);
    }
    let hotslots = match super::hotslot::probe(conn, topology).await {
        Err(e) => format!("not possible: {e}"),
        Ok(()) => {
            let measured = match topology.units.first() {
                Some(u) => super::hotslot::poll(conn, &u.master)
                    .await
                    .map(|p| p.slots.values().any(|s| s.cpu_usec.is_some())),
                None => Ok(false),
            };
            match measured {
                Ok(true) => "possible".to_owned(),
                Ok(false) => "possible with key counts only (set cluster-slot-stats-enabled \
                              yes for CPU and network rates)"
                    .to_owned(),
                Err(e) => format!("not possible: {e}"),
            }
        }
    };
    (hotkey_source, Some(hotslots))
}

/// How long each configured scan takes at the node's budget, from the keys each node holds.
async fn estimates(
    conn: &Connector,
    topology: &super::topology::Topology,
    target: &RedisTarget,
) -> Result<Vec<ScanEstimate>> {
    use crate::config::Mode;
    let kps = f64::from(target.keys_per_second.max(1));
    let mut out = Vec::new();
    for unit in &topology.units {
        let big = super::scan::bigkey_node(conn, unit).await;
        let hot = unit.master.clone();
        let on = |m: Mode| m != Mode::Off;
        let both_here = on(target.hotkey.mode) && on(target.bigkey.mode) && big == hot;
        for (analysis, node, mode) in [
            ("hotkey", &hot, target.hotkey.mode),
            ("bigkey", &big, target.bigkey.mode),
        ] {
            if !on(mode) {
                continue;
            }
            let keys: u64 = keyspace(&conn.info(node, "keyspace").await?)
                .iter()
                .map(|(_, n)| n)
                .sum();
            let alone = std::time::Duration::from_secs_f64(keys as f64 / kps);
            out.push(ScanEstimate {
                analysis,
                node: node.label(),
                keys,
                alone,
                shared: both_here.then(|| alone * 2),
            });
        }
    }
    Ok(out)
}
