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

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::web_config::{ClientAuthType, TlsSources, TlsVersion};

type Problem = (&'static str, String);

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
