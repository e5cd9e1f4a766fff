//! The `dcs-key-exporter` binary: parses flags, sets up logging, loads the config, binds the
//! listener and hands over to [`dcs_key_exporter::app::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use dcs_key_exporter::app::{self, ConfigSource, RunOptions};
use dcs_key_exporter::config;
use dcs_key_exporter::dcs::DcsClient;
use dcs_key_exporter::fleet::{FleetOptions, Shard};
use dcs_key_exporter::server::web_config::WebConfigWatcher;
use dcs_key_exporter::simulator::{self, SimConfig};

/// Prometheus exporter for the hot key and big key analyses of Huawei Cloud DCS (Redis).
///
/// Runs DCS hot key and big key analyses on a schedule (or picks up those DCS runs by itself)
/// and serves their results on /metrics. Try it without a cloud account: `dcs-key-exporter --demo`.
/// Every flag can also be set with an environment variable: DCS_EXPORTER_ followed by the flag
/// name in upper case with `.` and `-` as `_` (e.g. DCS_EXPORTER_CONFIG_FILE).
#[derive(Parser, Debug)]
#[command(name = "dcs-key-exporter", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Path to the YAML config file (see config/example.yaml).
    #[arg(
        long = "config.file",
        env = "DCS_EXPORTER_CONFIG_FILE",
        global = true,
        value_name = "PATH"
    )]
    config_file: Option<PathBuf>,

    /// Address to listen on for HTTP (`:9797` means every interface).
    #[arg(
        long = "web.listen-address",
        env = "DCS_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = ":9797",
        global = true,
        value_name = "ADDR"
    )]
    listen_address: String,

    /// Path under which metrics are served.
    #[arg(
        long = "web.telemetry-path",
        env = "DCS_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    telemetry_path: String,

    /// TLS and basic auth config file (Prometheus exporter-toolkit format).
    #[arg(
        long = "web.config.file",
        env = "DCS_EXPORTER_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    web_config_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", env = "DCS_EXPORTER_LOG_LEVEL", default_value = "info", global = true, value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,

    /// Log format.
    #[arg(
        long = "log.format",
        env = "DCS_EXPORTER_LOG_FORMAT",
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,

    /// Prefix of every metric name.
    #[arg(
        long = "metrics.namespace",
        env = "DCS_EXPORTER_METRICS_NAMESPACE",
        default_value = "dcs",
        value_name = "NAME"
    )]
    namespace: String,

    /// Run against an embedded DCS simulator with sample instances: no cloud account, no config
    /// file, no network needed.
    #[arg(long, env = "DCS_EXPORTER_DEMO")]
    demo: bool,

    /// This replica's shard, from 0 to --shard.count − 1; `from-hostname` takes the trailing
    /// `-N` of the hostname (a StatefulSet pod ordinal).
    #[arg(
        long = "shard.index",
        env = "DCS_EXPORTER_SHARD_INDEX",
        default_value = "0",
        value_name = "N|from-hostname"
    )]
    shard_index: String,

    /// Number of replicas the instances are split over (by a stable hash of the instance id).
    #[arg(
        long = "shard.count",
        env = "DCS_EXPORTER_SHARD_COUNT",
        default_value_t = 1,
        value_name = "N"
    )]
    shard_count: u32,

    /// Never create analysis tasks: every analysis configured `trigger` runs as `observe`
    /// (the standby replica of a high-availability pair).
    #[arg(
        long = "analysis.observe-only",
        env = "DCS_EXPORTER_ANALYSIS_OBSERVE_ONLY"
    )]
    observe_only: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config file: exit 0, or print every problem and exit 2.
    CheckConfig {
        /// Also call the DCS API once per cloud to prove endpoint and credentials work.
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
        #[arg(long = "sim.access-key", env = "DCS_EXPORTER_SIM_ACCESS_KEY")]
        access_key: Option<String>,
        /// Secret key the simulator accepts.
        #[arg(
            long = "sim.secret-key",
            env = "DCS_EXPORTER_SIM_SECRET_KEY",
            hide_env_values = true
        )]
        secret_key: Option<String>,
        /// Project id the simulator serves.
        #[arg(long = "sim.project-id", env = "DCS_EXPORTER_SIM_PROJECT_ID")]
        project_id: Option<String>,
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
enum LogFormat {
    Logfmt,
    Json,
}

/// Exit code for a bad command line or config.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli))
}

