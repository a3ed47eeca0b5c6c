//! Regression tests of the hardening issue: each one failed on the code before the fix
//! (hangs, broken promises, unbounded state), and says in its first line what broke.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lock_runtime::testing::RedisServer;
use lock_runtime::{LockError, Locker};
use lock_tests_integration::{Fixture, eventually, query, until_free};

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

/// A runtime of its own, like one `#[tokio::test]` of several sharing a locker.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime on the calling thread only (`#[tokio::test]`'s default flavor).
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every command the server at `url` receives from now on, as MONITOR prints it.
async fn monitor(url: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let client = redis::Client::open(url).unwrap();
    let mut monitor = client.get_async_monitor().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = monitor.on_message::<String>();
        while let Some(line) = lines.next().await {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The monitored commands that contain `needle`, waiting up to 2 s for at least `count`.
async fn monitored(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
    count: usize,
) -> Vec<String> {
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while found.len() < count {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) if line.contains(needle) => found.push(line),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    found
}

// 1. Hangs and lost wake-ups

/// A runtime that ended with requests in flight stranded the locker: later acquires and
/// releases waited forever (and the first command on a new runtime failed).
#[test]
fn a_locker_survives_runtimes_ending_mid_request() {
    let server = RedisServer::start().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    for round in 0..3 {
        // Many requests in flight when the runtime goes away.
        let first = runtime();
        first.block_on(async {
            for task in 0..64 {
                let locker = locker.clone();
                tokio::spawn(async move {
                    loop {
                        let name = format!("busy:{task}");
                        if let Ok(guard) = locker.lock(name).acquire().await {
                            let _ = guard.release().await;
                        }
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        first.shutdown_background();

        // On a fresh runtime every request completes, and none fails.
        runtime().block_on(async {
            let bound = Duration::from_secs(5);
            for index in 0..20 {
                let name = format!("after:{round}:{index}");
                let guard = tokio::time::timeout(bound, locker.lock(name).acquire())
                    .await
                    .expect("an acquire hung after a runtime ended")
                    .expect("an acquire failed after a runtime ended");
                let released = tokio::time::timeout(bound, guard.release())
                    .await
                    .expect("a release hung after a runtime ended");
                assert!(released.unwrap());
            }
        });
    }
}

/// After a runtime switch the notification connection stayed dead, so waiters were woken
/// by their poll interval (seconds) instead of the release (milliseconds).
#[test]
fn hand_offs_still_wake_waiters_after_a_runtime_switch() {
    let server = RedisServer::start().unwrap();
    let poll = Duration::from_secs(10);
    let locker = Locker::builder()
        .poll_interval(poll)
        .redis(&server.url())
        .unwrap();
    let holder_locker = Locker::redis(&server.url()).unwrap();
    let wait_once = |name: &'static str| {
        runtime().block_on(async {
            let holder = holder_locker.lock(name).acquire().await.unwrap();
            let locker = locker.clone();
            let waiter = tokio::spawn(async move {
                let guard = locker
                    .lock(name)
                    .wait(Duration::from_secs(30))
                    .acquire()
                    .await
                    .unwrap();
                let got_it = Instant::now();
                assert!(guard.release().await.unwrap());
                got_it
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            let released_at = Instant::now();
            assert!(holder.release().await.unwrap());
            let delay = waiter.await.unwrap().duration_since(released_at);
            assert!(
                delay < Duration::from_secs(3),
                "{name}: woken {delay:?} after the release (poll is {poll:?})"
            );
        });
    };
    wait_once("first-runtime");
    wait_once("second-runtime");
    wait_once("third-runtime");
}

/// Cancelling the first callers failed the callers whose requests were combined behind
/// them ("could not reach the server" while the server was fine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_some_callers_fails_none_of_the_others() {
    let server = RedisServer::start().unwrap();
    for round in 0..10 {
        // A fresh locker: its first requests are still connecting when cancelled.
        let locker = Locker::redis(&server.url()).unwrap();
        let mut tasks = Vec::new();
        for task in 0..24 {
            let locker = locker.clone();
            tasks.push(tokio::spawn(async move {
                let guard = locker.lock(format!("c:{round}:{task}")).acquire().await?;
                guard.release().await
            }));
        }
        tokio::task::yield_now().await;
        for cancelled in &tasks[..4] {
            cancelled.abort();
        }
        for (task, outcome) in tasks.into_iter().enumerate().skip(4) {
            let released = outcome.await.unwrap();
            assert!(
                matches!(released, Ok(true)),
                "round {round}, task {task}: {released:?}"
            );
        }
    }
}

// 2. Broken promises

/// Fencing tokens restarted at 1 when the server lost its data (restart without
/// persistence, eviction), so an old owner's token could repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_keep_growing_when_the_server_loses_them() {
    let mut fx = Fixture::redis();
    let mut last = 0;
    let take = |locker: Locker| async move {
        let guard = locker.lock("ledger").fencing().acquire().await.unwrap();
        let token = guard.fencing_token().unwrap();
        assert!(guard.release().await.unwrap());
        token
    };
    for _ in 0..5 {
        let token = take(fx.locker.clone()).await;
        assert!(token > last, "{token} after {last}");
        last = token;
    }
    // The counter is evicted (or expires).
    let () = query(&fx.url(), redis::cmd("DEL").arg("lock:{ledger}:fence")).await;
    let token = take(fx.locker.clone()).await;
    assert!(token > last, "after eviction: {token} after {last}");
    last = token;

    // The server restarts empty, while an auto-renewed owner holds the lock.
    let held = fx
        .locker
        .lock("ledger")
        .fencing()
        .ttl(Duration::from_secs(1))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    let old_token = held.fencing_token().unwrap();
    assert!(old_token > last);
    fx.server.as_mut().unwrap().restart().unwrap();
    let locker = fx.locker.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let locker = locker.clone();
            async move { locker.ping().await.is_ok() }
        })
        .await
    );
    let second = fx
        .another_locker()
        .lock("ledger")
        .fencing()
        .acquire()
        .await
        .unwrap();
    let new_token = second.fencing_token().unwrap();
    assert!(
        new_token > old_token,
        "the second owner's token {new_token} is not above the old owner's {old_token}"
    );
    // And the old owner learns that it lost the lock.
    tokio::time::timeout(Duration::from_secs(5), held.lost())
        .await
        .expect("the old owner still believes it holds the lock");
    assert!(second.release().await.unwrap());
}

/// A renewal set the expiry back to the TTL, undoing an `extend` (62 s became 2.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renewal_never_shortens_an_extended_lock() {
    let fx = Fixture::redis();
    let guard = fx
        .locker
        .lock("long-step")
        .ttl(Duration::from_secs(3))
        .renew_every(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap();
    guard.extend(Duration::from_secs(60)).await.unwrap();
    // Several renewals later.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let left = fx.locker.remaining("long-step").await.unwrap().unwrap();
    assert!(
        left > Duration::from_secs(55),
        "renewal shortened it to {left:?}"
    );
    assert!(guard.remaining() > Duration::from_secs(55));
    assert!(guard.release().await.unwrap());
}

/// A TTL with a fraction of a millisecond was truncated on the server (PX 1 for 1.5 ms), so
/// the guard's lease outlived the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_round_up_to_whole_milliseconds() {
    let fx = Fixture::redis();
    fx.locker.ping().await.unwrap();
    let mut lines = monitor(&fx.url()).await;
    let guard = fx
        .locker
        .lock("fraction")
        .ttl(Duration::from_micros(1_500))
        .acquire()
        .await;
    let sets = monitored(&mut lines, "\"lock:{fraction}\"", 1).await;
    assert!(
        sets.first()
            .is_some_and(|set| set.ends_with("\"PX\" \"2\"")),
        "{sets:?}"
    );
    drop(guard);
}

/// `release_after` with under 1 ms left sent `PEXPIRE 0`: it deleted the key without a
/// hand-off and reported the held lock as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_with_under_a_millisecond_left_keeps_the_key() {
    let fx = Fixture::redis();
    for round in 0..20 {
        let guard = fx
            .locker
            .lock(format!("window:{round}"))
            .acquire()
            .await
            .unwrap();
        let handle = guard.handle();
        let min_hold = guard.held_for() + Duration::from_micros(300);
        assert!(
            guard.release_after(min_hold).await.unwrap(),
            "round {round}: a held lock was reported lost"
        );
        assert!(!handle.is_lost(), "round {round}");
    }
}

/// Huge inputs panicked: `extend(Duration::MAX)` on the memory backend and
/// `poll_interval(Duration::MAX)` at the first contended wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_inputs_are_config_errors_not_panics() {
    for fx in [Fixture::memory(), Fixture::redis()] {
        let guard = fx.locker.lock("huge").acquire().await.unwrap();
        let err = guard.extend(Duration::MAX).await.unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err:?}");
        for request in [
            fx.locker.lock("huge").wait(Duration::MAX),
            fx.locker.lock("huge").retry(3, Duration::MAX),
            fx.locker.lock("huge").min_hold(Duration::MAX).auto_renew(),
            fx.locker.lock("huge").renew_every(Duration::MAX),
        ] {
            let err = request.acquire().await.unwrap_err();
            assert!(matches!(err, LockError::Config(_)), "{err:?}");
        }
        assert!(guard.release().await.unwrap());
    }
    let err = Locker::builder()
        .poll_interval(Duration::MAX)
        .memory()
        .unwrap_err();
    assert!(matches!(err, LockError::Config(_)), "{err:?}");
    let err = Locker::builder()
        .command_timeout(Duration::MAX)
        .redis("redis://127.0.0.1:1")
        .unwrap_err();
    assert!(matches!(err, LockError::Config(_)), "{err:?}");
}

