//! The HTTP server: `/metrics`, the status page, health, readiness and reload.
//!
//! An `auto::Builder` (HTTP/1.1, and HTTP/2 with prior knowledge), one task per connection, and
//! a graceful drain bounded by a grace period: on the shutdown token every connection starts its
//! own graceful shutdown (the same path that closes idle connections), and the server waits for
//! them. The caller binds the listener and owns the shutdown token, so tests run the server on
//! `127.0.0.1:0`.
//!
//! # Endpoints
//! | path | methods | answer |
//! |---|---|---|
//! | telemetry path (`/metrics`) | GET, HEAD | the exposition, gzip when `Accept-Encoding` allows it |
//! | `/` | GET, HEAD | the status page ([`status`]) |
//! | `/-/healthy` | GET, HEAD | 200 `OK` |
//! | `/-/ready` | GET, HEAD | 200 once ready, else 503 |
//! | `/-/reload` | POST | 200 when the new config was accepted, 500 with the reason when not, 503 when reloading is not available |
//!
//! Other methods get 405 with an `Allow` header, other paths 404. The telemetry path is matched
//! first, so it may shadow a fixed path. A scrape never waits on anything slow: rendering only
//! reads the store. Request bodies are never read.
//!
//! # Limits
//! Request headers must arrive within [`HEADER_READ_TIMEOUT`] and fit in [`MAX_HEADER_BYTES`]
//! (HTTP/1: 431 or a closed connection; HTTP/2: the stream is refused). On shutdown the listener
//! is closed at once, idle connections are closed, and requests in flight get
//! [`SHUTDOWN_GRACE`] to finish before their connections are dropped.
//!
//! At most [`Limits::max_connections`] connections ([`MAX_CONNECTIONS`] unless
//! `--web.max-connections` says otherwise) are open at once: at the limit the server stops
//! accepting until one closes, as Prometheus' own server does, so a flood of clients cannot use
//! up the file descriptors that the DCS and Redis connections need.
//!
//! Every connection is watched from the moment it is accepted ([`Limits`]): its first request
//! (TLS handshake included) must arrive within [`HEADER_READ_TIMEOUT`], and once no request is
//! in flight it is closed after [`IDLE_TIMEOUT`], gracefully (HTTP/2 clients get a GOAWAY
//! frame; [`IDLE_CLOSE_WAIT`] bounds the close). A request is in flight from its headers until
//! its response body is sent or dropped. So a client that connects and sends nothing, half an
//! HTTP/2 preface, or nothing after the TLS handshake no longer holds a file descriptor for
//! ever; hyper's own header timeout only starts when request bytes arrive.
//!
//! # TLS and authentication
//! With a [`web_config::WebConfigWatcher`] ([`run_with_web_config`]) each connection uses the web
//! config in force when it is accepted: TLS ([`tls`]) when `tls_server_config` is set, and HTTP
//! basic authentication ([`auth`]) on every path, checked per request against the current
//! `basic_auth_users`. A TLS handshake must finish within [`HEADER_READ_TIMEOUT`]. A client that
//! speaks plain HTTP to the TLS port gets a `400` telling it to use HTTPS, and the connection is
//! closed.

pub mod auth;
pub mod status;
pub mod tls;
pub mod web_config;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::reload::ReloadRequest;
use crate::metrics::body::Body;
use crate::metrics::exposition::Exposition;
use crate::metrics::store::Store;
use web_config::WebConfigWatcher;

/// How long requests in flight may take to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers (HTTP/1), and how long a new
/// connection may take to deliver its first request (TLS handshake included).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection without a request in flight stays open: longer than the usual
/// scrape intervals (up to a minute), so Prometheus keeps reusing its connections.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a connection closed for being idle may take to finish closing.
pub const IDLE_CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Upper bound on a request's headers: HTTP/1 read buffer and HTTP/2 header list size.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default of `--web.max-connections` (Prometheus' own default for the same flag).
pub const MAX_CONNECTIONS: u32 = 512;
/// Least time between two warnings that the connection limit is reached.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);
/// How long `/-/reload` waits for the reload to be applied.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after failed `accept`s in a row (e.g. out of file descriptors) before trying again:
/// from 100 ms, doubling up to 1 s, with jitter.
const ACCEPT_BACKOFF: Backoff = Backoff::fixed(
    Duration::from_millis(100),
    Duration::from_secs(1),
    Backoff::EQUAL_JITTER,
);

