use super::*;
use crate::dcs::Auth;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const I1: &str = "5560df16-cebf-4473-95c4-d1b573c16e79";
const I2: &str = "c0ffee00-0000-4000-8000-000000000002";

fn env(name: &str) -> Option<String> {
    match name {
        "AK" => Some("MYACCESSKEY".into()),
        "SK" => Some("my-secret".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    load_str(text, "test.yml", None, &env)
}

fn problems(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config must be refused:\n{text}"),
        Err(e) => e.problems().join("\n"),
    }
}

fn minimal(extra_instance: &str) -> String {
    format!(
        "clouds:\n  - name: c\n    region: cn-north-4\n    project_id: {PROJECT}\n    auth:\n      access_key: ${{AK}}\n      secret_key: ${{SK}}\n    instances:\n      - id: {I1}\n{extra_instance}"
    )
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = load(&minimal("")).unwrap();
    let cloud = &c.clouds[0];
    assert_eq!(
        cloud.client.endpoint.as_str(),
        "https://dcs.cn-north-4.myhuaweicloud.com/"
    );
    assert_eq!(cloud.client.project_id, PROJECT);
    match &cloud.client.auth {
        Auth::AkSk {
            access_key,
            secret_key,
            security_token,
        } => {
            assert_eq!(access_key, "MYACCESSKEY");
            assert_eq!(secret_key.expose(), "my-secret");
            assert!(security_token.is_none());
        }
        other => panic!("unexpected auth {other:?}"),
    }
    let i = &cloud.instances[0];
    assert_eq!(i.id, I1);
    assert_eq!(i.hotkey.mode, Mode::Trigger);
    assert_eq!(i.hotkey.interval, Duration::from_secs(900));
    assert_eq!(i.hotkey.timeout, Duration::from_secs(600));
    assert_eq!(i.hotkey.top_n, 50);
    assert_eq!(i.bigkey.interval, Duration::from_secs(3600));
    assert_eq!(i.bigkey.timeout, Duration::from_secs(1800));
    assert_eq!(i.bigkey.top_n, 100);
    assert_eq!(i.lfu_log_factor, 10);
    assert_eq!(c.metrics.key_label, KeyLabelMode::Name { max_bytes: 200 });
}

#[test]
fn key_label_and_its_length_make_one_setting() {
    let with = |metrics: &str| format!("{}metrics:\n{metrics}", minimal(""));
    let c = load(&with("  key_label_max_bytes: 64\n")).unwrap();
    assert_eq!(c.metrics.key_label, KeyLabelMode::Name { max_bytes: 64 });
    let c = load(&with("  key_label: hash\n  key_label_max_bytes: 64\n")).unwrap();
    assert_eq!(c.metrics.key_label, KeyLabelMode::Hash);
    // The length is checked in hash mode too.
    let p = problems(&with("  key_label: hash\n  key_label_max_bytes: 8\n"));
    assert!(p.contains("metrics.key_label_max_bytes"), "{p}");
    assert!(p.contains("must be between 16 and 65536"), "{p}");
    let p = problems(&with("  key_label: digest\n"));
    assert!(p.contains("metrics.key_label"), "{p}");
    assert!(p.contains("`name`") && p.contains("`hash`"), "{p}");
}

#[test]
fn instance_overrides_merge_over_global_analysis_defaults() {
    let text = format!(
        "analysis:\n  hotkey:\n    interval: 5m\n    top_n: 10\n{}        analysis:\n          hotkey:\n            mode: observe\n          bigkey:\n            mode: \"off\"\n      - id: {I2}\n",
        minimal("        lfu_log_factor: 20\n")
    );
    let c = load(&text).unwrap();
    let (a, b) = (&c.clouds[0].instances[0], &c.clouds[0].instances[1]);
    assert_eq!(a.hotkey.mode, Mode::Observe);
    assert_eq!(a.hotkey.interval, Duration::from_secs(300));
    assert_eq!(a.hotkey.top_n, 10);
    assert_eq!(a.bigkey.mode, Mode::Off);
    assert_eq!(a.lfu_log_factor, 20);
    assert_eq!(b.hotkey.mode, Mode::Trigger);
    assert_eq!(b.hotkey.interval, Duration::from_secs(300));
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = minimal("        nmae: typo\n");
    let msg = problems(&text);
    assert!(msg.contains("nmae"), "{msg}");
    assert!(msg.contains("clouds[0].instances[0]"), "{msg}");
    assert!(msg.contains("line 10"), "{msg}");
    assert_eq!(
        msg.matches("clouds[0].instances[0]").count(),
        1,
        "path said once: {msg}"
    );
}

#[test]
fn wrong_type_and_bad_duration_are_named() {
    let msg = problems(&minimal("        analysis: {hotkey: {top_n: many}}\n"));
    assert!(msg.contains("top_n") && msg.contains("line 10"), "{msg}");
    let msg = problems(&minimal(
        "        analysis: {hotkey: {interval: 5minutes}}\n",
    ));
    assert!(
        msg.contains("clouds[0].instances[0].analysis.hotkey.interval"),
        "{msg}"
    );
    assert!(msg.contains("5minutes"), "{msg}");
}

#[test]
fn unset_variable_and_missing_fields_are_all_reported() {
    let text = format!("clouds:\n  - region: r\n    auth: {{access_key: \"${{NOPE}}\", secret_key: x}}\n    instances: [{{id: {I1}}}, {{id: {I1}}}]\n");
    let text = text.as_str();
    let msg = problems(text);
    assert!(
        msg.contains("clouds[0].auth.access_key: environment variable NOPE is not set"),
        "{msg}"
    );
    assert!(msg.contains("clouds[0].project_id: is required"), "{msg}");
    assert!(
        msg.contains(&format!(
            "clouds[0].instances[1].id: duplicate instance {I1}"
        )),
        "{msg}"
    );
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = std::env::temp_dir().join(format!("dcs-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sk"), "file-secret\n").unwrap();
    let text = format!(
        "clouds:\n  - region: r\n    project_id: {PROJECT}\n    auth: {{access_key: a, secret_key_file: sk}}\n    instances: [{{id: {I1}}}]\n"
    );
    let c = load_str(&text, "t.yml", Some(&dir), &env).unwrap();
    match &c.clouds[0].client.auth {
        Auth::AkSk { secret_key, .. } => assert_eq!(secret_key.expose(), "file-secret"),
        other => panic!("unexpected auth {other:?}"),
    }
    assert!(!format!("{c:?}").contains("file-secret"));
    let missing = text.replace("secret_key_file: sk", "secret_key_file: nope");
    let msg = load_str(&missing, "t.yml", Some(&dir), &env)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("clouds[0].auth.secret_key_file: cannot read"),
        "{msg}"
    );
}

