use std::sync::Arc;

use super::text::write_f64;
use super::*;
use crate::dcs::{InstanceInfo, KeyType, ScanType};
use crate::metrics::families::KeyFamily;
use crate::metrics::store::{AnalysisResult, AnalysisSpec, InstanceState, LastError, RunningTask};

fn key(name: &str, ty: Option<KeyType>, db: Option<i64>, shard: Option<&str>) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        key_type: ty,
        shard: shard.map(Into::into),
        db,
        size: None,
        unit: None,
        freq: None,
        memory: None,
        rates: None,
    }
}

fn state(analysis: Analysis, result: Option<AnalysisResult>) -> AnalysisState {
    AnalysisState {
        result: result.map(Arc::new),
        ..AnalysisState::new(AnalysisSpec {
            analysis,
            top_n: 50,
            mode: "trigger",
            interval: std::time::Duration::from_secs(900),
        })
    }
}

fn result(keys: Vec<KeyRecord>) -> AnalysisResult {
    AnalysisResult {
        task_id: "t1".into(),
        scan_type: Some(ScanType::Manual),
        created_at: Some(1000.0),
        started_at: Some(1002.0),
        finished_at: Some(1010.5),
        key_count: 120,
        keys: keys.into(),
        shards: Default::default(),
        families: Vec::new(),
        sources: Vec::new(),
        slots: Vec::new(),
    }
}

fn instance(id: &str, name: &str, analyses: Vec<AnalysisState>) -> InstanceState {
    InstanceState {
        id: id.into(),
        name: name.into(),
        lfu_log_factor: 10,
        native: false,
        info: None,
        analyses: analyses.into_iter().map(|a| (a.spec.analysis, a)).collect(),
    }
}

fn snapshot(instances: Vec<InstanceState>) -> Snapshot {
    Snapshot {
        instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
    }
}

fn render(s: &Snapshot) -> String {
    let mut out = Vec::new();
    render_snapshot(s, &RenderOptions::default(), &mut out);
    String::from_utf8(out).expect("rendered text is UTF-8")
}

/// The sample lines (no comments) of a rendering.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// The full example: one instance with a hot key result, state counters, info, and a big key
/// analysis without a result.
fn example() -> Snapshot {
    let mut a = key("user:1", Some(KeyType::String), Some(0), None);
    a.freq = Some(255);
    a.size = Some(1024);
    a.unit = Some(SizeUnit::Byte);
    let mut b = key(
        "q\"b\\\n",
        Some(KeyType::Other("stream".into())),
        Some(3),
        Some("10.0.0.1:6379"),
    );
    b.freq = Some(4);
    b.size = Some(17);
    b.unit = Some(SizeUnit::Count);
    // Same label set as `a`, ranked lower: dropped.
    let mut dup = a.clone();
    dup.freq = Some(100);
    // freq above the LFU range is clamped; no type and no db; negative size skipped.
    let mut c = key("c", None, None, None);
    c.freq = Some(300);
    c.size = Some(-1);
    c.unit = Some(SizeUnit::Byte);

    let mut hot = state(Analysis::Hotkey, Some(result(vec![a, b, dup, c])));
    hot.consecutive_failures = 2;
    hot.failures.insert(FailureReason::Timeout, 3);
    hot.failures.insert(FailureReason::Auth, 1);
    hot.tasks_created = 4;
    hot.tasks_adopted = 1;
    hot.running = Some(RunningTask {
        id: "t2".into(),
        status: "running".into(),
        since: 2000.0,
    });
    hot.last_error = Some(LastError {
        at: 1500.0,
        reason: FailureReason::Timeout,
        message: "slow".into(),
    });
    let mut bigs = state(Analysis::Bigkey, None);
    bigs.supported = false;
    let mut inst = instance("i-1", "orders", vec![hot, bigs]);
    inst.info = Some(InstanceInfo {
        instance_id: "i-1".into(),
        name: "orders".into(),
        engine: Some("Redis".into()),
        engine_version: Some("6.0".into()),
        status: Some("RUNNING".into()),
        spec_code: None,
        ..Default::default()
    });
    snapshot(vec![inst])
}