/// Owner tokens had 60 random bits, not the 64 documented; they now carry a v4 UUID's
/// 122 random bits from the operating system, then a counter.
#[tokio::test]
async fn owner_tokens_carry_122_random_bits() {
    let locker = Locker::memory();
    let a = locker.lock("a").acquire().await.unwrap();
    let b = locker.lock("b").acquire().await.unwrap();
    assert_eq!(a.token().len(), 48, "{}", a.token());
    assert_eq!(&a.token()[12..13], "4", "a v4 UUID's version digit");
    assert_eq!(a.token()[..32], b.token()[..32], "one prefix per process");
    assert_ne!(a.token(), b.token());
}

// 3. Unbounded state and one slow script

/// Waiters that gave up stayed in the queue list forever while the lock stayed contended
/// (400 timed-out waiters: 400 tokens in `:queue`, 0 in `:waiting`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_that_give_up_leave_no_trace() {
    let fx = Fixture::redis();
    let holder = fx.locker.lock("popular").acquire().await.unwrap();
    // One patient waiter keeps the queue alive throughout.
    let patient = {
        let locker = fx.locker.clone();
        tokio::spawn(async move {
            locker
                .lock("popular")
                .wait(Duration::from_secs(30))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..400 {
        let locker = fx.locker.clone();
        waiters.spawn(async move {
            locker
                .lock("popular")
                .wait(Duration::from_millis(300))
                .acquire()
                .await
        });
    }
    while let Some(waited) = waiters.join_next().await {
        assert!(matches!(
            waited.unwrap(),
            Err(LockError::WaitTimeout { .. })
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // their clean-ups run
    let queued = queue_length(&fx.url(), "lock:{popular}:queue").await;
    assert_eq!(
        queued, 1,
        "{queued} waiters queued; only the patient one is left"
    );
    assert!(holder.release().await.unwrap());
    let guard = patient.await.unwrap().unwrap();
    assert!(guard.release().await.unwrap());
}

/// How many entries the queue at `key` holds (a list before the fix, a sorted set after).
async fn queue_length(url: &str, key: &str) -> u64 {
    let kind: String = query(url, redis::cmd("TYPE").arg(key)).await;
    let command = if kind == "list" { "LLEN" } else { "ZCARD" };
    query(url, redis::cmd(command).arg(key)).await
}

/// A release skips up to 16 dead entries (waiters killed while queued) and hands the lock
/// to the live waiter behind them with its message, as the memory backend does; it does
/// not free the lock for whoever comes first while the live waiter sleeps out its poll
/// interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_hands_over_past_sixteen_dead_waiters() {
    const DEAD: u32 = 16;
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let locker = Locker::redis(&url).unwrap();
    let holder = locker.lock("dead16").acquire().await.unwrap();
    // Waiters queued before the live one and killed: their entries are alive when the
    // live waiter joins (so its attempt keeps them) and dead when the holder releases.
    let (seconds, micros): (u64, u64) = query(&url, &redis::cmd("TIME")).await;
    let alive_until = seconds * 1_000_000 + micros + 1_500_000;
    for index in 1..=DEAD {
        let token = format!("dead-{index}");
        let () = query(
            &url,
            redis::cmd("ZADD")
                .arg("lock:{dead16}:queue")
                .arg(index)
                .arg(&token),
        )
        .await;
        let () = query(
            &url,
            redis::cmd("HSET")
                .arg("lock:{dead16}:waiting")
                .arg(&token)
                .arg(format!("{alive_until}:2000:0:0:p:nobody")),
        )
        .await;
    }
    // Polling every 30 s: only the hand-off's message wakes it in time.
    let waiter = Locker::builder()
        .poll_interval(Duration::from_secs(30))
        .redis(&url)
        .unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .lock("dead16")
            .wait(Duration::from_secs(60))
            .acquire()
            .await
    });
    assert!(
        eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                query::<u64>(&url, redis::cmd("ZCARD").arg("lock:{dead16}:queue")).await
                    == u64::from(DEAD) + 1
            }
        })
        .await,
        "the live waiter never queued"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // the 16 entries are dead now
    assert!(holder.release().await.unwrap());
    let guard = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the live waiter was not handed the lock")
        .unwrap()
        .unwrap();
    assert!(guard.release().await.unwrap());
    let left: u64 = query(&url, redis::cmd("ZCARD").arg("lock:{dead16}:queue")).await;
    assert_eq!(left, 0, "the dead entries stayed");
}

