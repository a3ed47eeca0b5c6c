//! Connecting the way production does: TLS with a private CA, an ACL user that may touch
//! only the lock's keys and channels, Redis Sentinel with a failover in the middle of a
//! run, durable acquires that wait for a replica, and the program's own connection.
//! Every server is real and private to the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::testing::{RedisServer, SentinelGroup, TlsRedisServer};
use lock_runtime::{LockError, Locker};
use lock_tests_integration::Counter;

/// The ACL a locker needs on one server, as the crate docs list it: the keys and channels
/// under its prefix, and these commands.
const LOCKER_ACL: &[&str] = &[
    "~lock:*",
    "&lock:*",
    "+ping",
    "+get",
    "+set",
    "+pttl",
    "+pexpire",
    "+del",
    "+time",
    "+zadd",
    "+zrange",
    "+zrem",
    "+hset",
    "+hget",
    "+hdel",
    "+publish",
    "+evalsha",
    "+script|load",
    "+subscribe",
    "+unsubscribe",
    "+wait",
];

/// Takes, waits for, fences, renews and releases a lock: everything a locker does.
async fn exercise(locker: &Locker, name: &str) {
    let guard = locker
        .lock(name)
        .fencing()
        .ttl(Duration::from_millis(600))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    assert!(guard.fencing_token().is_some());
    let waiter = {
        let locker = locker.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            locker
                .lock(name)
                .wait(Duration::from_secs(10))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await; // a renewal or two
    assert!(guard.is_held().await.unwrap() && !guard.is_lost());
    assert!(guard.release().await.unwrap());
    let next = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was not handed the lock")
        .unwrap()
        .unwrap();
    assert!(next.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_a_wrong_ca_is_a_connect_error() {
    let server = TlsRedisServer::start().unwrap();
    assert!(server.url().starts_with("rediss://"));
    let with = |ca: Vec<u8>| {
        Locker::builder()
            .connect_timeout(Duration::from_millis(500))
            .tls_certificates(lock_runtime::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            })
            .redis(&server.url())
            .unwrap()
    };
    exercise(&with(server.ca_pem().unwrap()), "tls").await;

    let started = Instant::now();
    let err = with(server.wrong_ca_pem().unwrap())
        .lock("tls")
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Connect { .. }), "{err:?}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        cause.contains("certificate") || cause.contains("UnknownIssuer"),
        "{cause}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_limited_to_the_locks_keys_and_commands_can_lock() {
    let server = RedisServer::start().unwrap();
    let url = server.create_user("locker", "s3cret", LOCKER_ACL).unwrap();
    exercise(&Locker::redis(&url).unwrap(), "acl").await;

    // A wrong password, and a user without a command it needs: Auth, never "unreachable".
    let wrong = server.user_url("locker", "wrong");
    let err = Locker::redis(&wrong)
        .unwrap()
        .lock("acl")
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cret") && !err.to_string().contains("wrong"));
    let limited: Vec<&str> = LOCKER_ACL
        .iter()
        .copied()
        .filter(|rule| *rule != "+evalsha")
        .collect();
    let url = server.create_user("no-scripts", "pw", &limited).unwrap();
    let err = Locker::redis(&url)
        .unwrap()
        .lock("acl")
        .fencing()
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Auth { .. }), "{err:?}");
    // A command a script runs (joining the queue) is missing.
    let limited: Vec<&str> = LOCKER_ACL
        .iter()
        .copied()
        .filter(|rule| *rule != "+zadd")
        .collect();
    let url = server.create_user("no-queue", "pw", &limited).unwrap();
    let limited = Locker::redis(&url).unwrap();
    let holder = Locker::redis(&server.url())
        .unwrap()
        .lock("queued")
        .acquire()
        .await
        .unwrap();
    let err = limited
        .lock("queued")
        .wait(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Auth { .. }), "{err:?}");
    drop(holder);
    let outside: Vec<&str> = LOCKER_ACL
        .iter()
        .copied()
        .map(|rule| if rule == "~lock:*" { "~other:*" } else { rule })
        .collect();
    let url = server.create_user("elsewhere", "pw", &outside).unwrap();
    let err = Locker::redis(&url)
        .unwrap()
        .lock("acl")
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Auth { .. }), "{err:?}");
}

