//! HTTP basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! As in exporter-toolkit: every path needs credentials once users are configured (health and
//! readiness included); a request without valid credentials gets 401 with
//! `WWW-Authenticate: Basic`. Hashes are checked with the `bcrypt` crate, whose final comparison
//! is constant-time. An unknown user is checked against a dummy hash, so response times do not
//! reveal which users exist.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), and Prometheus sends the same
//! credentials on every scrape, so verdicts are cached under a SHA-256 of user, hash and password
//! (never the password itself); the cache holds at most [`CACHE_ENTRIES`] verdicts, is cleared
//! when full, and is dropped with the config when the web config changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use http::header::{self, HeaderMap};
use sha2::{Digest, Sha256};

/// Most verdicts kept in the cache.
pub const CACHE_ENTRIES: usize = 1024;

/// The `basic_auth_users` of a web config.
pub struct BasicAuth {
    /// User → bcrypt hash.
    users: BTreeMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Checks each user name and hash; an error names the user's key but not the hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, (String, String)> {
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err((
                    key,
                    "a user name must be non-empty and contain no ':'".into(),
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err((
                    key,
                    "is not a bcrypt hash ($2a$, $2b$, $2x$ or $2y$ format)".into(),
                ));
            }
        }
        Ok(BasicAuth {
            users,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether the request's `Authorization` header holds valid credentials. Runs bcrypt on a
    /// cache miss: call it from a blocking thread (see [`BasicAuth::authorize`]).
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else {
            return false;
        };
        let hash = self.users.get(&user);
        let mut id = Sha256::new();
        for part in [
            user.as_bytes(),
            hash.map_or(&b""[..], |h| h.as_bytes()),
            &password,
        ] {
            id.update((part.len() as u64).to_le_bytes());
            id.update(part);
        }
        let id: [u8; 32] = id.finalize().into();
        if let Some(&verdict) = self.lock().get(&id) {
            return verdict;
        }
        let verdict = match hash {
            Some(h) => bcrypt::verify(&password, h).unwrap_or(false),
            None => {
                // Spend the same time as for a known user, then refuse.
                let _ = bcrypt::verify(&password, dummy_hash());
                false
            }
        };
        let mut cache = self.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id, verdict);
        verdict
    }

    /// [`BasicAuth::check`] on a blocking thread.
    pub async fn authorize(self: &std::sync::Arc<Self>, headers: &HeaderMap) -> bool {
        // Only the Authorization header crosses to the blocking thread.
        let mut only = HeaderMap::new();
        for v in headers.get_all(header::AUTHORIZATION) {
            only.append(header::AUTHORIZATION, v.clone());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.check(&only))
            .await
            .unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], bool>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// User and password of a single `Authorization: Basic …` header (RFC 7617).
fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// A bcrypt hash (cost 10, the usual cost) of a random password, for unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password: [u8; 16] = rand::random();
        bcrypt::hash(password, bcrypt::DEFAULT_COST).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("valid"),
        );
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers(&format!("Basic {token}"))
    }

    fn auth() -> BasicAuth {
        // Cost 4 keeps the test fast; the verdict does not depend on the cost.
        let hash = bcrypt::hash("s3cret:with:colons", 4).expect("hash");
        BasicAuth::new(BTreeMap::from([("alice".to_owned(), hash)])).expect("valid")
    }

    #[test]
    fn right_wrong_and_missing_credentials() {
        let a = auth();
        assert!(a.check(&basic("alice", "s3cret:with:colons")));
        // Cached verdicts give the same answers.
        assert!(a.check(&basic("alice", "s3cret:with:colons")));
        assert!(!a.check(&basic("alice", "s3cret")));
        assert!(!a.check(&basic("bob", "s3cret:with:colons")));
        assert!(!a.check(&HeaderMap::new()));
        assert!(!a.check(&headers("Bearer abc")));
        assert!(!a.check(&headers("Basic !!!not-base64")));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let a = auth();
        let token = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        assert!(a.check(&headers(&format!("bAsIc {token}"))));
    }

    #[test]
    fn hashes_from_other_implementations_verify() {
        // Generated by Python's bcrypt and by Node's bcrypt (from the bcrypt crate's test
        // suite): independent implementations of the same format.
        let users = BTreeMap::from([
            (
                "py".to_owned(),
                "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie".to_owned(),
            ),
            (
                "node".to_owned(),
                "$2a$04$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi".to_owned(),
            ),
        ]);
        let a = BasicAuth::new(users).expect("valid");
        assert_eq!(a.user_count(), 2);
        assert!(a.check(&basic("py", "correctbatteryhorsestapler")));
        assert!(a.check(&basic("node", "correctbatteryhorsestapler")));
        assert!(!a.check(&basic("py", "correctbatteryhorsestaple")));
    }

    #[test]
    fn invalid_users_and_hashes_are_refused() {
        let h = bcrypt::hash("x", 4).expect("hash");
        assert!(BasicAuth::new(BTreeMap::from([("a:b".to_owned(), h)])).is_err());
        let e = BasicAuth::new(BTreeMap::from([("a".to_owned(), "$2y$xx".to_owned())]))
            .expect_err("bad hash");
        assert_eq!(e.0, "basic_auth_users.a");
        assert!(!e.1.contains("$2y$xx"));
    }
}