/// A release walked every dead queue entry
/// Redis for 402 ms. A release now looks at no more than 16 entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_does_bounded_work_after_many_abandoned_waiters() {
    const WAITERS: u32 = 20_000;
    let fx = Fixture::redis();
    let holder = fx.locker.lock("crowded").acquire().await.unwrap();
    let mut crowd = Command::new(WORKER)
        .args([
            "abandon",
            &fx.url(),
            "crowded",
            &WAITERS.to_string(),
            "1000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = fx.url();
    let queued = eventually(Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let waiting: u32 = query(&url, redis::cmd("HLEN").arg("lock:{crowded}:waiting")).await;
            waiting == WAITERS
        }
    })
    .await;
    // A live waiter behind the crowd keeps the queue from expiring.
    let live = {
        let locker = Locker::builder()
            .poll_interval(Duration::from_millis(500))
            .redis(&url)
            .unwrap();
        tokio::spawn(async move {
            locker
                .lock("crowded")
                .wait(Duration::from_secs(60))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    crowd.kill().unwrap(); // SIGKILL: their entries stay, and die 3 poll intervals later
    crowd.wait().unwrap();
    assert!(queued, "the crowd never queued");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert!(queue_length(&url, "lock:{crowded}:queue").await > u64::from(WAITERS) / 2);

    let () = query(
        &url,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0),
    )
    .await;
    let () = query(&url, redis::cmd("SLOWLOG").arg("RESET")).await;
    let token = holder.token().to_owned();
    assert!(holder.release().await.unwrap());
    let entries: Vec<redis::Value> = query(&url, redis::cmd("SLOWLOG").arg("GET").arg(100)).await;
    let log: Vec<(u64, u64, u64, Vec<String>)> = entries
        .into_iter()
        .map(|entry: redis::Value| {
            let redis::Value::Array(fields) = entry else {
                panic!("slowlog entry {entry:?}")
            };
            let number =
                |index: usize| -> u64 { redis::from_redis_value_ref(&fields[index]).unwrap() };
            let args: Vec<String> = redis::from_redis_value_ref(&fields[3]).unwrap();
            (number(0), number(1), number(2), args)
        })
        .collect();
    let release = log
        .iter()
        .find(|(.., args)| {
            args.first()
                .is_some_and(|cmd| cmd.eq_ignore_ascii_case("evalsha"))
                && args.contains(&token)
        })
        .expect("the release script in the slow log");
    eprintln!(
        "the release took {} us with {WAITERS} abandoned waiters",
        release.2
    );
    assert!(
        release.2 < 5_000,
        "the release took {} us with {WAITERS} abandoned waiters",
        release.2
    );
    // The live waiter still gets the lock (by its own attempts, which prune the dead).
    let guard = tokio::time::timeout(Duration::from_secs(30), live)
        .await
        .expect("the live waiter never got the lock")
        .unwrap()
        .unwrap();
    assert!(guard.release().await.unwrap());
}

/// Under out-of-memory, combined scripts failed as a whole: a release failed because an
/// unrelated acquire in the same call could not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_succeed_and_acquires_fail_one_by_one_out_of_memory() {
    let server = RedisServer::start().unwrap();
    let () = query(
        &server.url(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("noeviction"),
    )
    .await;
    let locker = Locker::redis(&server.url()).unwrap();
    let mut guards = Vec::new();
    for index in 0..200 {
        guards.push(
            locker
                .lock(format!("held:{index}"))
                .acquire()
                .await
                .unwrap(),
        );
    }
    let used: String = query(&server.url(), redis::cmd("INFO").arg("memory")).await;
    let used: u64 = used
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let () = query(
        &server.url(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used / 2),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, guard) in guards.into_iter().enumerate() {
        tasks.spawn(async move {
            (
                true,
                index,
                guard.release().await.map(|held| held.then_some(())),
            )
        });
        let locker = locker.clone();
        tasks.spawn(async move {
            let acquired = locker.lock(format!("new:{index}")).acquire().await;
            (false, index, acquired.map(|_guard| Some(())))
        });
    }
    let (mut released, mut refused) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (true, index, outcome) => {
                assert!(
                    matches!(outcome, Ok(Some(()))),
                    "release {index}: {outcome:?}"
                );
                released += 1;
            }
            (false, index, outcome) => match outcome {
                Err(LockError::Backend { source, .. }) if source.code() == Some("OOM") => {
                    refused += 1
                }
                other => panic!("acquire {index} out of memory: {other:?}"),
            },
        }
    }
    assert_eq!((released, refused), (200, 200));
}

