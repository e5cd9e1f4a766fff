//! The command line: the flags as clap parses them ([`Args`]), checked into what each command
//! needs ([`Command`]), as ripgrep turns its `LowArgs` into `HiArgs`; and the `check-config`
//! report ([`check_config`]). All of it is tested without starting a process: the binary only
//! parses, sets up logging and runs what [`Args::into_command`] returns.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError};
use crate::dcs::{DcsApi, DcsClient, InstanceListQuery};
use crate::fleet::shard::ShardError;
use crate::fleet::{FleetOptions, Shard};
use crate::simulator::SimConfig;

/// Exit code for a bad command line or config.
pub const EXIT_USAGE: u8 = 2;

/// Prometheus exporter for hot keys and big keys: Huawei Cloud DCS analyses, Redis and Valkey scans.
///
/// Runs DCS hot key and big key analyses on a schedule (or picks up those DCS runs by itself),
/// scans the Redis and Valkey servers listed under `redis:` for the same, and serves the results
/// on /metrics. Try it without a cloud account: `dcs-key-exporter --demo`.
/// Every flag can also be set with an environment variable: DCS_EXPORTER_ followed by the flag
/// name in upper case with `.` and `-` as `_` (e.g. DCS_EXPORTER_CONFIG_FILE).
#[derive(Parser, Debug)]
#[command(name = "dcs-key-exporter", version = crate::LONG_VERSION, about, long_about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Sub>,

    /// Path to the YAML config file (see config/example.yaml).
    #[arg(
        long = "config.file",
        env = "DCS_EXPORTER_CONFIG_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for HTTP (`:9797` means every interface) [default: `:9797`; for
    /// `simulate`: `:9798`, so the exporter and a simulator run side by side].
    #[arg(
        long = "web.listen-address",
        env = "DCS_EXPORTER_WEB_LISTEN_ADDRESS",
        global = true,
        value_name = "ADDR"
    )]
    pub listen_address: Option<String>,

    /// Path under which metrics are served.
    #[arg(
        long = "web.telemetry-path",
        env = "DCS_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    pub telemetry_path: String,

    /// TLS and basic auth config file (Prometheus exporter-toolkit format).
    #[arg(
        long = "web.config.file",
        env = "DCS_EXPORTER_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Most HTTP connections open at once; beyond it new connections wait (in the kernel's
    /// accept queue) until one closes, so that a flood of clients cannot use up the file
    /// descriptors the DCS and Redis connections need.
    #[arg(
        long = "web.max-connections",
        env = "DCS_EXPORTER_WEB_MAX_CONNECTIONS",
        default_value_t = crate::server::MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..),
        value_name = "N"
    )]
    pub max_connections: u32,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", env = "DCS_EXPORTER_LOG_LEVEL", default_value = "info", global = true, value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,

    /// Log format.
    #[arg(
        long = "log.format",
        env = "DCS_EXPORTER_LOG_FORMAT",
        default_value = "logfmt",
        global = true
    )]
    pub log_format: LogFormat,

    /// Prefix of every metric name.
    #[arg(
        long = "metrics.namespace",
        env = "DCS_EXPORTER_METRICS_NAMESPACE",
        default_value = "dcs",
        value_name = "NAME"
    )]
    pub namespace: String,

    /// Run against an embedded DCS simulator with sample instances: no cloud account, no config
    /// file, no network needed.
    #[arg(long, env = "DCS_EXPORTER_DEMO")]
    pub demo: bool,

    /// This replica's shard, from 0 to --shard.count − 1; `from-hostname` takes the trailing
    /// `-N` of the hostname (a StatefulSet pod ordinal).
    #[arg(
        long = "shard.index",
        env = "DCS_EXPORTER_SHARD_INDEX",
        default_value = "0",
        value_name = "N|from-hostname"
    )]
    pub shard_index: String,

    /// Number of replicas the instances are split over (by a stable hash of the instance id).
    #[arg(
        long = "shard.count",
        env = "DCS_EXPORTER_SHARD_COUNT",
        default_value_t = 1,
        value_name = "N"
    )]
    pub shard_count: u32,

    /// Never create analysis tasks: every analysis configured `trigger` runs as `observe`
    /// (the standby replica of a high-availability pair).
    #[arg(
        long = "analysis.observe-only",
        env = "DCS_EXPORTER_ANALYSIS_OBSERVE_ONLY"
    )]
    pub observe_only: bool,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Validate the config file: exit 0, or print every problem and exit 2.
    CheckConfig {
        /// Also prove endpoints and credentials work: call the DCS API (ShowInstance for every
        /// configured instance, ListInstances once for each cloud without instances or with
        /// discovery) and connect to every Redis target (role, version, cluster shards,
        /// eviction policy, whether hot key analysis is possible). Exit code 1 if any fails.
        #[arg(long)]
        online: bool,
    },
    /// Run the DCS API simulator on its own (for trying the exporter, SDKs or dashboards).
    Simulate {
        /// Seed of the synthetic keyspaces: same seed, same answers.
        #[arg(long, env = "DCS_EXPORTER_SEED", default_value_t = 1)]
        seed: u64,
        /// Number of generated instances; 0 serves the demo's varied instances.
        #[arg(long, env = "DCS_EXPORTER_INSTANCES", default_value_t = 0)]
        instances: usize,
        /// Access key the simulator accepts.
        #[arg(
            long = "sim.access-key",
            env = "DCS_EXPORTER_SIM_ACCESS_KEY",
            default_value = crate::simulator::DEFAULT_ACCESS_KEY
        )]
        access_key: String,
        /// Secret key the simulator accepts [default: simulator-secret-key].
        #[arg(
            long = "sim.secret-key",
            env = "DCS_EXPORTER_SIM_SECRET_KEY",
            hide_env_values = true
        )]
        secret_key: Option<String>,
        /// Project id the simulator serves.
        #[arg(
            long = "sim.project-id",
            env = "DCS_EXPORTER_SIM_PROJECT_ID",
            default_value = crate::simulator::DEFAULT_PROJECT_ID
        )]
        project_id: String,
        /// Multiplies task durations and drift periods (e.g. 0.05 runs tasks 20 times faster);
        /// default: realistic durations for generated instances, the demo's own scale otherwise.
        #[arg(
            long = "sim.time-scale",
            env = "DCS_EXPORTER_SIM_TIME_SCALE",
            value_name = "FACTOR"
        )]
        time_scale: Option<f64>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// A command line that cannot run: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("--web.listen-address: {0:?} is not HOST:PORT (e.g. :9797 or 127.0.0.1:9797)")]
    ListenAddress(String),
    #[error("--metrics.namespace: {0:?} is not a valid metric name prefix")]
    Namespace(String),
    #[error("--web.telemetry-path must start with '/'")]
    TelemetryPath,
    #[error("--sim.time-scale must be a positive number")]
    TimeScale,
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("no config: pass --config.file=PATH, or try --demo")]
    NoConfig,
    #[error("check-config needs --config.file=PATH")]
    CheckNeedsConfig,
    #[error(
        "--demo runs its own simulator and config: leave out --config.file \
         (or DCS_EXPORTER_CONFIG_FILE), or drop --demo to use the file"
    )]
    DemoTakesNoConfig,
    #[error(
        "simulate serves its own instances and reads no config: leave out --config.file \
         (or DCS_EXPORTER_CONFIG_FILE); point the exporter at it with `endpoint:` in its config"
    )]
    SimulateTakesNoConfig,
}

