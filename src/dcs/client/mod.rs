//! The reqwest client for the DCS v2 API: [`DcsClient`] implements [`DcsApi`].
//!
//! Each call builds the documented path under `{endpoint}/v2/{project_id}/instances` (keeping any
//! path prefix of the endpoint), sends the headers the official SDK sends (`Content-Type`,
//! `Host`, `X-Project-Id`, `User-Agent`) and authenticates with either an SDK-HMAC-SHA256
//! signature ([`crate::dcs::signer`]) or an IAM token ([`crate::dcs::iam`]).
//!
//! Every attempt is limited to `request_timeout` (connect to last body byte) and its body to
//! `max_body_bytes`. Transport errors, timeouts, 429 and 5xx are retried up to `max_retries`
//! times with exponential backoff and full jitter (or the server's `Retry-After`); other 4xx
//! never are. A POST (a create) is not idempotent: it is retried only when the service cannot
//! have carried it out (the connection was never made, or 429). After a failure that leaves
//! this open (timeout, connection lost after sending, 5xx, a 2xx answer that cannot be read) it
//! fails with [`Error::OutcomeUnknown`], and the caller lists before creating again. With IAM
//! auth, a 401 renews the token and repeats the request once. Every attempt is recorded in the
//! API metrics and logged at debug level, without headers or secrets. Each attempt holds one
//! permit of the caller's [`limit`] scope, if any.
//!
//! # Layout
//! - this module: the client, its URLs, and the attempt and retry loop (`send`, `call`).
//! - `api`: [`DcsApi`] for the client, one method per operation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use rand::Rng;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::backoff::{Backoff, InvalidBackoff};
use crate::dcs::error::api_error;
use crate::dcs::iam::{IamCredentials, TokenCache};
use crate::dcs::limit;
use crate::dcs::metrics::ApiMetrics;
use crate::dcs::transport::{
    decode_body, read_body_capped, redact_secrets, sanitised_excerpt, transport_summary,
    BodyReadError,
};
use crate::dcs::{signer, Auth, ClientConfig, DcsApi, Error, InstanceListQuery, Result};
use crate::secret::Secret;

mod api;

/// Sent (and signed) like the SDK's own `User-Agent`.
const USER_AGENT: &str = concat!("dcs-key-exporter/", env!("CARGO_PKG_VERSION"));

const OP_SHOW_INSTANCE: &str = "ShowInstance";
const OP_LIST_INSTANCES: &str = "ListInstances";

/// The backoff of DCS API requests: full jitter under a doubling cap, so clients that fail
/// together spread their retries (see [`crate::backoff`]).
fn request_backoff(config: &ClientConfig) -> std::result::Result<Backoff, InvalidBackoff> {
    Backoff::new(
        config.retry_base_delay,
        config.retry_max_delay,
        Backoff::FULL_JITTER,
    )
}

/// The delay before retry number `retry` (0 for the first retry): the server's `Retry-After`
/// when given, else [`Backoff::delay`]; never more than the backoff's `max`.
fn retry_delay(
    backoff: &Backoff,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    match retry_after {
        Some(after) => after.min(backoff.max()),
        None => backoff.delay(retry, rng),
    }
}

/// How a request authenticates.
enum ClientAuth {
    AkSk {
        access_key: String,
        secret_key: Secret,
        security_token: Option<Secret>,
    },
    Iam(Box<TokenCache>),
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    auth: ClientAuth,
    metrics: Option<ApiMetrics>,
    /// Built from `retry_base_delay` and `retry_max_delay`, checked once in [`DcsClient::new`].
    backoff: Backoff,
    /// `Host` header value: host, plus the port when it is not the scheme's default.
    host: String,
}