/// Every fenced lock left a counter key behind forever (one production of a peer had 25 M
/// of them); now the counter expires with the lock's lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_fenced_locks_leave_no_keys() {
    let fx = Fixture::redis();
    for index in 0..300 {
        let guard = fx
            .locker
            .lock(format!("fenced:{index}"))
            .fencing()
            .ttl(Duration::from_millis(200))
            .acquire()
            .await
            .unwrap();
        assert!(guard.release().await.unwrap());
    }
    let url = fx.url();
    let empty = eventually(Duration::from_secs(5), || {
        let url = url.clone();
        async move { query::<u64>(&url, &redis::cmd("DBSIZE")).await == 0 }
    })
    .await;
    let left: u64 = query(&url, &redis::cmd("DBSIZE")).await;
    assert!(empty, "{left} keys left behind by idle locks");
}

// 4. Races

/// `release_after` racing a renewal in flight: the renewal landed after the `min_hold`
/// expiry and kept a job's lock for a whole TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_is_not_undone_by_a_renewal_in_flight() {
    let fx = Fixture::redis();
    for round in 0..150 {
        let name = format!("job:{round}");
        let guard = fx
            .locker
            .lock(&name)
            .ttl(Duration::from_secs(20))
            .renew_every(Duration::from_millis(1))
            .acquire()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_micros(fastrand_micros(round))).await;
        assert!(
            guard
                .release_after(Duration::from_millis(400))
                .await
                .unwrap()
        );
        // Any renewal sent before the release has landed by now.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let left = fx
            .locker
            .remaining(&name)
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(
            left <= Duration::from_millis(400),
            "round {round}: a renewal kept the job's lock for {left:?}"
        );
    }
}

