//! Replica, cluster and TLS on every server of the list: big keys read on replicas and hot keys
//! on masters (told apart by each server's own `INFO commandstats`), cluster shards labelled
//! with their masters as the masters themselves say, and a TLS port with a private CA and a
//! client certificate where the server's build has TLS.

use std::collections::BTreeMap;

use super::{
    calls, dataset, expected_top, keys_of, load, plant, start, wait_failure, wait_success, DEADLINE,
};
use crate::common::redis_server::{start_cluster, Server};
use crate::common::servers::{assert_ran_on_each_engine, on_each, Outcome};
use crate::common::{wait_for, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_are_read_on_the_replica_and_hot_keys_on_the_master() {
    on_each("matrix_replica", |bin| async move {
        let lfu = ["--maxmemory-policy", "allkeys-lfu"];
        let master = Server::start_bin(bin, &lfu, Vec::new(), false).await;
        let port = master.port.to_string();
        let replica_args = [lfu[0], lfu[1], "--replicaof", "127.0.0.1", &port];
        let replica = Server::start_bin(bin, &replica_args, Vec::new(), false).await;
        let keys = dataset();
        plant(&master, &keys);
        let dbsize = |s: &Server, db: &str| s.cli(&["-n", db, "DBSIZE"]).trim().to_owned();
        wait_for("replica in sync", DEADLINE, || async {
            (replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
                && master
                    .cli(&["INFO", "replication"])
                    .contains("state=online")
                && dbsize(&replica, "0") == dbsize(&master, "0")
                && dbsize(&replica, "3") == dbsize(&master, "3"))
            .then_some(())
        })
        .await;
        let dir = TempDir::new("matrix");
        let id = "primary";
        let (e, _stop) = start(
            &format!(
                "redis:\n  - id: {id}\n    address: {}\n    analysis: {{bigkey: {{top_n: 3}}}}\nscheduler: {{start_jitter: 0s}}\n",
                master.url()
            ),
            &dir,
        )
        .await;
        let m = wait_success(&e, id, "bigkey").await;
        wait_success(&e, id, "hotkey").await;
        assert_eq!(
            keys_of(&m, "dcs_bigkey_elements", id),
            expected_top(&keys, 3, false)
        );
        // dcs_instance_info says what the target is: the engine's own version (Valkey also
        // reports a `redis_version` that is not its own).
        let version = master
            .info_field("server", "valkey_version")
            .or_else(|| master.info_field("server", "redis_version"))
            .unwrap();
        assert_eq!(
            m.get(
                "dcs_instance_info",
                &[
                    ("instance_id", id),
                    ("engine_version", &version),
                    ("spec_code", "master-replica"),
                    ("status", "")
                ]
            ),
            Some(1.0)
        );
        e.stop().await;
        assert!(calls(&replica, "memory|usage") > 0, "big keys read on the replica");
        assert_eq!(calls(&master, "memory|usage"), 0, "and not on the master");
        assert!(calls(&master, "object|freq") > 0, "hot keys read on the master");
        assert_eq!(calls(&replica, "object|freq"), 0);
        // What check-config --online reports for the same target (it asks each node's
        // permissions with one harmless command each).
        let target = &load(&format!("redis:\n  - address: {}\n", master.url()), &dir).redis[0];
        let report = dcs_key_exporter::native::probe::check_online(target)
            .await
            .unwrap();
        assert_eq!(
            (
                report.role.as_str(),
                report.cluster,
                report.eviction_policy.as_str()
            ),
            ("master", false, "allkeys-lfu")
        );
        assert!(report.hotkey_possible());
        assert_eq!(
            report.shards,
            [format!(
                "127.0.0.1:{} (replicas: 127.0.0.1:{})",
                master.port, replica.port
            )]
        );
        assert!(report.version.starts_with("redis ") || report.version.starts_with("valkey "));
        Outcome::Ran
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_shards_are_labelled_with_their_masters() {
    on_each("matrix_cluster", |bin| async move {
        let nodes = start_cluster(bin, 6, 1, &["--maxmemory-policy", "allkeys-lfu"]).await;
        for i in 0..12 {
            let key = format!("big:{i}");
            let mut rpush = vec!["-c", "RPUSH", key.as_str()];
            let members: Vec<String> = (0..(100 + i * 10)).map(|m| m.to_string()).collect();
            rpush.extend(members.iter().map(String::as_str));
            nodes[0].cli(&rpush);
        }
        // Which master holds each key, from the masters themselves.
        let role = |n: &Server| n.info_field("replication", "role").unwrap_or_default();
        let masters: Vec<&Server> = nodes.iter().filter(|n| role(n) == "master").collect();
        let replicas: Vec<&Server> = nodes.iter().filter(|n| role(n) == "slave").collect();
        assert_eq!((masters.len(), replicas.len()), (3, 3));
        let mut owner = BTreeMap::new();
        for m in &masters {
            for k in m.cli(&["--scan"]).lines() {
                owner.insert(k.to_owned(), format!("127.0.0.1:{}", m.port));
            }
        }
        assert_eq!(owner.len(), 12);
        wait_for("replicas in sync and known", DEADLINE, || async {
            let held: usize = replicas
                .iter()
                .map(|r| r.cli(&["DBSIZE"]).trim().parse::<usize>().unwrap_or(0))
                .sum();
            let known = nodes[4]
                .cli(&["CLUSTER", "NODES"])
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.len() > 7 && f[2].split(',').any(|x| x == "slave") && f[7] == "connected"
                })
                .count();
            (held == 12 && known == 3).then_some(())
        })
        .await;
        let dir = TempDir::new("matrix");
        let id = "cluster";
        let (e, _stop) = start(
            &format!(
                "redis:\n  - id: {id}\n    address: redis://127.0.0.1:{}\n    analysis: {{bigkey: {{top_n: 20}}}}\nscheduler: {{start_jitter: 0s}}\n",
                nodes[4].port
            ),
            &dir,
        )
        .await;
        let m = wait_success(&e, id, "bigkey").await;
        let got: BTreeMap<String, (String, f64)> = m
            .family("dcs_bigkey_elements")
            .into_iter()
            .map(|s| {
                let shard = s.labels["shard"].clone();
                (s.labels["key"].clone(), (shard, s.value))
            })
            .collect();
        let want: BTreeMap<String, (String, f64)> = (0..12)
            .map(|i| {
                let k = format!("big:{i}");
                let shard = owner[&k].clone();
                (k, (shard, (100 + i * 10) as f64))
            })
            .collect();
        assert_eq!(got, want);
        let m = wait_success(&e, id, "hotkey").await;
        let hot = m.family("dcs_hotkey_frequency");
        assert!(!hot.is_empty(), "hot keys found");
        for s in hot {
            assert_eq!(s.labels["shard"], owner[&s.labels["key"]], "hot key shard");
        }
        e.stop().await;
        for r in &replicas {
            assert!(calls(r, "memory|usage") > 0, "each shard read on its replica");
        }
        for m in &masters {
            assert_eq!(calls(m, "memory|usage"), 0);
        }
        Outcome::Ran
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test ca");
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let dir = TempDir::new("matrix-tls");
    // The server's certificate names only redis.internal, not the address connected to.
    let (cert, key) = leaf("redis.internal");
    let (client_cert, client_key) = leaf("exporter");
    for (name, text) in [
        ("ca.crt", ca.pem()),
        ("server.crt", cert),
        ("server.key", key),
        ("client.crt", client_cert),
        ("client.key", client_key),
    ] {
        dir.write(name, &text);
    }
    let dir = &dir;
    let outcomes = on_each("matrix_tls", |bin| async move {
        let p = |n: &str| dir.path(n).display().to_string();
        let cli: Vec<String> = ["--tls", "--cacert", &p("ca.crt")]
            .into_iter()
            .chain(["--cert", &p("client.crt"), "--key", &p("client.key")])
            .map(str::to_owned)
            .collect();
        let args = [
            "--tls-cert-file",
            &p("server.crt"),
            "--tls-key-file",
            &p("server.key"),
            "--tls-ca-cert-file",
            &p("ca.crt"),
            "--tls-auth-clients",
            "yes",
        ];
        let server = match Server::try_start_bin(bin, &args, cli, true).await {
            Ok(s) => s,
            Err(e) if e.lacks_tls() => {
                return Outcome::NotApplicable("this build has no TLS".into());
            }
            Err(e) => panic!("{e}"),
        };
        // Strings of known sizes, written over TLS by redis-cli.
        for (key, size) in [("tls:big", 5000), ("tls:mid", 3000), ("tls:small", 100)] {
            server.cli(&["SET", key, &"x".repeat(size)]);
        }
        let id = format!("rediss://127.0.0.1:{}", server.port);
        let yaml = |server_name: &str| {
            format!(
                "redis:\n  - address: {id}\n    tls: {{ca_file: ca.crt, cert_file: client.crt, key_file: client.key{server_name}}}\n    analysis: {{hotkey: {{mode: off}}, bigkey: {{top_n: 2}}}}\nscheduler: {{start_jitter: 0s}}\n"
            )
        };
        let (e, stop) = start(&yaml(", server_name: redis.internal"), dir).await;
        let m = wait_success(&e, &id, "bigkey").await;
        let strings: Vec<(String, f64)> = keys_of(&m, "dcs_bigkey_size_bytes", &id)
            .into_iter()
            .map(|(k, _, _, v)| (k, v))
            .collect();
        assert_eq!(
            strings,
            [("tls:big".to_owned(), 5000.0), ("tls:mid".to_owned(), 3000.0)]
        );
        e.stop().await;
        drop(stop);
        // The server's certificate names only redis.internal: without server_name it does not
        // match 127.0.0.1, and the connection is refused.
        let (e, _stop) = start(&yaml(""), dir).await;
        wait_failure(&e, &id, "bigkey", "connection").await;
        e.stop().await;
        Outcome::Ran
    })
    .await;
    if let Some(o) = outcomes {
        assert_ran_on_each_engine("matrix_tls", &o);
    }
}
