//! Real `redis-server` processes for the native-target tests: standalone, replica, cluster,
//! ACL and TLS, each on a free loopback port in its own scratch directory, stopped on drop.
//!
//! Without `redis-server` on the machine the tests print why and skip, unless
//! `DCS_EXPORTER_REDIS_TESTS=require` is set (CI), where a missing or failing server fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;

/// Whether the real-server tests must run (CI) rather than skip.
pub fn required() -> bool {
    std::env::var("DCS_EXPORTER_REDIS_TESTS").is_ok_and(|v| v == "require")
}

/// `true` when `redis-server` can run; otherwise prints why and returns `false` (or panics
/// when the tests are required).
pub fn available(test: &str) -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required(),
            "{test}: redis-server is not installed, but DCS_EXPORTER_REDIS_TESTS=require"
        );
        eprintln!("{test}: skipped: redis-server is not installed (apt-get install redis-server)");
    }
    ok
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `redis-server` process.
pub struct Server {
    pub port: u16,
    child: Child,
    pub dir: TempDir,
    /// Extra arguments `redis-cli` needs (TLS, credentials).
    pub cli_args: Vec<String>,
}

impl Server {
    /// Starts a server with `args` on a free port; waits until it answers PING.
    pub async fn start(args: &[&str]) -> Server {
        Self::start_with(args, Vec::new(), None).await
    }

    /// Starts a server; `cli_args` are what `redis-cli` needs to talk to it, and with `tls`
    /// the port speaks TLS only.
    pub async fn start_with(args: &[&str], cli_args: Vec<String>, tls: Option<()>) -> Server {
        let dir = TempDir::new("redis");
        let port = free_port();
        let child = spawn(args, tls, &dir, port);
        let server = Server {
            port,
            child,
            dir,
            cli_args,
        };
        server.ready().await;
        server
    }

    /// Stops the server (`SHUTDOWN SAVE`, which writes its data to disk, or `SHUTDOWN NOSAVE`)
    /// and starts a new process with the same arguments, port and directory: with `save` it
    /// loads the data back, without it starts empty. The new process has a new `run_id`.
    pub async fn restart(&mut self, args: &[&str], save: bool) {
        let _ = self.try_cli(&["SHUTDOWN", if save { "SAVE" } else { "NOSAVE" }]);
        let _ = self.child.wait();
        self.child = spawn(args, None, &self.dir, self.port);
        self.ready().await;
    }

    /// Waits until the server answers PING.
    async fn ready(&self) {
        for _ in 0..100 {
            if self.try_cli(&["PING"]).is_some_and(|o| o.trim() == "PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.path("server.log")).unwrap_or_default();
        panic!(
            "redis-server on port {} did not answer PING; its log:\n{log}",
            self.port
        );
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed on port {}", self.port))
    }

    /// Feeds `redis-cli --pipe` with raw RESP (fast bulk loading).
    pub fn pipe(&self, resp: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_args)
            .arg("--pipe")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli --pipe");
        child.stdin.take().unwrap().write_all(resp).unwrap();
        assert!(child.wait().unwrap().success(), "redis-cli --pipe failed");
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` process on `port` keeping its files in `dir`.
fn spawn(args: &[&str], tls: Option<()>, dir: &TempDir, port: u16) -> Child {
    let mut cmd = Command::new("redis-server");
    if tls.is_some() {
        cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
    } else {
        cmd.args(["--port", &port.to_string()]);
    }
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.dir())
        .args(["--logfile", "server.log"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("redis-server starts")
}

/// One command in RESP, for [`Server::pipe`].
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
