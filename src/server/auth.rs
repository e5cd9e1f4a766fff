//! HTTP basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! As in exporter-toolkit: every path needs credentials once users are configured (health and
//! readiness included); a request without valid credentials gets 401 with
//! `WWW-Authenticate: Basic`. Hashes are checked with the `bcrypt` crate, whose final comparison
//! is constant-time.
//!
//! # Bounding the work of unauthenticated clients
//! bcrypt is slow on purpose (about 0.1 s of a core at cost 10, doubling with each step), and anyone who
//! can reach the port can ask for a check. So:
//! - A hash's cost must be between [`MIN_COST`] and [`MAX_COST`], checked at load: a cost-31
//!   hash would make one request burn a core for about a day.
//! - At most [`MAX_CONCURRENT_VERIFICATIONS`] checks run at once, on blocking threads (never on
//!   the async runtime), and at most [`MAX_WAITING_VERIFICATIONS`] more wait for their turn;
//!   beyond that a request is answered `429` at once ([`Verdict::Busy`]).
//! - Prometheus sends the same credentials on every scrape, so granted verdicts are cached
//!   under a SHA-256 of user, hash and password (never the password itself): an authorized
//!   scrape is answered from the cache without waiting for a check, however many wrong
//!   passwords are queued. Refusals are cached apart, so a flood of wrong passwords cannot
//!   evict a granted verdict. Each cache holds at most [`CACHE_ENTRIES`] verdicts and is
//!   cleared when full; both are dropped with the config when the web config changes.
//! - An unknown user is checked against a dummy hash of the highest cost among the configured
//!   hashes, so that it takes as long as a known user's check and response times do not reveal
//!   which users exist. The dummy hash is made when the config is adopted
//!   ([`BasicAuth::prepare`]), not by the first unknown user.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use http::header::{self, HeaderMap};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Most verdicts kept in each cache (granted, refused).
pub const CACHE_ENTRIES: usize = 1024;
/// The lowest bcrypt cost the format allows.
pub const MIN_COST: u32 = 4;
/// The highest bcrypt cost accepted: one to two seconds per check on one core.
pub const MAX_COST: u32 = 14;
/// Most bcrypt checks running at once.
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 2;
/// Most requests waiting for a check; more get [`Verdict::Busy`].
pub const MAX_WAITING_VERIFICATIONS: usize = 64;

/// The answer to a request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Granted,
    Denied,
    /// Too many checks already running or waiting: try again later (`429`).
    Busy,
}

