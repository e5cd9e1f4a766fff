//! Valkey 9.2+ `HOTKEYS GET`: the server's own hot key detection, on while its
//! `hotkeys-top-k` is above 0 (off by default; `hotkeys-sampling-percentage` and
//! `hotkeys-window-seconds` tune it). `GET` reports the keys of the last completed window,
//! hottest first, each as `{key, db, qps}` (a RESP3 map, or its RESP2 form: a flat array of six
//! names and values); detection off answers an empty array, as a window without accesses does.
//!
//! The exporter only reads: it never changes the server's configuration, and never `RESET`s
//! what others may read too. `CONFIG GET hotkeys-top-k` tells "off" from "nothing hot" where
//! `CONFIG` is allowed.

use super::Measured;
use crate::dcs::HotRates;
use crate::native::conn::Connector;
use crate::native::error::{Error, Result};
use crate::native::resp::{Cmd, Expect, Limits, Value};
use crate::native::topology::Node;
use crate::native::walk::MAX_KEY_BYTES;

/// What `GET` may answer: up to `hotkeys-top-k` entries of three fields.
const GET_LIMITS: Limits = Limits {
    bulk: MAX_KEY_BYTES,
    elements: 70_000,
    total: 64 << 20,
    depth: 3,
};

/// The entries of a map, or of its RESP2 form.
fn pairs(v: &Value) -> Option<Vec<(&Value, &Value)>> {
    match v {
        Value::Map(m) => Some(m.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(a) if a.len() % 2 == 0 => {
            Some(a.chunks_exact(2).map(|p| (&p[0], &p[1])).collect())
        }
        _ => None,
    }
}

/// Reads a `GET` reply: the keys with their accesses per second, hottest first.
pub fn parse(v: &Value) -> std::result::Result<Vec<Measured>, String> {
    let Value::Array(entries) = v else {
        return Err(format!(
            "{} where an array of entries was expected",
            v.kind()
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let fields = pairs(e).ok_or_else(|| format!("an entry is {}", e.kind()))?;
        let (mut key, mut db, mut qps) = (None, None, None);
        for (name, value) in fields {
            match name.as_text() {
                Some("key") => key = value.as_bytes().map(<[u8]>::to_vec),
                Some("db") => db = value.as_int(),
                Some("qps") => {
                    qps = match value {
                        Value::Double(d) => Some(*d),
                        v => v.as_int().map(|n| n as f64),
                    }
                }
                // Fields a later version may add.
                _ => {}
            }
        }
        let (Some(key), Some(db), Some(qps)) = (key, db, qps) else {
            return Err("an entry lacks key, db or qps".into());
        };
        out.push(Measured {
            name: key,
            db: Some(db),
            rates: HotRates {
                accesses_per_second: HotRates::rate(qps, 1.0),
                ..HotRates::default()
            },
        });
    }
    super::rank(&mut out);
    Ok(out)
}

/// Whether detection is on (`hotkeys-top-k` above 0); `None` when `CONFIG` is refused.
pub async fn enabled(conn: &Connector, node: &Node) -> Result<Option<bool>> {
    let v = conn
        .get(node)
        .await?
        .one(
            None,
            Cmd::new("CONFIG GET")
                .arg("hotkeys-top-k")
                .expect(Expect::MapOrArray, Limits::SMALL),
        )
        .await
        .map_err(|e| Error::from_conn(&node.label(), e))?;
    if matches!(v, Value::Error(_)) {
        return Ok(None);
    }
    let top_k = pairs(&v)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k.as_text() == Some("hotkeys-top-k"))
        .and_then(|(_, v)| v.as_int());
    // A server without the setting has no detection to turn on.
    Ok(Some(top_k.is_some_and(|k| k > 0)))
}

/// The keys of the server's last completed window.
pub async fn get(conn: &Connector, node: &Node) -> Result<Vec<Measured>> {
    let label = node.label();
    let v = conn
        .call(
            node,
            None,
            Cmd::new("HOTKEYS GET").expect(Expect::Array, GET_LIMITS),
        )
        .await?;
    parse(&v).map_err(|m| Error::Protocol {
        node: label,
        message: format!("HOTKEYS GET: {m}"),
    })
}

/// The keys of `node`, or why there are none to trust: an empty answer from a server whose
/// detection is off is `unsupported`, with what to change.
pub async fn sample(conn: &Connector, node: &Node) -> Result<Vec<Measured>> {
    let keys = get(conn, node).await?;
    if keys.is_empty() && enabled(conn, node).await? == Some(false) {
        return Err(off(node));
    }
    Ok(keys)
}

/// The error of a node whose detection is off.
pub fn off(node: &Node) -> Error {
    Error::Unsupported {
        node: node.label(),
        message: "Valkey's hot key detection is off (hotkeys-top-k 0): turn it on in the \
                  server's config (hotkeys-top-k 16; the exporter does not change it), or set \
                  analysis.hotkey.source to lfu or monitor"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn entry(key: &str, db: i64, qps: i64) -> Vec<(Value, Value)> {
        vec![
            (b("key"), b(key)),
            (b("db"), Value::Int(db)),
            (b("qps"), Value::Int(qps)),
        ]
    }

    #[test]
    fn resp2_and_resp3_entries_give_keys_with_their_database_and_rate() {
        let resp3 = Value::Array(vec![
            Value::Map(entry("product:8fd21a", 0, 48_200)),
            Value::Map(entry("cart:1", 3, 900)),
        ]);
        let resp2 = Value::Array(
            [entry("product:8fd21a", 0, 48_200), entry("cart:1", 3, 900)]
                .into_iter()
                .map(|e| Value::Array(e.into_iter().flat_map(|(k, v)| [k, v]).collect()))
                .collect(),
        );
        for v in [resp3, resp2] {
            let m = parse(&v).unwrap();
            assert_eq!(m.len(), 2);
            assert_eq!(
                (
                    m[0].name.as_slice(),
                    m[0].db,
                    m[0].rates.accesses_per_second
                ),
                (&b"product:8fd21a"[..], Some(0), Some(48_200.0))
            );
            assert_eq!(
                (m[1].db, m[1].rates.accesses_per_second),
                (Some(3), Some(900.0))
            );
        }
        assert!(parse(&Value::Array(vec![])).unwrap().is_empty());
        assert!(parse(&Value::Nil).is_err());
        assert!(
            parse(&Value::Array(vec![Value::Array(vec![b("key"), b("x")])]))
                .unwrap_err()
                .contains("lacks")
        );
    }
}
