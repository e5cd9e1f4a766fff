//! Fleet scale: which instances this replica analyses.
//!
//! # Layout
//! - [`discovery`]: paging through ListInstances, the `discovery:` filters, the refresh loop.
//! - [`shard`]: rendezvous hashing of instance ids over `--shard.count` replicas.
//! - [`metrics`]: discovery and shard metrics in the exposition's registry.
//!
//! This module owns the step between the config and the scheduler. [`Discoveries`] runs one
//! supervised discovery loop per cloud with `discovery:` (a service of the app's [`Supervisor`],
//! under the loops' [`CancellationToken`]: a loop that panics or ends before it is cancelled
//! fails the exporter instead of silently freezing the cloud's instance set) and keeps each cloud's latest successful listing. [`plan`] is a
//! pure function from the config, those listings and this replica's [`FleetOptions`] to the
//! scheduler's [`CloudPlan`]s: explicit instances first (they keep their settings and names, and
//! are analysed whether or not discovery lists them), then discovered ones with the cloud's
//! defaults and their DCS name, all cut to this replica's shard. The app calls [`plan`] and
//! [`Scheduler::apply`](crate::scheduler::Scheduler::apply) on start, on reload and on every
//! listing, so `apply` stays the one place that starts and stops loops.

pub mod discovery;
pub mod metrics;
pub mod shard;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::config::{CloudConfig, InstanceConfig, Mode};
use crate::dcs::{DcsApi, InstanceInfo};
use crate::scheduler::CloudPlan;
use crate::supervisor::Supervisor;
pub use discovery::Listing;
pub use metrics::FleetMetrics;
pub use shard::Shard;

/// Per-replica settings from the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetOptions {
    /// This replica's shard (`--shard.index`, `--shard.count`).
    pub shard: Shard,
    /// `--analysis.observe-only`: every analysis configured `trigger` runs as `observe`, so this
    /// replica never creates tasks (the standby of a high-availability pair).
    pub observe_only: bool,
}

/// One cloud as [`plan`] sees it.
pub struct CloudInput<'a, C> {
    pub config: &'a CloudConfig,
    pub client: Arc<C>,
    /// The latest successful listing, if discovery is on and has listed once.
    pub listing: Option<&'a [InstanceInfo]>,
}

/// What [`plan`] decided.
pub struct FleetPlan<C> {
    /// The scheduler's input: this replica's instances per cloud.
    pub clouds: Vec<CloudPlan<C>>,
    /// Per input cloud: instances discovery found after its filters (`None`: no listing yet, or
    /// discovery is off).
    pub discovered: Vec<Option<usize>>,
    /// Instances over all clouds before sharding.
    pub total: usize,
    /// Instances this replica analyses.
    pub handled: usize,
}

/// Merges explicit and discovered instances, cuts them to the shard, applies the mode override.
pub fn plan<C>(clouds: Vec<CloudInput<'_, C>>, opts: &FleetOptions) -> FleetPlan<C> {
    let mut seen = HashSet::new();
    let mut out = FleetPlan {
        clouds: Vec::with_capacity(clouds.len()),
        discovered: Vec::with_capacity(clouds.len()),
        total: 0,
        handled: 0,
    };
    for cloud in clouds {
        let cfg = cloud.config;
        let listed: HashMap<&str, &InstanceInfo> = cloud
            .listing
            .unwrap_or_default()
            .iter()
            .map(|i| (i.instance_id.as_str(), i))
            .collect();
        let mut instances: Vec<InstanceConfig> = Vec::new();
        for inst in &cfg.instances {
            if !seen.insert(inst.id.clone()) {
                continue;
            }
            let mut inst = inst.clone();
            if inst.name.is_none() {
                // Known from the listing: no ShowInstance needed for the name.
                inst.name = listed
                    .get(inst.id.as_str())
                    .filter(|i| !i.name.is_empty())
                    .map(|i| i.name.clone());
            }
            instances.push(inst);
        }
        let discovered = match (&cfg.discovery, cloud.listing) {
            (Some(filter), Some(listing)) => {
                let mut n = 0;
                for info in listing.iter().filter(|i| discovery::matches(filter, i)) {
                    n += 1;
                    if !seen.insert(info.instance_id.clone()) {
                        continue;
                    }
                    instances.push(InstanceConfig {
                        id: info.instance_id.clone(),
                        name: (!info.name.is_empty()).then(|| info.name.clone()),
                        lfu_log_factor: cfg.defaults.lfu_log_factor,
                        hotkey: cfg.defaults.hotkey,
                        bigkey: cfg.defaults.bigkey,
                        keyfamily: cfg.defaults.keyfamily,
                    });
                }
                Some(n)
            }
            _ => None,
        };
        out.total += instances.len();
        instances.retain(|i| opts.shard.owns(&i.id));
        if opts.observe_only {
            for inst in &mut instances {
                for s in [
                    &mut inst.hotkey,
                    &mut inst.bigkey,
                    &mut inst.keyfamily.analysis,
                ] {
                    if s.mode == Mode::Trigger {
                        s.mode = Mode::Observe;
                    }
                }
            }
        }
        out.handled += instances.len();
        let known_details = instances
            .iter()
            .filter_map(|i| {
                listed
                    .get(i.id.as_str())
                    .map(|l| (i.id.clone(), (*l).clone()))
            })
            .collect();
        out.discovered.push(discovered);
        out.clouds.push(CloudPlan {
            name: cfg.name.clone(),
            client: cloud.client,
            instances,
            known_details,
        });
    }
    out
}