#[test]
fn impossible_values_are_refused() {
    let msg = problems(&minimal(
        "        analysis: {hotkey: {top_n: 0, timeout: 0s}}\n",
    ));
    assert!(
        msg.contains("analysis.hotkey.top_n: must be between 1 and 1000"),
        "{msg}"
    );
    assert!(
        msg.contains("analysis.hotkey.timeout: must be at least 1s"),
        "{msg}"
    );
    let msg = problems("clouds: []\n");
    assert!(
        msg.contains("clouds: at least one cloud is required"),
        "{msg}"
    );
}

#[test]
fn iam_auth_defaults_its_endpoint_from_the_region() {
    let text = format!(
        "clouds:\n  - region: cn-north-4\n    project_id: {PROJECT}\n    auth: {{user: u, password: p, domain: d}}\n    instances: [{{id: {I1}}}]\n"
    );
    let c = load(&text).unwrap();
    match &c.clouds[0].client.auth {
        Auth::Iam {
            endpoint,
            user,
            domain,
            project_name,
            ..
        } => {
            assert_eq!(
                endpoint.as_str(),
                "https://iam.cn-north-4.myhuaweicloud.com/"
            );
            assert_eq!((user.as_str(), domain.as_str()), ("u", "d"));
            assert_eq!(project_name, "cn-north-4");
        }
        other => panic!("unexpected auth {other:?}"),
    }
}

#[test]
fn every_parse_and_validation_problem_is_reported_once_with_its_line() {
    let text = format!(
        "clouds:\n  - name: c\n    regoin: cn-north-4\n    project_id: {PROJECT}\n    auth:\n      access_key: ${{AK}}\n      secret_key: ${{SK}}\n    instances:\n      - id: {I1}\n        nmae: typo\n        analysis:\n          hotkey:\n            top_n: many\n            interval: 15 minutes\napi:\n  max_retries: 11\n"
    );
    let Err(ConfigError::Invalid { problems, .. }) = load(&text) else {
        panic!("must be refused");
    };
    let got: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        got,
        [
            // In the file's order: from the parser, every unknown key and wrong type (not only
            // the first); from the validator, what is wrong in the rest (the misspelt region
            // is indeed missing). Nothing about a key the parser refused is said again.
            ("clouds[0].region", Some(2)),
            ("clouds[0].regoin", Some(3)),
            ("clouds[0].instances[0].nmae", Some(10)),
            ("clouds[0].instances[0].analysis.hotkey.top_n", Some(13)),
            ("clouds[0].instances[0].analysis.hotkey.interval", Some(14)),
            ("api.max_retries", Some(16)),
        ]
    );
    let interval = &problems[4].message;
    assert!(interval.contains("write 15m"), "{interval}");
}

