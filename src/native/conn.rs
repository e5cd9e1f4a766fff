//! Connections to the nodes of one target, and the target's topology.
//!
//! One multiplexed connection per node and database, kept in a pool and reused by both
//! analyses and every scan; a connection that broke is dropped from the pool and made again on
//! the next use. The pool holds at most one connection per (node, database), and nodes that
//! leave the topology lose theirs, so it is bounded by the size of the deployment.
//!
//! The topology comes from the server itself: `INFO` tells standalone from cluster and master
//! from replica; a cluster lists its nodes with `CLUSTER NODES` (every version that has
//! clusters answers it, unlike `CLUSTER SHARDS`, which is 7.0+); a standalone master lists its
//! replicas in `INFO replication`, and a replica names its master there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, IntoConnectionInfo,
    RedisConnectionInfo, TlsCertificates,
};

use super::error::{Error, Result};
use crate::config::redis::RedisTarget;

/// Time allowed to open a connection (TCP, TLS, AUTH).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one answer (a pipelined batch included).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// `valkey_version`, else `redis_version`, of the node asked.
    pub version: Option<String>,
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

/// Resolves every host to one node's real address, so that TLS checks the configured
/// `server_name` while the socket goes to the address the topology reported.
struct PinnedResolver {
    host: String,
    port: u16,
}

impl redis::io::AsyncDNSResolver for PinnedResolver {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _host: &'b str,
        _port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await?
                .collect();
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// A new connection to database `db` of `node`.
async fn connect(t: Arc<RedisTarget>, node: Node, db: i64) -> Result<MultiplexedConnection> {
    // The connection's driver task is spawned where it is made.
    debug_assert!(
        super::runtime::on_scan_threads(),
        "a connection made off the scan threads"
    );
    let fail = |e: redis::RedisError| Error::from_redis(&node.label(), &e);
    let addr = if t.address.tls {
        ConnectionAddr::TcpTls {
            host: t
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| node.host.clone()),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(node.host.clone(), node.port)
    };
    let mut settings = RedisConnectionInfo::default().set_db(db);
    if let Some(u) = &t.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &t.password {
        settings = settings.set_password(p.expose());
    }
    let info = addr
        .into_connection_info()
        .map_err(fail)?
        .set_redis_settings(settings);
    let client = if t.address.tls {
        let client_tls = match (&t.tls.client_cert_pem, &t.tls.client_key_pem) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.expose().as_bytes().to_vec(),
            }),
            _ => None,
        };
        Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls,
                root_cert: t.tls.ca_pem.clone(),
            },
        )
    } else {
        Client::open(info)
    }
    .map_err(fail)?;
    let mut config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    if t.address.tls && t.tls.server_name.is_some() {
        config = config.set_dns_resolver(PinnedResolver {
            host: node.host.clone(),
            port: node.port,
        });
    }
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(fail)?;
    // Redis 7.2+ and Valkey: nothing this connection sends changes a key's LFU counter or
    // idle time. Older servers refuse the command; the scans order their reads instead.
    let _: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("NO-TOUCH")
        .arg("ON")
        .query_async(&mut conn)
        .await;
    // A cluster replica answers key commands only after READONLY (else MOVED); anything
    // but a cluster node refuses it, which is fine.
    let _: redis::RedisResult<()> = redis::cmd("READONLY").query_async(&mut conn).await;
    Ok(conn)
}

/// The connection pool of one target.
pub struct Connector {
    target: Arc<RedisTarget>,
    pool: Mutex<HashMap<(Node, i64), MultiplexedConnection>>,
}

