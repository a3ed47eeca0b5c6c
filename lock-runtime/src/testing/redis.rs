//! [`RedisServer`]: one private `redis-server` (or any binary that speaks its command line).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use std::{fs, io};

use super::{COMMAND_TIMEOUT, free_port, info_field, not_found, scratch_dir};

/// The environment variable naming the `redis-server` binary (default: from `PATH`).
pub const REDIS_BIN_ENV: &str = "LOCK_TEST_REDIS_BIN";

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at a start: a free port can be taken between finding it and binding it.
const PORT_ATTEMPTS: usize = 5;

/// A private `redis-server` process, killed on drop.
///
/// It listens on a free port of 127.0.0.1 only, persists nothing (`--save ''
/// --appendonly no`) and keeps its log in a scratch directory removed on drop.
///
/// ```no_run
/// use lock_runtime::testing::RedisServer;
///
/// let server = RedisServer::start()?;
/// let locker = lock_runtime::Locker::redis(&server.url())?;
///
/// // Options: any `--name value` of redis-server, and a password.
/// let small = RedisServer::builder()
///     .arg("--maxmemory", "2mb")
///     .arg("--maxmemory-policy", "allkeys-lru")
///     .password("secret")
///     .start()?;
/// let user_url = small.create_user("locks", "pw", &["~lock:*", "&lock:*", "+@all"])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Kills the server if this process dies without stopping it.
    watchdog: Option<Child>,
    port: u16,
    bus_port: Option<u16>,
    dir: PathBuf,
    options: RedisServerBuilder,
    paused: AtomicBool,
    /// Where the current process's part of the log starts (a restart appends to it).
    log_start: usize,
}

/// Options of a [`RedisServer`], from [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    binary: Option<PathBuf>,
    args: Vec<OsString>,
    password: Option<String>,
    mode: Mode,
    kind: &'static str,
}

/// What a server is, beyond its extra arguments.
#[derive(Debug, Clone, Default)]
pub(super) enum Mode {
    /// A plain server on `--port`.
    #[default]
    Plain,
    /// A cluster node: `--cluster-enabled yes` and a `--cluster-port` of its own.
    ClusterNode,
    /// A sentinel, with this configuration (sentinels need a config file they can rewrite).
    Sentinel(String),
    /// TLS only: `--port 0 --tls-port` (the caller adds the certificate arguments).
    Tls,
}

