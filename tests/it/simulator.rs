//! Integration tests of the DCS API simulator over real HTTP on 127.0.0.1:0.
//!
//! Requests are signed with the crate's signer (itself tested against the published vectors) and
//! sent with reqwest, so these tests see exactly what a client sees. Expected values come from the
//! API reference (paths, codes, caps), from the documented duration model of the simulator, or
//! from the simulator's ground truth (`tasks`, `expected_result`), never from the answer itself.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use dcs_key_exporter::dcs::model::{Analysis, KeyRecord, TaskRecord, TaskStatus};
use dcs_key_exporter::dcs::signer::{self, SignableRequest};
use dcs_key_exporter::dcs::{Auth, ClientConfig, DcsApi, DcsClient, TaskListQuery};
use dcs_key_exporter::secret::Secret;
use dcs_key_exporter::simulator::{
    Faults, SimClock, SimConfig, SimIam, SimInstance, Simulator, MAX_RECORDS,
};

const AK: &str = "SIMULATORACCESSKEY00";
const SK: &str = "simulator-secret-key";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";

const HOT_OK: &str = "11111111-1111-4111-8111-111111111111";
const REDIS30: &str = "22222222-2222-4222-8222-222222222222";
const LRU60: &str = "33333333-3333-4333-8333-333333333333";
const CLUSTER: &str = "44444444-4444-4444-8444-444444444444";
const STOPPED: &str = "55555555-5555-4555-8555-555555555555";

const T0: OffsetDateTime = datetime!(2024-03-01 20:58:00 UTC);

fn instances() -> Vec<SimInstance> {
    let redis30 = SimInstance {
        engine_version: "3.0".into(),
        maxmemory_policy: "volatile-lru".into(),
        ..SimInstance::new(REDIS30, "legacy")
    };
    let lru = SimInstance {
        maxmemory_policy: "allkeys-lru".into(),
        ..SimInstance::new(LRU60, "lru")
    };
    let cluster = SimInstance {
        cache_mode: "cluster".into(),
        shards: 3,
        key_count: 5_000_000,
        ..SimInstance::new(CLUSTER, "big-cluster")
    };
    let stopped = SimInstance {
        status: "RESTARTING".into(),
        ..SimInstance::new(STOPPED, "restarting")
    };
    vec![
        SimInstance::new(HOT_OK, "orders"),
        redis30,
        lru,
        cluster,
        stopped,
    ]
}

fn manual_config() -> SimConfig {
    SimConfig {
        instances: instances(),
        seed: 7,
        clock: SimClock::manual(T0),
        iam: Some(SimIam::example()),
        ..SimConfig::with_defaults()
    }
}

struct Harness {
    sim: Simulator,
    base: String,
    host: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error_code"].as_str().unwrap_or("").to_owned()
    }

    fn record(&self) -> TaskRecord {
        serde_json::from_slice(&self.body).expect("a task record")
    }
}

/// How to sign one request.
struct Signing<'a> {
    ak: &'a str,
    sk: &'a str,
    date: OffsetDateTime,
    /// Headers sent but not signed.
    unsigned: Vec<(&'a str, &'a str)>,
    /// Signed headers whose value is replaced after signing.
    tamper: Option<(&'a str, &'a str)>,
    project_header: bool,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Signing {
            ak: AK,
            sk: SK,
            date: OffsetDateTime::now_utc(),
            unsigned: Vec::new(),
            tamper: None,
            project_header: true,
        }
    }
}

impl Harness {
    async fn start(config: SimConfig) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sim = Simulator::new(config);
        let shutdown = CancellationToken::new();
        let server = {
            let sim = sim.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { sim.serve(listener, shutdown).await })
        };
        Harness {
            sim,
            base: format!("http://{addr}"),
            host: addr.to_string(),
            http: reqwest::Client::new(),
            shutdown,
            server,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let done = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "serve must return after cancel"
        );
    }

    async fn send_signed(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        s: Signing<'_>,
    ) -> Answer {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let date = signer::format_sdk_date(s.date);
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), self.host.clone()),
            ("Content-Type".into(), "application/json".into()),
            ("X-Sdk-Date".into(), date.clone()),
        ];
        if s.project_header {
            headers.push(("X-Project-Id".into(), PROJECT.into()));
        }
        let req = SignableRequest {
            method,
            path,
            query,
            headers: &headers,
            body,
        };
        let authorization = signer::sign(&req, s.ak, s.sk, &date);
        if let Some((name, value)) = s.tamper {
            for h in headers.iter_mut() {
                if h.0.eq_ignore_ascii_case(name) {
                    h.1 = value.to_owned();
                }
            }
        }
        let mut rb = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{}", self.base, path_and_query),
            )
            .header("Authorization", authorization)
            .body(body.to_vec());
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("host") {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        for (k, v) in &s.unsigned {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: &str, path_and_query: &str) -> Answer {
        self.send_signed(method, path_and_query, b"", Signing::default())
            .await
    }

    async fn call_body(&self, method: &str, path_and_query: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send_signed(method, path_and_query, &bytes, Signing::default())
            .await
    }

    fn clock(&self) -> &SimClock {
        self.sim.clock()
    }
}

