//! One contract, every backend: every behaviour here runs against a private
//! `redis-server`, a private Redis Cluster (3 masters, 3 replicas), the memory backend, and
//! a private `valkey-server` when `LOCK_TEST_VALKEY_BIN` names one (otherwise each Valkey
//! test says it is skipped).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_runtime::LockError;
use lock_tests_integration::{Fixture, until_free};

use lock_tests_integration::contract;

contract!(
    acquire_release_and_inspect,
    second_owner_is_refused_until_release,
    try_acquire_maps_contention_to_none,
    stranger_token_cannot_release_or_extend,
    lock_expires_after_its_ttl,
    extend_adds_time,
    fencing_tokens_strictly_increase_across_holders,
    waiter_gets_the_lock_when_it_is_released,
    waiters_are_served_in_arrival_order,
    a_release_hands_the_lock_to_a_waiter_before_the_releaser_can_retake_it,
    a_waiter_that_leaves_the_queue_does_not_hold_up_the_next,
    wait_times_out_with_how_long_it_waited,
    retry_policy_gives_up_after_its_tries,
    run_releases_after_the_work,
    mutual_exclusion_32_tasks,
    dropped_guard_releases_the_lock,
    bad_input_is_a_config_error,
);

async fn acquire_release_and_inspect(fx: Fixture) {
    let locker = &fx.locker;
    assert!(!locker.is_locked("inspect").await.unwrap());
    assert_eq!(locker.remaining("inspect").await.unwrap(), None);

    let guard = locker
        .lock("inspect")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    assert_eq!(guard.name(), "inspect");
    assert_eq!(guard.key(), "lock:{inspect}");
    assert_eq!(guard.fencing_token(), None);
    assert!(guard.is_held().await.unwrap());
    assert!(!guard.is_lost());
    assert!(locker.is_locked("inspect").await.unwrap());
    let ttl = locker.remaining("inspect").await.unwrap().expect("a TTL");
    assert!(
        ttl > Duration::from_secs(5) && ttl <= Duration::from_secs(10),
        "{ttl:?}"
    );
    assert!(guard.remaining() <= Duration::from_secs(10));
    // Debug shows the key but never the owner token.
    let debug = format!("{guard:?}");
    assert!(
        debug.contains("lock:{inspect}") && !debug.contains(guard.token()),
        "{debug}"
    );

    assert!(guard.release().await.unwrap());
    assert!(!locker.is_locked("inspect").await.unwrap());
}

