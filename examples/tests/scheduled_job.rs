//! The `scheduled_job` demo: three scheduler processes, one run per window.

mod support;

use lock_runtime::testing::RedisServer;
use redis::Commands;
use support::run_example;

#[test]
fn the_job_runs_once_per_window_across_three_processes() {
    const WINDOWS: u64 = 4;
    let server = RedisServer::start().unwrap();
    let output = run_example("scheduled_job", Some(&server.url()), &["--windows=4"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 instances (separate processes)"),
        "{stdout}"
    );
    // Check Redis itself, not the demo's own verdict.
    let runs: Vec<String> = support::redis(&server)
        .lrange("jobs:cleanup:runs", 0, -1)
        .unwrap();
    let mut windows: Vec<u64> = runs
        .iter()
        .map(|run| run.split_once(':').unwrap().0.parse().unwrap())
        .collect();
    windows.sort_unstable();
    assert_eq!(windows, (0..WINDOWS).collect::<Vec<_>>(), "{runs:?}");
    assert!(
        runs.iter().all(|run| run.ends_with("instance-1")
            || run.ends_with("instance-2")
            || run.ends_with("instance-3")),
        "{runs:?}"
    );
}