impl RedisServerBuilder {
    /// Adds `--name value` (later ones win, so this also overrides the defaults, e.g.
    /// `.arg("--appendonly", "yes")`).
    pub fn arg(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.args.push(name.as_ref().to_owned());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// Requires `password` of the default user (`--requirepass`); [`RedisServer::url`]
    /// then carries it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Runs `binary` instead of [`REDIS_BIN_ENV`] or `redis-server` from `PATH`.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// Adds arguments as they are (for options with several values, like `--replicaof`).
    pub(super) fn raw_args<I: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = I>) -> Self {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    pub(super) fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    pub(super) fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// Starts the server on a free port and waits until it answers.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] and the install command when the binary is
    /// missing, and with the server's log when it does not come up.
    pub fn start(self) -> io::Result<RedisServer> {
        let kind = if self.kind.is_empty() {
            "redis"
        } else {
            self.kind
        };
        let mut server = RedisServer {
            child: None,
            watchdog: None,
            port: 0,
            bus_port: None,
            dir: scratch_dir(kind)?,
            options: self,
            paused: AtomicBool::new(false),
            log_start: 0,
        };
        if let Mode::Sentinel(config) = &server.options.mode {
            fs::write(server.config_path(), config)?;
        }
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            if matches!(server.options.mode, Mode::ClusterNode) {
                server.bus_port = Some(free_port()?);
            }
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free port")))
    }

    fn binary_path(&self) -> PathBuf {
        self.binary.clone().unwrap_or_else(|| {
            std::env::var_os(REDIS_BIN_ENV)
                .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
        })
    }
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] and the install command when no
    /// `redis-server` is on `PATH` (or at `LOCK_TEST_REDIS_BIN`), and with the server's
    /// log when it does not come up.
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    /// Options for a server: [`RedisServerBuilder::start`] starts it.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let binary = self.options.binary_path();
        let mut command = Command::new(&binary);
        if let Mode::Sentinel(_) = self.options.mode {
            command.arg(self.config_path()).arg("--sentinel");
        }
        match self.options.mode {
            Mode::Tls => command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string()),
            _ => command.arg("--port").arg(self.port.to_string()),
        };
        if let (Mode::ClusterNode, Some(bus)) = (&self.options.mode, self.bus_port) {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .arg("--cluster-port")
                .arg(bus.to_string());
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        if !matches!(self.options.mode, Mode::Sentinel(_)) {
            // Replicas sync at once rather than after the default 5 s wait for others.
            command.args(["--repl-diskless-sync-delay", "0"]);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.options.args);
        // Errors in the arguments go to stderr, before the log file is opened.
        let output = fs::File::create(self.output_path())?;
        command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        self.log_start = self.log_file().len();
        let child = command.spawn().map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                not_found(
                    binary.as_os_str(),
                    REDIS_BIN_ENV,
                    "install Redis (`apt-get install -y redis-server`)",
                )
            } else {
                error
            }
        })?;
        self.watchdog = Some(super::watchdog(child.id(), &self.dir)?);
        self.child = Some(child);
        self.paused.store(false, Ordering::SeqCst);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if self.answers() {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.child = None;
                if let Some(mut watchdog) = self.watchdog.take() {
                    let _ = watchdog.kill();
                    let _ = watchdog.wait();
                }
                let log = self.log_file();
                let own = log.get(self.log_start..).unwrap_or(&log);
                let kind = if own.contains("Address already in use") {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                return Err(io::Error::new(
                    kind,
                    format!(
                        "{} on port {} exited at start; its log:\n{log}",
                        self.binary_name(),
                        self.port,
                        log = self.log()
                    ),
                ));
            }
            if started.elapsed() > READY_TIMEOUT {
                self.stop();
                return Err(self.error(
                    io::ErrorKind::TimedOut,
                    &format!("did not answer within {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether our own process (not another that took the port) answers.
    fn answers(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        if let Mode::Tls = self.options.mode {
            // No plain-text port to ask: the log says when it listens.
            return self
                .log_file()
                .get(self.log_start..)
                .is_some_and(|log| log.contains("Ready to accept connections"))
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        self.query::<String>(redis::cmd("INFO").arg("server"))
            .ok()
            .and_then(|info| info_field(&info, "process_id")?.parse::<u32>().ok())
            == Some(pid)
    }

    fn binary_name(&self) -> String {
        let binary = self.options.binary_path();
        binary
            .file_name()
            .map_or_else(|| binary.clone().into_os_string(), ToOwned::to_owned)
            .to_string_lossy()
            .into_owned()
    }

    /// `redis://127.0.0.1:{port}`, with the password when the server requires one
    /// (`rediss://` for a [`TlsRedisServer`](super::TlsRedisServer)).
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => self.user_url("", password),
            None => self.url_without_password(),
        }
    }

    /// The URL with no credentials, whether or not the server requires them.
    pub fn url_without_password(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.port)
    }

    /// The URL that logs in as `user` with `password` (`""` for the default user).
    pub fn user_url(&self, user: &str, password: &str) -> String {
        format!(
            "{}://{}:{}@127.0.0.1:{}",
            self.scheme(),
            percent_encode(user),
            percent_encode(password),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        match self.options.mode {
            Mode::Tls => "rediss",
            _ => "redis",
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster bus port, for a cluster node.
    pub fn cluster_bus_port(&self) -> Option<u16> {
        self.bus_port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs (paused or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is frozen by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.is_running() && self.paused.load(Ordering::SeqCst)
    }

    /// Kills the server with SIGKILL (a crash: no shutdown, no persistence) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Starts the server again on the same port, empty (nothing was persisted). A cluster
    /// node keeps its `nodes.conf`, so it rejoins its cluster with its old identity.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Freezes the server with SIGSTOP: it keeps its connections but answers nothing.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("STOP")?;
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Thaws a server frozen by [`pause`](Self::pause).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("CONT")?;
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn signal(&self, signal: &str) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.binary_name())))?;
        super::signal(pid, signal)
    }

    /// The server's log so far, and what it printed to stdout and stderr if anything
    /// (for failure messages).
    pub fn log(&self) -> String {
        let mut log = self.log_file();
        let output = fs::read_to_string(self.output_path()).unwrap_or_default();
        if !output.trim().is_empty() {
            log.push_str("--- stdout and stderr ---\n");
            log.push_str(&output);
        }
        log
    }

    fn log_file(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn output_path(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }

    /// The server's scratch directory (holds its log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new blocking connection (logged in when the server requires a password), with
    /// 2 s timeouts, for setting up and inspecting the server from a test. Not for a
    /// [`TlsRedisServer`](super::TlsRedisServer).
    pub fn connection(&self) -> io::Result<redis::Connection> {
        if let Mode::Tls = self.options.mode {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a TLS-only server: connect with a TLS client",
            ));
        }
        let client = redis::Client::open(self.url()).map_err(io::Error::other)?;
        let connection = client
            .get_connection_with_timeout(COMMAND_TIMEOUT)
            .map_err(io::Error::other)?;
        connection
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(io::Error::other)?;
        connection
            .set_write_timeout(Some(COMMAND_TIMEOUT))
            .map_err(io::Error::other)?;
        Ok(connection)
    }

    /// Runs one command on a new [`connection`](Self::connection).
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> io::Result<T> {
        let mut connection = self.connection()?;
        command.query(&mut connection).map_err(io::Error::other)
    }

    /// Creates (or resets) the ACL user `name` with `password` and `rules` (`ACL SETUSER
    /// name reset on >password rules...`, e.g. `["~lock:*", "&lock:*", "+@all"]`) and
    /// returns the URL that logs in as that user.
    pub fn create_user(&self, name: &str, password: &str, rules: &[&str]) -> io::Result<String> {
        let mut command = redis::cmd("ACL");
        command
            .arg("SETUSER")
            .arg(name)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg(rules);
        let () = self
            .query(&command)
            .map_err(|error| self.error(error.kind(), &format!("ACL SETUSER {name}: {error}")))?;
        Ok(self.user_url(name, password))
    }

    /// An error about this server, with its log.
    pub(super) fn error(&self, kind: io::ErrorKind, message: &str) -> io::Error {
        io::Error::new(
            kind,
            format!(
                "{} on port {}: {message}; its log:\n{}",
                self.binary_name(),
                self.port,
                self.log()
            ),
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A frozen server would ignore nothing but SIGKILL; kill works either way.
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but unreserved characters, for the user-info of a URL.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn user_info_is_percent_encoded() {
        assert_eq!(percent_encode("plain-1.2_3~"), "plain-1.2_3~");
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
