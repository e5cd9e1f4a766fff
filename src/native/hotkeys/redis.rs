//! Redis 8.6+ `HOTKEYS`: one tracking session per node, started, read and ended by the
//! exporter within the hot key analysis.
//!
//! A session is `HOTKEYS START METRICS 2 CPU NET COUNT k DURATION d`, then, after the window,
//! `STOP` and `GET` (pipelined), then `RESET` of the stopped session. It is never left running:
//! `DURATION` ends it on the server even if the exporter goes away mid-window, a little after
//! the exporter's own `STOP`; an analysis stopped mid-window (a reload, its timeout) stops its
//! session at once, while it is surely still the exporter's. `SAMPLE` is never asked (with a ratio above 1 the server does not
//! scale the per-key values); a reply that still reports one is scaled by it. The server keeps
//! one session per node: one that someone else started is never stopped or reset; the analysis
//! fails with a message saying so.
//!
//! `GET` answers in several shapes, all accepted: wrapped in a one-element array (as the
//! server does) or not, the fields as a RESP2 flat array of names and values or a RESP3 map,
//! and the per-key lists (`by-cpu-time-us`, `by-net-bytes`; `by-cpu-time` in early builds) as
//! flat arrays of key and value, maps, or arrays of pairs. Unknown fields are ignored, and so
//! are the totals, whose names differ between the documentation and the server.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::Measured;
use crate::dcs::HotRates;
use crate::native::conn::Connector;
use crate::native::error::{Error, Result};
use crate::native::resp::{Cmd, Connection, Expect, Limits, ServerError, Value};
use crate::native::topology::Node;
use crate::native::walk::MAX_KEY_BYTES;

/// The most keys a session reports per metric (`COUNT`).
pub const MAX_COUNT: usize = 64;
/// How long past the exporter's own `STOP` the server's `DURATION` runs: the session ends by
/// itself this much later if the exporter cannot stop it.
pub const DURATION_GRACE: Duration = Duration::from_secs(5);
/// What `GET` may answer: two lists of at most 64 keys and a few totals.
const GET_LIMITS: Limits = Limits {
    bulk: MAX_KEY_BYTES,
    elements: 4096,
    total: 16 << 20,
    depth: 5,
};

/// What `GET` reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub active: bool,
    pub sample_ratio: u64,
    pub duration_ms: Option<u64>,
    /// Microseconds of CPU per key.
    pub cpu_us: BTreeMap<Vec<u8>, u64>,
    /// Network bytes per key.
    pub net_bytes: BTreeMap<Vec<u8>, u64>,
}

/// The entries of a map, or of its RESP2 form (a flat array of names and values).
fn pairs(v: &Value) -> Option<Vec<(&Value, &Value)>> {
    match v {
        Value::Map(m) => Some(m.iter().map(|(k, v)| (k, v)).collect()),
        // An array of pairs ([[k, v], ...]).
        Value::Array(a)
            if !a.is_empty()
                && a.iter()
                    .all(|e| matches!(e, Value::Array(p) if p.len() == 2)) =>
        {
            Some(
                a.iter()
                    .filter_map(|e| match e {
                        Value::Array(p) => Some((&p[0], &p[1])),
                        _ => None,
                    })
                    .collect(),
            )
        }
        Value::Array(a) if a.len() % 2 == 0 => {
            Some(a.chunks_exact(2).map(|p| (&p[0], &p[1])).collect())
        }
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Double(d) if d.is_finite() && *d >= 0.0 => Some(*d as u64),
        v => v.as_int().and_then(|n| u64::try_from(n).ok()),
    }
}

/// A per-key list: key names and their amounts.
fn per_key(v: &Value) -> Option<BTreeMap<Vec<u8>, u64>> {
    let mut out = BTreeMap::new();
    for (k, n) in pairs(v)? {
        let key = k.as_bytes()?.to_vec();
        let n = number(n)?;
        // The server lists a key once; should it not, the larger amount stands.
        let e = out.entry(key).or_insert(0);
        *e = (*e).max(n);
    }
    Some(out)
}

/// Reads a `GET` reply; `None` for nil (no session on the node), an error for a reply of
/// another shape.
pub fn parse(v: &Value) -> std::result::Result<Option<Report>, String> {
    let body = match v {
        Value::Nil => return Ok(None),
        // The server's own shape: the fields wrapped in a one-element array.
        Value::Array(a) if a.len() == 1 && matches!(a[0], Value::Array(_) | Value::Map(_)) => &a[0],
        Value::Array(a) if a.len() == 1 && a[0] == Value::Nil => return Ok(None),
        other => other,
    };
    let fields =
        pairs(body).ok_or_else(|| format!("{} where fields were expected", body.kind()))?;
    let mut r = Report {
        sample_ratio: 1,
        ..Report::default()
    };
    for (name, value) in fields {
        let Some(name) = name.as_text() else { continue };
        let bad = || format!("field {name} holds {}", value.kind());
        match name {
            "tracking-active" => r.active = number(value).ok_or_else(bad)? != 0,
            "sample-ratio" => r.sample_ratio = number(value).ok_or_else(bad)?.max(1),
            "collection-duration-ms" => r.duration_ms = Some(number(value).ok_or_else(bad)?),
            "by-cpu-time-us" | "by-cpu-time" => r.cpu_us = per_key(value).ok_or_else(bad)?,
            "by-net-bytes" => r.net_bytes = per_key(value).ok_or_else(bad)?,
            // Totals (`total-cpu-time-user-ms`, `used-cpu-user-ms`, `all-commands-…`), the
            // start time, the slots, and whatever a later version adds.
            _ => {}
        }
    }
    Ok(Some(r))
}

