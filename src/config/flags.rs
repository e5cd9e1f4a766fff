//! A config from the command line instead of a file: `--redis.addr` names one or more Redis or
//! Valkey servers, with `--redis.user` and a password (`--redis.password`, best given as
//! `DCS_EXPORTER_REDIS_PASSWORD`, or `--redis.password-file`), as redis_exporter's
//! `--redis.addr` does. Nothing else is needed: no cloud, no DCS settings.
//!
//! The flags become `redis:` entries and go through the very validator a file goes through, so
//! they get the same checks (addresses, password files); only the problems are named by the
//! flag instead of the key, and values are taken as written (no `${NAME}` expansion: the shell
//! has done what it meant to). Every target gets the documented analysis defaults, and the
//! scans start at once (no start jitter: it spreads a fleet, a few servers need none).

use std::path::PathBuf;

use super::raw::{RawConfig, RawRedis, RawScheduler};
use super::validate::Validator;
use super::{ConfigError, Loaded, Problem};
use crate::secret::Secret;

/// What problems from the flags are said to come from, in place of a file's path.
pub const SOURCE: &str = "command line";

/// The `--redis.*` flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisFlags {
    /// `--redis.addr`: one target each. Secrets, as an address may hold a password.
    pub addrs: Vec<Secret>,
    /// `--redis.user`: the ACL user of every target.
    pub user: Option<String>,
    /// `--redis.password` (or `DCS_EXPORTER_REDIS_PASSWORD`).
    pub password: Option<Secret>,
    /// `--redis.password-file`.
    pub password_file: Option<PathBuf>,
}

/// The config the flags describe, checked as a file would be. Blocking (it may read the
/// password file): async code runs it on a blocking thread.
pub fn load(flags: &RedisFlags) -> Result<Loaded, ConfigError> {
    let raw = RawConfig {
        redis: flags
            .addrs
            .iter()
            .map(|a| RawRedis {
                address: Some(a.expose().to_owned()),
                username: flags.user.clone(),
                password: flags.password.as_ref().map(|p| p.expose().to_owned()),
                password_file: flags
                    .password_file
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                ..RawRedis::default()
            })
            .collect(),
        scheduler: RawScheduler {
            start_jitter: Some("0s".into()),
        },
        ..RawConfig::default()
    };
    let mut v = Validator::literal();
    let config = v.config(raw);
    let (found, warnings) = v.finish();
    let count = flags.addrs.len();
    let mut problems: Vec<Problem> = Vec::new();
    for p in found {
        let p = Problem::new(flag_of(&p.key, count, flags), p.message);
        // A password file is read once per target: say its problem once.
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(ConfigError::Invalid {
            path: SOURCE.to_owned(),
            problems,
        })
    }
}

