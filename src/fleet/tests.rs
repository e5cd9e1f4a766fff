//! Fleet tests against an in-memory ListInstances, on tokio's paused clock. The end-to-end
//! tests against the simulator are in tests/it/fleet.rs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use prometheus::{Encoder, Registry, TextEncoder};

use super::discovery::{list_all, matches, run_loop, ListError, MAX_PAGES};
use super::*;
use crate::config::{AnalysisSettings, DiscoveryConfig, InstanceDefaults};
use crate::dcs::{
    self, Analysis, AutoscanConfig, AutoscanConfigRequest, ClientConfig, InstanceList,
    InstanceListQuery, Tag, TaskList, TaskListQuery, TaskRecord,
};

/// A project's instances behind a paged ListInstances.
#[derive(Default)]
struct FakeList {
    instances: Mutex<Vec<InstanceInfo>>,
    /// Errors returned by the next calls.
    errors: Mutex<VecDeque<dcs::Error>>,
    /// Answer every call with the first page and no `instance_num` (a broken server).
    ignore_offset: bool,
    calls: Mutex<Vec<(u32, u32)>>,
}

impl FakeList {
    fn with(instances: Vec<InstanceInfo>) -> Arc<Self> {
        Arc::new(FakeList {
            instances: Mutex::new(instances),
            ..Default::default()
        })
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

fn unsupported() -> dcs::Error {
    dcs::Error::InvalidRequest {
        operation: "fake",
        message: "not part of these tests".into(),
    }
}

fn server_error() -> dcs::Error {
    dcs::Error::Api {
        operation: "ListInstances",
        status: 500,
        code: Some("DCS.5000".into()),
        message: "internal error".into(),
        request_id: None,
    }
}

impl DcsApi for FakeList {
    async fn list_tasks(&self, _: &str, _: Analysis, _: &TaskListQuery) -> dcs::Result<TaskList> {
        Err(unsupported())
    }
    async fn create_task(&self, _: &str, _: Analysis) -> dcs::Result<TaskRecord> {
        Err(unsupported())
    }
    async fn show_task(&self, _: &str, _: Analysis, _: &str) -> dcs::Result<TaskRecord> {
        Err(unsupported())
    }
    async fn delete_task(&self, _: &str, _: Analysis, _: &str) -> dcs::Result<Option<TaskRecord>> {
        Err(unsupported())
    }
    async fn show_autoscan(&self, _: &str, _: Analysis) -> dcs::Result<AutoscanConfig> {
        Err(unsupported())
    }
    async fn update_autoscan(
        &self,
        _: &str,
        _: Analysis,
        _: &AutoscanConfigRequest,
    ) -> dcs::Result<AutoscanConfig> {
        Err(unsupported())
    }
    async fn show_instance(&self, _: &str) -> dcs::Result<InstanceInfo> {
        Err(unsupported())
    }
    async fn list_instances(&self, q: &InstanceListQuery) -> dcs::Result<InstanceList> {
        let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(10));
        self.calls.lock().unwrap().push((offset, limit));
        if let Some(e) = self.errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        let all = self.instances.lock().unwrap();
        if self.ignore_offset {
            return Ok(InstanceList {
                instance_num: None,
                instances: all.iter().take(limit as usize).cloned().collect(),
            });
        }
        Ok(InstanceList {
            instance_num: Some(all.len() as i64),
            instances: all
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .cloned()
                .collect(),
        })
    }
}

fn info(id: &str, name: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        name: name.into(),
        engine: Some("Redis".into()),
        engine_version: Some("6.0".into()),
        status: Some("RUNNING".into()),
        spec_code: Some("redis.ha.xu1.large.r2.8".into()),
        ..Default::default()
    }
}

fn fleet(n: usize) -> Vec<InstanceInfo> {
    (0..n)
        .map(|i| info(&format!("id-{i:05}"), &format!("cache-{i:05}")))
        .collect()
}

fn ids(list: &[InstanceInfo]) -> Vec<String> {
    list.iter().map(|i| i.instance_id.clone()).collect()
}

