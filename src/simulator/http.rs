//! The simulator's HTTP side: the hyper server, routing, validation, fault injection and bodies.
//!
//! Order of processing for each request, chosen to mirror the real service's layers (gateway,
//! then DCS):
//! 1. read the body (at most 1 MiB), find the instance in the path (for its faults);
//! 2. the `latency` fault, then the `throttle_rate` fault (429 `APIG.0308`, gateway level);
//! 3. `POST /v3/auth/tokens` is the simulated IAM; any other path outside `/v2/` is 404 DCS.4001;
//! 4. authentication (401 `APIG.0301`), then the project id of the path (401 DCS.1004 / 403
//!    DCS.2003);
//! 5. routing (404 DCS.4001 unknown path, 405 DCS.5001 wrong method);
//! 6. the `error_rate` fault (500 DCS.5000);
//! 7. the operation itself, then the body faults (malformed, truncated, huge).
//!
//! Every answer carries `X-Request-Id`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use percent_encoding::percent_decode_str;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{self, Principal};
use super::offline::{self, OfflineRefusal};
use super::state::{InstanceState, Refusal};
use super::{Shared, World};
use crate::dcs::model::{
    Analysis, AutoscanConfigRequest, ErrorBody, InstanceInfo, InstanceList, Operation, Tag,
    TaskList, TaskStatus,
};
use crate::dcs::offline::{
    BackupList, GroupList, NodeList, OfflineAnalysisRequest, OfflineTaskId, OfflineTaskList,
};
use crate::dcs::timestamp;

/// Largest request body accepted.
const MAX_REQUEST_BODY: usize = 1 << 20;
/// How long shutdown waits for open connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` is cancelled, then drains connections for at most [`DRAIN_TIMEOUT`].
pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "simulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let svc = service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(shared, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tracker.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "simulator: connection ended with an error");
            }
        });
    }
    drop(listener);
    tracker.close();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("simulator: connections still open after the drain timeout");
        }
    }
    Ok(())
}

/// Padding for the `huge_body_bytes` fault.
static PAD: [u8; 65536] = [b'x'; 65536];

/// Response bodies: whole, deliberately cut short, or padded and streamed.
pub enum SimBody {
    Full(Option<Bytes>),
    /// Sent with a Content-Length larger than these bytes.
    Truncated(Option<Bytes>),
    Padded {
        head: Option<Bytes>,
        remaining: usize,
        tail: Option<Bytes>,
    },
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            SimBody::Full(b) | SimBody::Truncated(b) => b.take(),
            SimBody::Padded {
                head,
                remaining,
                tail,
            } => {
                if let Some(h) = head.take() {
                    Some(h)
                } else if *remaining > 0 {
                    let n = (*remaining).min(PAD.len());
                    *remaining -= n;
                    Some(Bytes::from_static(&PAD[..n]))
                } else {
                    tail.take()
                }
            }
        };
        Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(b) | SimBody::Truncated(b) => b.is_none(),
            SimBody::Padded {
                head,
                remaining,
                tail,
            } => head.is_none() && *remaining == 0 && tail.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SimBody::Truncated(_) => SizeHint::default(),
            SimBody::Padded {
                head,
                remaining,
                tail,
            } => SizeHint::with_exact(
                head.as_ref().map_or(0, |b| b.len() as u64)
                    + *remaining as u64
                    + tail.as_ref().map_or(0, |b| b.len() as u64),
            ),
        }
    }
}

