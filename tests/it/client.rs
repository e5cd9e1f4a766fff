//! Tests of the DCS client against a scripted hyper mock on 127.0.0.1:0: paths, signatures,
//! retries and backoff, the body cap, error mapping, metrics and IAM token handling.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use dcs_key_exporter::dcs::ApiMetrics;
use dcs_key_exporter::dcs::{
    signer, Analysis, ApiCode, Auth, AutoscanConfigRequest, ClientConfig, DcsApi, DcsClient, Error,
    InstanceListQuery, TaskListQuery, TaskStatus,
};
use dcs_key_exporter::secret::Secret;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const INSTANCE: &str = "5560df16-cebf-4473-95c4-d1b573c16e79";
const AK: &str = "AKTESTEXAMPLE0000000";
const SK: &str = "SKtestExampleSecretKey0000000000000000000";
const SECURITY_TOKEN: &str = "temporary-security-token-value";
const PASSWORD: &str = "correct-horse-battery-staple";

/// A request as the mock received it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What the mock answers.
enum Reply {
    Status(u16, Vec<(&'static str, String)>, String),
    /// The body in several chunks, without Content-Length.
    Chunked(u16, Vec<Vec<u8>>),
    /// Close the connection without answering.
    Drop,
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

fn json(status: u16, body: &str) -> Reply {
    Reply::Status(status, Vec::new(), body.to_owned())
}

type Handler = Arc<dyn Fn(usize, &Recorded) -> Reply + Send + Sync>;

struct Mock {
    base: String,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Mock {
    async fn start(handler: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Mock {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log2.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move { serve(req, handler, log).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Mock {
            base: format!("http://{addr}"),
            log,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

type MockError = std::io::Error;

fn io_err(e: impl std::fmt::Display) -> MockError {
    std::io::Error::other(e.to_string())
}

async fn serve(
    req: hyper::Request<hyper::body::Incoming>,
    handler: Handler,
    log: Arc<Mutex<Vec<Recorded>>>,
) -> Result<hyper::Response<BoxBody<Bytes, Infallible>>, MockError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io_err)?.to_bytes().to_vec();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body,
    };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(recorded.clone());
        log.len() - 1
    };
    let mut reply = handler(n, &recorded);
    loop {
        match reply {
            Reply::Delay(d, next) => {
                tokio::time::sleep(d).await;
                reply = *next;
            }
            Reply::Drop => return Err(io_err("dropped on purpose")),
            Reply::Status(status, headers, body) => {
                let mut resp = hyper::Response::builder()
                    .status(status)
                    .header("content-type", "application/json");
                for (k, v) in headers {
                    resp = resp.header(k, v);
                }
                return resp
                    .body(Full::new(Bytes::from(body)).boxed())
                    .map_err(io_err);
            }
            Reply::Chunked(status, chunks) => {
                let frames = chunks
                    .into_iter()
                    .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
                let body = StreamBody::new(futures_util::stream::iter(frames));
                return hyper::Response::builder()
                    .status(status)
                    .body(BodyExt::boxed(body))
                    .map_err(io_err);
            }
        }
    }
}

fn aksk(security_token: Option<&str>) -> Auth {
    Auth::AkSk {
        access_key: AK.into(),
        secret_key: Secret::new(SK),
        security_token: security_token.map(Secret::new),
    }
}

fn config(base: &str, auth: Auth) -> ClientConfig {
    let mut c = ClientConfig::new(url::Url::parse(base).unwrap(), PROJECT, auth);
    c.request_timeout = Duration::from_secs(5);
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(5);
    c.max_retries = 3;
    c
}

fn client(mock: &Mock) -> DcsClient {
    DcsClient::new(config(&mock.base, aksk(None)), None).unwrap()
}

const TASK: &str = r#"{"id":"t1","instance_id":"5560df16-cebf-4473-95c4-d1b573c16e79","status":"success",
    "scan_type":"manual","created_at":"2020-06-15T02:21:18.669Z","num":1,
    "keys":[{"name":"k","type":"string","shard":"192.168.1.134:6379","db":0,"size":3000,"unit":"byte","freq":4}]}"#;
const LIST: &str = r#"{"instance_id":"5560df16-cebf-4473-95c4-d1b573c16e79","count":1,
    "records":[{"id":"t1","status":"running","scan_type":"auto","created_at":"2020-06-15T02:21:18.669Z"}]}"#;
const AUTOSCAN: &str = r#"{"instance_id":"5560df16-cebf-4473-95c4-d1b573c16e79","enable_auto_scan":true,
    "schedule_at":["21:00"],"updated_at":"2020-06-17T02:42:40.793Z"}"#;
const INSTANCE_JSON: &str = r#"{"instance_id":"5560df16-cebf-4473-95c4-d1b573c16e79","name":"dcs-a",
    "engine":"Redis","engine_version":"5.0","status":"RUNNING"}"#;

/// A plausible answer for each documented path.
fn plausible(r: &Recorded) -> Reply {
    let p = r.path.as_str();
    if p.ends_with("-tasks") {
        json(200, LIST)
    } else if p.ends_with("/autoscan") {
        json(200, AUTOSCAN)
    } else if p.ends_with("/instances") {
        json(
            200,
            &format!(r#"{{"instance_num":1,"instances":[{INSTANCE_JSON}]}}"#),
        )
    } else if p.contains("-task") {
        json(200, TASK)
    } else {
        json(200, INSTANCE_JSON)
    }
}

async fn call_every_operation(c: &DcsClient) {
    let q = TaskListQuery {
        offset: Some(0),
        limit: Some(10),
        status: Some(TaskStatus::Success),
    };
    let l = c.list_tasks(INSTANCE, Analysis::Hotkey, &q).await.unwrap();
    assert_eq!(l.records[0].status, TaskStatus::Running);
    c.list_tasks(INSTANCE, Analysis::Bigkey, &TaskListQuery::default())
        .await
        .unwrap();
    let t = c.create_task(INSTANCE, Analysis::Hotkey).await.unwrap();
    assert_eq!(t.id, "t1");
    c.create_task(INSTANCE, Analysis::Bigkey).await.unwrap();
    let t = c.show_task(INSTANCE, Analysis::Hotkey, "t1").await.unwrap();
    assert_eq!(t.key_count(), 1);
    c.show_task(INSTANCE, Analysis::Bigkey, "a b/c")
        .await
        .unwrap();
    assert!(c
        .delete_task(INSTANCE, Analysis::Hotkey, "t1")
        .await
        .unwrap()
        .is_some());
    c.delete_task(INSTANCE, Analysis::Bigkey, "t2")
        .await
        .unwrap();
    let a = c.show_autoscan(INSTANCE, Analysis::Hotkey).await.unwrap();
    assert_eq!(a.schedule_at, vec!["21:00".to_owned()]);
    c.show_autoscan(INSTANCE, Analysis::Bigkey).await.unwrap();
    let req = AutoscanConfigRequest {
        enable_auto_scan: true,
        schedule_at: vec!["21:00".into()],
    };
    c.update_autoscan(INSTANCE, Analysis::Hotkey, &req)
        .await
        .unwrap();
    c.update_autoscan(INSTANCE, Analysis::Bigkey, &req)
        .await
        .unwrap();
    let i = c.show_instance(INSTANCE).await.unwrap();
    assert_eq!(i.engine_version.as_deref(), Some("5.0"));
    let q = InstanceListQuery {
        offset: Some(0),
        limit: Some(10),
        status: Some("RUNNING".into()),
        name: Some("dcs a/b".into()),
        instance_id: None,
    };
    let l = c.list_instances(&q).await.unwrap();
    assert_eq!(l.instances.len(), 1);
}

#[tokio::test]
async fn every_operation_uses_the_documented_method_path_and_query() {
    let mock = Mock::start(|_, r| plausible(r)).await;
    // A path prefix on the endpoint is kept.
    let c = DcsClient::new(config(&format!("{}/prefix/", mock.base), aksk(None)), None).unwrap();
    call_every_operation(&c).await;
    let base = format!("/prefix/v2/{PROJECT}/instances");
    let i = format!("{base}/{INSTANCE}");
    let expected = vec![
        (
            "GET",
            format!("{i}/hotkey-tasks"),
            "limit=10&offset=0&status=success",
        ),
        ("GET", format!("{i}/bigkey-tasks"), ""),
        ("POST", format!("{i}/hotkey-task"), ""),
        ("POST", format!("{i}/bigkey-task"), ""),
        ("GET", format!("{i}/hotkey-task/t1"), ""),
        ("GET", format!("{i}/bigkey-task/a%20b%2Fc"), ""),
        ("DELETE", format!("{i}/hotkey-task/t1"), ""),
        ("DELETE", format!("{i}/bigkey-task/t2"), ""),
        ("GET", format!("{i}/hotkey/autoscan"), ""),
        ("GET", format!("{i}/bigkey/autoscan"), ""),
        ("PUT", format!("{i}/hotkey/autoscan"), ""),
        ("PUT", format!("{i}/bigkey/autoscan"), ""),
        ("GET", i.clone(), ""),
        (
            "GET",
            base.clone(),
            "limit=10&name=dcs%20a%2Fb&offset=0&status=RUNNING",
        ),
    ];
    let got = mock.requests();
    let got_lines: Vec<(String, String, String)> = got
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.query.clone()))
        .collect();
    let want_lines: Vec<(String, String, String)> = expected
        .iter()
        .map(|(m, p, q)| ((*m).to_owned(), p.clone(), (*q).to_owned()))
        .collect();
    assert_eq!(got_lines, want_lines);
    for r in &got {
        assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
        assert_eq!(r.header("x-project-id"), Some(PROJECT));
        assert_eq!(r.header("host"), Some(mock.host()));
        assert_eq!(r.header_count("host"), 1);
        match r.method.as_str() {
            "POST" => {
                assert_eq!(r.header("content-length"), Some("0"), "{r:?}");
                assert_eq!(r.header_count("content-length"), 1);
                assert!(r.body.is_empty());
            }
            "PUT" => assert_eq!(
                r.body,
                br#"{"enable_auto_scan":true,"schedule_at":["21:00"]}"#.to_vec()
            ),
            _ => assert!(r.body.is_empty()),
        }
    }
}