/// Keeps glibc's heap compact. The exporter is long-running and keeps replacing large buffers
/// (rendered results, compressed bodies) from several threads; with glibc's defaults every
/// thread that allocates gets an arena of its own, and the mmap threshold rises to the largest
/// buffer freed so far, so freed memory stays scattered over the arenas and is rarely returned.
/// At 300 instances that doubled the resident size (see BENCHMARKS.md). One arena (each thread
/// still has its own lock-free cache for small blocks) and a fixed 64 KiB mmap threshold (large
/// buffers go back to the system when freed) keep it near what is really in use.
///
/// A knob set by the operator (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, or any
/// `GLIBC_TUNABLES`) is left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let knobs = [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 1),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 64 * 1024),
    ];
    for (env, param, value) in knobs {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only sets an allocator parameter (it takes the allocator's own
            // lock); it is called first thing in `main`, before any thread is started.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

async fn async_main(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::CheckConfig { online }) => check_config(&cli, online).await,
        Some(Command::Simulate {
            seed,
            instances,
            ref access_key,
            ref secret_key,
            ref project_id,
            time_scale,
        }) => {
            let mut sim = if instances == 0 {
                SimConfig::demo()
            } else {
                SimConfig::generated(seed, instances)
            };
            sim.seed = seed;
            if let Some(ak) = access_key {
                sim.access_key = ak.clone();
            }
            if let Some(sk) = secret_key {
                sim.secret_key = sk.as_str().into();
            }
            if let Some(p) = project_id {
                sim.project_id = p.clone();
            }
            if let Some(scale) = time_scale {
                if !scale.is_finite() || scale <= 0.0 {
                    return fatal(
                        EXIT_USAGE,
                        anyhow::anyhow!("--sim.time-scale must be a positive number"),
                    );
                }
                sim.time_scale = scale;
            }
            let addr = match parse_listen(&cli.listen_address) {
                Ok(a) => a,
                Err(e) => return fatal(EXIT_USAGE, e),
            };
            let shutdown = shutdown_on_signals(None);
            match simulator::run_standalone(addr, sim, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(1, anyhow::Error::new(e)),
            }
        }
        None => serve(cli).await,
    }
}

async fn serve(cli: Cli) -> ExitCode {
    // A bad web config stops the start with exit code 2, before anything is bound.
    let web_config = match &cli.web_config_file {
        Some(p) => match WebConfigWatcher::load(p) {
            Ok(w) => Some(std::sync::Arc::new(w)),
            Err(e) => return fatal(EXIT_USAGE, anyhow::Error::new(e)),
        },
        None => None,
    };
    if !config::is_metric_namespace(&cli.namespace) {
        return fatal(
            EXIT_USAGE,
            anyhow::anyhow!(
                "--metrics.namespace: {:?} is not a valid metric name prefix",
                cli.namespace
            ),
        );
    }
    if !cli.telemetry_path.starts_with('/') {
        return fatal(
            EXIT_USAGE,
            anyhow::anyhow!("--web.telemetry-path must start with '/'"),
        );
    }
    let hostname = std::env::var("HOSTNAME").ok().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
    });
    let shard = match Shard::from_flags(&cli.shard_index, cli.shard_count, hostname.as_deref()) {
        Ok(s) => s,
        Err(e) => return fatal(EXIT_USAGE, anyhow::Error::new(e)),
    };
    let addr = match parse_listen(&cli.listen_address) {
        Ok(a) => a,
        Err(e) => return fatal(EXIT_USAGE, e),
    };
    let (reload_tx, reload_rx) = app::reload_channel();
    let shutdown = shutdown_on_signals(Some(reload_tx.clone()));
    let demo_tracker = TaskTracker::new();
    let source = if cli.demo {
        match dcs_key_exporter::demo::start(shutdown.child_token(), &demo_tracker).await {
            Ok((config, _sim)) => ConfigSource::Fixed(Box::new(config)),
            Err(e) => {
                return fatal(
                    1,
                    anyhow::Error::new(e).context("cannot start the demo simulator"),
                )
            }
        }
    } else {
        match &cli.config_file {
            Some(p) => {
                // Fail fast with exit code 2 on a bad config, before binding anything.
                if let Err(e) = config::load_file(p) {
                    for p in e.problems() {
                        eprintln!("error: {p}");
                    }
                    return ExitCode::from(EXIT_USAGE);
                }
                ConfigSource::File(p.clone())
            }
            None => {
                return fatal(
                    EXIT_USAGE,
                    anyhow::anyhow!("no config: pass --config.file=PATH, or try --demo"),
                )
            }
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            return fatal(
                1,
                anyhow::Error::new(e).context(format!("cannot listen on {addr}")),
            )
        }
    };
    let web = web_config.as_ref().map(|w| w.active());
    tracing::info!(address = %listener.local_addr().map_or(addr, |a| a), version = env!("CARGO_PKG_VERSION"),
        tls = web.as_ref().is_some_and(|c| c.tls.is_some()),
        basic_auth = web.as_ref().is_some_and(|c| c.basic_auth.is_some()), "listening");
    let opts = RunOptions {
        telemetry_path: cli.telemetry_path.clone(),
        namespace: cli.namespace.clone(),
        web_config,
        fleet: FleetOptions {
            shard,
            observe_only: cli.observe_only,
        },
    };
    let result = app::run(
        source,
        listener,
        opts,
        (reload_tx, reload_rx),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    demo_tracker.close();
    let _ = tokio::time::timeout(app::SHUTDOWN_GRACE, demo_tracker.wait()).await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(app::Error::Config(e)) => fatal(EXIT_USAGE, anyhow::Error::new(e)),
        Err(e) => fatal(1, anyhow::Error::new(e)),
    }
}

