//! Key privacy: `metrics.key_rewrite` and `metrics.key_label: hash`, from the config file to
//! `/metrics`, with the merge rule for keys that end up with the same label.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dcs_key_exporter::config::{self, ConfigError};
use dcs_key_exporter::dcs::TaskStatus;
use dcs_key_exporter::dcs::{Analysis, KeyRecord, KeyType, ScanType, SizeUnit, TaskRecord};
use dcs_key_exporter::metrics::exposition::Exposition;
use dcs_key_exporter::metrics::keylabel::KeyLabelMode;
use dcs_key_exporter::metrics::render::RenderOptions;
use dcs_key_exporter::metrics::store::{AnalysisSpec, InstanceSpec, Store};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

fn config_text(metrics: &str) -> String {
    format!(
        "metrics:\n{metrics}clouds:\n  - name: c\n    region: cn-north-4\n    project_id: {PROJECT}\n    auth:\n      access_key: AK\n      secret_key: SK\n    instances:\n      - id: 5560df16-cebf-4473-95c4-d1b573c16e79\n"
    )
}

fn load(metrics: &str) -> Result<config::Config, ConfigError> {
    config::load_str(&config_text(metrics), "test.yml", None, &|_| None)
}

fn problems(metrics: &str) -> String {
    match load(metrics) {
        Ok(_) => panic!("must be refused: {metrics}"),
        Err(e) => e.problems().join("\n"),
    }
}

#[test]
fn bad_rules_are_refused_naming_the_key() {
    let p = problems("  key_rewrite:\n    - match: '^user:(\\d+'\n      replace: x\n");
    assert!(p.contains("metrics.key_rewrite[0].match"), "{p}");
    assert!(p.contains("invalid regex"), "{p}");
    let p = problems(
        "  key_rewrite:\n    - match: a\n      replace: b\n    - match: '^(a)$'\n      replace: '$2'\n",
    );
    assert!(p.contains("metrics.key_rewrite[1].replace"), "{p}");
    let p = problems("  key_rewrite:\n    - replace: b\n");
    assert!(
        p.contains("metrics.key_rewrite[0].match: is required"),
        "{p}"
    );
    let p = problems("  key_rewrite:\n    - match: a\n      replace: b\n      flags: i\n");
    assert!(p.contains("flags"), "{p}");
}

#[test]
fn rules_load_in_order() {
    let c = load(
        "  key_rewrite:\n    - match: '^user:\\d+:(.*)$'\n      replace: 'user:*:$1'\n    - match: '\\d{6,}'\n      replace: '<id>'\n",
    )
    .expect("valid");
    let rules = c.metrics.key_rewrite.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].pattern(), "^user:\\d+:(.*)$");
    assert_eq!(rules[0].replacement(), "user:*:$1");
    assert_eq!(c.metrics.key_rewrite.apply("user:42:cart"), "user:*:cart");
    assert_eq!(c.metrics.key_rewrite.apply("order:1234567"), "order:<id>");
}

fn key(name: &str, freq: i64, size: i64) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        key_type: Some(KeyType::Hash),
        shard: Some("s1".into()),
        db: Some(0),
        size: Some(size),
        unit: Some(SizeUnit::Count),
        freq: Some(freq),
        memory: None,
        rates: None,
    }
}

fn exposition_with(keys: Vec<KeyRecord>, opts: RenderOptions) -> Arc<Exposition> {
    let store = Arc::new(Store::new());
    store.configure(&[InstanceSpec {
        id: "i-1".into(),
        name: "cache".into(),
        lfu_log_factor: 10,
        native: false,
        analyses: vec![AnalysisSpec {
            analysis: Analysis::Hotkey,
            top_n: 50,
            mode: "trigger",
            interval: Duration::from_secs(900),
        }],
    }]);
    let task = TaskRecord {
        id: "t1".into(),
        instance_id: Some("i-1".into()),
        status: TaskStatus::Success,
        scan_type: Some(ScanType::Manual),
        created_at: Some("2024-01-01T00:00:00Z".into()),
        started_at: Some("2024-01-01T00:00:01Z".into()),
        finished_at: Some("2024-01-01T00:00:09Z".into()),
        num: None,
        keys: Some(keys),
    };
    assert!(store.publish("i-1", Analysis::Hotkey, &task));
    Arc::new(Exposition::new(store, opts).expect("exposition"))
}

/// `key label → value` of every `dcs_hotkey_frequency` sample, failing on a repeated series.
fn frequencies(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("dcs_hotkey_frequency{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("sample");
        let key = labels
            .split("key=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("key label");
        assert!(
            out.insert(key.to_owned(), value.to_owned()).is_none(),
            "duplicate series for key {key}:\n{text}"
        );
    }
    out
}

fn sizes(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("dcs_hotkey_elements{"))
        .collect()
}

#[test]
fn rewritten_keys_merge_keeping_the_highest_value() {
    let c = load("  key_rewrite:\n    - match: '^user:\\d+:(.*)$'\n      replace: 'user:*:$1'\n")
        .expect("valid");
    let opts = RenderOptions {
        key_rewrite: c.metrics.key_rewrite.clone(),
        ..RenderOptions::default()
    };
    // Three users' carts (freq 10, 30, 20) and one unrelated key.
    let exp = exposition_with(
        vec![
            key("user:1:cart", 10, 1),
            key("user:2:cart", 30, 2),
            key("user:3:cart", 20, 3),
            key("config", 5, 4),
        ],
        opts,
    );
    let text = String::from_utf8(exp.render(false).to_vec()).expect("UTF-8");
    assert!(!text.contains("user:1:"), "{text}");
    assert!(!text.contains("user:2:"), "{text}");
    let freq = frequencies(&text);
    assert_eq!(
        freq,
        BTreeMap::from([
            ("config".to_owned(), "5".to_owned()),
            ("user:*:cart".to_owned(), "30".to_owned()),
        ])
    );
    // The kept series is user 2's whole record: its size goes with its frequency.
    let elements = sizes(&text);
    assert_eq!(elements.len(), 2, "{text}");
    assert!(elements
        .iter()
        .any(|l| l.contains("key=\"user:*:cart\"") && l.ends_with(" 2")));
}

#[test]
fn hash_mode_hides_names_after_rewriting() {
    let c = load(
        "  key_label: hash\n  key_rewrite:\n    - match: '^user:\\d+:(.*)$'\n      replace: 'user:*:$1'\n",
    )
    .expect("valid");
    let opts = RenderOptions {
        key_rewrite: c.metrics.key_rewrite.clone(),
        key_label: KeyLabelMode::Hash,
        ..RenderOptions::default()
    };
    let exp = exposition_with(
        vec![key("user:1:cart", 10, 1), key("user:2:cart", 30, 2)],
        opts,
    );
    let text = String::from_utf8(exp.render(false).to_vec()).expect("UTF-8");
    assert!(!text.contains("cart"), "{text}");
    let freq = frequencies(&text);
    // printf 'user:*:cart' | sha256sum → first 16 hex digits.
    assert_eq!(
        freq,
        BTreeMap::from([(
            "sha256:".to_owned() + USER_STAR_CART_SHA256_16,
            "30".to_owned()
        )])
    );
}

/// `printf 'user:*:cart' | sha256sum | cut -c1-16`.
const USER_STAR_CART_SHA256_16: &str = "5c257418808bf159";
