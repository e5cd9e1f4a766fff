//! Wires config, DCS clients, scheduler, metrics and HTTP server together.
//!
//! [`run`] is what the binary calls after parsing flags and binding the listener: it builds one
//! client per cloud, starts the discovery loops, applies the plan to the scheduler, serves HTTP,
//! re-plans on every discovery listing and on reload requests (SIGHUP or `POST /-/reload`), and
//! on shutdown stops scheduling and lets in-flight requests finish within [`SHUTDOWN_GRACE`]. In
//! `--demo` mode the config comes from [`crate::simulator`] instead of a file.
//!
//! A reload restarts only the loops whose settings changed and logs them by instance and
//! analysis; Redis and Valkey targets whose connection settings stay the same are kept (their
//! other scans run on), and every analysis found unsupported is asked again at once.
//!
//! The HTTP server and the metrics assembler run as services of the [`Supervisor`] in
//! [`RunOptions::supervisor`], beside the binary's own tasks. When any of them panics, fails or
//! stops early, `/-/ready` answers 503 from then on, the exporter shuts down as on a signal,
//! and [`run`] returns [`Error::Task`] (exit code 1).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{self, Config, ConfigError, Loaded};
use crate::dcs::{ClientConfig, DcsClient};
use crate::fleet::{self, CloudInput, Discoveries, FleetMetrics, FleetOptions};
use crate::metrics::exposition::Exposition;
use crate::metrics::render::RenderOptions;
use crate::metrics::store::Store;
use crate::native::NativeTarget;
use crate::scheduler::{Changes, Clock, Plan, Scheduler, SchedulerMetrics};
use crate::server::{self, ServerState};
use crate::supervisor::{Supervisor, TaskFailure};

/// Longest wait for in-flight work after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub use crate::config::reload::{ReloadError, ReloadRequest, ReloadResult};

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A YAML file, re-read on reload.
    File(PathBuf),
    /// A fixed config (`--demo`, tests); reload keeps it.
    Fixed(Box<Config>),
}

impl ConfigSource {
    /// Loads the config on a blocking thread: a slow file system never stalls the loop.
    async fn load(&self) -> Result<Loaded, ReloadError> {
        match self {
            ConfigSource::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || config::load_file_checked(&p))
                    .await
                    .map_err(|e| ReloadError::Loader(e.to_string()))?
                    .map_err(ReloadError::Config)
            }
            ConfigSource::Fixed(c) => Ok(Loaded {
                config: (**c).clone(),
                warnings: Vec::new(),
            }),
        }
    }
}

/// Logs what looked wrong in a config without being an error.
fn log_warnings(loaded: &Loaded) {
    for w in &loaded.warnings {
        warn!(key = %w.key, line = w.line, "config: {}", w.message);
    }
}

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub telemetry_path: String,
    /// `--metrics.namespace`; the config file's `metrics.namespace` wins when set.
    pub namespace: String,
    /// `--shard.*` and `--analysis.observe-only`.
    pub fleet: FleetOptions,
    /// `--web.config.file`, loaded: TLS and basic auth. `None` serves plain HTTP.
    pub web_config: Option<Arc<crate::server::web_config::WebConfigWatcher>>,
    /// Where the exporter's long-running tasks run; the caller may have spawned its own
    /// already (signal handling, the demo simulator). Any failure among them stops the run.
    pub supervisor: Supervisor,
    /// `--web.max-connections`.
    pub max_connections: u32,
}

impl Default for RunOptions {
    /// The flags' defaults.
    fn default() -> Self {
        RunOptions {
            telemetry_path: "/metrics".into(),
            namespace: "dcs".into(),
            fleet: FleetOptions::default(),
            web_config: None,
            supervisor: Supervisor::new(),
            max_connections: server::MAX_CONNECTIONS,
        }
    }
}