#[tokio::test]
async fn list_all_reads_every_page() {
    let all = fleet(2345);
    for (page, calls) in [(1000u32, 3usize), (7, 2345usize.div_ceil(7)), (500, 5)] {
        let fake = FakeList::with(all.clone());
        let got = list_all(&*fake, page).await.expect("listing");
        assert_eq!(ids(&got), ids(&all), "page size {page}");
        assert_eq!(fake.calls(), calls, "page size {page}");
    }
    // An exact multiple of the page size ends on instance_num, without an extra empty call.
    let fake = FakeList::with(fleet(2000));
    assert_eq!(list_all(&*fake, 1000).await.unwrap().len(), 2000);
    assert_eq!(fake.calls(), 2);
    // An empty project: one call.
    let fake = FakeList::with(Vec::new());
    assert!(list_all(&*fake, 1000).await.unwrap().is_empty());
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn list_all_survives_a_server_that_ignores_the_offset() {
    let fake = Arc::new(FakeList {
        instances: Mutex::new(fleet(50)),
        ignore_offset: true,
        ..Default::default()
    });
    // Full pages forever, no instance_num: the page guard ends it, as an error.
    let err = list_all(&*fake, 10).await.unwrap_err();
    assert!(matches!(err, ListError::TooManyPages), "{err}");
    assert_eq!(fake.calls(), MAX_PAGES);
}

#[tokio::test]
async fn list_all_drops_duplicates_of_overlapping_pages() {
    // The same instance on two pages (the listing changed between calls).
    let mut all = fleet(15);
    all.insert(10, info("id-00003", "cache-00003"));
    let fake = FakeList::with(all);
    let got = list_all(&*fake, 10).await.unwrap();
    assert_eq!(ids(&got), ids(&fleet(15)));
}

#[tokio::test]
async fn list_all_fails_with_the_offset_of_the_failed_page() {
    let fake = FakeList::with(fleet(25));
    fake.errors.lock().unwrap().extend([server_error()]);
    let err = list_all(&*fake, 10).await.unwrap_err();
    assert!(matches!(err, ListError::Api { offset: 0, .. }), "{err}");
}

fn filter() -> DiscoveryConfig {
    DiscoveryConfig {
        refresh_interval: Duration::from_secs(60),
        name_include: None,
        name_exclude: None,
        tags: BTreeMap::new(),
        engine: "Redis".into(),
        status: "RUNNING".into(),
    }
}

#[test]
fn filters() {
    let base = info("i", "prod-orders");
    let with = |f: &dyn Fn(&mut InstanceInfo)| {
        let mut i = base.clone();
        f(&mut i);
        i
    };
    let f = filter();
    assert!(matches(&f, &base));
    assert!(!matches(
        &f,
        &with(&|i| i.engine = Some("Memcached".into()))
    ));
    assert!(!matches(&f, &with(&|i| i.engine = None)));
    assert!(matches(&f, &with(&|i| i.engine = Some("redis".into()))));
    assert!(!matches(
        &f,
        &with(&|i| i.status = Some("RESTARTING".into()))
    ));
    let any_status = DiscoveryConfig {
        status: String::new(),
        ..filter()
    };
    assert!(matches(
        &any_status,
        &with(&|i| i.status = Some("RESTARTING".into()))
    ));

    let names = DiscoveryConfig {
        name_include: Some(regex::Regex::new("^prod-").unwrap()),
        name_exclude: Some(regex::Regex::new("-tmp$").unwrap()),
        ..filter()
    };
    assert!(matches(&names, &base));
    assert!(!matches(
        &names,
        &with(&|i| i.name = "staging-orders".into())
    ));
    assert!(!matches(
        &names,
        &with(&|i| i.name = "prod-orders-tmp".into())
    ));

    let mut tags = filter();
    tags.tags.insert("env".into(), "prod".into());
    tags.tags.insert("team".into(), "pay".into());
    let tag = |k: &str, v: &str| Tag {
        key: k.into(),
        value: v.into(),
    };
    assert!(!matches(&tags, &base));
    assert!(!matches(
        &tags,
        &with(&|i| i.tags = vec![tag("env", "prod")])
    ));
    assert!(!matches(
        &tags,
        &with(&|i| i.tags = vec![tag("env", "prod"), tag("team", "search")])
    ));
    assert!(matches(
        &tags,
        &with(&|i| i.tags = vec![tag("team", "pay"), tag("x", "y"), tag("env", "prod")])
    ));
}

fn settings(mode: Mode, secs: u64) -> AnalysisSettings {
    AnalysisSettings {
        mode,
        interval: Duration::from_secs(secs),
        timeout: Duration::from_secs(60),
        top_n: 10,
    }
}

fn cloud(
    name: &str,
    instances: Vec<InstanceConfig>,
    discovery: Option<DiscoveryConfig>,
) -> CloudConfig {
    CloudConfig {
        name: name.into(),
        client: ClientConfig::new(
            url::Url::parse("http://127.0.0.1:1").unwrap(),
            "p",
            dcs::Auth::AkSk {
                access_key: "ak".into(),
                secret_key: crate::secret::Secret::new("sk"),
                security_token: None,
            },
        ),
        instances,
        discovery,
        defaults: InstanceDefaults {
            lfu_log_factor: 7,
            hotkey: settings(Mode::Trigger, 900),
            bigkey: settings(Mode::Observe, 3600),
            keyfamily: Default::default(),
        },
    }
}

fn explicit(id: &str, name: Option<&str>) -> InstanceConfig {
    InstanceConfig {
        id: id.into(),
        name: name.map(Into::into),
        lfu_log_factor: 10,
        hotkey: settings(Mode::Trigger, 60),
        bigkey: settings(Mode::Off, 60),
        keyfamily: Default::default(),
    }
}

#[test]
fn plan_merges_explicit_and_discovered() {
    let mut listing = fleet(4);
    listing[3].status = Some("RESTARTING".into());
    let c = cloud(
        "a",
        vec![
            explicit("id-00001", Some("orders")),
            explicit("id-00003", None),
            explicit("not-listed", None),
        ],
        Some(filter()),
    );
    let plan = plan(
        vec![CloudInput {
            config: &c,
            client: Arc::new(()),
            listing: Some(&listing),
        }],
        &FleetOptions::default(),
    );
    assert_eq!(plan.discovered, [Some(3)]);
    assert_eq!((plan.total, plan.handled), (5, 5));
    let p = &plan.clouds[0];
    let by_id: HashMap<&str, &InstanceConfig> =
        p.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    // Explicit entries keep their settings and names, even when discovery filters them out
    // (id-00003 is RESTARTING) or does not list them.
    assert_eq!(by_id["id-00001"].name.as_deref(), Some("orders"));
    assert_eq!(by_id["id-00001"].hotkey, settings(Mode::Trigger, 60));
    assert_eq!(by_id["id-00003"].name.as_deref(), Some("cache-00003"));
    assert_eq!(by_id["not-listed"].name, None);
    // Discovered ones get the cloud defaults and their DCS name.
    let d = by_id["id-00000"];
    assert_eq!(d.name.as_deref(), Some("cache-00000"));
    assert_eq!(d.lfu_log_factor, 7);
    assert_eq!(d.hotkey, c.defaults.hotkey);
    assert_eq!(d.bigkey, c.defaults.bigkey);
    // Listed instances bring their details; the unlisted one will ask ShowInstance.
    let mut known: Vec<&str> = p.known_details.keys().map(String::as_str).collect();
    known.sort_unstable();
    assert_eq!(known, ["id-00000", "id-00001", "id-00002", "id-00003"]);
    assert_eq!(
        p.known_details["id-00003"].status.as_deref(),
        Some("RESTARTING")
    );
}

#[test]
fn plan_without_a_listing_has_the_explicit_instances() {
    let c = cloud("a", vec![explicit("x", None)], Some(filter()));
    let plan = plan(
        vec![CloudInput {
            config: &c,
            client: Arc::new(()),
            listing: None,
        }],
        &FleetOptions::default(),
    );
    assert_eq!(plan.discovered, [None]);
    assert_eq!(plan.clouds[0].instances.len(), 1);
    assert!(plan.clouds[0].known_details.is_empty());
}

#[test]
fn plan_shards_and_overrides_modes() {
    let listing = fleet(300);
    let c = cloud("a", vec![explicit("extra", Some("x"))], Some(filter()));
    // The same id in a second cloud is planned once.
    let c2 = cloud("b", Vec::new(), Some(filter()));
    let mut seen: HashMap<String, u32> = HashMap::new();
    for index in 0..3 {
        let opts = FleetOptions {
            shard: Shard::new(index, 3).unwrap(),
            observe_only: true,
        };
        let plan = plan(
            vec![
                CloudInput {
                    config: &c,
                    client: Arc::new(()),
                    listing: Some(&listing),
                },
                CloudInput {
                    config: &c2,
                    client: Arc::new(()),
                    listing: Some(&listing[..10]),
                },
            ],
            &opts,
        );
        assert_eq!(plan.total, 301);
        assert_eq!(plan.discovered, [Some(300), Some(10)]);
        assert!(plan.clouds[1].instances.is_empty());
        for inst in &plan.clouds[0].instances {
            assert!(opts.shard.owns(&inst.id));
            assert_eq!(inst.hotkey.mode, Mode::Observe);
            assert_ne!(inst.bigkey.mode, Mode::Trigger);
            *seen.entry(inst.id.clone()).or_default() += 1;
        }
        // `off` stays off.
        if let Some(e) = plan.clouds[0].instances.iter().find(|i| i.id == "extra") {
            assert_eq!(e.bigkey.mode, Mode::Off);
        }
        assert_eq!(plan.handled, plan.clouds[0].instances.len());
    }
    assert_eq!(seen.len(), 301);
    assert!(seen.values().all(|n| *n == 1));
}

fn text(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(start_paused = true)]
async fn loop_refreshes_and_keeps_quiet_on_failure() {
    let registry = Registry::new();
    let metrics = FleetMetrics::register(&registry, "dcs", Shard::SINGLE).unwrap();
    let fake = FakeList::with(fleet(3));
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let refresh = Duration::from_secs(300);
    let task = tokio::spawn(run_loop(
        9,
        "prod".into(),
        fake.clone(),
        refresh,
        metrics.clone(),
        tx,
        cancel.clone(),
    ));
    let first = rx.recv().await.expect("first listing at once");
    assert_eq!(first.source, 9);
    assert_eq!(first.instances.len(), 3);
    assert!(text(&registry).contains("dcs_discovery_errors_total{cloud=\"prod\"} 0"));

    // The next refresh fails twice: nothing is sent, each failure is counted, and the retries
    // come after 5–10 s and 10–20 s (equal jitter) instead of a whole interval.
    fake.errors
        .lock()
        .unwrap()
        .extend([server_error(), server_error()]);
    fake.instances.lock().unwrap().push(info("new", "new"));
    let t0 = tokio::time::Instant::now();
    let second = rx.recv().await.expect("listing after recovery");
    assert_eq!(second.instances.len(), 4);
    let waited = t0.elapsed() - refresh;
    assert!(
        waited >= Duration::from_secs(15) && waited <= Duration::from_secs(30),
        "{waited:?}"
    );
    assert!(text(&registry).contains("dcs_discovery_errors_total{cloud=\"prod\"} 2"));
    assert_eq!(fake.calls(), 4);

    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn discoveries_follow_the_config() {
    let registry = Registry::new();
    let metrics = FleetMetrics::register(&registry, "dcs", Shard::SINGLE).unwrap();
    let supervisor = Supervisor::new();
    let root = CancellationToken::new();
    let (mut d, mut rx) = Discoveries::new(root.clone(), supervisor.clone(), metrics);
    let fake = FakeList::with(fleet(5));
    let a = cloud("a", Vec::new(), Some(filter()));
    let b = cloud("b", vec![explicit("x", None)], None);
    d.sync(&[(&a, fake.clone()), (&b, fake.clone())]);
    let l = rx.recv().await.unwrap();
    assert!(d.accept(l));
    assert_eq!(d.listing(0).map(<[_]>::len), Some(5));
    assert!(d.listing(1).is_none());

    // Same cloud, same client, same interval: the loop and its listing stay.
    d.sync(&[(&b, fake.clone()), (&a, fake.clone())]);
    assert_eq!(d.listing(1).map(<[_]>::len), Some(5));
    assert_eq!(fake.calls(), 1);

    // Another interval: a new loop (listing at once); a late listing of the old one is refused.
    let stale = Listing {
        source: 1,
        instances: Arc::new(Vec::new()),
    };
    let mut a2 = a.clone();
    a2.discovery.as_mut().unwrap().refresh_interval = Duration::from_secs(120);
    d.sync(&[(&a2, fake.clone())]);
    assert_eq!(
        d.listing(0).map(<[_]>::len),
        Some(5),
        "the new loop starts from the previous listing"
    );
    assert!(!d.accept(stale));
    let l = rx.recv().await.unwrap();
    assert_eq!(l.source, 2);
    assert!(d.accept(l));
    assert_eq!(d.listing(0).map(<[_]>::len), Some(5));

    root.cancel();
    supervisor.close();
    supervisor.wait().await;
    assert_eq!(supervisor.failure(), None);
}

fn auth_error() -> dcs::Error {
    dcs::Error::Api {
        operation: "ListInstances",
        status: 401,
        code: Some("APIG.0301".into()),
        message: "Incorrect IAM authentication information".into(),
        request_id: None,
    }
}

/// A reload with rotated credentials that do not work builds a new client, so a new discovery
/// loop: its failures must keep the instances the previous client listed, with their series and
/// `dcs_discovery_instances`, exactly as a failed refresh of the old loop would.
#[tokio::test(start_paused = true)]
async fn a_reload_whose_new_client_fails_keeps_the_previous_instance_set() {
    let registry = Registry::new();
    let metrics = FleetMetrics::register(&registry, "dcs", Shard::SINGLE).unwrap();
    let supervisor = Supervisor::new();
    let root = CancellationToken::new();
    let (mut d, mut rx) = Discoveries::new(root.clone(), supervisor.clone(), metrics.clone());
    let good = FakeList::with(fleet(4));
    let a = cloud("a", vec![explicit("x", None)], Some(filter()));
    d.sync(&[(&a, good.clone())]);
    let l = rx.recv().await.unwrap();
    assert!(d.accept(l));
    let planned = |d: &Discoveries<FakeList>, client: &Arc<FakeList>| {
        let p = plan(
            vec![CloudInput {
                config: &a,
                client: client.clone(),
                listing: d.listing(0),
            }],
            &FleetOptions::default(),
        );
        d.record(std::slice::from_ref(&a), &p.discovered);
        p.clouds[0]
            .instances
            .iter()
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };
    let before = planned(&d, &good);
    assert_eq!(before.len(), 5, "one explicit and four discovered");
    assert!(text(&registry).contains("dcs_discovery_instances{cloud=\"a\"} 4"));

    // The reload: same cloud, a new client whose every listing fails authentication.
    let rotated = FakeList::with(Vec::new());
    rotated
        .errors
        .lock()
        .unwrap()
        .extend(std::iter::repeat_with(auth_error).take(10));
    d.sync(&[(&a, rotated.clone())]);
    // Failures at once and 5–10 s later; the third comes 10–20 s after the second.
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(rotated.calls() >= 2, "the new loop listed and failed");
    assert!(rx.try_recv().is_err(), "a failed listing sends nothing");
    assert_eq!(planned(&d, &rotated), before);
    assert!(text(&registry).contains("dcs_discovery_instances{cloud=\"a\"} 4"));
    assert!(text(&registry).contains("dcs_discovery_errors_total{cloud=\"a\"} 2"));

    // Once the new credentials work, the new listing replaces the old one.
    rotated.errors.lock().unwrap().clear();
    rotated.instances.lock().unwrap().extend(fleet(2));
    let l = rx.recv().await.unwrap();
    assert!(d.accept(l));
    assert_eq!(planned(&d, &rotated).len(), 3);
    assert!(text(&registry).contains("dcs_discovery_instances{cloud=\"a\"} 2"));

    root.cancel();
    supervisor.close();
    supervisor.wait().await;
    assert_eq!(supervisor.failure(), None);
}

#[test]
fn unchanged_listing_details_do_not_invalidate_renderings() {
    use crate::metrics::store::{InstanceSpec, Store};
    let store = Store::new();
    store.configure(&[InstanceSpec {
        id: "id-00000".into(),
        name: "cache-00000".into(),
        lfu_log_factor: 10,
        native: false,
        analyses: Vec::new(),
    }]);
    let listing = fleet(2);
    store.set_instance_infos(&listing);
    let g = store.generation();
    // The same details again (the next refresh): nothing changed.
    store.set_instance_infos(&fleet(2));
    assert_eq!(store.generation(), g);
    // A status change is a change; details of unconfigured instances are ignored.
    let mut changed = fleet(2);
    changed[0].status = Some("RESTARTING".into());
    store.set_instance_infos(&changed);
    assert!(store.generation() > g);
    let info = store
        .read(|s| s.instances["id-00000"].info.clone())
        .unwrap();
    assert_eq!(info.status.as_deref(), Some("RESTARTING"));
    assert!(store.read(|s| !s.instances.contains_key("id-00001")));
}

#[test]
fn discovery_retries_double_from_ten_seconds_with_equal_jitter() {
    use super::discovery::{retry_backoff, RETRY_DELAY};
    use crate::backoff::Backoff;
    let b = retry_backoff(Duration::from_secs(300));
    let ceilings: Vec<_> = (0..7).map(|r| b.ceiling(r).as_secs()).collect();
    assert_eq!(ceilings, [10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(b.jitter(), Backoff::EQUAL_JITTER);
    // A refresh shorter than the first retry caps it instead of being refused.
    let short = retry_backoff(Duration::from_secs(4));
    assert_eq!(short.ceiling(0), Duration::from_secs(4));
    assert!(RETRY_DELAY > Duration::from_secs(4));
}
