//! The connections of one target: one per node, shared by both analyses and every database
//! (`SELECT` between them), and each node's key budget.
//!
//! A node's connection is made on first use, on the scan threads, and made again after it
//! failed; one that nobody used for a minute closes itself. Only one is ever made at a time
//! per node, so a target holds at most one connection per node it scans, whatever the number
//! of databases, and the process at most [`resp::permits`]' cap.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::{Error, Result};
use super::pace::Budget;
use super::resp::{self, Cmd, Connection, Endpoint, Expect, Limits, NoTouch, Setup, Value};
use super::topology::{field, parse_cluster_nodes, replicas_of, Engine, Node, Topology, Unit};
use crate::config::redis::RedisTarget;

/// `INFO` answers at most this many bytes (every section together is a few kilobytes; a
/// server with thousands of databases lists each in `INFO keyspace`).
pub const MAX_INFO_BYTES: usize = 4 << 20;
/// `CLUSTER NODES` answers at most this many bytes (1,000 nodes of a few hundred bytes each).
pub const MAX_CLUSTER_NODES_BYTES: usize = 4 << 20;

/// One node's connection, budget and what its connection's setup found.
#[derive(Debug)]
pub struct NodeSlot {
    conn: tokio::sync::Mutex<Option<(Connection, Setup)>>,
    /// The node's key budget, shared by every scan of the target.
    pub budget: Budget,
    touch: Mutex<Option<NoTouch>>,
}

/// The connections of one target.
pub struct Connector {
    target: Arc<RedisTarget>,
    tls: OnceLock<std::result::Result<Arc<rustls::ClientConfig>, String>>,
    nodes: Mutex<HashMap<Node, Arc<NodeSlot>>>,
    /// Cluster replicas, which answer key commands only after `READONLY`.
    cluster_replicas: Mutex<HashSet<Node>>,
    /// Whether the scans touched keys, as last logged.
    touch_said: Mutex<Option<bool>>,
}

impl Connector {
    pub fn new(target: RedisTarget) -> Self {
        Connector {
            target: Arc::new(target),
            tls: OnceLock::new(),
            nodes: Mutex::new(HashMap::new()),
            cluster_replicas: Mutex::new(HashSet::new()),
            touch_said: Mutex::new(None),
        }
    }

