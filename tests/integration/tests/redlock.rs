//! Redlock over 5 private redis-servers: failures of a minority are survived, a majority
//! is needed, and mutual exclusion holds while servers die and come back.

use std::process::Command;
use std::time::{Duration, Instant};

use lock_runtime::testing::RedisServer;
use lock_runtime::{LockError, Locker};
use lock_tests_integration::proxy::Proxy;
use lock_tests_integration::{Counter, eventually, query, raw_connection};

/// Five independent servers.
fn five() -> Vec<RedisServer> {
    (0..5)
        .map(|_| RedisServer::start().expect("start redis-server"))
        .collect()
}

/// Three independent servers.
fn three() -> Vec<RedisServer> {
    (0..3)
        .map(|_| RedisServer::start().expect("start redis-server"))
        .collect()
}

fn urls(servers: &[RedisServer]) -> Vec<String> {
    servers.iter().map(RedisServer::url).collect()
}

/// A Redlock locker with a per-server timeout that a busy 2-core machine keeps.
fn locker(servers: &[RedisServer]) -> Locker {
    Locker::builder()
        .server_timeout(Duration::from_millis(250))
        .redlock(urls(servers))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_five_down_acquire_extend_renew_and_release_still_work() {
    let mut servers = five();
    let locker = locker(&servers);
    servers[1].stop();
    servers[3].stop();

    let guard = locker
        .lock("order:1")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    // The validity is the TTL minus the round trip and the drift margin (1% + 2 ms).
    assert!(guard.remaining() < Duration::from_secs(5) - Duration::from_millis(50));
    assert!(guard.remaining() > Duration::from_secs(3));
    assert!(locker.is_locked("order:1").await.unwrap());
    assert!(guard.is_held().await.unwrap());
    // A second owner (another task) is refused: the live majority holds the key.
    let second = tokio::spawn(locker.lock("order:1").try_acquire());
    assert!(second.await.unwrap().unwrap().is_none());
    guard.extend(Duration::from_secs(10)).await.unwrap();
    assert!(guard.remaining() > Duration::from_secs(10));
    let released = guard.release_report().await.unwrap();
    assert!(released.held);
    assert_eq!((released.servers_held, released.servers), (3, 5));
    assert!(!locker.is_locked("order:1").await.unwrap());

    // Auto-renewal: a 600 ms lock held for 2 s.
    let renewed = locker
        .lock("order:2")
        .ttl(Duration::from_millis(600))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!renewed.is_lost());
    assert!(renewed.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_five_down_fail_with_the_quorum_error_within_the_server_timeout() {
    let mut servers = five();
    // The default per-server timeout: 1% of the 30 s TTL, clamped to 50 ms.
    let locker = Locker::builder()
        .command_timeout(Duration::from_secs(20))
        .redlock(urls(&servers))
        .unwrap();
    locker.ping().await.unwrap();
    for index in [0, 2, 4] {
        servers[index].stop();
    }
    let started = Instant::now();
    let error = locker
        .lock("order:1")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &error {
        LockError::Quorum {
            servers,
            needed,
            answered,
            granted,
            failures,
            ..
        } => {
            assert_eq!(
                (*servers, *needed, *answered, *granted),
                (5, 3, 2, 2),
                "{error}"
            );
            assert_eq!(failures.len(), 3, "{error}");
        }
        other => panic!("expected a quorum error, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("2 of 5 servers answered, 2 granted, 3 needed"),
        "{message}"
    );
    // Bounded by the per-server timeout, far from the TTL or the 20 s command timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // What the two live servers granted was released again.
    for server in [&servers[1], &servers[3]] {
        let mut redis = raw_connection(&server.url()).await;
        let exists: bool = redis::cmd("EXISTS")
            .arg("lock:{order:1}")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(!exists);
    }
    // With a wait, it retries until the deadline and still reports the quorum failure.
    let error = locker
        .lock("order:1")
        .wait(Duration::from_millis(500))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Quorum { .. }), "{error}");
    assert!(matches!(locker.ping().await, Err(LockError::Quorum { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_costs_one_server_timeout() {
    let servers = five();
    let locker = Locker::builder()
        .command_timeout(Duration::from_secs(20))
        .redlock(urls(&servers))
        .unwrap();
    locker.ping().await.unwrap();
    servers[2].pause().unwrap();
    let started = Instant::now();
    let guard = locker
        .lock("order:1")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let released = guard.release_report().await.unwrap();
    assert!(released.held);
    assert_eq!(released.servers_held, 4);
    servers[2].resume().unwrap();
}

/// The lock keys on the server at `url`.
async fn lock_keys(url: &str) -> Vec<String> {
    query(url, redis::cmd("KEYS").arg("lock:*")).await
}

/// An acquire waited for every server, so two hung ones cost it their whole per-server
/// timeout although three had granted at once. It returns on the quorum; the hung
/// servers still get the `SET NX` when they wake, and the release, which reaches them
/// after their answers, removes the key there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_returns_once_a_quorum_granted() {
    let servers = five();
    let locker = Locker::builder()
        .command_timeout(Duration::from_secs(30))
        .server_timeout(Duration::from_secs(20))
        .redlock(urls(&servers))
        .unwrap();
    locker.ping().await.unwrap();
    servers[1].pause().unwrap();
    servers[3].pause().unwrap();
    let started = Instant::now();
    let guard = locker
        .lock("order:quorum")
        .ttl(Duration::from_secs(60))
        .acquire()
        .await
        .unwrap();
    let took = started.elapsed();
    // Waiting for the hung servers takes their 20 s timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    servers[1].resume().unwrap();
    servers[3].resume().unwrap();
    for woken in [&servers[1], &servers[3]] {
        let granted = eventually(Duration::from_secs(10), || async {
            !lock_keys(&woken.url()).await.is_empty()
        });
        assert!(granted.await, "the woken servers granted too");
    }
    let released = guard.release_report().await.unwrap();
    assert!(released.held);
    assert!(released.servers_held >= 3, "{released:?}");
    assert!(released_everywhere(&servers).await);
}

/// Whether no server has a lock key left, within 10 s (what the slower servers were
/// sent goes on in the background).
async fn released_everywhere(servers: &[RedisServer]) -> bool {
    eventually(Duration::from_secs(10), || async {
        for server in servers {
            if !lock_keys(&server.url()).await.is_empty() {
                return false;
            }
        }
        true
    })
    .await
}

/// The slow servers of an acquire that returned at the quorum may not even be connected
/// yet, and then redis-rs has queued neither their `SET NX` nor a release sent right
/// after: whichever its connection takes first goes first. A release that overtook the
/// `SET NX` would leave that server's key for its whole TTL. The release reaches each
/// slow server after that server's answer instead, each time (in the background: it
/// returns on the three that decided).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_right_after_a_quorum_reaches_the_servers_still_connecting_after_their_set_nx() {
    let servers = five();
    let (urls, _slow) = two_slow_to_connect(&servers).await;
    for round in 0..5 {
        // A new locker each round: its connections open with its first acquire.
        let locker = Locker::builder()
            .server_timeout(Duration::from_secs(5))
            .redlock(urls.clone())
            .unwrap();
        let name = format!("order:{round}");
        let guard = locker
            .lock(&name)
            .ttl(Duration::from_secs(60))
            .acquire()
            .await
            .unwrap();
        // It returned on the three fast servers: the slow ones have no key yet.
        for server in &servers[3..] {
            let left = lock_keys(&server.url()).await;
            assert!(left.is_empty(), "round {round}: {left:?}");
        }
        let released = guard.release_report().await.unwrap();
        assert!(released.held);
        assert!(released.servers_held >= 3, "round {round}: {released:?}");
        assert!(released_everywhere(&servers).await, "round {round}");
    }
}

/// Lockers over three servers and two (3 and 4) reached through connections that take
/// 1 s to open: an acquire returns on the three before the other two answered.
async fn two_slow_to_connect(servers: &[RedisServer]) -> (Vec<String>, [Proxy; 2]) {
    let delay = Duration::from_secs(1);
    let slow = [
        Proxy::with_connect_delay(servers[3].port(), delay).await,
        Proxy::with_connect_delay(servers[4].port(), delay).await,
    ];
    let mut urls = urls(&servers[..3]);
    urls.extend(slow.iter().map(Proxy::url));
    (urls, slow)
}

async fn pttl(url: &str, key: &str) -> i64 {
    query(url, redis::cmd("PTTL").arg(key)).await
}

/// `key`'s PTTL on each of `servers`.
async fn pttls(servers: &[RedisServer], key: &str) -> Vec<i64> {
    let mut left = Vec::with_capacity(servers.len());
    for server in servers {
        left.push(pttl(&server.url(), key).await);
    }
    left
}

/// An extend (and a release with a minimum hold, which is one) right after an acquire
/// that returned on the quorum also reaches the slower servers after their answers:
/// otherwise, while their connections open, it can reach them before their `SET NX`, and
/// they keep the first TTL (the lock then rests on a bare quorum when it runs out) or the
/// key for its whole TTL after `release_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_right_after_a_quorum_reaches_the_slower_servers() {
    let servers = five();
    let (urls, _slow) = two_slow_to_connect(&servers).await;
    let mut wrong = Vec::new();
    for round in 0..5 {
        let locker = Locker::builder()
            .server_timeout(Duration::from_secs(5))
            .redlock(urls.clone())
            .unwrap();
        let extended = format!("extend{round}");
        let guard = locker
            .lock(&extended)
            .ttl(Duration::from_secs(8))
            .acquire()
            .await
            .unwrap();
        guard.extend(Duration::from_secs(60)).await.unwrap();
        let held_briefly = format!("after{round}");
        let brief = locker
            .lock(&held_briefly)
            .ttl(Duration::from_secs(60))
            .acquire()
            .await
            .unwrap();
        assert!(brief.release_after(Duration::from_secs(2)).await.unwrap());
        // What the slow servers were sent goes on in the background.
        let extended_key = format!("lock:{{{extended}}}");
        let brief_key = format!("lock:{{{held_briefly}}}");
        eventually(Duration::from_secs(10), || async {
            for server in &servers {
                let (extended, brief) = (
                    pttl(&server.url(), &extended_key).await,
                    pttl(&server.url(), &brief_key).await,
                );
                if extended < 30_000 || brief > 2_500 {
                    return false;
                }
            }
            true
        })
        .await;
        for (index, server) in servers.iter().enumerate() {
            let left = pttl(&server.url(), &format!("lock:{{{extended}}}")).await;
            if left < 30_000 {
                wrong.push(format!(
                    "round {round}: server {index}: extended to {left} ms"
                ));
            }
            let left = pttl(&server.url(), &format!("lock:{{{held_briefly}}}")).await;
            if left > 2_500 {
                wrong.push(format!("round {round}: server {index}: kept {left} ms"));
            }
        }
        guard.release().await.unwrap();
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Three servers, the third reached through connections that take `delay` to open, and a
/// locker over them (not connected yet: its first acquire opens the connections).
async fn third_slow_to_connect(delay: Duration) -> (Vec<RedisServer>, Locker, Proxy) {
    let servers = three();
    let slow = Proxy::with_connect_delay(servers[2].port(), delay).await;
    let mut urls = urls(&servers[..2]);
    urls.push(slow.url());
    let locker = Locker::builder()
        .server_timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_secs(5))
        .redlock(urls)
        .unwrap();
    (servers, locker, slow)
}

/// A renewal goes to the servers that granted at once, and to a slower one only after its
/// answer, in the background. Waiting for that one before renewing anywhere let a short
/// lock expire on the healthy majority while a third server was still being connected;
/// waiting for it before the next renewal did too, at TTLs shorter than the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_to_connect_minority_does_not_delay_the_renewal_on_the_majority() {
    // Connected more than twice the TTL after the acquire, within the connect timeout.
    let (servers, locker, _slow) = third_slow_to_connect(Duration::from_millis(2600)).await;
    let guard = locker
        .lock("renewed")
        .ttl(Duration::from_millis(1200))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let left = pttls(&servers, "lock:{renewed}").await;
    assert!(!guard.is_lost(), "lost with 2 of 3 up; PTTLs: {left:?}");
    assert!(left[..2].iter().all(|left| *left > 0), "{left:?}");
    assert!(guard.release().await.unwrap());
}

/// One lock the answering servers leave undecided (its key gone from one of them: a
/// restart without persistence, an eviction) while the third server is still connecting
/// must not hold up the renewal of the runtime's other locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_undecided_renewal_does_not_hold_up_the_others() {
    let (servers, locker, _slow) = third_slow_to_connect(Duration::from_millis(2600)).await;
    let ttl = Duration::from_millis(1200);
    let started = Instant::now();
    let other = locker
        .lock("other")
        .ttl(ttl)
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    let gone = locker
        .lock("gone")
        .ttl(ttl)
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    let _: i64 = query(&servers[1].url(), redis::cmd("DEL").arg("lock:{gone}")).await;
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(started.elapsed())).await;
    let left = pttls(&servers[..2], "lock:{other}").await;
    assert!(!other.is_lost(), "PTTLs of the other lock: {left:?}");
    assert!(left.iter().all(|left| *left > 0), "{left:?}");
    drop(gone);
}

/// The slower servers' answers are awaited on the runtime that acquired. A release on
/// another runtime, while that one sits idle (a current-thread runtime outside
/// `block_on`), waits for them only as long as they may take, then goes on.
#[test]
fn a_release_on_another_runtime_does_not_wait_for_an_idle_one() {
    let servers = five();
    let locker = locker(&servers);
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    idle.block_on(locker.ping()).unwrap();
    servers[3].pause().unwrap();
    servers[4].pause().unwrap();
    let guard = idle
        .block_on(locker.lock("idle").ttl(Duration::from_secs(30)).acquire())
        .unwrap();
    servers[3].resume().unwrap();
    servers[4].resume().unwrap();
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let released = other
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), guard.release()).await });
    assert!(matches!(released, Ok(Ok(true))), "{released:?}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lock_survives_two_deaths_and_is_lost_at_the_third() {
    let mut servers = five();
    let locker = locker(&servers);
    let guard = locker
        .lock("job:nightly")
        .ttl(Duration::from_secs(1))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    servers[0].stop();
    servers[1].stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!guard.is_lost(), "lost with a majority still up");
    assert!(guard.remaining() > Duration::ZERO);
    servers[2].stop();
    let lost = tokio::time::timeout(Duration::from_secs(10), guard.lost()).await;
    assert!(
        lost.is_ok(),
        "lost() did not fire after the majority was gone"
    );
    assert!(guard.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_stay_exclusive_while_servers_die_and_return() {
    const WORKERS: usize = 4;
    const SECTIONS: u64 = 40;
    let mut servers = five();
    let counter_server = RedisServer::start().unwrap();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_lock-worker"))
                .args([
                    "redlock-count",
                    &counter_server.url(),
                    "shared",
                    "counter",
                    &SECTIONS.to_string(),
                ])
                .env("REDIS_URLS", urls(&servers).join(","))
                // 1% of the 1 s TTL (10 ms) is too tight for a loaded 2-core machine: a
                // bare quorum granted under load is lost at the next server's death.
                .env("LOCK_SERVER_TIMEOUT", "100ms")
                .env_remove("REDIS_URL")
                .spawn()
                .unwrap()
        })
        .collect();
    // One server down at a time, each for longer than the 1 s TTL (the restart rule:
    // a server that lost its keys must not rejoin while a lock it granted may be alive).
    // Every section counts, also one whose lock was reported lost: the exact counter
    // below shows that no two sections overlapped.
    for index in [0, 3, 1] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        servers[index].stop();
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        servers[index].restart().unwrap();
    }
    for mut worker in workers {
        let status = tokio::task::spawn_blocking(move || worker.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
    let mut counter = Counter::redis(&counter_server.url(), "counter").await;
    assert_eq!(counter.get().await, WORKERS as u64 * SECTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_grant_never_makes_two_holders() {
    const TASKS: u64 = 8;
    const SECTIONS: u64 = 15;
    let servers = five();
    let counter_server = RedisServer::start().unwrap();
    // Another owner holds the key on 2 of the 5 servers: a minority, so not the lock.
    for server in &servers[..2] {
        let mut redis = raw_connection(&server.url()).await;
        let () = redis::cmd("SET")
            .arg("lock:{stock}")
            .arg("someone-else")
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let locker = locker(&servers);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let locker = locker.clone();
        let mut counter = Counter::redis(&counter_server.url(), "counter").await;
        tasks.spawn(async move {
            for _ in 0..SECTIONS {
                let guard = locker
                    .lock("stock")
                    .wait(Duration::from_secs(60))
                    .acquire()
                    .await
                    .unwrap();
                // A winner holds all three free servers; nobody else can hold a majority.
                assert!(guard.remaining() > Duration::ZERO);
                counter.unsafe_increment().await;
                let released = guard.release_report().await.unwrap();
                assert!(released.held);
                assert_eq!(released.servers_held, 3);
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    let mut counter = Counter::redis(&counter_server.url(), "counter").await;
    assert_eq!(counter.get().await, TASKS * SECTIONS);
    // The other owner's keys were never touched.
    for server in &servers[..2] {
        let mut redis = raw_connection(&server.url()).await;
        let value: String = redis::cmd("GET")
            .arg("lock:{stock}")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(value, "someone-else");
    }
}

#[tokio::test]
async fn fencing_is_refused_with_an_explanation() {
    let locker = Locker::redlock([
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "redis://127.0.0.1:3",
    ])
    .unwrap();
    let error = locker
        .lock("order:1")
        .fencing()
        .acquire()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, LockError::Config(_)), "{message}");
    assert!(message.contains("strictly increase"), "{message}");
    assert!(message.contains("Locker::redis(url)"), "{message}");
    // Bad server lists are configuration errors too.
    assert!(matches!(
        Locker::redlock(Vec::<String>::new()),
        Err(LockError::Config(_))
    ));
    let twice = Locker::redlock(["redis://127.0.0.1:7000", "redis://127.0.0.1:7000"]).unwrap_err();
    assert!(twice.to_string().contains("listed twice"), "{twice}");
    assert!(matches!(
        Locker::redlock(["redis://[::1"]),
        Err(LockError::Config(_))
    ));
}

#[lock_runtime::distributed_lock("report:<day>", timeout = 5, wait = 30, locker = locker)]
async fn locked_report(locker: &Locker, day: u32, counter: &mut Counter) -> Result<(), LockError> {
    counter.unsafe_increment().await;
    Ok(())
}

#[lock_runtime::distributed_lock("report:<day>", fencing, locker = locker)]
async fn fenced_report(locker: &Locker, day: u32) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_works_the_same_over_redlock() {
    const TASKS: u64 = 6;
    const CALLS: u64 = 10;
    let servers = five();
    let counter_server = RedisServer::start().unwrap();
    let locker = locker(&servers);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let locker = locker.clone();
        let mut counter = Counter::redis(&counter_server.url(), "counter").await;
        tasks.spawn(async move {
            for _ in 0..CALLS {
                locked_report(&locker, 22, &mut counter).await.unwrap();
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    let mut counter = Counter::redis(&counter_server.url(), "counter").await;
    assert_eq!(counter.get().await, TASKS * CALLS);
    let refused = fenced_report(&locker, 22).await.unwrap_err();
    assert!(matches!(refused, LockError::Config(_)), "{refused}");
}

/// A TTL at or below the drift margin (1-3 ms) made every acquire report `Busy` on a free
/// lock; it is refused up front, naming the minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_within_the_drift_margin_is_a_config_error() {
    let servers = five();
    // The default per-server timeout for short TTLs: 5 ms.
    let locker = Locker::redlock(urls(&servers)).unwrap();
    for ttl in [1, 3, 7] {
        let err = locker
            .lock("short")
            .ttl(Duration::from_millis(ttl))
            .acquire()
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{ttl} ms: {err:?}");
        assert!(err.to_string().contains("at least 8 ms"), "{err}");
    }
    let guard = locker
        .lock("short")
        .ttl(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap();
    assert!(guard.release().await.unwrap());
}

/// Retries reused one token while a failed attempt's clean-up was still in flight, so a
/// late clean-up could delete what the retry had just won on a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_attempts_never_reuse_a_token() {
    use futures_util::StreamExt;
    let servers = five();
    let locker = locker(&servers);
    locker.ping().await.unwrap();
    let client = redis::Client::open(servers[0].url()).unwrap();
    let mut monitor = client.get_async_monitor().await.unwrap();
    let holder = locker.lock("contended").acquire().await.unwrap();
    let waiter = tokio::spawn(
        locker
            .lock("contended")
            .wait(Duration::from_millis(400))
            .acquire(),
    )
    .await
    .unwrap();
    assert!(
        matches!(waiter, Err(LockError::WaitTimeout { .. })),
        "{waiter:?}"
    );
    assert!(holder.release().await.unwrap());
    let mut tokens = Vec::new();
    let mut lines = monitor.on_message::<String>();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(300), lines.next()).await
    {
        let words: Vec<&str> = line.split(' ').collect();
        if let Some(at) = words.iter().position(|word| *word == "\"SET\"") {
            tokens.push(words[at + 2].to_owned());
        }
    }
    assert!(tokens.len() > 2, "too few attempts seen: {tokens:?}");
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(
        distinct.len(),
        tokens.len(),
        "a token was reused: {tokens:?}"
    );
}

/// With about 2 ms of `min_hold` left, the drift margin was subtracted from a quorum's
/// grant, so `release_after` reported a kept lock as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_with_little_left_keeps_the_lock_on_a_quorum() {
    let servers = five();
    let locker = locker(&servers);
    for round in 0..10 {
        let guard = locker
            .lock(format!("job:{round}"))
            .ttl(Duration::from_secs(10))
            .acquire()
            .await
            .unwrap();
        let handle = guard.handle();
        let min_hold = handle.held_for() + Duration::from_micros(1_500);
        assert!(
            guard.release_after(min_hold).await.unwrap(),
            "round {round}"
        );
        assert!(!handle.is_lost(), "round {round}");
    }
}

/// One per-server timeout covered all the 500-lock chunks of a renewal batch: with
/// thousands of auto-renewed locks, renewals timed out and locks were lost in bulk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_redlock_locks_stay_renewed() {
    const LOCKS: usize = 6_000;
    let servers = five();
    let locker = Locker::redlock(urls(&servers)).unwrap();
    locker.ping().await.unwrap();
    let mut guards = Vec::with_capacity(LOCKS);
    for chunk in (0..LOCKS).collect::<Vec<_>>().chunks(100) {
        let acquired = futures_util::future::join_all(chunk.iter().map(|index| {
            locker
                .lock(format!("many:{index}"))
                .ttl(Duration::from_secs(3))
                .auto_renew()
                // A loaded machine can miss a quorum's per-server timeout: retried.
                .wait(Duration::from_secs(10))
                .acquire()
        }))
        .await;
        guards.extend(acquired.into_iter().map(Result::unwrap));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let lost = guards.iter().filter(|guard| guard.is_lost()).count();
    assert_eq!(
        lost, 0,
        "{lost} of {LOCKS} auto-renewed Redlock locks were lost"
    );
}

/// A huge server timeout made the TTL check search for the minimum one millisecond at a
/// time (a 10-year timeout spun for hours); it is refused, and the minimum is computed.
#[tokio::test]
async fn a_huge_server_timeout_is_refused() {
    let err = Locker::builder()
        .server_timeout(Duration::from_secs(10 * 365 * 86_400))
        .redlock(["redis://127.0.0.1:1"])
        .unwrap_err();
    assert!(matches!(err, LockError::Config(_)), "{err:?}");
    let locker = Locker::builder()
        .server_timeout(Duration::from_secs(3_000))
        .redlock(["redis://127.0.0.1:1"])
        .unwrap();
    let started = std::time::Instant::now();
    let err = locker
        .lock("x")
        .ttl(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 3030306 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Three servers and two that accept connections but never answer (a host that dropped
/// off the network, a server paused before this locker first reached it): each command
/// there waits out the connect timeout. Once the three decided, neither an extend nor a
/// release waits for those two; their part goes on in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_minority_holds_up_neither_an_extend_nor_a_release() {
    let servers = three();
    let hour = Duration::from_secs(3_600);
    let dead = [
        Proxy::with_connect_delay(servers[0].port(), hour).await,
        Proxy::with_connect_delay(servers[1].port(), hour).await,
    ];
    let mut urls = urls(&servers);
    urls.extend(dead.iter().map(Proxy::url));
    let locker = Locker::builder()
        .connect_timeout(Duration::from_secs(20))
        .redlock(urls)
        .unwrap();
    // Twice: the second time the dead servers are no longer the acquire's stragglers.
    for round in 0..2 {
        let acquire = locker
            .lock("order:dead")
            .ttl(Duration::from_secs(60))
            .acquire();
        let guard = soon(round, "acquire", acquire).await.unwrap();
        soon(round, "extend", guard.extend(hour)).await.unwrap();
        for server in &servers {
            let left = pttl(&server.url(), "lock:{order:dead}").await;
            assert!(left > 600_000, "round {round}: {}: {left} ms", server.url());
        }
        let released = soon(round, "release", guard.release_report())
            .await
            .unwrap();
        assert!(released.held);
        assert_eq!(released.servers_held, 3, "round {round}");
        for server in &servers {
            let left = lock_keys(&server.url()).await;
            assert!(left.is_empty(), "round {round}: {}: {left:?}", server.url());
        }
    }
}

/// `operation`'s result, if it came well before the connect timeout.
async fn soon<T>(round: usize, what: &str, operation: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), operation)
        .await
        .unwrap_or_else(|_| panic!("round {round}: the {what} waited for the dead servers"))
}

/// A renewal does not wait for a server that never answers either: the lock is renewed
/// on the two that do, while every renewal's attempt on the third waits out the connect
/// timeout (longer than the TTL) in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_does_not_wait_for_a_dead_server() {
    let servers: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start().expect("start redis-server"))
        .collect();
    let dead = Proxy::with_connect_delay(servers[0].port(), Duration::from_secs(3_600)).await;
    let mut urls = urls(&servers);
    urls.push(dead.url());
    let locker = Locker::builder()
        .connect_timeout(Duration::from_secs(2))
        .redlock(urls)
        .unwrap();
    let guard = locker
        .lock("renewed:dead")
        .ttl(Duration::from_millis(1500))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    // Past the acquire's own wait for the dead server, and two connect timeouts more.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let left = pttls(&servers, "lock:{renewed:dead}").await;
    assert!(!guard.is_lost(), "lost with 2 of 3 up; PTTLs: {left:?}");
    assert!(left.iter().all(|left| *left > 0), "{left:?}");
    assert!(guard.release().await.unwrap());
}

/// "A release that is awaited (`LockGuard::release`) needs no flush" (runtimes.md): a
/// short-lived program awaits its release and returns, and its runtime ends. The third
/// server hung during the acquire, with the `SET NX` in its socket. A release that left
/// its part for that server to a background task lost it with the runtime, and the
/// woken server kept the key for its whole TTL after a release that reported success
/// (the sixth review). A release waits for every server its runtime is connected to.
#[test]
fn an_awaited_release_needs_no_flush_even_with_a_hung_minority() {
    let servers = three();
    let locker = Locker::builder()
        .server_timeout(Duration::from_millis(250))
        .redlock(urls(&servers))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Connected, and the release script loaded on every server.
    runtime.block_on(async {
        let warm = locker.lock("warm-up").acquire().await.unwrap();
        assert!(warm.release().await.unwrap());
    });
    servers[2].pause().unwrap();
    let released = runtime.block_on(async {
        let guard = locker
            .lock("short-lived")
            .ttl(Duration::from_secs(60))
            .acquire()
            .await
            .unwrap();
        guard.release_report().await.unwrap()
    });
    assert!(released.held, "{released:?}");
    // main returns: no flush, the release was awaited.
    drop(runtime);
    servers[2].resume().unwrap();
    let checker = tokio::runtime::Runtime::new().unwrap();
    let left = checker.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pttls(&servers, "lock:{short-lived}").await
    });
    assert!(
        left.iter().all(|left| *left < 0),
        "released (reported {released:?}), but PTTLs per server: {left:?}"
    );
}

/// An extend to 60 s followed by `release_after(2 s)` of the same lock, right after an
/// acquire that returned before the third server (slow to connect) answered. Both return
/// on the two fast servers; their parts for the slow one wait for its answer in two
/// background tasks. Woken together, they raced, and when the earlier extend landed last,
/// that server kept the key for 60 s after `release_after` reported success (the sixth
/// review). The later command waits for the earlier one there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_following_an_extend_is_not_overtaken_by_it() {
    let servers = three();
    let slow = Proxy::with_connect_delay(servers[2].port(), Duration::from_millis(700)).await;
    let mut urls = urls(&servers[..2]);
    urls.push(slow.url());
    let mut wrong = Vec::new();
    for round in 0..8 {
        let locker = Locker::builder()
            .server_timeout(Duration::from_secs(5))
            .redlock(urls.clone())
            .unwrap();
        let name = format!("ext{round}");
        let key = format!("lock:{{{name}}}");
        let guard = locker
            .lock(&name)
            .ttl(Duration::from_secs(8))
            .acquire()
            .await
            .unwrap();
        guard.extend(Duration::from_secs(60)).await.unwrap();
        assert!(guard.release_after(Duration::from_secs(2)).await.unwrap());
        // Let the slow server's parts land.
        eventually(Duration::from_secs(5), || async {
            pttl(&servers[2].url(), &key).await != -2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (index, server) in servers.iter().enumerate() {
            let left = pttl(&server.url(), &key).await;
            if left > 2_500 {
                wrong.push(format!("round {round}: server {index}: kept {left} ms"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The same on a runtime whose connection to the third server is still opening, with no
/// straggling acquire: the acquire ran on another runtime, and every server answered it.
/// The extend returns on the two others, and its request and the `release_after`'s were
/// queued together on the opening connection, in either order (the sixth review).
#[test]
fn release_after_following_an_extend_on_a_connecting_runtime() {
    let servers = three();
    let first = tokio::runtime::Runtime::new().unwrap();
    let slow = first.block_on(Proxy::with_connect_delay(
        servers[2].port(),
        Duration::from_millis(500),
    ));
    let mut urls = urls(&servers[..2]);
    urls.push(slow.url());
    let locker = Locker::builder()
        .server_timeout(Duration::from_secs(2))
        .redlock(urls)
        .unwrap();
    let mut wrong = Vec::new();
    for round in 0..6 {
        let name = format!("conn{round}");
        let key = format!("lock:{{{name}}}");
        let guard = first.block_on(async {
            let guard = locker
                .lock(&name)
                .ttl(Duration::from_secs(8))
                .acquire()
                .await
                .unwrap();
            // Every server has it.
            assert!(
                eventually(Duration::from_secs(5), || async {
                    pttl(&servers[2].url(), &key).await > 0
                })
                .await
            );
            guard
        });
        let other = tokio::runtime::Runtime::new().unwrap();
        other.block_on(async {
            guard.extend(Duration::from_secs(60)).await.unwrap();
            assert!(guard.release_after(Duration::from_secs(2)).await.unwrap());
            tokio::time::sleep(Duration::from_millis(1500)).await;
            for (index, server) in servers.iter().enumerate() {
                let left = pttl(&server.url(), &key).await;
                if left > 2_500 {
                    wrong.push(format!("round {round}: server {index}: kept {left} ms"));
                }
            }
        });
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Mutual exclusion across processes with every early return of this backend in play:
/// one of five servers accepts connections and never answers, another is paused and
/// resumed while four worker processes count under the lock, and a third dies and comes
/// back empty (after the TTL, the restart rule). Each acquire, release and renewal
/// returns without the slower servers, whose parts go on in the background; the exact
/// counter shows that no two sections overlapped. (With a quorum of one server, the
/// server that came back empty lets a second worker in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_stay_exclusive_with_a_dead_and_a_paused_server() {
    const WORKERS: usize = 4;
    const SECTIONS: u64 = 20;
    let mut servers = five();
    let counter_server = RedisServer::start().unwrap();
    let dead = Proxy::with_connect_delay(servers[4].port(), Duration::from_secs(3_600)).await;
    let mut urls = urls(&servers[..4]);
    urls.push(dead.url());
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_lock-worker"))
                .args([
                    "redlock-count",
                    &counter_server.url(),
                    "shared",
                    "counter",
                    &SECTIONS.to_string(),
                ])
                .env("REDIS_URLS", urls.join(","))
                .env("LOCK_SERVER_TIMEOUT", "100ms")
                .env_remove("REDIS_URL")
                .spawn()
                .unwrap()
        })
        .collect();
    // Paused and resumed for as long as the workers run.
    let started = Instant::now();
    let mut workers = workers;
    let mut pauses = 0;
    while workers
        .iter_mut()
        .any(|worker| worker.try_wait().unwrap().is_none())
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        servers[1].pause().unwrap();
        pauses += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
        servers[1].resume().unwrap();
        match pauses {
            2 => servers[3].stop(),
            6 => servers[3].restart().unwrap(),
            _ => {}
        }
    }
    eprintln!("{pauses} pauses in {:?}", started.elapsed());
    assert!(
        pauses >= 2,
        "the workers finished before the server was paused twice"
    );
    for mut worker in workers {
        let status = tokio::task::spawn_blocking(move || worker.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
    let mut counter = Counter::redis(&counter_server.url(), "counter").await;
    assert_eq!(counter.get().await, WORKERS as u64 * SECTIONS);
}

/// `flush` waits for its own locker's background work only. It used to wait for every
/// locker's in the process: with a Redlock locker whose dead server keeps background work
/// alive for the connect timeout, another locker's flush ran out and returned `false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_waits_for_its_own_lockers_background_work_only() {
    let servers = three();
    let dead = Proxy::with_connect_delay(servers[2].port(), Duration::from_secs(3_600)).await;
    let mut redlock_urls = urls(&servers[..2]);
    redlock_urls.push(dead.url());
    let redlock = Locker::builder()
        .connect_timeout(Duration::from_secs(20))
        .command_timeout(Duration::from_millis(500))
        .redlock(redlock_urls)
        .unwrap();
    // Its dead server's part of this acquire goes on in the background for 20 s.
    let held = redlock.lock("slow").acquire().await.unwrap();
    let other = Locker::builder()
        .command_timeout(Duration::from_millis(500))
        .redis(&servers[0].url())
        .unwrap();
    drop(other.lock("dropped").acquire().await.unwrap());
    assert!(other.flush().await, "the other locker's work held it up");
    assert!(!other.is_locked("dropped").await.unwrap());
    assert!(
        !redlock.flush().await,
        "its own background work is still going on"
    );
    drop(held);
}
