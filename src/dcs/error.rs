//! Typed errors of the DCS API client.
//!
//! Every failure carries the operation it happened in. An [`Error::Api`] keeps the HTTP status,
//! the DCS error code, its message and the request id; [`Error::api_code`] names the codes the
//! exporter acts on. [`Error::failure_reason`] maps each error onto the bounded `reason` label of
//! `dcs_analysis_failures_total`. No variant ever holds a credential: a non-2xx answer becomes
//! an [`Error::Api`] here, its fields sanitised (`api_error`, shared by the client's calls).

use std::time::Duration;

use http::HeaderMap;

use crate::dcs::model::ErrorBody;
use crate::dcs::transport::{sanitise, sanitised_excerpt};

/// Result type of the DCS client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The documented error codes this crate acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCode {
    /// DCS.4918: an analysis of this kind is already running on the instance.
    AnalysisRunning,
    /// DCS.4919: big key analysis not supported by the instance.
    BigkeyUnsupported,
    /// DCS.4922: hot key analysis not supported (Redis 3.0, or a non-LFU eviction policy).
    HotkeyUnsupported,
    /// DCS.4941: no such hot key task.
    HotkeyTaskNotFound,
    /// DCS.4942: no such big key task.
    BigkeyTaskNotFound,
    /// DCS.3022 (also 111404022): no such instance.
    InstanceNotFound,
    /// DCS.4231: an offline key analysis is already running on the instance.
    OfflineAnalysisRunning,
    /// DCS.4232: no such offline key analysis task.
    OfflineTaskNotFound,
    /// APIG.0301 / APIGW.0301: authentication failed (signature, token, clock skew).
    BadSignature,
}

impl ApiCode {
    /// Maps a wire error code to a known code.
    pub fn from_code(code: &str) -> Option<ApiCode> {
        Some(match code {
            "DCS.4918" => ApiCode::AnalysisRunning,
            "DCS.4919" => ApiCode::BigkeyUnsupported,
            "DCS.4922" => ApiCode::HotkeyUnsupported,
            "DCS.4941" => ApiCode::HotkeyTaskNotFound,
            "DCS.4942" => ApiCode::BigkeyTaskNotFound,
            "DCS.3022" | "111404022" => ApiCode::InstanceNotFound,
            "DCS.4231" => ApiCode::OfflineAnalysisRunning,
            "DCS.4232" => ApiCode::OfflineTaskNotFound,
            "APIG.0301" | "APIGW.0301" => ApiCode::BadSignature,
            _ => return None,
        })
    }

    /// The canonical wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::AnalysisRunning => "DCS.4918",
            ApiCode::BigkeyUnsupported => "DCS.4919",
            ApiCode::HotkeyUnsupported => "DCS.4922",
            ApiCode::HotkeyTaskNotFound => "DCS.4941",
            ApiCode::BigkeyTaskNotFound => "DCS.4942",
            ApiCode::InstanceNotFound => "DCS.3022",
            ApiCode::OfflineAnalysisRunning => "DCS.4231",
            ApiCode::OfflineTaskNotFound => "DCS.4232",
            ApiCode::BadSignature => "APIG.0301",
        }
    }
}

/// A failed DCS API call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service answered with an error status.
    #[error("{operation}: HTTP {status} {}: {message}{}", code.as_deref().unwrap_or("(no error code)"), request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    Api {
        operation: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
    },
    /// The request could not be sent or the response not read (connection refused, reset, TLS).
    #[error("{operation}: transport error: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    /// No complete answer within the request timeout.
    #[error("{operation}: no answer within {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The answer was not the JSON this operation returns.
    #[error("{operation}: malformed response (HTTP {status}): {message}")]
    Decode {
        operation: &'static str,
        status: u16,
        message: String,
    },
    /// The answer was larger than the configured cap.
    #[error("{operation}: response body exceeds {limit} bytes")]
    BodyTooLarge {
        operation: &'static str,
        limit: usize,
    },
    /// A request that is not safe to repeat (a create) failed in a way that leaves open whether
    /// the service carried it out: no complete answer in time, a connection lost after the
    /// request was sent, a 5xx, or a 2xx answer that could not be read. It is not retried; the
    /// caller must look (list) before asking again.
    #[error(
        "{operation}: outcome unknown, not retried (the service may have carried it out): {cause}"
    )]
    OutcomeUnknown {
        operation: &'static str,
        cause: Box<Error>,
    },
    /// Obtaining an IAM token failed.
    #[error("IAM token request failed: {message}")]
    Token {
        status: Option<u16>,
        message: String,
    },
    /// The request could not be built (bad endpoint, bad identifier).
    #[error("{operation}: invalid request: {message}")]
    InvalidRequest {
        operation: &'static str,
        message: String,
    },
}