/// What to run, with checked settings.
#[derive(Debug)]
pub enum Command {
    /// The exporter.
    Serve(ServeOptions),
    /// `check-config`.
    CheckConfig { config_file: PathBuf, online: bool },
    /// `simulate`.
    Simulate { listen: SocketAddr, sim: SimConfig },
}

/// Where the exporter's config comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--demo`: the embedded simulator.
    Demo,
    /// `--config.file`.
    File(PathBuf),
}

/// The exporter's checked settings.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub source: Source,
    pub web_config_file: Option<PathBuf>,
    pub telemetry_path: String,
    pub namespace: String,
    pub fleet: FleetOptions,
    /// `--web.max-connections`.
    pub max_connections: u32,
}

impl Args {
    /// Checks the flags and says what to run. `hostname` is for `--shard.index=from-hostname`.
    pub fn into_command(self, hostname: Option<&str>) -> Result<Command, UsageError> {
        match self.command {
            Some(Sub::CheckConfig { online }) => Ok(Command::CheckConfig {
                config_file: self.config_file.ok_or(UsageError::CheckNeedsConfig)?,
                online,
            }),
            Some(Sub::Simulate {
                seed,
                instances,
                access_key,
                secret_key,
                project_id,
                time_scale,
            }) => {
                let mut sim = if instances == 0 {
                    SimConfig::demo()
                } else {
                    SimConfig::generated(seed, instances)
                };
                if self.config_file.is_some() {
                    return Err(UsageError::SimulateTakesNoConfig);
                }
                sim.seed = seed;
                sim.access_key = access_key;
                if let Some(sk) = secret_key {
                    sim.secret_key = sk.as_str().into();
                }
                sim.project_id = project_id;
                if let Some(scale) = time_scale {
                    if !scale.is_finite() || scale <= 0.0 {
                        return Err(UsageError::TimeScale);
                    }
                    sim.time_scale = scale;
                }
                Ok(Command::Simulate {
                    listen: parse_listen(
                        self.listen_address
                            .as_deref()
                            .unwrap_or(DEFAULT_SIMULATE_LISTEN),
                    )?,
                    sim,
                })
            }
            None => {
                if !config::is_metric_namespace(&self.namespace) {
                    return Err(UsageError::Namespace(self.namespace));
                }
                if !self.telemetry_path.starts_with('/') {
                    return Err(UsageError::TelemetryPath);
                }
                let shard = Shard::from_flags(&self.shard_index, self.shard_count, hostname)?;
                let source = match (self.demo, self.config_file) {
                    (true, Some(_)) => return Err(UsageError::DemoTakesNoConfig),
                    (true, None) => Source::Demo,
                    (false, Some(p)) => Source::File(p),
                    (false, None) => return Err(UsageError::NoConfig),
                };
                Ok(Command::Serve(ServeOptions {
                    listen: parse_listen(self.listen_address.as_deref().unwrap_or(DEFAULT_LISTEN))?,
                    source,
                    web_config_file: self.web_config_file,
                    telemetry_path: self.telemetry_path,
                    namespace: self.namespace,
                    fleet: FleetOptions {
                        shard,
                        observe_only: self.observe_only,
                    },
                    max_connections: self.max_connections,
                }))
            }
        }
    }
}

