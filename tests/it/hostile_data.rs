//! Hostile data from the cloud API: a hand-written DCS stand-in on 127.0.0.1:0 answers with key
//! names full of quotes, backslashes, newlines, control characters, lone UTF-16 surrogates and
//! 64 KiB of text; negative, absurd and non-integer sizes; `freq` outside 0–255; timestamps in
//! odd formats. The exporter (in this process) must publish the result, keep its exposition
//! valid (`promtool check metrics`, and a small independent parser), serve its status page, and
//! never panic. A property test checks the label escaping against the same parser.

use std::convert::Infallible;
use std::time::Duration;

use crate::common::{parse_exposition, promtool_check, read_label_value};
use bytes::Bytes;
use dcs_key_exporter::app::RunOptions;
use dcs_key_exporter::config::{
    AnalysisSettings, ApiSettings, CloudConfig, Config, InstanceConfig, InstanceDefaults,
    MetricsSettings, Mode, SchedulerSettings,
};
use dcs_key_exporter::dcs::{Analysis, Auth, ClientConfig};
use dcs_key_exporter::metrics::keylabel::KeyLabelMode;
use dcs_key_exporter::metrics::render::escape_label_value;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proptest::prelude::*;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const ID: &str = "d0000000-0000-4000-8000-000000000bad";
const DEADLINE: Duration = Duration::from_secs(30);

/// The hot key result, written by hand as DCS could send it. `freq` doubles as the sample
/// value the test looks for.
fn hostile_task() -> String {
    let long = "x".repeat(64 * 1024);
    // Deeper than serde_json's recursion limit (128).
    let deep = format!("{}0{}", "[".repeat(300), "]".repeat(300));
    format!(
        r#"{{"id":"t-1","instance_id":"{ID}","status":"success","scan_type":"manual",
        "created_at":"2024-06-10 06:13:20","started_at":1717999999,
        "finished_at":"2024-06-10T14:15:00.5+08:00","num":"9",
        "keys":[
          {{"name":"quote\"d","type":"string","size":10,"unit":"byte","freq":101,"db":0}},
          {{"name":"back\\slash\\","type":"hash","size":-5,"unit":"count","freq":102,"db":0}},
          {{"name":"new\nline\r\n","type":"string","size":1e300,"unit":"byte","freq":103,"db":0}},
          {{"name":"ctl\u0000\u0001\u001b[31m\u007f\t","type":"list","size":"12","unit":"count","freq":104,"db":0}},
          {{"name":"lone\udc80surrogate","type":"set","size":1,"unit":"count","freq":105,"db":0}},
          {{"name":"high\ud800","type":"set","size":1,"unit":"count","freq":106,"db":0}},
          {{"name":"{long}","type":"string","size":9223372036854775807,"unit":"byte","freq":107,"db":0}},
          {{"name":"freq over 255","type":"string","size":1,"unit":"byte","freq":99999,"db":0}},
          {{"name":"freq negative","type":"string","size":1,"unit":"byte","freq":-7,"db":-1}},
          {{"name":"emoji 🔥 ключ","type":"zset","size":3,"unit":"count","freq":"108","db":"2","shard":"10.0.0.1:6379"}},
          {{"name":"weird type","type":"stream","size":3,"unit":"bit","freq":109.9,"db":0}},
          {{"name":"dup","type":"string","size":1,"unit":"byte","freq":110,"db":0}},
          {{"name":"dup","type":"string","size":2,"unit":"byte","freq":1,"db":0}},
          {{"name":"size beyond f64","type":"string","size":1e400,"unit":"byte","freq":111,"db":0}},
          {{"name":"deeply nested type","type":{deep},"size":1,"unit":"byte","freq":112,"db":0}},
          "not a key", 42, null
        ]}}"#
    )
}