impl Report {
    /// The keys with their rates over `seconds` (the session's own duration when it reports
    /// one), scaled by the sample ratio, ranked by CPU then network.
    pub fn measured(&self, fallback_seconds: f64) -> Vec<Measured> {
        let seconds = match self.duration_ms {
            Some(ms) if ms > 0 => ms as f64 / 1000.0,
            _ => fallback_seconds,
        };
        let ratio = self.sample_ratio.max(1) as f64;
        let mut names: Vec<&Vec<u8>> = self.cpu_us.keys().chain(self.net_bytes.keys()).collect();
        names.sort();
        names.dedup();
        let mut out: Vec<Measured> = names
            .into_iter()
            .map(|k| Measured {
                name: k.clone(),
                db: None,
                rates: HotRates {
                    accesses_per_second: None,
                    cpu_seconds_per_second: self
                        .cpu_us
                        .get(k)
                        .and_then(|us| HotRates::rate(*us as f64 * ratio / 1e6, seconds)),
                    network_bytes_per_second: self
                        .net_bytes
                        .get(k)
                        .and_then(|b| HotRates::rate(*b as f64 * ratio, seconds)),
                },
            })
            .collect();
        super::rank(&mut out);
        out
    }
}

/// Stops the exporter's session when the analysis is dropped mid-window, while the session
/// is surely still its own (before its `DURATION` could have ended it and someone else started
/// one).
struct Running {
    conn: Connection,
    node: String,
    ends: Instant,
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.armed || Instant::now() + Duration::from_secs(1) >= self.ends {
            return;
        }
        let (conn, node) = (self.conn.clone(), self.node.clone());
        crate::native::runtime::spawn(async move {
            let stop = Cmd::new("HOTKEYS STOP").expect(Expect::Any, Limits::SMALL);
            if let Ok(Value::Simple(_)) = conn.one(None, stop).await {
                let reset = Cmd::new("HOTKEYS RESET").expect(Expect::Any, Limits::SMALL);
                let _ = conn.one(None, reset).await;
                debug!(node = %node, "HOTKEYS session of a stopped analysis stopped");
            }
        });
    }
}

/// Why a `START` was refused, as the user should read it.
fn refused(node: &Node, e: &ServerError) -> Error {
    let label = node.label();
    if e.line().contains("already in progress") {
        return Error::Server {
            node: label,
            message: format!(
                "HOTKEYS START: {e}: a tracking session someone else started runs on the node; \
                 the exporter leaves it alone (neither stops nor resets it) and tries again at \
                 the next interval"
            ),
        };
    }
    match e.code() {
        "NOPERM" => Error::Auth {
            node: label,
            message: format!(
                "HOTKEYS START: {e}: the ACL user needs +hotkeys (its category is @admin \
                 @slow @dangerous), or choose analysis.hotkey.source lfu or monitor"
            ),
        },
        _ => Error::from_server(&label, "HOTKEYS START", e),
    }
}

