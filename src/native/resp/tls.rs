//! TLS for `rediss://` targets: the rustls client settings of a target (its CA, or the
//! system's roots; its client certificate), made once per target.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::redis::RedisTls;

/// The client settings for `tls`: trust the configured CA only, else the system's roots;
/// present the client certificate when one is configured.
pub fn client_config(tls: &RedisTls) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("tls.ca_file: {e}"))?;
                roots.add(cert).map_err(|e| format!("tls.ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("tls.ca_file: holds no certificate".into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls.cert_file: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|_| "tls.key_file: holds no private key rustls can read".to_owned())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.cert_file/key_file: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
