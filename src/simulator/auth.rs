//! Authentication as the API gateway does it: AK/SK signature verification and IAM tokens.
//!
//! A signature is recomputed with [`crate::dcs::signer`] from the request as received, using only
//! the headers named in `SignedHeaders` (so unsigned headers may change freely), and must match;
//! `X-Sdk-Date` must lie within 15 minutes of the wall clock advanced by the `clock_skew` fault.
//! Tokens are issued by `POST /v3/auth/tokens` (when [`SimConfig::iam`](super::SimConfig) is
//! set) and expire on the simulated clock. Every failure is a message for a 401 `APIG.0301`
//! answer; no message ever contains a secret.

use std::time::Duration;

use rand::RngCore;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{Shared, SimIam};
use crate::dcs::signer::{self, SignableRequest};
use crate::dcs::timestamp;

/// Maximum distance between `X-Sdk-Date` and the server clock.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The prefix of every APIG.0301 message.
const PREFIX: &str = "Incorrect IAM authentication information";

/// A token issued by the simulated IAM.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub project_id: String,
    pub expires_at: OffsetDateTime,
}

/// The first value of header `name` (case-insensitive) as received.
fn header<'a>(req: &SignableRequest<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Who a request authenticated as.
#[derive(Debug, PartialEq, Eq)]
pub enum Principal {
    /// AK/SK; the `X-Project-Id` header, when sent.
    AkSk { project_header: Option<String> },
    /// An IAM token scoped to this project.
    Token { project_id: String },
}

fn fail(detail: &str) -> String {
    format!("{PREFIX}: {detail}")
}

/// Compares two strings in time independent of where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Authenticates a DCS request; `Err` holds the APIG.0301 message.
pub fn authenticate(
    shared: &Shared,
    req: &SignableRequest<'_>,
    clock_skew: Duration,
) -> Result<Principal, String> {
    if let Some(value) = header(req, "authorization") {
        return verify_signature(shared, req, value, clock_skew);
    }
    if let Some(token) = header(req, "x-auth-token") {
        return verify_token(shared, token);
    }
    Err(fail("x-auth-token not found"))
}

fn verify_signature(
    shared: &Shared,
    req: &SignableRequest<'_>,
    authorization: &str,
    clock_skew: Duration,
) -> Result<Principal, String> {
    let bad = || fail("verify aksk signature fail");
    let parsed = signer::parse_authorization(authorization).ok_or_else(bad)?;
    if parsed.access_key != shared.access_key {
        return Err(fail(&format!(
            "Get secretKey failed,ak:{},err:ak not exist",
            parsed.access_key
        )));
    }
    let date_value = header(req, signer::HEADER_SDK_DATE).ok_or_else(bad)?;
    let date = signer::parse_sdk_date(date_value.trim()).ok_or_else(bad)?;
    let server_now = OffsetDateTime::now_utc() + clock_skew;
    if (server_now - date).unsigned_abs() > SIGNATURE_WINDOW {
        return Err(bad());
    }
    let expected = signer::signature(
        req,
        &parsed.signed_headers,
        shared.secret_key.expose(),
        date_value.trim(),
    );
    if !constant_time_eq(&expected, &parsed.signature.to_ascii_lowercase()) {
        return Err(bad());
    }
    Ok(Principal::AkSk {
        project_header: header(req, "x-project-id").map(str::to_owned),
    })
}

fn verify_token(shared: &Shared, token: &str) -> Result<Principal, String> {
    let issued = shared.world().tokens.get(token.trim()).cloned();
    let issued = issued.ok_or_else(|| fail("decrypt token fail"))?;
    if shared.clock.now() >= issued.expires_at {
        return Err(fail(&format!(
            "token expires, expires_at: {}",
            timestamp::format(issued.expires_at)
        )));
    }
    Ok(Principal::Token {
        project_id: issued.project_id,
    })
}

/// An IAM answer: status, body, and the token for `X-Subject-Token`.
pub struct IamAnswer {
    pub status: u16,
    pub body: Value,
    pub token: Option<String>,
}

fn iam_error(status: u16, title: &str, message: &str) -> IamAnswer {
    IamAnswer {
        status,
        body: json!({"error": {"code": status, "title": title, "message": message}}),
        token: None,
    }
}

/// `POST /v3/auth/tokens` with a password identity and a project scope.
pub fn issue_token(shared: &Shared, iam: &SimIam, body: &[u8]) -> IamAnswer {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return iam_error(400, "Bad Request", "The request body is not valid JSON.");
    };
    let identity = &v["auth"]["identity"];
    let password_method = identity["methods"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "password"));
    let user = &identity["password"]["user"];
    let (Some(name), Some(password), Some(domain)) = (
        user["name"].as_str(),
        user["password"].as_str(),
        user["domain"]["name"].as_str(),
    ) else {
        return iam_error(400, "Bad Request", "The request body is invalid.");
    };
    if !password_method {
        return iam_error(400, "Bad Request", "The request body is invalid.");
    }
    if name != iam.user
        || !constant_time_eq(password, iam.password.expose())
        || domain != iam.domain
    {
        return iam_error(401, "Unauthorized", "The username or password is wrong.");
    }
    let project = &v["auth"]["scope"]["project"];
    let scoped = project["name"].as_str() == Some(iam.project_name.as_str())
        || project["id"].as_str() == Some(shared.project_id.as_str());
    if !scoped {
        return iam_error(
            400,
            "Bad Request",
            "The project in the scope does not exist.",
        );
    }
    let issued_at = shared.clock.now();
    let expires_at = issued_at + iam.token_lifetime;
    let mut bytes = [0u8; 48];
    shared.world().rng.fill_bytes(&mut bytes);
    let token = format!("MIIsim{}", hex::encode(bytes));
    shared.world().tokens.insert(
        token.clone(),
        IssuedToken {
            project_id: shared.project_id.clone(),
            expires_at,
        },
    );
    // IAM writes microseconds: 2020-01-04T09:08:49.965000Z.
    let iam_time = |t: OffsetDateTime| timestamp::format(t).replace('Z', "000Z");
    let domain_obj = json!({"id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "name": iam.domain});
    let body = json!({"token": {
        "expires_at": iam_time(expires_at),
        "issued_at": iam_time(issued_at),
        "methods": ["password"],
        "catalog": [],
        "roles": [{"id": "0", "name": "op_fine_grained"}],
        "project": {"id": shared.project_id, "name": iam.project_name, "domain": domain_obj},
        "user": {"id": "f0e1d2c3b4a5968778695a4b3c2d1e0f", "name": iam.user, "domain": domain_obj,
                 "password_expires_at": ""},
    }});
    IamAnswer {
        status: 201,
        body,
        token: Some(token),
    }
}