/// An answer before body faults and headers are applied.
struct Reply {
    status: u16,
    body: Bytes,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Reply {
            status,
            body: Bytes::from(body),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// A DCS error: `{"error_code","error_msg","error_ext_msg":null}`.
    fn dcs(status: u16, code: &str, msg: &str) -> Reply {
        Reply::json(
            status,
            &json!({"error_code": code, "error_msg": msg, "error_ext_msg": null}),
        )
    }

    /// An API gateway error: `{"error_code","error_msg","request_id"}`.
    fn apig(status: u16, code: &str, msg: &str, request_id: &str) -> Reply {
        Reply::json(
            status,
            &ErrorBody {
                error_code: Some(code.into()),
                error_msg: Some(msg.into()),
                error_ext_msg: None,
                request_id: Some(request_id.into()),
            },
        )
    }
}

fn invalid(param: &str) -> Reply {
    Reply::dcs(400, "DCS.4800", &format!("Invalid {param} in the request."))
}

fn refusal(r: Refusal, a: Analysis) -> Reply {
    match r {
        Refusal::HotkeyUnsupported => {
            Reply::dcs(400, "DCS.4922", "Does not support hotkey analyze.")
        }
        Refusal::AlreadyRunning => Reply::dcs(
            400,
            "DCS.4918",
            &format!("Instance {} analyze is running.", a.as_str()),
        ),
        Refusal::InstanceNotRunning => {
            Reply::dcs(400, "DCS.4049", "The instance status is not running.")
        }
        Refusal::TaskNotFound => match a {
            Analysis::Hotkey => {
                Reply::dcs(400, "DCS.4941", "The hotkey analysis task does not exist.")
            }
            Analysis::Bigkey => {
                Reply::dcs(400, "DCS.4942", "The bigkey analysis task does not exist.")
            }
            Analysis::Keyfamily => Reply::dcs(
                400,
                "DCS.4232",
                "The offline key analysis task does not exist.",
            ),
        },
        Refusal::TaskActive => Reply::dcs(
            400,
            "DCS.4957",
            "The operation is not allowed in the current task status.",
        ),
        Refusal::Invalid(p) => invalid(p),
    }
}

/// The DCS operations, parsed from method and path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    ListInstances,
    ShowInstance(String),
    ListTasks(String, Analysis),
    CreateTask(String, Analysis),
    ShowTask(String, Analysis, String),
    DeleteTask(String, Analysis, String),
    ShowAutoscan(String, Analysis),
    UpdateAutoscan(String, Analysis),
    Export(String, String),
    ListOffline(String),
    CreateOffline(String),
    ShowOffline(String, String),
    DeleteOffline(String, String),
    ListBackups(String),
    ShowNodes(String),
    ListGroups(String),
}

