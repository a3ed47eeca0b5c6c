//! Starting the examples' binaries against a private redis-server.

#![allow(dead_code, unreachable_pub)] // each test file uses part of this module

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lock_runtime::testing::RedisServer;

/// The path of an example, built (or brought up to date) by `cargo build` on first use,
/// so that `cargo test --test ...` never runs a stale one.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let deps = std::env::current_exe().expect("test executable path");
    let profile_dir = deps
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "lock-examples",
                "--examples",
                "--profile",
                profile,
            ])
            .status()
            .expect("run cargo build for the examples");
        assert!(status.success(), "building the examples failed");
    });
    profile_dir.join("examples").join(name)
}

/// Runs an example to completion with `REDIS_URL` set (or removed, for `None`).
pub fn run_example(name: &str, redis_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(example(name));
    command.args(args).stdin(Stdio::null());
    match redis_url {
        Some(url) => command.env("REDIS_URL", url),
        None => command.env_remove("REDIS_URL"),
    };
    command.output().expect("run the example")
}

/// One process of the `service` example on a free port, killed on drop.
pub struct Service {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Service {
    /// Starts an instance named `instance` against `redis`, with extra flags.
    pub fn start(redis: &RedisServer, instance: &str, flags: &[&str]) -> Self {
        let mut child = Command::new(example("service"))
            .args([
                "--port",
                "0",
                "--instance",
                instance,
                "--redis-url",
                &redis.url(),
            ])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the service example");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the service's first line");
        let base = first
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in the service's first line: {first:?}"))
            .to_owned();
        Self {
            child,
            _stdout: stdout,
            base,
        }
    }

    /// Three instances, `a`, `b` and `c`, with the same flags.
    pub fn three(redis: &RedisServer, flags: &[&str]) -> [Self; 3] {
        ["a", "b", "c"].map(|instance| Self::start(redis, instance, flags))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A synchronous connection to the test's Redis, to read what the services wrote.
pub fn redis(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .and_then(|client| client.get_connection())
        .expect("connect to the test's redis-server")
}

/// Polls `condition` every 20 ms for up to 10 s.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
