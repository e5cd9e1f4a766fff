//! `--demo`: the exporter against an embedded DCS simulator, with no cloud account.
//!
//! Starts the simulator's demo preset on a loopback port and builds the config that points the
//! exporter at it, with intervals short enough that hot keys, big keys, key families and failures
//! show on `/metrics` within about 15 seconds and keep changing. The offline key analysis (key
//! families), off by default, is on here.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{
    AnalysisSettings, ApiSettings, CloudConfig, Config, InstanceConfig, InstanceDefaults,
    KeyfamilySettings, MetricsSettings, Mode, SchedulerSettings,
};
use crate::dcs::{Analysis, Auth, ClientConfig};
use crate::metrics::keylabel::KeyLabelMode;
use crate::simulator::{SimConfig, Simulator};
use crate::supervisor::Supervisor;

/// Analysis settings of the demo: short intervals, so results keep changing.
pub fn demo_settings(analysis: Analysis) -> AnalysisSettings {
    match analysis {
        Analysis::Hotkey => AnalysisSettings {
            mode: Mode::Trigger,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(60),
            top_n: 20,
        },
        Analysis::Bigkey => AnalysisSettings {
            mode: Mode::Trigger,
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(60),
            top_n: 20,
        },
        // On in the demo (off by default), with a short interval so that families appear
        // within seconds and grow over time.
        Analysis::Keyfamily => AnalysisSettings {
            mode: Mode::Trigger,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            top_n: 15,
        },
        // Read from Redis Cluster servers only: the demo's DCS instances have none.
        Analysis::Hotslot => AnalysisSettings::OFF,
    }
}

/// The config that points the exporter at a simulator serving `sim` on `endpoint`.
pub fn config_for(sim: &Simulator, sim_config: &SimConfig, endpoint: url::Url) -> Config {
    let defaults = InstanceDefaults {
        lfu_log_factor: 10,
        hotkey: demo_settings(Analysis::Hotkey),
        bigkey: demo_settings(Analysis::Bigkey),
        // Off here (tests build on this config); `start` turns it on.
        keyfamily: KeyfamilySettings::default(),
    };
    let instances = sim
        .instances()
        .into_iter()
        .map(|i| InstanceConfig {
            id: i.id.clone(),
            name: Some(i.name.clone()),
            lfu_log_factor: 10,
            hotkey: defaults.hotkey,
            bigkey: defaults.bigkey,
            keyfamily: defaults.keyfamily,
        })
        .collect();
    let mut client = ClientConfig::new(
        endpoint,
        sim_config.project_id.clone(),
        Auth::AkSk {
            access_key: sim_config.access_key.clone(),
            secret_key: sim_config.secret_key.clone(),
            security_token: None,
        },
    );
    client.request_timeout = Duration::from_secs(5);
    client.retry_base_delay = Duration::from_millis(200);
    client.retry_max_delay = Duration::from_secs(2);
    Config {
        redis: Vec::new(),
        clouds: vec![CloudConfig {
            name: "demo".into(),
            client,
            instances,
            discovery: None,
            defaults,
        }],
        metrics: MetricsSettings {
            namespace: None,
            key_label: KeyLabelMode::Name { max_bytes: 200 },
            key_rewrite: Default::default(),
        },
        api: ApiSettings {
            timeout: Duration::from_secs(5),
            max_retries: 2,
            max_concurrent_requests: 8,
            max_response_bytes: 32 << 20,
        },
        // Results within seconds: the demo is about seeing data, not sparing a fleet.
        scheduler: SchedulerSettings {
            start_jitter: Duration::from_secs(2),
        },
    }
}

/// Turns the key family analysis on for every instance of `config`, with the demo's short
/// interval and a fresh backup per run (so that families change between runs, as the keyspace
/// drifts).
pub fn enable_key_families(config: &mut Config) {
    let demo = KeyfamilySettings {
        analysis: demo_settings(Analysis::Keyfamily),
        fresh_backup: true,
    };
    for cloud in &mut config.clouds {
        cloud.defaults.keyfamily = demo;
        for inst in &mut cloud.instances {
            inst.keyfamily = demo;
        }
    }
}

/// Starts the demo simulator on a loopback port, as a service of `supervisor` (it stopping
/// before `shutdown` is cancelled is a failure). Returns the exporter config that points at it,
/// and the simulator for inspection.
pub async fn start(
    shutdown: CancellationToken,
    supervisor: &Supervisor,
) -> std::io::Result<(Config, Simulator)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let sim_config = SimConfig::demo();
    let sim = Simulator::new(sim_config.clone());
    let endpoint = url::Url::parse(&format!("http://{addr}"))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut config = config_for(&sim, &sim_config, endpoint);
    enable_key_families(&mut config);
    let serving = sim.clone();
    supervisor.spawn_service("demo simulator", shutdown.clone(), async move {
        serving.serve(listener, shutdown).await
    });
    tracing::info!(address = %addr, instances = sim.instances().len(),
        "demo mode: embedded DCS simulator started");
    Ok((config, sim))
}
