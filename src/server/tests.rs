//! Tests of the HTTP server against a real listener on `127.0.0.1:0`.

use std::io::Read as _;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinHandle;

use super::*;
use crate::dcs::{Analysis, KeyRecord, KeyType, ScanType, SizeUnit, TaskRecord, TaskStatus};
use crate::metrics::render::RenderOptions;
use crate::metrics::store::{AnalysisSpec, InstanceSpec};

/// Upper bound for things that should happen at once; only reached when a test fails.
const PATIENCE: Duration = Duration::from_secs(10);

type ReloadRx = mpsc::Receiver<oneshot::Sender<Result<(), String>>>;

struct TestServer {
    base: String,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    ready: watch::Sender<bool>,
}

impl TestServer {
    async fn start(with_reload: bool, grace: Duration) -> (TestServer, Option<ReloadRx>) {
        let store = Arc::new(Store::new());
        store.configure(&[InstanceSpec {
            id: "i-1".into(),
            name: "orders-cache".into(),
            lfu_log_factor: 10,
            analyses: vec![AnalysisSpec {
                analysis: Analysis::Hotkey,
                top_n: 10,
                mode: "trigger",
                interval: std::time::Duration::from_secs(900),
            }],
        }]);
        let task = TaskRecord {
            id: "t1".into(),
            instance_id: Some("i-1".into()),
            status: TaskStatus::Success,
            scan_type: Some(ScanType::Manual),
            created_at: Some("2024-01-01T00:00:00Z".into()),
            started_at: Some("2024-01-01T00:00:02Z".into()),
            finished_at: Some("2024-01-01T00:00:10Z".into()),
            num: None,
            keys: Some(vec![
                KeyRecord {
                    name: "user:1".into(),
                    key_type: Some(KeyType::String),
                    shard: None,
                    db: Some(0),
                    size: Some(100),
                    unit: Some(SizeUnit::Byte),
                    freq: Some(42),
                    memory: None,
                },
                KeyRecord {
                    name: "<script>alert(1)</script>".into(),
                    key_type: Some(KeyType::Hash),
                    shard: None,
                    db: Some(1),
                    size: Some(3),
                    unit: Some(SizeUnit::Count),
                    freq: Some(7),
                    memory: None,
                },
            ]),
        };
        assert!(store.publish("i-1", Analysis::Hotkey, &task));
        let exposition =
            Arc::new(Exposition::new(store.clone(), RenderOptions::default()).expect("valid"));
        let (ready_tx, ready_rx) = watch::channel(false);
        let (reload_tx, reload_rx) = mpsc::channel(1);
        let state = Arc::new(ServerState {
            exposition,
            store,
            telemetry_path: "/metrics".into(),
            ready: ready_rx,
            reload: with_reload.then_some(reload_tx),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_with_grace(listener, state, shutdown.clone(), grace));
        let server = TestServer {
            base: format!("http://{addr}"),
            addr,
            shutdown,
            task,
            ready: ready_tx,
        };
        (server, with_reload.then_some(reload_rx))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let res = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stops after cancel")
            .expect("server task does not panic");
        assert!(res.is_ok(), "{res:?}");
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.expect("request succeeds")
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

const USER1_FREQ: &str = r#"dcs_hotkey_frequency{instance_id="i-1",instance_name="orders-cache",key="user:1",key_type="string",db="0",shard=""} 42"#;

#[tokio::test]
async fn metrics_are_served_plain_and_gzip() {
    let (srv, _) = TestServer::start(false, SHUTDOWN_GRACE).await;

    let resp = get(&srv.url("/metrics")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(header(&resp, "content-encoding"), None);
    let plain = resp.text().await.expect("body");
    assert!(plain.contains(&format!("{USER1_FREQ}\n")), "{plain}");
    assert!(plain.contains("dcs_exporter_build_info{"));

    let resp = client()
        .get(srv.url("/metrics"))
        .header("accept-encoding", "br;q=1.0, gzip;q=0.8")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-encoding"), Some("gzip"));
    assert_eq!(header(&resp, "vary"), Some("Accept-Encoding"));
    let compressed = resp.bytes().await.expect("body");
    let mut unzipped = String::new();
    flate2::read::MultiGzDecoder::new(&compressed[..])
        .read_to_string(&mut unzipped)
        .expect("a valid gzip stream");
    // The snapshot part is identical; process metrics may move between the two scrapes.
    let snapshot_lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.contains("process_"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(snapshot_lines(&unzipped), snapshot_lines(&plain));

    let resp = client()
        .get(srv.url("/metrics"))
        .header("accept-encoding", "gzip;q=0, identity")
        .send()
        .await
        .expect("request");
    assert_eq!(header(&resp, "content-encoding"), None);
    assert!(resp.text().await.expect("body").contains(USER1_FREQ));

    let resp = client()
        .head(srv.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(resp.bytes().await.expect("body").is_empty());

    srv.stop().await;
}

#[tokio::test]
async fn health_readiness_and_errors() {
    let (srv, _) = TestServer::start(false, SHUTDOWN_GRACE).await;

    let resp = get(&srv.url("/-/healthy")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body").trim(), "OK");

    assert_eq!(get(&srv.url("/-/ready")).await.status(), 503);
    srv.ready.send(true).expect("server holds a receiver");
    assert_eq!(get(&srv.url("/-/ready")).await.status(), 200);

    assert_eq!(get(&srv.url("/nope")).await.status(), 404);
    assert_eq!(get(&srv.url("/metrics/extra")).await.status(), 404);

    let resp = client()
        .post(srv.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 405);
    assert_eq!(header(&resp, "allow"), Some("GET, HEAD"));

    let resp = get(&srv.url("/-/reload")).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(header(&resp, "allow"), Some("POST"));

    // Reloading was not wired in this server.
    let resp = client()
        .post(srv.url("/-/reload"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 503);

    srv.stop().await;
}

#[tokio::test]
async fn reload_reports_success_and_rejection() {
    let (srv, reload_rx) = TestServer::start(true, SHUTDOWN_GRACE).await;
    let mut reload_rx = reload_rx.expect("reload wired");
    // The reloader: accepts the first request, rejects the second.
    let reloader = tokio::spawn(async move {
        let first = reload_rx.recv().await.expect("first request");
        let _ = first.send(Ok(()));
        let second = reload_rx.recv().await.expect("second request");
        let _ = second.send(Err("clouds[0].region: missing (line 3)".into()));
    });

    let resp = client()
        .post(srv.url("/-/reload"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);

    let resp = client()
        .post(srv.url("/-/reload"))
        .body("ignored body")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("clouds[0].region: missing (line 3)"),
        "{body}"
    );
    tokio::time::timeout(PATIENCE, reloader)
        .await
        .expect("reloader done")
        .expect("reloader ok");

    // The reloader is gone: reloading is no longer available.
    let resp = client()
        .post(srv.url("/-/reload"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 503);

    srv.stop().await;
}

#[tokio::test]
async fn status_page_shows_instances_and_escapes_keys() {
    let (srv, _) = TestServer::start(false, SHUTDOWN_GRACE).await;
    let resp = get(&srv.url("/")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(header(&resp, "content-security-policy").is_some());
    let page = resp.text().await.expect("body");
    assert!(page.contains("orders-cache"));
    assert!(page.contains("i-1"));
    assert!(page.contains("<a href=\"/metrics\">"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script"));
    assert!(page.contains("2024-01-01 00:00:10 UTC"));
    srv.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_works() {
    let (srv, _) = TestServer::start(false, SHUTDOWN_GRACE).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = h2.get(srv.url("/metrics")).send().await.expect("request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("body").contains(USER1_FREQ));
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let (srv, _) = TestServer::start(false, SHUTDOWN_GRACE).await;
    // A client with a kept-alive idle connection must not hold the shutdown for the grace period.
    let c = client();
    assert_eq!(
        c.get(srv.url("/-/healthy"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    let addr = srv.addr;
    let started = tokio::time::Instant::now();
    srv.stop().await;
    assert!(
        started.elapsed() < SHUTDOWN_GRACE,
        "idle connections close at once"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn drain_is_bounded_by_the_grace_period() {
    let grace = Duration::from_millis(200);
    let (srv, reload_rx) = TestServer::start(true, grace).await;
    let mut reload_rx = reload_rx.expect("reload wired");
    // A request in flight that would take RELOAD_TIMEOUT (60 s): the reload is never answered.
    let url = srv.url("/-/reload");
    let stuck = tokio::spawn(async move { client().post(url).send().await });
    let pending_reply = tokio::time::timeout(PATIENCE, reload_rx.recv())
        .await
        .expect("the handler is running")
        .expect("a reload request");
    let started = tokio::time::Instant::now();
    srv.stop().await;
    let took = started.elapsed();
    assert!(
        took >= grace,
        "the in-flight request got its grace period ({took:?})"
    );
    assert!(
        took < RELOAD_TIMEOUT / 2,
        "the drain was cut at the grace period ({took:?})"
    );
    // The client sees its connection closed instead of an answer.
    let outcome = tokio::time::timeout(PATIENCE, stuck)
        .await
        .expect("client done")
        .expect("client task");
    assert!(outcome.is_err(), "{outcome:?}");
    drop(pending_reply);
}

#[tokio::test]
async fn half_sent_requests_do_not_hold_the_shutdown() {
    let grace = Duration::from_millis(300);
    let (srv, _) = TestServer::start(false, grace).await;
    // A client stuck in the middle of its request headers.
    let mut slow = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Accepts are processed in order: once another connection is answered, the slow one is
    // being served.
    assert_eq!(get(&srv.url("/-/healthy")).await.status(), 200);
    let started = tokio::time::Instant::now();
    srv.stop().await;
    assert!(started.elapsed() < HEADER_READ_TIMEOUT);
    drop(slow);
}

#[test]
fn gzip_negotiation_follows_q_values() {
    let accepts = |values: &[&str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(v).expect("valid header"),
            );
        }
        accepts_gzip(&h)
    };
    assert!(!accepts(&[]));
    assert!(accepts(&["gzip"]));
    assert!(accepts(&["GZIP"]));
    assert!(accepts(&["deflate, gzip;q=1.0, *;q=0.5"]));
    assert!(accepts(&["x-gzip"]));
    assert!(accepts(&["*"]));
    assert!(accepts(&["br", "gzip; q=0.001"]));
    assert!(!accepts(&["gzip;q=0"]));
    assert!(!accepts(&["gzip;q=0.000"]));
    assert!(!accepts(&["gzip;q=0, *"]));
    assert!(!accepts(&["*;q=0"]));
    assert!(!accepts(&["identity"]));
    assert!(!accepts(&["deflate, br"]));
    assert!(!accepts(&["gzip;q=2"]));
    assert!(!accepts(&["gzip;q=abc"]));
    assert!(!accepts(&["gzipped"]));
}