/// Content type of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The status page needs nothing but its inline style; this keeps any markup that slipped
/// through escaping inert.
const STATUS_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// What the request handlers need.
pub struct ServerState {
    pub exposition: Arc<Exposition>,
    pub store: Arc<Store>,
    /// Path of the metrics endpoint (default `/metrics`).
    pub telemetry_path: String,
    /// `true` once the config is loaded and the scheduler runs.
    pub ready: watch::Receiver<bool>,
    /// Sends a reload request; the reply says whether the new config was accepted, or why
    /// not. `None` when reloading is not available (e.g. no config file).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("telemetry_path", &self.telemetry_path)
            .field("ready", &*self.ready.borrow())
            .field("reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

/// Serves HTTP on `listener` until `shutdown` is cancelled, then drains connections for at most
/// [`SHUTDOWN_GRACE`] and returns.
pub async fn run(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    run_with_grace(listener, state, shutdown, SHUTDOWN_GRACE).await
}

/// [`run`] with a chosen drain period.
pub async fn run_with_grace(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    serve(listener, state, None, shutdown, grace).await
}

/// [`run`] with TLS and basic authentication from a web config file (`--web.config.file`).
pub async fn run_with_web_config(
    listener: TcpListener,
    state: Arc<ServerState>,
    web: Arc<WebConfigWatcher>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(listener, state, Some(web), shutdown, SHUTDOWN_GRACE).await
}

/// How many connections may be open, and how long one may stay open without serving a
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From accept to the first request's headers, TLS handshake included.
    pub first_request: Duration,
    /// Without a request in flight, after the first.
    pub idle: Duration,
    /// Connections open at once (`--web.max-connections`); at the limit the server stops
    /// accepting, and new connections wait in the kernel's accept queue until one closes.
    pub max_connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            first_request: HEADER_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves plain HTTP (`web: None`) or what the web config says, until `shutdown`, then drains
/// for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    web: Option<Arc<WebConfigWatcher>>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    serve_with_limits(listener, state, web, shutdown, grace, Limits::default()).await
}

/// [`serve`] with chosen connection [`Limits`].
pub async fn serve_with_limits(
    listener: TcpListener,
    state: Arc<ServerState>,
    web: Option<Arc<WebConfigWatcher>>,
    shutdown: CancellationToken,
    grace: Duration,
    limits: Limits,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);

    let mut connections = JoinSet::new();
    let mut accept_failures = 0u32;
    let max_connections = limits.max_connections.max(1) as usize;
    let mut warned_full: Option<Instant> = None;
    loop {
        let full = connections.len() >= max_connections;
        if full && warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
            warned_full = Some(Instant::now());
            tracing::warn!(
                connections = connections.len(),
                "HTTP connection limit (--web.max-connections) reached: new connections wait until one closes"
            );
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                // A connection's panic ends that connection only; it is a bug, so say so loudly.
                if let Err(e) = done {
                    tracing::error!(error = %e, "connection task failed");
                }
            }
            accepted = listener.accept(), if !full => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        let wait = ACCEPT_BACKOFF.delay(accept_failures, &mut rand::thread_rng());
                        accept_failures = accept_failures.saturating_add(1);
                        tracing::warn!(error = %e, retry_in = ?wait, "accepting a connection failed");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => continue,
                        }
                    }
                };
                accept_failures = 0;
                // A body's last small write must not wait for the client's delayed ACK (Nagle):
                // that costs ~40 ms on some scrapes.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
                }
                let conn = Connection {
                    stream,
                    peer,
                    activity: Arc::new(Activity::new(limits)),
                    state: state.clone(),
                    web: web.clone(),
                    builder: builder.clone(),
                    stop: shutdown.clone(),
                };
                connections.spawn(conn.serve());
            }
        }
    }

    drop(listener);
    tracing::debug!(
        connections = connections.len(),
        "HTTP server stopping; draining connections"
    );
    // Each connection saw `shutdown` too and is closing gracefully (GOAWAY on HTTP/2).
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_seconds = grace.as_secs_f64(),
            "connections still open after the grace period; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// When a connection last served a request, and how many it is serving.