/// Recomputes the signature of a received request with the signer's functions and the known
/// secret key; returns the signed header names.
fn verify(r: &Recorded, sk: &str) -> Vec<String> {
    let auth = signer::parse_authorization(r.header("authorization").unwrap()).unwrap();
    assert_eq!(auth.access_key, AK);
    let date = r.header("x-sdk-date").unwrap();
    let sent = signer::parse_sdk_date(date).unwrap();
    let skew = (time::OffsetDateTime::now_utc() - sent).abs();
    assert!(skew < time::Duration::minutes(15), "X-Sdk-Date {date}");
    let req = signer::SignableRequest {
        method: &r.method,
        path: &r.path,
        query: &r.query,
        headers: &r.headers,
        body: &r.body,
    };
    assert_eq!(
        signer::signature(&req, &auth.signed_headers, sk, date),
        auth.signature,
        "signature of {} {}",
        r.method,
        r.path
    );
    auth.signed_headers
}

#[tokio::test]
async fn every_request_carries_a_signature_that_verifies() {
    let mock = Mock::start(|_, r| plausible(r)).await;
    call_every_operation(&client(&mock)).await;
    let requests = mock.requests();
    assert_eq!(requests.len(), 14);
    for r in &requests {
        let signed = verify(r, SK);
        for h in ["content-type", "host", "x-project-id", "x-sdk-date"] {
            assert!(signed.contains(&h.to_owned()), "{h} unsigned in {signed:?}");
        }
        assert!(!signed.contains(&"authorization".to_owned()));
        // The query is sent in canonical order, like the SDK does.
        assert_eq!(r.query, signer::canonical_query(&r.query));
        // A wrong key must not verify: the check above is not vacuous.
        let auth = signer::parse_authorization(r.header("authorization").unwrap()).unwrap();
        let req = signer::SignableRequest {
            method: &r.method,
            path: &r.path,
            query: &r.query,
            headers: &r.headers,
            body: &r.body,
        };
        let date = r.header("x-sdk-date").unwrap();
        assert_ne!(
            signer::signature(&req, &auth.signed_headers, "other", date),
            auth.signature
        );
        assert_eq!(r.header("x-auth-token"), None);
    }
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_security_token() {
    let mock = Mock::start(|_, r| plausible(r)).await;
    let c = DcsClient::new(config(&mock.base, aksk(Some(SECURITY_TOKEN))), None).unwrap();
    c.show_instance(INSTANCE).await.unwrap();
    let r = &mock.requests()[0];
    assert_eq!(r.header("x-security-token"), Some(SECURITY_TOKEN));
    let signed = verify(r, SK);
    assert!(signed.contains(&"x-security-token".to_owned()));
}

#[tokio::test]
async fn server_errors_429_and_transport_failures_are_retried() {
    let mock = Mock::start(|n, r| match n {
        0 => json(
            500,
            r#"{"error_code":"DCS.5000","error_msg":"Internal error."}"#,
        ),
        1 => json(503, "busy"),
        2 => json(429, r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#),
        3 => Reply::Drop,
        _ => plausible(r),
    })
    .await;
    let mut cfg = config(&mock.base, aksk(None));
    cfg.max_retries = 4;
    let registry = prometheus::Registry::new();
    let metrics = ApiMetrics::register(&registry, "dcs").unwrap();
    let c = DcsClient::new(cfg, Some(metrics)).unwrap();
    c.show_instance(INSTANCE).await.unwrap();
    assert_eq!(mock.count(), 5);
    // Every attempt is counted, retries included.
    for (code, n) in [("500", 1), ("503", 1), ("429", 1), ("error", 1), ("200", 1)] {
        assert_eq!(counter(&registry, "ShowInstance", code), n, "code {code}");
    }
    // Each retry is signed afresh and verifies.
    for r in &mock.requests() {
        verify(r, SK);
    }
}

fn counter(registry: &prometheus::Registry, operation: &str, code: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "dcs_api_requests_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            let l = m.get_label();
            l.iter()
                .any(|p| p.name() == "operation" && p.value() == operation)
                && l.iter().any(|p| p.name() == "code" && p.value() == code)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let mock = Mock::start(|_, _| json(502, "<html>Bad Gateway</html>")).await;
    let mut cfg = config(&mock.base, aksk(None));
    cfg.max_retries = 2;
    let c = DcsClient::new(cfg, None).unwrap();
    let q = TaskListQuery::default();
    let e = c
        .list_tasks(INSTANCE, Analysis::Bigkey, &q)
        .await
        .unwrap_err();
    assert_eq!(mock.count(), 3);
    match e {
        Error::Api {
            operation,
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(operation, "ListBigkeyScanTasks");
            assert_eq!(status, 502);
            assert_eq!(code, None);
            assert_eq!(message, "<html>Bad Gateway</html>");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for (status, body) in [
        (
            400,
            r#"{"error_code":"DCS.4800","error_msg":"Invalid offset in the request."}"#,
        ),
        (
            401,
            r#"{"error_code":"APIG.0301","error_msg":"verify aksk signature fail","request_id":"r"}"#,
        ),
        (403, r#"{"error_code":"DCS.2003","error_msg":"no"}"#),
        (
            404,
            r#"{"error_code":"DCS.3022","error_msg":"Instance does not exist."}"#,
        ),
    ] {
        let mock = Mock::start(move |_, _| json(status, body)).await;
        let e = client(&mock).show_instance(INSTANCE).await.unwrap_err();
        assert_eq!(mock.count(), 1, "HTTP {status} was retried");
        assert_eq!(e.status(), Some(status));
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn documented_error_codes_are_typed_with_request_ids() {
    let mock = Mock::start(|_, r| {
        let id = vec![("x-request-id", "req-123".to_owned())];
        if r.path.ends_with("/bigkey-task") {
            Reply::Status(
                400,
                id,
                r#"{"error_code":"DCS.4918","error_msg":"Instance bigkey analyze is running.","error_ext_msg":null}"#.into(),
            )
        } else if r.path.ends_with("/hotkey-task") {
            Reply::Status(
                400,
                id,
                r#"{"error_code":"DCS.4922","error_msg":"Does not support hotkey analyze."}"#.into(),
            )
        } else if r.path.ends_with("/autoscan") {
            json(
                401,
                r#"{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: verify aksk signature fail","request_id":"apig-req-9"}"#,
            )
        } else if r.path.ends_with("-tasks") {
            json(200, r#"{"count": "not a number""#)
        } else if r.method == "DELETE" {
            Reply::Status(204, Vec::new(), String::new())
        } else {
            Reply::Status(
                404,
                id,
                r#"{"error_code":"DCS.3022","error_msg":"Instance does not exist."}"#.into(),
            )
        }
    })
    .await;
    let c = client(&mock);

    let e = c.create_task(INSTANCE, Analysis::Bigkey).await.unwrap_err();
    assert!(e.is_already_running());
    assert_eq!(
        e.to_string(),
        "CreateBigkeyScanTask: HTTP 400 DCS.4918: Instance bigkey analyze is running. (request id req-123)"
    );

    let e = c.create_task(INSTANCE, Analysis::Hotkey).await.unwrap_err();
    assert_eq!(e.api_code(), Some(ApiCode::HotkeyUnsupported));
    assert!(e.is_unsupported());
    assert_eq!(e.failure_reason(), "unsupported");

    let e = c.show_instance(INSTANCE).await.unwrap_err();
    assert_eq!(e.api_code(), Some(ApiCode::InstanceNotFound));
    assert!(e.is_not_found());
    assert!(matches!(&e, Error::Api { status: 404, request_id: Some(r), .. } if r == "req-123"));

    let e = c
        .show_autoscan(INSTANCE, Analysis::Hotkey)
        .await
        .unwrap_err();
    assert_eq!(e.api_code(), Some(ApiCode::BadSignature));
    assert!(e.is_auth());
    assert!(matches!(&e, Error::Api { status: 401, request_id: Some(r), .. } if r == "apig-req-9"));

    let e = c
        .list_tasks(INSTANCE, Analysis::Hotkey, &TaskListQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Decode {
                status: 200,
                operation: "ListHotKeyScanTasks",
                ..
            }
        ),
        "{e:?}"
    );

    assert_eq!(
        c.delete_task(INSTANCE, Analysis::Hotkey, "gone")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let big = format!(r#"{{"instance_id":"{}"}}"#, "x".repeat(4000));
    let mock = Mock::start(move |n, _| match n {
        0 => json(200, &big),
        1 => Reply::Chunked(200, vec![vec![b' '; 600], vec![b' '; 600], vec![b' '; 600]]),
        _ => Reply::Chunked(
            200,
            vec![
                br#"{"instance_id":"i","#.to_vec(),
                br#""name":"n"}"#.to_vec(),
            ],
        ),
    })
    .await;
    let mut cfg = config(&mock.base, aksk(None));
    cfg.max_body_bytes = 1024;
    let c = DcsClient::new(cfg, None).unwrap();
    for _ in 0..2 {
        let e = c.show_instance(INSTANCE).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::BodyTooLarge {
                    limit: 1024,
                    operation: "ShowInstance"
                }
            ),
            "{e:?}"
        );
    }
    assert_eq!(mock.count(), 2, "a body over the cap is not retried");
    let i = c.show_instance(INSTANCE).await.unwrap();
    assert_eq!(i.name, "n");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_respected_and_capped() {
    let mock = Mock::start(|n, r| match n {
        0 => Reply::Status(503, vec![("retry-after", "7".into())], "{}".into()),
        1 => Reply::Status(429, vec![("retry-after", "1000".into())], "{}".into()),
        _ => plausible(r),
    })
    .await;
    let mut cfg = config(&mock.base, aksk(None));
    cfg.retry_base_delay = Duration::from_secs(1);
    cfg.retry_max_delay = Duration::from_secs(30);
    let c = DcsClient::new(cfg, None).unwrap();
    let t0 = Instant::now();
    c.show_instance(INSTANCE).await.unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(mock.count(), 3);
    // 7 s from the first Retry-After, then 1000 s capped at 30 s.
    assert!(elapsed >= Duration::from_secs(37), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(38), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_under_full_jitter() {
    let mock = Mock::start(|n, r| if n < 3 { json(500, "{}") } else { plausible(r) }).await;
    let mut cfg = config(&mock.base, aksk(None));
    cfg.retry_base_delay = Duration::from_secs(10);
    cfg.retry_max_delay = Duration::from_secs(25);
    let c = DcsClient::new(cfg, None).unwrap();
    let t0 = Instant::now();
    c.show_instance(INSTANCE).await.unwrap();
    // Delays are drawn from [0,10], [0,20] and [0,25] (capped) seconds.
    assert!(t0.elapsed() <= Duration::from_secs(55) + Duration::from_millis(500));
    assert_eq!(mock.count(), 4);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_times_out_and_is_retried() {
    let mock =
        Mock::start(|_, r| Reply::Delay(Duration::from_secs(600), Box::new(plausible(r)))).await;
    let mut cfg = config(&mock.base, aksk(None));
    cfg.request_timeout = Duration::from_secs(5);
    cfg.max_retries = 1;
    cfg.retry_base_delay = Duration::from_secs(1);
    cfg.retry_max_delay = Duration::from_secs(1);
    let c = DcsClient::new(cfg, None).unwrap();
    let t0 = Instant::now();
    let e = c.show_instance(INSTANCE).await.unwrap_err();
    let elapsed = t0.elapsed();
    assert!(
        matches!(e, Error::Timeout { after, .. } if after == Duration::from_secs(5)),
        "{e:?}"
    );
    assert_eq!(mock.count(), 2);
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed <= Duration::from_secs(12),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut cfg = config(&base, aksk(None));
    cfg.max_retries = 1;
    let registry = prometheus::Registry::new();
    let metrics = ApiMetrics::register(&registry, "dcs").unwrap();
    let c = DcsClient::new(cfg, Some(metrics)).unwrap();
    let e = c.show_instance(INSTANCE).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Transport {
                operation: "ShowInstance",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(counter(&registry, "ShowInstance", "error"), 2);
}

// ---- IAM tokens -------------------------------------------------------------------------

/// An IAM + DCS mock: tokens `tok-1`, `tok-2`, ... with the given lifetime; DCS accepts only
/// tokens listed as valid by `accept`.
async fn iam_mock(
    lifetime_secs: i64,
    accept: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> (Mock, Arc<Mutex<usize>>) {
    let issued = Arc::new(Mutex::new(0usize));
    let issued2 = issued.clone();
    let mock = Mock::start(move |_, r| {
        if r.path == "/iam/v3/auth/tokens" {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let user = &body["auth"]["identity"]["password"]["user"];
            if user["password"] != PASSWORD
                || user["name"] != "alice"
                || user["domain"]["name"] != "acme"
                || body["auth"]["scope"]["project"]["name"] != "cn-north-4"
                || r.method != "POST"
                || r.query != "nocatalog=true"
            {
                return json(
                    401,
                    r#"{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}"#,
                );
            }
            let n = {
                let mut i = issued2.lock().unwrap();
                *i += 1;
                *i
            };
            let issued_at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20000);
            let expires = issued_at + time::Duration::seconds(lifetime_secs);
            let fmt = &time::format_description::well_known::Rfc3339;
            let body = format!(
                r#"{{"token":{{"expires_at":"{}","issued_at":"{}","methods":["password"]}}}}"#,
                expires.format(fmt).unwrap(),
                issued_at.format(fmt).unwrap()
            );
            return Reply::Status(201, vec![("x-subject-token", format!("tok-{n}"))], body);
        }
        match r.header("x-auth-token") {
            Some(t) if accept(t) => plausible(r),
            _ => json(
                401,
                r#"{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: decrypt token fail"}"#,
            ),
        }
    })
    .await;
    (mock, issued)
}

fn iam_client(mock: &Mock, password: &str) -> DcsClient {
    let auth = Auth::Iam {
        endpoint: url::Url::parse(&format!("{}/iam", mock.base)).unwrap(),
        user: "alice".into(),
        password: Secret::new(password),
        domain: "acme".into(),
        project_name: "cn-north-4".into(),
    };
    DcsClient::new(config(&mock.base, auth), None).unwrap()
}

fn dcs_requests(mock: &Mock) -> Vec<Recorded> {
    mock.requests()
        .into_iter()
        .filter(|r| !r.path.starts_with("/iam"))
        .collect()
}

#[tokio::test]
async fn iam_token_is_fetched_once_and_shared_by_concurrent_callers() {
    let (mock, issued) = iam_mock(24 * 3600, |_| true).await;
    let c = iam_client(&mock, PASSWORD);
    let calls = (0..8).map(|_| {
        let c = c.clone();
        async move { c.show_instance(INSTANCE).await }
    });
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    c.list_tasks(INSTANCE, Analysis::Bigkey, &TaskListQuery::default())
        .await
        .unwrap();
    assert_eq!(*issued.lock().unwrap(), 1);
    let dcs = dcs_requests(&mock);
    assert_eq!(dcs.len(), 9);
    for r in &dcs {
        assert_eq!(r.header("x-auth-token"), Some("tok-1"));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.header("x-project-id"), Some(PROJECT));
    }
}

#[tokio::test(start_paused = true)]
async fn iam_token_is_renewed_before_it_expires() {
    // Two-hour tokens: renewed when less than 12 minutes (10%) are left.
    let (mock, issued) = iam_mock(2 * 3600, |_| true).await;
    let c = iam_client(&mock, PASSWORD);
    c.show_instance(INSTANCE).await.unwrap();
    tokio::time::advance(Duration::from_secs(100 * 60)).await;
    c.show_instance(INSTANCE).await.unwrap();
    assert_eq!(*issued.lock().unwrap(), 1, "renewed too early");
    tokio::time::advance(Duration::from_secs(10 * 60)).await;
    c.show_instance(INSTANCE).await.unwrap();
    assert_eq!(
        *issued.lock().unwrap(),
        2,
        "not renewed at 110 of 120 minutes"
    );
    let tokens: Vec<_> = dcs_requests(&mock)
        .iter()
        .map(|r| r.header("x-auth-token").unwrap_or("").to_owned())
        .collect();
    assert_eq!(tokens, ["tok-1", "tok-1", "tok-2"]);
}

#[tokio::test]
async fn a_rejected_token_is_renewed_once() {
    // DCS rejects the first token (revoked), accepts the second.
    let (mock, issued) = iam_mock(24 * 3600, |t| t != "tok-1").await;
    let c = iam_client(&mock, PASSWORD);
    c.show_instance(INSTANCE).await.unwrap();
    assert_eq!(*issued.lock().unwrap(), 2);
    assert_eq!(dcs_requests(&mock).len(), 2);

    // A service that rejects every token: one renewal, then the 401 surfaces.
    let (mock, issued) = iam_mock(24 * 3600, |_| false).await;
    let c = iam_client(&mock, PASSWORD);
    let e = c.show_instance(INSTANCE).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(e.is_auth());
    assert_eq!(*issued.lock().unwrap(), 2);
    assert_eq!(dcs_requests(&mock).len(), 2);
}

#[tokio::test]
async fn iam_failures_are_token_errors_without_secrets() {
    let (mock, issued) = iam_mock(24 * 3600, |_| true).await;
    let c = iam_client(&mock, "wrong-password-value");
    let e = c.show_instance(INSTANCE).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Token {
                status: Some(401),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_auth());
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("The username or password is wrong."),
        "{text}"
    );
    assert!(!text.contains("wrong-password-value"), "{text}");
    assert_eq!(*issued.lock().unwrap(), 0);
    assert!(dcs_requests(&mock).is_empty());
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let mock = Mock::start(|_, r| plausible(r)).await;
    let cfg = config(&mock.base, aksk(Some(SECURITY_TOKEN)));
    let c = DcsClient::new(cfg.clone(), None).unwrap();
    let iam = iam_client(&mock, PASSWORD);
    for text in [
        format!("{c:?}"),
        format!("{cfg:?}"),
        format!("{iam:?}"),
        format!("{:?}", iam.config()),
    ] {
        for secret in [SK, SECURITY_TOKEN, PASSWORD] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert!(format!("{c:?}").contains(PROJECT));
}

#[tokio::test]
async fn check_online_reports_a_verdict() {
    let mock = Mock::start(|_, r| plausible(r)).await;
    let c = client(&mock);
    let v = c.check_online(&[]).await.unwrap();
    assert_eq!(
        v,
        format!("ListInstances OK: 1 instance(s) in project {PROJECT}")
    );
    assert_eq!(mock.requests()[0].query, "limit=1");
    let v = c.check_online(&[INSTANCE.to_owned()]).await.unwrap();
    assert_eq!(
        v,
        format!("ShowInstance OK for 1 instance(s) in project {PROJECT}: {INSTANCE} (Redis 5.0, RUNNING)")
    );
}

// ---- Creates are not idempotent ---------------------------------------------------------

/// A create whose answer is lost in any way that leaves open whether DCS carried it out is sent
/// once and reported as [`Error::OutcomeUnknown`]; the same failure of a GET is retried.
#[tokio::test(start_paused = true)]
async fn a_create_is_not_repeated_after_an_ambiguous_failure() {
    type Lost = fn() -> Reply;
    let cases: [(&str, Lost); 4] = [
        ("502", || json(502, "<html>Bad Gateway</html>")),
        ("500", || {
            json(500, r#"{"error_code":"DCS.5000","error_msg":"x"}"#)
        }),
        ("reset", || Reply::Drop),
        ("timeout", || {
            Reply::Delay(Duration::from_secs(600), Box::new(json(200, TASK)))
        }),
    ];
    for (what, lost) in cases {
        let mock = Mock::start(move |_, r| {
            if r.method == "POST" {
                lost()
            } else {
                plausible(r)
            }
        })
        .await;
        let c = client(&mock);
        let e = c.create_task(INSTANCE, Analysis::Hotkey).await.unwrap_err();
        assert!(e.is_outcome_unknown(), "{what}: {e:?}");
        assert!(!e.is_retryable(), "{what}");
        assert_eq!(mock.count(), 1, "{what}: the create was sent once");
    }
    // A 2xx answer that cannot be read: the task exists.
    let mock = Mock::start(|_, _| json(200, "{not json")).await;
    let e = client(&mock)
        .create_task(INSTANCE, Analysis::Bigkey)
        .await
        .unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    // The same failure of a GET is retried (1 + 3 retries).
    let mock = Mock::start(|_, _| json(502, "<html>Bad Gateway</html>")).await;
    let e = client(&mock).show_instance(INSTANCE).await.unwrap_err();
    assert!(!e.is_outcome_unknown(), "{e:?}");
    assert_eq!(mock.count(), 4);
}

/// A create refused before DCS could act on it (429 at the gateway, a connection never made) is
/// retried like any other request.
#[tokio::test(start_paused = true)]
async fn a_create_refused_before_it_reached_dcs_is_retried() {
    let mock = Mock::start(|n, r| match n {
        0 => json(429, r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#),
        _ => plausible(r),
    })
    .await;
    client(&mock)
        .create_task(INSTANCE, Analysis::Hotkey)
        .await
        .unwrap();
    assert_eq!(mock.count(), 2);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let registry = prometheus::Registry::new();
    let metrics = ApiMetrics::register(&registry, "dcs").unwrap();
    let mut cfg = config(&base, aksk(None));
    cfg.max_retries = 2;
    let e = DcsClient::new(cfg, Some(metrics))
        .unwrap()
        .create_task(INSTANCE, Analysis::Hotkey)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(counter(&registry, "CreateHotkeyScanTask", "error"), 3);
}

// ---- Redaction of echoed credentials ----------------------------------------------------

/// What a test must never find in an error: its `Display` and `Debug` forms.
fn error_text(e: &Error) -> String {
    format!("{e} | {e:?}")
}

/// An endpoint that echoes the request (every header in the body, the security token as the
/// request id) must not get the credentials into errors, hence logs and the status page.
#[tokio::test]
async fn echoed_aksk_credentials_are_redacted() {
    let signature = Arc::new(Mutex::new(String::new()));
    let seen = signature.clone();
    let mock = Mock::start(move |n, r| {
        let auth = r.header("authorization").unwrap_or_default().to_owned();
        *seen.lock().unwrap() = auth.rsplit("Signature=").next().unwrap().to_owned();
        let echo: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let id = vec![(
            "x-request-id",
            r.header("x-security-token").unwrap_or_default().to_owned(),
        )];
        let echo = echo.join("; ");
        if n == 0 {
            let body = serde_json::json!({"error_code": "DCS.4000", "error_msg": echo});
            Reply::Status(400, id, body.to_string())
        } else {
            Reply::Status(404, id, format!("<html><pre>{auth}\n{echo}</pre></html>"))
        }
    })
    .await;
    let c = DcsClient::new(config(&mock.base, aksk(Some(SECURITY_TOKEN))), None).unwrap();
    for _ in 0..2 {
        let e = c.show_instance(INSTANCE).await.unwrap_err();
        let text = error_text(&e);
        let signature = signature.lock().unwrap().clone();
        assert_eq!(signature.len(), 64, "the request was signed");
        for secret in [SK, SECURITY_TOKEN, signature.as_str()] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        // What is not a credential stays, for diagnosis.
        assert!(text.contains("content-type: application/json"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}

#[tokio::test]
async fn echoed_iam_tokens_and_passwords_are_redacted() {
    // An IAM token is a long opaque string.
    let token: String =
        "MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQExDTALBglghkgBZQMEAgEwggLXBgkqhkiG9w0BBwGg".repeat(8);
    let t = token.clone();
    let mock = Mock::start(move |_, r| {
        if r.path == "/iam/v3/auth/tokens" {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let password = body["auth"]["identity"]["password"]["user"]["password"]
                .as_str()
                .unwrap()
                .to_owned();
            if password != PASSWORD {
                let msg = format!("The password {password} is wrong for alice");
                let body = serde_json::json!({"error": {"code": 401, "message": msg}});
                return json(401, &body.to_string());
            }
            let body = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","issued_at":"2024-01-01T00:00:00Z"}}"#;
            return Reply::Status(201, vec![("x-subject-token", t.clone())], body.into());
        }
        let echoed = r.header("x-auth-token").unwrap_or_default().to_owned();
        let body = serde_json::json!({"error_code": "DCS.5000", "error_msg": format!("headers: {{\"X-Auth-Token\": \"{echoed}\"}}")});
        Reply::Status(400, vec![("x-request-id", echoed)], body.to_string())
    })
    .await;
    let e = iam_client(&mock, PASSWORD)
        .show_instance(INSTANCE)
        .await
        .unwrap_err();
    let text = error_text(&e);
    assert!(!text.contains(&token[..40]), "the token leaked: {text}");
    assert!(text.contains("DCS.5000"), "{text}");

    let wrong = "wrong-horse-battery-staple";
    let e = iam_client(&mock, wrong)
        .show_instance(INSTANCE)
        .await
        .unwrap_err();
    let text = error_text(&e);
    assert!(matches!(e, Error::Token { .. }), "{text}");
    assert!(!text.contains(wrong), "the password leaked: {text}");
    assert!(text.contains("is wrong for alice"), "{text}");
}
