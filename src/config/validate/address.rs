//! A Redis target's `address`: `redis://[user[:password]@]host[:port]`, `rediss://` for TLS,
//! or `host:port` alone, which means `redis://host:port` (as redis_exporter and `redis-cli -u`
//! users write it).
//!
//! The address may carry credentials, so no message here ever repeats the text. The parts of
//! the user information are percent-decoded strictly: `%` must start an escape of two
//! hexadecimal digits (a literal `%` is `%25`), and what they decode to must be UTF-8. Port 0
//! is refused: no server listens there, and the connection would fail only at the first scan.

use url::Url;

use super::super::redis::RedisAddress;
use crate::secret::Secret;

/// The port a Redis server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 6379;

/// What an address says, and what is wrong with it (each a message for the `address` key).
#[derive(Debug)]
pub struct Parsed {
    /// The scheme, host and port; host empty when the address could not be read.
    pub address: RedisAddress,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub problems: Vec<String>,
}

impl Parsed {
    fn refused(why: String) -> Parsed {
        Parsed {
            address: RedisAddress {
                tls: false,
                host: String::new(),
                port: DEFAULT_PORT,
            },
            user: None,
            password: None,
            problems: vec![why],
        }
    }
}

/// The forms an address may take, for messages.
const FORMS: &str = "write redis://HOST:PORT (rediss:// for TLS) or HOST:PORT";

/// Reads an address (not empty: an empty one is reported by the caller).
pub fn parse(text: &str) -> Parsed {
    // `host:port` alone: the URL parser would take `host` for a scheme, or call an IP address
    // a relative URL.
    let url_text = if text.contains("://") {
        text.to_owned()
    } else {
        format!("redis://{text}")
    };
    let url = match Url::parse(&url_text) {
        Ok(u) => u,
        Err(e) => return Parsed::refused(format!("not a Redis address ({e}): {FORMS}")),
    };
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Parsed::refused(format!(
                "scheme {other}:// is not supported; use redis:// or rediss://"
            ))
        }
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Parsed::refused(format!("has no host: {FORMS}")),
    };
    let mut problems = Vec::new();
    let port = match url.port() {
        Some(0) => {
            problems.push(format!(
                "port 0 is not a port a server listens on: give its port ({DEFAULT_PORT} \
                 when left out)"
            ));
            DEFAULT_PORT
        }
        Some(p) => p,
        None => DEFAULT_PORT,
    };
    if !matches!(url.path(), "" | "/") {
        problems.push("must not name a database: every database of the server is analysed".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push("must not have a query or fragment".into());
    }
    let mut part = |what: &str, raw: &str| match decode(raw) {
        Ok(s) => Some(s),
        Err(why) => {
            problems.push(format!("the {what} in the address {why}"));
            None
        }
    };
    let user = part("user name", url.username()).filter(|u| !u.is_empty());
    let password = url
        .password()
        .and_then(|p| part("password", p))
        .map(Secret::new);
    Parsed {
        address: RedisAddress { tls, host, port },
        user,
        password,
        problems,
    }
}

/// Percent-decodes one part of the user information, refusing what a lenient decoder would
/// pass on unchanged or replace (a server would then see a credential the user never wrote).
fn decode(raw: &str) -> Result<String, &'static str> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let escape = b.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                return Err(
                    "has an invalid percent escape: `%` must be followed by two \
                            hexadecimal digits (write a literal `%` as %25)",
                );
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "is not UTF-8 once its percent escapes are decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Parsed {
        let p = parse(text);
        assert!(p.problems.is_empty(), "{text}: {:?}", p.problems);
        p
    }

    fn refused(text: &str) -> Vec<String> {
        let p = parse(text);
        assert!(!p.problems.is_empty(), "{text} must be refused");
        // Nothing of the address is repeated (it may hold a password).
        for m in &p.problems {
            assert!(!m.contains("hunter2"), "{m}");
        }
        p.problems
    }

    #[test]
    fn urls_and_host_port_give_scheme_host_and_port() {
        for (text, tls, host, port) in [
            ("redis://10.0.0.5", false, "10.0.0.5", 6379),
            ("rediss://cache.internal:7000", true, "cache.internal", 7000),
            ("redis://[::1]:6380/", false, "::1", 6380),
            // Without a scheme: redis://.
            ("10.0.0.5:6379", false, "10.0.0.5", 6379),
            ("localhost:6390", false, "localhost", 6390),
            ("cache", false, "cache", 6379),
            ("[::1]:7001", false, "::1", 7001),
        ] {
            let a = ok(text).address;
            assert_eq!(
                (a.tls, a.host.as_str(), a.port),
                (tls, host, port),
                "{text}"
            );
        }
        assert_eq!(
            ok("localhost:6390").address.display(),
            "redis://localhost:6390"
        );
    }

    #[test]
    fn credentials_are_decoded_strictly() {
        let p = ok("redis://u%40x:p%3Aw%25@h");
        assert_eq!(p.user.as_deref(), Some("u@x"));
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("p:w%"));
        let p = ok("h:1");
        assert!(p.user.is_none() && p.password.is_none());
        // Host and port form with credentials.
        let p = ok(":hunter2@h:6379");
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("hunter2"));
        for (text, part) in [
            ("redis://:hunter2%zz@h", "password"),
            ("redis://:hunter2%2@h", "password"),
            ("redis://:hunter2%@h", "password"),
            ("redis://u%g1:hunter2@h", "user name"),
        ] {
            let p = refused(text);
            assert_eq!(
                p,
                [format!(
                    "the {part} in the address has an invalid percent escape: `%` must be \
                     followed by two hexadecimal digits (write a literal `%` as %25)"
                )],
                "{text}"
            );
        }
        assert_eq!(
            refused("redis://:hunter2%ff@h"),
            ["the password in the address is not UTF-8 once its percent escapes are decoded"]
        );
    }

    #[test]
    fn what_cannot_be_a_server_is_refused_with_the_forms_to_write() {
        let p = refused("redis://:hunter2@h:0");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("port 0 is not a port a server listens on"),
            "{p:?}"
        );
        assert!(refused("h:0")[0].starts_with("port 0"));
        for text in ["::1", "redis://h:99999", "redis://:hunter2@", "h:port"] {
            let p = refused(text);
            assert!(p[0].ends_with(FORMS), "{text}: {p:?}");
        }
        assert_eq!(
            refused("http://:hunter2@h"),
            ["scheme http:// is not supported; use redis:// or rediss://"]
        );
        assert_eq!(
            refused("redis://h/2?x=1"),
            [
                "must not name a database: every database of the server is analysed",
                "must not have a query or fragment",
            ]
        );
    }
}