async fn second_owner_is_refused_until_release(fx: Fixture) {
    let other = fx.another_locker();
    let guard = fx.hold_elsewhere("refuse").await;
    let err = other.lock("refuse").acquire().await.unwrap_err();
    match &err {
        LockError::Busy { name, .. } => assert_eq!(name, "refuse"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // Display names the lock, not its internal Redis key.
    let message = err.to_string();
    assert!(
        message.contains("`refuse`") && !message.contains("lock:{"),
        "{err}"
    );
    assert!(guard.release().await.unwrap());
    let second = other.lock("refuse").acquire().await.unwrap();
    assert!(second.release().await.unwrap());
}

async fn try_acquire_maps_contention_to_none(fx: Fixture) {
    let guard = fx.hold_elsewhere("try").await;
    assert!(
        fx.another_locker()
            .lock("try")
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );
    // With a wait, contention that outlasts it is still `None`.
    let waited = fx
        .another_locker()
        .lock("try")
        .wait(Duration::from_millis(50))
        .try_acquire()
        .await
        .unwrap();
    assert!(waited.is_none());
    drop(guard);
}

async fn stranger_token_cannot_release_or_extend(fx: Fixture) {
    // The owner's lock is expired and re-taken by a stranger: the first owner can neither
    // release nor extend the stranger's lock, and learns that it lost its own.
    let first = fx
        .locker
        .lock("owned")
        .ttl(Duration::from_millis(100))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let stranger = fx
        .another_locker()
        .lock("owned")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    assert!(first.is_lost(), "the first lease ran out");
    assert!(!first.is_held().await.unwrap());
    let err = first.extend(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
    assert!(
        !first.release().await.unwrap(),
        "released a stranger's lock"
    );
    assert!(stranger.is_held().await.unwrap());
    assert!(fx.locker.is_locked("owned").await.unwrap());
    assert!(stranger.release().await.unwrap());
}

async fn lock_expires_after_its_ttl(fx: Fixture) {
    let guard = fx
        .locker
        .lock("expire")
        .ttl(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap();
    let locker = fx.locker.clone();
    assert!(
        until_free(&locker, "expire").await,
        "the lock never expired"
    );
    // Known lost without asking the backend, and `lost()` completes.
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost() did not fire after the TTL");
    assert!(guard.is_lost());
    let again = fx.another_locker().lock("expire").acquire().await.unwrap();
    assert!(again.release().await.unwrap());
}

async fn extend_adds_time(fx: Fixture) {
    let guard = fx
        .locker
        .lock("extend")
        .ttl(Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    guard.extend(Duration::from_secs(60)).await.unwrap();
    let ttl = fx.locker.remaining("extend").await.unwrap().unwrap();
    assert!(ttl > Duration::from_secs(55), "{ttl:?}");
    assert!(guard.remaining() > Duration::from_secs(55));
    let zero = guard.extend(Duration::ZERO).await.unwrap_err();
    assert!(matches!(zero, LockError::Config(_)), "{zero:?}");
    assert!(guard.release().await.unwrap());
}

async fn fencing_tokens_strictly_increase_across_holders(fx: Fixture) {
    let lockers = [fx.locker.clone(), fx.another_locker(), fx.another_locker()];
    let mut last = 0;
    for round in 0..9 {
        let guard = lockers[round % 3]
            .lock("fenced")
            .fencing()
            .acquire()
            .await
            .unwrap();
        let token = guard.fencing_token().expect("a fencing token");
        assert!(token > last, "token {token} after {last}");
        last = token;
        // Whether released or expired, the next holder's token is larger.
        if round % 2 == 0 {
            assert!(guard.release().await.unwrap());
        } else {
            drop(guard);
            let locker = fx.locker.clone();
            assert!(until_free(&locker, "fenced").await);
        }
    }
    // Unfenced acquisitions have no token and do not disturb the counter.
    let plain = fx.locker.lock("fenced").acquire().await.unwrap();
    assert_eq!(plain.fencing_token(), None);
    assert!(plain.release().await.unwrap());
    let next = fx.locker.lock("fenced").fencing().acquire().await.unwrap();
    assert!(next.fencing_token().unwrap() > last);
}

async fn waiter_gets_the_lock_when_it_is_released(fx: Fixture) {
    let holder = fx
        .locker
        .lock("queue")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let other = fx.another_locker();
    let waiter = tokio::spawn(async move {
        other
            .lock("queue")
            .wait(Duration::from_secs(20))
            .acquire()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the waiter did not wait");
    assert!(holder.release().await.unwrap());
    let guard = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was not woken by the release")
        .unwrap()
        .unwrap();
    assert!(guard.is_held().await.unwrap());
}

/// Long enough for a spawned waiter to have made its queued attempt.
const JOIN_QUEUE: Duration = Duration::from_millis(250);

async fn waiters_are_served_in_arrival_order(fx: Fixture) {
    let holder = fx
        .locker
        .lock("fifo")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for arrival in 0..4 {
        let locker = fx.another_locker();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let guard = locker
                .lock("fifo")
                .wait(Duration::from_secs(30))
                .acquire()
                .await
                .unwrap();
            order.lock().unwrap().push(arrival);
            assert!(guard.release().await.unwrap());
        }));
        tokio::time::sleep(JOIN_QUEUE).await;
    }
    assert!(holder.release().await.unwrap());
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .expect("a waiter was never served")
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
}

async fn a_release_hands_the_lock_to_a_waiter_before_the_releaser_can_retake_it(fx: Fixture) {
    let holder = fx.locker.lock("handoff").acquire().await.unwrap();
    let other = fx.another_locker();
    let waiter = tokio::spawn(async move {
        other
            .lock("handoff")
            .wait(Duration::from_secs(30))
            .acquire()
            .await
    });
    tokio::time::sleep(JOIN_QUEUE).await;
    assert!(holder.release().await.unwrap());
    // The releaser's immediate retry finds the lock taken: it went to the waiter.
    assert!(
        fx.locker
            .lock("handoff")
            .try_acquire()
            .await
            .unwrap()
            .is_none(),
        "the releaser barged past the waiter"
    );
    let guard = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter never got the lock")
        .unwrap()
        .unwrap();
    assert!(guard.is_held().await.unwrap());
}

async fn a_waiter_that_leaves_the_queue_does_not_hold_up_the_next(fx: Fixture) {
    let holder = fx
        .locker
        .lock("leave")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let wait_for = |wait: Duration| {
        let locker = fx.another_locker();
        tokio::spawn(async move { locker.lock("leave").wait(wait).acquire().await })
    };
    // In the queue, in this order: one waiter that is cancelled, one that times out,
    // and one that stays.
    let cancelled = wait_for(Duration::from_secs(30));
    tokio::time::sleep(JOIN_QUEUE).await;
    let timed_out = wait_for(Duration::from_millis(300));
    tokio::time::sleep(JOIN_QUEUE).await;
    let stays = wait_for(Duration::from_secs(30));
    tokio::time::sleep(JOIN_QUEUE).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    assert!(matches!(
        timed_out.await.unwrap(),
        Err(LockError::WaitTimeout { .. })
    ));
    tokio::time::sleep(JOIN_QUEUE).await; // their clean-ups run
    let released_at = std::time::Instant::now();
    assert!(holder.release().await.unwrap());
    let guard = tokio::time::timeout(Duration::from_secs(10), stays)
        .await
        .expect("the remaining waiter never got the lock")
        .unwrap()
        .unwrap();
    // Handed to a departed waiter, the lock would sit unclaimed for its claim window
    // (two poll intervals: 2 s) first.
    let delay = released_at.elapsed();
    assert!(
        delay < Duration::from_millis(1500),
        "the lock reached the remaining waiter {delay:?} after the release"
    );
    assert!(guard.release().await.unwrap());
}

async fn wait_times_out_with_how_long_it_waited(fx: Fixture) {
    let _holder = fx.hold_elsewhere("timeout").await;
    let err = fx
        .another_locker()
        .lock("timeout")
        .wait(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap_err();
    match err {
        LockError::WaitTimeout { name, waited, .. } => {
            assert_eq!(name, "timeout");
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
        }
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
}

async fn retry_policy_gives_up_after_its_tries(fx: Fixture) {
    let holder = fx.hold_elsewhere("retry").await;
    let started = std::time::Instant::now();
    let err = fx
        .another_locker()
        .lock("retry")
        .retry(3, Duration::from_millis(50))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::WaitTimeout { .. }), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "3 delays of 50 ms"
    );
    // Retries succeed once the holder lets go between two tries.
    let other = fx.another_locker();
    let retrying = tokio::spawn(async move {
        other
            .lock("retry")
            .retry(100, Duration::from_millis(20))
            .acquire()
            .await
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(holder.release().await.unwrap());
    let guard = retrying.await.unwrap().unwrap();
    assert!(guard.is_held().await.unwrap());
}

async fn run_releases_after_the_work(fx: Fixture) {
    let locker = fx.locker.clone();
    let seen = fx
        .locker
        .lock("run")
        .run(|lock| async move {
            assert!(locker.is_locked("run").await.unwrap());
            lock.key().to_owned()
        })
        .await
        .unwrap();
    assert_eq!(seen, "lock:{run}");
    assert!(!fx.locker.is_locked("run").await.unwrap());

    // A panic in the work releases the lock too (through the guard's drop).
    let locker = fx.locker.clone();
    let panicked = tokio::spawn(async move {
        locker
            .lock("run")
            .run(|_lock| async { panic!("work failed") })
            .await
    })
    .await;
    assert!(panicked.is_err());
    let locker = fx.locker.clone();
    assert!(until_free(&locker, "run").await);
}

async fn mutual_exclusion_32_tasks(fx: Fixture) {
    const TASKS: u64 = 32;
    const SECTIONS: u64 = 200;
    let counter = fx.counter("counter:exclusion").await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        // Half the tasks share the fixture's locker, half have their own connections.
        let locker = if task % 2 == 0 {
            fx.locker.clone()
        } else {
            fx.another_locker()
        };
        let mut counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..SECTIONS {
                let guard = locker
                    .lock("exclusion")
                    .wait(Duration::from_secs(120))
                    .acquire()
                    .await
                    .unwrap();
                counter.unsafe_increment().await;
                assert!(guard.release().await.unwrap(), "lost during a section");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(counter.clone().get().await, TASKS * SECTIONS);
}

async fn dropped_guard_releases_the_lock(fx: Fixture) {
    let guard = fx
        .locker
        .lock("dropped")
        .ttl(Duration::from_secs(60))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    drop(guard);
    let locker = fx.locker.clone();
    assert!(
        until_free(&locker, "dropped").await,
        "a dropped guard left its 60 s lock behind"
    );
}

async fn bad_input_is_a_config_error(fx: Fixture) {
    let locker = &fx.locker;
    let cases = [
        (locker.lock("").acquire().await.unwrap_err(), "empty"),
        (
            locker
                .lock("x")
                .ttl(Duration::ZERO)
                .acquire()
                .await
                .unwrap_err(),
            "at least 1 ms",
        ),
        (
            locker
                .lock("x")
                .ttl(Duration::from_secs(1))
                .renew_every(Duration::from_secs(1))
                .acquire()
                .await
                .unwrap_err(),
            "shorter than the TTL",
        ),
        (
            locker
                .lock("x")
                .renew_every(Duration::ZERO)
                .acquire()
                .await
                .unwrap_err(),
            "positive",
        ),
        (
            locker
                .lock("x")
                .ttl(Duration::from_secs(u64::MAX))
                .acquire()
                .await
                .unwrap_err(),
            "too long",
        ),
        (locker.is_locked("").await.unwrap_err(), "empty"),
    ];
    for (err, says) in cases {
        assert!(matches!(err, LockError::Config(_)), "{err:?}");
        assert!(
            err.to_string().contains(says),
            "`{err}` should say `{says}`"
        );
    }
    // Nothing was left behind by the refused requests.
    assert!(!locker.is_locked("x").await.unwrap());
}
