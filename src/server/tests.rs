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

type ReloadRx = mpsc::Receiver<ReloadRequest>;

struct TestServer {
    base: String,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    ready: watch::Sender<bool>,
}

impl TestServer {
    async fn start(with_reload: bool, grace: Duration) -> (TestServer, Option<ReloadRx>) {
        Self::start_with(with_reload, grace, Limits::default()).await
    }

    async fn start_with(
        with_reload: bool,
        grace: Duration,
        limits: Limits,
    ) -> (TestServer, Option<ReloadRx>) {
        let store = Arc::new(Store::new());
        store.configure(&[InstanceSpec {
            id: "i-1".into(),
            name: "orders-cache".into(),
            lfu_log_factor: 10,
            native: false,
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
                    rates: None,
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
                    rates: None,
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
        let task = tokio::spawn(serve_with_limits(
            listener,
            state,
            None,
            shutdown.clone(),
            grace,
            limits,
        ));
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

    let resp = get(&srv.url("/metric")).await;
    assert_eq!(resp.status(), 404);
    // A mistyped path is told where the metrics and the status page are.
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("Metrics: /metrics;") && body.contains("status page: /;"),
        "{body}"
    );
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
        let _ = second.send(Err(crate::config::reload::ReloadError::Config(
            crate::config::ConfigError::Invalid {
                path: "c.yml".into(),
                problems: vec![crate::config::Problem {
                    key: "clouds[0].region".into(),
                    line: Some(3),
                    message: "missing".into(),
                }],
            },
        )));
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

/// Short limits, so that the tests below see connections closed.
const SHORT: Limits = Limits {
    first_request: Duration::from_millis(300),
    idle: Duration::from_millis(300),
    max_connections: MAX_CONNECTIONS,
};

/// Reads until the server closes the connection (or resets it); fails after [`PATIENCE`].
async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

#[tokio::test]
async fn silent_connections_are_closed_from_accept() {
    let (srv, _) = TestServer::start_with(false, SHUTDOWN_GRACE, SHORT).await;
    // Nothing at all.
    let mut silent = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    // Half an HTTP/2 preface: hyper waits for the rest to pick the protocol.
    let mut half = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    half.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    // Half an HTTP/1 request line.
    let mut line = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    line.write_all(b"GET /metr").await.expect("write");
    closed_by_server(&mut silent).await;
    closed_by_server(&mut half).await;
    closed_by_server(&mut line).await;
    // The server itself still answers.
    assert_eq!(get(&srv.url("/-/healthy")).await.status(), 200);
    srv.stop().await;
}

/// Sends `GET /-/healthy` on `conn` and returns the status line, or `None` when no answer
/// came within `wait`.
async fn healthy_status(conn: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    conn.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    status_line(conn, wait).await
}

/// The status line of the next answer on `conn`, or `None` when none came within `wait`.
async fn status_line(conn: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(wait, conn.read(&mut buf)).await.ok()?;
    let text = String::from_utf8_lossy(&buf[..n.expect("read")]).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn at_the_connection_limit_a_new_connection_waits_for_one_to_close() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (srv, _) = TestServer::start_with(false, SHUTDOWN_GRACE, limits).await;
    let connect = || tokio::net::TcpStream::connect(srv.addr);
    // Two kept-alive connections, each proven accepted by an answer.
    let mut first = connect().await.expect("connect");
    let mut second = connect().await.expect("connect");
    for conn in [&mut first, &mut second] {
        let status = healthy_status(conn, PATIENCE).await;
        assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    }
    // A third connects (the kernel queues it) but is not served while both stay open.
    let mut third = connect().await.expect("connect");
    assert_eq!(
        healthy_status(&mut third, Duration::from_millis(300)).await,
        None,
        "served beyond the limit"
    );
    // One closes: the third is accepted and its request answered.
    drop(first);
    let status = status_line(&mut third, PATIENCE).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    // The second is still served on its own connection.
    let status = healthy_status(&mut second, PATIENCE).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    srv.stop().await;
}

#[tokio::test]
async fn kept_alive_connections_close_once_idle() {
    let (srv, _) = TestServer::start_with(false, SHUTDOWN_GRACE, SHORT).await;
    let mut conn = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let status = healthy_status(&mut conn, PATIENCE).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    // Kept alive by HTTP/1.1, then idle: closed.
    closed_by_server(&mut conn).await;
    srv.stop().await;
}

/// The frame types an HTTP/2 server sends on `stream` until it closes the connection.
async fn h2_frames_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut data = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    // Frame header: 24-bit length, type, flags, 31-bit stream id.
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= data.len() {
        let len = usize::from(data[at]) << 16
            | usize::from(data[at + 1]) << 8
            | usize::from(data[at + 2]);
        types.push(data[at + 3]);
        at += 9 + len;
    }
    types
}

#[tokio::test]
async fn an_idle_http2_connection_is_told_with_goaway_before_it_is_closed() {
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    let (srv, _) = TestServer::start_with(false, SHUTDOWN_GRACE, SHORT).await;
    let mut conn = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    // The client preface, an empty SETTINGS frame, then nothing: idle.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
    conn.write_all(&hello).await.expect("write");
    let frames = h2_frames_until_closed(&mut conn).await;
    assert_eq!(frames.first(), Some(&SETTINGS), "{frames:?}");
    assert!(
        frames.contains(&GOAWAY),
        "closed without GOAWAY: {frames:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_is_not_idle() {
    let (srv, reload_rx) = TestServer::start_with(true, SHUTDOWN_GRACE, SHORT).await;
    let mut reload_rx = reload_rx.expect("reload wired");
    let url = srv.url("/-/reload");
    let pending = tokio::spawn(async move { client().post(url).send().await });
    let reply = tokio::time::timeout(PATIENCE, reload_rx.recv())
        .await
        .expect("the handler is running")
        .expect("a reload request");
    // Answer only after several idle periods have passed: the connection must still be open.
    tokio::time::sleep(SHORT.idle * 3).await;
    reply.send(Ok(())).expect("handler waits");
    let resp = tokio::time::timeout(PATIENCE, pending)
        .await
        .expect("answered")
        .expect("task")
        .expect("the connection stayed open");
    assert_eq!(resp.status(), 200);
    srv.stop().await;
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

#[tokio::test]
async fn silent_tls_connections_are_closed_after_the_handshake() {
    let dir = std::env::temp_dir().join(format!(
        "dcs-server-tls-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    std::fs::write(dir.join("c.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("k.pem"), key.serialize_pem()).expect("write");
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
    )
    .expect("write");
    let web = Arc::new(WebConfigWatcher::load(&dir.join("web.yml")).expect("web config"));

    let store = Arc::new(Store::new());
    let exposition =
        Arc::new(Exposition::new(store.clone(), RenderOptions::default()).expect("valid"));
    let (_ready_tx, ready_rx) = watch::channel(true);
    let state = Arc::new(ServerState {
        exposition,
        store,
        telemetry_path: "/metrics".into(),
        ready: ready_rx,
        reload: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with_limits(
        listener,
        state,
        Some(web),
        shutdown.clone(),
        SHUTDOWN_GRACE,
        SHORT,
    ));

    // A client that completes the handshake, then says nothing.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let closed = tokio::time::timeout(PATIENCE, async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 64];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the TLS connection open");
    shutdown.cancel();
    let _ = tokio::time::timeout(PATIENCE, task).await.expect("stops");
    let _ = std::fs::remove_dir_all(dir);
}
