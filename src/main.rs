//! The `dcs-key-exporter` binary: parses flags ([`dcs_key_exporter::cli`] checks them), sets up
//! logging, loads the config once, binds the listener and hands over to
//! [`dcs_key_exporter::app::run_loaded`].

use std::process::ExitCode;

use clap::Parser as _;
use tokio_util::sync::CancellationToken;

use dcs_key_exporter::app::{self, ConfigSource, RunOptions};
use dcs_key_exporter::cli::{self, Args, Command, LogFormat, ServeOptions, Source, EXIT_USAGE};
use dcs_key_exporter::config;
use dcs_key_exporter::server::web_config::WebConfigWatcher;
use dcs_key_exporter::simulator;
use dcs_key_exporter::supervisor::Supervisor;

fn main() -> ExitCode {
    tune_malloc();
    let args = Args::parse();
    init_logging(&args);
    let hostname = std::env::var("HOSTNAME").ok().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
    });
    let command = match args.into_command(hostname.as_deref()) {
        Ok(c) => c,
        Err(e) => return fatal(EXIT_USAGE, anyhow::Error::new(e)),
    };
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
    runtime.block_on(async_main(command))
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

async fn async_main(command: Command) -> ExitCode {
    match command {
        Command::CheckConfig { source, online } => {
            let report = cli::check_source(&source, online).await;
            for line in &report.lines {
                println!("{line}");
            }
            ExitCode::from(report.exit)
        }
        Command::Simulate { listen, sim } => {
            let supervisor = Supervisor::new();
            let shutdown = match shutdown_on_signals(&supervisor, None) {
                Ok(t) => t,
                Err(e) => return fatal(1, e),
            };
            let result = tokio::select! {
                r = simulator::run_standalone(listen, sim, shutdown.clone()) => {
                    r.map_err(anyhow::Error::new)
                }
                f = supervisor.failed() => Err(anyhow::Error::new(f)),
            };
            shutdown.cancel();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(1, e),
            }
        }
        Command::Serve(opts) => serve(opts).await,
    }
}

async fn serve(opts: ServeOptions) -> ExitCode {
    // A bad web config or config stops the start with exit code 2, before anything is bound.
    let web_config = match &opts.web_config_file {
        Some(p) => {
            let p = p.clone();
            match tokio::task::spawn_blocking(move || WebConfigWatcher::load(&p)).await {
                Ok(Ok(w)) => Some(std::sync::Arc::new(w)),
                Ok(Err(e)) => return fatal(EXIT_USAGE, anyhow::Error::new(e)),
                Err(e) => return fatal(1, anyhow::Error::new(e)),
            }
        }
        None => None,
    };
    let (reload_tx, reload_rx) = app::reload_channel();
    // Every task of the process runs under this supervisor; a failure of any of them makes
    // the exporter not ready, stops it, and exits with code 1.
    let supervisor = Supervisor::new();
    let shutdown = match shutdown_on_signals(&supervisor, Some(reload_tx.clone())) {
        Ok(t) => t,
        Err(e) => return fatal(1, e),
    };
    let (source, loaded) = match &opts.source {
        Source::Demo => {
            match dcs_key_exporter::demo::start(shutdown.child_token(), &supervisor).await {
                Ok((config, _sim)) => {
                    let loaded = config::Loaded {
                        config: config.clone(),
                        warnings: Vec::new(),
                    };
                    (ConfigSource::Fixed(Box::new(config)), loaded)
                }
                Err(e) => {
                    return fatal(
                        1,
                        anyhow::Error::new(e).context("cannot start the demo simulator"),
                    )
                }
            }
        }
        Source::File(_) | Source::Redis(_) => {
            // Loaded once, here; the exporter starts on this very config.
            let source = opts.source.clone();
            match tokio::task::spawn_blocking(move || source.load()).await {
                Ok(Some(Ok(loaded))) => {
                    let source = match &opts.source {
                        Source::File(p) => ConfigSource::File(p.clone()),
                        // Flags cannot change while the process runs: a reload keeps them.
                        _ => ConfigSource::Fixed(Box::new(loaded.config.clone())),
                    };
                    (source, loaded)
                }
                Ok(Some(Err(e))) => {
                    for p in e.problems() {
                        eprintln!("error: {p}");
                    }
                    return ExitCode::from(EXIT_USAGE);
                }
                Ok(None) => return fatal(1, anyhow::anyhow!("no config to load")),
                Err(e) => return fatal(1, anyhow::Error::new(e)),
            }
        }
    };
    let listener = match tokio::net::TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            return fatal(
                1,
                anyhow::Error::new(e).context(format!("cannot listen on {}", opts.listen)),
            )
        }
    };
    let web = web_config.as_ref().map(|w| w.active());
    tracing::info!(address = %listener.local_addr().map_or(opts.listen, |a| a), version = env!("CARGO_PKG_VERSION"),
        tls = web.as_ref().is_some_and(|c| c.tls.is_some()),
        basic_auth = web.as_ref().is_some_and(|c| c.basic_auth.is_some()), "listening");
    let run_opts = RunOptions {
        telemetry_path: opts.telemetry_path,
        namespace: opts.namespace,
        web_config,
        fleet: opts.fleet,
        supervisor: supervisor.clone(),
        max_connections: opts.max_connections,
    };
    let result = app::run_loaded(
        source,
        loaded,
        listener,
        run_opts,
        (reload_tx, reload_rx),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    supervisor.close();
    if tokio::time::timeout(app::SHUTDOWN_GRACE, supervisor.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks still running after the grace period; exiting anyway");
    }
    // A task of this binary (signal handling, the demo simulator) may have failed while the
    // exporter stopped.
    let result = match (result, supervisor.failure()) {
        (Ok(()), Some(failure)) => Err(app::Error::Task(failure)),
        (result, _) => result,
    };
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(app::Error::Config(e)) => fatal(EXIT_USAGE, anyhow::Error::new(e)),
        Err(e) => fatal(1, anyhow::Error::new(e)),
    }
}

/// Prints a fatal error, once, as `error: …` on standard error, and gives the exit code.
fn fatal(code: u8, e: anyhow::Error) -> ExitCode {
    eprintln!("error: {}", cli::error_chain(e.as_ref()));
    ExitCode::from(code)
}

/// Cancels the returned token on SIGTERM or SIGINT; SIGHUP asks for a config reload. The
/// handlers are installed before this returns (failing to is an error: the process could not
/// be stopped gracefully); they are watched by a service of `supervisor`, which ends when the
/// token is cancelled.
fn shutdown_on_signals(
    supervisor: &Supervisor,
    reload: Option<tokio::sync::mpsc::Sender<app::ReloadRequest>>,
) -> anyhow::Result<CancellationToken> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind: SignalKind, name: &str| {
        signal(kind).with_context(|| format!("cannot install the {name} handler"))
    };
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = install(SignalKind::hangup(), "SIGHUP")?;
    let token = CancellationToken::new();
    let t = token.clone();
    supervisor.spawn_service("signal handler", token.clone(), async move {
        loop {
            tokio::select! {
                _ = t.cancelled() => return,
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
    Ok(token)
}

fn init_logging(cli: &Args) {
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