/// Why the exporter could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config loads, but the exporter cannot start on it (a DCS client cannot be built).
    #[error(transparent)]
    Start(ReloadError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A supervised task panicked, failed or stopped early.
    #[error(transparent)]
    Task(#[from] TaskFailure),
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
    /// One client per configured cloud, in config order.
    fn build(
        &mut self,
        config: &Config,
        exposition: &Exposition,
    ) -> Result<Vec<Arc<DcsClient>>, ReloadError> {
        let mut next = Vec::new();
        let mut per_cloud = Vec::new();
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
                        |source| ReloadError::Client {
                            cloud: cloud.name.clone(),
                            source,
                        },
                    )?,
                ),
            };
            next.push((cloud.client.clone(), client.clone()));
            per_cloud.push(client);
        }
        self.clouds = next;
        Ok(per_cloud)
    }
}

/// What the plan is computed from: the config in force, its clients, the discovery listings
/// and this replica's options. Re-planned on every listing and on reload.
struct Fleet {
    config: Config,
    clients: Vec<Arc<DcsClient>>,
    discoveries: Discoveries<DcsClient>,
    metrics: FleetMetrics,
    opts: FleetOptions,
    /// The instances of the last plan, to log what changed.
    handled: HashSet<String>,
    /// Redis and Valkey targets, kept across reloads while their settings stay the same.
    natives: Vec<Arc<NativeTarget>>,
    store: Arc<Store>,
    /// Gives the removed instances' memory back to the system.
    heap: Arc<crate::heap::Trimmer>,
}

impl Fleet {
    /// Takes a new config and its clients, and makes the discovery loops match it.
    fn configure(&mut self, config: Config, clients: Vec<Arc<DcsClient>>) {
        let pairs: Vec<_> = config.clouds.iter().zip(clients.iter().cloned()).collect();
        self.discoveries.sync(&pairs);
        self.natives =
            crate::native::fleet::reuse(&self.natives, &config.redis, &self.store, Clock::System);
        self.config = config;
        self.clients = clients;
    }

    /// Recomputes the plan and applies it to the scheduler; says which loops changed.
    fn apply(&mut self, scheduler: &mut Scheduler<DcsClient, NativeTarget>) -> Changes {
        let inputs = self
            .config
            .clouds
            .iter()
            .zip(&self.clients)
            .enumerate()
            .map(|(i, (config, client))| CloudInput {
                config,
                client: client.clone(),
                listing: self.discoveries.listing(i),
            })
            .collect();
        let plan = fleet::plan(inputs, &self.opts);
        self.discoveries
            .record(&self.config.clouds, &plan.discovered);
        let native = crate::native::fleet::plan(&self.natives, &self.opts);
        self.metrics
            .set_shard_instances(plan.handled + native.len());
        let ids: HashSet<String> = plan
            .clouds
            .iter()
            .flat_map(|c| c.instances.iter().map(|i| i.id.clone()))
            .chain(native.iter().map(|n| n.instance.id.clone()))
            .collect();
        let added = ids.difference(&self.handled).count();
        let removed = self.handled.difference(&ids).count();
        if added > 0 || removed > 0 {
            info!(added, removed, instances = plan.handled + native.len(),
                fleet = plan.total + self.natives.len(),
                shard = %self.opts.shard, "instance set changed");
        }
        self.handled = ids;
        let changes = scheduler.apply_plan(Plan {
            clouds: plan.clouds,
            native,
        });
        if removed > 0 {
            self.heap.soon();
        }
        changes
    }
}

fn render_options(config: &Config, opts: &RunOptions) -> RenderOptions {
    RenderOptions {
        namespace: config
            .metrics
            .namespace
            .clone()
            .unwrap_or_else(|| opts.namespace.clone()),
        key_label: config.metrics.key_label.clone(),
        key_rewrite: config.metrics.key_rewrite.clone(),
    }
}