impl Route {
    fn operation(&self) -> &'static str {
        match self {
            Route::ListInstances => "ListInstances",
            Route::ShowInstance(_) => "ShowInstance",
            Route::ListTasks(_, a) => a.operation(Operation::ListTasks),
            Route::CreateTask(_, a) => a.operation(Operation::CreateTask),
            Route::ShowTask(_, a, _) => a.operation(Operation::ShowTask),
            Route::DeleteTask(_, a, _) => a.operation(Operation::DeleteTask),
            Route::ShowAutoscan(_, a) => a.operation(Operation::ShowAutoscan),
            Route::UpdateAutoscan(_, a) => a.operation(Operation::UpdateAutoscan),
            Route::Export(..) => "DownloadHotKey",
            Route::ListOffline(_) => Analysis::Keyfamily.operation(Operation::ListTasks),
            Route::CreateOffline(_) => Analysis::Keyfamily.operation(Operation::CreateTask),
            Route::ShowOffline(..) => Analysis::Keyfamily.operation(Operation::ShowTask),
            Route::DeleteOffline(..) => Analysis::Keyfamily.operation(Operation::DeleteTask),
            Route::ListBackups(_) => crate::dcs::offline::OP_LIST_BACKUPS,
            Route::ShowNodes(_) => crate::dcs::offline::OP_SHOW_NODES,
            Route::ListGroups(_) => crate::dcs::offline::OP_LIST_GROUPS,
        }
    }

    fn instance_id(&self) -> Option<&str> {
        match self {
            Route::ListInstances => None,
            Route::ShowInstance(i)
            | Route::ListTasks(i, _)
            | Route::CreateTask(i, _)
            | Route::ShowTask(i, _, _)
            | Route::DeleteTask(i, _, _)
            | Route::ShowAutoscan(i, _)
            | Route::UpdateAutoscan(i, _)
            | Route::Export(i, _)
            | Route::ListOffline(i)
            | Route::CreateOffline(i)
            | Route::ShowOffline(i, _)
            | Route::DeleteOffline(i, _)
            | Route::ListBackups(i)
            | Route::ShowNodes(i)
            | Route::ListGroups(i) => Some(i),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RouteError {
    NotFound,
    MethodNotAllowed,
}

/// A parsed `/v2/{project}/instances/...` path.
#[derive(Debug)]
struct V2Path {
    project: String,
    route: Result<Route, RouteError>,
}

fn analysis_of(seg: &str, hot: &str, big: &str) -> Option<Analysis> {
    if seg == hot {
        Some(Analysis::Hotkey)
    } else if seg == big {
        Some(Analysis::Bigkey)
    } else {
        None
    }
}

/// Parses a `/v2/...` path; `None` if it is not one.
fn parse_v2(method: &str, path: &str) -> Option<V2Path> {
    let rest = path.strip_prefix("/v2/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let project = segs.first().cloned().unwrap_or_default();
    // ListGroupReplicationInfo lives under the singular `instance`.
    if segs.len() == 4 && segs[1] == "instance" && segs[3] == "groups" && !segs[2].is_empty() {
        let route = match method {
            "GET" => Ok(Route::ListGroups(segs[2].clone())),
            _ => Err(RouteError::MethodNotAllowed),
        };
        return Some(V2Path { project, route });
    }
    if segs.len() < 2 || segs[1] != "instances" || segs.iter().any(String::is_empty) {
        return Some(V2Path {
            project,
            route: Err(RouteError::NotFound),
        });
    }
    let s: Vec<&str> = segs[2..].iter().map(String::as_str).collect();
    use Route::*;
    let (route, allowed): (Option<Route>, &[&str]) = match s.as_slice() {
        [] => (Some(ListInstances), &["GET"]),
        [id] => (Some(ShowInstance(id.to_string())), &["GET"]),
        [id, seg] => {
            if let Some(a) = analysis_of(seg, "hotkey-tasks", "bigkey-tasks") {
                (Some(ListTasks(id.to_string(), a)), &["GET"])
            } else if let Some(a) = analysis_of(seg, "hotkey-task", "bigkey-task") {
                (Some(CreateTask(id.to_string(), a)), &["POST"])
            } else if *seg == "backups" {
                (Some(ListBackups(id.to_string())), &["GET"])
            } else if *seg == "logical-nodes" {
                (Some(ShowNodes(id.to_string())), &["GET"])
            } else {
                (None, &[])
            }
        }
        [id, "offline", "key-analysis"] if method == "POST" => {
            (Some(CreateOffline(id.to_string())), &["POST"])
        }
        [id, "offline", "key-analysis"] => (Some(ListOffline(id.to_string())), &["GET", "POST"]),
        [id, seg, tid] => match analysis_of(seg, "hotkey-task", "bigkey-task") {
            Some(a) if method == "DELETE" => (
                Some(DeleteTask(id.to_string(), a, tid.to_string())),
                &["DELETE"],
            ),
            Some(a) => (
                Some(ShowTask(id.to_string(), a, tid.to_string())),
                &["GET", "DELETE"],
            ),
            None => match analysis_of(seg, "hotkey", "bigkey") {
                Some(a) if *tid == "autoscan" && method == "PUT" => {
                    (Some(UpdateAutoscan(id.to_string(), a)), &["PUT"])
                }
                Some(a) if *tid == "autoscan" => {
                    (Some(ShowAutoscan(id.to_string(), a)), &["GET", "PUT"])
                }
                _ => (None, &[]),
            },
        },
        [id, "hotkey", tid, "export"] => (Some(Export(id.to_string(), tid.to_string())), &["POST"]),
        [id, "offline", "key-analysis", tid] if method == "DELETE" => (
            Some(DeleteOffline(id.to_string(), tid.to_string())),
            &["DELETE"],
        ),
        [id, "offline", "key-analysis", tid] => (
            Some(ShowOffline(id.to_string(), tid.to_string())),
            &["GET", "DELETE"],
        ),
        _ => (None, &[]),
    };
    let route = match route {
        None => Err(RouteError::NotFound),
        Some(_) if !allowed.contains(&method) => Err(RouteError::MethodNotAllowed),
        Some(r) => Ok(r),
    };
    Some(V2Path { project, route })
}

/// Decoded query pairs (`%XX` and `+` decoded).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `offset` (≥ 0, default 0) and `limit` (1–1000, default 10).
fn paging(pairs: &[(String, String)]) -> Result<(usize, usize), Reply> {
    let offset = match query_get(pairs, "offset") {
        None => 0,
        Some(v) => v.trim().parse::<usize>().map_err(|_| invalid("offset"))?,
    };
    let limit = match query_get(pairs, "limit") {
        None => 10,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(l) if (1..=1000).contains(&l) => l,
            _ => return Err(invalid("limit")),
        },
    };
    Ok((offset, limit))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let r = invalid("body");
            return finish(r, &request_id, None);
        }
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // HTTP/2 carries the host in the :authority pseudo-header.
    if !headers.iter().any(|(k, _)| k == "host") {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".into(), a.as_str().to_owned()));
        }
    }
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let v2 = parse_v2(&method, &path);
    let instance_idx = {
        let w = shared.world();
        v2.as_ref()
            .and_then(|p| p.route.as_ref().ok())
            .and_then(Route::instance_id)
            .and_then(|id| w.index.get(id).copied())
    };
    let faults = shared.world().faults_for(instance_idx);

    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.throttle_rate > 0.0 && shared.world().rng.gen::<f64>() < faults.throttle_rate {
        let r = Reply::apig(
            429,
            "APIG.0308",
            "The throttling threshold has been reached: policy user over ratelimit,limit:100,time:1 minute",
            &request_id,
        );
        return finish(r, &request_id, None);
    }

    let Some(v2) = v2 else {
        if path == "/v3/auth/tokens" {
            return finish(iam(&shared, &method, &body), &request_id, None);
        }
        return finish(
            Reply::dcs(404, "DCS.4001", "The URL does not exist."),
            &request_id,
            None,
        );
    };

    let received = crate::dcs::signer::SignableRequest {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body: &body,
    };
    let principal = match auth::authenticate(&shared, &received, faults.clock_skew) {
        Ok(p) => p,
        Err(msg) => {
            return finish(
                Reply::apig(401, "APIG.0301", &msg, &request_id),
                &request_id,
                None,
            );
        }
    };
    if v2.project != shared.project_id {
        let r = match principal {
            Principal::Token { .. }
            | Principal::AkSk {
                project_header: Some(_),
            } => Reply::dcs(401, "DCS.1004", "The project ID does not match the token."),
            Principal::AkSk {
                project_header: None,
            } => Reply::dcs(
                403,
                "DCS.2003",
                "The role does not have the permission to call this API.",
            ),
        };
        return finish(r, &request_id, None);
    }
    if let Principal::AkSk {
        project_header: Some(p),
    } = &principal
    {
        if p != &shared.project_id {
            let r = Reply::dcs(401, "DCS.1004", "The project ID does not match the token.");
            return finish(r, &request_id, None);
        }
    }
    let route = match v2.route {
        Ok(r) => r,
        Err(RouteError::NotFound) => {
            return finish(
                Reply::dcs(404, "DCS.4001", "The URL does not exist."),
                &request_id,
                None,
            )
        }
        Err(RouteError::MethodNotAllowed) => {
            return finish(
                Reply::dcs(405, "DCS.5001", "Method not allowed."),
                &request_id,
                None,
            )
        }
    };
    {
        let mut w = shared.world();
        *w.op_counts.entry(route.operation()).or_insert(0) += 1;
        if faults.error_rate > 0.0 && w.rng.gen::<f64>() < faults.error_rate {
            drop(w);
            return finish(
                Reply::dcs(500, "DCS.5000", "Internal service error."),
                &request_id,
                None,
            );
        }
    }
    let creates = matches!(route, Route::CreateTask(..));
    let reply = execute(&shared, route, &query, &body);
    if creates && faults.lose_create_answers && (200..300).contains(&reply.status) {
        // The task exists now; only its answer is lost.
        let lost = Reply {
            status: 502,
            body: Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
            content_type: "text/html",
            headers: Vec::new(),
        };
        return finish(lost, &request_id, None);
    }
    finish(reply, &request_id, Some(&faults))
}

