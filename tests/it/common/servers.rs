//! Which Redis and Valkey servers the real-server tests run on, and how a test that cannot run
//! for want of one says so.
//!
//! `DCS_EXPORTER_REDIS_SERVERS` lists the servers as `name=path` pairs separated by spaces or
//! commas (`tests/servers/install.py` installs the matrix and prints such a list); a path
//! without `/` is looked up on `PATH`. Unset, the list is `redis-server` from `PATH` alone.
//! The first server is the one the single-server tests use; the matrix tests run on each in
//! turn ([`on_each`]). Each server's engine and version are its own `--version`'s. The tests
//! also need Debian's `redis-cli` (it talks to every server listed), which the harness uses to
//! load data and set up clusters.
//!
//! A test that cannot run for want of a server or of `redis-cli` passes without running, as
//! libtest has no "skipped" verdict. So that it does not pass silently, the reason is printed
//! at the end of the run, past libtest's output capture, one line per test
//! (`<test>: skipped: no redis-server on PATH`). With `DCS_EXPORTER_REDIS_TESTS=require` (CI)
//! it fails instead. A server that the list names but that does not run fails every test that
//! needs it, required or not: the list is a request, not a hint.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use futures_util::FutureExt;

/// The environment variable that lists the servers.
pub const SERVERS_VAR: &str = "DCS_EXPORTER_REDIS_SERVERS";

/// Whether the real-server tests must run (CI) rather than skip.
pub fn required() -> bool {
    std::env::var("DCS_EXPORTER_REDIS_TESTS").is_ok_and(|v| v == "require")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Engine {
    Redis,
    Valkey,
}

impl Engine {
    /// `redis` or `valkey`, as `INFO` and the exporter name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Valkey => "valkey",
        }
    }
}

/// One server binary of the list.
#[derive(Clone, Debug)]
pub struct ServerBin {
    /// The name in the list (`valkey-9.1`), or `redis-server` for the default.
    pub name: String,
    pub path: PathBuf,
    pub engine: Engine,
    /// The engine's own version (`9.1.2`; Valkey's `INFO` also says `redis_version:7.2.4`).
    pub version: String,
}

impl ServerBin {
    /// Asks the binary what it is: `Redis server v=7.0.15 …` or `Valkey server v=9.1.2 …`.
    fn probe(name: &str, path: &str) -> Result<ServerBin, String> {
        let out = Command::new(path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{name}={path} does not run: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{name}={path} --version exited with {}: {}{}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let (engine, rest) = if let Some(r) = text.strip_prefix("Redis server v=") {
            (Engine::Redis, r)
        } else if let Some(r) = text.strip_prefix("Valkey server v=") {
            (Engine::Valkey, r)
        } else {
            return Err(format!(
                "{name}={path} --version says {:?}, not a Redis or Valkey server",
                text.trim()
            ));
        };
        Ok(ServerBin {
            name: name.to_owned(),
            path: PathBuf::from(path),
            engine,
            version: rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// (major, minor) of the engine's version.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut it = self.version.split('.').map(|n| n.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// Whether the server has `CLIENT NO-TOUCH` (Redis 7.2+, every Valkey).
    pub fn has_no_touch(&self) -> bool {
        self.engine == Engine::Valkey || self.major_minor() >= (7, 2)
    }

    /// Whether the server has `CLUSTER SLOT-STATS` (Redis 8.2+, Valkey 8.0+).
    pub fn has_slot_stats(&self) -> bool {
        self.major_minor()
            >= match self.engine {
                Engine::Valkey => (8, 0),
                _ => (8, 2),
            }
    }

    /// `valkey-9.1 (valkey 9.1.2)`, for test output.
    pub fn describe(&self) -> String {
        format!("{} ({} {})", self.name, self.engine.as_str(), self.version)
    }
}

/// What the environment offers: the servers, or why the tests cannot run.
enum Setup {
    Servers(Vec<ServerBin>),
    /// Nothing to run on; the tests skip (or fail when required).
    Missing(String),
    /// The list names something that does not work: every test that needs it fails.
    Broken(String),
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let listed = std::env::var(SERVERS_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let servers = match &listed {
            Some(list) => match parse_list(list) {
                Ok(s) => s,
                Err(e) => return Setup::Broken(format!("{SERVERS_VAR}: {e}")),
            },
            None => match ServerBin::probe("redis-server", "redis-server") {
                Ok(s) => vec![s],
                Err(_) => return Setup::Missing("no redis-server on PATH".into()),
            },
        };
        let cli = Command::new("redis-cli")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !cli {
            return Setup::Missing("no redis-cli on PATH".into());
        }
        Setup::Servers(servers)
    })
}

/// Parses `name=path name=path …` (spaces, newlines or commas between pairs).
fn parse_list(list: &str) -> Result<Vec<ServerBin>, String> {
    let mut out: Vec<ServerBin> = Vec::new();
    for item in list
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
    {
        let (name, path) = item
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("{item:?} is not name=path"))?;
        if out.iter().any(|s| s.name == name) {
            return Err(format!("{name} is listed twice"));
        }
        out.push(ServerBin::probe(name, path)?);
    }
    if out.is_empty() {
        return Err("lists no server".into());
    }
    Ok(out)
}

/// The server the single-server tests use (the first listed), or `None` after recording why
/// `test` is skipped (a panic when the tests are required or the list is broken).
pub fn primary(test: &str) -> Option<&'static ServerBin> {
    all(test).map(|s| &s[0])
}

/// Every listed server, or `None` after recording why `test` is skipped.
pub fn all(test: &str) -> Option<&'static [ServerBin]> {
    match setup() {
        Setup::Servers(s) => Some(s),
        Setup::Broken(why) => panic!("{}: {why}", test_name(test)),
        Setup::Missing(why) => {
            skip(test, why);
            None
        }
    }
}

