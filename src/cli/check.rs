//! `check-config`: what it prints and its exit code, for a config file or the `--redis.*`
//! flags; with `--online`, what DCS and each Redis target answer.

use std::path::Path;

use super::{Source, UsageError, EXIT_USAGE};
use crate::config::{self, ConfigError};
use crate::dcs::{DcsApi, DcsClient, InstanceListQuery};

/// What to look at after a failed online check, for the failures a new setup usually has.
fn online_hint(e: &crate::dcs::Error) -> &'static str {
    use crate::dcs::Error;
    if e.is_auth() {
        " (check access_key and secret_key, or the IAM user, and project_id; and that this \
         host's clock is right: signatures expire)"
    } else if e.is_not_found() {
        " (no such instance in this project and region: check the id, project_id and region)"
    } else if matches!(e, Error::Transport { .. } | Error::Timeout { .. }) {
        " (the endpoint cannot be reached from here: check region or endpoint, DNS, proxy and \
         firewall)"
    } else {
        ""
    }
}

/// What `check-config` prints (to standard output) and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub lines: Vec<String>,
    /// 0: valid (and reachable, with `--online`); 2: invalid; 1: an online check failed.
    pub exit: u8,
}

/// `check-config --config.file=PATH`: [`check_source`] of a file.
pub async fn check_config(path: &Path, online: bool) -> CheckReport {
    check_source(&Source::File(path.to_owned()), online).await
}

