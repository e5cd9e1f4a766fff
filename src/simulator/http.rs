//! The simulator's HTTP side: the hyper server and the handling of each request. Routing
//! (`routes`), answers (`reply`), body faults (`faults`) and instance views (`views`) live
//! beside it.
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
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{self, Principal};
use super::faults::finish;
use super::offline;
use super::reply::{invalid, offline_refusal, refusal, Reply, SimBody};
use super::routes::{paging, parse_v2, query_get, query_pairs, Route, RouteError};
use super::state::{InstanceState, Refusal};
use super::views::{instance_json, list_instances};
use super::{Shared, World};
use crate::backoff::Backoff;
use crate::dcs::model::{Analysis, AutoscanConfigRequest, TaskList, TaskStatus};
use crate::dcs::offline::{
    BackupList, GroupList, NodeList, OfflineAnalysisRequest, OfflineTaskId, OfflineTaskList,
};

/// Largest request body accepted.
const MAX_REQUEST_BODY: usize = 1 << 20;
/// How long shutdown waits for open connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after failed `accept`s in a row (e.g. out of file descriptors): from 100 ms, doubling
/// up to 1 s, with jitter, as the exporter's own server does.
const ACCEPT_BACKOFF: Backoff = Backoff::fixed(
    Duration::from_millis(100),
    Duration::from_secs(1),
    Backoff::EQUAL_JITTER,
);

/// Serves until `shutdown` is cancelled, then drains connections for at most [`DRAIN_TIMEOUT`].
pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    let mut accept_failures = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    accept_failures = 0;
                    conn
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    let wait = ACCEPT_BACKOFF.delay(accept_failures, &mut rand::thread_rng());
                    accept_failures = accept_failures.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "simulator: accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => continue,
                    }
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
