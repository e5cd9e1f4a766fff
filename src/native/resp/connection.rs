//! The pipelined connection to one node that every scan of that node shares.
//!
//! Any number of callers send batches of commands ([`Connection::run`]); batches go out in
//! order as soon as they are given, without waiting for earlier answers, and each caller gets
//! the answers of its own batch. Two tasks drive the socket: a writer, and a reader that reads
//! each reply under the limits of the command it answers and hands it to the batch waiting
//! for it.
//!
//! - **Databases**: a batch names its database; the connection sends `SELECT` before it when
//!   the database on the wire differs, so one connection serves every database of a node. A
//!   refused `SELECT` fails the connection: commands already sent after it would otherwise run
//!   in the wrong database.
//! - **Answers in step**: every batch ends with `PING <n>`, `n` counting the batches, and
//!   its answer must be exactly `n`. A server that answers a command twice, skips one or
//!   answers one that was never sent puts every later answer one off; the first `PING` answered
//!   with anything but its own number fails the connection, and the batch's answers are never
//!   used. Each answer must also have a shape the command can answer ([`Expect`]).
//! - **Bounded**: each reply is read under its command's [`Limits`]; a reply past them fails
//!   the connection ("reply too large") before its bytes are buffered. A buffer grown by a
//!   large answer is given back after it.
//! - **Failure**: any failure (a lost socket, a reply too large, answers out of step, no
//!   answer within [`RESPONSE_TIMEOUT`]) fails every batch in flight with the same error and
//!   closes the connection; the next caller opens a new one. A connection left idle for
//!   [`IDLE_CLOSE`] closes itself, giving its file descriptor back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Limits, Measure, Value};
use super::raw::{take_frame, unexpected, NoTouch, RawConn};
use super::{permits, Cmd, ConnError, Expect};

pub use super::raw::RESPONSE_TIMEOUT;

/// A connection nobody used for this long closes itself.
pub const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// What a reply in flight answers.
enum Slot {
    Select,
    Cmd {
        name: &'static str,
        expect: Expect,
        limits: Limits,
    },
    Sentinel(Vec<u8>),
}

impl Slot {
    fn limits(&self) -> Limits {
        match self {
            Slot::Cmd { limits, .. } => *limits,
            _ => Limits::SMALL,
        }
    }
}

struct Batch {
    slots: VecDeque<Slot>,
    answers: Vec<Value>,
    done: Option<oneshot::Sender<Result<Vec<Value>, ConnError>>>,
}

struct State {
    batches: VecDeque<Batch>,
    /// The database the next command sent runs in (`None`: not selected yet).
    db: Option<i64>,
    failed: Option<ConnError>,
    sent: u64,
    /// Since when the reader waits for the oldest batch in flight, or was last idle.
    since: Instant,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    closed: CancellationToken,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails every batch in flight with `e` and closes the connection.
    fn fail(&self, e: ConnError) {
        let mut s = self.lock();
        if s.failed.is_none() {
            s.failed = Some(e.clone());
        }
        for mut b in s.batches.drain(..) {
            if let Some(done) = b.done.take() {
                let _ = done.send(Err(e.clone()));
            }
        }
        drop(s);
        self.closed.cancel();
    }
}

/// Closes the connection when the last handle goes.
struct Handle {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Vec<u8>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closed.cancel();
    }
}

/// A pipelined connection to one node; cheap to clone, closed when the last clone goes.
#[derive(Clone)]
pub struct Connection {
    handle: Arc<Handle>,
    no_touch: NoTouch,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("no_touch", &self.no_touch)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Starts the reader and writer of an open, set up connection. They run on the caller's
    /// runtime (the scan threads) and end when the connection fails or the last clone goes.
    pub(super) fn start(raw: RawConn, permit: permits::Permit, no_touch: NoTouch) -> Connection {
        let RawConn { io, buf, .. } = raw;
        let (rd, wr) = tokio::io::split(io);
        let (out, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                db: None,
                failed: None,
                sent: 0,
                since: Instant::now(),
            }),
            wake: Notify::new(),
            closed: CancellationToken::new(),
        });
        let permit = Arc::new(permit);
        tokio::spawn(read(rd, buf, shared.clone(), permit.clone()));
        tokio::spawn(write(wr, rx, shared.clone(), permit));
        Connection {
            handle: Arc::new(Handle { shared, out }),
            no_touch,
        }
    }

    /// The server's answer to `CLIENT NO-TOUCH ON` when the connection was opened.
    pub fn no_touch(&self) -> NoTouch {
        self.no_touch
    }

    /// Whether the connection failed or closed: a new one is needed.
    pub fn is_closed(&self) -> bool {
        self.handle.shared.closed.is_cancelled()
    }

    /// Sends `cmds` (in database `db`, or whichever is selected for `None`) and answers their
    /// replies in order. A server error answering one command is that command's reply
    /// ([`Value::Error`]); a failure of the connection fails the whole batch.
    pub async fn run(&self, db: Option<i64>, cmds: &[Cmd]) -> Result<Vec<Value>, ConnError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &self.handle.shared;
        let (tx, rx) = oneshot::channel();
        {
            let mut s = shared.lock();
            if let Some(e) = &s.failed {
                return Err(e.clone());
            }
            let mut bytes = Vec::with_capacity(cmds.len() * 48);
            let mut slots = VecDeque::with_capacity(cmds.len() + 2);
            if let Some(db) = db {
                if s.db != Some(db) {
                    codec::encode(&mut bytes, &[b"SELECT", db.to_string().as_bytes()]);
                    slots.push_back(Slot::Select);
                    s.db = Some(db);
                }
            }
            for c in cmds {
                c.encode(&mut bytes);
                if c.name() == "SELECT" {
                    // Selected by the caller: the database on the wire is no longer known.
                    s.db = None;
                }
                slots.push_back(Slot::Cmd {
                    name: c.name(),
                    expect: c.expected(),
                    limits: c.limits(),
                });
            }
            s.sent += 1;
            let nonce = s.sent.to_string().into_bytes();
            codec::encode(&mut bytes, &[b"PING", &nonce]);
            slots.push_back(Slot::Sentinel(nonce));
            if s.batches.is_empty() {
                s.since = Instant::now();
            }
            s.batches.push_back(Batch {
                slots,
                answers: Vec::with_capacity(cmds.len()),
                done: Some(tx),
            });
            if self.handle.out.send(bytes).is_err() {
                drop(s);
                shared.fail(ConnError::Lost("the connection closed".into()));
            }
        }
        shared.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(ConnError::Lost("the connection closed".into())))
    }

    /// One command: its reply.
    pub async fn one(&self, db: Option<i64>, cmd: Cmd) -> Result<Value, ConnError> {
        let mut v = self.run(db, std::slice::from_ref(&cmd)).await?;
        v.pop()
            .ok_or_else(|| ConnError::Protocol("no answer to the command".into()))
    }
}