/// The simulated IAM.
fn iam(shared: &Shared, method: &str, body: &[u8]) -> Reply {
    let Some(iam) = shared.iam.as_ref() else {
        return Reply::dcs(404, "DCS.4001", "The URL does not exist.");
    };
    if method != "POST" {
        return Reply::dcs(405, "DCS.5001", "Method not allowed.");
    }
    {
        let mut w = shared.world();
        *w.op_counts
            .entry("KeystoneCreateUserTokenByPassword")
            .or_insert(0) += 1;
    }
    let answer = auth::issue_token(shared, iam, body);
    let mut r = Reply::json(answer.status, &answer.body);
    if let Some(t) = answer.token {
        r.headers.push(("x-subject-token", t));
    }
    r
}

/// Builds the response: headers, then the body faults when `faults` is given.
fn finish(reply: Reply, request_id: &str, faults: Option<&super::Faults>) -> Response<SimBody> {
    let mut builder = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("x-request-id", request_id);
    for (k, v) in &reply.headers {
        builder = builder.header(*k, v.as_str());
    }
    let mut body = SimBody::Full(Some(reply.body.clone()));
    if let Some(f) = faults {
        if f.malformed_body {
            body = SimBody::Full(Some(Bytes::from_static(
                b"{\"id\": \"3f1c\", \"status\": <html>502 Bad Gateway</html>",
            )));
        } else if f.truncated_body && reply.body.len() > 1 {
            let full = reply.body.len();
            builder = builder.header("content-length", full.to_string());
            body = SimBody::Truncated(Some(reply.body.slice(..full / 2)));
        } else if let Some(n) = f.huge_body_bytes {
            if reply.body.first() == Some(&b'{') && n > reply.body.len() {
                let head = Bytes::from_static(b"{\"padding\":\"");
                let rest = reply.body.slice(1..);
                let tail = if rest.as_ref() == b"}" {
                    Bytes::from_static(b"\"}")
                } else {
                    let mut t = b"\",".to_vec();
                    t.extend_from_slice(&rest);
                    Bytes::from(t)
                };
                let remaining = n.saturating_sub(head.len() + tail.len()).max(1);
                body = SimBody::Padded {
                    head: Some(head),
                    remaining,
                    tail: Some(tail),
                };
            }
        }
    }
    builder.body(body).unwrap_or_else(|_| {
        // Only an invalid header value can fail here; none of ours is.
        let mut r = Response::new(SimBody::Full(Some(Bytes::from_static(b"{}"))));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// Runs one authenticated, routed operation against the world.
fn execute(shared: &Shared, route: Route, query: &str, body: &[u8]) -> Reply {
    let now = shared.clock.now();
    let scale = shared.time_scale;
    let pairs = query_pairs(query);
    let mut w = shared.world();
    if route == Route::ListInstances {
        return list_instances(&mut w, &pairs, now, scale);
    }
    let Some(id) = route.instance_id() else {
        return Reply::dcs(404, "DCS.4001", "The URL does not exist.");
    };
    let Some(&i) = w.index.get(id) else {
        return Reply::dcs(404, "DCS.3022", "The instance does not exist.");
    };
    w.touch(i, now, scale);
    let faults = w.faults_for(Some(i));
    let World { instances, rng, .. } = &mut *w;
    let inst = &mut instances[i];
    match route {
        Route::ListInstances => Reply::dcs(404, "DCS.4001", "The URL does not exist."),
        Route::ShowInstance(_) => Reply::json(200, &instance_json(inst, true)),
        Route::ListTasks(_, a) => {
            let (offset, limit) = match paging(&pairs) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let status = match query_get(&pairs, "status") {
                None | Some("") => None,
                Some(s) => match TaskStatus::from(s) {
                    TaskStatus::Other(_) => return invalid("status"),
                    st => Some(st),
                },
            };
            let (count, records) = inst.list(a, status.as_ref(), offset, limit, now);
            Reply::json(
                200,
                &TaskList {
                    instance_id: Some(inst.info.id.clone()),
                    count: Some(count as i64),
                    records,
                },
            )
        }
        Route::CreateTask(_, a) => match inst.create_manual(a, now, rng, &faults, scale) {
            Ok(rec) => Reply::json(200, &rec),
            Err(r) => refusal(r, a),
        },
        Route::ShowTask(_, a, tid) => match inst.show(a, &tid, now) {
            Ok(rec) => Reply::json(200, &rec),
            Err(r) => refusal(r, a),
        },
        Route::DeleteTask(_, a, tid) => match inst.delete(a, &tid, now) {
            Ok(rec) => Reply::json(200, &rec),
            Err(r) => refusal(r, a),
        },
        Route::ShowAutoscan(_, a) => Reply::json(200, &inst.autoscan_config(a)),
        Route::UpdateAutoscan(_, a) => {
            let Ok(req) = serde_json::from_slice::<AutoscanConfigRequest>(body) else {
                return invalid("body");
            };
            match inst.update_autoscan(a, req.enable_auto_scan, &req.schedule_at, now) {
                Ok(cfg) => Reply::json(200, &cfg),
                Err(r) => refusal(r, a),
            }
        }
        Route::Export(_, tid) => export(inst, &tid, now),
        Route::ListOffline(_) => {
            let (offset, limit) = match paging(&pairs) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let status = match query_get(&pairs, "status") {
                None | Some("") => None,
                Some(s) => match TaskStatus::from(s) {
                    TaskStatus::Other(_) => return invalid("status"),
                    st => Some(st),
                },
            };
            let (total, records) = inst.offline.list(status.as_ref(), offset, limit, now);
            Reply::json(
                200,
                &OfflineTaskList {
                    instance_id: Some(inst.info.id.clone()),
                    total: Some(total as i64),
                    records,
                },
            )
        }
        Route::CreateOffline(_) => {
            let Ok(req) = serde_json::from_slice::<OfflineAnalysisRequest>(body) else {
                return invalid("body");
            };
            let keyspace = inst.keyspace().clone();
            match inst.offline.create(
                &inst.info,
                &keyspace,
                &req.node_id,
                req.backup_id.as_deref(),
                now,
                rng,
                scale,
            ) {
                Ok(task_id) => Reply::json(200, &OfflineTaskId { task_id }),
                Err(r) => offline_refusal(r),
            }
        }
        Route::ShowOffline(_, tid) => {
            match inst.offline.show(&inst.info, inst.keyspace(), &tid, now) {
                Ok(d) => Reply::json(200, &d),
                Err(r) => offline_refusal(r),
            }
        }
        Route::DeleteOffline(_, tid) => match inst.offline.delete(&tid, now) {
            Ok(task_id) => Reply::json(200, &OfflineTaskId { task_id }),
            Err(r) => offline_refusal(r),
        },
        Route::ListBackups(_) => {
            let (offset, limit) = match paging(&pairs) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let mut bounds = [None, None];
            for (slot, name) in bounds.iter_mut().zip(["begin_time", "end_time"]) {
                match query_get(&pairs, name) {
                    None | Some("") => {}
                    Some(v) => match parse_compact_time(v) {
                        Some(t) => *slot = Some(t),
                        None => return invalid(name),
                    },
                }
            }
            let all = inst
                .offline
                .backup_records(&inst.info, now, bounds[0], bounds[1]);
            Reply::json(
                200,
                &BackupList {
                    total_num: Some(all.len() as i64),
                    backup_record_response: all.into_iter().skip(offset).take(limit).collect(),
                },
            )
        }
        Route::ShowNodes(_) => {
            let nodes = offline::node_list(&inst.info, inst.keyspace());
            Reply::json(
                200,
                &NodeList {
                    instance_id: Some(inst.info.id.clone()),
                    total: Some(nodes.len() as i64),
                    nodes,
                },
            )
        }
        Route::ListGroups(_) => {
            let groups = offline::group_list(&inst.info, inst.keyspace());
            Reply::json(
                200,
                &GroupList {
                    group_count: Some(groups.len() as i64),
                    group_list: groups,
                },
            )
        }
    }
}

/// A `ListBackupRecords` time bound: UTC `yyyyMMddHHmmss`.
fn parse_compact_time(v: &str) -> Option<time::OffsetDateTime> {
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
    time::PrimitiveDateTime::parse(v, fmt)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

fn offline_refusal(r: OfflineRefusal) -> Reply {
    match r {
        OfflineRefusal::Running => {
            Reply::dcs(400, "DCS.4231", "The offline key analysis is running.")
        }
        OfflineRefusal::NotFound => refusal(Refusal::TaskNotFound, Analysis::Keyfamily),
        OfflineRefusal::Other(r) => refusal(r, Analysis::Keyfamily),
    }
}

/// `DownloadHotKey`: the keys of a successful hot key task as CSV.
fn export(inst: &mut InstanceState, task_id: &str, now: time::OffsetDateTime) -> Reply {
    let rec = match inst.show(Analysis::Hotkey, task_id, now) {
        Ok(r) => r,
        Err(r) => return refusal(r, Analysis::Hotkey),
    };
    if rec.status != TaskStatus::Success {
        return refusal(Refusal::TaskActive, Analysis::Hotkey);
    }
    let mut csv = String::from("name,type,db,shard,size,unit,freq\n");
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for k in rec.keys.unwrap_or_default() {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            quote(&k.name),
            k.key_type.map(|t| t.to_string()).unwrap_or_default(),
            k.db.unwrap_or(0),
            k.shard.unwrap_or_default(),
            k.size.unwrap_or(0),
            k.unit.map(|u| u.to_string()).unwrap_or_default(),
            k.freq.unwrap_or(0)
        ));
    }
    Reply {
        status: 200,
        body: Bytes::from(csv),
        content_type: "application/octet-stream",
        headers: vec![(
            "content-disposition",
            format!("attachment; filename=\"hotkey-{task_id}.csv\""),
        )],
    }
}

fn list_instances(
    w: &mut World,
    pairs: &[(String, String)],
    now: time::OffsetDateTime,
    scale: f64,
) -> Reply {
    let (offset, limit) = match paging(pairs) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let exact_name = query_get(pairs, "name_equal") == Some("true");
    let include_failure = query_get(pairs, "include_failure") != Some("false");
    let wanted_tags: Vec<(String, String)> = query_get(pairs, "tags")
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (t.trim().to_owned(), String::new()),
        })
        .collect();
    let mut matching = Vec::new();
    for i in 0..w.instances.len() {
        w.touch(i, now, scale);
        let inst = &w.instances[i];
        let info = &inst.info;
        let keep = query_get(pairs, "instance_id").is_none_or(|v| v.is_empty() || v == info.id)
            && query_get(pairs, "name").is_none_or(|v| {
                v.is_empty()
                    || if exact_name {
                        info.name == v
                    } else {
                        info.name.contains(v)
                    }
            })
            && query_get(pairs, "status").is_none_or(|v| v.is_empty() || info.status == v)
            && (include_failure || info.status != "CREATEFAILED")
            && query_get(pairs, "ip")
                .is_none_or(|v| v.is_empty() || instance_ips(inst).join(",").contains(v))
            && wanted_tags.iter().all(|(k, v)| {
                info.tags
                    .iter()
                    .any(|(tk, tv)| tk == k && (v.is_empty() || tv == v))
            });
        if keep {
            matching.push(i);
        }
    }
    let instances: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&i| instance_json(&w.instances[i], false))
        .collect();
    let body = InstanceList {
        instance_num: Some(matching.len() as i64),
        instances: Vec::new(),
    };
    let mut v = serde_json::to_value(&body).unwrap_or_else(|_| json!({}));
    v["instances"] = Value::Array(instances);
    Reply::json(200, &v)
}