impl Error {
    /// The known DCS error code of an API error, if any.
    pub fn api_code(&self) -> Option<ApiCode> {
        match self {
            Error::Api { code: Some(c), .. } => ApiCode::from_code(c),
            _ => None,
        }
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            Error::Token { status, .. } => *status,
            Error::OutcomeUnknown { cause, .. } => cause.status(),
            _ => None,
        }
    }

    /// Whether the request may have been carried out although it failed (see
    /// [`Error::OutcomeUnknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// DCS.4919 or DCS.4922: the instance does not support this analysis.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self.api_code(),
            Some(ApiCode::BigkeyUnsupported | ApiCode::HotkeyUnsupported)
        )
    }

    /// DCS.4918 (big key) or DCS.4231 (offline key analysis): an analysis is already running.
    pub fn is_already_running(&self) -> bool {
        matches!(
            self.api_code(),
            Some(ApiCode::AnalysisRunning | ApiCode::OfflineAnalysisRunning)
        )
    }

    /// The task or instance does not exist (DCS.4941, DCS.4942, DCS.4232, DCS.3022, or a 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.api_code(),
            Some(
                ApiCode::HotkeyTaskNotFound
                    | ApiCode::BigkeyTaskNotFound
                    | ApiCode::OfflineTaskNotFound
                    | ApiCode::InstanceNotFound
            )
        ) || self.status() == Some(404)
    }

    /// Authentication or authorisation failed (401, 403, APIG.0301, IAM token failure).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Token { .. })
            || matches!(self.status(), Some(401 | 403))
            || self.api_code() == Some(ApiCode::BadSignature)
    }

    /// Whether retrying the same request may succeed: transport errors, timeouts, 429 and 5xx.
    /// Never a 4xx other than 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Api { status, .. } | Error::Decode { status, .. } => {
                *status == 429 || *status >= 500
            }
            Error::BodyTooLarge { .. }
            | Error::Token { .. }
            | Error::InvalidRequest { .. }
            | Error::OutcomeUnknown { .. } => false,
        }
    }

    /// The error with `f` applied to every text it quotes from an answer or a transport
    /// error (messages, codes, request ids), for redaction.
    pub(crate) fn map_text(self, f: &impl Fn(String) -> String) -> Error {
        match self {
            Error::Api {
                operation,
                status,
                code,
                message,
                request_id,
            } => Error::Api {
                operation,
                status,
                code: code.map(f),
                message: f(message),
                request_id: request_id.map(f),
            },
            Error::Transport { operation, message } => Error::Transport {
                operation,
                message: f(message),
            },
            Error::Decode {
                operation,
                status,
                message,
            } => Error::Decode {
                operation,
                status,
                message: f(message),
            },
            Error::Token { status, message } => Error::Token {
                status,
                message: f(message),
            },
            Error::InvalidRequest { operation, message } => Error::InvalidRequest {
                operation,
                message: f(message),
            },
            Error::OutcomeUnknown { operation, cause } => Error::OutcomeUnknown {
                operation,
                cause: Box::new(cause.map_text(f)),
            },
            e @ (Error::Timeout { .. } | Error::BodyTooLarge { .. }) => e,
        }
    }

    /// The `reason` label of `dcs_analysis_failures_total` for an attempt that failed with this
    /// error: `auth`, `unsupported` or `api_error`.
    pub fn failure_reason(&self) -> &'static str {
        if self.is_auth() {
            "auth"
        } else if self.is_unsupported() {
            "unsupported"
        } else {
            "api_error"
        }
    }
}

