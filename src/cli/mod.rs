//! The command line: the flags as clap parses them ([`Args`]), checked into what each command
//! needs ([`Command`]), as ripgrep turns its `LowArgs` into `HiArgs`; and the `check-config`
//! report ([`check_source`], in `check`). All of it is tested without starting a process: the binary only
//! parses, sets up logging and runs what [`Args::into_command`] returns.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::flags::RedisFlags;
use crate::config::{self, ConfigError};
use crate::fleet::shard::ShardError;
use crate::fleet::{FleetOptions, Shard};
use crate::secret::Secret;
use crate::simulator::SimConfig;

/// Exit code for a bad command line or config.
pub const EXIT_USAGE: u8 = 2;

/// Prometheus exporter for hot keys and big keys: Huawei Cloud DCS analyses, Redis and Valkey scans.
///
/// Runs DCS hot key and big key analyses on a schedule (or picks up those DCS runs by itself),
/// scans the Redis and Valkey servers listed under `redis:` for the same, and serves the results
/// on /metrics. Try it without a cloud account: `dcs-key-exporter --demo`; against your own
/// Redis or Valkey, without a config file: `dcs-key-exporter --redis.addr=127.0.0.1:6379`.
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

    /// Scan this Redis or Valkey server, without a config file: redis://HOST:PORT,
    /// rediss://HOST:PORT (TLS) or HOST:PORT; for a cluster, any node. Repeat the flag, or
    /// separate addresses with commas, for several servers. Each gets the documented defaults
    /// (hot keys every 15m, big keys every 1h, 20000 keys/s per node), and the scans start at
    /// once. A config file can do more (per-target settings, TLS files, DCS instances):
    /// config/redis.yaml is a start.
    #[arg(
        long = "redis.addr",
        env = "DCS_EXPORTER_REDIS_ADDR",
        value_name = "URL",
        value_delimiter = ',',
        value_parser = secret,
        hide_env_values = true,
        global = true
    )]
    pub redis_addr: Vec<Secret>,

    /// ACL user for the --redis.addr servers (or in the address: redis://USER@HOST:PORT).
    #[arg(
        long = "redis.user",
        env = "DCS_EXPORTER_REDIS_USER",
        value_name = "NAME",
        global = true
    )]
    pub redis_user: Option<String>,

    /// Password for the --redis.addr servers. Prefer the environment variable, or
    /// --redis.password-file: a flag's value is visible to every user of the host (ps).
    #[arg(
        long = "redis.password",
        env = "DCS_EXPORTER_REDIS_PASSWORD",
        value_name = "PASSWORD",
        value_parser = secret,
        hide_env_values = true,
        global = true
    )]
    pub redis_password: Option<Secret>,

    /// File holding the password for the --redis.addr servers (a trailing newline is ignored),
    /// read with the checks of any secret file.
    #[arg(
        long = "redis.password-file",
        env = "DCS_EXPORTER_REDIS_PASSWORD_FILE",
        value_name = "PATH",
        global = true
    )]
    pub redis_password_file: Option<PathBuf>,

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
    /// Validate the config (--config.file, or the --redis.addr flags): exit 0, or print every
    /// problem and exit 2.
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
    #[error(
        "no config: pass --config.file=PATH, or --redis.addr=HOST:PORT to scan a Redis or \
         Valkey server, or try --demo"
    )]
    NoConfig,
    #[error("check-config needs --config.file=PATH or --redis.addr=URL")]
    CheckNeedsConfig,
    #[error(
        "--redis.addr scans the servers it names without a config file: leave out \
         --config.file (or DCS_EXPORTER_CONFIG_FILE), or list the servers under redis: in the \
         file (config/redis.yaml shows how)"
    )]
    RedisAddrWithConfig,
    #[error(
        "--demo runs its own simulator and config: leave out --redis.addr (or \
         DCS_EXPORTER_REDIS_ADDR), or drop --demo"
    )]
    DemoTakesNoRedisAddr,
    #[error(
        "{0} applies to the servers of --redis.addr, which is not given; in a config file, \
         set redis[].username, password or password_file"
    )]
    RedisCredentialsWithoutAddr(&'static str),
    #[error("give either --redis.password (DCS_EXPORTER_REDIS_PASSWORD) or --redis.password-file, not both")]
    RedisPasswordTwice,
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
    #[error(
        "simulate serves a DCS API and scans no Redis server: leave out --redis.addr (or \
         DCS_EXPORTER_REDIS_ADDR)"
    )]
    SimulateTakesNoRedisAddr,
}

