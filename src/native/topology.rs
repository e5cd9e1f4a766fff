//! What a target is made of (standalone, a master and its replicas, a cluster's shards), read
//! from the server itself: `INFO` tells standalone from cluster and master from replica; a
//! cluster lists its nodes with `CLUSTER NODES` (every version that has clusters answers it,
//! unlike `CLUSTER SHARDS`, which is 7.0+); a standalone master lists its replicas in
//! `INFO replication`, and a replica names its master there.

/// A node's address as the topology reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl Node {
    /// `ip:port`, the `shard` label of cluster keys and the node name in errors.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One shard: a master and its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The `shard` label: the master's `ip:port` on a cluster, `None` otherwise.
    pub shard: Option<String>,
    pub master: Node,
    pub replicas: Vec<Node>,
}

/// What the target is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub cluster: bool,
    pub units: Vec<Unit>,
    /// The engine and its own version, from the node asked.
    pub engine: Engine,
}

/// The server software and its own version: Valkey reports `valkey_version` (and, for
/// compatibility, a `redis_version` that is not its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    /// `redis` or `valkey`.
    pub name: &'static str,
    pub version: Option<String>,
}

impl Engine {
    /// From `INFO server`.
    pub fn from_info(info: &str) -> Engine {
        match field(info, "valkey_version") {
            Some(v) => Engine {
                name: "valkey",
                version: Some(v.to_owned()),
            },
            None => Engine {
                name: if field(info, "server_name") == Some("valkey") {
                    "valkey"
                } else {
                    "redis"
                },
                version: field(info, "redis_version").map(str::to_owned),
            },
        }
    }

    /// `redis 7.0.15`, `valkey 9.1.2`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.name, self.version.as_deref().unwrap_or("?"))
    }

    /// Whether `CLIENT NO-TOUCH` exists (Redis 7.2+, every Valkey).
    pub fn has_no_touch(&self) -> bool {
        self.name == "valkey" || self.version_at_least(7, 2)
    }

    /// Whether the version is at least `major.minor`.
    pub fn version_at_least(&self, major: u32, minor: u32) -> bool {
        let Some(v) = &self.version else { return false };
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }
}

impl Topology {
    /// `cluster`, `master-replica` or `standalone` (the `spec_code` of `dcs_instance_info`).
    pub fn kind(&self) -> &'static str {
        if self.cluster {
            "cluster"
        } else if self.units.iter().any(|u| !u.replicas.is_empty()) {
            "master-replica"
        } else {
            "standalone"
        }
    }
}

/// The value of `name:` in `INFO` output.
pub fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The databases that hold keys and how many (`INFO keyspace`: `db3:keys=12,expires=0,...`).
pub fn keyspace(info: &str) -> Vec<(i64, u64)> {
    info.lines()
        .filter_map(|l| {
            let (db, rest) = l.trim().strip_prefix("db")?.split_once(':')?;
            let keys = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db.parse().ok()?, keys))
        })
        .filter(|&(_, keys)| keys > 0)
        .collect()
}

