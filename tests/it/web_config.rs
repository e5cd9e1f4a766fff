//! `--web.config.file` against a real server and a real TLS client: basic auth, TLS versions,
//! the five client certificate policies, plain HTTP to the TLS port, and changes to the files
//! being picked up. Certificates are generated per test with rcgen; the server runs on
//! `127.0.0.1:0`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::{wait_for, TempDir};
use dcs_key_exporter::metrics::exposition::Exposition;
use dcs_key_exporter::metrics::render::RenderOptions;
use dcs_key_exporter::metrics::store::Store;
use dcs_key_exporter::server::web_config::WebConfigWatcher;
use dcs_key_exporter::server::{self, ServerState};

/// Upper bound for things that should happen quickly; only reached when a test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// A certificate authority and the certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed");
        Ca { cert, key }
    }

    /// (certificate PEM, private key PEM) of a leaf for `san` with the given usage.
    fn leaf(&self, san: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![san.to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, san);
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

struct Server {
    port: u16,
    shutdown: CancellationToken,
    watcher: Arc<WebConfigWatcher>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(web_config: &Path) -> Server {
    let watcher = Arc::new(WebConfigWatcher::load(web_config).expect("web config loads"));
    let store = Arc::new(Store::new());
    let exposition = Arc::new(Exposition::new(store.clone(), RenderOptions::default()).unwrap());
    let (_ready_tx, ready_rx) = watch::channel(true);
    let state = Arc::new(ServerState {
        exposition,
        store,
        telemetry_path: "/metrics".into(),
        ready: ready_rx,
        reload: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run_with_web_config(
        listener,
        state,
        watcher.clone(),
        shutdown.clone(),
    ));
    Server {
        port,
        shutdown,
        watcher,
    }
}

/// A TLS client trusting `ca`, presenting `identity` (cert + key PEM) if given.
fn client(ca: &Ca, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

fn tls_config(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
}

/// A directory with a server certificate for 127.0.0.1 signed by a fresh CA.
fn with_server_cert() -> (TempDir, Ca) {
    let dir = TempDir::new("dcs-web-config-test");
    let ca = Ca::new("server CA");
    let (cert, key) = ca.leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
    dir.write("server.crt", &cert);
    dir.write("server.key", &key);
    (dir, ca)
}

fn hash(password: &str) -> String {
    // Cost 4 keeps the tests fast; the server reads the cost from the hash.
    bcrypt::hash(password, 4).expect("hash")
}

#[tokio::test]
async fn basic_auth_over_tls_on_every_path() {
    let (dir, ca) = with_server_cert();
    let config = format!(
        "{}basic_auth_users:\n  prometheus: {}\n",
        tls_config(""),
        hash("right horse")
    );
    let server = start(&dir.write("web.yml", &config)).await;
    let http = client(&ca, None);

    for path in ["/metrics", "/", "/-/healthy", "/-/ready"] {
        let url = format!("https://127.0.0.1:{}{path}", server.port);
        let none = http.get(&url).send().await.expect("request");
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            none.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Basic"),
            "{path}"
        );
        let status_as = |user: &str, password: &str| {
            let request = http.get(&url).basic_auth(user, Some(password)).send();
            async move { request.await.expect("request").status() }
        };
        let wrong = status_as("prometheus", "wrong horse").await;
        assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{path}");
        let unknown = status_as("nobody", "right horse").await;
        assert_eq!(unknown, StatusCode::UNAUTHORIZED, "{path}");
        let right = status_as("prometheus", "right horse").await;
        assert_eq!(right, StatusCode::OK, "{path}");
    }
    let body = http
        .get(format!("https://127.0.0.1:{}/metrics", server.port))
        .basic_auth("prometheus", Some("right horse"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(body.contains("dcs_exporter_build_info"), "{body}");
    // The reload endpoint is protected too (it is not available here: 503 once authorised).
    let url = format!("https://127.0.0.1:{}/-/reload", server.port);
    let anon = http.post(&url).send().await.expect("request");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn basic_auth_without_tls() {
    let dir = TempDir::new("dcs-web-config-test");
    let config = format!("basic_auth_users:\n  alice: {}\n", hash("pw"));
    let server = start(&dir.write("web.yml", &config)).await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/metrics", server.port);
    let resp = http.get(&url).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = http
        .get(&url)
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails() {
    let (dir, ca) = with_server_cert();
    let server = start(&dir.write("web.yml", &tls_config(""))).await;
    // A TLS client works.
    let ok = client(&ca, None)
        .get(format!("https://127.0.0.1:{}/metrics", server.port))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), StatusCode::OK);
    // Plain HTTP gets a 400 saying to use HTTPS, never the metrics.
    let resp = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.port))
        .await
        .expect("the server answers with an error page");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.text().await.unwrap_or_default();
    assert!(body.contains("HTTPS"), "{body}");
    assert!(!body.contains("dcs_exporter_build_info"));
}

#[tokio::test]
async fn the_server_certificate_must_be_trusted() {
    let (dir, _ca) = with_server_cert();
    let server = start(&dir.write("web.yml", &tls_config(""))).await;
    let other = Ca::new("someone else");
    let err = client(&other, None)
        .get(format!("https://127.0.0.1:{}/metrics", server.port))
        .send()
        .await
        .expect_err("untrusted server certificate");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn min_version_tls13_refuses_tls12_clients() {
    let (dir, ca) = with_server_cert();
    let server = start(&dir.write("web.yml", &tls_config("  min_version: TLS13\n"))).await;
    let url = format!("https://127.0.0.1:{}/metrics", server.port);
    let tls12 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(&url).send().await.is_err());
    let ok = client(&ca, None).get(&url).send().await.expect("TLS 1.3");
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    let (dir, ca) = with_server_cert();
    let clients = Ca::new("client CA");
    dir.write("clients.crt", &clients.pem());
    let config = tls_config(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n",
    );
    let server = start(&dir.write("web.yml", &config)).await;
    let url = format!("https://127.0.0.1:{}/metrics", server.port);

    // No certificate: the handshake fails.
    assert!(client(&ca, None).get(&url).send().await.is_err());
    // A certificate from another CA: refused.
    let stranger = Ca::new("stranger").leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(client(&ca, Some(&stranger)).get(&url).send().await.is_err());
    // A certificate signed by the client CA: served.
    let good = clients.leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    let resp = client(&ca, Some(&good))
        .get(&url)
        .send()
        .await
        .expect("verified client");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn verify_client_cert_if_given() {
    let (dir, ca) = with_server_cert();
    let clients = Ca::new("client CA");
    dir.write("clients.crt", &clients.pem());
    let config =
        tls_config("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: clients.crt\n");
    let server = start(&dir.write("web.yml", &config)).await;
    let url = format!("https://127.0.0.1:{}/metrics", server.port);
    let anonymous = client(&ca, None).get(&url).send().await.expect("no cert");
    assert_eq!(anonymous.status(), StatusCode::OK);
    let good = clients.leaf("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    let resp = client(&ca, Some(&good)).get(&url).send().await.expect("ok");
    assert_eq!(resp.status(), StatusCode::OK);
    let stranger = Ca::new("stranger").leaf("x", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(client(&ca, Some(&stranger)).get(&url).send().await.is_err());
}

#[tokio::test]
async fn require_any_client_cert() {
    let (dir, ca) = with_server_cert();
    let server = start(&dir.write(
        "web.yml",
        &tls_config("  client_auth_type: RequireAnyClientCert\n"),
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/metrics", server.port);
    assert!(client(&ca, None).get(&url).send().await.is_err());
    // Any certificate, from any CA, is accepted.
    let stranger = Ca::new("stranger").leaf("x", ExtendedKeyUsagePurpose::ClientAuth);
    let resp = client(&ca, Some(&stranger))
        .get(&url)
        .send()
        .await
        .expect("any cert");
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn status_with(http: &reqwest::Client, url: &str, user: &str, pw: &str) -> StatusCode {
    // A new connection each time: TLS settings apply per connection.
    http.get(url)
        .basic_auth(user, Some(pw))
        .header("connection", "close")
        .send()
        .await
        .map_or(StatusCode::IM_A_TEAPOT, |r| r.status())
}

#[tokio::test]
async fn changes_to_the_files_are_picked_up_and_broken_ones_ignored() {
    let (dir, ca) = with_server_cert();
    let web = dir.write(
        "web.yml",
        &format!(
            "{}basic_auth_users:\n  p: {}\n",
            tls_config(""),
            hash("one")
        ),
    );
    let server = start(&web).await;
    let http = client(&ca, None);
    let url = format!("https://127.0.0.1:{}/metrics", server.port);
    assert_eq!(status_with(&http, &url, "p", "one").await, StatusCode::OK);

    // A new password: picked up without a restart.
    dir.write(
        "web.yml",
        &format!(
            "{}basic_auth_users:\n  p: {}\n",
            tls_config(""),
            hash("two")
        ),
    );
    wait_for("the new password works", PATIENCE, || async {
        (status_with(&http, &url, "p", "two").await == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        status_with(&http, &url, "p", "one").await,
        StatusCode::UNAUTHORIZED
    );

    // A broken file: the previous config stays in force.
    dir.write("web.yml", "tls_server_config:\n  cert_fil: typo\n");
    server.watcher.refresh();
    assert_eq!(status_with(&http, &url, "p", "two").await, StatusCode::OK);

    // A rotated server certificate from a new CA: new connections present it.
    let ca2 = Ca::new("rotated CA");
    let (cert, key) = ca2.leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
    dir.write("server.key", &key);
    dir.write("server.crt", &cert);
    dir.write(
        "web.yml",
        &format!(
            "{}basic_auth_users:\n  p: {}\n",
            tls_config(""),
            hash("two")
        ),
    );
    let http2 = client(&ca2, None);
    wait_for("the rotated certificate is served", PATIENCE, || async {
        (status_with(&http2, &url, "p", "two").await == StatusCode::OK).then_some(())
    })
    .await;
    assert!(dir.path("server.crt").exists());

    // Removing TLS from the file: the port speaks plain HTTP.
    dir.write("web.yml", "");
    let plain = reqwest::Client::new();
    let plain_url = format!("http://127.0.0.1:{}/metrics", server.port);
    wait_for("plain HTTP after TLS was removed", PATIENCE, || async {
        plain
            .get(&plain_url)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
            .then_some(())
    })
    .await;
}
