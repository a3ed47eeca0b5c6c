//! Semaphores (`Locker::semaphore`): the contract on every backend that keeps them (one
//! server, a Cluster, Valkey, memory), and across processes on one server: 8 processes of
//! 16 tasks never exceed the permits (counted on a separate server), a SIGKILLed holder's
//! permit comes back within its TTL, and 10,000 cycles leave nothing behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::{LockError, Locker};
use lock_tests_integration::{Fixture, contract, eventually};

contract!(
    permits_are_counted_and_come_back_on_release,
    a_lock_and_a_semaphore_of_the_same_name_are_independent,
    a_permit_kept_past_its_lease_comes_back_when_the_lease_ends,
    a_release_hands_the_permit_to_the_first_waiter,
    waiters_get_permits_in_arrival_order,
    renewal_extend_and_min_hold_work_on_permits,
    fencing_tokens_grow_across_permits,
    never_more_holders_than_permits_32_tasks,
    changing_the_permits_of_a_held_semaphore,
    a_released_permit_goes_to_the_first_waiter_it_admits,
    a_thousand_contended_cycles_leave_nothing_behind,
    bad_semaphore_input_is_a_config_error,
);

async fn permits_are_counted_and_come_back_on_release(fx: Fixture) {
    let locker = &fx.locker;
    let sem = || {
        locker
            .semaphore("api:tenant-1", 3)
            .ttl(Duration::from_secs(10))
    };
    let mut guards = Vec::new();
    for _ in 0..3 {
        guards.push(sem().acquire().await.expect("a free permit"));
    }
    for guard in &guards {
        assert!(guard.is_held().await.unwrap());
        assert_eq!(guard.name(), "api:tenant-1");
        assert!(
            guard.key().ends_with("{api:tenant-1}:sem"),
            "{}",
            guard.key()
        );
    }
    let busy = sem().acquire().await.unwrap_err();
    match &busy {
        LockError::Busy { name, retry_after } => {
            assert_eq!(name, "api:tenant-1");
            let left = retry_after.expect("the first lease's end is known");
            assert!(left <= Duration::from_secs(10), "{left:?}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(guards.pop().unwrap().release().await.unwrap());
    let fourth = sem()
        .acquire()
        .await
        .expect("a released permit is free again");
    assert!(fourth.is_held().await.unwrap());
    assert!(sem().try_acquire().await.unwrap().is_none());
    for guard in guards {
        assert!(guard.release().await.unwrap());
    }
    assert!(fourth.release().await.unwrap());
}

async fn a_lock_and_a_semaphore_of_the_same_name_are_independent(fx: Fixture) {
    let locker = &fx.locker;
    let lock = locker.lock("shared-name").acquire().await.unwrap();
    let permit = locker.semaphore("shared-name", 1).acquire().await.unwrap();
    assert!(lock.is_held().await.unwrap());
    assert!(permit.is_held().await.unwrap());
    assert_ne!(lock.key(), permit.key());
    assert!(permit.release().await.unwrap());
    assert!(locker.is_locked("shared-name").await.unwrap());
    assert!(lock.release().await.unwrap());
}

async fn a_permit_kept_past_its_lease_comes_back_when_the_lease_ends(fx: Fixture) {
    // `keep` gives a permit up without releasing it, as a holder that died does.
    let locker = &fx.locker;
    let ttl = Duration::from_millis(400);
    let dead = locker
        .semaphore("dead-holder", 1)
        .ttl(ttl)
        .acquire()
        .await
        .unwrap();
    let handle = dead.handle();
    let kept_at = Instant::now();
    dead.keep();
    assert!(
        locker
            .semaphore("dead-holder", 1)
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );
    let next = locker
        .semaphore("dead-holder", 1)
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .expect("the lease ends");
    let waited = kept_at.elapsed();
    assert!(waited >= ttl - Duration::from_millis(50), "{waited:?}");
    assert!(!handle.is_held().await.unwrap(), "its lease is over");
    assert!(next.release().await.unwrap());
}

async fn a_release_hands_the_permit_to_the_first_waiter(fx: Fixture) {
    let locker = &fx.locker;
    let sem = || locker.semaphore("handoff", 2).ttl(Duration::from_secs(10));
    let first = sem().acquire().await.unwrap();
    let second = sem().acquire().await.unwrap();
    let waiter = tokio::spawn(sem().wait(Duration::from_secs(10)).acquire());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(first.release().await.unwrap());
    // The permit went to the waiter, not back to whoever asks first.
    assert!(sem().try_acquire().await.unwrap().is_none());
    let handed = waiter.await.unwrap().expect("the waiter got the permit");
    assert!(handed.is_held().await.unwrap());
    assert!(handed.release().await.unwrap());
    assert!(second.release().await.unwrap());
}

async fn waiters_get_permits_in_arrival_order(fx: Fixture) {
    let locker = &fx.locker;
    let sem = || locker.semaphore("fifo", 2).ttl(Duration::from_secs(10));
    let first = sem().acquire().await.unwrap();
    let second = sem().acquire().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for index in 0..4 {
        let order = order.clone();
        let request = sem().wait(Duration::from_secs(20));
        waiters.push(tokio::spawn(async move {
            let guard = request.acquire().await.expect("served in turn");
            order.lock().unwrap().push(index);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(guard.release().await.unwrap());
        }));
        // Each waiter is queued before the next one arrives.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // One permit goes round the queue: each waiter's release hands it to the next.
    assert!(first.release().await.unwrap());
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    assert!(second.release().await.unwrap());
}

async fn renewal_extend_and_min_hold_work_on_permits(fx: Fixture) {
    let locker = &fx.locker;
    let ttl = Duration::from_millis(300);
    let renewed = locker
        .semaphore("renewed", 1)
        .ttl(ttl)
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(ttl * 4).await;
    assert!(!renewed.is_lost());
    assert!(renewed.is_held().await.unwrap());
    renewed.extend(Duration::from_secs(5)).await.unwrap();
    assert!(renewed.remaining() > Duration::from_secs(5));
    // min_hold keeps the permit after the work, then lets its lease end.
    assert!(
        renewed
            .release_after(Duration::from_millis(2_000))
            .await
            .unwrap()
    );
    assert!(
        locker
            .semaphore("renewed", 1)
            .try_acquire()
            .await
            .unwrap()
            .is_none(),
        "kept for min_hold"
    );
    let next = locker
        .semaphore("renewed", 1)
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    assert!(next.release().await.unwrap());
}

async fn fencing_tokens_grow_across_permits(fx: Fixture) {
    let locker = &fx.locker;
    let sem = || locker.semaphore("fenced-sem", 3).fencing();
    let mut last = 0;
    let mut held = Vec::new();
    for _ in 0..6 {
        let guard = sem().acquire().await.unwrap();
        let token = guard.fencing_token().expect("asked for one");
        assert!(token > last, "{token} after {last}");
        last = token;
        held.push(guard);
        if held.len() == 3 {
            assert!(held.remove(0).release().await.unwrap());
        }
    }
    for guard in held {
        assert!(guard.release().await.unwrap());
    }
}

async fn never_more_holders_than_permits_32_tasks(fx: Fixture) {
    const PERMITS: usize = 4;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let locker = fx.locker.clone();
        let (inside, most) = (inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let guard = locker
                    .semaphore("bounded", PERMITS as u32)
                    .wait(Duration::from_secs(30))
                    .acquire()
                    .await
                    .expect("a permit within the wait");
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(guard.release().await.unwrap());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= PERMITS, "{most} holders at once");
    assert_eq!(most, PERMITS, "the permits were all in use at some point");
}

async fn changing_the_permits_of_a_held_semaphore(fx: Fixture) {
    let locker = &fx.locker;
    let sem = |permits| locker.semaphore("resized", permits);
    let mut four = Vec::new();
    for _ in 0..4 {
        four.push(sem(4).acquire().await.unwrap());
    }
    // Lowered to 2: nothing is revoked, and a new acquire waits until fewer than 2 are held.
    for guard in &four {
        assert!(guard.is_held().await.unwrap());
    }
    assert!(sem(2).try_acquire().await.unwrap().is_none());
    assert!(four.pop().unwrap().release().await.unwrap());
    assert!(four.pop().unwrap().release().await.unwrap());
    assert!(
        sem(2).try_acquire().await.unwrap().is_none(),
        "2 still held"
    );
    assert!(four.pop().unwrap().release().await.unwrap());
    let under_two = sem(2).acquire().await.expect("1 held, 2 permits");
    // Raised to 5: admitted at once up to the new count.
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(sem(5).acquire().await.unwrap());
    }
    assert!(sem(5).try_acquire().await.unwrap().is_none(), "5 held");
    for guard in four.into_iter().chain(more).chain([under_two]) {
        assert!(guard.release().await.unwrap());
    }
}

/// Found by review: a release looked at the first waiter only; when its count did not
/// admit it, the permit was just freed, newcomers took it, and admitted waiters behind
/// waited for their next poll.
async fn a_released_permit_goes_to_the_first_waiter_it_admits(fx: Fixture) {
    let locker = &fx.locker;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(fx.hold_elsewhere_permit("mixed", 3).await);
    }
    // First in line: a count of 1, not admitted while any permit is held.
    let strict = tokio::spawn(
        locker
            .semaphore("mixed", 1)
            .wait(Duration::from_secs(20))
            .acquire(),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let admitted = tokio::spawn(
        locker
            .semaphore("mixed", 3)
            .wait(Duration::from_secs(20))
            .acquire(),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(held.pop().unwrap().release().await.unwrap());
    // The permit went to the admitted waiter, not to whoever asks next.
    let newcomer = tokio::spawn(locker.semaphore("mixed", 3).try_acquire());
    assert!(
        newcomer.await.unwrap().unwrap().is_none(),
        "a newcomer took it"
    );
    let handed = tokio::time::timeout(Duration::from_millis(500), admitted)
        .await
        .expect("handed over, not found at the next poll (1 s)")
        .unwrap()
        .unwrap();
    assert!(handed.release().await.unwrap());
    for guard in held {
        assert!(guard.release().await.unwrap());
    }
    let strict = strict
        .await
        .unwrap()
        .expect("admitted once the others left");
    assert!(strict.release().await.unwrap());
}

async fn a_thousand_contended_cycles_leave_nothing_behind(fx: Fixture) {
    let locker = fx.another_locker();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let locker = locker.clone();
        tasks.push(tokio::spawn(async move {
            for cycle in 0..125 {
                let guard = locker
                    .semaphore("cycles", 3)
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(30))
                    .fencing()
                    .acquire()
                    .await
                    .unwrap();
                if cycle % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                assert!(guard.release().await.unwrap());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(locker.flush().await);
    // The queue's keys outlive their last waiter by at most three poll intervals.
    let limit = locker.poll_interval() * 3 + Duration::from_secs(2);
    let empty = eventually(limit, || async {
        fx.stored_keys().await.is_none_or(|keys| {
            // The fencing counter lives as long as the last lease it was issued with.
            keys.iter().all(|key| key.ends_with(":fence"))
        })
    })
    .await;
    assert!(empty, "left behind: {:?}", fx.stored_keys().await);
    if fx.server.is_some() || fx.cluster.is_some() {
        let gone = eventually(Duration::from_secs(7), || async {
            fx.stored_keys().await.is_some_and(|keys| keys.is_empty())
        })
        .await;
        assert!(gone, "left behind: {:?}", fx.stored_keys().await);
    }
}

async fn bad_semaphore_input_is_a_config_error(fx: Fixture) {
    let locker = &fx.locker;
    for request in [
        locker.semaphore("zero", 0),
        locker.semaphore("", 2),
        locker.semaphore("ttl", 2).ttl(Duration::ZERO),
    ] {
        let error = request.acquire().await.unwrap_err();
        assert!(matches!(error, LockError::Config(_)), "{error}");
    }
    let error = locker.semaphore("zero", 0).acquire().await.unwrap_err();
    assert!(error.to_string().contains("at least 1"), "{error}");
}

#[tokio::test]
async fn redlock_refuses_semaphores_and_says_why() {
    let locker = Locker::redlock([
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "redis://127.0.0.1:3",
    ])
    .unwrap();
    let error = locker.semaphore("api", 2).acquire().await.unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error}");
    assert!(error.to_string().contains("majority"), "{error}");
}

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_of_16_tasks_never_exceed_4_permits_and_leave_nothing_behind() {
    const PROCESSES: usize = 8;
    const SECTIONS: u32 = 80; // 8 x 16 x 80 = 10,240 cycles
    let fx = Fixture::redis();
    // Holders count themselves in and out on a server the library does not use.
    let tracker = lock_runtime::testing::RedisServer::start().unwrap();
    let started = Instant::now();
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(WORKER)
                .args(["semaphore", &fx.url(), "api:tenant", "4", "16"])
                .arg(SECTIONS.to_string())
                .arg(tracker.url())
                .spawn()
                .map(lock_tests_integration::KillOnDrop)
                .expect("spawn lock-worker")
        })
        .collect();
    for mut worker in workers {
        let status = tokio::task::spawn_blocking(move || worker.0.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a worker failed: {status:?}");
    }
    eprintln!(
        "10,240 permits taken by 8 processes in {:?}",
        started.elapsed()
    );
    let mut tracker = lock_tests_integration::raw_connection(&tracker.url()).await;
    let (inside, most): (i64, i64) = redis::pipe()
        .get("inside")
        .get("most")
        .query_async(&mut tracker)
        .await
        .unwrap();
    assert_eq!(inside, 0);
    assert!(most <= 4, "{most} holders at once");
    assert_eq!(most, 4, "all 4 permits were in use at some point");
    // Nothing left: the holders' set went with its last lease, the queue with its last
    // waiter (three poll intervals), the fencing counter was never written.
    let empty = eventually(Duration::from_secs(5), || async {
        fx.stored_keys().await.unwrap().is_empty()
    })
    .await;
    assert!(empty, "left behind: {:?}", fx.stored_keys().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_holders_permit_comes_back_within_its_ttl() {
    let fx = Fixture::redis();
    let ttl = Duration::from_secs(2);
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = lock_tests_integration::KillOnDrop(
            std::process::Command::new(WORKER)
                .args(["sem-hold", &fx.url(), "pool", "2"])
                .arg(ttl.as_millis().to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn lock-worker"),
        );
        assert_eq!(holder.read_line().await.trim(), "ACQUIRED");
        holders.push(holder);
    }
    let sem = || fx.locker.semaphore("pool", 2);
    // Renewed, the permits outlive their TTL while their holders live.
    tokio::time::sleep(ttl + ttl / 2).await;
    assert!(sem().try_acquire().await.unwrap().is_none());

    let mut killed = holders.remove(0);
    killed.0.kill().unwrap(); // SIGKILL: no release, no destructor
    killed.0.wait().unwrap();
    let killed_at = Instant::now();
    let guard = sem()
        .wait(Duration::from_secs(20))
        .acquire()
        .await
        .expect("the dead holder's permit comes back");
    let waited = killed_at.elapsed();
    eprintln!("permit back {waited:?} after the kill (TTL {ttl:?})");
    // Its last renewal was at most a third of the TTL before the kill: back within the
    // TTL, plus the waiter's wake-up slack.
    assert!(waited <= ttl + Duration::from_millis(500), "{waited:?}");
    // The live holder's permit was never given away.
    assert!(sem().try_acquire().await.unwrap().is_none());
    assert!(guard.release().await.unwrap());
}