    /// The node given in the config.
    pub fn seed(&self) -> Node {
        Node {
            host: self.target.address.host.clone(),
            port: self.target.address.port,
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<Node, Arc<NodeSlot>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of `node` (its connection and budget), made on first use.
    pub fn slot(&self, node: &Node) -> Arc<NodeSlot> {
        self.nodes()
            .entry(node.clone())
            .or_insert_with(|| {
                Arc::new(NodeSlot {
                    conn: tokio::sync::Mutex::new(None),
                    budget: Budget::new(self.target.keys_per_second),
                    touch: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Where and how to connect to `node` (a dedicated connection: a `MONITOR` sample).
    pub(super) fn endpoint(&self, node: &Node) -> Result<Endpoint> {
        let tls = if self.target.address.tls {
            let config = self
                .tls
                .get_or_init(|| resp::tls::client_config(&self.target.tls))
                .clone()
                .map_err(|message| Error::Connection {
                    node: node.label(),
                    message,
                })?;
            let name = self
                .target
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| node.host.clone());
            Some((config, name))
        } else {
            None
        };
        Ok(Endpoint {
            host: node.host.clone(),
            port: node.port,
            tls,
            username: self.target.username.clone(),
            password: self.target.password.clone(),
        })
    }

    /// The connection to `node`: the open one, or a new one (made on the scan threads, where
    /// its reader and writer then run).
    pub async fn get(&self, node: &Node) -> Result<Connection> {
        let slot = self.slot(node);
        let setup = Setup {
            no_touch: true,
            readonly: self
                .cluster_replicas
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(node),
        };
        let mut conn = slot.conn.lock().await;
        // A connection made before the node was known to be a cluster replica lacks READONLY.
        if let Some((c, _)) = conn.as_ref().filter(|(c, s)| !c.is_closed() && *s == setup) {
            return Ok(c.clone());
        }
        *conn = None;
        let ep = self.endpoint(node)?;
        let c = super::runtime::run(async move {
            resp::connect(&ep, setup, resp::permits::Permits::global()).await
        })
        .await
        .map_err(|e| Error::from_conn(&node.label(), e))?;
        *slot.touch.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.no_touch());
        *conn = Some((c.clone(), setup));
        Ok(c)
    }

    /// What `CLIENT NO-TOUCH ON` got on the newest connection to `node`.
    pub fn no_touch(&self, node: &Node) -> Option<NoTouch> {
        *self
            .slot(node)
            .touch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records whether the scans touch keys; `true` when that differs from the last record
    /// (so that it is logged once, not at every scan).
    pub fn touch_changed(&self, touches: bool) -> bool {
        let mut said = self.touch_said.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *said != Some(touches);
        *said = Some(touches);
        changed
    }

    /// Forgets the nodes not in `topology` (closing their connections).
    pub fn retain(&self, topology: &Topology) {
        let nodes: HashSet<&Node> = topology
            .units
            .iter()
            .flat_map(|u| std::iter::once(&u.master).chain(&u.replicas))
            .collect();
        self.nodes().retain(|n, _| nodes.contains(n));
        let mut replicas = self
            .cluster_replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        replicas.clear();
        if topology.cluster {
            replicas.extend(topology.units.iter().flat_map(|u| u.replicas.clone()));
        }
    }

    /// Connections open now.
    pub fn pooled(&self) -> usize {
        self.nodes()
            .values()
            .filter(|s| {
                s.conn
                    .try_lock()
                    .map(|c| c.as_ref().is_some_and(|(c, _)| !c.is_closed()))
                    .unwrap_or(true)
            })
            .count()
    }

    /// Sends `cmd` to `node` in database `db` (`None`: any) and answers its reply; a server
    /// error is the command's failure.
    pub async fn call(&self, node: &Node, db: Option<i64>, cmd: Cmd) -> Result<Value> {
        let name = cmd.name();
        let v = self
            .get(node)
            .await?
            .one(db, cmd)
            .await
            .map_err(|e| Error::from_conn(&node.label(), e))?;
        match v {
            Value::Error(e) => Err(Error::from_server(&node.label(), name, &e)),
            v => Ok(v),
        }
    }

    /// `INFO <section>` of `node`, as text.
    pub async fn info(&self, node: &Node, section: &str) -> Result<String> {
        let v = self
            .call(
                node,
                None,
                Cmd::new("INFO")
                    .arg(section)
                    .expect(Expect::Text, Limits::text(MAX_INFO_BYTES)),
            )
            .await?;
        let text = String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned();
        // Every section starts with its `# Name` header, even when it has no field.
        if !text.trim_start().starts_with('#') {
            return Err(Error::Protocol {
                node: node.label(),
                message: format!(
                    "INFO {section} answered without a section: {}",
                    resp::codec::printable(text.as_bytes(), 80)
                ),
            });
        }
        Ok(text)
    }

    /// The identity of the process serving `node` (`run_id`: new at every start).
    pub async fn run_id(&self, node: &Node) -> Result<String> {
        let info = self.info(node, "server").await?;
        field(&info, "run_id")
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol {
                node: node.label(),
                message: "INFO server has no run_id".into(),
            })
    }

    /// Asks the seed what the target is made of.
    pub async fn topology(&self) -> Result<Topology> {
        let seed = self.seed();
        let info = self.info(&seed, "all").await?;
        if field(&info, "redis_version").is_none() {
            return Err(Error::Protocol {
                node: seed.label(),
                message: "INFO has no redis_version: is this a Redis or Valkey server?".into(),
            });
        }
        let engine = Engine::from_info(&info);
        if field(&info, "cluster_enabled") == Some("1") {
            let v = self
                .call(
                    &seed,
                    None,
                    Cmd::new("CLUSTER NODES")
                        .expect(Expect::Text, Limits::text(MAX_CLUSTER_NODES_BYTES)),
                )
                .await?;
            let nodes = String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned();
            let units = parse_cluster_nodes(&nodes, &seed).map_err(|message| Error::Protocol {
                node: seed.label(),
                message,
            })?;
            if units.is_empty() {
                return Err(Error::Protocol {
                    node: seed.label(),
                    message: "CLUSTER NODES lists no master that serves slots".into(),
                });
            }
            return Ok(Topology {
                cluster: true,
                units,
                engine,
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
            engine,
        })
    }
}