fn fastrand_micros(round: u32) -> u64 {
    u64::from(round * 37 % 3_000)
}

/// A cancelled `release_report()` made the guard's drop release again, find the key gone,
/// and report a false "lock lost".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_release_is_not_reported_as_lost() {
    let fx = Fixture::redis();
    let server = fx.server.as_ref().unwrap();
    // Load the scripts first, so the frozen release really runs when the server thaws
    // (a NOSCRIPT reply would release nothing).
    let warm = fx.locker.lock("warm-up").acquire().await.unwrap();
    assert!(warm.release().await.unwrap());
    let guard = fx
        .locker
        .lock("released-once")
        .ttl(Duration::from_secs(60))
        .acquire()
        .await
        .unwrap();
    let handle = guard.handle();
    // The release reaches the frozen server, and is cancelled before its answer.
    server.pause().unwrap();
    let release = guard.release_report();
    let cancelled = tokio::time::timeout(Duration::from_millis(100), release).await;
    assert!(cancelled.is_err());
    server.resume().unwrap();
    let locker = fx.locker.clone();
    assert!(until_free(&locker, "released-once").await);
    let lost = tokio::time::timeout(Duration::from_millis(500), handle.lost()).await;
    assert!(lost.is_err(), "a released lock was reported lost");
    assert!(!handle.is_lost());
}