fn p(rest: &str) -> String {
    format!("/v2/{PROJECT}/instances{rest}")
}

fn seg(a: Analysis, plural: bool) -> &'static str {
    if plural {
        a.tasks_segment()
    } else {
        a.task_segment()
    }
}

fn assert_dcs_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(
        a.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&a.body)
    );
    let v = a.json();
    assert_eq!(v["error_code"], json!(code));
    assert!(v["error_msg"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(v
        .as_object()
        .is_some_and(|o| o.contains_key("error_ext_msg")));
    assert!(a.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn signatures_are_verified_like_the_gateway() {
    let h = Harness::start(manual_config()).await;

    let ok = h.call("GET", &p("")).await;
    assert_eq!(ok.status, 200);
    let rid = ok.headers.get("x-request-id").expect("X-Request-Id");
    assert!(!rid.is_empty());

    // Wrong secret key.
    let bad = h
        .send_signed(
            "GET",
            &p(""),
            b"",
            Signing {
                sk: "not-the-key",
                ..Default::default()
            },
        )
        .await;
    assert_eq!(bad.status, 401);
    let v = bad.json();
    assert_eq!(v["error_code"], json!("APIG.0301"));
    assert_eq!(
        v["error_msg"],
        json!("Incorrect IAM authentication information: verify aksk signature fail")
    );
    assert!(v["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    // Unknown access key.
    let other_ak = h
        .send_signed(
            "GET",
            &p(""),
            b"",
            Signing {
                ak: "SOMEOTHERACCESSKEY00",
                ..Default::default()
            },
        )
        .await;
    assert_eq!(other_ak.status, 401);
    assert_eq!(other_ak.code(), "APIG.0301");

    // The 15-minute window, on the wall clock (the simulated clock stands at 2024).
    let now = OffsetDateTime::now_utc();
    for (offset_min, want) in [(-16, 401), (-14, 200), (14, 200), (16, 401)] {
        let a = h
            .send_signed(
                "GET",
                &p(""),
                b"",
                Signing {
                    date: now + time::Duration::minutes(offset_min),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(a.status, want, "X-Sdk-Date {offset_min} min from now");
    }

    // Headers outside SignedHeaders may change freely; signed ones may not.
    let extra = h
        .send_signed(
            "GET",
            &p(""),
            b"",
            Signing {
                unsigned: vec![
                    ("X-Unsigned-Trace", "anything"),
                    ("User-Agent", "other/1.0"),
                ],
                ..Default::default()
            },
        )
        .await;
    assert_eq!(extra.status, 200);
    let tampered = h
        .send_signed(
            "GET",
            &p(""),
            b"",
            Signing {
                tamper: Some(("Content-Type", "application/json;charset=UTF-8")),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(tampered.status, 401);

    // The query is signed too.
    let date = signer::format_sdk_date(OffsetDateTime::now_utc());
    let headers = vec![
        ("Host".to_owned(), h.host.clone()),
        ("X-Sdk-Date".to_owned(), date.clone()),
    ];
    let path = p("");
    let req = SignableRequest {
        method: "GET",
        path: &path,
        query: "limit=5",
        headers: &headers,
        body: b"",
    };
    let auth = signer::sign(&req, AK, SK, &date);
    let sent = |q: &str| {
        h.http
            .get(format!("{}{}?{q}", h.base, path))
            .header("Authorization", auth.clone())
            .header("X-Sdk-Date", date.clone())
            .send()
    };
    assert_eq!(sent("limit=5").await.expect("send").status(), 200);
    assert_eq!(sent("limit=6").await.expect("send").status(), 401);

    // No credentials at all.
    let none = h.http.get(format!("{}{}", h.base, p(""))).send().await;
    let none = none.expect("send");
    assert_eq!(none.status(), 401);

    // A signed body: changing it after signing fails.
    let body = br#"{"enable_auto_scan":true,"schedule_at":["21:00"]}"#;
    let path = p(&format!("/{HOT_OK}/hotkey/autoscan"));
    let ok = h.send_signed("PUT", &path, body, Signing::default()).await;
    assert_eq!(ok.status, 200);

    h.stop().await;
}

#[tokio::test]
async fn clock_skew_fault_breaks_correct_signatures() {
    let h = Harness::start(manual_config()).await;
    h.sim.set_faults(
        None,
        Faults {
            clock_skew: Duration::from_secs(20 * 60),
            ..Faults::default()
        },
    );
    let a = h.call("GET", &p("")).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(), "APIG.0301");
    // Signing with a date matching the skewed clock passes.
    let a = h
        .send_signed(
            "GET",
            &p(""),
            b"",
            Signing {
                date: OffsetDateTime::now_utc() + time::Duration::minutes(20),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(a.status, 200);
    h.stop().await;
}

#[tokio::test]
async fn iam_tokens_are_issued_accepted_and_expire() {
    let h = Harness::start(manual_config()).await;
    let body = |password: &str| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "simulator-user", "password": password,
            "domain": {"name": "simulator-domain"}}}},
            "scope": {"project": {"name": "cn-north-4"}}}})
    };
    let wrong = h
        .http
        .post(format!("{}/v3/auth/tokens", h.base))
        .body(serde_json::to_vec(&body("nope")).expect("json"))
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("x-subject-token").is_none());

    let resp = h
        .http
        .post(format!("{}/v3/auth/tokens?nocatalog=true", h.base))
        .body(serde_json::to_vec(&body("simulator-password")).expect("json"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 201);
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .expect("X-Subject-Token")
        .to_owned();
    let v: Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    // Issued at the simulated time, valid 24 h.
    assert_eq!(
        v["token"]["expires_at"],
        json!("2024-03-02T20:58:00.000000Z")
    );
    assert_eq!(v["token"]["project"]["id"], json!(PROJECT));

    let with_token = |t: String| {
        h.http
            .get(format!("{}{}", h.base, p("")))
            .header("X-Auth-Token", t)
            .send()
    };
    assert_eq!(with_token(token.clone()).await.expect("send").status(), 200);
    let unknown = with_token("MIIforged".into()).await.expect("send");
    assert_eq!(unknown.status(), 401);

    assert!(h.clock().advance(Duration::from_secs(24 * 3600)));
    let expired = with_token(token).await.expect("send");
    assert_eq!(expired.status(), 401);
    let v: Value = serde_json::from_slice(&expired.bytes().await.expect("body")).expect("json");
    assert_eq!(v["error_code"], json!("APIG.0301"));
    assert!(v["error_msg"]
        .as_str()
        .is_some_and(|m| m.contains("token expires")));
    h.stop().await;
}

#[tokio::test]
async fn routing_and_documented_error_codes() {
    let h = Harness::start(manual_config()).await;
    assert_dcs_error(&h.call("GET", &p("/x/nothing-here")).await, 404, "DCS.4001");
    assert_dcs_error(
        &h.call("GET", &format!("/v2/{PROJECT}/clusters")).await,
        404,
        "DCS.4001",
    );
    assert_dcs_error(
        &h.call("POST", &p(&format!("/{HOT_OK}/hotkey-tasks"))).await,
        405,
        "DCS.5001",
    );
    assert_dcs_error(
        &h.call("GET", &p(&format!("/{HOT_OK}/bigkey-task"))).await,
        405,
        "DCS.5001",
    );
    let ghost = "99999999-9999-4999-8999-999999999999";
    for path in [
        format!("/{ghost}"),
        format!("/{ghost}/hotkey-tasks"),
        format!("/{ghost}/bigkey/autoscan"),
    ] {
        assert_dcs_error(&h.call("GET", &p(&path)).await, 404, "DCS.3022");
    }
    assert_dcs_error(
        &h.call("POST", &p(&format!("/{ghost}/bigkey-task"))).await,
        404,
        "DCS.3022",
    );
    for a in Analysis::ALL {
        let code = match a {
            Analysis::Hotkey => "DCS.4941",
            Analysis::Bigkey => "DCS.4942",
            Analysis::Keyfamily | Analysis::Hotslot => "DCS.4232",
        };
        let path = p(&format!("/{HOT_OK}/{}/no-such-task", seg(a, false)));
        assert_dcs_error(&h.call("GET", &path).await, 400, code);
        assert_dcs_error(&h.call("DELETE", &path).await, 400, code);
    }
    // Another project in the path: 401 DCS.1004 when X-Project-Id names ours, else 403.
    let other = "/v2/ffffffffffffffffffffffffffffffff/instances";
    assert_dcs_error(&h.call("GET", other).await, 401, "DCS.1004");
    let a = h
        .send_signed(
            "GET",
            other,
            b"",
            Signing {
                project_header: false,
                ..Default::default()
            },
        )
        .await;
    assert_dcs_error(&a, 403, "DCS.2003");
    // Tasks on an instance that is not RUNNING.
    assert_dcs_error(
        &h.call("POST", &p(&format!("/{STOPPED}/bigkey-task"))).await,
        400,
        "DCS.4049",
    );
    // Operations are counted once routed (the unknown-instance ShowInstance above), not when
    // refused earlier (the other project's ListInstances).
    assert_eq!(h.sim.operation_count("ShowInstance"), 1);
    assert_eq!(h.sim.operation_count("ListInstances"), 0);
    assert!(h.sim.request_count() >= 14);
    h.stop().await;
}

#[tokio::test]
async fn hot_key_analysis_is_refused_where_documented() {
    let h = Harness::start(manual_config()).await;
    for id in [REDIS30, LRU60] {
        let a = h.call("POST", &p(&format!("/{id}/hotkey-task"))).await;
        assert_dcs_error(&a, 400, "DCS.4922");
        assert_eq!(
            a.json()["error_msg"],
            json!("Does not support hotkey analyze.")
        );
        let a = h
            .call_body(
                "PUT",
                &p(&format!("/{id}/hotkey/autoscan")),
                &json!({"enable_auto_scan": true, "schedule_at": ["21:00"]}),
            )
            .await;
        assert_dcs_error(&a, 400, "DCS.4922");
        // Big key analysis works on every instance.
        assert_eq!(
            h.call("POST", &p(&format!("/{id}/bigkey-task")))
                .await
                .status,
            200
        );
        assert_eq!(h.sim.created_count(id, Analysis::Hotkey), 0);
    }
    h.stop().await;
}

#[tokio::test]
async fn second_task_while_one_is_active_is_refused() {
    let h = Harness::start(manual_config()).await;
    for a in Analysis::ALL {
        let path = p(&format!("/{HOT_OK}/{}", seg(a, false)));
        let first = h.call("POST", &path).await;
        assert_eq!(first.status, 200);
        let second = h.call("POST", &path).await;
        assert_dcs_error(&second, 400, "DCS.4918");
        // Still refused while running (waiting is at most 3 s)...
        h.clock().advance(Duration::from_secs(4));
        assert_dcs_error(&h.call("POST", &path).await, 400, "DCS.4918");
        // ... and accepted once the first finished (runs are well under an hour).
        h.clock().advance(Duration::from_secs(3600));
        assert_eq!(h.call("POST", &path).await.status, 200);
        assert_eq!(h.sim.created_count(HOT_OK, a), 2);
    }
    let big = h.call("POST", &p(&format!("/{CLUSTER}/bigkey-task"))).await;
    assert_eq!(big.status, 200);
    let again = h.call("POST", &p(&format!("/{CLUSTER}/bigkey-task"))).await;
    assert_eq!(
        again.json()["error_msg"],
        json!("Instance bigkey analyze is running.")
    );
    h.stop().await;
}

#[tokio::test]
async fn task_lifecycle_follows_the_manual_clock() {
    let h = Harness::start(manual_config()).await;
    for a in Analysis::ALL {
        let created = h
            .call("POST", &p(&format!("/{HOT_OK}/{}", seg(a, false))))
            .await;
        assert_eq!(created.status, 200);
        let rec = created.record();
        assert_eq!(rec.status, TaskStatus::Waiting);
        assert_eq!(rec.num, Some(0));
        assert_eq!(rec.keys, None);
        assert_eq!(rec.started_at, None);
        assert_eq!(rec.instance_id.as_deref(), Some(HOT_OK));
        let created_at = h.clock().now();
        assert_eq!(
            rec.created_at.as_deref(),
            Some(dcs_key_exporter::dcs::timestamp::format(created_at).as_str())
        );
        // The raw JSON of a waiting task has no started_at, finished_at or keys.
        let raw = created.json();
        for absent in ["started_at", "finished_at", "keys"] {
            assert!(raw.get(absent).is_none(), "{absent} present while waiting");
        }

        let show_path = p(&format!("/{HOT_OK}/{}/{}", seg(a, false), rec.id));
        // Waiting lasts 1–3 s; running lasts (5 s + 100 000 keys / 20 000) × 0.8–1.2 × (1 or 1.5).
        h.clock().advance(Duration::from_millis(3100));
        let running = h.call("GET", &show_path).await.record();
        assert_eq!(running.status, TaskStatus::Running);
        assert!(running.started_at.is_some());
        assert_eq!(running.finished_at, None);

        h.clock().advance(Duration::from_secs(30));
        let done = h.call("GET", &show_path).await.record();
        assert_eq!(done.status, TaskStatus::Success);
        let finished = dcs_key_exporter::dcs::timestamp::parse(
            done.finished_at.as_deref().expect("finished_at"),
        )
        .expect("timestamp");
        let finished = OffsetDateTime::from_unix_timestamp_nanos((finished * 1e9).round() as i128)
            .expect("time");
        let expected = h.sim.expected_result(HOT_OK, a, finished);
        assert!(!expected.is_empty());
        assert_eq!(done.keys.as_ref(), Some(&expected));
        assert_eq!(done.num, Some(expected.len() as i64));
        // Ground truth agrees, and later reads return the same result.
        let truth = h.sim.tasks(HOT_OK, a);
        assert_eq!(truth[0].id, rec.id);
        assert_eq!(truth[0].keys.as_ref(), Some(&expected));
        h.clock().advance(Duration::from_secs(3600));
        assert_eq!(h.call("GET", &show_path).await.record(), done);
    }
    h.stop().await;
}

#[tokio::test]
async fn lists_page_filter_and_count() {
    let h = Harness::start(manual_config()).await;
    let mut ids = Vec::new();
    for _ in 0..15 {
        let r = h.call("POST", &p(&format!("/{HOT_OK}/bigkey-task"))).await;
        ids.push(r.record().id);
        h.clock().advance(Duration::from_secs(600));
    }
    // One more, left waiting.
    let active = h
        .call("POST", &p(&format!("/{HOT_OK}/bigkey-task")))
        .await
        .record()
        .id;
    ids.push(active.clone());
    ids.reverse(); // newest first

    let hr = &h;
    let list = |q: &str| {
        let path = p(&format!("/{HOT_OK}/bigkey-tasks{q}"));
        async move { hr.call("GET", &path).await }
    };
    let all = list("").await.json();
    assert_eq!(all["count"], json!(16));
    assert_eq!(all["instance_id"], json!(HOT_OK));
    let page1: Vec<String> = all["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(page1, ids[..10].to_vec(), "default limit 10, newest first");
    let page2 = list("?offset=10&limit=10").await.json();
    assert_eq!(page2["count"], json!(16));
    assert_eq!(page2["records"].as_array().map(Vec::len), Some(6));
    let beyond = list("?offset=100").await.json();
    assert_eq!(beyond["records"], json!([]));

    let success = list("?status=success&limit=1000").await.json();
    assert_eq!(success["count"], json!(15));
    let waiting = list("?status=waiting").await.json();
    assert_eq!(waiting["count"], json!(1));
    assert_eq!(waiting["records"][0]["id"], json!(active));
    assert_eq!(waiting["records"][0]["status"], json!("waiting"));
    assert_eq!(list("?status=failed").await.json()["count"], json!(0));

    for q in ["?limit=0", "?limit=1001", "?limit=x"] {
        let a = list(q).await;
        assert_dcs_error(&a, 400, "DCS.4800");
        assert_eq!(
            a.json()["error_msg"],
            json!("Invalid limit in the request.")
        );
    }
    assert_dcs_error(&list("?offset=-1").await, 400, "DCS.4800");
    assert_dcs_error(&list("?status=paused").await, 400, "DCS.4800");

    // ListInstances pages too, with instance_num the total.
    let inst = h.call("GET", &p("?offset=1&limit=2")).await.json();
    assert_eq!(inst["instance_num"], json!(5));
    assert_eq!(inst["instances"][0]["instance_id"], json!(REDIS30));
    assert_eq!(inst["instances"].as_array().map(Vec::len), Some(2));
    let by_name = h.call("GET", &p("?name=big-cl")).await.json();
    assert_eq!(by_name["instance_num"], json!(1));
    assert_eq!(by_name["instances"][0]["instance_id"], json!(CLUSTER));
    h.stop().await;
}

#[tokio::test]
async fn at_most_100_records_per_instance_and_kind() {
    let h = Harness::start(manual_config()).await;
    let mut ids = Vec::new();
    for _ in 0..MAX_RECORDS + 5 {
        let r = h.call("POST", &p(&format!("/{HOT_OK}/hotkey-task"))).await;
        assert_eq!(r.status, 200);
        ids.push(r.record().id);
        h.clock().advance(Duration::from_secs(120));
    }
    assert_eq!(MAX_RECORDS, 100);
    let all = h
        .call("GET", &p(&format!("/{HOT_OK}/hotkey-tasks?limit=1000")))
        .await
        .json();
    assert_eq!(all["count"], json!(100));
    let listed: HashSet<String> = all["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect();
    for old in &ids[..5] {
        assert!(!listed.contains(old));
        let a = h
            .call("GET", &p(&format!("/{HOT_OK}/hotkey-task/{old}")))
            .await;
        assert_dcs_error(&a, 400, "DCS.4941");
    }
    assert!(ids[5..].iter().all(|id| listed.contains(id)));
    // The other kind is unaffected.
    assert!(h.sim.tasks(HOT_OK, Analysis::Bigkey).is_empty());
    assert_eq!(h.sim.created_count(HOT_OK, Analysis::Hotkey), 105);
    h.stop().await;
}

#[tokio::test]
async fn delete_rules() {
    let h = Harness::start(manual_config()).await;
    let rec = h
        .call("POST", &p(&format!("/{HOT_OK}/hotkey-task")))
        .await
        .record();
    let path = p(&format!("/{HOT_OK}/hotkey-task/{}", rec.id));
    assert_dcs_error(&h.call("DELETE", &path).await, 400, "DCS.4957");
    h.clock().advance(Duration::from_secs(3600));
    let deleted = h.call("DELETE", &path).await;
    assert_eq!(deleted.status, 200);
    let deleted = deleted.record();
    assert_eq!(deleted.id, rec.id);
    assert_eq!(deleted.status, TaskStatus::Success);
    assert!(deleted.keys.is_some_and(|k| !k.is_empty()));
    assert_dcs_error(&h.call("DELETE", &path).await, 400, "DCS.4941");
    assert!(h.sim.tasks(HOT_OK, Analysis::Hotkey).is_empty());
    h.stop().await;
}

fn check_big_key_caps(keys: &[KeyRecord], cluster: bool) {
    assert!(keys.len() <= 100);
    let mut per_type: HashMap<String, usize> = HashMap::new();
    for k in keys {
        let t = k
            .key_type
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default();
        *per_type.entry(t.clone()).or_default() += 1;
        let (unit, threshold) = if t == "string" {
            ("byte", 10 * 1024)
        } else {
            ("count", 5000)
        };
        assert_eq!(k.unit.as_ref().map(|u| u.as_str()), Some(unit), "{t}");
        assert!(k.size.unwrap_or(0) > threshold);
        assert_eq!(k.freq, None);
        assert_eq!(k.shard.is_some(), cluster);
        if cluster {
            assert_eq!(k.db, Some(0));
        }
    }
    assert!(per_type.values().all(|&n| n <= 20), "{per_type:?}");
    assert!(per_type
        .keys()
        .all(|t| ["string", "list", "set", "zset", "hash"].contains(&t.as_str())));
}

#[tokio::test]
async fn results_are_deterministic_and_respect_caps() {
    let a = Harness::start(manual_config()).await;
    let b = Harness::start(manual_config()).await;
    let at = T0 + time::Duration::hours(3);
    for id in [HOT_OK, CLUSTER] {
        for an in Analysis::ALL {
            let ra = a.sim.expected_result(id, an, at);
            assert_eq!(ra, b.sim.expected_result(id, an, at), "{id} {an}");
            assert!(!ra.is_empty());
        }
    }
    // A different seed gives a different keyspace.
    let other = Simulator::new(SimConfig {
        seed: 8,
        ..manual_config()
    });
    assert_ne!(
        other.expected_result(CLUSTER, Analysis::Bigkey, at),
        a.sim.expected_result(CLUSTER, Analysis::Bigkey, at)
    );

    let big = a.sim.expected_result(CLUSTER, Analysis::Bigkey, at);
    check_big_key_caps(&big, true);
    check_big_key_caps(&a.sim.expected_result(HOT_OK, Analysis::Bigkey, at), false);
    // Cluster shards are ip:port.
    assert!(big.iter().all(|k| k
        .shard
        .as_deref()
        .is_some_and(|s| s.rsplit_once(':').is_some_and(|(_, port)| port == "6379"))));

    let hot = a.sim.expected_result(CLUSTER, Analysis::Hotkey, at);
    assert!(hot.len() <= 100);
    assert!(hot.windows(2).all(|w| w[0].freq >= w[1].freq));
    assert!(hot
        .iter()
        .all(|k| (0..=255).contains(&k.freq.unwrap_or(-1))));
    assert!(a
        .sim
        .expected_result(REDIS30, Analysis::Hotkey, at)
        .is_empty());

    // Same seed, same clock, same sequence of calls: the same answers over HTTP too.
    for h in [&a, &b] {
        h.call("POST", &p(&format!("/{CLUSTER}/bigkey-task"))).await;
        h.clock().advance(Duration::from_secs(3 * 3600));
    }
    let ta = a.sim.tasks(CLUSTER, Analysis::Bigkey);
    let tb = b.sim.tasks(CLUSTER, Analysis::Bigkey);
    assert_eq!(ta, tb);
    check_big_key_caps(ta[0].keys.as_deref().unwrap_or(&[]), true);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn autoscan_config_and_schedule() {
    let h = Harness::start(manual_config()).await;
    let path = p(&format!("/{HOT_OK}/hotkey/autoscan"));
    let shown = h.call("GET", &path).await.json();
    assert_eq!(shown["enable_auto_scan"], json!(false));
    assert_eq!(shown["instance_id"], json!(HOT_OK));
    let updated = h
        .call_body(
            "PUT",
            &path,
            &json!({"enable_auto_scan": true, "schedule_at": ["21:00"]}),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json()["schedule_at"], json!(["21:00"]));
    assert_eq!(
        updated.json()["updated_at"],
        json!("2024-03-01T20:58:00.000Z")
    );
    assert_eq!(
        h.call("GET", &path).await.json()["enable_auto_scan"],
        json!(true)
    );
    for bad in [
        json!({"enable_auto_scan": true, "schedule_at": ["24:00"]}),
        json!({"enable_auto_scan": true}),
        json!({"schedule_at": ["21:00"]}),
    ] {
        assert_dcs_error(&h.call_body("PUT", &path, &bad).await, 400, "DCS.4800");
    }

    // Nothing before 21:00; one auto task dated 21:00 once the clock passes it.
    assert!(h.sim.tasks(HOT_OK, Analysis::Hotkey).is_empty());
    h.clock().advance(Duration::from_secs(3 * 60));
    let list = h
        .call("GET", &p(&format!("/{HOT_OK}/hotkey-tasks")))
        .await
        .json();
    assert_eq!(list["count"], json!(1));
    assert_eq!(list["records"][0]["scan_type"], json!("auto"));
    assert_eq!(
        list["records"][0]["created_at"],
        json!("2024-03-01T21:00:00.000Z")
    );
    // Two days later: two more runs (one per day), none manual.
    h.clock().advance(Duration::from_secs(2 * 24 * 3600));
    let truth = h.sim.tasks(HOT_OK, Analysis::Hotkey);
    assert_eq!(truth.len(), 3);
    assert!(truth
        .iter()
        .all(|t| t.scan_type.as_ref().map(|s| s.as_str()) == Some("auto")));
    assert_eq!(
        truth[0].created_at.as_deref(),
        Some("2024-03-03T21:00:00.000Z")
    );
    assert_eq!(h.sim.created_count(HOT_OK, Analysis::Hotkey), 0);

    let now_task = h.sim.run_autoscan_now(CLUSTER, Analysis::Bigkey);
    assert_eq!(
        now_task.scan_type.as_ref().map(|s| s.as_str()),
        Some("auto")
    );
    let listed = h
        .call("GET", &p(&format!("/{CLUSTER}/bigkey-tasks")))
        .await
        .json();
    assert_eq!(listed["records"][0]["id"], json!(now_task.id));
    h.stop().await;
}

#[tokio::test]
async fn task_faults_stuck_and_failed() {
    let h = Harness::start(manual_config()).await;
    h.sim.set_faults(
        Some(HOT_OK),
        Faults {
            stuck_tasks: true,
            ..Faults::default()
        },
    );
    let stuck = h
        .call("POST", &p(&format!("/{HOT_OK}/hotkey-task")))
        .await
        .record();
    h.sim.set_faults(
        Some(CLUSTER),
        Faults {
            fail_tasks: 1.0,
            ..Faults::default()
        },
    );
    let failing = h
        .call("POST", &p(&format!("/{CLUSTER}/bigkey-task")))
        .await
        .record();
    h.clock().advance(Duration::from_secs(2 * 24 * 3600));
    let s = h
        .call("GET", &p(&format!("/{HOT_OK}/hotkey-task/{}", stuck.id)))
        .await
        .record();
    assert_eq!(s.status, TaskStatus::Running);
    let f = h
        .call("GET", &p(&format!("/{CLUSTER}/bigkey-task/{}", failing.id)))
        .await
        .record();
    assert_eq!(f.status, TaskStatus::Failed);
    assert!(f.finished_at.is_some());
    assert_eq!(f.keys, None);
    assert_eq!(f.num, Some(0));
    h.stop().await;
}

#[tokio::test]
async fn request_faults() {
    let h = Harness::start(manual_config()).await;
    let show = |id: &str| p(&format!("/{id}"));

    h.sim.set_faults(
        None,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    for _ in 0..5 {
        assert_dcs_error(&h.call("GET", &show(HOT_OK)).await, 500, "DCS.5000");
    }
    h.sim.set_faults(None, Faults::default());

    h.sim.set_faults(
        Some(CLUSTER),
        Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        },
    );
    let t = h.call("GET", &show(CLUSTER)).await;
    assert_eq!(t.status, 429);
    assert_eq!(t.code(), "APIG.0308");
    // Only that instance is throttled.
    assert_eq!(h.call("GET", &show(HOT_OK)).await.status, 200);
    h.sim.set_faults(Some(CLUSTER), Faults::default());

    h.sim.set_faults(
        None,
        Faults {
            malformed_body: true,
            ..Faults::default()
        },
    );
    let m = h.call("GET", &show(HOT_OK)).await;
    assert_eq!(m.status, 200);
    assert!(serde_json::from_slice::<Value>(&m.body).is_err());
    h.sim.set_faults(None, Faults::default());

    h.sim.set_faults(
        None,
        Faults {
            truncated_body: true,
            ..Faults::default()
        },
    );
    // Read the body by hand: the harness would panic on the short read.
    let date = signer::format_sdk_date(OffsetDateTime::now_utc());
    let headers = vec![
        ("Host".to_owned(), h.host.clone()),
        ("X-Sdk-Date".to_owned(), date.clone()),
    ];
    let path = show(HOT_OK);
    let req = SignableRequest {
        method: "GET",
        path: &path,
        query: "",
        headers: &headers,
        body: b"",
    };
    let auth = signer::sign(&req, AK, SK, &date);
    let resp = h
        .http
        .get(format!("{}{}", h.base, path))
        .header("Authorization", auth)
        .header("X-Sdk-Date", date)
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body must end early");
    h.sim.set_faults(None, Faults::default());

    h.sim.set_faults(
        None,
        Faults {
            huge_body_bytes: Some(3 * 1024 * 1024),
            ..Faults::default()
        },
    );
    let big = h.call("GET", &show(HOT_OK)).await;
    assert_eq!(big.status, 200);
    assert!(big.body.len() >= 3 * 1024 * 1024);
    let v = big.json();
    assert_eq!(v["instance_id"], json!(HOT_OK), "padding keeps valid JSON");
    h.sim.set_faults(None, Faults::default());
    assert!(h.call("GET", &show(HOT_OK)).await.body.len() < 10_000);

    // Latency: the answer is held back (a short real delay: the server runs on real sockets).
    h.sim.set_faults(
        Some(HOT_OK),
        Faults {
            latency: Duration::from_millis(300),
            ..Faults::default()
        },
    );
    let started = tokio::time::Instant::now();
    assert_eq!(h.call("GET", &show(HOT_OK)).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    h.sim.set_faults(Some(HOT_OK), Faults::default());
    h.stop().await;
}

#[tokio::test]
async fn the_crate_client_works_against_the_simulator() {
    let h = Harness::start(SimConfig {
        clock: SimClock::real(),
        time_scale: 0.001,
        ..manual_config()
    })
    .await;
    let endpoint = url::Url::parse(&h.base).expect("url");
    let config = ClientConfig::new(
        endpoint,
        PROJECT,
        Auth::AkSk {
            access_key: AK.into(),
            secret_key: Secret::new(SK),
            security_token: None,
        },
    );
    let client = DcsClient::new(config, None).expect("client");
    let list = client
        .list_instances(&Default::default())
        .await
        .expect("ListInstances");
    assert_eq!(list.instance_num, Some(5));
    let created = client
        .create_task(HOT_OK, Analysis::Hotkey)
        .await
        .expect("create");
    let tasks = client
        .list_tasks(HOT_OK, Analysis::Hotkey, &TaskListQuery::default())
        .await
        .expect("list");
    assert_eq!(tasks.records[0].id, created.id);
    let err = client
        .create_task(REDIS30, Analysis::Hotkey)
        .await
        .expect_err("DCS.4922");
    assert!(err.is_unsupported());
    let err = client.show_instance("nope").await.expect_err("DCS.3022");
    assert!(err.is_not_found());
    h.stop().await;
}
