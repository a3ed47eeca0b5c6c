//! What the examples share: where their Redis comes from, how they start copies of
//! themselves as separate instances, and how they fail.
//!
//! The examples are `seckill` (a flash sale across processes), `service` (the Python
//! original's seven scenarios as an axum service) and `scheduled_job` (one run per window
//! across instances). Run them with `cargo run --example <name>`.

use std::io;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_runtime::testing::RedisServer;
use tokio::process::{Child, Command};

/// The Redis a demo talks to: the URL it was given (`--redis-url` or `REDIS_URL`), otherwise a private
/// `redis-server` on a free loopback port, stopped when this value is dropped.
#[derive(Debug)]
pub struct DemoRedis {
    url: String,
    server: Option<RedisServer>,
}

impl DemoRedis {
    /// `url` if given, else a private server. `Ok(None)` when no URL is given and no
    /// `redis-server` is installed (a demo can then fall back to the in-memory backend);
    /// `Err` with a message when the server is installed but does not start.
    pub fn given_or_start(url: Option<String>) -> Result<Option<Self>, String> {
        if let Some(url) = url {
            return Ok(Some(Self { url, server: None }));
        }
        match RedisServer::start() {
            Ok(server) => Ok(Some(Self {
                url: server.url(),
                server: Some(server),
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("could not start a private redis-server: {error}")),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where this Redis comes from, for a demo's first line.
    pub fn describe(&self) -> String {
        match &self.server {
            Some(server) => format!("a private redis-server on 127.0.0.1:{}", server.port()),
            None => format!("Redis at {}", server_of(&self.url)),
        }
    }
}

/// The `host:port` of a Redis URL, without credentials, for messages.
pub fn server_of(url: &str) -> String {
    redis::Client::open(url).map_or_else(
        |_| "an unparsable Redis URL".to_owned(),
        |client| client.get_connection_info().addr().to_string(),
    )
}

/// Starts this executable again with `args` (an instance of a multi-process demo), with
/// its stdout piped to the caller and its stderr inherited.
pub fn spawn_self(args: &[String]) -> io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
}

/// Milliseconds since the Unix epoch: a start time that separate processes agree on.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Sleeps until the Unix time `at_millis` (returns at once if it has passed).
pub async fn sleep_until_unix(at_millis: u64) {
    let now = unix_millis();
    if at_millis > now {
        tokio::time::sleep(Duration::from_millis(at_millis - now)).await;
    }
}

/// Prints `error: {message}` to stderr and exits with status 1.
pub fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
