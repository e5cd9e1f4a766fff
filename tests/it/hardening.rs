//! Server hardening against hostile clients: header size limits on HTTP/1.1 and HTTP/2, request
//! bodies that are never read, and a bad `--web.config.file` that stops the start with exit
//! code 2.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use dcs_key_exporter::metrics::exposition::Exposition;
use dcs_key_exporter::metrics::render::RenderOptions;
use dcs_key_exporter::metrics::store::Store;
use dcs_key_exporter::server::{self, ServerState, MAX_HEADER_BYTES};

const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Server {
    let store = Arc::new(Store::new());
    let exposition = Arc::new(Exposition::new(store.clone(), RenderOptions::default()).unwrap());
    let (_ready, ready_rx) = watch::channel(true);
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel(1);
    // Answers reload requests at once, so a POST completes.
    tokio::spawn(async move {
        while let Some(reply) = reload_rx.recv().await {
            let _ = tokio::sync::oneshot::Sender::send(reply, Ok(()));
        }
    });
    let state = Arc::new(ServerState {
        exposition,
        store,
        telemetry_path: "/metrics".into(),
        ready: ready_rx,
        reload: Some(reload_tx),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(listener, state, shutdown.clone()));
    Server { addr, shutdown }
}

/// Sends raw bytes and returns what the server answered before closing (or the first 64 KiB).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may close while we are still writing: that is an answer too.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 || buf.len() > 65536 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn request_with_header(value_len: usize) -> Vec<u8> {
    format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(value_len)
    )
    .into_bytes()
}

#[tokio::test]
async fn http1_headers_over_the_limit_are_refused() {
    let srv = start().await;
    // Well under the limit: served.
    let ok = raw(srv.addr, &request_with_header(MAX_HEADER_BYTES / 4)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // Four times the limit: 431 or a closed connection, never the metrics.
    let big = raw(srv.addr, &request_with_header(MAX_HEADER_BYTES * 4)).await;
    assert!(
        big.is_empty() || big.starts_with("HTTP/1.1 431"),
        "oversized headers were answered with: {big}"
    );
}

#[tokio::test]
async fn http2_headers_over_the_limit_are_refused() {
    let srv = start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let url = format!("http://{}/metrics", srv.addr);
    let ok = h2.get(&url).send().await.expect("small headers");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.version(), reqwest::Version::HTTP_2);
    let big = h2
        .get(&url)
        .header("x-filler", "a".repeat(MAX_HEADER_BYTES * 4))
        .send()
        .await;
    assert!(
        big.as_ref().map_or(true, |r| r.status() == 431),
        "oversized HTTP/2 headers were answered with: {big:?}"
    );
}

#[tokio::test]
async fn request_bodies_are_not_read() {
    let srv = start().await;
    // A body announced as 1 GiB: the reload is answered without waiting for it.
    let head = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\npartial";
    let answer = tokio::time::timeout(PATIENCE, raw(srv.addr, head))
        .await
        .expect("answered without the body");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_bad_web_config_file_stops_the_start_with_exit_code_2() {
    let dir = std::env::temp_dir().join(format!(
        "dcs-hardening-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: c.pem\n  ciphers: []\n",
    )
    .expect("w");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcs-key-exporter"))
        .arg("--demo")
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--web.config.file={}", web.display()))
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls_server_config"), "{stderr}");
    assert!(stderr.contains("ciphers"), "{stderr}");
}