struct Activity {
    limits: Limits,
    accepted: Instant,
    state: std::sync::Mutex<ActivityState>,
}

#[derive(Clone, Copy)]
struct ActivityState {
    in_flight: usize,
    /// When the last request in flight ended; `None` before the first request.
    idle_since: Option<Instant>,
}

impl Activity {
    fn new(limits: Limits) -> Activity {
        Activity {
            limits,
            accepted: Instant::now(),
            state: std::sync::Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // Two plain fields, each written whole: a poisoned lock still holds consistent values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request's headers arrived; it is in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.lock().in_flight += 1;
        InFlight(self.clone())
    }

    /// Returns once the connection has been without a request for longer than allowed.
    async fn idle_out(&self) {
        loop {
            let st = *self.lock();
            let deadline = match (st.in_flight, st.idle_since) {
                (0, None) => self.accepted + self.limits.first_request,
                (0, Some(since)) => since + self.limits.idle,
                // Busy: look again later.
                _ => Instant::now() + self.limits.idle,
            };
            if st.in_flight == 0 && Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request in flight: ends when dropped (with the response body).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        st.idle_since = Some(Instant::now());
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
    state: Arc<ServerState>,
    web: Option<Arc<WebConfigWatcher>>,
    builder: auto::Builder<TokioExecutor>,
    /// The server's shutdown: the connection closes gracefully when it is cancelled.
    stop: CancellationToken,
}

impl Connection {
    async fn serve(self) {
        let Connection {
            stream,
            peer,
            activity,
            state,
            web,
            builder,
            stop,
        } = self;
        let tls = match &web {
            Some(w) => w.current().await.tls.clone(),
            None => None,
        };
        let watched = activity.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let state = state.clone();
            let web = web.clone();
            let in_flight = watched.begin();
            async move {
                let resp = authorized(web.as_ref(), &state, req).await;
                Ok::<_, Infallible>(resp.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        });
        let result = match tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                drive(conn, |c| c.graceful_shutdown(), &stop, &activity, peer).await
            }
            Some(tls) => {
                // The handshake counts as part of the first request's wait.
                let stream = tokio::select! {
                    s = tls::handshake(stream, peer, tls, HEADER_READ_TIMEOUT) => s,
                    () = activity.idle_out() => None,
                    () = stop.cancelled() => None,
                };
                let Some(stream) = stream else {
                    return;
                };
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                drive(conn, |c| c.graceful_shutdown(), &stop, &activity, peer).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection closed with an error");
        }
    }
}

/// Serves `conn` until it ends. On the server's shutdown, or once the connection has been
/// without a request for longer than its [`Limits`] allow, it is closed gracefully with
/// `graceful_shutdown` (HTTP/2: a GOAWAY frame, so the client knows not to send more; HTTP/1:
/// closed after the response in progress). An idle connection gets [`IDLE_CLOSE_WAIT`] to
/// finish closing (a client that never completed its HTTP/2 preface cannot hold it); on
/// shutdown the server's grace period bounds it.
async fn drive<C, E>(
    conn: C,
    graceful_shutdown: impl Fn(std::pin::Pin<&mut C>),
    stop: &CancellationToken,
    activity: &Activity,
    peer: std::net::SocketAddr,
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut give_up: Option<Instant> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = stop.cancelled(), if !closing => {
                closing = true;
                graceful_shutdown(conn.as_mut());
            }
            () = activity.idle_out(), if !closing => {
                tracing::debug!(%peer, "closing a connection without requests");
                closing = true;
                give_up = Some(Instant::now() + IDLE_CLOSE_WAIT);
                graceful_shutdown(conn.as_mut());
            }
            () = sleep_until_some(give_up) => return Ok(()),
        }
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Checks the credentials the web config asks for, then routes the request.
async fn authorized<B>(
    web: Option<&Arc<WebConfigWatcher>>,
    state: &ServerState,
    req: Request<B>,
) -> Response<Body> {
    if let Some(w) = web {
        let auth = w.current().await.basic_auth.clone();
        if let Some(auth) = auth {
            match auth.authorize(req.headers()).await {
                auth::Verdict::Granted => {}
                auth::Verdict::Denied => return unauthorized(),
                auth::Verdict::Busy => return too_many_checks(),
            }
        }
    }
    handle(state, req).await
}

/// 401 for a request without valid credentials (exporter-toolkit's answer).
fn unauthorized() -> Response<Body> {
    let mut resp = text(StatusCode::UNAUTHORIZED, "Unauthorized");
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    resp
}

/// 429 when too many credential checks are running or waiting already.
fn too_many_checks() -> Response<Body> {
    let mut resp = text(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many authentication attempts in progress; try again",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Routes one request.
async fn handle<B>(state: &ServerState, req: Request<B>) -> Response<Body> {
    let method = req.method();
    let path = req.uri().path();
    let read_only = method == Method::GET || method == Method::HEAD;

    if path == state.telemetry_path {
        if !read_only {
            return not_allowed("GET, HEAD");
        }
        return metrics(state, req.headers()).await;
    }
    match path {
        "/" if read_only => status_page(state),
        "/-/healthy" if read_only => text(StatusCode::OK, "OK"),
        "/-/ready" if read_only => {
            if *state.ready.borrow() {
                text(StatusCode::OK, "OK")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Not ready")
            }
        }
        "/" | "/-/healthy" | "/-/ready" => not_allowed("GET, HEAD"),
        "/-/reload" if method == Method::POST => reload(state).await,
        "/-/reload" => not_allowed("POST"),
        // Say where things are: a mistyped path (`/metric`) is the usual reason.
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "Not found. Metrics: {}; status page: /; also /-/healthy, /-/ready and \
                 /-/reload (POST)",
                state.telemetry_path
            ),
        ),
    }
}

async fn metrics(state: &ServerState, headers: &HeaderMap) -> Response<Body> {
    let gzip = accepts_gzip(headers);
    // Usually the assembled snapshot is ready and the body only references it. Assembling a
    // changed snapshot is CPU work; keep it off the I/O threads. Either way the body streams
    // shared pieces without copying them.
    if let Some(body) = state.exposition.body_if_ready(gzip) {
        return metrics_response(body, gzip);
    }
    let exposition = state.exposition.clone();
    let body = match tokio::task::spawn_blocking(move || exposition.body(gzip)).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "rendering /metrics failed");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed",
            );
        }
    };
    metrics_response(body, gzip)
}

