//! A bounded `MONITOR` sample of one node: what its clients accessed during a short window.
//!
//! `MONITOR` makes the server copy every command it runs to the monitoring client, which costs
//! it much of its throughput while it lasts (see the README and BENCHMARKS.md), so a sample is
//! only taken when chosen (`source: monitor`), and is bounded three ways: a window of seconds,
//! a number of commands and a number of bytes, whichever comes first. It runs on a connection
//! of its own (holding one of the process' connection permits), closed as soon as the sample
//! ends, so the server stops copying at once.
//!
//! Every key of every command counts as one access of that key in the database the line
//! names (`MGET a b c`: one each; a key given twice in one command: once), as the server's own
//! `COMMAND` describes the command's keys ([`super::keyspecs`]). Left aside: the commands a
//! script runs (`[0 lua]` lines: the script's own call already counted its keys), admin
//! commands, and the exporter's own commands (its connection to the node, recognised by the
//! address the server sees for it).

use std::collections::HashMap;

use tokio::time::Instant;
use tracing::debug;

use super::keyspecs::Table;
use super::line;
use crate::config::hotkey_source::MonitorSettings;
use crate::native::conn::Connector;
use crate::native::error::{Error, Result};
use crate::native::resp::stream::{Line, LineStream};
use crate::native::resp::{permits::Permits, Cmd, Expect, Limits, Value};
use crate::native::topology::Node;

/// The name the sample's connection gives itself (`CLIENT LIST` shows it while it runs).
pub const CLIENT_NAME: &str = "dcs-key-exporter-monitor";
/// `MONITOR` lines longer than this are skipped (a `SET` of a large value): counted against the
/// byte bound, their keys not counted.
pub const MAX_LINE: usize = 256 << 10;
/// What `COMMAND` may answer at most (a few hundred commands, about 100 KB).
const COMMAND_LIMITS: Limits = Limits {
    bulk: 64 << 10,
    elements: 200_000,
    total: 8 << 20,
    depth: 8,
};

/// Why a sample ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Window,
    Commands,
    Bytes,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Window => "window",
            Ended::Commands => "max_commands",
            Ended::Bytes => "max_bytes",
        }
    }
}

/// What a sample saw.
#[derive(Debug)]
pub struct Sample {
    /// Accesses by database and key.
    pub counts: HashMap<(i64, Vec<u8>), u64>,
    /// How long it read.
    pub seconds: f64,
    /// Lines read (commands the server ran).
    pub commands: u64,
    pub bytes: u64,
    pub ended: Ended,
}

/// What the server's commands take as keys (`COMMAND`).
async fn command_table(conn: &Connector, node: &Node) -> Result<Table> {
    let v = conn
        .call(
            node,
            None,
            Cmd::new("COMMAND").expect(Expect::Array, COMMAND_LIMITS),
        )
        .await?;
    let table = Table::from_reply(&v);
    if table.is_empty() {
        return Err(Error::Protocol {
            node: node.label(),
            message: "COMMAND described no command".into(),
        });
    }
    Ok(table)
}

/// The address the server sees for the exporter's own connection to `node` (`CLIENT INFO`,
/// Redis 6.2+ and Valkey), so its commands are left out of the sample; `None` when the server
/// does not say.
async fn own_address(conn: &Connector, node: &Node) -> Option<Vec<u8>> {
    let v = conn
        .call(
            node,
            None,
            Cmd::new("CLIENT INFO").expect(Expect::Text, Limits::text(64 << 10)),
        )
        .await
        .ok()?;
    let text = v.as_bytes()?;
    text.split(|&b| b == b' ')
        .find_map(|w| w.strip_prefix(b"addr="))
        .map(<[u8]>::to_vec)
}

/// Takes one sample of `node` within `bounds`.
pub async fn sample(conn: &Connector, node: &Node, bounds: &MonitorSettings) -> Result<Sample> {
    let label = node.label();
    let table = command_table(conn, node).await?;
    let own = own_address(conn, node).await;
    let conn_err = |e| Error::from_conn(&label, e);
    let mut stream = LineStream::open(&conn.endpoint(node)?, Permits::global())
        .await
        .map_err(conn_err)?;
    // A name refused (ACL) is no reason to stop: only `CLIENT LIST` shows it.
    let _ = stream
        .call(
            &[b"CLIENT", b"SETNAME", CLIENT_NAME.as_bytes()],
            Limits::SMALL,
        )
        .await
        .map_err(conn_err)?;
    match stream
        .call(&[b"MONITOR"], Limits::SMALL)
        .await
        .map_err(conn_err)?
    {
        Value::Simple(_) => {}
        Value::Error(e) => return Err(Error::from_server(&label, "MONITOR", &e)),
        other => {
            return Err(Error::Protocol {
                node: label,
                message: format!("MONITOR answered {}", other.kind()),
            })
        }
    }
    let start = Instant::now();
    let deadline = start + bounds.window;
    let mut s = Sample {
        counts: HashMap::new(),
        seconds: 0.0,
        commands: 0,
        bytes: 0,
        ended: Ended::Window,
    };
    let mut unknown = 0u64;
    loop {
        match stream
            .next_line(MAX_LINE, deadline)
            .await
            .map_err(conn_err)?
        {
            None => break,
            Some(Line::Error(e)) => return Err(Error::from_server(&label, "MONITOR", &e)),
            Some(Line::Skipped(n)) => {
                s.commands += 1;
                s.bytes += n as u64;
            }
            Some(Line::Status(text)) => {
                s.commands += 1;
                s.bytes += text.len() as u64 + 3;
                if let Some(l) = line::parse(&text) {
                    if !count(&table, own.as_deref(), l, &mut s.counts) {
                        unknown += 1;
                    }
                }
            }
        }
        if s.commands >= bounds.max_commands {
            s.ended = Ended::Commands;
            break;
        }
        if s.bytes >= bounds.max_bytes {
            s.ended = Ended::Bytes;
            break;
        }
    }
    s.seconds = start.elapsed().as_secs_f64();
    // Closing the connection ends the server's copying at once.
    drop(stream);
    debug!(node = %label, commands = s.commands, bytes = s.bytes, keys = s.counts.len(),
        unknown_commands = unknown, ended = s.ended.as_str(), seconds = s.seconds,
        "MONITOR sample taken");
    Ok(s)
}

/// Counts the keys of one line; `false` when the server did not describe its command.
fn count(
    table: &Table,
    own: Option<&[u8]>,
    mut l: line::MonitorLine<'_>,
    counts: &mut HashMap<(i64, Vec<u8>), u64>,
) -> bool {
    if l.from_script() || own == Some(l.client) {
        return true;
    }
    let Some(cmd) = table.lookup(&l.args) else {
        return false;
    };
    if cmd.admin {
        return true;
    }
    for i in cmd.key_positions(&l.args) {
        let key = std::mem::take(&mut l.args[i]);
        *counts.entry((l.db, key)).or_default() += 1;
    }
    true
}