/// A running discovery loop and its latest listing.
struct Handle<C> {
    source: u64,
    cloud: String,
    client: Arc<C>,
    refresh: Duration,
    token: CancellationToken,
    listing: Option<Arc<Vec<InstanceInfo>>>,
}

/// The discovery loops of every cloud with `discovery:`.
pub struct Discoveries<C> {
    handles: Vec<Handle<C>>,
    /// Per configured cloud: the source id of its loop.
    assigned: Vec<Option<u64>>,
    next_source: u64,
    tx: mpsc::Sender<Listing>,
    root: CancellationToken,
    supervisor: Supervisor,
    metrics: FleetMetrics,
}

impl<C: DcsApi> Discoveries<C> {
    /// Listings arrive on the receiver; hand each to [`accept`](Self::accept).
    pub fn new(
        root: CancellationToken,
        supervisor: Supervisor,
        metrics: FleetMetrics,
    ) -> (Self, mpsc::Receiver<Listing>) {
        let (tx, rx) = mpsc::channel(16);
        let d = Discoveries {
            handles: Vec::new(),
            assigned: Vec::new(),
            next_source: 0,
            tx,
            root,
            supervisor,
            metrics,
        };
        (d, rx)
    }

    /// Makes the loops match the clouds (config and client per cloud, in config order). A loop
    /// whose cloud name, client and interval did not change keeps running with its listing, so
    /// a reload neither re-lists nor forgets discovered instances. A cloud whose client or
    /// interval changed gets a new loop that starts from the previous loop's listing: until the
    /// new loop lists successfully (new credentials that fail, an endpoint that is down), the
    /// previous instance set stays, as it does after any failed refresh.
    pub fn sync(&mut self, clouds: &[(&CloudConfig, Arc<C>)]) {
        let mut old = std::mem::take(&mut self.handles);
        let mut assigned = Vec::with_capacity(clouds.len());
        let mut names = Vec::new();
        for (cfg, client) in clouds {
            let Some(d) = &cfg.discovery else {
                assigned.push(None);
                continue;
            };
            names.push(cfg.name.as_str());
            let reuse = old.iter().position(|h| {
                h.cloud == cfg.name
                    && h.refresh == d.refresh_interval
                    && Arc::ptr_eq(&h.client, client)
            });
            let handle = match reuse {
                Some(i) => old.swap_remove(i),
                None => {
                    let mut h = self.start(cfg, client.clone(), d.refresh_interval);
                    h.listing = old
                        .iter()
                        .find(|o| o.cloud == cfg.name)
                        .and_then(|o| o.listing.clone());
                    h
                }
            };
            assigned.push(Some(handle.source));
            self.handles.push(handle);
        }
        for h in old {
            h.token.cancel();
        }
        self.assigned = assigned;
        self.metrics.retain_clouds(&names);
    }

    fn start(&mut self, cfg: &CloudConfig, client: Arc<C>, refresh: Duration) -> Handle<C> {
        self.next_source += 1;
        let source = self.next_source;
        let token = self.root.child_token();
        let span = info_span!("discovery", cloud = %cfg.name);
        self.supervisor.spawn_service(
            format!("discovery loop {}", cfg.name),
            token.clone(),
            discovery::run_loop(
                source,
                cfg.name.clone(),
                client.clone(),
                refresh,
                self.metrics.clone(),
                self.tx.clone(),
                token.clone(),
            )
            .instrument(span),
        );
        Handle {
            source,
            cloud: cfg.name.clone(),
            client,
            refresh,
            token,
            listing: None,
        }
    }

    /// Takes a listing; `false` when its loop has been replaced since (nothing to re-plan).
    pub fn accept(&mut self, listing: Listing) -> bool {
        match self.handles.iter_mut().find(|h| h.source == listing.source) {
            Some(h) => {
                h.listing = Some(listing.instances);
                true
            }
            None => false,
        }
    }

    /// The latest listing of the `i`-th configured cloud.
    pub fn listing(&self, i: usize) -> Option<&[InstanceInfo]> {
        let source = (*self.assigned.get(i)?)?;
        let h = self.handles.iter().find(|h| h.source == source)?;
        h.listing.as_deref().map(Vec::as_slice)
    }

    /// Records the per-cloud discovered counts of a plan.
    pub fn record(&self, clouds: &[CloudConfig], discovered: &[Option<usize>]) {
        for (cfg, n) in clouds.iter().zip(discovered) {
            if let Some(n) = n {
                self.metrics.set_discovered(&cfg.name, *n);
            }
        }
    }
}

#[cfg(test)]
mod tests;