/// The DCS API client for one cloud (endpoint, project and credentials). Cheap to clone.
#[derive(Clone)]
pub struct DcsClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        let auth = match &self.inner.auth {
            ClientAuth::AkSk {
                access_key,
                security_token,
                ..
            } => format!(
                "AkSk {{ access_key: {access_key}, secret_key: ***, temporary: {} }}",
                security_token.is_some()
            ),
            ClientAuth::Iam(cache) => format!("Iam({cache:?})"),
        };
        f.debug_struct("DcsClient")
            .field("endpoint", &c.endpoint.as_str())
            .field("project_id", &c.project_id)
            .field("auth", &format_args!("{auth}"))
            .field("request_timeout", &c.request_timeout)
            .field("max_retries", &c.max_retries)
            .finish_non_exhaustive()
    }
}

/// What one attempt produced.
enum Attempt {
    Response {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    TooLarge {
        status: u16,
    },
    Transport {
        message: String,
        /// Whether the connection was made (so the request may have been sent).
        connected: bool,
    },
    Timeout,
}

/// A successful (2xx) answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

fn invalid(operation: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidRequest {
        operation,
        message: message.into(),
    }
}

/// The query string in canonical order, so that what is sent is what is signed.
fn build_query(pairs: &[(&str, String)]) -> String {
    signer::canonical_pairs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

/// Reads `Retry-After` given in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl DcsClient {
    /// Builds a client; fails on an endpoint that is not an http(s) base URL, header values
    /// that cannot be sent, or retry delays a backoff refuses (a zero base, a base above the
    /// maximum).
    pub fn new(config: ClientConfig, metrics: Option<ApiMetrics>) -> Result<DcsClient> {
        const OP: &str = "NewClient";
        let endpoint = &config.endpoint;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.cannot_be_a_base() {
            return Err(invalid(OP, "the endpoint must be an http(s) URL"));
        }
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(invalid(OP, "the endpoint has no host")),
        };
        if config.project_id.is_empty() {
            return Err(invalid(OP, "the project id is empty"));
        }
        if http::HeaderValue::from_str(&config.project_id).is_err() {
            return Err(invalid(
                OP,
                "the project id has characters a header cannot carry",
            ));
        }
        let backoff = request_backoff(&config)
            .map_err(|e| invalid(OP, format!("invalid retry delays: {e}")))?;
        let http = reqwest::Client::builder()
            // HTTP/1.1 like the official SDK: the signed Host header is sent as is.
            .http1_only()
            .connect_timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect would be followed with a signature for another URL; surface it instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| invalid(OP, format!("cannot build the HTTP client: {e}")))?;
        let auth = match &config.auth {
            Auth::AkSk {
                access_key,
                secret_key,
                security_token,
            } => ClientAuth::AkSk {
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
                security_token: security_token.clone(),
            },
            Auth::Iam {
                endpoint,
                user,
                password,
                domain,
                project_name,
            } => ClientAuth::Iam(Box::new(TokenCache::new(
                http.clone(),
                IamCredentials {
                    endpoint: endpoint.clone(),
                    user: user.clone(),
                    password: password.clone(),
                    domain: domain.clone(),
                    project_name: project_name.clone(),
                },
                config.request_timeout,
                config.max_body_bytes,
                metrics.clone(),
            ))),
        };
        Ok(DcsClient {
            inner: Arc::new(Inner {
                http,
                config,
                auth,
                metrics,
                backoff,
                host,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Proves endpoint and credentials work, for `check-config --online`: `ListInstances`
    /// (limit 1) when `instance_ids` is empty, else `ShowInstance` for each. Returns a one-line
    /// verdict.
    pub async fn check_online(&self, instance_ids: &[String]) -> Result<String> {
        let project = &self.inner.config.project_id;
        if instance_ids.is_empty() {
            let list = self
                .list_instances(&InstanceListQuery {
                    limit: Some(1),
                    ..InstanceListQuery::default()
                })
                .await?;
            let n = list
                .instance_num
                .unwrap_or(i64::try_from(list.instances.len()).unwrap_or(i64::MAX));
            return Ok(format!(
                "ListInstances OK: {n} instance(s) in project {project}"
            ));
        }
        let mut seen = Vec::with_capacity(instance_ids.len());
        for id in instance_ids {
            let info = self.show_instance(id).await?;
            seen.push(format!(
                "{} ({} {}, {})",
                info.instance_id,
                info.engine.as_deref().unwrap_or("?"),
                info.engine_version.as_deref().unwrap_or("?"),
                info.status.as_deref().unwrap_or("?")
            ));
        }
        Ok(format!(
            "ShowInstance OK for {} instance(s) in project {project}: {}",
            seen.len(),
            seen.join(", ")
        ))
    }

    /// `{endpoint}/v2/{project}/instances/{segments...}?{query}` with each segment encoded.
    fn url(
        &self,
        operation: &'static str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<url::Url> {
        self.url_in("instances", operation, segments, query)
    }

    /// Like [`url`](Self::url) under `/v2/{project}/{collection}` (`ListGroupReplicationInfo`
    /// lives under the singular `instance`).
    fn url_in(
        &self,
        collection: &str,
        operation: &'static str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<url::Url> {
        let c = &self.inner.config;
        let mut path = format!(
            "{}/v2/{}/{collection}",
            c.endpoint.path().trim_end_matches('/'),
            signer::encode(&c.project_id)
        );
        for s in segments {
            if s.is_empty() {
                return Err(invalid(operation, "an identifier in the path is empty"));
            }
            path.push('/');
            path.push_str(&signer::encode(s));
        }
        let mut url = c.endpoint.clone();
        url.set_path(&path);
        let q = build_query(query);
        url.set_query((!q.is_empty()).then_some(q.as_str()));
        url.set_fragment(None);
        Ok(url)
    }

    /// Sends a request with retries; returns the 2xx answer or the mapped error.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: url::Url,
        body: Vec<u8>,
    ) -> Result<Answer> {
        let cfg = &self.inner.config;
        let mut retry = 0u32;
        let mut reauthenticated = false;
        loop {
            let token = match &self.inner.auth {
                ClientAuth::Iam(cache) => {
                    Some(cache.token().await.map_err(|e| self.redact(e, None))?)
                }
                ClientAuth::AkSk { .. } => None,
            };
            // One permit of the caller's limit per attempt, none while backing off.
            let Ok(permit) = limit::acquire().await else {
                return Err(Error::Transport {
                    operation,
                    message: "not sent: the analysis stopped".into(),
                });
            };
            let started = Instant::now();
            let attempt = self
                .attempt(operation, &method, &url, &body, token.as_ref())
                .await?;
            let elapsed = started.elapsed();
            drop(permit);
            let status = match &attempt {
                Attempt::Response { status, .. } | Attempt::TooLarge { status } => Some(*status),
                Attempt::Transport { .. } | Attempt::Timeout => None,
            };
            if let Some(m) = &self.inner.metrics {
                m.observe(operation, status, elapsed.as_secs_f64());
            }
            tracing::debug!(
                operation,
                status = status.unwrap_or(0),
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                attempt = retry + 1,
                "DCS API request"
            );
            // Whether the service may have carried the request out although it failed.
            let maybe_done = match &attempt {
                Attempt::Response { status, .. } | Attempt::TooLarge { status } => {
                    *status >= 500 || (200..300).contains(status)
                }
                Attempt::Transport { connected, .. } => *connected,
                Attempt::Timeout => true,
            };
            let (error, wait_hint) = match attempt {
                Attempt::Response { status, body, .. } if (200..300).contains(&status) => {
                    return Ok(Answer { status, body });
                }
                Attempt::Response {
                    status: 401,
                    headers,
                    body,
                } => {
                    if let (Some(t), ClientAuth::Iam(cache)) = (&token, &self.inner.auth) {
                        if !reauthenticated {
                            reauthenticated = true;
                            cache.invalidate_token(t).await;
                            continue;
                        }
                    }
                    (api_error(operation, 401, &headers, &body), None)
                }
                Attempt::Response {
                    status,
                    headers,
                    body,
                } => {
                    let hint = if matches!(status, 429 | 503) {
                        retry_after(&headers)
                    } else {
                        None
                    };
                    (api_error(operation, status, &headers, &body), hint)
                }
                Attempt::TooLarge { .. } => (
                    Error::BodyTooLarge {
                        operation,
                        limit: cfg.max_body_bytes,
                    },
                    None,
                ),
                Attempt::Transport { message, .. } => {
                    (Error::Transport { operation, message }, None)
                }
                Attempt::Timeout => (
                    Error::Timeout {
                        operation,
                        after: cfg.request_timeout,
                    },
                    None,
                ),
            };
            // Before it is logged or returned.
            let error = self.redact(error, token.as_ref());
            if method == Method::POST && maybe_done {
                // Repeating a create that may have been carried out could make a second task.
                return Err(Error::OutcomeUnknown {
                    operation,
                    cause: Box::new(error),
                });
            }
            if !error.is_retryable() || retry >= cfg.max_retries {
                return Err(error);
            }
            let delay = retry_delay(
                &self.inner.backoff,
                retry,
                wait_hint,
                &mut rand::thread_rng(),
            );
            tracing::debug!(
                operation,
                error = %error,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "retrying DCS API request"
            );
            if limit::pause(delay).await.is_err() {
                return Err(error);
            }
            retry += 1;
        }
    }

    /// `e` with this client's secrets (and the IAM token of the attempt) removed from every
    /// text it quotes: an endpoint may echo the request, headers included.
    fn redact(&self, e: Error, token: Option<&Secret>) -> Error {
        let mut secrets: Vec<&str> = token.map(Secret::expose).into_iter().collect();
        match &self.inner.auth {
            ClientAuth::AkSk {
                secret_key,
                security_token,
                ..
            } => {
                secrets.push(secret_key.expose());
                secrets.extend(security_token.as_ref().map(Secret::expose));
            }
            ClientAuth::Iam(cache) => secrets.push(cache.password().expose()),
        }
        e.map_text(&|t| redact_secrets(t, &secrets))
    }

    /// One attempt: sign, send, read the capped body, all within `request_timeout`.
    /// Errors only when the request cannot be built at all.
    async fn attempt(
        &self,
        operation: &'static str,
        method: &Method,
        url: &url::Url,
        body: &[u8],
        token: Option<&Secret>,
    ) -> Result<Attempt> {
        let inner = &*self.inner;
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("Host".into(), inner.host.clone()),
            ("User-Agent".into(), USER_AGENT.into()),
            ("X-Project-Id".into(), inner.config.project_id.clone()),
        ];
        let mut authorization = None;
        match (&inner.auth, token) {
            (
                ClientAuth::AkSk {
                    access_key,
                    secret_key,
                    security_token,
                },
                _,
            ) => {
                if let Some(t) = security_token {
                    headers.push(("X-Security-Token".into(), t.expose().to_owned()));
                }
                let date = signer::format_sdk_date(OffsetDateTime::now_utc());
                headers.push((signer::HEADER_SDK_DATE.into(), date.clone()));
                let req = signer::SignableRequest {
                    method: method.as_str(),
                    path: url.path(),
                    query: url.query().unwrap_or(""),
                    headers: &headers,
                    body,
                };
                authorization = Some(signer::sign(&req, access_key, secret_key.expose(), &date));
            }
            (ClientAuth::Iam(_), Some(t)) => {
                headers.push(("X-Auth-Token".into(), t.expose().to_owned()));
            }
            (ClientAuth::Iam(_), None) => return Err(invalid(operation, "no IAM token")),
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers.iter().chain(
            authorization
                .as_ref()
                .map(|a| ("Authorization".to_owned(), a.clone()))
                .iter(),
        ) {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(operation, "bad header name"))?;
            let mut value = http::HeaderValue::from_str(value).map_err(|_| {
                invalid(
                    operation,
                    format!("the {name} header has characters a header cannot carry"),
                )
            })?;
            if name == "x-auth-token" || name == "x-security-token" || name == "authorization" {
                value.set_sensitive(true);
            }
            map.insert(name, value);
        }
        let mut request = inner.http.request(method.clone(), url.clone()).headers(map);
        if body.is_empty() {
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                request = request.header(http::header::CONTENT_LENGTH, "0");
            }
        } else {
            request = request.body(body.to_vec());
        }
        let limit = inner.config.max_body_bytes;
        let exchange = async move {
            let resp = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Transport {
                        message: transport_summary(&e),
                        connected: !e.is_connect(),
                    }
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            match read_body_capped(resp, limit).await {
                Ok(body) => Attempt::Response {
                    status,
                    headers,
                    body,
                },
                Err(BodyReadError::TooLarge) => Attempt::TooLarge { status },
                Err(BodyReadError::Transport(m)) => Attempt::Transport {
                    message: m,
                    connected: true,
                },
            }
        };
        Ok(
            match tokio::time::timeout(inner.config.request_timeout, exchange).await {
                Ok(a) => a,
                Err(_) => Attempt::Timeout,
            },
        )
    }

    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        url: url::Url,
        body: Vec<u8>,
    ) -> Result<T> {
        let answer = self.send(operation, method, url, body).await?;
        decode(operation, &answer).map_err(|e| self.redact(e, None))
    }
}