async fn write(
    mut wr: tokio::io::WriteHalf<Box<dyn super::raw::Io>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
    _permit: Arc<permits::Permit>,
) {
    loop {
        let bytes = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => return,
            },
            _ = shared.closed.cancelled() => return,
        };
        let sent = async {
            wr.write_all(&bytes).await?;
            wr.flush().await
        };
        tokio::select! {
            r = sent => if let Err(e) = r {
                shared.fail(ConnError::Lost(e.to_string()));
                return;
            },
            _ = shared.closed.cancelled() => return,
        }
    }
}

async fn read(
    mut rd: tokio::io::ReadHalf<Box<dyn super::raw::Io>>,
    mut buf: BytesMut,
    shared: Arc<Shared>,
    _permit: Arc<permits::Permit>,
) {
    let e = loop {
        // Every complete reply in the buffer goes to its batch.
        if let Err(e) = dispatch(&shared, &mut buf) {
            break e;
        }
        let (waiting, since, limits) = {
            let s = shared.lock();
            let front = s.batches.front().and_then(|b| b.slots.front());
            (front.is_some(), s.since, front.map(Slot::limits))
        };
        let deadline = since
            + if waiting {
                RESPONSE_TIMEOUT
            } else {
                IDLE_CLOSE
            };
        let need = match limits.map(|l| codec::measure(&buf, l)) {
            Some(Ok(Measure::Incomplete(n))) => n,
            _ => buf.len() + 1,
        };
        buf.reserve(need.saturating_sub(buf.len()).clamp(4096, 64 * 1024));
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break ConnError::Lost("the server closed the connection".into()),
                Ok(_) => shared.lock().since = Instant::now(),
                Err(e) => break ConnError::Lost(e.to_string()),
            },
            _ = tokio::time::sleep_until(deadline) => {
                if waiting {
                    break ConnError::Timeout(RESPONSE_TIMEOUT);
                }
                // Idle: closed quietly (the next use opens a new connection).
                break ConnError::Lost("closed after being idle".into());
            }
            _ = shared.wake.notified() => {}
            _ = shared.closed.cancelled() => return,
        }
    };
    shared.fail(e);
}

/// Hands every complete reply at the start of `buf` to the batch it answers.
fn dispatch(shared: &Shared, buf: &mut BytesMut) -> Result<(), ConnError> {
    loop {
        let limits = {
            let s = shared.lock();
            match s.batches.front().and_then(|b| b.slots.front()) {
                Some(slot) => slot.limits(),
                None if buf.is_empty() => return Ok(()),
                None => {
                    return Err(ConnError::Protocol(
                        "the server sent an answer to no command (desynchronised)".into(),
                    ))
                }
            }
        };
        let Some(v) = take_frame(buf, limits)? else {
            return Ok(());
        };
        let mut s = shared.lock();
        let Some(batch) = s.batches.front_mut() else {
            return Err(ConnError::Protocol(
                "the server sent an answer to no command (desynchronised)".into(),
            ));
        };
        match batch.slots.pop_front() {
            Some(Slot::Select) => match &v {
                Value::Simple(_) => {}
                Value::Error(e) if matches!(e.code(), "NOPERM" | "NOAUTH") => {
                    return Err(ConnError::Auth(format!("SELECT refused: {e}")))
                }
                Value::Error(e) => return Err(ConnError::Protocol(format!("SELECT failed: {e}"))),
                other => return Err(unexpected("SELECT", other)),
            },
            Some(Slot::Cmd { name, expect, .. }) => {
                if !expect.fits(&v) {
                    return Err(unexpected(name, &v));
                }
                batch.answers.push(v);
            }
            Some(Slot::Sentinel(nonce)) => {
                if v.as_bytes() != Some(nonce.as_slice()) {
                    return Err(match v {
                        Value::Error(e) if matches!(e.code(), "NOPERM" | "NOAUTH") => {
                            ConnError::Auth(format!("PING refused: {e}"))
                        }
                        _ => ConnError::Protocol(
                            "the server's answers are out of step with the commands sent \
                             (desynchronised): answers dropped"
                                .into(),
                        ),
                    });
                }
            }
            None => unreachable!("a batch in flight has slots left"),
        }
        if batch.slots.is_empty() {
            let mut batch = s.batches.pop_front().expect("the front batch");
            s.since = Instant::now();
            if let Some(done) = batch.done.take() {
                let _ = done.send(Ok(std::mem::take(&mut batch.answers)));
            }
        }
    }
}
