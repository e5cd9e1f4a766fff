//! IAM token authentication: password → project-scoped token, cached and renewed.
//!
//! `POST {iam}/v3/auth/tokens?nocatalog=true` with a password identity and a project scope by
//! name answers 201 with the token in the `X-Subject-Token` header and `token.expires_at` (and
//! `issued_at`) in the body. Tokens live 24 hours; [`TokenCache`] hands out the cached token and
//! renews it well before it expires (when less than 10% of its lifetime, at most one hour, is
//! left), with one request even when many callers need a token at once. The client calls
//! [`TokenCache::invalidate_token`] when DCS rejects a token with 401.
//!
//! Neither the password nor a token ever appears in an error, a log line or `Debug` output.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::dcs::metrics::ApiMetrics;
use crate::dcs::transport::{
    read_body_capped, redact_secrets, sanitised_excerpt, transport_summary, BodyReadError,
};
use crate::dcs::{Error, Result};
use crate::secret::Secret;

/// The `operation` label of token requests in the API metrics (the IAM SDK's name).
pub const OPERATION: &str = "KeystoneCreateUserTokenByPassword";

/// Renew when less than this share of the token's lifetime is left...
const RENEW_FRACTION: u32 = 10;
/// ...but never earlier than this before expiry.
const RENEW_MAX_MARGIN: Duration = Duration::from_secs(3600);
/// Lifetime assumed when the answer has no usable `expires_at` (the documented one is 24 h;
/// assuming less only renews earlier).
const FALLBACK_LIFETIME: Duration = Duration::from_secs(3600);
/// After failed renewals while the old token is still valid: the wait before trying again
/// (30 s, doubling up to 5 minutes, equal jitter, so that replicas sharing an IAM user do not
/// retry in step), never past the token's expiry.
const RENEW_RETRY: Backoff = Backoff::fixed(
    Duration::from_secs(30),
    Duration::from_secs(300),
    Backoff::EQUAL_JITTER,
);

/// Who asks for a token, and for which project.
#[derive(Clone, PartialEq, Eq)]
pub struct IamCredentials {
    /// IAM base URL, e.g. `https://iam.cn-north-4.myhuaweicloud.com` (a path prefix is kept).
    pub endpoint: url::Url,
    pub user: String,
    pub password: Secret,
    /// The account (domain) name.
    pub domain: String,
    /// The project name the token is scoped to, e.g. `cn-north-4`.
    pub project_name: String,
}

impl fmt::Debug for IamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamCredentials")
            .field("endpoint", &self.endpoint.as_str())
            .field("user", &self.user)
            .field("password", &self.password)
            .field("domain", &self.domain)
            .field("project_name", &self.project_name)
            .finish()
    }
}

struct Cached {
    token: Secret,
    /// When to fetch a new token (well before `expires`).
    renew_at: Instant,
    /// When the token stops being valid.
    expires: Instant,
    /// Renewals failed in a row since the token was fetched.
    failed_renewals: u32,
}

/// A cached IAM token with single-flight renewal.
pub struct TokenCache {
    http: reqwest::Client,
    credentials: IamCredentials,
    request_timeout: Duration,
    max_body_bytes: usize,
    metrics: Option<ApiMetrics>,
    state: Mutex<Option<Cached>>,
}

impl TokenCache {
    /// The password tokens are obtained with (to redact it from quoted answers).
    pub(crate) fn password(&self) -> &Secret {
        &self.credentials.password
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("credentials", &self.credentials)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    issued_at: Option<String>,
}

fn token_error(status: Option<u16>, message: impl Into<String>) -> Error {
    Error::Token {
        status,
        message: message.into(),
    }
}

/// How long to keep using a token of this lifetime before renewing it.
fn renew_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / RENEW_FRACTION).min(RENEW_MAX_MARGIN);
    lifetime.saturating_sub(margin)
}