#[test]
fn malformed_project_and_instance_ids_are_reported() {
    let text = minimal("")
        .replace(PROJECT, "my-project")
        .replace(I1, "orders-cache");
    let msg = problems(&text);
    assert!(
        msg.contains("clouds[0].project_id: \"my-project\" is not a project id: expected 32 hexadecimal digits"),
        "{msg}"
    );
    assert!(
        msg.contains("clouds[0].instances[0].id: \"orders-cache\" is not a DCS instance id"),
        "{msg}"
    );
    // 31 digits, or a UUID without its hyphens, are not ids either.
    let msg = problems(&minimal("").replace(PROJECT, &PROJECT[1..]));
    assert!(msg.contains("project_id"), "{msg}");
    let msg = problems(&minimal("").replace(I1, &I1.replace('-', "")));
    assert!(msg.contains("instances[0].id"), "{msg}");
    assert!(validate::is_instance_id(I1) && validate::is_project_id(PROJECT));
}

#[test]
fn upper_case_ids_are_used_in_lower_case_with_a_warning_and_deduplicated() {
    let upper = I1.to_ascii_uppercase();
    let text =
        minimal(&format!("      - id: {upper}\n")).replace(PROJECT, &PROJECT.to_ascii_uppercase());
    // The same instance twice, once in upper case: a duplicate.
    let msg = problems(&text);
    assert!(
        msg.contains(&format!(
            "clouds[0].instances[1].id: duplicate instance {I1}"
        )),
        "{msg}"
    );
    // Alone, it loads in lower case, as DCS writes it, with a warning naming the key.
    let text = minimal("")
        .replace(I1, &upper)
        .replace(PROJECT, &PROJECT.to_ascii_uppercase());
    let checked = load_str_checked(&text, "test.yml", None, &env).expect("loads");
    assert_eq!(checked.config.clouds[0].instances[0].id, I1);
    assert_eq!(checked.config.clouds[0].client.project_id, PROJECT);
    let keys: Vec<&str> = checked.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["clouds[0].project_id", "clouds[0].instances[0].id"]);
    assert!(
        checked.warnings[1]
            .message
            .contains("DCS ids are lower case"),
        "{:?}",
        checked.warnings
    );
}

#[test]
fn a_timeout_longer_than_the_interval_is_a_warning_at_the_written_key() {
    let checked = |text: &str| {
        load_str_checked(text, "test.yml", None, &env)
            .expect("loads")
            .warnings
    };
    // Written at the instance: the timeout is named.
    let w = checked(&minimal(
        "        analysis:\n          hotkey:\n            interval: 1m\n            timeout: 5m\n",
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].key, "clouds[0].instances[0].analysis.hotkey.timeout");
    assert_eq!(w[0].line, Some(13));
    assert!(
        w[0].message
            .contains("the timeout 5m is longer than the interval 1m"),
        "{w:?}"
    );
    // Only the interval written: the inherited default timeout (10m) is longer.
    let w = checked(&format!(
        "analysis:\n  hotkey:\n    interval: 5m\n{}",
        minimal("")
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].key, "analysis.hotkey.interval");
    assert!(w[0].message.contains("10m (inherited)"), "{w:?}");
    // Observe mode creates no task: no warning. Nor for the defaults.
    let w = checked(&minimal(
        "        analysis:\n          hotkey: {mode: observe, interval: 1m}\n",
    ));
    assert!(w.is_empty(), "{w:?}");
    assert!(checked(&minimal("")).is_empty());
}