impl Connector {
    pub fn new(target: RedisTarget) -> Self {
        Connector {
            target: Arc::new(target),
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// The node given in the config.
    pub fn seed(&self) -> Node {
        Node {
            host: self.target.address.host.clone(),
            port: self.target.address.port,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Node, i64), MultiplexedConnection>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pooled connection to database `db` of `node`, made on first use.
    pub async fn get(&self, node: &Node, db: i64) -> Result<MultiplexedConnection> {
        if let Some(c) = self.lock().get(&(node.clone(), db)) {
            return Ok(c.clone());
        }
        // Made on the scan threads, where the connection's driver task then lives.
        let conn = super::runtime::run(connect(self.target.clone(), node.clone(), db)).await?;
        self.lock().insert((node.clone(), db), conn.clone());
        Ok(conn)
    }

    /// Drops the pooled connection of `node` and `db` (it broke).
    pub fn forget(&self, node: &Node, db: i64) {
        self.lock().remove(&(node.clone(), db));
    }

    /// Drops the connections of nodes not in `topology`.
    pub fn retain(&self, topology: &Topology) {
        let nodes: Vec<&Node> = topology
            .units
            .iter()
            .flat_map(|u| std::iter::once(&u.master).chain(&u.replicas))
            .collect();
        self.lock().retain(|(n, _), _| nodes.contains(&n));
    }

    /// Number of pooled connections.
    pub fn pooled(&self) -> usize {
        self.lock().len()
    }

    /// Asks the seed what the target is made of.
    pub async fn topology(&self) -> Result<Topology> {
        let seed = self.seed();
        let info = self.info(&seed, "all").await?;
        let version = field(&info, "valkey_version")
            .or_else(|| field(&info, "redis_version"))
            .map(str::to_owned);
        if field(&info, "cluster_enabled") == Some("1") {
            let mut conn = self.get(&seed, 0).await?;
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    self.forget(&seed, 0);
                    Error::from_redis(&seed.label(), &e)
                })?;
            let units = parse_cluster_nodes(&nodes, &seed);
            if units.is_empty() {
                return Err(Error::Protocol {
                    node: seed.label(),
                    message: "CLUSTER NODES lists no master that serves slots".into(),
                });
            }
            return Ok(Topology {
                cluster: true,
                units,
                version,
            });
        }
        let unit = match field(&info, "role") {
            Some("slave") => {
                let master = match (field(&info, "master_host"), field(&info, "master_port")) {
                    (Some(h), Some(p)) => Node {
                        host: h.to_owned(),
                        port: p.parse().unwrap_or(6379),
                    },
                    _ => seed.clone(),
                };
                Unit {
                    shard: None,
                    master,
                    replicas: vec![seed],
                }
            }
            _ => Unit {
                shard: None,
                replicas: replicas_of(&info),
                master: seed,
            },
        };
        Ok(Topology {
            cluster: false,
            units: vec![unit],
            version,
        })
    }

    /// `INFO <section>` of `node`, as text.
    pub async fn info(&self, node: &Node, section: &str) -> Result<String> {
        let mut conn = self.get(node, 0).await?;
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                if super::error::retryable(&e) {
                    self.forget(node, 0);
                }
                Error::from_redis(&node.label(), &e)
            })
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
            if get("state") != Some("online") {
                return None;
            }
            Some(Node {
                host: get("ip")?.to_owned(),
                port: get("port")?.parse().ok()?,
            })
        })
        .collect()
}

/// The shards of a cluster from `CLUSTER NODES`: masters that serve slots, with their healthy
/// replicas. A node that announces no address (`:0`) is the seed itself.
pub fn parse_cluster_nodes(text: &str, seed: &Node) -> Vec<Unit> {
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
    units
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
        let units = parse_cluster_nodes(text, &node("10.0.0.1", 30001));
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
    fn info_sections_parse() {
        let info = "# Keyspace\r\ndb0:keys=1000,expires=2,avg_ttl=0\r\ndb3:keys=7,expires=0,avg_ttl=0\r\ndb4:keys=0,expires=0\r\n";
        assert_eq!(keyspace(info), vec![(0, 1000), (3, 7)]);
        let repl = "role:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.6,port=6380,state=online,offset=1,lag=0\r\nslave1:ip=10.0.0.7,port=6381,state=wait_bgsave,offset=0,lag=0\r\n";
        assert_eq!(field(repl, "role"), Some("master"));
        assert_eq!(replicas_of(repl), vec![node("10.0.0.6", 6380)]);
    }
}
