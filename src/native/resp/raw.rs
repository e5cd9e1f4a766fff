//! Opening a connection to a node: TCP (or TLS), `AUTH`, and the per-connection settings
//! (`CLIENT NO-TOUCH`, `READONLY`), one command at a time. [`RawConn`] is also what a
//! `MONITOR` sample reads from: a stream of replies that answer no command.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, FrameError, Limits, Measure, Value};
use super::ConnError;
use crate::secret::Secret;

/// Time allowed to open a connection: TCP, TLS and the first commands.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed without a byte of an awaited answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// A buffer grown past this by a large reply is given back once the reply was read.
const KEEP_BUFFER: usize = 256 * 1024;

/// A byte stream to a node, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    /// Where the socket goes (the address the topology reported).
    pub host: String,
    pub port: u16,
    /// TLS settings and the name the certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What the connection asks of the server once open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// `CLIENT NO-TOUCH ON` (Redis 7.2+, Valkey): nothing this connection sends changes a
    /// key's LFU counter or idle time.
    pub no_touch: bool,
    /// `READONLY`: a cluster replica answers key commands (else `MOVED`).
    pub readonly: bool,
}

/// The server's answer to `CLIENT NO-TOUCH ON`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoTouch {
    /// Not asked.
    NotAsked,
    /// On: the connection's reads touch no key.
    On,
    /// The server has no such command (before Redis 7.2): reads touch keys.
    NotOffered,
    /// The ACL user may not run it (`NOPERM`): reads touch keys.
    Refused,
}

/// A connection read and written one reply at a time.
pub struct RawConn {
    pub(super) io: Box<dyn Io>,
    pub(super) buf: BytesMut,
    /// Whether a byte of a reply has been read yet (a first reply that is not RESP may be TLS).
    answered: bool,
    tls: bool,
}

impl RawConn {
    /// Opens a socket to `ep` (TLS included) within [`CONNECT_TIMEOUT`].
    pub async fn open(ep: &Endpoint) -> Result<RawConn, ConnError> {
        let addr = format!("{}:{}", ep.host, ep.port);
        let tcp = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((ep.host.as_str(), ep.port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ConnError::Connect(format!("{addr}: {e}"))),
            Err(_) => {
                return Err(ConnError::Connect(format!(
                    "{addr}: no connection within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &ep.tls {
            None => Box::new(tcp),
            Some((config, name)) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
                    ConnError::Connect(format!("{name:?} is not a valid TLS server name"))
                })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone());
                match tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => return Err(tls_failed(&e)),
                    Err(_) => {
                        return Err(ConnError::Connect(format!(
                            "no TLS answer within {}s: the server seems to speak plain text \
                             (use redis://, not rediss://)",
                            CONNECT_TIMEOUT.as_secs()
                        )))
                    }
                }
            }
        };
        Ok(RawConn {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
            answered: false,
            tls: ep.tls.is_some(),
        })
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]], limits: Limits) -> Result<Value, ConnError> {
        let mut out = Vec::new();
        codec::encode(&mut out, args);
        self.send(&out).await?;
        self.next(limits, RESPONSE_TIMEOUT).await
    }

    /// Writes bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let w = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(RESPONSE_TIMEOUT, w).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(&e)),
            Err(_) => Err(ConnError::Timeout(RESPONSE_TIMEOUT)),
        }
    }

    /// Reads the next reply, waiting at most `wait` for each chunk of it.
    pub async fn next(&mut self, limits: Limits, wait: Duration) -> Result<Value, ConnError> {
        loop {
            if let Some(v) = take_frame(&mut self.buf, limits)? {
                return Ok(v);
            }
            let need = match codec::measure(&self.buf, limits) {
                Ok(Measure::Incomplete(n)) => n,
                _ => self.buf.len() + 1,
            };
            self.buf
                .reserve((need - self.buf.len()).clamp(4096, 64 * 1024));
            match tokio::time::timeout(wait, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err(self.closed()),
                Ok(Ok(_)) => {
                    if !self.answered {
                        self.answered = true;
                        check_first_byte(self.buf[0], self.tls)?;
                    }
                }
                Ok(Err(e)) => return Err(self.lost(&e)),
                Err(_) => return Err(ConnError::Timeout(wait)),
            }
        }
    }

    fn closed(&self) -> ConnError {
        if self.answered || self.tls {
            ConnError::Lost("the server closed the connection".into())
        } else {
            ConnError::Lost(
                "the server closed the connection before answering: it may speak TLS (use \
                 rediss://), or refuse this client (maxclients, protected mode)"
                    .into(),
            )
        }
    }

    fn lost(&self, e: &std::io::Error) -> ConnError {
        if !self.answered && !self.tls && e.kind() == std::io::ErrorKind::ConnectionReset {
            ConnError::Lost(format!(
                "{e} before the first answer: the server seems to speak TLS (use rediss://)"
            ))
        } else {
            ConnError::Lost(e.to_string())
        }
    }

    /// `AUTH` and the [`Setup`] commands, one after the other. Answers the state of
    /// `CLIENT NO-TOUCH`.
    pub async fn handshake(&mut self, ep: &Endpoint, setup: Setup) -> Result<NoTouch, ConnError> {
        let mut asked = false;
        if let Some(password) = &ep.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &ep.username {
                args.push(user.as_bytes());
            }
            args.push(password.expose().as_bytes());
            let v = self.call(&args, Limits::SMALL).await?;
            asked = true;
            match v {
                Value::Simple(_) => {}
                Value::Error(e) => {
                    return Err(ConnError::Auth(format!("the server refused AUTH: {e}")))
                }
                other => return Err(unexpected("AUTH", &other)),
            }
        }
        let mut no_touch = NoTouch::NotAsked;
        if setup.no_touch {
            let v = self
                .call(&[b"CLIENT", b"NO-TOUCH", b"ON"], Limits::SMALL)
                .await?;
            asked = true;
            no_touch = match v {
                Value::Simple(_) => NoTouch::On,
                Value::Error(e) if e.code() == "NOPERM" => NoTouch::Refused,
                Value::Error(e) if matches!(e.code(), "NOAUTH" | "WRONGPASS") => {
                    return Err(ConnError::Auth(format!(
                        "the server needs credentials: {e}"
                    )))
                }
                Value::Error(e) if e.code() == "ERR" => NoTouch::NotOffered,
                Value::Error(e) => return Err(ConnError::Server(e)),
                other => return Err(unexpected("CLIENT NO-TOUCH", &other)),
            };
        }
        if setup.readonly {
            match self.call(&[b"READONLY"], Limits::SMALL).await? {
                Value::Simple(_) => {}
                Value::Error(e) if matches!(e.code(), "NOPERM" | "NOAUTH") => {
                    return Err(ConnError::Auth(format!("READONLY refused: {e}")))
                }
                Value::Error(e) => return Err(ConnError::Server(e)),
                other => return Err(unexpected("READONLY", &other)),
            }
            asked = true;
        }
        if !asked {
            // One exchange at least, so that a server that is not Redis shows here.
            match self.call(&[b"PING"], Limits::SMALL).await? {
                Value::Simple(_) => {}
                Value::Error(e) if matches!(e.code(), "NOAUTH" | "WRONGPASS") => {
                    return Err(ConnError::Auth(format!(
                        "the server needs credentials: {e}"
                    )))
                }
                Value::Error(e) if e.code() == "NOPERM" => {
                    return Err(ConnError::Auth(format!("PING refused: {e}")))
                }
                Value::Error(e) => return Err(ConnError::Server(e)),
                other => return Err(unexpected("PING", &other)),
            }
        }
        Ok(no_touch)
    }
}

