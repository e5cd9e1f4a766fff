//! `--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit format.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # PEM: the certificate, then its intermediates
//!   key_file: server.key             # PEM: PKCS#8, PKCS#1 or SEC1 private key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt   # PEM: CAs that sign client certificates
//!   min_version: TLS12               # TLS12 (default) or TLS13
//!   max_version: TLS13               # TLS12 or TLS13 (default)
//! basic_auth_users:
//!   prometheus: $2y$10$...           # user: bcrypt hash of the password
//! ```
//!
//! Parsing is strict: an unknown key (including exporter-toolkit keys this exporter does not
//! implement, such as `cipher_suites` or `http_server_config`) is an error naming the key.
//! Relative paths are resolved against the directory of the web config file. An empty file means
//! plain HTTP without authentication.
//!
//! [`WebConfigWatcher`] keeps the active [`WebConfig`] and picks up changes: at most once per
//! [`CHECK_INTERVAL`], when a connection or request asks for the current config, it reads the web
//! config file and the certificate, key and CA files it names, and rebuilds the config when any of
//! their contents changed. So rotated certificates (cert-manager, Kubernetes secrets) and new
//! users apply without a restart. A new file that does not load is logged once, and the previous
//! config keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::auth::BasicAuth;
use super::tls::{self, RawTls};
pub use super::tls::{ClientAuthType, TlsVersion};
use crate::config::file::{read_bounded, ReadError};

/// The largest web config, certificate, key or CA file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Shortest time between two looks at the files for changes.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A web config file that could not be loaded. Messages name the file and the key; they never
/// contain file contents.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read web config file: {source}")]
    Read { path: String, source: ReadError },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

/// A loaded web config: what the server applies to connections and requests.
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no authentication.
    pub basic_auth: Option<Arc<BasicAuth>>,
}

impl WebConfig {
    /// Plain HTTP, no authentication: what runs without `--web.config.file`.
    pub fn plain() -> WebConfig {
        WebConfig {
            tls: None,
            basic_auth: None,
        }
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.basic_auth.as_ref().map_or(0, |a| a.user_count()),
            )
            .finish()
    }
}

/// Reads and builds a web config; also returns the fingerprint of every file it read.
pub fn load(path: &Path) -> Result<(WebConfig, [u8; 32]), WebConfigError> {
    let shown = path.display().to_string();
    let mut hasher = Sha256::new();
    let text = read_bounded(path, MAX_FILE_BYTES).map_err(|source| WebConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(&text);
    let invalid = |key: &str, message: String| WebConfigError::Invalid {
        path: shown.clone(),
        key: key.to_owned(),
        message,
    };
    let text = std::str::from_utf8(&text)
        .map_err(|_| invalid("(top level)", "the file is not valid UTF-8".into()))?;
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig::default()
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".to_owned()
            } else {
                key
            };
            invalid(&key, e.into_inner().to_string())
        })?
    };

    let base = path.parent().unwrap_or(Path::new(""));
    let tls = match raw.tls_server_config {
        None => None,
        Some(t) => {
            let read = |field: &str, p: &str| {
                let path = resolve(base, p);
                let bytes = read_bounded(&path, MAX_FILE_BYTES)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                hasher.update(field.as_bytes());
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
                Ok(bytes)
            };
            let sources = tls::sources(&t, read).map_err(|(k, m)| invalid(&k, m))?;
            Some(tls::server_config(&sources).map_err(|(k, m)| invalid(k, m))?)
        }
    };
    let basic_auth = if raw.basic_auth_users.is_empty() {
        None
    } else {
        Some(Arc::new(
            BasicAuth::new(raw.basic_auth_users).map_err(|(k, m)| invalid(&k, m))?,
        ))
    };
    Ok((WebConfig { tls, basic_auth }, hasher.finalize().into()))
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_relative() {
        base.join(path)
    } else {
        path
    }
}

/// The active web config of a file, re-read when the file or the files it names change.
pub struct WebConfigWatcher {
    path: PathBuf,
    state: Mutex<WatchState>,
}

struct WatchState {
    current: Arc<WebConfig>,
    /// Fingerprint of the files `current` was built from.
    fingerprint: [u8; 32],
    /// Fingerprint of the last content that failed to load (logged once).
    rejected: Option<[u8; 32]>,
    last_check: Instant,
}

impl std::fmt::Debug for WebConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfigWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WebConfigWatcher {
    /// Loads `path`; an error here should stop the process (exit code 2).
    pub fn load(path: &Path) -> Result<WebConfigWatcher, WebConfigError> {
        let (config, fingerprint) = load(path)?;
        if let Some(a) = &config.basic_auth {
            a.prepare();
        }
        Ok(WebConfigWatcher {
            path: path.to_owned(),
            state: Mutex::new(WatchState {
                current: Arc::new(config),
                fingerprint,
                rejected: None,
                last_check: Instant::now(),
            }),
        })
    }