/// The node addresses of an instance: one per shard on clusters (matching the `shard` field of
/// its keys), one otherwise.
fn instance_ips(inst: &InstanceState) -> Vec<String> {
    let octet = (super::keyspace::stable_hash(&inst.info.id) % 200) as u8 + 20;
    if inst.info.cache_mode == "cluster" {
        // Cluster keys report their own shard addresses; the instance lists its entry nodes.
        (0..inst.info.shards.max(1))
            .map(|s| format!("192.168.{octet}.{}", 10 + s))
            .collect()
    } else {
        vec![format!("192.168.{octet}.10")]
    }
}

/// An instance as `ListInstances` (`detailed = false`) or `ShowInstance` shows it: the fields of
/// [`InstanceInfo`] plus the other fields of the SDK types, with the SDK's JSON types.
fn instance_json(inst: &InstanceState, detailed: bool) -> Value {
    let info = &inst.info;
    let capacity_gb = info.capacity_mb / 1024;
    let used_mb = ((info.key_count as f64 * 180.0) / (1024.0 * 1024.0)).round() as i64 + 2;
    let used_mb = used_mb.min((info.capacity_mb as f64 * 0.92) as i64);
    let model = InstanceInfo {
        instance_id: info.id.clone(),
        name: info.name.clone(),
        engine: Some(info.engine.clone()),
        engine_version: Some(info.engine_version.clone()),
        status: Some(info.status.clone()),
        spec_code: Some(info.spec_code.clone()),
        cache_mode: Some(info.cache_mode.clone()),
        capacity: Some(capacity_gb as i64),
        max_memory: Some((info.capacity_mb as f64 * 0.8) as i64),
        used_memory: Some(used_mb),
        sharding_count: Some(if info.cache_mode == "cluster" {
            i64::from(info.shards.max(1))
        } else {
            1
        }),
        tags: info
            .tags
            .iter()
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    };
    let mut v = serde_json::to_value(&model).unwrap_or_else(|_| json!({}));
    let created = timestamp::format(info.created_at);
    let capacity_minor = if info.capacity_mb < 1024 {
        format!(".{:03}", info.capacity_mb * 1000 / 1024)
            .trim_end_matches('0')
            .to_owned()
    } else {
        String::new()
    };
    let short = info.id.split('-').next().unwrap_or(&info.id).to_owned();
    let domain = format!("redis-{short}.dcs.huaweicloud.com");
    let extras = json!({
        "capacity_minor": capacity_minor,
        "ip": instance_ips(inst).join(","),
        "port": 6379,
        "domain_name": domain,
        "readonly_domain_name": if info.cache_mode == "ha" { format!("readonly-{domain}") } else { String::new() },
        "charging_mode": 0,
        "created_at": created,
        "az_codes": ["cn-north-4a", "cn-north-4b"],
        "enterprise_project_id": "0",
        "description": "",
        "cpu_type": "x86_64",
        "sub_status": "",
        "features": {"support_acl": true, "support_transparent_client_ip": true,
                     "support_ssl": info.engine_version.as_str() >= "6.0", "support_audit_log": false},
        "enable_ssl": false,
        "service_upgrade": false,
        "enable_publicip": false,
        "no_password_access": "false",
        "access_user": "",
        "vpc_id": "2b8c6a4e-1f3d-4c5b-9a7e-0d1c2b3a4f5e",
        "vpc_name": "vpc-default",
        "subnet_id": "7d6c5b4a-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
        "security_group_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "maintain_begin": "18:00:00",
        "maintain_end": "22:00:00",
        "user_id": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
        "user_name": "simulator-user",
        "order_id": "",
        "publicip_id": "",
        "publicip_address": "",
        "service_task_id": "",
    });
    if let (Some(obj), Value::Object(ex)) = (v.as_object_mut(), extras) {
        obj.extend(ex);
        if detailed {
            let more = json!({
                "update_at": created,
                "available_zones": ["ae04cf9d61544df3806a3feeb401b204"],
                "db_number": if info.cache_mode == "cluster" { 1 } else { 256 },
                "replica_count": if info.cache_mode == "single" { 1 } else { 2 },
                "product_type": "generic",
                "storage_type": "DRAM",
                "launched_at": created,
                "enterprise_project_name": "default",
                "transparent_client_ip_enable": false,
                "support_slow_log_flag": "true",
                "subnet_name": "subnet-default",
                "subnet_cidr": "192.168.0.0/16",
                "security_group_name": "default",
                "backend_addrs": "",
                "cloud_service_type_code": "hws.service.type.dcs",
                "cloud_resource_type_code": "hws.resource.type.dcs3",
                "inquery_spec_code": info.spec_code,
            });
            if let Value::Object(m) = more {
                obj.extend(m);
            }
        } else {
            obj.remove("cache_mode");
            obj.remove("sharding_count");
            obj.insert("updated_at".into(), Value::String(created));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Result<Route, RouteError> {
        parse_v2(method, path).map_or(Err(RouteError::NotFound), |p| p.route)
    }

    #[test]
    fn routes_follow_the_documented_paths() {
        let p = "/v2/p/instances";
        assert_eq!(route("GET", p), Ok(Route::ListInstances));
        assert_eq!(
            route("GET", &format!("{p}/i")),
            Ok(Route::ShowInstance("i".into()))
        );
        assert_eq!(
            route("GET", &format!("{p}/i/hotkey-tasks")),
            Ok(Route::ListTasks("i".into(), Analysis::Hotkey))
        );
        assert_eq!(
            route("POST", &format!("{p}/i/bigkey-task")),
            Ok(Route::CreateTask("i".into(), Analysis::Bigkey))
        );
        assert_eq!(
            route("GET", &format!("{p}/i/bigkey-task/t")),
            Ok(Route::ShowTask("i".into(), Analysis::Bigkey, "t".into()))
        );
        assert_eq!(
            route("DELETE", &format!("{p}/i/hotkey-task/t")),
            Ok(Route::DeleteTask("i".into(), Analysis::Hotkey, "t".into()))
        );
        assert_eq!(
            route("PUT", &format!("{p}/i/hotkey/autoscan")),
            Ok(Route::UpdateAutoscan("i".into(), Analysis::Hotkey))
        );
        assert_eq!(
            route("GET", &format!("{p}/i/bigkey/autoscan")),
            Ok(Route::ShowAutoscan("i".into(), Analysis::Bigkey))
        );
        assert_eq!(
            route("POST", &format!("{p}/i/hotkey/t/export")),
            Ok(Route::Export("i".into(), "t".into()))
        );
        assert_eq!(
            route("POST", &format!("{p}/i/hotkey-tasks")),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", &format!("{p}/i/hotkey-task")),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", &format!("{p}/i/nothing")),
            Err(RouteError::NotFound)
        );
        assert_eq!(route("GET", "/v2/p/clusters"), Err(RouteError::NotFound));
        assert!(parse_v2("GET", "/v3/x").is_none());
    }

    #[test]
    fn paging_defaults_and_limits() {
        let q = |s: &str| paging(&query_pairs(s)).map_err(|r| r.status);
        assert_eq!(q(""), Ok((0, 10)));
        assert_eq!(q("offset=5&limit=1000"), Ok((5, 1000)));
        assert_eq!(q("limit=0"), Err(400));
        assert_eq!(q("limit=1001"), Err(400));
        assert_eq!(q("offset=-1"), Err(400));
        assert_eq!(q("limit=abc"), Err(400));
    }
}
