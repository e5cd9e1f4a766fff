//! Real Redis and Valkey server processes for the native-target tests: standalone, replica,
//! cluster, ACL and TLS, each on a free loopback port in its own scratch directory, stopped on
//! drop. Which binaries there are, and what happens without one, is [`super::servers`].

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use super::servers::available;
use super::servers::{first, ServerBin};
use super::TempDir;

/// How long a server gets to answer PING after it was started.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One server process.
pub struct Server {
    pub port: u16,
    child: Child,
    pub dir: TempDir,
    /// Extra arguments `redis-cli` needs (TLS, credentials).
    pub cli_args: Vec<String>,
    /// The binary it runs.
    pub bin: ServerBin,
}

/// Why a server did not come up: its own words (log file and stderr).
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub log: String,
}

impl StartError {
    /// The build has no TLS: Redis 7+ and Valkey say so in their log, 6.2 does not know the
    /// directive.
    pub fn lacks_tls(&self) -> bool {
        self.log.contains("Failed finding TLS support")
            || (self.log.contains("tls-port") && self.log.contains("Bad directive"))
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; its log:\n{}", self.message, self.log)
    }
}

impl Server {
    /// Starts the first listed server with `args` on a free port; waits until it answers PING.
    pub async fn start(args: &[&str]) -> Server {
        Self::start_with(args, Vec::new(), None).await
    }

    /// Starts the first listed server; `cli_args` are what `redis-cli` needs to talk to it,
    /// and with `tls` the port speaks TLS only.
    pub async fn start_with(args: &[&str], cli_args: Vec<String>, tls: Option<()>) -> Server {
        Self::start_bin(first(), args, cli_args, tls.is_some()).await
    }

    /// Starts `bin`; panics with the server's log when it does not come up.
    pub async fn start_bin(bin: &ServerBin, args: &[&str], cli: Vec<String>, tls: bool) -> Server {
        Self::try_start_bin(bin, args, cli, tls)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", bin.describe()))
    }

    /// Starts `bin` and waits until it answers PING, or says why it did not.
    pub async fn try_start_bin(
        bin: &ServerBin,
        args: &[&str],
        cli_args: Vec<String>,
        tls: bool,
    ) -> Result<Server, StartError> {
        let dir = TempDir::new("redis");
        let port = free_port();
        let child = spawn(bin, args, tls, &dir, port)?;
        let mut server = Server {
            port,
            child,
            dir,
            cli_args,
            bin: bin.clone(),
        };
        server.ready().await?;
        Ok(server)
    }

    /// Stops the server (`SHUTDOWN SAVE`, which writes its data to disk, or `SHUTDOWN NOSAVE`)
    /// and starts a new process of the same binary with the same arguments, port and
    /// directory: with `save` it loads the data back, without it starts empty. The new process
    /// has a new `run_id`.
    pub async fn restart(&mut self, args: &[&str], save: bool) {
        let _ = self.try_cli(&["SHUTDOWN", if save { "SAVE" } else { "NOSAVE" }]);
        let _ = self.child.wait();
        let what = self.bin.describe();
        self.child = spawn(&self.bin, args, false, &self.dir, self.port)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        self.ready()
            .await
            .unwrap_or_else(|e| panic!("{what} after a restart: {e}"));
    }

    /// Waits until the server answers PING; fails early when the process exits.
    async fn ready(&mut self) -> Result<(), StartError> {
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if self.try_cli(&["PING"]).is_some_and(|o| o.trim() == "PONG") {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || tokio::time::Instant::now() >= until {
                let message = match exited {
                    Some(status) => format!("exited ({status}) before answering PING"),
                    None => format!(
                        "did not answer PING on port {} within {START_DEADLINE:?}",
                        self.port
                    ),
                };
                return Err(StartError {
                    message,
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log file and what it wrote to stderr.
    pub fn log(&self) -> String {
        let read = |n| std::fs::read_to_string(self.dir.path(n)).unwrap_or_default();
        format!("{}{}", read("server.log"), read("stderr.log"))
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
        self.try_cli(args).unwrap_or_else(|| {
            panic!(
                "redis-cli {args:?} failed on {} port {}",
                self.bin.describe(),
                self.port
            )
        })
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

    /// A connection of the `redis` crate (plain-text servers only), for the test's own
    /// questions to the server.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.bin.describe()))
    }

    /// A field of `INFO` (`used_memory`, `valkey_version`), as the server says it.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = self.cli(&["INFO", section]);
        info.lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
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

/// A process of `bin` on `port` keeping its files (data, log, stderr) in `dir`.
fn spawn(
    bin: &ServerBin,
    args: &[&str],
    tls: bool,
    dir: &TempDir,
    port: u16,
) -> Result<Child, StartError> {
    let mut cmd = Command::new(&bin.path);
    if tls {
        cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
    } else {
        cmd.args(["--port", &port.to_string()]);
    }
    let stderr = std::fs::File::create(dir.path("stderr.log")).expect("stderr.log");
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.dir())
        .args(["--logfile", "server.log"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    cmd.spawn().map_err(|e| StartError {
        message: format!("{} does not start: {e}", bin.path.display()),
        log: String::new(),
    })
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

/// A cluster of `nodes` servers of `bin`, `replicas` replicas per master, made with
/// `redis-cli --cluster create`; `args` go to every node besides the cluster's own. Returns
/// once every node says `cluster_state:ok`.
pub async fn start_cluster(
    bin: &ServerBin,
    nodes: usize,
    replicas: usize,
    args: &[&str],
) -> Vec<Server> {
    let mut all = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ];
    all.extend_from_slice(args);
    let mut started = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        started.push(Server::start_bin(bin, &all, Vec::new(), false).await);
    }
    let addrs: Vec<String> = started
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let replicas = replicas.to_string();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", replicas.as_str(), "--cluster-yes"]);
    started[0].cli(&create);
    super::wait_for("cluster ok", std::time::Duration::from_secs(60), || async {
        started
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            .then_some(())
    })
    .await;
    started
}
