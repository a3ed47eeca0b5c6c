//! Test support: private Redis servers on free loopback ports.
//!
//! Enabled by the `testing` feature. Every server here is a real process of its own,
//! listening on 127.0.0.1 only, with no persistence, stopped by its PID when the value that
//! owns it is dropped (also when a test panics):
//!
//! - [`RedisServer`]: one `redis-server`, with options through [`RedisServer::builder`]
//!   (memory limits, a password, any other `--option value`) and ACL users;
//! - [`RedisCluster`]: 3 masters and 3 replicas, with failover, kills, pauses, restarts
//!   and slot migrations;
//! - [`SentinelGroup`]: a master, a replica and 3 sentinels watching them;
//! - [`TlsRedisServer`]: a server that only speaks TLS, with a certificate authority made
//!   at test time and a second, unrelated one for wrong-CA tests;
//! - [`ValkeyServer`]: a `valkey-server`, when [`VALKEY_BIN_ENV`] names one.
//!
//! Failures are [`io::Error`]s that carry the servers' logs.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use std::{fs, io};

mod cluster;
mod redis;
mod sentinel;
mod tls;
mod valkey;

pub use self::cluster::{ClusterNode, RedisCluster, Role, SlotMigration, key_slot};
pub use self::redis::{REDIS_BIN_ENV, RedisServer, RedisServerBuilder};
pub use self::sentinel::SentinelGroup;
pub use self::tls::TlsRedisServer;
pub use self::valkey::{VALKEY_BIN_ENV, ValkeyServer};

/// The environment variable naming the `redis-cli` binary (default: the `redis-cli` beside
/// [`REDIS_BIN_ENV`]'s binary when there is one, else from `PATH`). Only
/// [`RedisCluster`] uses it, to create the cluster.
pub const REDIS_CLI_ENV: &str = "LOCK_TEST_REDIS_CLI_BIN";

/// How long a command to one of our servers may take before it counts as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A new, empty scratch directory under the system's temporary directory.
fn scratch_dir(kind: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lock-runtime-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A port nobody listens on right now (someone may take it before we do: callers retry).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A watchdog for the server `server` started by this process, in its scratch `dir`: a
/// small shell process that, if this process dies without stopping the server (SIGKILL,
/// `exit`, an abort), kills the server (by its PID) and removes the directory. So a test
/// binary or demo killed mid-run leaves no `redis-server` behind. It exits by itself
/// when the server stops; stopping the server also kills it.
fn watchdog(server: u32, dir: &std::path::Path) -> io::Result<std::process::Child> {
    const WATCH: &str = r#"while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do
  sleep 0.2
done
if ! kill -0 "$0" 2>/dev/null; then kill -9 "$1" 2>/dev/null; rm -rf "$2"; fi"#;
    Command::new("sh")
        .arg("-c")
        .arg(WATCH)
        .arg(std::process::id().to_string())
        .arg(server.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Sends `signal` (`STOP`, `CONT`, …) to `pid` with kill(1): no `unsafe` needed.
fn signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -{signal} {pid} failed: {status}"
        )))
    }
}

/// Runs `command` with its output in `output` (a file), killing it after `limit`.
fn run_with_limit(
    mut command: Command,
    output: &Path,
    limit: Duration,
) -> io::Result<(ExitStatus, String)> {
    let file = fs::File::create(output)?;
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{command:?} did not finish within {limit:?}; its output:\n{}",
                    fs::read_to_string(output).unwrap_or_default()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((status, fs::read_to_string(output).unwrap_or_default()))
}

/// Polls `check` every 20 ms until it returns `Ok(true)` or `limit` passes; then fails
/// with `what` and the last error `check` returned.
fn wait_for(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> io::Result<bool>,
) -> io::Result<()> {
    let started = Instant::now();
    let mut last = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last = Some(error),
        }
        if started.elapsed() > limit {
            let detail = last.map_or_else(String::new, |error| format!(" (last error: {error})"));
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} within {limit:?}{detail}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `error` with `logs` appended (for failures that involve several servers).
fn with_logs(error: io::Error, logs: &str) -> io::Error {
    io::Error::new(error.kind(), format!("{error}\n{logs}"))
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> &str {
    let mut start = text.len();
    for _ in 0..=lines {
        match text[..start].rfind('\n') {
            Some(at) => start = at,
            None => return text,
        }
    }
    &text[start + 1..]
}

/// The value of `field:` in an `INFO` reply or another `field:value` text.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The `redis-cli` to use: [`REDIS_CLI_ENV`], else beside [`REDIS_BIN_ENV`], else `PATH`.
fn redis_cli_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(REDIS_CLI_ENV) {
        return PathBuf::from(path);
    }
    std::env::var_os(REDIS_BIN_ENV)
        .map(PathBuf::from)
        .and_then(|server| Some(server.parent()?.join("redis-cli")))
        .filter(|cli| cli.is_file())
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

/// A `NotFound` error that names how to install `binary`.
fn not_found(binary: &OsStr, env: &str, install: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "`{}` not found: {install} or point {env} at the binary",
            Path::new(binary).display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 1), "");
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nprocess_id:42\r\nrole:master\r\n";
        assert_eq!(info_field(info, "process_id"), Some("42"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "process"), None);
    }
}