// 5. Found by review

/// Renewals ran on the task of the first runtime that registered one: locks of other
/// runtimes stopped being renewed (or claimed after a hand-off) when it ended, or while it
/// sat idle.
#[test]
fn renewals_belong_to_the_runtime_that_took_the_lock() {
    let server = RedisServer::start().unwrap();
    for first_runtime in ["ended", "idle"] {
        let locker = Locker::builder()
            .poll_interval(Duration::from_millis(200))
            .redis(&server.url())
            .unwrap();
        // The first runtime to register a renewal; it ends, or idles, later.
        let first = if first_runtime == "idle" {
            current_thread_runtime()
        } else {
            runtime()
        };
        first.block_on(async {
            let warm = locker
                .lock("warm")
                .ttl(Duration::from_millis(300))
                .auto_renew()
                .acquire()
                .await
                .unwrap();
            assert!(warm.release().await.unwrap());
        });
        let second = runtime();
        let (renewed, handed) = second.block_on(async {
            let renewed = locker
                .lock(format!("job:{first_runtime}"))
                .ttl(Duration::from_millis(300))
                .auto_renew()
                .acquire()
                .await
                .unwrap();
            // A lock handed over by a release is claimed for its TTL in the background.
            let name = format!("handed:{first_runtime}");
            let holder = locker.lock(name.as_str()).acquire().await.unwrap();
            let waiting = locker
                .lock(name.as_str())
                .ttl(Duration::from_secs(30))
                .wait(Duration::from_secs(10));
            let waiter = tokio::spawn(waiting.acquire());
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(holder.release().await.unwrap());
            (renewed, waiter.await.unwrap().unwrap())
        });
        if first_runtime == "ended" {
            drop(first);
        }
        second.block_on(async {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            assert!(
                !renewed.is_lost() && renewed.is_held().await.unwrap(),
                "{first_runtime}: not renewed"
            );
            assert!(
                !handed.is_lost() && handed.is_held().await.unwrap(),
                "{first_runtime}: the hand-off was not claimed"
            );
            assert!(
                handed.remaining() > Duration::from_secs(20),
                "{:?}",
                handed.remaining()
            );
        });
    }
}

