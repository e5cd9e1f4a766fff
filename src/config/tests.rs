use super::*;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

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
        "clouds:\n  - name: c\n    region: cn-north-4\n    project_id: {PROJECT}\n    auth:\n      access_key: ${{AK}}\n      secret_key: ${{SK}}\n    instances:\n      - id: i-1\n{extra_instance}"
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
    assert_eq!(i.id, "i-1");
    assert_eq!(i.hotkey.mode, Mode::Trigger);
    assert_eq!(i.hotkey.interval, Duration::from_secs(900));
    assert_eq!(i.hotkey.timeout, Duration::from_secs(600));
    assert_eq!(i.hotkey.top_n, 50);
    assert_eq!(i.bigkey.interval, Duration::from_secs(3600));
    assert_eq!(i.bigkey.timeout, Duration::from_secs(1800));
    assert_eq!(i.bigkey.top_n, 100);
    assert_eq!(i.lfu_log_factor, 10);
    assert_eq!(c.metrics.key_label, KeyLabelKind::Name);
    assert_eq!(c.metrics.key_label_max_bytes, 200);
}

#[test]
fn instance_overrides_merge_over_global_analysis_defaults() {
    let text = format!(
        "analysis:\n  hotkey:\n    interval: 5m\n    top_n: 10\n{}        analysis:\n          hotkey:\n            mode: observe\n          bigkey:\n            mode: \"off\"\n      - id: i-2\n",
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
    let text = "clouds:\n  - region: r\n    auth: {access_key: \"${NOPE}\", secret_key: x}\n    instances: [{id: a}, {id: a}]\n";
    let msg = problems(text);
    assert!(
        msg.contains("clouds[0].auth.access_key: environment variable NOPE is not set"),
        "{msg}"
    );
    assert!(msg.contains("clouds[0].project_id: is required"), "{msg}");
    assert!(
        msg.contains("clouds[0].instances[1].id: duplicate instance a"),
        "{msg}"
    );
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = std::env::temp_dir().join(format!("dcs-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sk"), "file-secret\n").unwrap();
    let text = format!(
        "clouds:\n  - region: r\n    project_id: {PROJECT}\n    auth: {{access_key: a, secret_key_file: sk}}\n    instances: [{{id: a}}]\n"
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
        "clouds:\n  - region: cn-north-4\n    project_id: {PROJECT}\n    auth: {{user: u, password: p, domain: d}}\n    instances: [{{id: a}}]\n"
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
        p.contains("analysis.bigkey.fresh_backup: only analysis.keyfamily takes fresh_backup"),
        "{p}"
    );
}