    /// The web config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force now, without looking at the files.
    pub fn active(&self) -> Arc<WebConfig> {
        self.lock().current.clone()
    }

    /// The config in force, after looking for changes if [`CHECK_INTERVAL`] has passed since the
    /// last look. The files are read on a blocking thread.
    pub async fn current(self: &Arc<Self>) -> Arc<WebConfig> {
        {
            let st = self.lock();
            if st.last_check.elapsed() < CHECK_INTERVAL {
                return st.current.clone();
            }
        }
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.refresh()).await {
            Ok(c) => c,
            Err(_) => self.active(),
        }
    }

    /// Reads the files now and switches to their config if it changed and loads.
    pub fn refresh(&self) -> Arc<WebConfig> {
        let mut st = self.lock();
        st.last_check = Instant::now();
        match load(&self.path) {
            Ok((config, fingerprint)) => {
                if fingerprint != st.fingerprint {
                    if let Some(a) = &config.basic_auth {
                        a.prepare();
                    }
                    tracing::info!(path = %self.path.display(), tls = config.tls.is_some(),
                        basic_auth = config.basic_auth.is_some(), "web config reloaded");
                    st.current = Arc::new(config);
                    st.fingerprint = fingerprint;
                }
                st.rejected = None;
            }
            Err(e) => {
                // Identify the broken content by the whole error text plus the config bytes, so
                // that the same broken state is logged once, and a different one again.
                let mut h = Sha256::new();
                h.update(e.to_string().as_bytes());
                if let Ok(bytes) = read_bounded(&self.path, MAX_FILE_BYTES) {
                    h.update(&bytes);
                }
                let id: [u8; 32] = h.finalize().into();
                if st.rejected != Some(id) {
                    tracing::error!(error = %e, "web config reload failed; the previous web config stays in force");
                    st.rejected = Some(id);
                }
            }
        }
        st.current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        // The state is replaced whole under the lock, so a poisoned lock still holds a
        // consistent value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dcs-web-config-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn err(text: &str) -> String {
        let d = tempdir("err");
        let p = write(&d, "web.yml", text);
        let e = load(&p).expect_err("must fail").to_string();
        let _ = std::fs::remove_dir_all(d);
        e
    }

    #[test]
    fn empty_file_is_plain_http() {
        let d = tempdir("empty");
        let p = write(&d, "web.yml", "\n");
        let (c, _) = load(&p).expect("loads");
        assert!(c.tls.is_none() && c.basic_auth.is_none());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("tls_server_config:\n  cert_file: a\n  cipher_suites: [x]\n");
        assert!(e.contains("tls_server_config"), "{e}");
        assert!(e.contains("cipher_suites"), "{e}");
        let e = err("http_server_config:\n  http2: false\n");
        assert!(e.contains("http_server_config"), "{e}");
        let e = err("basic_auth_user:\n  a: b\n");
        assert!(e.contains("basic_auth_user"), "{e}");
    }

    #[test]
    fn bad_enum_values_are_named() {
        let e = err("tls_server_config:\n  client_auth_type: Sometimes\n");
        assert!(e.contains("tls_server_config.client_auth_type"), "{e}");
        assert!(e.contains("RequireAndVerifyClientCert"), "{e}");
        let e = err("tls_server_config:\n  min_version: TLS11\n");
        assert!(e.contains("tls_server_config.min_version"), "{e}");
    }

    #[test]
    fn missing_files_name_the_key() {
        let e = err("tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: k\n");
        assert!(e.contains("tls_server_config.cert_file"), "{e}");
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn bad_bcrypt_hash_names_the_user_but_not_the_hash() {
        let e = err("basic_auth_users:\n  alice: not-a-hash-value\n");
        assert!(e.contains("basic_auth_users.alice"), "{e}");
        assert!(!e.contains("not-a-hash-value"), "{e}");
    }

    #[test]
    fn devices_are_refused_without_reading() {
        // /dev/zero reports a length of 0 and never ends.
        let e = load(Path::new("/dev/zero"))
            .expect_err("a device")
            .to_string();
        assert!(e.contains("is not a regular file (it is a device)"), "{e}");
        let e = err("tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n");
        assert!(e.contains("tls_server_config.cert_file"), "{e}");
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn garbage_pem_is_refused() {
        let d = tempdir("pem");
        write(&d, "c.pem", "not a certificate");
        write(&d, "k.pem", "not a key");
        let p = write(
            &d,
            "web.yml",
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
        );
        let e = load(&p).expect_err("must fail").to_string();
        assert!(e.contains("tls_server_config.cert_file"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }
}