/// `check-config`: loads the config (of a file, or of the `--redis.*` flags; on a blocking
/// thread) and reports every problem and warning; with `online`, also calls DCS for every
/// configured instance (ShowInstance) and once per cloud without instances or with discovery
/// (ListInstances), and connects to every Redis target, going on after a failure so that
/// every broken instance is named.
pub async fn check_source(source: &Source, online: bool) -> CheckReport {
    let shown = source.shown();
    let s = source.clone();
    let loaded = tokio::task::spawn_blocking(move || s.load())
        .await
        .unwrap_or_else(|e| {
            Some(Err(ConfigError::Read {
                path: shown.clone(),
                source: config::ReadError::Io(std::io::Error::other(e.to_string())),
            }))
        });
    let loaded = match loaded {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            return CheckReport {
                lines: e
                    .problems()
                    .into_iter()
                    .map(|p| format!("error: {p}"))
                    .collect(),
                exit: EXIT_USAGE,
            }
        }
        None => {
            return CheckReport {
                lines: vec![format!("error: {}", UsageError::CheckNeedsConfig)],
                exit: EXIT_USAGE,
            }
        }
    };
    let mut lines: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| format!("warning: {shown}: {w}"))
        .collect();
    let config = &loaded.config;
    let instances: usize = config.clouds.iter().map(|c| c.instances.len()).sum();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let discovering = config
        .clouds
        .iter()
        .filter(|c| c.discovery.is_some())
        .count();
    // What the config holds; clouds are not mentioned in a config of Redis targets only.
    let mut parts = Vec::new();
    if !config.clouds.is_empty() || config.redis.is_empty() {
        parts.push(plural(config.clouds.len(), "cloud"));
        parts.push(plural(instances, "instance"));
        if discovering > 0 {
            let last = parts.pop().unwrap_or_default();
            parts.push(format!("{last}, discovery in {discovering} of them"));
        }
    }
    if !config.redis.is_empty() {
        parts.push(plural(config.redis.len(), "Redis/Valkey target"));
    }
    let mut summary = format!("{shown}: OK ({}", parts.join(", "));
    summary.push(')');
    lines.push(summary);
    if !online {
        return CheckReport { lines, exit: 0 };
    }
    let mut failed = 0;
    for cloud in &config.clouds {
        let name = &cloud.name;
        let client = match DcsClient::new(cloud.client.clone(), None) {
            Ok(c) => c,
            Err(e) => {
                failed += 1;
                lines.push(format!("cloud {name}: FAILED: {e}"));
                continue;
            }
        };
        let project = &cloud.client.project_id;
        if cloud.instances.is_empty() || cloud.discovery.is_some() {
            let query = InstanceListQuery {
                limit: Some(1),
                ..InstanceListQuery::default()
            };
            match client.list_instances(&query).await {
                Ok(list) => {
                    let n = list
                        .instance_num
                        .unwrap_or(i64::try_from(list.instances.len()).unwrap_or(i64::MAX));
                    lines.push(format!(
                        "cloud {name}: ListInstances OK: {n} instance(s) in project {project}"
                    ));
                }
                Err(e) => {
                    failed += 1;
                    lines.push(format!(
                        "cloud {name}: ListInstances FAILED: {e}{}",
                        online_hint(&e)
                    ));
                }
            }
        }
        for inst in &cloud.instances {
            let id = &inst.id;
            match client.show_instance(id).await {
                Ok(info) => lines.push(format!(
                    "cloud {name}: instance {id}: OK ({}, {} {}, {})",
                    if info.name.is_empty() {
                        "?"
                    } else {
                        &info.name
                    },
                    info.engine.as_deref().unwrap_or("?"),
                    info.engine_version.as_deref().unwrap_or("?"),
                    info.status.as_deref().unwrap_or("?")
                )),
                Err(e) => {
                    failed += 1;
                    lines.push(format!(
                        "cloud {name}: instance {id}: FAILED: {e}{}",
                        online_hint(&e)
                    ));
                }
            }
        }
    }
    for target in &config.redis {
        match crate::native::probe::check_online(target).await {
            Ok(report) if report.problems().is_empty() => {
                lines.push(format!("redis {}: OK: {report}", target.id))
            }
            Ok(report) => {
                failed += 1;
                lines.push(format!("redis {}: FAILED: {report}", target.id));
            }
            Err(e) => {
                failed += 1;
                lines.push(format!("redis {}: FAILED: {e}", target.id));
            }
        }
    }
    if failed > 0 {
        lines.push(format!("{}: {failed} online check(s) FAILED", shown));
    }
    CheckReport {
        lines,
        exit: u8::from(failed > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::{command, scratch};
    use crate::cli::Command;

    #[tokio::test]
    async fn check_config_of_redis_flags_names_the_flag() {
        let Ok(Command::CheckConfig { source, .. }) =
            command(&["check-config", "--redis.addr=h:0"])
        else {
            panic!("check-config");
        };
        let r = check_source(&source, false).await;
        assert_eq!(r.exit, 2);
        assert_eq!(
            r.lines,
            [
                "error: command line: --redis.addr: port 0 is not a port a server listens on: \
              give its port (6379 when left out)"
            ]
        );
        let Ok(Command::CheckConfig { source, .. }) =
            command(&["check-config", "--redis.addr=h:6379,h2"])
        else {
            panic!("check-config");
        };
        let r = check_source(&source, false).await;
        assert_eq!(
            (r.exit, r.lines),
            (
                0,
                vec!["command line: OK (2 Redis/Valkey targets)".to_owned()]
            )
        );
    }

    #[tokio::test]
    async fn check_config_reports_every_problem_and_warnings() {
        let d = scratch("check");
        let bad = d.join("bad.yaml");
        std::fs::write(
            &bad,
            "clouds:\n  - regoin: x\n    project_id: nope\n    nmae: y\n",
        )
        .expect("write");
        let r = check_config(&bad, false).await;
        assert_eq!(r.exit, 2);
        let text = r.lines.join("\n");
        for want in ["clouds[0].regoin", "clouds[0].nmae", "clouds[0].project_id"] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(r.lines.iter().all(|l| l.starts_with("error: ")), "{text}");

        let warned = d.join("warned.yaml");
        std::fs::write(
            &warned,
            "clouds:\n  - region: r\n    project_id: 0123456789abcdef0123456789abcdef\n    auth: {access_key: a, secret_key: s}\n    instances: [{id: 5560df16-cebf-4473-95c4-d1b573c16e79}]\nanalysis:\n  hotkey: {interval: 1m, timeout: 5m}\n",
        )
        .expect("write");
        let r = check_config(&warned, false).await;
        assert_eq!(r.exit, 0, "{:?}", r.lines);
        assert!(r.lines[0].starts_with("warning: "), "{:?}", r.lines);
        assert!(
            r.lines[0].contains("analysis.hotkey.timeout"),
            "{:?}",
            r.lines
        );
        assert!(
            r.lines[1].ends_with("OK (1 cloud, 1 instance)"),
            "{:?}",
            r.lines
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[tokio::test]
    async fn check_config_refuses_a_fifo_at_once() {
        let d = scratch("fifo");
        let p = d.join("config.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), check_config(&p, false))
            .await
            .expect("check-config does not hang on a FIFO");
        assert_eq!(r.exit, 2);
        assert!(
            r.lines[0].contains("is not a regular file (it is a FIFO)"),
            "{:?}",
            r.lines
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[tokio::test]
    async fn check_config_online_names_each_failed_instance_and_goes_on() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let supervisor = crate::supervisor::Supervisor::new();
        let (config, sim) = crate::demo::start(shutdown.clone(), &supervisor)
            .await
            .expect("simulator");
        let known: Vec<String> = sim.instances().into_iter().map(|i| i.id).collect();
        let unknown = "00000000-0000-4000-8000-00000000dead";
        let endpoint = config.clouds[0].client.endpoint.clone();
        // The same simulator as a config file, an unknown instance first.
        let mut yaml = format!(
            "clouds:\n  - name: sim\n    endpoint: {endpoint}\n    project_id: {}\n    auth: {{access_key: {}, secret_key: {}}}\n    instances:\n      - id: {unknown}\n",
            sim.project_id(),
            sim.access_key(),
            crate::simulator::SimConfig::demo().secret_key.expose(),
        );
        for id in &known {
            yaml.push_str(&format!("      - id: {id}\n"));
        }
        yaml.push_str("api: {max_retries: 0}\n");
        let d = scratch("online");
        let p = d.join("config.yaml");
        std::fs::write(&p, yaml).expect("write");
        let r = check_config(&p, true).await;
        let text = r.lines.join("\n");
        assert_eq!(r.exit, 1, "{text}");
        let failed: Vec<&String> = r.lines.iter().filter(|l| l.contains("FAILED")).collect();
        assert_eq!(failed.len(), 2, "the instance, and the total: {text}");
        assert!(
            failed[0].starts_with(&format!("cloud sim: instance {unknown}: FAILED")),
            "{text}"
        );
        // ... with what to look at.
        assert!(
            failed[0].contains("(no such instance in this project"),
            "{text}"
        );
        // Every known instance was still checked, and passed.
        for id in &known {
            assert!(
                text.contains(&format!("cloud sim: instance {id}: OK (")),
                "{id}: {text}"
            );
        }
        // A wrong secret key fails every call, each saying to check the credentials.
        let secret = crate::simulator::SimConfig::demo().secret_key;
        let wrong = std::fs::read_to_string(&p)
            .expect("read")
            .replace(secret.expose(), "not-the-secret-key");
        std::fs::write(&p, wrong).expect("write");
        let r = check_config(&p, true).await;
        let text = r.lines.join("\n");
        let failed: Vec<&String> = r.lines.iter().filter(|l| l.contains("FAILED")).collect();
        assert_eq!(failed.len(), known.len() + 2, "{text}");
        for line in &failed[..failed.len() - 1] {
            assert!(line.contains("(check access_key and secret_key"), "{text}");
        }
        shutdown.cancel();
        supervisor.close();
        supervisor.wait().await;
        assert_eq!(supervisor.failure(), None);
        // Unreachable: nothing listens on the endpoint any more.
        let r = check_config(&p, true).await;
        let text = r.lines.join("\n");
        assert!(
            text.contains("(the endpoint cannot be reached from here"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(d);
    }
}