/// Whether `host` can name a host: at most 253 bytes of letters, digits, `.`, `-`, `_` and
/// `:` (IPv6). Empty means "the node asked".
fn plausible_host(host: &str) -> bool {
    host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// The online replicas a master lists in `INFO replication`
/// (`slave0:ip=10.0.0.6,port=6379,state=online,offset=…,lag=0`).
pub fn replicas_of(info: &str) -> Vec<Node> {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("ip="))
        .filter_map(|l| {
            let (_, kv) = l.split_once(':')?;
            let get = |k: &str| {
                kv.split(',')
                    .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            if get("state") != Some("online") || !plausible_host(get("ip")?) {
                return None;
            }
            Some(Node {
                host: get("ip")?.to_owned(),
                port: get("port")?.parse().ok()?,
            })
        })
        .collect()
}

/// The most nodes a cluster may list: Redis Cluster's own guidance stops at 1,000.
pub const MAX_CLUSTER_NODES: usize = 1000;

/// The shards of a cluster from `CLUSTER NODES`: masters that serve slots, with their healthy
/// replicas. A node that announces no address (`:0`) is the seed itself. A list of more than
/// [`MAX_CLUSTER_NODES`] nodes is refused (its length in the error).
pub fn parse_cluster_nodes(text: &str, seed: &Node) -> Result<Vec<Unit>, String> {
    let listed = text.lines().filter(|l| !l.trim().is_empty()).count();
    if listed > MAX_CLUSTER_NODES {
        return Err(format!(
            "CLUSTER NODES lists {listed} nodes, more than the {MAX_CLUSTER_NODES} a cluster has at most"
        ));
    }
    struct Line<'a> {
        id: &'a str,
        node: Node,
        master_of: Option<&'a str>,
        master: bool,
        slots: bool,
    }
    let mut lines = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags = f[2];
        if flags
            .split(',')
            .any(|x| matches!(x, "fail" | "fail?" | "noaddr" | "handshake"))
        {
            continue;
        }
        // ip:port@cport[,hostname]
        let addr = f[1].split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = addr.rsplit_once(':') else {
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // A name that no host has (control bytes, spaces, a megabyte of text) is not a node.
        if !plausible_host(host) {
            continue;
        }
        let node = if host.is_empty() {
            seed.clone()
        } else {
            Node {
                host: host.to_owned(),
                port: port.parse().unwrap_or(seed.port),
            }
        };
        lines.push(Line {
            id: f[0],
            node,
            master_of: (f[3] != "-").then_some(f[3]),
            master: flags.split(',').any(|x| x == "master"),
            slots: f.len() > 8,
        });
    }
    let mut units: Vec<Unit> = lines
        .iter()
        .filter(|l| l.master && l.slots)
        .map(|m| Unit {
            shard: Some(m.node.label()),
            master: m.node.clone(),
            replicas: lines
                .iter()
                .filter(|r| !r.master && r.master_of == Some(m.id))
                .map(|r| r.node.clone())
                .collect(),
        })
        .collect();
    units.sort_by(|a, b| a.master.cmp(&b.master));
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(h: &str, p: u16) -> Node {
        Node {
            host: h.into(),
            port: p,
        }
    }

    #[test]
    fn cluster_nodes_give_masters_with_slots_and_their_healthy_replicas() {
        // The format of Redis' own documentation (CLUSTER NODES), with a failed replica and a
        // master without slots.
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-5460
aaaaeecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30007@31007 master - 0 0 7 connected
";
        let units = parse_cluster_nodes(text, &node("10.0.0.1", 30001)).unwrap();
        assert_eq!(
            units,
            vec![
                Unit {
                    shard: Some("10.0.0.1:30001".into()),
                    master: node("10.0.0.1", 30001),
                    replicas: vec![node("127.0.0.1", 30004)],
                },
                Unit {
                    shard: Some("127.0.0.1:30002".into()),
                    master: node("127.0.0.1", 30002),
                    replicas: vec![],
                },
                Unit {
                    shard: Some("127.0.0.1:30003".into()),
                    master: node("127.0.0.1", 30003),
                    replicas: vec![node("127.0.0.1", 30006)],
                },
            ]
        );
    }

    #[test]
    fn a_cluster_of_more_nodes_than_a_cluster_has_is_refused_and_odd_hosts_skipped() {
        let line = |i: usize| {
            format!(
                "{i:040x} 10.0.{}.{}:6379@16379 master - 0 0 1 connected 0-10\n",
                i / 256,
                i % 256
            )
        };
        let text: String = (0..MAX_CLUSTER_NODES + 1).map(line).collect();
        let e = parse_cluster_nodes(&text, &node("10.0.0.1", 6379)).unwrap_err();
        assert!(e.contains("1001 nodes"), "{e}");
        let text: String = (0..MAX_CLUSTER_NODES).map(line).collect();
        assert_eq!(
            parse_cluster_nodes(&text, &node("10.0.0.1", 6379))
                .unwrap()
                .len(),
            1000
        );
        let odd = "aaaa 10.0.0.1\r\x00evil:6379@16379 master - 0 0 1 connected 0-10\n";
        assert!(parse_cluster_nodes(odd, &node("10.0.0.1", 6379))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_engine_is_named_with_its_own_version() {
        let valkey = Engine::from_info(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n",
        );
        assert_eq!(
            (valkey.name, valkey.version.as_deref()),
            ("valkey", Some("9.1.2"))
        );
        assert!(valkey.has_no_touch());
        let redis = Engine::from_info("redis_version:7.0.15\r\n");
        assert_eq!(redis.describe(), "redis 7.0.15");
        assert!(!redis.has_no_touch());
        assert!(Engine::from_info("redis_version:7.2.0\r\n").has_no_touch());
        assert!(Engine::from_info("redis_version:8.2.3\r\n").has_no_touch());
        assert!(!Engine::from_info("redis_version:6.2.5\r\n").has_no_touch());
    }

    #[test]
    fn info_sections_parse() {
        let info = "# Keyspace\r\ndb0:keys=1000,expires=2,avg_ttl=0\r\ndb3:keys=7,expires=0,avg_ttl=0\r\ndb4:keys=0,expires=0\r\n";
        assert_eq!(keyspace(info), vec![(0, 1000), (3, 7)]);
        let repl = "role:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.6,port=6380,state=online,offset=1,lag=0\r\nslave1:ip=10.0.0.7,port=6381,state=wait_bgsave,offset=0,lag=0\r\n";
        assert_eq!(field(repl, "role"), Some("master"));
        assert_eq!(replicas_of(repl), vec![node("10.0.0.6", 6380)]);
    }
}