/// Loads the config from `source`, then runs the exporter until `shutdown` is cancelled.
pub async fn run(
    source: ConfigSource,
    listener: TcpListener,
    opts: RunOptions,
    reload: (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>),
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let loaded = match source.load().await {
        Ok(l) => l,
        Err(ReloadError::Config(e)) => return Err(Error::Config(e)),
        Err(e) => return Err(Error::Start(e)),
    };
    run_loaded(source, loaded, listener, opts, reload, shutdown).await
}

/// Runs the exporter on a config loaded already (the binary validates it before it binds the
/// listener, and it is not read twice) until `shutdown` is cancelled; `source` is re-read on
/// reload.
pub async fn run_loaded(
    source: ConfigSource,
    loaded: Loaded,
    listener: TcpListener,
    opts: RunOptions,
    reload: (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>),
    shutdown: CancellationToken,
) -> Result<(), Error> {
    log_warnings(&loaded);
    let config = loaded.config;
    let store = Arc::new(Store::new());
    let exposition = Arc::new(Exposition::new(
        store.clone(),
        render_options(&config, &opts),
    )?);
    exposition.set_config_reload_successful(true);

    let supervisor = opts.supervisor.clone();
    // The scheduler's and discovery's loops stop first at shutdown, so they are tracked apart.
    let loops = supervisor.child();
    let loops_token = shutdown.child_token();
    let mut clients = Clients { clouds: Vec::new() };
    let mut scheduler = Scheduler::new(
        store.clone(),
        Clock::System,
        config.api.max_concurrent_requests,
        loops_token.clone(),
        loops.clone(),
    );
    scheduler.set_start_jitter(config.scheduler.start_jitter);
    let (registry, namespace) = exposition.registry();
    scheduler.set_metrics(SchedulerMetrics::register(registry, namespace)?);
    let fleet_metrics = FleetMetrics::register(registry, namespace, opts.fleet.shard)?;
    let (discoveries, mut listings) =
        Discoveries::new(loops_token.clone(), loops.clone(), fleet_metrics.clone());
    let first_clients = clients.build(&config, &exposition).map_err(Error::Start)?;
    let clouds = config.clouds.len();
    let discovering = config
        .clouds
        .iter()
        .filter(|c| c.discovery.is_some())
        .count();
    let mut fleet = Fleet {
        config: config.clone(),
        clients: Vec::new(),
        discoveries,
        metrics: fleet_metrics,
        opts: opts.fleet,
        handled: HashSet::new(),
        natives: Vec::new(),
        store: store.clone(),
        heap: crate::heap::Trimmer::new(),
    };
    fleet.configure(config, first_clients);
    fleet.apply(&mut scheduler);
    info!(clouds, discovering, instances = fleet.handled.len(), shard = %opts.fleet.shard,
        observe_only = opts.fleet.observe_only, "scheduler started");

    // /metrics is assembled as results arrive, not when it is scraped.
    loops.spawn_service(
        "metrics assembler",
        loops_token.clone(),
        exposition.clone().keep_assembled(loops_token.clone()),
    );

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
    let limits = server::Limits {
        max_connections: opts.max_connections,
        ..server::Limits::default()
    };
    let server = supervisor.spawn_service(
        "HTTP server",
        server_token.clone(),
        server::serve_with_limits(
            listener,
            state,
            opts.web_config.clone(),
            server_token.clone(),
            server::SHUTDOWN_GRACE,
            limits,
        ),
    );
    let _ = ready_tx.send(true);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            failure = supervisor.failed() => {
                // Not ready from now on: the drain below may take a while.
                let _ = ready_tx.send(false);
                error!(error = %failure, "shutting down after a task failure");
                break;
            }
            req = reload_rx.recv() => {
                let Some(reply) = req else { continue };
                // Read off this loop; a shutdown does not wait for a stuck read.
                let loaded = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    l = source.load() => l,
                };
                let result = match loaded {
                    Ok(loaded) => match clients.build(&loaded.config, &exposition) {
                        Ok(new_clients) => {
                            log_warnings(&loaded);
                            let new = loaded.config;
                            scheduler.set_max_concurrent_requests(new.api.max_concurrent_requests);
                            scheduler.set_start_jitter(new.scheduler.start_jitter);
                            exposition.set_render_options(render_options(&new, &opts));
                            fleet.configure(new, new_clients);
                            let changes = fleet.apply(&mut scheduler);
                            // The user may just have fixed what made an analysis unsupported.
                            scheduler.recheck_unsupported();
                            info!(loops = scheduler.loop_count(),
                                restarted = %Changes::names(&changes.restarted),
                                started = %Changes::names(&changes.started),
                                stopped = %Changes::names(&changes.stopped),
                                unchanged = changes.unchanged,
                                "config reloaded; unsupported analyses are asked again");
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                exposition.set_config_reload_successful(result.is_ok());
                if let Err(e) = &result {
                    error!(error = %e, "config reload failed; the previous config keeps running");
                }
                let _ = reply.send(result);
            }
            Some(listing) = listings.recv() => {
                if fleet.discoveries.accept(listing) {
                    fleet.apply(&mut scheduler);
                }
            }
        }
    }

    info!("shutting down: no new analyses; waiting for requests in flight");
    loops_token.cancel();
    loops.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, loops.wait())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "requests still in flight after the grace period; exiting anyway");
    }
    server_token.cancel();
    // The supervisor has logged and kept any failure of the server itself.
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        warn!("HTTP server did not stop within the grace period");
    }
    match supervisor.failure() {
        Some(failure) => Err(Error::Task(failure)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upper bound for things that should happen at once; only reached when a test fails.
    const PATIENCE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_fifo_as_the_config_fails_the_reload_and_shutdown_still_works() {
        let dir = std::env::temp_dir().join(format!(
            "dcs-app-fifo-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("config.yaml");
        // Nothing listens on the discard port of loopback: the loops just fail.
        std::fs::write(
            &path,
            "clouds:\n  - endpoint: http://127.0.0.1:9\n    project_id: 0123456789abcdef0123456789abcdef\n    auth: {access_key: a, secret_key: s}\n    instances: [{id: 5560df16-cebf-4473-95c4-d1b573c16e79}]\n",
        )
        .expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (reload_tx, reload_rx) = reload_channel();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(run(
            ConfigSource::File(path.clone()),
            listener,
            RunOptions::default(),
            (reload_tx.clone(), reload_rx),
            shutdown.clone(),
        ));
        // Running, and reloading a regular file works.
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        reload_tx.send(reply_tx).await.expect("app running");
        let first = tokio::time::timeout(PATIENCE, reply_rx)
            .await
            .expect("answered");
        assert!(matches!(first, Ok(Ok(()))), "{first:?}");
        // The config becomes a FIFO: opening it for reading would wait for a writer.
        std::fs::remove_file(&path).expect("rm");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        reload_tx.send(reply_tx).await.expect("app running");
        let reply = tokio::time::timeout(PATIENCE, reply_rx)
            .await
            .expect("the reload is answered")
            .expect("a reply");
        let e = reply.expect_err("a FIFO is refused");
        assert!(
            matches!(
                &e,
                ReloadError::Config(ConfigError::Read {
                    source: config::ReadError::NotRegular(config::file::FileKind::Fifo),
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("is not a regular file (it is a FIFO)"),
            "{e}"
        );
        shutdown.cancel();
        tokio::time::timeout(PATIENCE + SHUTDOWN_GRACE, run)
            .await
            .expect("the exporter stops")
            .expect("no panic")
            .expect("clean exit");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `GET /-/ready` of the exporter at `addr`: its status code, `None` when it does not answer.
    async fn ready_status(http: &reqwest::Client, addr: std::net::SocketAddr) -> Option<u16> {
        let resp = http
            .get(format!("http://{addr}/-/ready"))
            .send()
            .await
            .ok()?;
        Some(resp.status().as_u16())
    }

    #[tokio::test]
    async fn a_panicking_task_turns_readiness_off_and_fails_the_run() {
        use crate::supervisor::Failure;
        // A DCS endpoint that accepts and never answers: the analysis loops' first requests
        // stay in flight, so the shutdown drain lasts until they time out, and readiness can
        // be read meanwhile.
        let stuck = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let stuck_addr = stuck.local_addr().expect("address");
        let (accepted_tx, mut accepted_rx) = mpsc::channel(16);
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = stuck.accept().await {
                held.push(conn);
                let _ = accepted_tx.try_send(());
            }
        });
        let dir = std::env::temp_dir().join(format!(
            "dcs-app-panic-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            format!("clouds:\n  - endpoint: http://{stuck_addr}\n    project_id: 0123456789abcdef0123456789abcdef\n    auth: {{access_key: a, secret_key: s}}\n    instances: [{{id: 5560df16-cebf-4473-95c4-d1b573c16e79}}]\napi: {{timeout: 5s, max_retries: 0}}\n"),
        )
        .expect("write");

        let supervisor = Supervisor::new();
        let (trigger_tx, trigger_rx) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn("test task", async move {
            let _ = trigger_rx.await;
            crate::supervisor::tests::bug("injected failure");
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let opts = RunOptions {
            supervisor: supervisor.clone(),
            ..RunOptions::default()
        };
        let run = tokio::spawn(run(
            ConfigSource::File(path),
            listener,
            opts,
            reload_channel(),
            shutdown.clone(),
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let wait_for_ready = |want: u16| {
            let http = http.clone();
            async move {
                tokio::time::timeout(PATIENCE, async {
                    while ready_status(&http, addr).await != Some(want) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("/-/ready never answered {want}"));
            }
        };
        wait_for_ready(200).await;
        tokio::time::timeout(PATIENCE, accepted_rx.recv())
            .await
            .expect("a DCS request is in flight")
            .expect("the endpoint runs");

        trigger_tx.send(()).expect("the task waits");
        // Not ready while the exporter drains its requests in flight.
        wait_for_ready(503).await;
        let result = tokio::time::timeout(PATIENCE + SHUTDOWN_GRACE, run)
            .await
            .expect("the exporter stops on its own")
            .expect("no panic escapes");
        match result {
            Err(Error::Task(f)) => assert_eq!(
                f,
                TaskFailure {
                    task: "test task".into(),
                    failure: Failure::Panicked("injected failure".into()),
                }
            ),
            other => panic!("expected a task failure, got {other:?}"),
        }
        assert!(!shutdown.is_cancelled(), "the run stopped by itself");
        holder.abort();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_task_of_the_caller_that_stopped_early_fails_the_run() {
        // As the binary's signal handler would if it ended without a signal.
        let supervisor = Supervisor::new();
        let token = CancellationToken::new();
        supervisor.spawn_service("signal handler", token, async {});
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let config = crate::demo::config_for(
            &crate::simulator::Simulator::new(crate::simulator::SimConfig::demo()),
            &crate::simulator::SimConfig::demo(),
            url::Url::parse("http://127.0.0.1:9").expect("url"),
        );
        let result = tokio::time::timeout(
            PATIENCE + SHUTDOWN_GRACE,
            run(
                ConfigSource::Fixed(Box::new(config)),
                listener,
                RunOptions {
                    supervisor,
                    ..RunOptions::default()
                },
                reload_channel(),
                CancellationToken::new(),
            ),
        )
        .await
        .expect("the exporter stops on its own");
        match result {
            Err(Error::Task(f)) => {
                assert_eq!(f.task, "signal handler");
                assert_eq!(f.failure, crate::supervisor::Failure::Stopped);
            }
            other => panic!("expected a task failure, got {other:?}"),
        }
    }
}
