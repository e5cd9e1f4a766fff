//! Servers of other versions than the installed `redis-server` (Redis 8.2, Valkey 9.1), found
//! through an environment variable naming their binary, for the tests that need what only
//! those versions have (`CLUSTER SLOT-STATS`). Without the variable a test prints why it skips,
//! or fails when `DCS_EXPORTER_REDIS_TESTS=require`.
//!
//! - `DCS_EXPORTER_REDIS82_SERVER`: a Redis 8.2 `redis-server`.
//! - `DCS_EXPORTER_VALKEY_SERVER`: a Valkey 9.1 `valkey-server`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis_server::{free_port, required};
use super::TempDir;

/// The binary `var` names, or `None` (printing why the test skips; failing when required).
pub fn binary(var: &str, test: &str) -> Option<PathBuf> {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        other => {
            let why = match other {
                Some(p) => format!("{var}={} does not exist", p.display()),
                None => format!("{var} is not set"),
            };
            assert!(
                !required(),
                "{test}: {why}, but DCS_EXPORTER_REDIS_TESTS=require"
            );
            eprintln!("{test}: SKIPPED: {why} (the path of the server binary to test against)");
            None
        }
    }
}

/// One server process of `bin` on a free loopback port, stopped on drop.
pub struct Proc {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Proc {
    /// Starts `bin` with `args`; waits until it answers PING.
    pub async fn start(bin: &PathBuf, args: &[&str]) -> Proc {
        let dir = TempDir::new("server-bin");
        let port = free_port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.dir())
            .args(["--logfile", "server.log"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", bin.display()));
        let p = Proc {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if p.try_cli(&["PING"]).is_some_and(|o| o.trim() == "PONG") {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} on port {port} did not answer PING", bin.display());
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed on port {}", self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