#[test]
fn renders_the_example_exactly() {
    // Written by hand from the contract. estimated_accesses for freq 255 and factor 10:
    // (255-5) + 10*(250*249)/2 = 250 + 311250 = 311500; for freq 4: 0.
    let k1 = r#"instance_id="i-1",instance_name="orders",key="user:1",key_type="string",db="0",shard="""#;
    let k2 = r#"instance_id="i-1",instance_name="orders",key="q\"b\\\n",key_type="stream",db="3",shard="10.0.0.1:6379""#;
    let k3 = r#"instance_id="i-1",instance_name="orders",key="c",key_type="",db="",shard="""#;
    let hot = r#"instance_id="i-1",instance_name="orders",analysis="hotkey""#;
    let big = r#"instance_id="i-1",instance_name="orders",analysis="bigkey""#;
    let expected = format!(
        "# HELP dcs_hotkey_frequency {h_freq}
# TYPE dcs_hotkey_frequency gauge
dcs_hotkey_frequency{{{k1}}} 255
dcs_hotkey_frequency{{{k2}}} 4
dcs_hotkey_frequency{{{k3}}} 255
# HELP dcs_hotkey_estimated_accesses {h_est}
# TYPE dcs_hotkey_estimated_accesses gauge
dcs_hotkey_estimated_accesses{{{k1}}} 311500
dcs_hotkey_estimated_accesses{{{k2}}} 0
dcs_hotkey_estimated_accesses{{{k3}}} 311500
# HELP dcs_hotkey_size_bytes {h_size}
# TYPE dcs_hotkey_size_bytes gauge
dcs_hotkey_size_bytes{{{k1}}} 1024
# HELP dcs_hotkey_elements {h_el}
# TYPE dcs_hotkey_elements gauge
dcs_hotkey_elements{{{k2}}} 17
# HELP dcs_hotkey_source_info {h_src}
# TYPE dcs_hotkey_source_info gauge
dcs_hotkey_source_info{{instance_id=\"i-1\",instance_name=\"orders\",shard=\"\",source=\"dcs\"}} 1
# HELP dcs_analysis_keys {a_keys}
# TYPE dcs_analysis_keys gauge
dcs_analysis_keys{{{hot}}} 120
# HELP dcs_analysis_duration_seconds {a_dur}
# TYPE dcs_analysis_duration_seconds gauge
dcs_analysis_duration_seconds{{{hot}}} 8.5
# HELP dcs_analysis_queue_seconds {a_q}
# TYPE dcs_analysis_queue_seconds gauge
dcs_analysis_queue_seconds{{{hot}}} 2
# HELP dcs_analysis_last_success_timestamp_seconds {a_ls}
# TYPE dcs_analysis_last_success_timestamp_seconds gauge
dcs_analysis_last_success_timestamp_seconds{{{hot}}} 1010.5
# HELP dcs_analysis_consecutive_failures {a_cf}
# TYPE dcs_analysis_consecutive_failures gauge
dcs_analysis_consecutive_failures{{{hot}}} 2
dcs_analysis_consecutive_failures{{{big}}} 0
# HELP dcs_analysis_failures_total {a_f}
# TYPE dcs_analysis_failures_total counter
dcs_analysis_failures_total{{{hot},reason=\"task_failed\"}} 0
dcs_analysis_failures_total{{{hot},reason=\"timeout\"}} 3
dcs_analysis_failures_total{{{hot},reason=\"api_error\"}} 0
dcs_analysis_failures_total{{{hot},reason=\"auth\"}} 1
dcs_analysis_failures_total{{{hot},reason=\"unsupported\"}} 0
dcs_analysis_failures_total{{{big},reason=\"task_failed\"}} 0
dcs_analysis_failures_total{{{big},reason=\"timeout\"}} 0
dcs_analysis_failures_total{{{big},reason=\"api_error\"}} 0
dcs_analysis_failures_total{{{big},reason=\"auth\"}} 0
dcs_analysis_failures_total{{{big},reason=\"unsupported\"}} 0
# HELP dcs_analysis_tasks_total {a_t}
# TYPE dcs_analysis_tasks_total counter
dcs_analysis_tasks_total{{{hot},origin=\"created\"}} 4
dcs_analysis_tasks_total{{{hot},origin=\"adopted\"}} 1
dcs_analysis_tasks_total{{{big},origin=\"created\"}} 0
dcs_analysis_tasks_total{{{big},origin=\"adopted\"}} 0
# HELP dcs_analysis_supported {a_s}
# TYPE dcs_analysis_supported gauge
dcs_analysis_supported{{{hot}}} 1
dcs_analysis_supported{{{big}}} 0
# HELP dcs_analysis_running {a_r}
# TYPE dcs_analysis_running gauge
dcs_analysis_running{{{hot}}} 1
dcs_analysis_running{{{big}}} 0
# HELP dcs_analysis_interval_seconds {a_i}
# TYPE dcs_analysis_interval_seconds gauge
dcs_analysis_interval_seconds{{{hot}}} 900
dcs_analysis_interval_seconds{{{big}}} 900
# HELP dcs_instance_info {i}
# TYPE dcs_instance_info gauge
dcs_instance_info{{instance_id=\"i-1\",instance_name=\"orders\",engine=\"redis\",engine_version=\"6.0\",spec_code=\"\",status=\"RUNNING\"}} 1
",
        h_freq = HOTKEY_FREQUENCY.help,
        h_est = HOTKEY_ESTIMATED_ACCESSES.help,
        h_size = HOTKEY_SIZE_BYTES.help,
        h_el = HOTKEY_ELEMENTS.help,
        h_src = HOTKEY_SOURCE_INFO.help,
        a_keys = ANALYSIS_KEYS.help,
        a_dur = ANALYSIS_DURATION.help,
        a_q = ANALYSIS_QUEUE.help,
        a_i = ANALYSIS_INTERVAL.help,
        a_ls = ANALYSIS_LAST_SUCCESS.help,
        a_cf = ANALYSIS_CONSECUTIVE_FAILURES.help,
        a_f = ANALYSIS_FAILURES.help,
        a_t = ANALYSIS_TASKS.help,
        a_s = ANALYSIS_SUPPORTED.help,
        a_r = ANALYSIS_RUNNING.help,
        i = INSTANCE_INFO.help,
    );
    let got = render(&example());
    for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
        assert_eq!(g, e, "line {}", n + 1);
    }
    assert_eq!(got, expected);
}

#[test]
fn help_texts_say_where_values_come_from() {
    for f in KEY_FAMILIES {
        assert!(f.help.contains("newest completed"), "{}", f.name);
        assert!(f.help.contains("cached between analyses"), "{}", f.name);
    }
    assert!(HOTKEY_ESTIMATED_ACCESSES.help.contains("Ignores LFU decay"));
    assert!(HOTKEY_ESTIMATED_ACCESSES.help.contains("floor-like"));
}

#[test]
fn big_keys_go_to_their_unit_family_and_other_units_to_none() {
    let mut s = key("s", Some(KeyType::String), Some(0), None);
    s.size = Some(5_000_000);
    s.unit = Some(SizeUnit::Byte);
    let mut h = key("h", Some(KeyType::Hash), Some(0), None);
    h.size = Some(70000);
    h.unit = Some(SizeUnit::Count);
    let mut odd = key("o", Some(KeyType::String), Some(0), None);
    odd.size = Some(9);
    odd.unit = Some(SizeUnit::Other("bit".into()));
    let snap = snapshot(vec![instance(
        "i",
        "n",
        vec![state(Analysis::Bigkey, Some(result(vec![s, h, odd])))],
    )]);
    let text = render(&snap);
    let keys: Vec<_> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("dcs_bigkey") || l.starts_with("dcs_hotkey"))
        .collect();
    assert_eq!(
        keys,
        [
            r#"dcs_bigkey_size_bytes{instance_id="i",instance_name="n",key="s",key_type="string",db="0",shard=""} 5000000"#,
            r#"dcs_bigkey_elements{instance_id="i",instance_name="n",key="h",key_type="hash",db="0",shard=""} 70000"#,
        ]
    );
}

#[test]
fn memory_of_native_big_keys_and_scan_progress_are_rendered() {
    let mut h = key("h", Some(KeyType::Other("stream".into())), Some(2), None);
    h.size = Some(70000);
    h.unit = Some(SizeUnit::Count);
    h.memory = Some(1_234_567);
    let mut st = state(Analysis::Bigkey, Some(result(vec![h])));
    st.progress = Some(crate::metrics::store::ScanProgress {
        deadline: None,
        keys_scanned: 250,
        keys_total: 1000,
        started_at: 100.0,
        at: 110.0,
    });
    let snap = snapshot(vec![instance("i", "n", vec![st])]);
    let text = render(&snap);
    let l = r#"instance_id="i",instance_name="n",key="h",key_type="stream",db="2",shard="""#;
    let a = r#"instance_id="i",instance_name="n",analysis="bigkey""#;
    for want in [
        format!("dcs_bigkey_elements{{{l}}} 70000"),
        format!("dcs_bigkey_memory_bytes{{{l}}} 1234567"),
        format!("dcs_analysis_scan_keys_scanned{{{a}}} 250"),
        format!("dcs_analysis_scan_keyspace_keys{{{a}}} 1000"),
        // 750 keys left at 25 keys/s: 30 s after the measurement.
        format!("dcs_analysis_scan_estimated_completion_timestamp_seconds{{{a}}} 140"),
    ] {
        assert!(
            samples(&text).contains(&want.as_str()),
            "{want} missing from\n{text}"
        );
    }
    // Without memory or progress (every DCS result) the families are absent altogether.
    let snap = snapshot(vec![instance(
        "i",
        "n",
        vec![state(Analysis::Bigkey, Some(result(vec![])))],
    )]);
    let text = render(&snap);
    assert!(!text.contains("memory_bytes") && !text.contains("analysis_scan_"));
}

#[test]
fn a_key_missing_from_the_newer_result_disappears() {
    let mut a = key("a", Some(KeyType::String), Some(0), None);
    a.freq = Some(50);
    let mut b = key("b", Some(KeyType::String), Some(0), None);
    b.freq = Some(40);
    let mut snap = snapshot(vec![instance(
        "i",
        "n",
        vec![state(Analysis::Hotkey, Some(result(vec![a, b.clone()])))],
    )]);
    let before = render(&snap);
    assert!(before.contains("key=\"a\""));
    let st = snap
        .instances
        .get_mut("i")
        .and_then(|i| i.analyses.get_mut(&Analysis::Hotkey))
        .expect("configured");
    st.result = Some(Arc::new(result(vec![b])));
    let after = render(&snap);
    assert!(!after.contains("key=\"a\""), "{after}");
    assert!(after.contains(
        r#"dcs_hotkey_frequency{instance_id="i",instance_name="n",key="b",key_type="string",db="0",shard=""} 40"#
    ));
}

#[test]
fn escapes_label_values() {
    let mut out = Vec::new();
    escape_label_value(&mut out, "a\\b\"c\nd\re\tf\u{0}g\u{7f}h\u{fffd}");
    assert_eq!(out, "a\\\\b\\\"c\\nd\re\tf\u{0}g\u{7f}h\u{fffd}".as_bytes());
}

#[test]
fn configured_analyses_without_results_export_state_only() {
    let snap = snapshot(vec![instance(
        "i",
        "n",
        vec![state(Analysis::Hotkey, None)],
    )]);
    let text = render(&snap);
    let names: Vec<&str> = samples(&text)
        .iter()
        .map(|l| l.split('{').next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "dcs_analysis_consecutive_failures",
            "dcs_analysis_failures_total",
            "dcs_analysis_failures_total",
            "dcs_analysis_failures_total",
            "dcs_analysis_failures_total",
            "dcs_analysis_failures_total",
            "dcs_analysis_tasks_total",
            "dcs_analysis_tasks_total",
            "dcs_analysis_supported",
            "dcs_analysis_running",
            "dcs_analysis_interval_seconds",
        ]
    );
    // No family is announced without samples.
    assert!(!text.contains("dcs_hotkey_frequency"));
    assert!(!text.contains("dcs_instance_info"));
    assert_eq!(render(&Snapshot::default()), "");
}

#[test]
fn namespace_and_hash_mode_apply() {
    let mut a = key("secret-user-42", Some(KeyType::String), Some(0), None);
    a.freq = Some(5);
    let snap = snapshot(vec![instance(
        "i",
        "n",
        vec![state(Analysis::Hotkey, Some(result(vec![a])))],
    )]);
    let opts = RenderOptions {
        namespace: "redis_keys".into(),
        key_label: KeyLabelMode::Hash,
        ..RenderOptions::default()
    };
    let mut out = Vec::new();
    render_snapshot(&snap, &opts, &mut out);
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(!text.contains("secret-user-42"));
    assert!(text.contains("# TYPE redis_keys_hotkey_frequency gauge\n"));
    assert!(samples(&text).iter().all(|l| l.starts_with("redis_keys_")));
    assert!(text.contains("key=\"sha256:"));
}

#[test]
fn estimated_accesses_follow_the_lfu_formula() {
    // Values from the formula by hand: c=5 → 0; c=6 → 1; c=7 → 2 + f*2*1/2 = 2 + f.
    assert_eq!(estimated_accesses(0, 10), 0);
    assert_eq!(estimated_accesses(4, 10), 0);
    assert_eq!(estimated_accesses(5, 10), 0);
    assert_eq!(estimated_accesses(6, 10), 1);
    assert_eq!(estimated_accesses(7, 10), 12);
    assert_eq!(estimated_accesses(7, 0), 2);
    assert_eq!(estimated_accesses(-3, 10), 0);
    assert_eq!(estimated_accesses(1000, 10), 311_500);
    assert_eq!(
        estimated_accesses(255, u32::MAX),
        250 + 31_125 * u64::from(u32::MAX)
    );
}

#[test]
fn floats_use_prometheus_syntax() {
    let f = |v: f64| {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).expect("ASCII")
    };
    assert_eq!(f(2.0), "2");
    assert_eq!(f(-0.0), "0");
    assert_eq!(f(1.5), "1.5");
    assert_eq!(f(1592187678.669), "1592187678.669");
    assert_eq!(f(1e-7), "1e-7");
    assert_eq!(f(2.5e20), "2.5e20");
    assert_eq!(f(f64::NAN), "NaN");
    assert_eq!(f(f64::INFINITY), "+Inf");
    assert_eq!(f(f64::NEG_INFINITY), "-Inf");
}

#[test]
fn large_snapshots_render_every_series() {
    // 40 instances, 50 hot keys (freq + bytes) and 100 big keys (elements) each.
    let mut instances = Vec::new();
    for i in 0..40 {
        let hot_keys = (0..50)
            .map(|k| {
                let mut r = key(&format!("hot:{k}"), Some(KeyType::String), Some(0), None);
                r.freq = Some(200 - k);
                r.size = Some(10 * k);
                r.unit = Some(SizeUnit::Byte);
                r
            })
            .collect();
        let big_keys = (0..100)
            .map(|k| {
                let mut r = key(&format!("big:{k}"), Some(KeyType::Zset), Some(1), None);
                r.size = Some(1_000_000 - k);
                r.unit = Some(SizeUnit::Count);
                r
            })
            .collect();
        instances.push(instance(
            &format!("i-{i:03}"),
            &format!("inst-{i}"),
            vec![
                state(Analysis::Hotkey, Some(result(hot_keys))),
                state(Analysis::Bigkey, Some(result(big_keys))),
            ],
        ));
    }
    let snap = snapshot(instances);
    let started = tokio::time::Instant::now();
    let text = render(&snap);
    eprintln!("rendered {} bytes in {:?}", text.len(), started.elapsed());
    let count = |prefix: &str| {
        samples(&text)
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    };
    assert_eq!(count("dcs_hotkey_frequency{"), 40 * 50);
    assert_eq!(count("dcs_hotkey_estimated_accesses{"), 40 * 50);
    assert_eq!(count("dcs_hotkey_size_bytes{"), 40 * 50);
    assert_eq!(count("dcs_hotkey_elements{"), 0);
    assert_eq!(count("dcs_bigkey_elements{"), 40 * 100);
    assert_eq!(count("dcs_analysis_failures_total{"), 40 * 2 * 5);
    // One HELP line per family, whatever the number of samples.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("# HELP dcs_hotkey_frequency "))
            .count(),
        1
    );
}

/// A snapshot with hostile key names and many series, for `promtool`.
fn hostile() -> Snapshot {
    let names = [
        "plain",
        "quote\"d",
        "back\\slash",
        "new\nline",
        "cr\rlf\r\n",
        "tab\tnul\u{0}del\u{7f}",
        "\u{fffd}invalid\u{fffd}",
        "<script>alert(1)</script>",
        "unicode 键 🔑",
        "",
    ];
    let mut keys = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut k = key(
            n,
            Some(KeyType::String),
            Some(i as i64),
            Some("10.0.0.1:6379"),
        );
        k.freq = Some(200 - i as i64);
        k.size = Some(100);
        k.unit = Some(SizeUnit::Byte);
        keys.push(k);
    }
    keys.push({
        let mut k = key(&"long".repeat(100), Some(KeyType::Zset), Some(0), None);
        k.freq = Some(9);
        k
    });
    let mut inst = instance(
        "i-\"x\"\\",
        "name\nwith\"quotes",
        vec![
            state(Analysis::Hotkey, Some(result(keys))),
            state(Analysis::Bigkey, None),
        ],
    );
    inst.info = Some(InstanceInfo::default());
    snapshot(vec![inst, instance("i-2", "two", vec![])])
}

#[test]
fn promtool_accepts_the_output() {
    let Some(promtool) = find_on_path("promtool") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is required in CI"
        );
        eprintln!("note: promtool not on PATH; skipping the promtool check");
        return;
    };
    for snap in [example(), hostile(), families_example()] {
        let text = render(&snap);
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("write to promtool");
        let res = child.wait_with_output().expect("promtool runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(res.status.success(), "promtool: {report}\n---\n{text}");
        // Lint findings (naming, help) are printed but do not fail the exit code everywhere.
        assert!(report.trim().is_empty(), "promtool: {report}\n---\n{text}");
    }
}

/// One instance with a key family result over two shards.
fn families_example() -> Snapshot {
    use crate::metrics::families::{KeyspaceTotal, ShardFamilies};
    let total = |ty: &str, shard: &str, keys, bytes| KeyspaceTotal {
        key_type: ty.into(),
        shard: shard.into(),
        keys,
        memory_bytes: bytes,
    };
    let shard = |id: &str, totals| {
        Arc::new(ShardFamilies {
            task_id: id.into(),
            backup_id: None,
            finished_at: Some(1010.0),
            families: Vec::new(),
            totals,
            key_count: 0,
        })
    };
    let mut r = result(Vec::new());
    r.families = vec![
        KeyFamily::sample("test", "hash", "g0", 3, 300),
        KeyFamily::sample("user:1:cart", "string", "g0", 1, 10),
        KeyFamily::sample("user:2:cart", "string", "g0", 2, 20),
        KeyFamily::sample("other", "string", "g1", 5, 50),
    ];
    r.shards.insert(
        "g0".into(),
        shard(
            "t0",
            vec![total("hash", "g0", 3, 300), total("string", "g0", 3, 30)],
        ),
    );
    r.shards
        .insert("g1".into(), shard("t1", vec![total("string", "g1", 5, 50)]));
    snapshot(vec![instance(
        "i",
        "n",
        vec![state(Analysis::Keyfamily, Some(r))],
    )])
}

#[test]
fn families_render_with_privacy_rules_and_summed_collisions() {
    let snap = families_example();
    let text = render(&snap);
    let s = samples(&text);
    let l = r#"instance_id="i",instance_name="n""#;
    for want in [
        format!(r#"dcs_keyfamily_keys{{{l},family="test",key_type="hash",shard="g0"}} 3"#),
        format!(
            r#"dcs_keyfamily_memory_bytes{{{l},family="other",key_type="string",shard="g1"}} 50"#
        ),
        format!(r#"dcs_keyspace_keys{{{l},key_type="string"}} 8"#),
        format!(r#"dcs_keyspace_memory_bytes{{{l},key_type="hash"}} 300"#),
    ] {
        assert!(s.contains(&want.as_str()), "missing {want} in\n{text}");
    }
    assert!(
        !text.contains("keys_without_ttl{"),
        "DCS families carry no TTL count"
    );

    // Rewritten names that coincide are one series, summed; `key_label: hash` hides names
    // (sha256("test") starts 9f86d081884c7d65) but not `other`.
    let rule = crate::metrics::keyrewrite::KeyRule::new(r"^user:\d+:(.*)$", "user:*:$1").unwrap();
    let opts = RenderOptions {
        key_rewrite: KeyRewrite::new(vec![rule]),
        ..RenderOptions::default()
    };
    let mut out = Vec::new();
    render_snapshot(&snap, &opts, &mut out);
    let text = String::from_utf8(out).unwrap();
    let want = format!(
        r#"dcs_keyfamily_memory_bytes{{{l},family="user:*:cart",key_type="string",shard="g0"}} 30"#
    );
    assert!(samples(&text).contains(&want.as_str()), "{text}");
    assert_eq!(text.matches("family=\"user:*:cart\"").count(), 2);
    let opts = RenderOptions {
        key_label: KeyLabelMode::Hash,
        ..RenderOptions::default()
    };
    let mut out = Vec::new();
    render_snapshot(&snap, &opts, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(r#"family="sha256:9f86d081884c7d65""#),
        "{text}"
    );
    assert!(text.contains(r#"family="other""#));
    assert!(!text.contains("user:"), "{text}");
}

fn find_on_path(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
}

/// Every family the catalog renders has a row in the metrics reference (`docs/metrics.md`),
/// under its default name.
#[test]
fn every_family_has_a_row_in_the_metrics_reference() {
    let catalog = include_str!("catalog.rs");
    let docs = include_str!("../../../docs/metrics.md");
    let names: Vec<&str> = catalog
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: \""))
        .filter_map(|r| r.strip_suffix("\","))
        .collect();
    assert!(names.len() >= 30, "{names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !docs.contains(&format!("| `dcs_{n}` |")))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}