/// `extend` on a handle kept extending a lock after `release_after` or `keep` (a key
/// meant to live 2 s lived an hour), and called a released lock `Lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lock_cannot_be_extended() {
    for fx in [Fixture::redis(), Fixture::memory()] {
        let guard = fx
            .locker
            .lock("report")
            .ttl(Duration::from_secs(10))
            .acquire()
            .await
            .unwrap();
        let handle = guard.handle();
        assert!(guard.release_after(Duration::from_secs(2)).await.unwrap());
        let extended = handle.extend(Duration::from_secs(3600)).await;
        assert!(
            matches!(extended, Err(LockError::NotHeld { .. })),
            "{extended:?}"
        );
        let left = fx
            .locker
            .remaining("report")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(left <= Duration::from_secs(2), "the key now lives {left:?}");

        let kept = fx
            .locker
            .lock("window")
            .ttl(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        let handle = kept.handle();
        kept.keep();
        assert!(matches!(
            handle.extend(Duration::from_secs(3600)).await,
            Err(LockError::NotHeld { .. })
        ));

        let released = fx.locker.lock("x").acquire().await.unwrap();
        let handle = released.handle();
        assert!(released.release().await.unwrap());
        let after = handle.extend(Duration::from_secs(1)).await;
        assert!(matches!(after, Err(LockError::NotHeld { .. })), "{after:?}");
        assert!(!handle.is_lost());
    }
}

/// One lock key overwritten with another type made the whole batched renewal script fail:
/// every other lock in the batch was retried until its lease ran out, then lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_key_does_not_cost_the_others_their_renewals() {
    let fx = Fixture::redis();
    fx.locker.ping().await.unwrap(); // connected: the 20 acquisitions share a renewal batch
    let mut guards = Vec::new();
    for index in 0..20 {
        guards.push(
            fx.locker
                .lock(format!("job:{index}"))
                .ttl(Duration::from_millis(1_800))
                .renew_every(Duration::from_millis(600))
                .acquire()
                .await
                .unwrap(),
        );
    }
    let () = query(&fx.url(), redis::cmd("DEL").arg("lock:{job:0}")).await;
    let _: i64 = query(
        &fx.url(),
        redis::cmd("HSET").arg("lock:{job:0}").arg("f").arg("v"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let lost: Vec<&str> = guards[1..]
        .iter()
        .filter(|guard| guard.is_lost())
        .map(|guard| guard.name())
        .collect();
    assert!(
        lost.is_empty(),
        "healthy locks lost because job:0 was overwritten: {lost:?}"
    );
    tokio::time::timeout(Duration::from_secs(3), guards[0].lost())
        .await
        .expect("the tampered lock was not reported lost");
}

/// A guard dropped right before its runtime ended was never released (its key stayed for
/// the whole TTL); `Locker::flush` awaits the background release.
#[test]
fn flush_finishes_the_releases_of_dropped_guards() {
    let server = RedisServer::start().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    for flavor in ["current-thread", "multi-thread"] {
        let short_lived = if flavor == "current-thread" {
            current_thread_runtime()
        } else {
            runtime()
        };
        let name = format!("nightly:{flavor}");
        short_lived.block_on(async {
            let guard = locker
                .lock(name.as_str())
                .ttl(Duration::from_secs(30))
                .acquire()
                .await
                .unwrap();
            drop(guard);
            assert!(locker.flush().await, "{flavor}: the release did not finish");
        });
        drop(short_lived);
        runtime().block_on(async {
            assert!(
                !locker.is_locked(&name).await.unwrap(),
                "{flavor}: the key outlived main"
            );
        });
    }
}