/// The exporter's default listen address.
pub const DEFAULT_LISTEN: &str = ":9797";
/// `simulate`'s default listen address: not the exporter's, so both run side by side.
pub const DEFAULT_SIMULATE_LISTEN: &str = ":9798";

/// Accepts `:9797`, `0.0.0.0:9797`, `127.0.0.1:0`, `[::]:9797`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, UsageError> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| UsageError::ListenAddress(s.to_owned()))
}

/// An error and its causes, as `error: …` prints them. A cause is added only when the text so
/// far does not say it already: many errors put their cause into their own message too, and
/// printing the whole chain (`{:#}`) then repeats it.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

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

/// `check-config`: loads the config (on a blocking thread) and reports every problem and
/// warning; with `online`, also calls DCS for every configured instance (ShowInstance) and
/// once per cloud without instances or with discovery (ListInstances), going on after a
/// failure so that every broken instance is named.
pub async fn check_config(path: &Path, online: bool) -> CheckReport {
    let p = path.to_owned();
    let loaded = tokio::task::spawn_blocking(move || config::load_file_checked(&p))
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError::Read {
                path: path.display().to_string(),
                source: config::ReadError::Io(std::io::Error::other(e.to_string())),
            })
        });
    let shown = path.display();
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            return CheckReport {
                lines: e
                    .problems()
                    .into_iter()
                    .map(|p| format!("error: {p}"))
                    .collect(),
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
    let mut summary = format!(
        "{shown}: OK ({}, {}",
        plural(config.clouds.len(), "cloud"),
        plural(instances, "instance")
    );
    if discovering > 0 {
        let _ = write!(summary, ", discovery in {discovering} of them");
    }
    if !config.redis.is_empty() {
        let _ = write!(
            summary,
            ", {}",
            plural(config.redis.len(), "Redis/Valkey target")
        );
    }
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

    fn command(args: &[&str]) -> Result<Command, UsageError> {
        let mut all = vec!["dcs-key-exporter"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
            .expect("clap accepts the flags")
            .into_command(Some("exporter-2"))
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dcs-cli-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn listen(args: &[&str]) -> SocketAddr {
        match command(args) {
            Ok(Command::Serve(o)) => o.listen,
            Ok(Command::Simulate { listen, .. }) => listen,
            other => panic!("{args:?} runs neither the exporter nor simulate: {other:?}"),
        }
    }

    #[test]
    fn simulate_and_the_exporter_default_to_different_ports() {
        assert_eq!(listen(&["--demo"]).port(), 9797);
        assert_eq!(listen(&["simulate"]).port(), 9798);
        // An explicit address wins, before or after the subcommand.
        assert_eq!(
            listen(&["simulate", "--web.listen-address=127.0.0.1:0"]),
            "127.0.0.1:0".parse().expect("addr")
        );
        assert_eq!(
            listen(&["--web.listen-address=127.0.0.1:0", "simulate"]),
            "127.0.0.1:0".parse().expect("addr")
        );
        assert_eq!(
            listen(&["--demo", "--web.listen-address=:1234"]).port(),
            1234
        );
    }

    #[test]
    fn serve_flags_become_checked_options() {
        let Ok(Command::Serve(o)) = command(&[
            "--config.file=c.yaml",
            "--web.listen-address=127.0.0.1:0",
            "--shard.index=from-hostname",
            "--shard.count=3",
        ]) else {
            panic!("serve");
        };
        assert_eq!(o.source, Source::File("c.yaml".into()));
        assert_eq!(o.listen, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(o.fleet.shard, Shard::new(2, 3).expect("shard"));
        assert_eq!(
            (o.telemetry_path.as_str(), o.namespace.as_str()),
            ("/metrics", "dcs")
        );
        let Ok(Command::Serve(o)) = command(&["--demo", "--web.listen-address=:0"]) else {
            panic!("demo");
        };
        assert_eq!(o.source, Source::Demo);
        assert_eq!(o.listen, "0.0.0.0:0".parse().expect("addr"));
        assert_eq!(o.max_connections, 512, "Prometheus' own default");
        let Ok(Command::Serve(o)) = command(&["--demo", "--web.max-connections=3"]) else {
            panic!("demo");
        };
        assert_eq!(o.max_connections, 3);
    }

    #[test]
    fn a_connection_limit_of_zero_is_refused() {
        let e = Args::try_parse_from(["dcs-key-exporter", "--demo", "--web.max-connections=0"])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("--web.max-connections"), "{e}");
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let cases: [(&[&str], &str); 8] = [
            (&[], "no config: pass --config.file=PATH, or try --demo"),
            (
                &["--demo", "--web.listen-address=9797"],
                "\"9797\" is not HOST:PORT",
            ),
            (
                &["--demo", "--metrics.namespace=9lives"],
                "\"9lives\" is not a valid",
            ),
            (
                &["--demo", "--web.telemetry-path=metrics"],
                "must start with '/'",
            ),
            (&["--demo", "--shard.index=3", "--shard.count=3"], "shard"),
            (&["check-config"], "check-config needs --config.file=PATH"),
            // A flag that would be silently ignored is refused instead.
            (
                &["--demo", "--config.file=c.yaml"],
                "--demo runs its own simulator and config",
            ),
            (
                &["simulate", "--config.file=c.yaml"],
                "simulate serves its own instances and reads no config",
            ),
        ];
        for (args, want) in cases {
            let e = command(args).expect_err("refused").to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    /// The help must say what the flags do and what the README promises: `check-config
    /// --online` calls DCS per instance, and `simulate` shows the credentials it accepts.
    #[test]
    fn help_shows_what_check_config_online_calls_and_the_simulator_defaults() {
        use clap::CommandFactory;
        let mut cmd = Args::command();
        let check = cmd
            .find_subcommand_mut("check-config")
            .expect("check-config")
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            check.contains("ShowInstance for every configured instance"),
            "{check}"
        );
        let sim = cmd
            .find_subcommand_mut("simulate")
            .expect("simulate")
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for default in [
            crate::simulator::DEFAULT_ACCESS_KEY,
            crate::simulator::DEFAULT_SECRET_KEY,
            crate::simulator::DEFAULT_PROJECT_ID,
        ] {
            assert!(
                sim.contains(&format!("default: {default}")),
                "{default}: {sim}"
            );
        }
        // Without flags, simulate accepts exactly those.
        let Ok(Command::Simulate { sim, .. }) = command(&["simulate"]) else {
            panic!("simulate");
        };
        assert_eq!(sim.access_key, crate::simulator::DEFAULT_ACCESS_KEY);
        assert_eq!(sim.project_id, crate::simulator::DEFAULT_PROJECT_ID);
        assert_eq!(
            sim.secret_key.expose(),
            crate::simulator::DEFAULT_SECRET_KEY
        );
    }

    /// A missing web config file said "No such file or directory" three times: in the
    /// message, in its cause and in the cause's cause.
    #[test]
    fn a_fatal_error_says_its_cause_once() {
        let d = scratch("chain");
        let missing = d.join("web.yml");
        let e = crate::server::web_config::load(&missing).expect_err("missing file");
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let reason = std::fs::read(&missing).expect_err("missing").to_string();
        let shown = error_chain(&e);
        assert_eq!(shown.matches(&reason).count(), 1, "{shown}");
        assert!(shown.contains("cannot read web config file"), "{shown}");
        // Through anyhow, with a context, as main prints it: each part once.
        let e = anyhow::Error::new(e).context("starting");
        let shown = error_chain(e.as_ref());
        assert!(shown.starts_with("starting: "), "{shown}");
        assert_eq!(shown.matches(&reason).count(), 1, "{shown}");
        // A cause the message does not repeat is kept.
        let e = anyhow::Error::new(io).context("reading x");
        assert_eq!(error_chain(e.as_ref()), "reading x: entity not found");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn simulate_flags_set_up_the_simulator() {
        let Ok(Command::Simulate { listen, sim }) = command(&[
            "simulate",
            "--web.listen-address=127.0.0.1:0",
            "--seed=7",
            "--instances=3",
            "--sim.access-key=AK",
            "--sim.project-id=p",
            "--sim.time-scale=0.5",
        ]) else {
            panic!("simulate");
        };
        assert_eq!(listen, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!((sim.seed, sim.instances.len()), (7, 3));
        assert_eq!(
            (sim.access_key.as_str(), sim.project_id.as_str()),
            ("AK", "p")
        );
        assert_eq!(sim.time_scale, 0.5);
        for bad in ["0", "-1", "NaN", "inf"] {
            let e =
                command(&["simulate", &format!("--sim.time-scale={bad}")]).expect_err("refused");
            assert!(matches!(e, UsageError::TimeScale), "{bad}: {e}");
        }
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
