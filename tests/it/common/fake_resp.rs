//! A fake RESP server on loopback for the servers the machine cannot run (Redis 8.6+,
//! Valkey 9.2+): it reads commands as a real server receives them (arrays of bulk strings,
//! pipelined), records each one, and writes whatever its handler answers, byte for byte, so a
//! test controls the exact reply shape (RESP2 or RESP3 types, errors, nil).
//!
//! Its request parser is its own (not the exporter's codec): what the exporter sends is
//! checked independently of the code under test.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The handler: the command's arguments (name first) to the raw reply bytes.
pub type Handler = Arc<dyn Fn(&[Vec<u8>]) -> Vec<u8> + Send + Sync>;

/// A running fake server; it stops accepting when dropped.
pub struct FakeServer {
    pub port: u16,
    /// Every command received, in order, over every connection.
    pub commands: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(handler: Handler) -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let commands: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::default();
        let log = commands.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s, handler.clone(), log.clone()));
            }
        });
        FakeServer {
            port,
            commands,
            task,
        }
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The commands received whose name (and subcommand) start with `prefix` (upper case,
    /// words joined by a space), as text.
    pub fn seen(&self, prefix: &str) -> Vec<String> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .map(|c| {
                c.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|c| c.to_ascii_uppercase().starts_with(prefix))
            .collect()
    }
}

/// One command at the start of `buf`: its arguments and its length, if complete.
fn parse(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[at..end], end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let arg = buf.get(next..next + len)?;
        args.push(arg.to_vec());
        at = next + len + 2;
        if buf.len() < at {
            return None;
        }
    }
    Some((args, at))
}

async fn serve(mut s: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Vec<Vec<u8>>>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((args, n)) = parse(&buf) {
            buf.drain(..n);
            log.lock().unwrap().push(args.clone());
            let out = handler(&args);
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

/// RESP building blocks for handlers.
pub mod resp {
    pub fn ok() -> Vec<u8> {
        b"+OK\r\n".to_vec()
    }
    pub fn simple(s: &str) -> Vec<u8> {
        format!("+{s}\r\n").into_bytes()
    }
    pub fn err(s: &str) -> Vec<u8> {
        format!("-{s}\r\n").into_bytes()
    }
    pub fn int(n: i64) -> Vec<u8> {
        format!(":{n}\r\n").into_bytes()
    }
    pub fn bulk(b: &[u8]) -> Vec<u8> {
        [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
    }
    /// RESP2's null bulk string.
    pub fn nil() -> Vec<u8> {
        b"$-1\r\n".to_vec()
    }
    pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
        [format!("*{}\r\n", items.len()).into_bytes(), items.concat()].concat()
    }
    /// A RESP3 map of `pairs`.
    pub fn map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = format!("%{}\r\n", pairs.len()).into_bytes();
        for (k, v) in pairs {
            out.extend_from_slice(k);
            out.extend_from_slice(v);
        }
        out
    }
    /// A map's RESP2 form: a flat array of names and values.
    pub fn flat(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let items: Vec<Vec<u8>> = pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        array(&items)
    }
}