/// The key names the exporter must show (after JSON unescaping and surrogate repair), with
/// the `dcs_hotkey_frequency` each gets.
fn expected_names() -> Vec<(String, f64)> {
    vec![
        ("quote\"d".into(), 101.0),
        ("back\\slash\\".into(), 102.0),
        ("new\nline\r\n".into(), 103.0),
        ("ctl\u{0}\u{1}\u{1b}[31m\u{7f}\t".into(), 104.0),
        ("lone\u{fffd}surrogate".into(), 105.0),
        ("high\u{fffd}".into(), 106.0),
        // An LFU counter is 0–255: values outside are clamped.
        ("freq over 255".into(), 255.0),
        ("freq negative".into(), 0.0),
        ("emoji 🔥 ключ".into(), 108.0),
        ("weird type".into(), 109.0),
        ("dup".into(), 110.0),
        // A value that cannot be read costs its field, not the key or the result.
        ("size beyond f64".into(), 111.0),
        ("deeply nested type".into(), 112.0),
    ]
}

/// Answers the few calls the exporter makes for one observed instance.
async fn serve_dcs(listener: TcpListener, cancel: CancellationToken) {
    let task = Bytes::from(hostile_task());
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a.unwrap(),
        };
        let task = task.clone();
        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
            let task = task.clone();
            async move {
                let path = req.uri().path().to_owned();
                let (status, body) = if path.ends_with("/hotkey-tasks") {
                    let list = format!(
                        r#"{{"instance_id":"{ID}","count":3,"records":[
                          {{"id":"t-1","status":"success","created_at":"2024-06-10 06:13:20",
                            "finished_at":"2024-06-10T14:15:00.5+08:00"}},
                          {{"status":"success"}},
                          {{"id":"t-0","status":"failed","created_at":"not a time","finished_at":{{}}}}
                        ]}}"#
                    );
                    (200, Bytes::from(list))
                } else if path.ends_with("/hotkey-task/t-1") {
                    (200, task)
                } else if path.ends_with(ID) {
                    let info = format!(
                        r#"{{"instance_id":"{ID}","name":"na\"me\\\n\udc80","engine":"Redis",
                        "engine_version":"6.0","status":"RUNNING","spec_code":"s\u0001"}}"#
                    );
                    (200, Bytes::from(info))
                } else {
                    (
                        404,
                        Bytes::from(r#"{"error_code":"DCS.4001","error_msg":"no"}"#),
                    )
                };
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap(),
                )
            }
        });
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn config(endpoint: url::Url) -> Config {
    let observe = AnalysisSettings {
        mode: Mode::Observe,
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(60),
        top_n: 50,
    };
    let off = AnalysisSettings {
        mode: Mode::Off,
        ..observe
    };
    let mut client = ClientConfig::new(
        endpoint,
        "0123456789abcdef0123456789abcdef",
        Auth::AkSk {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            security_token: None,
        },
    );
    client.request_timeout = Duration::from_secs(5);
    let mut config: Config = Config {
        redis: Vec::new(),
        clouds: vec![CloudConfig {
            name: "hostile".into(),
            client,
            instances: vec![InstanceConfig {
                id: ID.into(),
                name: None,
                lfu_log_factor: 10,
                hotkey: observe,
                bigkey: off,
                keyfamily: Default::default(),
            }],
            discovery: None,
            defaults: InstanceDefaults {
                lfu_log_factor: 10,
                hotkey: observe,
                bigkey: off,
                keyfamily: Default::default(),
            },
        }],
        metrics: MetricsSettings {
            namespace: None,
            key_label: KeyLabelMode::Name { max_bytes: 200 },
            key_rewrite: Default::default(),
        },
        api: ApiSettings {
            timeout: Duration::from_secs(5),
            max_retries: 0,
            max_concurrent_requests: 4,
            max_response_bytes: 1 << 20,
        },
        scheduler: SchedulerSettings {
            start_jitter: Duration::ZERO,
        },
    };
    config.clouds[0].client.max_retries = 0;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_results_keep_the_exposition_valid() {
    let dcs = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", dcs.local_addr().unwrap())).unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(serve_dcs(dcs, cancel.clone()));

    let exporter =
        crate::common::start_exporter(config(url), RunOptions::default(), DEADLINE).await;
    let (http, addr) = (&exporter.http, exporter.addr);
    let deadline = Instant::now() + DEADLINE;
    let (text, samples) = loop {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let samples = parse_exposition(&text);
        let published = samples.iter().any(|s| {
            s.name == "dcs_hotkey_frequency"
                && s.labels.get("instance_id").map(String::as_str) == Some(ID)
        });
        let named = samples.iter().any(|s| s.name == "dcs_instance_info");
        if published && named {
            break (text, samples);
        }
        assert!(Instant::now() < deadline, "no result published:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let freq: Vec<(&str, f64)> = samples
        .iter()
        .filter(|s| s.name == "dcs_hotkey_frequency")
        .map(|s| (s.labels["key"].as_str(), s.value))
        .collect();
    for (name, f) in expected_names() {
        assert!(
            freq.contains(&(name.as_str(), f)),
            "{name:?} with freq {f} missing from {freq:?}"
        );
    }
    // The 64 KiB name is cut to 200 bytes plus a hash suffix; the duplicate is exported once.
    let long: Vec<_> = freq.iter().filter(|(k, _)| k.starts_with("xxxx")).collect();
    assert_eq!(long.len(), 1);
    assert!(long[0].0.len() < 250 && long[0].1 == 107.0, "{long:?}");
    assert_eq!(freq.iter().filter(|(k, _)| *k == "dup").count(), 1);
    assert_eq!(freq.len(), expected_names().len() + 1);
    // The analysis' timestamps in odd formats were read.
    let finished = samples
        .iter()
        .find(|s| {
            s.name == "dcs_analysis_last_success_timestamp_seconds" && s.labels["instance_id"] == ID
        })
        .unwrap()
        .value;
    // 2024-06-10T14:15:00.5+08:00
    assert_eq!(finished, 1_718_000_100.5);
    promtool_check(&text);

    // The status page renders the same data.
    let status = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let page = status.text().await.unwrap();
    assert!(
        page.contains("freq over 255"),
        "the status page lists the keys"
    );

    exporter.stop().await;
    cancel.cancel();
}

proptest! {
    #[test]
    fn any_label_value_escapes_to_text_that_reads_back(value in any::<String>()) {
        let mut out = Vec::new();
        escape_label_value(&mut out, &value);
        let text = String::from_utf8(out).expect("UTF-8 in, UTF-8 out");
        prop_assert!(!text.contains('\n'), "no raw line feed");
        let quoted = format!("{text}\"rest");
        let (back, rest) = read_label_value(&quoted).expect("reads back");
        prop_assert_eq!(back, value);
        prop_assert_eq!(rest, "rest");
    }

    #[test]
    fn hostile_characters_escape_to_text_that_reads_back(
        parts in prop::collection::vec(prop_oneof![
            Just("\\".to_owned()), Just("\"".to_owned()), Just("\n".to_owned()),
            Just("\\n".to_owned()), Just("\r".to_owned()), Just("\u{0}".to_owned()),
            Just("}".to_owned()), Just(",".to_owned()), Just("=".to_owned()),
            "\\PC{0,3}",
        ], 0..12),
    ) {
        let value = parts.concat();
        let mut out = Vec::new();
        escape_label_value(&mut out, &value);
        let line = format!("m{{key=\"{}\",b=\"x\"}} 1", String::from_utf8(out).unwrap());
        let samples = parse_exposition(&line);
        prop_assert_eq!(samples.len(), 1);
        prop_assert_eq!(&samples[0].labels["key"], &value);
        prop_assert_eq!(&samples[0].labels["b"], "x");
    }
}

#[test]
fn the_analysis_enum_is_what_the_stand_in_serves() {
    // Guards the stand-in's paths against a rename of the documented segments.
    assert_eq!(Analysis::Hotkey.tasks_segment(), "hotkey-tasks");
    assert_eq!(Analysis::Hotkey.task_segment(), "hotkey-task");
}