async fn check_config(cli: &Cli, online: bool) -> ExitCode {
    let Some(path) = &cli.config_file else {
        return fatal(
            EXIT_USAGE,
            anyhow::anyhow!("check-config needs --config.file=PATH"),
        );
    };
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            for p in e.problems() {
                println!("error: {p}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let instances: usize = config.clouds.iter().map(|c| c.instances.len()).sum();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let discovering = config
        .clouds
        .iter()
        .filter(|c| c.discovery.is_some())
        .count();
    let discovery = match discovering {
        0 => String::new(),
        n => format!(", discovery in {n} of them"),
    };
    let redis = match config.redis.len() {
        0 => String::new(),
        n => format!(", {}", plural(n, "Redis/Valkey target")),
    };
    println!(
        "{}: OK ({}, {}{discovery}{redis})",
        path.display(),
        plural(config.clouds.len(), "cloud"),
        plural(instances, "instance")
    );
    if !online {
        return ExitCode::SUCCESS;
    }
    let mut ok = true;
    for cloud in &config.clouds {
        let ids: Vec<String> = cloud.instances.iter().map(|i| i.id.clone()).collect();
        let verdict = match DcsClient::new(cloud.client.clone(), None) {
            Ok(client) => client.check_online(&ids).await,
            Err(e) => Err(e),
        };
        match verdict {
            Ok(msg) => println!("cloud {}: OK: {msg}", cloud.name),
            Err(e) => {
                ok = false;
                println!("cloud {}: FAILED: {e:#}", cloud.name);
            }
        }
    }
    for target in &config.redis {
        match dcs_key_exporter::native::probe::check_online(target).await {
            Ok(report) => println!("redis {}: OK: {report}", target.id),
            Err(e) => {
                ok = false;
                println!("redis {}: FAILED: {e}", target.id);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Accepts `:9797`, `0.0.0.0:9797`, `127.0.0.1:0`, `[::]:9797`.
fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .with_context(|| format!("--web.listen-address: {s:?} is not HOST:PORT"))
}

fn fatal(code: u8, e: anyhow::Error) -> ExitCode {
    tracing::error!(error = %format!("{e:#}"), "fatal");
    eprintln!("error: {e:#}");
    ExitCode::from(code)
}

/// Cancels the returned token on SIGTERM or SIGINT; SIGHUP asks for a config reload.
fn shutdown_on_signals(
    reload: Option<tokio::sync::mpsc::Sender<app::ReloadRequest>>,
) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); break }
                _ = int.recv() => { tracing::info!("SIGINT received"); break }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading config");
                    if let Some(tx) = &reload {
                        let (reply, _) = tokio::sync::oneshot::channel();
                        let _ = tx.send(reply).await;
                    }
                }
            }
        }
        t.cancel();
    });
    token
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    // Our own crate logs at the chosen level; dependencies only warn.
    let filter = EnvFilter::new(format!("warn,dcs_key_exporter={}", cli.log_level));
    let registry = tracing_subscriber::registry().with(filter);
    match cli.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_span_path(false)
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