/// What to run, with checked settings.
#[derive(Debug)]
pub enum Command {
    /// The exporter.
    Serve(ServeOptions),
    /// `check-config`: of a file or of the `--redis.*` flags (never [`Source::Demo`]).
    CheckConfig { source: Source, online: bool },
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
    /// `--redis.addr` and its credentials.
    Redis(RedisFlags),
}

impl Source {
    /// Loads the config of a file or of the flags; `None` for the demo, whose config comes
    /// with its simulator. Blocking: async code runs it on a blocking thread.
    pub fn load(&self) -> Option<Result<config::Loaded, ConfigError>> {
        match self {
            Source::Demo => None,
            Source::File(p) => Some(config::load_file_checked(p)),
            Source::Redis(flags) => Some(config::flags::load(flags)),
        }
    }

    /// The file's path, or where flags come from, for messages.
    pub fn shown(&self) -> String {
        match self {
            Source::Demo => "--demo".to_owned(),
            Source::File(p) => p.display().to_string(),
            Source::Redis(_) => config::flags::SOURCE.to_owned(),
        }
    }
}

/// Parses a flag value that may be (or hold) a secret.
fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
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
        let redis = self.redis_flags()?;
        match self.command {
            Some(Sub::CheckConfig { online }) => {
                let source = match (self.config_file, redis) {
                    (Some(_), Some(_)) => return Err(UsageError::RedisAddrWithConfig),
                    (Some(p), None) => Source::File(p),
                    (None, Some(r)) => Source::Redis(r),
                    (None, None) => return Err(UsageError::CheckNeedsConfig),
                };
                Ok(Command::CheckConfig { source, online })
            }
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
                if redis.is_some() {
                    return Err(UsageError::SimulateTakesNoRedisAddr);
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
                let source = match (self.demo, self.config_file, redis) {
                    (true, Some(_), _) => return Err(UsageError::DemoTakesNoConfig),
                    (true, None, Some(_)) => return Err(UsageError::DemoTakesNoRedisAddr),
                    (true, None, None) => Source::Demo,
                    (false, Some(_), Some(_)) => return Err(UsageError::RedisAddrWithConfig),
                    (false, Some(p), None) => Source::File(p),
                    (false, None, Some(r)) => Source::Redis(r),
                    (false, None, None) => return Err(UsageError::NoConfig),
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

impl Args {
    /// The `--redis.*` flags, when `--redis.addr` is given; credentials without it are refused
    /// rather than ignored.
    fn redis_flags(&self) -> Result<Option<RedisFlags>, UsageError> {
        if self.redis_addr.is_empty() {
            for (given, flag) in [
                (self.redis_user.is_some(), "--redis.user"),
                (self.redis_password.is_some(), "--redis.password"),
                (self.redis_password_file.is_some(), "--redis.password-file"),
            ] {
                if given {
                    return Err(UsageError::RedisCredentialsWithoutAddr(flag));
                }
            }
            return Ok(None);
        }
        if self.redis_password.is_some() && self.redis_password_file.is_some() {
            return Err(UsageError::RedisPasswordTwice);
        }
        Ok(Some(RedisFlags {
            addrs: self.redis_addr.clone(),
            user: self.redis_user.clone(),
            password: self.redis_password.clone(),
            password_file: self.redis_password_file.clone(),
        }))
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

mod check;
#[cfg(test)]
mod tests;

pub use check::{check_config, check_source, CheckReport};