/// Maps a non-2xx answer onto [`Error::Api`].
pub(crate) fn api_error(
    operation: &'static str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    let header_id = field(headers.get("x-request-id").and_then(|v| v.to_str().ok()));
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|e| e.error_code.is_some() || e.error_msg.is_some());
    match parsed {
        Some(e) => Error::Api {
            operation,
            status,
            code: field(e.error_code.as_deref()),
            message: field(e.error_msg.as_deref()).unwrap_or_default(),
            request_id: header_id.or_else(|| field(e.request_id.as_deref())),
        },
        None => Error::Api {
            operation,
            status,
            code: None,
            message: sanitised_excerpt(body),
            request_id: header_id,
        },
    }
}

/// A sanitised, non-empty string field of an error answer.
fn field(s: Option<&str>) -> Option<String> {
    s.map(|s| sanitise(s.as_bytes())).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> Error {
        Error::Api {
            operation: "CreateBigkeyScanTask",
            status,
            code: Some(code.into()),
            message: "m".into(),
            request_id: Some("req-1".into()),
        }
    }

    #[test]
    fn documented_codes_are_named() {
        assert!(api(400, "DCS.4918").is_already_running());
        assert!(api(400, "DCS.4919").is_unsupported());
        assert!(api(400, "DCS.4922").is_unsupported());
        assert!(api(400, "DCS.4941").is_not_found());
        assert!(api(400, "DCS.4942").is_not_found());
        assert!(api(400, "DCS.4231").is_already_running());
        assert!(api(400, "DCS.4232").is_not_found());
        assert!(api(404, "DCS.3022").is_not_found());
        assert!(api(404, "111404022").is_not_found());
        assert!(api(401, "APIG.0301").is_auth());
        assert_eq!(api(400, "DCS.4922").failure_reason(), "unsupported");
        assert_eq!(api(401, "APIG.0301").failure_reason(), "auth");
        assert_eq!(api(403, "DCS.2003").failure_reason(), "auth");
        assert_eq!(api(500, "DCS.5000").failure_reason(), "api_error");
    }

    #[test]
    fn only_transport_429_and_5xx_are_retried() {
        assert!(api(500, "DCS.5000").is_retryable());
        assert!(api(503, "X").is_retryable());
        assert!(api(429, "APIG.0308").is_retryable());
        for s in [400, 401, 403, 404, 405, 409] {
            assert!(
                !api(s, "DCS.4800").is_retryable(),
                "{s} must not be retried"
            );
        }
        let t = Error::Transport {
            operation: "X",
            message: "reset".into(),
        };
        assert!(t.is_retryable());
        let b = Error::BodyTooLarge {
            operation: "X",
            limit: 1,
        };
        assert!(!b.is_retryable());
    }

    #[test]
    fn display_names_operation_code_and_request_id() {
        let s = api(400, "DCS.4918").to_string();
        assert_eq!(
            s,
            "CreateBigkeyScanTask: HTTP 400 DCS.4918: m (request id req-1)"
        );
    }

    #[test]
    fn error_bodies_map_to_api_errors() {
        let mut h = HeaderMap::new();
        let e = api_error("CreateBigkeyScanTask", 400, &h,
            br#"{"error_code":"DCS.4918","error_msg":"Instance bigkey analyze is running.","error_ext_msg":null}"#);
        assert!(e.is_already_running());
        assert_eq!(
            e.to_string(),
            "CreateBigkeyScanTask: HTTP 400 DCS.4918: Instance bigkey analyze is running."
        );
        let e = api_error("ShowInstance", 401, &h,
            br#"{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: verify aksk signature fail","request_id":"body-id"}"#);
        assert!(matches!(&e, Error::Api { request_id: Some(r), .. } if r == "body-id"));
        h.insert("x-request-id", http::HeaderValue::from_static("hdr-id"));
        let e = api_error(
            "ShowInstance",
            401,
            &h,
            br#"{"error_code":"APIG.0301","error_msg":"m","request_id":"body-id"}"#,
        );
        assert!(matches!(&e, Error::Api { request_id: Some(r), .. } if r == "hdr-id"));
        let e = api_error(
            "ShowInstance",
            400,
            &HeaderMap::new(),
            br#"{"error_code":"","error_msg":"m"}"#,
        );
        assert!(
            matches!(&e, Error::Api { code: None, request_id: None, message, .. } if message == "m")
        );
        let e = api_error("ShowInstance", 502, &h, b"<html>bad gateway</html>");
        assert!(
            matches!(&e, Error::Api { code: None, status: 502, message, .. } if message == "<html>bad gateway</html>")
        );
    }
}