/// Runs one session of `window` on `node` and reports its top `top_n` keys (at most
/// [`MAX_COUNT`]).
pub async fn sample(
    conn: &Connector,
    node: &Node,
    window: Duration,
    top_n: usize,
) -> Result<Vec<Measured>> {
    let label = node.label();
    let c = conn.get(node).await?;
    let conn_err = |e| Error::from_conn(&label, e);
    let count = top_n.clamp(1, MAX_COUNT).to_string();
    let duration = (window + DURATION_GRACE).as_secs().max(1).to_string();
    let start = Cmd::new("HOTKEYS START")
        .arg("METRICS")
        .arg("2")
        .arg("CPU")
        .arg("NET")
        .arg("COUNT")
        .arg(&count)
        .arg("DURATION")
        .arg(&duration)
        .expect(Expect::Status, Limits::SMALL);
    if let Value::Error(e) = c.one(None, start).await.map_err(conn_err)? {
        return Err(refused(node, &e));
    }
    let started = Instant::now();
    let mut running = Running {
        conn: c.clone(),
        node: label.clone(),
        ends: started + window + DURATION_GRACE,
        armed: true,
    };
    tokio::time::sleep(window).await;
    running.armed = false;
    let c = conn.get(node).await?;
    let answers = c
        .run(
            None,
            &[
                Cmd::new("HOTKEYS STOP").expect(Expect::Any, Limits::SMALL),
                Cmd::new("HOTKEYS GET").expect(Expect::Any, GET_LIMITS),
            ],
        )
        .await
        .map_err(conn_err)?;
    let seconds = started.elapsed().as_secs_f64();
    // STOP: OK, or nil once DURATION ended the session; an error is the node's answer.
    if let Value::Error(e) = &answers[0] {
        return Err(Error::from_server(&label, "HOTKEYS STOP", e));
    }
    let report = match &answers[1] {
        Value::Error(e) => return Err(Error::from_server(&label, "HOTKEYS GET", e)),
        v => parse(v).map_err(|m| Error::Protocol {
            node: label.clone(),
            message: format!("HOTKEYS GET: {m}"),
        })?,
    };
    let Some(report) = report else {
        return Err(Error::Server {
            node: label,
            message: "HOTKEYS GET: no session any more (someone reset it during the window); \
                      trying again at the next interval"
                .into(),
        });
    };
    if report.active {
        return Err(Error::Server {
            node: label,
            message: "HOTKEYS GET: a session someone else started after the exporter's ended \
                      runs now; its data is not the exporter's, left alone"
                .into(),
        });
    }
    // Ours, and stopped: its memory goes back to the server. A refusal changes nothing read.
    let reset = Cmd::new("HOTKEYS RESET").expect(Expect::Any, Limits::SMALL);
    if let Ok(Value::Error(e)) = c.one(None, reset).await {
        debug!(node = %label, error = %e, "HOTKEYS RESET refused");
    }
    Ok(report.measured(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn fields() -> Vec<(Value, Value)> {
        vec![
            (b("tracking-active"), Value::Int(0)),
            (b("sample-ratio"), Value::Int(1)),
            (
                b("selected-slots"),
                Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(16383)])]),
            ),
            (b("all-commands-all-slots-us"), Value::Int(103)),
            (b("collection-duration-ms"), Value::Int(2000)),
            (b("total-cpu-time-user-ms"), Value::Int(23)),
            (b("used-cpu-sys-ms"), Value::Int(7)),
            (
                b("by-cpu-time-us"),
                Value::Array(vec![
                    b("hot"),
                    Value::Int(40_000),
                    b("warm"),
                    Value::Int(2_000),
                ]),
            ),
            (
                b("by-net-bytes"),
                Value::Array(vec![
                    b("warm"),
                    Value::Int(9_000),
                    b("net-only"),
                    Value::Int(10),
                ]),
            ),
            (b("a-field-from-the-future"), Value::Array(vec![b("x")])),
        ]
    }

    fn flat(f: Vec<(Value, Value)>) -> Value {
        Value::Array(f.into_iter().flat_map(|(k, v)| [k, v]).collect())
    }

    #[test]
    fn every_reply_shape_gives_the_same_report() {
        let want = parse(&Value::Array(vec![flat(fields())])).unwrap().unwrap();
        assert_eq!(want.duration_ms, Some(2000));
        assert_eq!(want.cpu_us[&b"hot".to_vec()], 40_000);
        assert_eq!(want.net_bytes[&b"net-only".to_vec()], 10);
        for shape in [
            Value::Array(vec![Value::Map(fields())]),
            flat(fields()),
            Value::Map(fields()),
        ] {
            assert_eq!(parse(&shape).unwrap().unwrap(), want, "{shape:?}");
        }
        assert_eq!(parse(&Value::Nil).unwrap(), None);
        assert_eq!(parse(&Value::Array(vec![Value::Nil])).unwrap(), None);
        assert!(parse(&Value::Int(3)).is_err());
        let mut broken = fields();
        broken[7].1 = Value::Array(vec![b("k")]);
        assert!(parse(&flat(broken)).unwrap_err().contains("by-cpu-time-us"));
    }

    #[test]
    fn rates_are_per_second_of_the_session_and_scaled_by_its_sample_ratio() {
        let r = parse(&flat(fields())).unwrap().unwrap();
        let m = r.measured(99.0);
        let names: Vec<&[u8]> = m.iter().map(|k| k.name.as_slice()).collect();
        assert_eq!(names, [&b"hot"[..], b"warm", b"net-only"]);
        // 40 ms of CPU over 2 s.
        assert_eq!(m[0].rates.cpu_seconds_per_second, Some(0.02));
        assert_eq!(m[0].rates.network_bytes_per_second, None);
        assert_eq!(m[1].rates.network_bytes_per_second, Some(4500.0));
        let mut f = fields();
        f[1].1 = Value::Int(10);
        f[4].1 = Value::Int(0);
        let m = parse(&flat(f)).unwrap().unwrap().measured(4.0);
        // Scaled by 10, over the exporter's own 4 s when the server says 0.
        assert_eq!(m[0].rates.cpu_seconds_per_second, Some(0.1));
    }
}
