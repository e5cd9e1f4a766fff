//! A dedicated connection that reads a stream of status lines that answer no command: the
//! output of `MONITOR`, one `+` line per command the server runs.
//!
//! The lines are read here, not as replies through [`RawConn::next`]: a `MONITOR` line quotes
//! every argument of the command it shows, a `SET` of a 1 MiB value included, which is past
//! what a status line may hold as a reply (and must not fail the sample). A line longer than
//! the caller's bound is skipped as it streams past, without being buffered; only its length
//! is reported. The connection holds one of the process' connection permits for as long as it
//! is open, and closes (giving the permit back) when dropped.

use bytes::Buf;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::codec::{Limits, ServerError, Value};
use super::permits::{Permit, Permits};
use super::raw::{Endpoint, RawConn, Setup, CONNECT_TIMEOUT};
use super::ConnError;

/// One line of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A status line's text (without `+` and CRLF).
    Status(Vec<u8>),
    /// A line longer than the bound, skipped: its length with CRLF.
    Skipped(usize),
    /// An error line (the server ended the stream's command, or refused it).
    Error(ServerError),
}

/// An open stream connection.
pub struct LineStream {
    raw: RawConn,
    _permit: Permit,
}

impl std::fmt::Debug for LineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineStream").finish_non_exhaustive()
    }
}

impl LineStream {
    /// Opens a connection to `ep` holding one of `permits`, with its credentials and no other
    /// setup.
    pub async fn open(ep: &Endpoint, permits: &Permits) -> Result<LineStream, ConnError> {
        let permit = permits.acquire(CONNECT_TIMEOUT).await?;
        let mut raw = RawConn::open(ep).await?;
        match tokio::time::timeout(CONNECT_TIMEOUT, raw.handshake(ep, Setup::default())).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                return Err(ConnError::Connect(format!(
                    "no answer to the first commands within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        }
        Ok(LineStream {
            raw,
            _permit: permit,
        })
    }

    /// Sends one command and reads its reply (before the stream starts).
    pub async fn call(&mut self, args: &[&[u8]], limits: Limits) -> Result<Value, ConnError> {
        self.raw.call(args, limits).await
    }

    /// The next line, skipping (and reporting) one longer than `max` bytes; `None` when
    /// `deadline` passes first.
    pub async fn next_line(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Result<Option<Line>, ConnError> {
        let mut skipped = 0usize;
        loop {
            let buf = &mut self.raw.buf;
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = buf.split_to(end + 2);
                if skipped > 0 {
                    return Ok(Some(Line::Skipped(skipped + line.len())));
                }
                let text = &line[..end];
                return match text.first() {
                    Some(b'+') => Ok(Some(Line::Status(text[1..].to_vec()))),
                    Some(b'-') => Ok(Some(Line::Error(ServerError::new(&text[1..])))),
                    _ => Err(ConnError::Protocol(format!(
                        "a stream line that is no status: {}",
                        super::codec::printable(text, 40)
                    ))),
                };
            }
            if skipped > 0 || buf.len() > max {
                // Past the bound: drop what came, but a last `\r` that may start the CRLF.
                let keep = usize::from(buf.last() == Some(&b'\r'));
                let drop = buf.len() - keep;
                skipped += drop;
                buf.advance(drop);
            }
            buf.reserve(16 * 1024);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match tokio::time::timeout(left, self.raw.io.read_buf(&mut self.raw.buf)).await {
                Ok(Ok(0)) => {
                    return Err(ConnError::Lost("the server closed the connection".into()))
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ConnError::Lost(e.to_string())),
                Err(_) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    async fn pair(script: Vec<u8>) -> LineStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 64];
            // PING of the handshake.
            let _ = s.read(&mut b).await;
            s.write_all(b"+PONG\r\n").await.unwrap();
            s.write_all(&script).await.unwrap();
            // Keep the socket open until the client goes.
            let _ = s.read(&mut b).await;
        });
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
            tls: None,
            username: None,
            password: None,
        };
        LineStream::open(&ep, &Permits::new(4)).await.unwrap()
    }

    #[tokio::test]
    async fn lines_come_one_by_one_and_a_long_one_is_skipped_without_being_kept() {
        let mut script = b"+OK\r\n+a \"b\"\r\n+".to_vec();
        script.extend(std::iter::repeat_n(b'x', 100_000));
        script.extend(b"\r\n-ERR gone\r\n+last\r\n");
        let mut s = pair(script).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while let Some(l) = s.next_line(1024, deadline).await.unwrap() {
            got.push(l);
            if got.len() == 5 {
                break;
            }
        }
        assert_eq!(
            got,
            vec![
                Line::Status(b"OK".to_vec()),
                Line::Status(b"a \"b\"".to_vec()),
                Line::Skipped(100_003),
                Line::Error(ServerError::new(b"ERR gone")),
                Line::Status(b"last".to_vec()),
            ]
        );
        assert!(s.raw.buf.capacity() < 200_000, "the long line was not kept");
    }

    #[tokio::test]
    async fn an_idle_stream_ends_at_the_deadline() {
        // Real sockets: a paused clock would fire the deadline before the first line arrives.
        let mut s = pair(b"+OK\r\n".to_vec()).await;
        let deadline = Instant::now() + Duration::from_millis(300);
        assert_eq!(
            s.next_line(64, deadline).await.unwrap(),
            Some(Line::Status(b"OK".to_vec()))
        );
        assert_eq!(s.next_line(64, deadline).await.unwrap(), None);
        assert!(Instant::now() >= deadline);
    }
}