/// The `basic_auth_users` of a web config.
pub struct BasicAuth {
    /// User → bcrypt hash.
    users: BTreeMap<String, String>,
    granted: Mutex<HashSet<[u8; 32]>>,
    denied: Mutex<HashSet<[u8; 32]>>,
    cache_entries: usize,
    /// The cost of the dummy hash: the highest of the users' hashes.
    dummy_cost: u32,
    dummy: OnceLock<String>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// bcrypt checks run so far.
    verifications: AtomicU64,
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
        let mut dummy_cost = MIN_COST;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err((
                    key,
                    "a user name must be non-empty and contain no ':'".into(),
                ));
            }
            let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
                return Err((
                    key,
                    "is not a bcrypt hash ($2a$, $2b$, $2x$ or $2y$ format)".into(),
                ));
            };
            let cost = parts.get_cost();
            if !(MIN_COST..=MAX_COST).contains(&cost) {
                return Err((
                    key,
                    format!(
                        "the bcrypt cost is {cost}, outside {MIN_COST} to {MAX_COST}: each \
                         step doubles the time of a check (cost {MAX_COST} takes about a second); \
                         make the hash with cost 10: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
                    ),
                ));
            }
            dummy_cost = dummy_cost.max(cost);
        }
        Ok(BasicAuth {
            users,
            granted: Mutex::new(HashSet::new()),
            denied: Mutex::new(HashSet::new()),
            cache_entries: CACHE_ENTRIES,
            dummy_cost,
            dummy: OnceLock::new(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFICATIONS)),
            waiting: AtomicUsize::new(0),
            max_waiting: MAX_WAITING_VERIFICATIONS,
            verifications: AtomicU64::new(0),
        })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// How many bcrypt checks have run.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Whether the request's `Authorization` header holds valid credentials. Runs bcrypt on a
    /// cache miss, without any bound: the server uses [`BasicAuth::authorize`].
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(c) = Credentials::of(headers, &self.users) else {
            return false;
        };
        if let Some(v) = self.cached(&c.id) {
            return v;
        }
        self.verify(&c)
    }

    /// The verdict on the request's credentials: from the cache, else from a bcrypt check on
    /// a blocking thread, of which at most [`MAX_CONCURRENT_VERIFICATIONS`] run at once.
    pub async fn authorize(self: &Arc<Self>, headers: &HeaderMap) -> Verdict {
        let Some(c) = Credentials::of(headers, &self.users) else {
            return Verdict::Denied;
        };
        match self.cached(&c.id) {
            Some(true) => return Verdict::Granted,
            Some(false) => return Verdict::Denied,
            None => {}
        }
        let permit = {
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Verdict::Busy;
            }
            let permit = self.permits.clone().acquire_owned().await;
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            match permit {
                Ok(p) => p,
                Err(_) => return Verdict::Denied,
            }
        };
        let this = self.clone();
        let granted = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Another request may have checked the same credentials meanwhile.
            this.cached(&c.id).unwrap_or_else(|| this.verify(&c))
        })
        .await
        .unwrap_or(false);
        if granted {
            Verdict::Granted
        } else {
            Verdict::Denied
        }
    }

    fn cached(&self, id: &[u8; 32]) -> Option<bool> {
        if lock(&self.granted).contains(id) {
            return Some(true);
        }
        lock(&self.denied).contains(id).then_some(false)
    }

    /// Runs bcrypt and caches the verdict.
    fn verify(&self, c: &Credentials) -> bool {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let verdict = match &c.hash {
            Some(h) => bcrypt::verify(&c.password, h).unwrap_or(false),
            None => {
                // Spend the same time as for a known user, then refuse.
                let _ = bcrypt::verify(&c.password, self.dummy_hash());
                false
            }
        };
        let mut cache = lock(if verdict { &self.granted } else { &self.denied });
        if cache.len() >= self.cache_entries {
            cache.clear();
        }
        cache.insert(c.id);
        verdict
    }

    /// Computes the dummy hash now (one bcrypt hash at the users' highest cost), so that the
    /// first unknown user does not take longer than a known one. Blocking.
    pub fn prepare(&self) {
        let _ = self.dummy_hash();
    }

    /// A hash of a random password at the users' highest cost, for unknown users.
    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| {
            let password: [u8; 16] = rand::random();
            bcrypt::hash(password, self.dummy_cost).unwrap_or_default()
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A cache is only ever added to or cleared: a poisoned one is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request's credentials, the hash they are checked against, and their cache id.
struct Credentials {
    password: Vec<u8>,
    hash: Option<String>,
    id: [u8; 32],
}

impl Credentials {
    fn of(headers: &HeaderMap, users: &BTreeMap<String, String>) -> Option<Credentials> {
        let (user, password) = credentials(headers)?;
        let hash = users.get(&user).cloned();
        let mut id = Sha256::new();
        for part in [
            user.as_bytes(),
            hash.as_deref().map_or(&b""[..], str::as_bytes),
            &password,
        ] {
            id.update((part.len() as u64).to_le_bytes());
            id.update(part);
        }
        Some(Credentials {
            password,
            hash,
            id: id.finalize().into(),
        })
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

    /// A syntactically valid hash of the given cost (its digest is irrelevant to the checks at
    /// load, and computing a cost-31 hash would take a day).
    fn hash_of_cost(cost: u32) -> String {
        let h = bcrypt::hash("x", 4).expect("hash");
        format!("$2b${cost:02}{}", &h[6..])
    }

    #[test]
    fn absurd_costs_are_refused_at_load() {
        for cost in [3, 15, 31] {
            let e = BasicAuth::new(BTreeMap::from([("a".to_owned(), hash_of_cost(cost))]))
                .expect_err("absurd cost");
            assert_eq!(e.0, "basic_auth_users.a");
            assert!(
                e.1.contains(&format!("the bcrypt cost is {cost}, outside 4 to 14")),
                "{}",
                e.1
            );
        }
        for cost in [4, 10, 14] {
            BasicAuth::new(BTreeMap::from([("a".to_owned(), hash_of_cost(cost))]))
                .expect("accepted cost");
        }
    }

    #[test]
    fn unknown_users_are_checked_at_the_users_cost() {
        // Two users, costs 4 and 5: an unknown user costs as much as the slowest known one.
        let users = BTreeMap::from([
            ("a".to_owned(), bcrypt::hash("pa", 4).expect("hash")),
            ("b".to_owned(), bcrypt::hash("pb", 5).expect("hash")),
        ]);
        let a = BasicAuth::new(users).expect("valid");
        assert!(!a.check(&basic("mallory", "guess")));
        assert_eq!(
            a.verifications(),
            1,
            "the unknown user was checked with bcrypt"
        );
        let dummy: bcrypt::HashParts = a.dummy_hash().parse().expect("a bcrypt hash");
        assert_eq!(dummy.get_cost(), 5);
    }

    #[test]
    fn wrong_passwords_never_evict_a_granted_verdict() {
        let mut a = auth();
        a.cache_entries = 4;
        assert!(a.check(&basic("alice", "s3cret:with:colons")));
        assert_eq!(a.verifications(), 1);
        for i in 0..10 {
            assert!(!a.check(&basic("alice", &format!("wrong-{i}"))));
        }
        assert_eq!(a.verifications(), 11);
        // Still answered from the cache: no further bcrypt check.
        assert!(a.check(&basic("alice", "s3cret:with:colons")));
        assert_eq!(a.verifications(), 11);
    }

    #[tokio::test]
    async fn verifications_are_bounded_and_cached_grants_do_not_wait() {
        let mut a = auth();
        a.max_waiting = 3;
        let a = Arc::new(a);
        let right = basic("alice", "s3cret:with:colons");
        assert_eq!(a.authorize(&right).await, Verdict::Granted);
        // Every check slot taken (as by a flood of slow wrong passwords).
        let held = a
            .permits
            .clone()
            .acquire_many_owned(MAX_CONCURRENT_VERIFICATIONS as u32)
            .await
            .expect("permits");
        // Wrong passwords wait for a slot, up to the bound...
        let mut waiting = Vec::new();
        for i in 0..3 {
            let a = a.clone();
            let h = basic("alice", &format!("wrong-{i}"));
            waiting.push(tokio::spawn(async move { a.authorize(&h).await }));
        }
        while a.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        // ... and beyond it are turned away at once.
        assert_eq!(
            a.authorize(&basic("alice", "one-more")).await,
            Verdict::Busy
        );
        assert_eq!(a.authorize(&basic("eve", "x")).await, Verdict::Busy);
        // The authorized scrape does not queue behind them.
        assert_eq!(a.authorize(&right).await, Verdict::Granted);
        assert_eq!(a.verifications(), 1);
        // Once slots free up, the waiting checks run and are refused.
        drop(held);
        for w in waiting {
            assert_eq!(w.await.expect("task"), Verdict::Denied);
        }
        assert_eq!(a.verifications(), 4);
        assert!(a.permits.available_permits() == MAX_CONCURRENT_VERIFICATIONS);
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