/// `true` when the first listed server can run; otherwise records why `test` is skipped.
pub fn available(test: &str) -> bool {
    primary(test).is_some()
}

/// The first listed server, for a test that has already checked [`available`].
pub fn first() -> &'static ServerBin {
    match setup() {
        Setup::Servers(s) => &s[0],
        Setup::Broken(why) | Setup::Missing(why) => panic!("no server to start: {why}"),
    }
}

/// libtest runs each test on a thread named after it (`native::acl_user_…`).
fn test_name(fallback: &str) -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or(fallback)
        .to_owned()
}

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records that `test` did not run because `why`; fails instead when the tests are required.
fn skip(test: &str, why: &str) {
    let name = test_name(test);
    assert!(
        !required(),
        "{name}: {why}, but DCS_EXPORTER_REDIS_TESTS=require"
    );
    let line = format!("{name}: skipped: {why}");
    // Shown with --nocapture; the summary at exit is shown always.
    eprintln!("{line}");
    let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        at_exit();
    }
    skipped.push(line);
}

/// Prints the skipped tests when the test binary exits, after libtest's summary: libtest
/// shows what a passing test printed only with --nocapture, and a skip looks like a pass.
#[cfg(unix)]
fn at_exit() {
    extern "C" fn print_skipped() {
        let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "\n{} real-server tests passed without running (DCS_EXPORTER_REDIS_TESTS=require \
             makes this a failure):",
            skipped.len()
        );
        let mut sorted = skipped.clone();
        sorted.sort();
        for line in sorted {
            let _ = writeln!(err, "  {line}");
        }
        let _ = writeln!(
            err,
            "To run them: apt-get install redis-server redis-tools, or install the server \
             matrix (README, Development).\n"
        );
    }
    // SAFETY: registers a plain function with no captured state; it only reads a static.
    unsafe {
        libc::atexit(print_skipped);
    }
}

#[cfg(not(unix))]
fn at_exit() {}

/// Writes one line to the terminal past libtest's output capture.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// What one server's part of a matrix test came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    /// The server lacks what the test checks (a command, a TLS build): the reason.
    NotApplicable(String),
}

/// Runs `body` on every listed server in turn and says on the terminal (past the output
/// capture) how each went and how long it took. A server's failure does not stop the others;
/// the test fails at the end naming every server that failed. Returns each server's outcome;
/// `None` when the test is skipped for want of servers.
pub async fn on_each<F, Fut>(test: &str, mut body: F) -> Option<Vec<(&'static ServerBin, Outcome)>>
where
    F: FnMut(&'static ServerBin) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let servers = all(test)?;
    let name = test_name(test);
    let mut outcomes = Vec::new();
    let mut failed = Vec::new();
    for bin in servers {
        let started = tokio::time::Instant::now();
        let result = AssertUnwindSafe(body(bin)).catch_unwind().await;
        let took = started.elapsed().as_secs_f64();
        let what = bin.describe();
        match result {
            Ok(outcome) => {
                match &outcome {
                    Outcome::Ran => announce(&format!("{name} on {what}: ok in {took:.1} s")),
                    Outcome::NotApplicable(why) => {
                        announce(&format!("{name} on {what}: not applicable: {why}"))
                    }
                }
                outcomes.push((bin, outcome));
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic without a message".into());
                announce(&format!("{name} on {what}: FAILED in {took:.1} s"));
                failed.push(format!("on {what}: {msg}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{name} failed on {} of {} servers:\n{}",
        failed.len(),
        servers.len(),
        failed.join("\n")
    );
    Some(outcomes)
}

/// When the tests are required, fails unless `outcomes` ran on at least one server of each
/// engine (the servers the README promises a feature on).
pub fn assert_ran_on_each_engine(test: &str, outcomes: &[(&'static ServerBin, Outcome)]) {
    if !required() {
        return;
    }
    let ran: BTreeSet<Engine> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Ran)
        .map(|(b, _)| b.engine)
        .collect();
    for engine in [Engine::Redis, Engine::Valkey] {
        assert!(
            ran.contains(&engine),
            "{}: applies to no {} server of {SERVERS_VAR} ({:?}), but \
             DCS_EXPORTER_REDIS_TESTS=require (tests/servers/install.py installs servers it \
             applies to)",
            test_name(test),
            engine.as_str(),
            outcomes
                .iter()
                .map(|(b, o)| format!("{}: {o:?}", b.name))
                .collect::<Vec<_>>()
        );
    }
}