/// The flag a config key of a flag-made config comes from: `redis[1].address` is the second
/// `--redis.addr` (numbered only when there are several).
fn flag_of(key: &str, count: usize, flags: &RedisFlags) -> String {
    let parsed = key.strip_prefix("redis[").and_then(|rest| {
        let (index, field) = rest.split_once("].")?;
        Some((index.parse::<usize>().ok()?, field))
    });
    let Some((index, field)) = parsed else {
        return key.to_owned();
    };
    let flag = match field {
        "address" | "id" => "--redis.addr",
        "username" => "--redis.user",
        // A password both in an address and from a flag: the flag given.
        "password" if flags.password_file.is_some() => "--redis.password-file",
        "password" => "--redis.password",
        "password_file" => "--redis.password-file",
        _ => return key.to_owned(),
    };
    if flag == "--redis.addr" && count > 1 {
        format!("{flag} (address {} of {count})", index + 1)
    } else {
        flag.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::redis::DEFAULT_KEYS_PER_SECOND;
    use crate::config::{AnalysisSettings, Mode};
    use crate::dcs::Analysis;
    use std::time::Duration;

    fn flags(addrs: &[&str]) -> RedisFlags {
        RedisFlags {
            addrs: addrs.iter().map(|a| Secret::new(*a)).collect(),
            ..RedisFlags::default()
        }
    }

    fn problems(f: &RedisFlags) -> Vec<String> {
        match load(f) {
            Ok(_) => panic!("must be refused: {f:?}"),
            Err(e) => e.problems(),
        }
    }

    #[test]
    fn addresses_become_targets_with_the_documented_defaults() {
        let mut f = flags(&["127.0.0.1:6379", "rediss://u:p%40ss@cache.internal:7000"]);
        f.password = None;
        let loaded = load(&f).expect("loads");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert!(c.clouds.is_empty());
        assert_eq!(
            c.scheduler.start_jitter,
            Duration::ZERO,
            "scans start at once"
        );
        let ids: Vec<&str> = c.redis.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            ["redis://127.0.0.1:6379", "rediss://cache.internal:7000"]
        );
        let t = &c.redis[1];
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(t.keys_per_second, DEFAULT_KEYS_PER_SECOND);
        assert_eq!(
            t.hotkey,
            AnalysisSettings {
                timeout: crate::config::redis::AUTO_FOLLOW,
                ..AnalysisSettings::default_for(Analysis::Hotkey)
            }
        );
        assert_eq!(t.scan_timeout(Analysis::Hotkey), None, "auto");
        assert_eq!(
            t.bigkey,
            AnalysisSettings {
                timeout: crate::config::redis::AUTO_FOLLOW,
                ..AnalysisSettings::default_for(Analysis::Bigkey)
            }
        );
        assert_eq!(t.keyfamily.mode, Mode::Trigger, "key families on");
    }

    #[test]
    fn credentials_apply_to_every_target_and_are_taken_as_written() {
        let mut f = flags(&["h1", "h2"]);
        f.user = Some("exporter".into());
        // A `${...}` in a password from the environment is part of the password.
        f.password = Some(Secret::new("pa${HOME}ss"));
        let c = load(&f).expect("loads").config;
        for t in &c.redis {
            assert_eq!(t.username.as_deref(), Some("exporter"));
            assert_eq!(t.password.as_ref().map(Secret::expose), Some("pa${HOME}ss"));
        }
        assert!(!format!("{c:?}").contains("pa${HOME}ss"));
    }

    #[test]
    fn a_password_file_is_read_with_the_checks_of_any_secret_file() {
        let d = std::env::temp_dir().join(format!(
            "dcs-flags-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("pw"), "from-file\n").expect("write");
        let mut f = flags(&["h1", "h2"]);
        f.password_file = Some(d.join("pw"));
        let c = load(&f).expect("loads").config;
        assert_eq!(
            c.redis[1].password.as_ref().map(Secret::expose),
            Some("from-file")
        );
        f.password_file = Some("/proc/self/environ".into());
        assert_eq!(
            problems(&f),
            [
                "command line: --redis.password-file: cannot read /proc/self/environ: is not a \
              regular file (it is on procfs, made up by the kernel as it is read); give the \
              path of a file"
            ],
            "said once, not once per target"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn problems_name_the_flag_and_never_the_address() {
        assert_eq!(
            problems(&flags(&["redis://:hunter2@h:0"])),
            [
                "command line: --redis.addr: port 0 is not a port a server listens on: give its \
              port (6379 when left out)"
            ]
        );
        let p = problems(&flags(&["h", "redis://:hunter2%zz@h2", "h:6379"]));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with(
                "command line: --redis.addr (address 2 of 3): the password in the \
                              address has an invalid percent escape"
            ),
            "{p:?}"
        );
        assert_eq!(
            p[1],
            "command line: --redis.addr (address 3 of 3): redis://h:6379 is listed more than once"
        );
        assert!(p.iter().all(|m| !m.contains("hunter2")), "{p:?}");
        let mut f = flags(&["redis://:hunter2@h"]);
        f.password = Some(Secret::new("x"));
        assert_eq!(
            problems(&f),
            ["command line: --redis.password: given both here and in the address; keep one"]
        );
        f.password = None;
        f.password_file = Some("/nonexistent/pw".into());
        let p = problems(&f);
        assert!(
            p.iter()
                .all(|m| m.starts_with("command line: --redis.password-file: ")),
            "{p:?}"
        );
        assert_eq!(
            problems(&flags(&[""])),
            ["command line: --redis.addr: must not be empty"]
        );
    }
}