impl TokenCache {
    /// A cache that fetches tokens with `http`; each token request is limited to
    /// `request_timeout` and its answer to `max_body_bytes`.
    pub fn new(
        http: reqwest::Client,
        credentials: IamCredentials,
        request_timeout: Duration,
        max_body_bytes: usize,
        metrics: Option<ApiMetrics>,
    ) -> TokenCache {
        TokenCache {
            http,
            credentials,
            request_timeout,
            max_body_bytes,
            metrics,
            state: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one when it is due for renewal. Concurrent callers
    /// share one token request.
    pub async fn token(&self) -> Result<Secret> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(c) = state.as_ref() {
            if now < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        // The password out of whatever IAM echoed, before the error is logged or returned.
        let fetched = self
            .fetch()
            .await
            .map_err(|e| e.map_text(&|t| redact_secrets(t, &[self.credentials.password.expose()])));
        match fetched {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *state = Some(fresh);
                Ok(token)
            }
            Err(e) => match state.as_mut() {
                // Renewal failed but the old token is still good: keep it a little longer.
                Some(c) if Instant::now() < c.expires => {
                    tracing::warn!(error = %e, "IAM token renewal failed; using the current token");
                    let wait = RENEW_RETRY.delay(c.failed_renewals, &mut rand::thread_rng());
                    c.failed_renewals = c.failed_renewals.saturating_add(1);
                    c.renew_at = Instant::now() + wait.min(c.expires - Instant::now());
                    Ok(c.token.clone())
                }
                _ => {
                    *state = None;
                    Err(e)
                }
            },
        }
    }

    /// Forgets the cached token, so the next [`token`](Self::token) fetches a new one.
    pub async fn invalidate(&self) {
        *self.state.lock().await = None;
    }

    /// Forgets the cached token only if it is `rejected` (so that several requests failing with
    /// the same token cause a single renewal).
    pub async fn invalidate_token(&self, rejected: &Secret) {
        let mut state = self.state.lock().await;
        if state.as_ref().is_some_and(|c| &c.token == rejected) {
            *state = None;
        }
    }

    fn request_body(&self) -> serde_json::Value {
        let c = &self.credentials;
        serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": c.user,
                            "password": c.password.expose(),
                            "domain": {"name": c.domain}
                        }
                    }
                },
                "scope": {"project": {"name": c.project_name}}
            }
        })
    }

    fn url(&self) -> url::Url {
        let mut url = self.credentials.endpoint.clone();
        let path = format!("{}/v3/auth/tokens", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(Some("nocatalog=true"));
        url
    }

    async fn fetch(&self) -> Result<Cached> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.request_timeout, self.fetch_once()).await;
        let (status, result) = match outcome {
            Ok((status, result)) => (status, result),
            Err(_) => (
                None,
                Err(token_error(
                    None,
                    format!("no answer from IAM within {:?}", self.request_timeout),
                )),
            ),
        };
        let elapsed = started.elapsed();
        if let Some(m) = &self.metrics {
            m.observe(OPERATION, status, elapsed.as_secs_f64());
        }
        tracing::debug!(
            operation = OPERATION,
            status = status.unwrap_or(0),
            duration_ms = elapsed.as_millis() as u64,
            ok = result.is_ok(),
            "IAM token request"
        );
        result
    }

    /// One token request; returns the HTTP status (if any) for the metrics.
    async fn fetch_once(&self) -> (Option<u16>, Result<Cached>) {
        let body = self.request_body().to_string();
        let sent = self
            .http
            .post(self.url())
            .header(http::header::CONTENT_TYPE, "application/json;charset=utf8")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return (
                    None,
                    Err(token_error(
                        None,
                        format!("cannot reach IAM: {}", transport_summary(&e)),
                    )),
                )
            }
        };
        let received = Instant::now();
        let status = resp.status().as_u16();
        let subject = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(|s| Secret::new(s.trim()));
        let body = match read_body_capped(resp, self.max_body_bytes).await {
            Ok(b) => b,
            Err(BodyReadError::TooLarge) => {
                return (
                    Some(status),
                    Err(token_error(
                        Some(status),
                        format!("IAM answer exceeds {} bytes", self.max_body_bytes),
                    )),
                )
            }
            Err(BodyReadError::Transport(m)) => {
                return (
                    Some(status),
                    Err(token_error(
                        Some(status),
                        format!("reading IAM answer: {m}"),
                    )),
                )
            }
        };
        if !(200..300).contains(&status) {
            return (
                Some(status),
                Err(token_error(
                    Some(status),
                    format!("HTTP {status}: {}", iam_error_message(&body)),
                )),
            );
        }
        let token = match subject {
            Some(t) if !t.is_empty() => t,
            _ => {
                return (
                    Some(status),
                    Err(token_error(
                        Some(status),
                        format!("HTTP {status} without an X-Subject-Token header"),
                    )),
                )
            }
        };
        let lifetime = token_lifetime(&body).unwrap_or(FALLBACK_LIFETIME);
        let cached = Cached {
            token,
            renew_at: received + renew_after(lifetime),
            expires: received + lifetime,
            failed_renewals: 0,
        };
        (Some(status), Ok(cached))
    }
}