fn decode<T: DeserializeOwned>(operation: &'static str, answer: &Answer) -> Result<T> {
    decode_body(&answer.body).map_err(|e| Error::Decode {
        operation,
        status: answer.status,
        message: sanitised_excerpt(e.to_string().as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn test_config() -> ClientConfig {
        ClientConfig::new(
            "http://127.0.0.1:9".parse().unwrap(),
            "p",
            Auth::AkSk {
                access_key: "ak".into(),
                secret_key: Secret::new("sk"),
                security_token: None,
            },
        )
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        let q = build_query(&[
            ("status", "RUNNING".into()),
            ("offset", "0".into()),
            ("name", "dcs a/b".into()),
            ("limit", "10".into()),
        ]);
        assert_eq!(q, "limit=10&name=dcs%20a%2Fb&offset=0&status=RUNNING");
        assert_eq!(build_query(&[]), "");
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut config = test_config();
        config.retry_base_delay = base;
        config.retry_max_delay = max;
        let backoff = request_backoff(&config).unwrap();
        for retry in 0..40 {
            let cap = [100, 200, 400, 800, 1000][retry.min(4) as usize];
            let mut seen_high = false;
            for _ in 0..200 {
                let d = retry_delay(&backoff, retry, None, &mut rng);
                assert!(d <= Duration::from_millis(cap), "retry {retry}: {d:?}");
                seen_high |= d >= Duration::from_millis(cap / 2);
            }
            assert!(seen_high, "retry {retry} never came near its cap");
        }
        let hint = Some(Duration::from_secs(7));
        config.retry_max_delay = Duration::from_secs(30);
        let long = request_backoff(&config).unwrap();
        assert_eq!(
            retry_delay(&long, 0, hint, &mut rng),
            Duration::from_secs(7)
        );
        assert_eq!(retry_delay(&backoff, 0, hint, &mut rng), max);
    }

    #[test]
    fn invalid_retry_delays_are_refused_when_the_client_is_built() {
        let mut config = test_config();
        config.retry_base_delay = Duration::from_secs(5);
        config.retry_max_delay = Duration::from_secs(1);
        let Err(e) = DcsClient::new(config.clone(), None) else {
            panic!("a base above the max was accepted");
        };
        assert!(e.to_string().contains("invalid retry delays"), "{e}");
        config.retry_base_delay = Duration::ZERO;
        let Err(e) = DcsClient::new(config, None) else {
            panic!("a zero base was accepted");
        };
        assert!(e.to_string().contains("above zero"), "{e}");
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(" 12 "),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
