//! A fake Redis server on loopback for the hostile-target tests: a tiny keyspace it answers for
//! faithfully (RESP2, the commands the scans send), and a hook that replaces any answer with
//! whatever bytes a test wants: floods, lies, errors, garbage.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A key of the fake keyspace: its type and size (bytes or elements).
#[derive(Clone, Debug)]
pub struct FakeKey {
    pub key_type: &'static str,
    pub size: i64,
}

/// Replaces the answer to a command (its arguments, upper-cased name first), or `None` for
/// the faithful one.
pub type Twist = Arc<dyn Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync>;

/// The fake server.
pub struct FakeRedis {
    pub port: u16,
    twist: Arc<Mutex<Option<Twist>>>,
}

impl FakeRedis {
    /// Starts a fake with `keys` in database 0.
    pub async fn start(keys: BTreeMap<Vec<u8>, FakeKey>) -> FakeRedis {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let twist: Arc<Mutex<Option<Twist>>> = Arc::new(Mutex::new(None));
        let keys = Arc::new(keys);
        {
            let twist = twist.clone();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    tokio::spawn(serve(s, keys.clone(), twist.clone()));
                }
            });
        }
        FakeRedis { port, twist }
    }

    /// Answers with `twist` from now on.
    pub fn twist(&self, twist: Twist) {
        *self.twist.lock().unwrap() = Some(twist);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// `n` strings `key:{i}` of `i + 1` bytes.
pub fn strings(n: usize) -> BTreeMap<Vec<u8>, FakeKey> {
    (0..n)
        .map(|i| {
            (
                format!("key:{i}").into_bytes(),
                FakeKey {
                    key_type: "string",
                    size: i as i64 + 1,
                },
            )
        })
        .collect()
}

pub fn bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}

fn int(i: i64) -> Vec<u8> {
    format!(":{i}\r\n").into_bytes()
}

/// Reads one command (an array of bulk strings) from `buf`, if complete.
fn command(buf: &mut Vec<u8>) -> Option<Vec<Vec<u8>>> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (n, mut at) = line(buf, 0)?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, start) = line(buf, at)?;
        if buf.len() < start + len + 2 {
            return None;
        }
        args.push(buf[start..start + len].to_vec());
        at = start + len + 2;
    }
    buf.drain(..at);
    args[0] = args[0].to_ascii_uppercase();
    Some(args)
}

fn faithful(args: &[Vec<u8>], keys: &BTreeMap<Vec<u8>, FakeKey>) -> Vec<u8> {
    let arg = |i: usize| args.get(i).map(Vec::as_slice).unwrap_or_default();
    // `MEMORY USAGE key`, `OBJECT FREQ key`: the key comes after the subcommand.
    let key_at = if matches!(args[0].as_slice(), b"MEMORY" | b"OBJECT") {
        2
    } else {
        1
    };
    let key = keys.get(arg(key_at));
    let size = |t: &str| match key {
        Some(k) if k.key_type == t => int(k.size),
        Some(_) => {
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".to_vec()
        }
        None => int(0),
    };
    match args[0].as_slice() {
        b"PING" if args.len() > 1 => bulk(arg(1)),
        b"PING" => b"+PONG\r\n".to_vec(),
        b"SELECT" | b"CLIENT" => b"+OK\r\n".to_vec(),
        b"READONLY" => b"-ERR This instance has cluster support disabled\r\n".to_vec(),
        b"INFO" => {
            let text = format!(
                "# Server\r\nredis_version:7.0.99\r\nrun_id:{:040}\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n# Memory\r\nmaxmemory_policy:noeviction\r\n# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
                1,
                keys.len()
            );
            bulk(text.as_bytes())
        }
        b"SCAN" => {
            let mut out = format!("*2\r\n$1\r\n0\r\n*{}\r\n", keys.len()).into_bytes();
            for k in keys.keys() {
                out.extend(bulk(k));
            }
            out
        }
        b"TYPE" => format!("+{}\r\n", key.map_or("none", |k| k.key_type)).into_bytes(),
        b"STRLEN" => size("string"),
        b"LLEN" => size("list"),
        b"SCARD" => size("set"),
        b"ZCARD" => size("zset"),
        b"HLEN" => size("hash"),
        b"XLEN" => size("stream"),
        b"MEMORY" => key.map_or(b"$-1\r\n".to_vec(), |k| int(k.size + 50)),
        b"PTTL" => int(if key.is_some() { -1 } else { -2 }),
        b"OBJECT" => b"-ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.\r\n".to_vec(),
        b"RANDOMKEY" => keys.keys().next().map_or(b"$-1\r\n".to_vec(), |k| bulk(k)),
        _ => b"-ERR unknown command\r\n".to_vec(),
    }
}

async fn serve(
    mut s: TcpStream,
    keys: Arc<BTreeMap<Vec<u8>, FakeKey>>,
    twist: Arc<Mutex<Option<Twist>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(args) = command(&mut buf) {
            let twisted = twist.lock().unwrap().clone().and_then(|t| t(&args));
            let out = twisted.unwrap_or_else(|| faithful(&args, &keys));
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