/// The token's lifetime from `expires_at`, measured from `issued_at` when present (immune to
/// clock skew), else from the local wall clock. `None` when the body has no usable expiry.
fn token_lifetime(body: &[u8]) -> Option<Duration> {
    let parsed: TokenBody = serde_json::from_slice(body).ok()?;
    let expires = OffsetDateTime::parse(parsed.token.expires_at.as_deref()?, &Rfc3339).ok()?;
    let issued = parsed
        .token
        .issued_at
        .as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let lifetime = expires - issued;
    if lifetime.is_positive() {
        Duration::try_from(lifetime).ok()
    } else {
        Some(Duration::ZERO)
    }
}

/// A short message from an IAM error body (`{"error":{"message":..}}` or DCS/APIG style), never
/// echoing the request.
fn iam_error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Keystone {
        error: KeystoneError,
    }
    #[derive(Deserialize)]
    struct KeystoneError {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        title: Option<String>,
    }
    if let Ok(k) = serde_json::from_slice::<Keystone>(body) {
        if let Some(m) = k.error.message.or(k.error.title) {
            return sanitised_excerpt(m.as_bytes());
        }
    }
    if let Ok(e) = serde_json::from_slice::<crate::dcs::ErrorBody>(body) {
        if let Some(m) = e.error_msg {
            let code = e.error_code.unwrap_or_default();
            return sanitised_excerpt(format!("{code} {m}").trim().as_bytes());
        }
    }
    sanitised_excerpt(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_renewals_back_off_with_jitter_up_to_five_minutes() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let first = RENEW_RETRY.delay(0, &mut rng);
            assert!((15..=30).contains(&first.as_secs()), "{first:?}");
            let third = RENEW_RETRY.delay(2, &mut rng);
            assert!((60..=120).contains(&third.as_secs()), "{third:?}");
            let late = RENEW_RETRY.delay(20, &mut rng);
            assert!((150..=300).contains(&late.as_secs()), "{late:?}");
        }
    }

    #[test]
    fn renewal_margin_is_a_tenth_of_the_lifetime_at_most_an_hour() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(renew_after(day), Duration::from_secs(23 * 3600));
        assert_eq!(
            renew_after(Duration::from_secs(600)),
            Duration::from_secs(540)
        );
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn lifetime_uses_issued_at_when_present() {
        let body = br#"{"token":{"expires_at":"2020-01-04T09:08:49.965000Z",
            "issued_at":"2020-01-03T09:08:49.965000Z","methods":["password"]}}"#;
        assert_eq!(token_lifetime(body), Some(Duration::from_secs(24 * 3600)));
        assert_eq!(token_lifetime(b"{}"), None);
        assert_eq!(token_lifetime(br#"{"token":{"expires_at":"soon"}}"#), None);
        let expired = br#"{"token":{"expires_at":"2020-01-03T09:08:49Z","issued_at":"2020-01-04T09:08:49Z"}}"#;
        assert_eq!(token_lifetime(expired), Some(Duration::ZERO));
    }

    #[test]
    fn error_messages_come_from_the_iam_body() {
        let body = br#"{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}"#;
        assert_eq!(
            iam_error_message(body),
            "The username or password is wrong."
        );
        let body = br#"{"error_code":"APIG.0301","error_msg":"bad","request_id":"r"}"#;
        assert_eq!(iam_error_message(body), "APIG.0301 bad");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = IamCredentials {
            endpoint: url::Url::parse("https://iam.example.com").unwrap(),
            user: "u".into(),
            password: Secret::new("pa55-word-xyz"),
            domain: "d".into(),
            project_name: "cn-north-4".into(),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("pa55-word-xyz"), "{s}");
        let cache = TokenCache::new(
            reqwest::Client::new(),
            c,
            Duration::from_secs(1),
            1024,
            None,
        );
        let s = format!("{cache:?}");
        assert!(!s.contains("pa55-word-xyz"), "{s}");
    }

    #[test]
    fn url_keeps_the_endpoint_prefix() {
        let mk = |e: &str| {
            TokenCache::new(
                reqwest::Client::new(),
                IamCredentials {
                    endpoint: url::Url::parse(e).unwrap(),
                    user: "u".into(),
                    password: Secret::new("p"),
                    domain: "d".into(),
                    project_name: "r".into(),
                },
                Duration::from_secs(1),
                1,
                None,
            )
            .url()
            .to_string()
        };
        assert_eq!(
            mk("https://iam.example.com"),
            "https://iam.example.com/v3/auth/tokens?nocatalog=true"
        );
        assert_eq!(
            mk("http://127.0.0.1:9/iam/"),
            "http://127.0.0.1:9/iam/v3/auth/tokens?nocatalog=true"
        );
    }
}
