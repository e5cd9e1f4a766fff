//! TLS for the HTTP server: the rustls server config built from `tls_server_config`, and the
//! per-connection handshake.
//!
//! Cryptography comes from rustls' `ring` provider. ALPN offers `h2` and `http/1.1`, matching the
//! plain listener, which also serves both. The five exporter-toolkit `client_auth_type`s map to:
//!
//! | type | certificate requested | required | checked against `client_ca_file` |
//! |---|---|---|---|
//! | `NoClientCert` | no | no | no |
//! | `RequestClientCert` | yes | no | no |
//! | `RequireAnyClientCert` | yes | yes | no |
//! | `VerifyClientCertIfGiven` | yes | no | yes, when given |
//! | `RequireAndVerifyClientCert` | yes | yes | yes |
//!
//! An unchecked certificate still has to prove possession of its key (the handshake signature is
//! verified); only its chain is not.
//!
//! This module owns the TLS settings of the web config file (`RawTls` as written, checked
//! together into `TlsSources` by `sources`), the server config built from them, and the
//! handshake of each connection (`handshake`). Reading the files and noticing their changes is
//! [`super::web_config`]'s job; it depends on this module, never the other way round.

use std::sync::Arc;

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

type Problem = (&'static str, String);

/// Which client certificates the server asks for and accepts (Go's `tls.ClientAuthType` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ClientAuthType {
    /// No client certificate is requested.
    NoClientCert,
    /// A certificate is requested; any certificate (or none) is accepted.
    RequestClientCert,
    /// A certificate is required; it is not checked against a CA.
    RequireAnyClientCert,
    /// A certificate is optional; if one is given it must chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate chaining to `client_ca_file` is required.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    TLS12,
    TLS13,
}

/// `tls_server_config` as written in the web config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<ClientAuthType>,
    client_ca_file: Option<String>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
}

/// The TLS settings with the contents of the files they name.
pub(crate) struct TlsSources {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
    pub client_auth: ClientAuthType,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// Reads the files `raw` names with `read` (given the key's field name and the path as
/// written) and checks the settings together. Errors name the `tls_server_config` key at fault.
pub(crate) fn sources(
    raw: &RawTls,
    mut read: impl FnMut(&str, &str) -> Result<Vec<u8>, String>,
) -> Result<TlsSources, (String, String)> {
    const PREFIX: &str = "tls_server_config";
    let mut read = |field: &str, value: &Option<String>| -> Result<Option<Vec<u8>>, _> {
        let key = format!("{PREFIX}.{field}");
        let Some(p) = value.as_deref() else {
            return Ok(None);
        };
        if p.trim().is_empty() {
            return Err((key, "must not be empty".to_owned()));
        }
        read(field, p).map(Some).map_err(|message| (key, message))
    };
    let cert_pem = read("cert_file", &raw.cert_file)?;
    let key_pem = read("key_file", &raw.key_file)?;
    let client_ca_pem = read("client_ca_file", &raw.client_ca_file)?;
    let cert_pem = cert_pem.ok_or_else(|| (format!("{PREFIX}.cert_file"), "is required".into()))?;
    let key_pem = key_pem.ok_or_else(|| (format!("{PREFIX}.key_file"), "is required".into()))?;
    // As in exporter-toolkit: a client CA without an explicit type means verified client
    // certificates are required.
    let client_auth = match (raw.client_auth_type, &client_ca_pem) {
        (Some(t), _) => t,
        (None, Some(_)) => ClientAuthType::RequireAndVerifyClientCert,
        (None, None) => ClientAuthType::NoClientCert,
    };
    let verifies = matches!(
        client_auth,
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert
    );
    if verifies && client_ca_pem.is_none() {
        return Err((
            format!("{PREFIX}.client_ca_file"),
            format!("is required when client_auth_type is {client_auth:?}"),
        ));
    }
    if !verifies && client_ca_pem.is_some() {
        return Err((
            format!("{PREFIX}.client_ca_file"),
            format!("is not used when client_auth_type is {client_auth:?}"),
        ));
    }
    let min_version = raw.min_version.unwrap_or(TlsVersion::TLS12);
    let max_version = raw.max_version.unwrap_or(TlsVersion::TLS13);
    if min_version > max_version {
        return Err((
            format!("{PREFIX}.min_version"),
            format!("{min_version:?} is above max_version {max_version:?}"),
        ));
    }
    Ok(TlsSources {
        cert_pem,
        key_pem,
        client_ca_pem,
        client_auth,
        min_version,
        max_version,
    })
}

/// Builds the server config; errors name the `tls_server_config` key at fault.
pub(crate) fn server_config(src: &TlsSources) -> Result<Arc<rustls::ServerConfig>, Problem> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let certs = CertificateDer::pem_slice_iter(&src.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("tls_server_config.cert_file", format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err((
            "tls_server_config.cert_file",
            "contains no CERTIFICATE block".into(),
        ));
    }
    // The error of a failed key parse never includes key material.
    let key = PrivateKeyDer::from_pem_slice(&src.key_pem).map_err(|e| {
        (
            "tls_server_config.key_file",
            format!("no usable private key: {e}"),
        )
    })?;

    let verifier: Arc<dyn ClientCertVerifier> = match src.client_auth {
        ClientAuthType::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: src.client_auth == ClientAuthType::RequireAnyClientCert,
                algorithms: provider.signature_verification_algorithms,
            })
        }
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert => {
            const KEY: &str = "tls_server_config.client_ca_file";
            let pem = src.client_ca_pem.as_deref().unwrap_or_default();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| (KEY, format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| (KEY, format!("unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err((KEY, "contains no CERTIFICATE block".into()));
            }
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if src.client_auth == ClientAuthType::VerifyClientCertIfGiven {
                builder = builder.allow_unauthenticated();
            }
            builder
                .build()
                .map_err(|e| (KEY, format!("cannot build the client verifier: {e}")))?
        }
    };

    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (src.min_version..=src.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ("tls_server_config.min_version", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            (
                "tls_server_config.key_file",
                format!("does not match the certificate or is unusable: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `RequestClientCert` / `RequireAnyClientCert`: any certificate, but its key must sign the
/// handshake.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What a plain HTTP client gets from the TLS port.
const PLAIN_HTTP_TO_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Runs the TLS handshake within `timeout`; `None` when it fails (logged at debug
/// level: failed handshakes are the client's problem). A client that speaks plain HTTP gets a
/// `400` telling it to use HTTPS, as from Go's servers.
pub(crate) async fn handshake(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    timeout: std::time::Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
            // Not TLS: most likely plain HTTP. Say so, as Go's servers do, and close.
            let _ = stream.write_all(PLAIN_HTTP_TO_TLS).await;
            let _ = stream.shutdown().await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "plain HTTP sent to the TLS port",
            ));
        }
        tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
