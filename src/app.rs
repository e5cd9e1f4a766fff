//! Wires config, DCS clients, scheduler, metrics and HTTP server together.
//!
//! [`run`] is what the binary calls after parsing flags and binding the listener: it builds one
//! client per cloud, applies the plan to the scheduler, serves HTTP, re-reads the config on
//! reload requests (SIGHUP or `POST /-/reload`), and on shutdown stops scheduling and lets
//! in-flight requests finish within [`SHUTDOWN_GRACE`]. In `--demo` mode the config comes from
//! [`crate::simulator`] instead of a file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{self, Config, ConfigError, KeyLabelKind};
use crate::dcs::{self, ClientConfig, DcsClient};
use crate::metrics::exposition::Exposition;
use crate::metrics::keylabel::KeyLabelMode;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::Store;
use crate::scheduler::{Clock, CloudPlan, Scheduler};
use crate::server::{self, ServerState};

/// Longest wait for in-flight work after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A reload request; the reply says whether the new config was taken.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A YAML file, re-read on reload.
    File(PathBuf),
    /// A fixed config (`--demo`, tests); reload keeps it.
    Fixed(Box<Config>),
}

impl ConfigSource {
    fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(p) => config::load_file(p),
            ConfigSource::Fixed(c) => Ok((**c).clone()),
        }
    }
}

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub telemetry_path: String,
    /// `--metrics.namespace`; the config file's `metrics.namespace` wins when set.
    pub namespace: String,
    /// `--web.config.file`, loaded: TLS and basic auth. `None` serves plain HTTP.
    pub web_config: Option<Arc<crate::server::web_config::WebConfigWatcher>>,
}

/// Why the exporter could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the DCS client for cloud {cloud}: {source}")]
    Client { cloud: String, source: dcs::Error },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP server failed: {0}")]
    Server(#[from] std::io::Error),
}

/// Creates the channel that carries reload requests to [`run`].
pub fn reload_channel() -> (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>) {
    mpsc::channel(4)
}

/// The clouds' clients, kept across reloads while their settings do not change so that the
/// scheduler does not restart their loops.
struct Clients {
    clouds: Vec<(ClientConfig, Arc<DcsClient>)>,
}

impl Clients {
    fn build(
        &mut self,
        config: &Config,
        exposition: &Exposition,
    ) -> Result<Vec<CloudPlan<DcsClient>>, Error> {
        let mut next = Vec::new();
        let mut plan = Vec::new();
        for cloud in &config.clouds {
            let reused = self
                .clouds
                .iter()
                .find(|(c, _)| *c == cloud.client)
                .map(|(_, client)| client.clone());
            let client = match reused {
                Some(c) => c,
                None => Arc::new(
                    DcsClient::new(cloud.client.clone(), Some(exposition.api_metrics())).map_err(
                        |source| Error::Client {
                            cloud: cloud.name.clone(),
                            source,
                        },
                    )?,
                ),
            };
            next.push((cloud.client.clone(), client.clone()));
            plan.push(CloudPlan {
                name: cloud.name.clone(),
                client,
                instances: cloud.instances.clone(),
            });
        }
        self.clouds = next;
        Ok(plan)
    }
}

fn render_options(config: &Config, opts: &RunOptions) -> RenderOptions {
    RenderOptions {
        namespace: config
            .metrics
            .namespace
            .clone()
            .unwrap_or_else(|| opts.namespace.clone()),
        key_label: match config.metrics.key_label {
            KeyLabelKind::Name => KeyLabelMode::Name {
                max_bytes: config.metrics.key_label_max_bytes,
            },
            KeyLabelKind::Hash => KeyLabelMode::Hash,
        },
        key_rewrite: config.metrics.key_rewrite.clone(),
    }
}

/// Runs the exporter until `shutdown` is cancelled.
pub async fn run(
    source: ConfigSource,
    listener: TcpListener,
    opts: RunOptions,
    reload: (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>),
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let config = source.load()?;
    let store = Arc::new(Store::new());
    let exposition = Arc::new(Exposition::new(
        store.clone(),
        render_options(&config, &opts),
    )?);
    exposition.set_config_reload_successful(true);

    let tracker = TaskTracker::new();
    let loops_token = shutdown.child_token();
    let mut clients = Clients { clouds: Vec::new() };
    let mut scheduler = Scheduler::new(
        store.clone(),
        Clock::System,
        config.api.max_concurrent_requests,
        loops_token.clone(),
        tracker.clone(),
    );
    scheduler.set_start_jitter(config.scheduler.start_jitter);
    scheduler.apply(clients.build(&config, &exposition)?);
    let instances: usize = config.clouds.iter().map(|c| c.instances.len()).sum();
    info!(clouds = config.clouds.len(), instances, "scheduler started");
    warn_unimplemented(&config);

    let (ready_tx, ready_rx) = watch::channel(false);
    let (reload_tx, mut reload_rx) = reload;
    let state = Arc::new(ServerState {
        exposition: exposition.clone(),
        store: store.clone(),
        telemetry_path: opts.telemetry_path.clone(),
        ready: ready_rx,
        reload: Some(reload_tx),
    });
    let server_token = shutdown.child_token();
    let server = match opts.web_config.clone() {
        Some(web) => tokio::spawn(server::run_with_web_config(
            listener,
            state,
            web,
            server_token.clone(),
        )),
        None => tokio::spawn(server::run(listener, state, server_token.clone())),
    };
    let _ = ready_tx.send(true);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            req = reload_rx.recv() => {
                let Some(reply) = req else { continue };
                let result = match source.load() {
                    Ok(new) => match clients.build(&new, &exposition) {
                        Ok(plan) => {
                            scheduler.set_max_concurrent_requests(new.api.max_concurrent_requests);
                            scheduler.set_start_jitter(new.scheduler.start_jitter);
                            scheduler.apply(plan);
                            exposition.set_render_options(render_options(&new, &opts));
                            warn_unimplemented(&new);
                            info!(loops = scheduler.loop_count(), "config reloaded");
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                exposition.set_config_reload_successful(result.is_ok());
                if let Err(e) = &result {
                    error!(error = %e, "config reload failed; the previous config keeps running");
                }
                let _ = reply.send(result);
            }
        }
    }

    info!("shutting down: no new analyses; waiting for requests in flight");
    loops_token.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "requests still in flight after the grace period; exiting anyway");
    }
    server_token.cancel();
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => error!(error = %join, "HTTP server task failed"),
        Err(_) => warn!("HTTP server did not stop within the grace period"),
    }
    Ok(())
}

fn warn_unimplemented(config: &Config) {
    for cloud in &config.clouds {
        if cloud.discovery.is_some() {
            warn!(cloud = %cloud.name,
                "discovery is configured but not implemented in this version; only the listed instances are analysed");
        }
    }
}