/// Takes the complete reply at the start of `buf`, if there is one.
pub(super) fn take_frame(buf: &mut BytesMut, limits: Limits) -> Result<Option<Value>, ConnError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match codec::measure(buf, limits) {
        Ok(Measure::Complete(n)) => {
            let v = codec::decode(&buf[..n]).map_err(frame_error)?;
            buf.advance(n);
            if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
                *buf = BytesMut::with_capacity(16 * 1024);
            }
            Ok(Some(v))
        }
        Ok(Measure::Incomplete(_)) => Ok(None),
        Err(e) => {
            *buf = BytesMut::new();
            Err(frame_error(e))
        }
    }
}

pub(super) fn frame_error(e: FrameError) -> ConnError {
    match e {
        FrameError::TooLarge(m) => ConnError::TooLarge(m),
        FrameError::Malformed(m) => ConnError::Protocol(format!("not a Redis reply ({m})")),
    }
}

/// A first byte that no RESP reply starts with, but a TLS record does.
pub(super) fn check_first_byte(b: u8, tls: bool) -> Result<(), ConnError> {
    if !tls && matches!(b, 0x14..=0x17) {
        return Err(ConnError::Protocol(
            "the server seems to speak TLS (use rediss://, not redis://)".into(),
        ));
    }
    Ok(())
}

pub(super) fn unexpected(command: &str, v: &Value) -> ConnError {
    ConnError::Protocol(format!(
        "{} answered to {command}: not a Redis reply to it (desynchronised, or not a Redis server)",
        v.kind()
    ))
}

fn tls_failed(e: &std::io::Error) -> ConnError {
    let text = e.to_string();
    let plain = text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || text.contains("invalid content type")
        || e.kind() == std::io::ErrorKind::UnexpectedEof;
    if plain {
        ConnError::Connect(format!(
            "TLS handshake failed ({text}): the server seems to speak plain text (use redis://, \
             not rediss://)"
        ))
    } else {
        ConnError::Connect(format!("TLS handshake failed: {text}"))
    }
}
