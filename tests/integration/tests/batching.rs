//! Commands that tasks send to one server at about the same time go out as one pipeline
//! (`lock-runtime/src/driver/batching.rs`): each still gets its own reply or error, in
//! the order the tasks sent them, and a cancelled caller's command still goes out.

use std::time::Duration;

use lock_runtime::LockError;
use lock_tests_integration::{Fixture, keys, raw_connection};

const TASKS: usize = 64;
const PAIRS: usize = 40;

/// `INFO stats` counters of the server at `url`: commands processed and reads.
async fn commands_and_reads(url: &str) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut raw_connection(url).await)
        .await
        .unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in INFO stats"))
    };
    (
        field("total_commands_processed"),
        field("total_reads_processed"),
    )
}

/// 64 tasks taking locks at once: the server reads their commands tens at a time, every
/// pair succeeds, and a release that fails on the server (its key was replaced by a
/// hash) fails alone, with the server's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_go_out_together_each_with_its_own_reply() {
    let fx = Fixture::redis();
    let url = fx.url();
    // Connected (and the release script loaded) before counting.
    let warm = fx.locker.lock("warm").acquire().await.unwrap();
    assert!(warm.release().await.unwrap());
    let before = commands_and_reads(&url).await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (locker, url) = (fx.locker.clone(), url.clone());
        tasks.spawn(async move {
            for pair in 0..PAIRS {
                let name = format!("batch:{task}:{pair}");
                let guard = locker.lock(name.as_str()).acquire().await.unwrap();
                if task == 0 && pair == PAIRS / 2 {
                    let key = format!("lock:{{{name}}}");
                    let _: () = redis::pipe()
                        .del(&key)
                        .hset(&key, "not", "a lock")
                        .query_async(&mut raw_connection(&url).await)
                        .await
                        .unwrap();
                    let failed = guard.release().await.unwrap_err();
                    assert!(
                        matches!(&failed, LockError::Backend { .. })
                            && format!("{failed:?}").contains("WRONGTYPE"),
                        "{failed:?}"
                    );
                    continue;
                }
                assert!(guard.release().await.unwrap(), "{name} lost");
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    let after = commands_and_reads(&url).await;
    let (commands, reads) = (after.0 - before.0, after.1 - before.1);
    assert!(
        commands >= (TASKS * PAIRS * 2) as u64,
        "{commands} commands"
    );
    // Each task's commands went out one by one before: about 9 per read.
    let per_read = commands as f64 / reads as f64;
    assert!(
        per_read >= 16.0,
        "{commands} commands in {reads} reads ({per_read:.1} per read)"
    );
}

/// The server forgot its scripts while 64 releases were on their way in one pipeline:
/// each got its own `NOSCRIPT`, loaded the script and went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_batched_after_a_script_flush_load_it_again() {
    let fx = Fixture::redis();
    let mut guards = Vec::new();
    for index in 0..TASKS {
        guards.push(
            fx.locker
                .lock(format!("flushed:{index}"))
                .acquire()
                .await
                .unwrap(),
        );
    }
    // The release script loaded, then forgotten.
    let first = guards.pop().unwrap();
    assert!(first.release().await.unwrap());
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw_connection(&fx.url()).await)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for guard in guards {
        tasks.spawn(guard.release());
    }
    let mut released = 0;
    while let Some(outcome) = tasks.join_next().await {
        assert!(outcome.unwrap().unwrap(), "a lock lost");
        released += 1;
    }
    assert_eq!(released, TASKS - 1);
    let left = keys(&fx.url(), "lock:*").await;
    assert!(left.is_empty(), "{left:?}");
}

/// Acquires cancelled right after their `SET NX` joined a batch: the release their
/// cancellation sends reaches the server after the `SET NX` (a release overtaking it
/// would leave the key until its TTL ran out), so no lock is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_cancelled_in_a_batch_leave_no_lock_behind() {
    let fx = Fixture::redis();
    let locker = fx.locker.clone();
    let warm = locker.lock("warm").acquire().await.unwrap();
    assert!(warm.release().await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..64 {
        let locker = locker.clone();
        tasks.spawn(async move {
            let mut cancelled = 0;
            for round in 0..50 {
                // Polled once: the `SET NX` is queued, then the acquire is dropped.
                let attempt = locker.lock(format!("cancel:{task}:{round}")).acquire();
                if tokio::time::timeout(Duration::ZERO, attempt).await.is_err() {
                    cancelled += 1;
                }
                tokio::task::yield_now().await;
            }
            cancelled
        });
    }
    let mut cancelled = 0;
    while let Some(task) = tasks.join_next().await {
        cancelled += task.unwrap();
    }
    assert!(cancelled > 0, "no acquire was cancelled in flight");
    assert!(
        locker.flush().await,
        "the cancelled acquires' releases did not finish"
    );
    let left = keys(&fx.url(), "lock:*").await;
    assert!(
        left.is_empty(),
        "{} of {cancelled} cancelled acquires left a lock: {left:?}",
        left.len()
    );
}