fn metrics_response(body: Body, gzip: bool) -> Response<Body> {
    let mut resp = response(StatusCode::OK, METRICS_CONTENT_TYPE, body);
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

fn status_page(state: &ServerState) -> Response<Body> {
    // The clone is cheap (results are shared) and keeps the store's lock short.
    let snapshot = state.store.read(Clone::clone);
    let now = time::OffsetDateTime::now_utc();
    let now = now.unix_timestamp() as f64 + f64::from(now.nanosecond()) / 1e9;
    let keys = state.exposition.render_options();
    let page = status::render_page(&snapshot, &state.telemetry_path, now, &keys);
    let mut resp = response(StatusCode::OK, HTML, Bytes::from(page));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(STATUS_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn reload(state: &ServerState) -> Response<Body> {
    let Some(tx) = &state.reload else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available",
        );
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let outcome = tokio::time::timeout(RELOAD_TIMEOUT, async {
        tx.send(reply_tx).await.ok()?;
        reply_rx.await.ok()
    })
    .await;
    match outcome {
        Ok(Some(Ok(()))) => text(StatusCode::OK, "config reloaded"),
        Ok(Some(Err(e))) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}"),
        ),
        Ok(None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available",
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "reload timed out"),
    }
}

/// Whether the `Accept-Encoding` headers allow gzip (RFC 9110 §12.5.3): an explicit `gzip` (or
/// `x-gzip`) entry decides by its q-value, else a `*` entry does; `q=0` or an unreadable q-value
/// means "not acceptable".
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip: Option<f32> = None;
    let mut any: Option<f32> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let mut q = 1.0_f32;
            for param in parts {
                if let Some((name, v)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(v.trim()).unwrap_or(0.0);
                    }
                }
            }
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding == "*" {
                    &mut any
                } else {
                    continue;
                };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// A q-value: `0`–`1` with up to three decimals.
fn parse_qvalue(s: &str) -> Option<f32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let valid = matches!(int, "0" | "1")
        && frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || frac.bytes().all(|b| b == b'0'));
    if valid {
        s.parse().ok()
    } else {
        None
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    body.push('\n');
    response(status, TEXT, Bytes::from(body))
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
mod tests;
