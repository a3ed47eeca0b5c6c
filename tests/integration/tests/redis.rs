//! Behaviours that need a real Redis: several OS processes, crashes, server failures,
//! keys touched from outside, pub/sub wake-ups and cancelled commands.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lock_runtime::testing::RedisServer;
use lock_runtime::{LockError, Locker};
use lock_tests_integration::{Counter, Fixture, eventually, raw_connection, until_free};

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_exclude_each_other() {
    const PROCESSES: u64 = 4;
    const SECTIONS: u64 = 250;
    let fx = Fixture::redis();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(WORKER)
                .args(["count", &fx.url(), "processes", "counter:processes"])
                .arg(SECTIONS.to_string())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn lock-worker")
        })
        .collect();
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "worker failed: {:?}",
            output.status
        );
    }
    let mut counter = Counter::redis(&fx.url(), "counter:processes").await;
    assert_eq!(counter.get().await, PROCESSES * SECTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_lock_frees_itself_after_its_ttl() {
    let fx = Fixture::redis();
    let ttl = Duration::from_secs(2);
    let mut holder = Command::new(WORKER)
        .args(["hold", &fx.url(), "crash"])
        .arg(ttl.as_millis().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn lock-worker");
    let stdout = holder.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(line.trim(), "ACQUIRED");

    holder.kill().unwrap(); // SIGKILL: no release, no destructor
    holder.wait().unwrap();
    let killed_at = Instant::now();
    let left = fx
        .locker
        .remaining("crash")
        .await
        .unwrap()
        .expect("still held after the crash");
    assert!(
        fx.locker
            .lock("crash")
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );

    let guard = fx
        .locker
        .lock("crash")
        .wait(Duration::from_secs(20))
        .acquire()
        .await
        .unwrap();
    // Not before the dead holder's TTL ran out (less a little clock slack).
    let waited = killed_at.elapsed();
    assert!(
        waited + Duration::from_millis(100) >= left,
        "waited {waited:?}, TTL left {left:?}"
    );
    assert!(guard.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_waiter_holds_up_the_queue_for_its_claim_window_only() {
    let fx = Fixture::redis();
    let mut redis = raw_connection(&fx.url()).await;
    let queue_length = |redis: redis::aio::MultiplexedConnection| async move {
        let mut redis = redis;
        redis::cmd("ZCARD")
            .arg("lock:{dead-waiter}:queue")
            .query_async::<u64>(&mut redis)
            .await
            .unwrap()
    };
    let holder = fx
        .locker
        .lock("dead-waiter")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    // A waiter process that would keep the lock for 60 s, killed while queued.
    let mut waiter = Command::new(WORKER)
        .args(["wait", &fx.url(), "dead-waiter", "60000"])
        .spawn()
        .expect("spawn lock-worker");
    assert!(
        eventually(Duration::from_secs(10), || {
            let redis = redis.clone();
            async move { queue_length(redis).await == 1 }
        })
        .await,
        "the waiter process never joined the queue"
    );
    waiter.kill().unwrap(); // SIGKILL: it cannot leave the queue
    waiter.wait().unwrap();
    let other = fx.another_locker();
    let next = tokio::spawn(async move {
        let started = Instant::now();
        let guard = other
            .lock("dead-waiter")
            .wait(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap();
        (guard, started.elapsed())
    });
    assert!(
        eventually(Duration::from_secs(10), || {
            let redis = redis.clone();
            async move { queue_length(redis).await == 2 }
        })
        .await
    );
    assert!(holder.release().await.unwrap());
    // Handed to the dead waiter (its entry is still alive) for the claim window of two
    // poll intervals, not for the 60 s it asked for.
    let pttl: i64 = redis::cmd("PTTL")
        .arg("lock:{dead-waiter}")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        (1..=2000).contains(&pttl),
        "PTTL after the hand-off: {pttl}"
    );
    let (guard, waited) = tokio::time::timeout(Duration::from_secs(20), next)
        .await
        .expect("the live waiter never got the lock")
        .unwrap();
    eprintln!("the live waiter got the lock after {waited:?}");
    assert!(guard.release().await.unwrap());
}

/// A lock's queue keys belong to nobody once its waiters are gone: they expire at most
/// twice an entry's lifetime (3 poll intervals, 3 s by default) after the last attempt,
/// also when eviction dropped one of the two while a waiter kept attempting (each key
/// gets its own expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_keys_expire_after_a_killed_waiter_even_when_one_was_evicted() {
    let fx = Fixture::redis();
    let mut redis = raw_connection(&fx.url()).await;
    let holder = fx
        .locker
        .lock("queue-life")
        .ttl(Duration::from_secs(60))
        .acquire()
        .await
        .unwrap();
    let mut waiter = Command::new(WORKER)
        .args(["wait", &fx.url(), "queue-life", "60000"])
        .spawn()
        .expect("spawn lock-worker");
    let keys = ["lock:{queue-life}:queue", "lock:{queue-life}:waiting"];
    let exist = |redis: redis::aio::MultiplexedConnection, key: &'static str| async move {
        let mut redis = redis;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<u64>(&mut redis)
            .await
            .unwrap()
            == 1
    };
    assert!(
        eventually(Duration::from_secs(10), || exist(redis.clone(), keys[1])).await,
        "the waiter never joined the queue"
    );
    // Evicted, as `allkeys-lru` may: the waiter's next attempt writes the hash again.
    let () = redis::cmd("DEL")
        .arg(keys[1])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || exist(redis.clone(), keys[1])).await,
        "the waiter stopped attempting"
    );
    for key in keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!((1..=6_000).contains(&pttl), "{key}: PTTL {pttl}");
    }
    waiter.kill().unwrap(); // SIGKILL: it cannot leave the queue
    waiter.wait().unwrap();
    let killed_at = Instant::now();
    for key in keys {
        assert!(
            eventually(Duration::from_secs(10), || {
                let redis = redis.clone();
                async move { !exist(redis, key).await }
            })
            .await,
            "{key} outlived the killed waiter by 10 s"
        );
    }
    eprintln!("queue keys gone {:?} after the kill", killed_at.elapsed());
    // The holder never noticed.
    assert!(holder.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renew_keeps_a_short_lock_for_longer_than_its_ttl() {
    let fx = Fixture::redis();
    let guard = fx
        .locker
        .lock("renewed")
        .ttl(Duration::from_secs(1))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert!(
            guard.is_held().await.unwrap(),
            "lost after {:?}",
            started.elapsed()
        );
        assert!(!guard.is_lost());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        fx.another_locker()
            .lock("renewed")
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );
    assert!(guard.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_or_overwriting_the_key_fires_lost() {
    let fx = Fixture::redis();
    let mut redis = raw_connection(&fx.url()).await;
    for (name, tamper) in [("deleted", "DEL"), ("overwritten", "SET")] {
        let guard = fx
            .locker
            .lock(name)
            .ttl(Duration::from_secs(3))
            .auto_renew()
            .acquire()
            .await
            .unwrap();
        let lost = guard.lost();
        let mut command = redis::cmd(tamper);
        command.arg(guard.key());
        if tamper == "SET" {
            command.arg("someone-else");
        }
        let () = command.query_async(&mut redis).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), lost)
            .await
            .unwrap_or_else(|_| panic!("lost() did not fire after {tamper}"));
        assert!(guard.is_lost());
        // The renewal did not resurrect the key or touch the other owner's value.
        let value: Option<String> = redis::cmd("GET")
            .arg(guard.key())
            .query_async(&mut redis)
            .await
            .unwrap();
        let expected = (tamper == "SET").then(|| "someone-else".to_owned());
        assert_eq!(value, expected);
        assert!(
            !guard.release().await.unwrap(),
            "release must report the loss"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_reports_lost_when_redis_dies() {
    let mut fx = Fixture::redis();
    let guard = fx
        .locker
        .lock("outage")
        .ttl(Duration::from_secs(1))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    fx.server.as_mut().unwrap().stop();
    tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("lost() did not fire while Redis was down");
    assert!(guard.is_lost());
    assert!(matches!(
        guard.release().await,
        Err(LockError::Backend { .. }) | Err(LockError::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_the_release_not_by_polling() {
    let server = RedisServer::start().unwrap();
    // A poll fallback and a holder TTL far longer than the bound below: only the
    // release message can wake the waiter in time.
    let poll = Duration::from_secs(10);
    let waiter_locker = Locker::builder()
        .poll_interval(poll)
        .redis(&server.url())
        .unwrap();
    let holder_locker = Locker::redis(&server.url()).unwrap();
    for round in 0..3 {
        let holder = holder_locker
            .lock("wake")
            .ttl(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap();
        let locker = waiter_locker.clone();
        let waiter = tokio::spawn(async move {
            let guard = locker
                .lock("wake")
                .wait(Duration::from_secs(25))
                .acquire()
                .await
                .unwrap();
            let got_it = Instant::now();
            guard.release().await.unwrap();
            got_it
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let released_at = Instant::now();
        assert!(holder.release().await.unwrap());
        let got_it = waiter.await.unwrap();
        let delay = got_it.duration_since(released_at);
        eprintln!("round {round}: the waiter got the lock {delay:?} after the release");
        assert!(
            delay < Duration::from_secs(3),
            "round {round}: woken {delay:?} after the release (poll is {poll:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_acquire_leaves_no_lock_behind() {
    let fx = Fixture::redis();
    let server = fx.server.as_ref().unwrap();
    // Connect and load the scripts first, so the frozen EVALSHA really sets the key
    // when the server thaws (a NOSCRIPT reply would set nothing).
    let warm = fx.locker.lock("warm-up").acquire().await.unwrap();
    assert!(warm.release().await.unwrap());
    // Freeze the server so the SET is in flight, drop the acquire, then thaw it: the
    // server runs the SET, and the spawned cleanup must delete the key again.
    server.pause().unwrap();
    let acquire = fx
        .locker
        .lock("cancelled")
        .ttl(Duration::from_secs(60))
        .acquire();
    let dropped = tokio::time::timeout(Duration::from_millis(200), acquire).await;
    assert!(
        dropped.is_err(),
        "the acquire finished against a frozen server"
    );
    server.resume().unwrap();
    let locker = fx.another_locker();
    assert!(
        until_free(&locker, "cancelled").await,
        "the cancelled acquire's 60 s lock is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_release_future_still_releases() {
    let fx = Fixture::redis();
    let guard = fx
        .locker
        .lock("release-dropped")
        .ttl(Duration::from_secs(60))
        .acquire()
        .await
        .unwrap();
    // Poll the release once, then drop it.
    let release = guard.release();
    let _ = tokio::time::timeout(Duration::ZERO, release).await;
    let locker = fx.locker.clone();
    assert!(until_free(&locker, "release-dropped").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_typed_error_within_the_timeouts() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let locker = Locker::redis(&format!("redis://127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let err = locker
        .lock("x")
        .wait(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        LockError::Connect { server, .. } => assert_eq!(server, &format!("127.0.0.1:{port}")),
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(
        err.to_string().contains("cannot connect to Redis at"),
        "{err}"
    );
    assert!(matches!(
        locker.ping().await,
        Err(LockError::Connect { .. })
    ));
    assert!(matches!(
        locker.is_locked("x").await,
        Err(LockError::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_does_not_hang_an_acquire() {
    let server = RedisServer::start().unwrap();
    let locker = Locker::builder()
        .command_timeout(Duration::from_millis(300))
        .redis(&server.url())
        .unwrap();
    locker.ping().await.unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    let err = locker.lock("frozen").acquire().await.unwrap_err();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    server.resume().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locker_recovers_after_a_redis_restart() {
    let mut fx = Fixture::redis();
    let guard = fx.locker.lock("restart").acquire().await.unwrap();
    drop(guard);
    let server = fx.server.as_mut().unwrap();
    server.restart().unwrap();
    let locker = fx.locker.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let locker = locker.clone();
            async move {
                locker
                    .lock("restart")
                    .try_acquire()
                    .await
                    .is_ok_and(|g| g.is_some())
            }
        })
        .await,
        "the locker never reconnected"
    );
}

#[tokio::test]
async fn default_locker_is_not_configured_until_set() {
    // The only test in this binary that touches the process-wide default.
    let err = lock_runtime::default_locker().unwrap_err();
    assert!(matches!(err, LockError::NotConfigured), "{err:?}");
    assert!(err.to_string().contains("set_default"), "{err}");
    lock_runtime::set_default(Locker::memory());
    let locker = lock_runtime::default_locker().unwrap();
    let guard = locker.lock("default").acquire().await.unwrap();
    assert!(
        lock_runtime::default_locker()
            .unwrap()
            .is_locked("default")
            .await
            .unwrap()
    );
    assert!(guard.release().await.unwrap());
}

#[test]
fn a_missing_redis_binary_names_the_install_command() {
    // The child process runs `missing_binary_child` with the variable set, so the
    // environment of this process (and its other tests) is untouched.
    let err = std::thread::spawn(|| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "missing_binary_child",
                "--nocapture",
                "--include-ignored",
            ])
            .env(
                lock_runtime::testing::REDIS_BIN_ENV,
                "/nonexistent/redis-server",
            )
            .output()
    })
    .join()
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&err.stdout);
    assert!(err.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn missing_binary_child() {
    if std::env::var_os(lock_runtime::testing::REDIS_BIN_ENV)
        .is_none_or(|bin| bin != "/nonexistent/redis-server")
    {
        return; // only meaningful when run by the test above
    }
    let err = RedisServer::start().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(
        err.to_string().contains("apt-get install -y redis-server"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_reads_redis_url_and_lock_prefix() {
    let server = RedisServer::start().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "from_env_child", "--nocapture"])
        .env("REDIS_URL", server.url())
        .env("LOCK_PREFIX", "shop:")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    // The child's lock was taken on this server, under the prefix from the environment.
    let mut redis = raw_connection(&server.url()).await;
    // Its fencing token is kept under the prefix, and expires (no state for idle locks).
    let fence: Option<u64> = redis::cmd("GET")
        .arg("shop:{env}:fence")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(fence.is_some_and(|fence| fence > 0), "{fence:?}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg("shop:{env}:fence")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(pttl > 0, "the fencing token has no expiry: {pttl}");
}

#[tokio::test]
async fn from_env_child() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        return; // only meaningful when run by the test above
    };
    let locker = Locker::from_env().unwrap();
    assert_eq!(locker.prefix(), "shop:");
    let guard = locker.lock("env").fencing().acquire().await.unwrap();
    assert_eq!(guard.key(), "shop:{env}", "{url}");
    assert!(guard.release().await.unwrap());
}

/// Script calls Redis has executed so far.
async fn evalsha_calls(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_of_many_locks_are_batched() {
    const LOCKS: usize = 300;
    let fixture = Fixture::redis();
    let mut redis = raw_connection(&fixture.url()).await;
    let mut guards = Vec::new();
    for index in 0..LOCKS {
        let guard = fixture
            .locker
            .lock(format!("many:{index}"))
            .ttl(Duration::from_millis(600))
            .auto_renew()
            .acquire()
            .await
            .unwrap();
        guards.push(guard);
    }
    let before = evalsha_calls(&mut redis).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let calls = evalsha_calls(&mut redis).await - before;
    // One renewal per lock every 200 ms would be about 2,000 calls; batched, a few per
    // interval.
    assert!(
        calls < LOCKS as u64 / 2,
        "{calls} script calls to renew {LOCKS} locks"
    );
    assert!(guards.iter().all(|guard| !guard.is_lost()));
    for guard in guards {
        assert!(guard.release().await.unwrap());
    }
}

#[test]
fn renewal_restarts_when_the_runtime_of_its_first_use_is_gone() {
    let server = RedisServer::start().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    let hold = |name: &'static str| {
        let locker = locker.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            // The connection of the first runtime died with it; this runtime gets its own
            // (see "Runtimes and shutdown" in the crate docs).
            let reconnected = eventually(Duration::from_secs(5), || async {
                locker.ping().await.is_ok()
            })
            .await;
            assert!(reconnected);
            let guard = locker
                .lock(name)
                .ttl(Duration::from_millis(300))
                .auto_renew()
                .acquire()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            assert!(!guard.is_lost(), "{name} was not renewed");
            assert!(guard.release().await.unwrap());
        });
    };
    // Like two #[tokio::test]s sharing a default locker: each has its own runtime.
    hold("first-runtime");
    hold("second-runtime");
}

/// Under load, concurrent acquires and releases pipelined on one connection each still
/// mean what they say, and acquires whose callers go away leave no lock behind (an
/// earlier version combined them into script calls, and tied their fates together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_acquires_and_releases_keep_their_meaning() {
    let fx = Fixture::redis();
    let mut tasks = tokio::task::JoinSet::new();
    let other = fx.another_locker();
    for task in 0..64 {
        let (locker, other) = (fx.locker.clone(), other.clone());
        tasks.spawn(async move {
            for round in 0..30 {
                let name = format!("combined:{task}");
                let guard = locker.lock(&name).acquire().await.unwrap();
                assert!(
                    other.lock(&name).try_acquire().await.unwrap().is_none(),
                    "task {task}, round {round}: a held lock was acquired twice"
                );
                assert!(guard.release().await.unwrap());
                assert!(!guard_is_held(&locker, &name).await);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    // Callers that go away while their acquires wait to be combined, or are in flight.
    for index in 0..300 {
        let locker = fx.locker.clone();
        tasks.spawn(async move {
            let guard = locker
                .lock(format!("abandoned:{index}"))
                .ttl(Duration::from_secs(60))
                .acquire()
                .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut redis = raw_connection(&fx.url()).await;
    let left_behind = eventually(Duration::from_secs(10), || {
        let mut redis = redis.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("lock:{abandoned:*")
                .query_async(&mut redis)
                .await
                .unwrap();
            keys.is_empty()
        }
    })
    .await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("lock:{abandoned:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(left_behind, "locks left behind: {keys:?}");
}

async fn guard_is_held(locker: &Locker, name: &str) -> bool {
    locker.is_locked(name).await.unwrap()
}