/// The master dies in the middle of a run: requests fail with typed errors while the
/// sentinels fail over, then go on at the new master; every section stays exclusive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_run() {
    let mut group = SentinelGroup::start().unwrap();
    let locker = Locker::builder()
        .command_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .sentinel(group.master_name(), group.sentinel_urls())
        .unwrap();
    let counter_server = RedisServer::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (sections, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (locker, stop, sections, errors) = (
            locker.clone(),
            stop.clone(),
            sections.clone(),
            errors.clone(),
        );
        let mut counter = Counter::redis(&counter_server.url(), "counter").await;
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let request = locker
                    .lock("failover")
                    .ttl(Duration::from_millis(800))
                    .wait(Duration::from_secs(2));
                match tokio::time::timeout(Duration::from_secs(8), request.acquire()).await {
                    Ok(Ok(guard)) => {
                        counter.unsafe_increment().await;
                        sections.fetch_add(1, Ordering::SeqCst);
                        let _ = guard.release().await;
                    }
                    Ok(Err(error)) if error.is_contention() || error.is_unavailable() => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(Err(other)) => panic!("an untyped failure: {other:?}"),
                    Err(_) => panic!("a request hung during the failover"),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sections.load(Ordering::SeqCst);
    let old = group.kill_master().unwrap();
    group.wait_for_failover(old).unwrap();
    let failed_over = sections.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    let after = sections.load(Ordering::SeqCst);
    eprintln!(
        "sentinel: {before} sections before the kill, {} after the failover, {} typed errors",
        after - failed_over,
        errors.load(Ordering::SeqCst)
    );
    assert!(
        before > 0 && after > failed_over,
        "no progress after the failover"
    );
    let mut counter = Counter::redis(&counter_server.url(), "counter").await;
    assert_eq!(counter.get().await, after, "two sections overlapped");
}

/// A durable acquire returns once the replica has the lock; with the replica paused it
/// fails with `NotReplicated` within its wait, and the lock is released again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_acquires_wait_for_the_replica() {
    let group = SentinelGroup::start().unwrap();
    let master = group.master_index().unwrap();
    let replica = 1 - master;
    let locker = Locker::sentinel(group.master_name(), group.sentinel_urls()).unwrap();
    let guard = locker
        .lock("durable")
        .durable(1, Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    let on_replica: Option<String> = group.servers()[replica]
        .query(redis::cmd("GET").arg("lock:{durable}"))
        .unwrap();
    assert_eq!(
        on_replica.as_deref(),
        Some(guard.token()),
        "the replica does not have it"
    );
    assert!(guard.release().await.unwrap());
    // A semaphore's permit too (found by review: it ran the lock's script on the set).
    let permit = locker
        .semaphore("durable", 2)
        .durable(1, Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    let on_replica: Option<f64> = group.servers()[replica]
        .query(
            redis::cmd("ZSCORE")
                .arg("lock:{durable}:sem")
                .arg(permit.token()),
        )
        .unwrap();
    assert!(on_replica.is_some(), "the replica does not have the permit");
    assert!(permit.release().await.unwrap());

    group.servers()[replica].pause().unwrap();
    let started = Instant::now();
    let err = locker
        .lock("durable")
        .durable(1, Duration::from_millis(300))
        .acquire()
        .await
        .unwrap_err();
    let took = started.elapsed();
    group.servers()[replica].resume().unwrap();
    match &err {
        LockError::NotReplicated {
            acknowledged,
            needed,
            ..
        } => assert_eq!((*acknowledged, *needed), (0, 1)),
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    assert!(err.is_unavailable());
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        !locker.is_locked("durable").await.unwrap(),
        "the unreplicated lock was kept"
    );
    // Refused where there are no replicas to wait for.
    let err = Locker::memory()
        .lock("d")
        .durable(1, Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Config(_)), "{err:?}");
}

/// Commands on the program's own connection manager; waiters are not notified on it
/// (its pushes are the program's) but poll, so they still get the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_programs_own_connection_carries_the_locks() {
    let server = RedisServer::start().unwrap();
    let client = lock_runtime::redis::Client::open(server.url()).unwrap();
    let manager = lock_runtime::redis::aio::ConnectionManager::new(client)
        .await
        .unwrap();
    let locker = Locker::builder()
        .poll_interval(Duration::from_millis(100))
        .connection(manager.clone())
        .unwrap();
    let guard = locker.lock("shared").acquire().await.unwrap();
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            locker
                .lock("shared")
                .wait(Duration::from_secs(5))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(guard.release().await.unwrap());
    let next = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.release().await.unwrap());
    // The program's connection is the one in use: its CLIENT LIST entry ran the scripts.
    let mut manager = manager;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut manager)
        .await
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        1,
        "the locker opened connections of its own: {clients}"
    );
}
