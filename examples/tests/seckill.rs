//! The `seckill` demo with a small configuration: its instances are separate processes
//! against a private redis-server, and with the lock nothing is oversold.

mod support;

use lock_runtime::testing::RedisServer;
use serde_json::Value;
use support::run_example;

const SMALL: &[&str] = &[
    "--instances=2",
    "--buyers=20",
    "--stock=5",
    "--products=4",
    "--json",
];

/// The JSON rows the demo printed, by scenario mode.
fn rows(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("a JSON row"))
        .collect()
}

fn assert_locked_rows_are_exact(rows: &[Value]) {
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in rows.iter().filter(|row| row["mode"] != "no-lock") {
        assert_eq!(row["oversold"], 0, "{row}");
        assert_eq!(row["duplicates"], 0, "{row}");
        assert_eq!(row["final_stock"], 0, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["sold"], row["stock"], "{row}");
    }
    let unlocked = &rows[0];
    assert_eq!(unlocked["mode"], "no-lock");
    // Every buyer who saw stock left bought: at least the stock is sold, usually more.
    assert!(
        unlocked["sold"].as_u64() >= unlocked["stock"].as_u64(),
        "{unlocked}"
    );
}

#[test]
fn with_the_lock_exactly_the_stock_is_sold_across_processes() {
    let server = RedisServer::start().unwrap();
    let output = run_example("seckill", Some(&server.url()), SMALL);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("2 instances (separate processes)"),
        "{stdout}"
    );
    let rows = rows(&output.stdout);
    assert_locked_rows_are_exact(&rows);
    // The sales are in the test's Redis, under the demo's namespace.
    let mut connection = support::redis(&server);
    let sales: Vec<String> = redis::cmd("KEYS")
        .arg("seckill:*:sales:*")
        .query(&mut connection)
        .unwrap();
    assert!(!sales.is_empty());
}

#[test]
fn without_redis_server_it_runs_on_the_memory_backend() {
    let output = std::process::Command::new(support::example("seckill"))
        .args(SMALL)
        .env_remove("REDIS_URL")
        .env(
            lock_runtime::testing::REDIS_BIN_ENV,
            "/nonexistent/redis-server",
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().next().unwrap().contains("in-memory backend"),
        "{stdout}"
    );
    assert_locked_rows_are_exact(&rows(&output.stdout));
}

#[test]
fn an_unreachable_redis_is_a_clear_error_and_exit_code_1() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.stop();
    let output = run_example("seckill", Some(&url), SMALL);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: cannot reach Redis at 127.0.0.1:"),
        "{stderr}"
    );
}
