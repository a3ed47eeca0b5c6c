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

#[test]
fn with_leader_one_instance_runs_the_schedule_and_another_takes_over_when_it_dies() {
    let server = RedisServer::start().unwrap();
    let output = run_example("scheduled_job", Some(&server.url()), &["--leader"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Check Redis itself: `window:instance:epoch` per run.
    let runs: Vec<String> = support::redis(&server)
        .lrange("jobs:cleanup:leader-runs", 0, -1)
        .unwrap();
    let runs: Vec<(u64, String, u64)> = runs
        .iter()
        .map(|run| {
            let fields: Vec<&str> = run.split(':').collect();
            (
                fields[0].parse().unwrap(),
                fields[1].to_owned(),
                fields[2].parse().unwrap(),
            )
        })
        .collect();
    // No window ran twice, and runs follow the windows with epochs that never go back.
    assert!(
        runs.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "{runs:?}"
    );
    assert!(
        runs.windows(2).all(|pair| pair[0].2 <= pair[1].2),
        "{runs:?}"
    );
    // The first leader ran the first windows; after its death another, with a larger
    // epoch, ran the last ones.
    let (first, last) = (runs.first().unwrap(), runs.last().unwrap());
    assert_ne!(first.1, last.1, "{runs:?}");
    assert!(first.2 < last.2, "{runs:?}");
    assert!(
        runs.iter()
            .filter(|run| run.1 == first.1)
            .all(|run| run.0 <= 3),
        "{runs:?}"
    );
    assert!(stdout.contains("killed instance-"), "{stdout}");
}
