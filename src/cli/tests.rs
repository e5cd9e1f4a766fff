//! The command line checked without a process: flags into commands, usage errors, help.

use super::*;

pub(super) fn command(args: &[&str]) -> Result<Command, UsageError> {
    let mut all = vec!["dcs-key-exporter"];
    all.extend_from_slice(args);
    Args::try_parse_from(all)
        .expect("clap accepts the flags")
        .into_command(Some("exporter-2"))
}

pub(super) fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dcs-cli-{tag}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn listen(args: &[&str]) -> SocketAddr {
    match command(args) {
        Ok(Command::Serve(o)) => o.listen,
        Ok(Command::Simulate { listen, .. }) => listen,
        other => panic!("{args:?} runs neither the exporter nor simulate: {other:?}"),
    }
}

#[test]
fn simulate_and_the_exporter_default_to_different_ports() {
    assert_eq!(listen(&["--demo"]).port(), 9797);
    assert_eq!(listen(&["simulate"]).port(), 9798);
    // An explicit address wins, before or after the subcommand.
    assert_eq!(
        listen(&["simulate", "--web.listen-address=127.0.0.1:0"]),
        "127.0.0.1:0".parse().expect("addr")
    );
    assert_eq!(
        listen(&["--web.listen-address=127.0.0.1:0", "simulate"]),
        "127.0.0.1:0".parse().expect("addr")
    );
    assert_eq!(
        listen(&["--demo", "--web.listen-address=:1234"]).port(),
        1234
    );
}

#[test]
fn serve_flags_become_checked_options() {
    let Ok(Command::Serve(o)) = command(&[
        "--config.file=c.yaml",
        "--web.listen-address=127.0.0.1:0",
        "--shard.index=from-hostname",
        "--shard.count=3",
    ]) else {
        panic!("serve");
    };
    assert_eq!(o.source, Source::File("c.yaml".into()));
    assert_eq!(o.listen, "127.0.0.1:0".parse().expect("addr"));
    assert_eq!(o.fleet.shard, Shard::new(2, 3).expect("shard"));
    assert_eq!(
        (o.telemetry_path.as_str(), o.namespace.as_str()),
        ("/metrics", "dcs")
    );
    let Ok(Command::Serve(o)) = command(&["--demo", "--web.listen-address=:0"]) else {
        panic!("demo");
    };
    assert_eq!(o.source, Source::Demo);
    assert_eq!(o.listen, "0.0.0.0:0".parse().expect("addr"));
    assert_eq!(o.max_connections, 512, "Prometheus' own default");
    let Ok(Command::Serve(o)) = command(&["--demo", "--web.max-connections=3"]) else {
        panic!("demo");
    };
    assert_eq!(o.max_connections, 3);
}