#[test]
fn secret_files_are_bounded_and_must_be_regular_files() {
    let dir = std::env::temp_dir().join(format!(
        "dcs-cfg-bound-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big"), vec![b'x'; MAX_SECRET_BYTES as usize + 1]).unwrap();
    let text = |file: &str| {
        format!(
            "clouds:\n  - region: r\n    project_id: {PROJECT}\n    auth: {{access_key: a, secret_key_file: {file}}}\n    instances: [{{id: {I1}}}]\n"
        )
    };
    let msg = load_str(&text("big"), "t.yml", Some(&dir), &env)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("clouds[0].auth.secret_key_file"), "{msg}");
    assert!(
        msg.contains(&format!("is larger than {MAX_SECRET_BYTES} bytes")),
        "{msg}"
    );
    let msg = load_str(&text("/dev/zero"), "t.yml", Some(&dir), &env)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("is not a regular file (it is a device)"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_files_that_are_not_regular_files_are_refused() {
    let e = load_file(Path::new("/dev/zero")).expect_err("a device");
    assert!(
        matches!(
            e,
            ConfigError::Read {
                source: ReadError::NotRegular(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("/dev/zero: cannot read config file: is not a regular file"),
        "{e}"
    );
}

#[test]
fn key_family_analysis_is_off_by_default_and_fresh_backup_is_its_own() {
    let c = load(&minimal("")).unwrap();
    let kf = c.clouds[0].instances[0].keyfamily;
    assert_eq!(kf.analysis.mode, Mode::Off);
    assert_eq!(kf.analysis.interval, Duration::from_secs(86_400));
    assert!(!kf.fresh_backup);

    let text = format!(
        "{}analysis:\n  keyfamily:\n    mode: trigger\n    top_n: 7\n",
        minimal("        analysis:\n          keyfamily: {fresh_backup: true}\n")
    );
    let c = load(&text).unwrap();
    let kf = c.clouds[0].instances[0].keyfamily;
    assert_eq!((kf.analysis.mode, kf.analysis.top_n), (Mode::Trigger, 7));
    assert!(kf.fresh_backup);
    assert!(!c.clouds[0].defaults.keyfamily.fresh_backup);

    let p = problems(&format!(
        "{}analysis:\n  bigkey: {{fresh_backup: true}}\n",
        minimal("")
    ));
    assert!(
        p.contains(
            "analysis.bigkey.fresh_backup: unknown field `fresh_backup`, expected one of `mode`, \
             `interval`, `timeout`, `top_n`; only analysis.keyfamily takes fresh_backup (line 11)"
        ),
        "{p}"
    );
}

#[test]
fn families_are_refused_where_dcs_names_the_families() {
    let p = problems(&minimal(
        "        analysis:\n          keyfamily: {families: {depth: 2}}\n",
    ));
    assert!(
        p.contains(
            "clouds[0].instances[0].analysis.keyfamily.families: unknown field `families`, \
             expected one of `mode`, `interval`, `timeout`, `top_n`, `fresh_backup`; DCS names \
             the families of its offline key analysis itself"
        ),
        "{p}"
    );
}

/// Serde's "expected one of" must list what is valid at that very place: under a Redis target's
/// hot key settings not the DCS-only `fresh_backup`, under its key families not the interval
/// (the big key scan's). The lists here are the README's reference of each section.
#[test]
fn unknown_fields_list_only_the_fields_valid_where_they_stand() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "redis:\n  - address: h\n    analysis:\n      hotkey:\n        bogus: 1\n",
            "redis[0].analysis.hotkey.bogus",
            "`mode`, `interval`, `timeout`, `top_n`, `source`, `monitor`, `hotkeys` (line 5)",
        ),
        (
            "redis:\n  - address: h\n    analysis:\n      keyfamily:\n        bogus: 1\n",
            "redis[0].analysis.keyfamily.bogus",
            "`mode`, `top_n`, `families` (line 5)",
        ),
        (
            "redis:\n  - address: h\n    analysis:\n      bogus: {}\n",
            "redis[0].analysis.bogus",
            "`hotkey`, `bigkey`, `keyfamily`, `hotslot` (line 4)",
        ),
        (
            "redis:\n  - address: h\n    tls:\n      bogus: 1\n",
            "redis[0].tls.bogus",
            "`ca_file`, `cert_file`, `key_file`, `server_name` (line 4)",
        ),
        (
            "redis:\n  - address: h\n    bogus: 1\n",
            "redis[0].bogus",
            "`name`, `address`, `id`, `username`, `password`, `password_file`, `tls`, \
             `throttle`, `analysis` (line 3)",
        ),
        (
            "analysis:\n  keyfamily:\n    bogus: 1\nredis: [{address: h}]\n",
            "analysis.keyfamily.bogus",
            "`mode`, `interval`, `timeout`, `top_n`, `fresh_backup`, `families` (line 3)",
        ),
        (
            "analysis:\n  bigkey:\n    bogus: 1\nredis: [{address: h}]\n",
            "analysis.bigkey.bogus",
            "`mode`, `interval`, `timeout`, `top_n` (line 3)",
        ),
        (
            &minimal("        analysis:\n          keyfamily:\n            bogus: 1\n"),
            "clouds[0].instances[0].analysis.keyfamily.bogus",
            "`mode`, `interval`, `timeout`, `top_n`, `fresh_backup` (line 12)",
        ),
        (
            &minimal("        analysis:\n          hotkey:\n            bogus: 1\n"),
            "clouds[0].instances[0].analysis.hotkey.bogus",
            "`mode`, `interval`, `timeout`, `top_n` (line 12)",
        ),
    ];
    for (text, key, fields) in cases {
        let p = problems(text);
        let want = format!("{key}: unknown field `bogus`, expected one of {fields}");
        assert!(p.contains(&want), "{want:?} missing from:\n{p}");
    }
}