#[test]
fn a_connection_limit_of_zero_is_refused() {
    let e = Args::try_parse_from(["dcs-key-exporter", "--demo", "--web.max-connections=0"])
        .expect_err("refused")
        .to_string();
    assert!(e.contains("--web.max-connections"), "{e}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let cases: [(&[&str], &str); 8] = [
        (
            &[],
            "no config: pass --config.file=PATH, or --redis.addr=HOST:PORT to scan a Redis \
                 or Valkey server, or try --demo",
        ),
        (
            &["--demo", "--web.listen-address=9797"],
            "\"9797\" is not HOST:PORT",
        ),
        (
            &["--demo", "--metrics.namespace=9lives"],
            "\"9lives\" is not a valid",
        ),
        (
            &["--demo", "--web.telemetry-path=metrics"],
            "must start with '/'",
        ),
        (&["--demo", "--shard.index=3", "--shard.count=3"], "shard"),
        (
            &["check-config"],
            "check-config needs --config.file=PATH or --redis.addr=URL",
        ),
        // A flag that would be silently ignored is refused instead.
        (
            &["--demo", "--config.file=c.yaml"],
            "--demo runs its own simulator and config",
        ),
        (
            &["simulate", "--config.file=c.yaml"],
            "simulate serves its own instances and reads no config",
        ),
    ];
    for (args, want) in cases {
        let e = command(args).expect_err("refused").to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn redis_addr_runs_without_a_config_file() {
    let Ok(Command::Serve(o)) = command(&[
        "--redis.addr=127.0.0.1:6379,redis://10.0.0.5:6380",
        "--redis.addr",
        "rediss://cache:7000",
        "--redis.user=exporter",
        "--redis.password-file=pw",
    ]) else {
        panic!("serve");
    };
    let Source::Redis(flags) = o.source else {
        panic!("{:?}", o.source);
    };
    let addrs: Vec<&str> = flags.addrs.iter().map(Secret::expose).collect();
    assert_eq!(
        addrs,
        [
            "127.0.0.1:6379",
            "redis://10.0.0.5:6380",
            "rediss://cache:7000"
        ]
    );
    assert_eq!(flags.user.as_deref(), Some("exporter"));
    assert_eq!(flags.password_file, Some(PathBuf::from("pw")));
    // An address may hold a password: the options never print it.
    let Ok(Command::Serve(o)) = command(&["--redis.addr=redis://:hunter2@h"]) else {
        panic!("serve");
    };
    assert!(!format!("{o:?}").contains("hunter2"), "{o:?}");
    // check-config takes the flags too, after the subcommand as well as before.
    let Ok(Command::CheckConfig { source, online }) =
        command(&["check-config", "--online", "--redis.addr=h:1"])
    else {
        panic!("check-config");
    };
    assert!(online);
    assert!(matches!(source, Source::Redis(f) if f.addrs == [Secret::new("h:1")]));
}

#[test]
fn redis_flags_that_would_be_ignored_are_refused() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["--redis.addr=h", "--config.file=c.yaml"],
            "--redis.addr scans the servers it names without a config file",
        ),
        (
            &["check-config", "--redis.addr=h", "--config.file=c.yaml"],
            "--redis.addr scans the servers it names without a config file",
        ),
        (
            &["--demo", "--redis.addr=h"],
            "--demo runs its own simulator",
        ),
        (&["simulate", "--redis.addr=h"], "simulate serves a DCS API"),
        (
            &["--config.file=c.yaml", "--redis.password-file=pw"],
            "--redis.password-file applies to the servers of --redis.addr",
        ),
        (
            &["--demo", "--redis.user=u"],
            "--redis.user applies to the servers of --redis.addr",
        ),
        (
            &[
                "--redis.addr=h",
                "--redis.password=x",
                "--redis.password-file=pw",
            ],
            "give either --redis.password",
        ),
    ];
    for (args, want) in cases {
        let e = command(args).expect_err("refused").to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

/// The help must say what the flags do and what the README promises: `check-config
/// --online` calls DCS per instance, and `simulate` shows the credentials it accepts.
#[test]
fn help_shows_what_check_config_online_calls_and_the_simulator_defaults() {
    use clap::CommandFactory;
    let mut cmd = Args::command();
    let check = cmd
        .find_subcommand_mut("check-config")
        .expect("check-config")
        .render_long_help()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        check.contains("ShowInstance for every configured instance"),
        "{check}"
    );
    // The flags of a start without a config file, with their variables (values hidden).
    let root = cmd
        .render_long_help()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "--redis.addr <URL>",
        "[env: DCS_EXPORTER_REDIS_ADDR]",
        "--redis.user <NAME>",
        "--redis.password <PASSWORD>",
        "[env: DCS_EXPORTER_REDIS_PASSWORD]",
        "--redis.password-file <PATH>",
        "dcs-key-exporter --redis.addr=127.0.0.1:6379",
    ] {
        assert!(root.contains(want), "{want}: {root}");
    }
    let sim = cmd
        .find_subcommand_mut("simulate")
        .expect("simulate")
        .render_long_help()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for default in [
        crate::simulator::DEFAULT_ACCESS_KEY,
        crate::simulator::DEFAULT_SECRET_KEY,
        crate::simulator::DEFAULT_PROJECT_ID,
    ] {
        assert!(
            sim.contains(&format!("default: {default}")),
            "{default}: {sim}"
        );
    }
    // Without flags, simulate accepts exactly those.
    let Ok(Command::Simulate { sim, .. }) = command(&["simulate"]) else {
        panic!("simulate");
    };
    assert_eq!(sim.access_key, crate::simulator::DEFAULT_ACCESS_KEY);
    assert_eq!(sim.project_id, crate::simulator::DEFAULT_PROJECT_ID);
    assert_eq!(
        sim.secret_key.expose(),
        crate::simulator::DEFAULT_SECRET_KEY
    );
}

/// A missing web config file said "No such file or directory" three times: in the
/// message, in its cause and in the cause's cause.
#[test]
fn a_fatal_error_says_its_cause_once() {
    let d = scratch("chain");
    let missing = d.join("web.yml");
    let e = crate::server::web_config::load(&missing).expect_err("missing file");
    let io = std::io::Error::from(std::io::ErrorKind::NotFound);
    let reason = std::fs::read(&missing).expect_err("missing").to_string();
    let shown = error_chain(&e);
    assert_eq!(shown.matches(&reason).count(), 1, "{shown}");
    assert!(shown.contains("cannot read web config file"), "{shown}");
    // Through anyhow, with a context, as main prints it: each part once.
    let e = anyhow::Error::new(e).context("starting");
    let shown = error_chain(e.as_ref());
    assert!(shown.starts_with("starting: "), "{shown}");
    assert_eq!(shown.matches(&reason).count(), 1, "{shown}");
    // A cause the message does not repeat is kept.
    let e = anyhow::Error::new(io).context("reading x");
    assert_eq!(error_chain(e.as_ref()), "reading x: entity not found");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn simulate_flags_set_up_the_simulator() {
    let Ok(Command::Simulate { listen, sim }) = command(&[
        "simulate",
        "--web.listen-address=127.0.0.1:0",
        "--seed=7",
        "--instances=3",
        "--sim.access-key=AK",
        "--sim.project-id=p",
        "--sim.time-scale=0.5",
    ]) else {
        panic!("simulate");
    };
    assert_eq!(listen, "127.0.0.1:0".parse().expect("addr"));
    assert_eq!((sim.seed, sim.instances.len()), (7, 3));
    assert_eq!(
        (sim.access_key.as_str(), sim.project_id.as_str()),
        ("AK", "p")
    );
    assert_eq!(sim.time_scale, 0.5);
    for bad in ["0", "-1", "NaN", "inf"] {
        let e = command(&["simulate", &format!("--sim.time-scale={bad}")]).expect_err("refused");
        assert!(matches!(e, UsageError::TimeScale), "{bad}: {e}");
    }
}
