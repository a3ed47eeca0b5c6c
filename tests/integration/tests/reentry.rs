//! Self-deadlock detection and opt-in re-entry (`LockRequest::reentrant`), on every
//! backend: a task that asks for a lock it holds fails at once with `Reentrant` instead of
//! waiting for itself; with `reentrant` it shares the held lock, which only the outer guard
//! releases; spawned tasks and other threads are other owners.

use std::time::Duration;

use lock_runtime::{LockError, Locker};
use lock_tests_integration::{Fixture, contract};

contract!(
    asking_again_for_a_held_lock_fails_at_once,
    re_entry_shares_the_lock_and_releases_nothing,
    nested_runs_re_enter,
    a_spawned_task_is_another_owner,
    a_released_or_lost_lock_is_taken_anew,
    semaphores_count_each_acquire,
);

/// Well under the requests' waits: a request that waited for itself would fail this.
const AT_ONCE: Duration = Duration::from_secs(5);

async fn asking_again_for_a_held_lock_fails_at_once(fx: Fixture) {
    let locker = &fx.locker;
    let outer = locker.lock("account:1").acquire().await.unwrap();
    let again = locker.lock("account:1").wait(Duration::from_secs(60));
    let error = tokio::time::timeout(AT_ONCE, again.acquire())
        .await
        .expect("did not wait for itself")
        .unwrap_err();
    assert!(
        matches!(&error, LockError::Reentrant { name } if name == "account:1"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("already held by this task"),
        "{error}"
    );
    // A clone of the locker is the same locker.
    let clone = locker.clone();
    let error = clone.lock("account:1").try_acquire().await.unwrap_err();
    assert!(matches!(error, LockError::Reentrant { .. }), "{error:?}");
    // Another lock is not affected.
    let other = locker.lock("account:2").acquire().await.unwrap();
    assert!(other.release().await.unwrap());
    assert!(outer.is_held().await.unwrap());
    assert!(outer.release().await.unwrap());
}

async fn re_entry_shares_the_lock_and_releases_nothing(fx: Fixture) {
    let locker = &fx.locker;
    let outer = locker.lock("account:3").fencing().acquire().await.unwrap();
    let inner = tokio::time::timeout(
        AT_ONCE,
        locker
            .lock("account:3")
            .reentrant()
            .wait(Duration::from_secs(60))
            .acquire(),
    )
    .await
    .expect("did not wait for itself")
    .unwrap();
    assert_eq!(inner.token(), outer.token());
    assert_eq!(inner.fencing_token(), outer.fencing_token());
    // Releasing (or keeping, or dropping) the inner guard leaves the lock to the outer one.
    assert!(inner.release().await.unwrap());
    let kept = locker
        .lock("account:3")
        .reentrant()
        .acquire()
        .await
        .unwrap();
    kept.keep();
    drop(
        locker
            .lock("account:3")
            .reentrant()
            .acquire()
            .await
            .unwrap(),
    );
    assert!(locker.flush().await);
    let someone_else = fx.another_locker();
    let owner = tokio::spawn(async move {
        someone_else
            .lock("account:3")
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    });
    assert!(owner.await.unwrap(), "still held by the outer guard");
    assert!(outer.is_held().await.unwrap());
    assert!(outer.release().await.unwrap());
    assert!(!locker.is_locked("account:3").await.unwrap());
}

async fn nested_runs_re_enter(fx: Fixture) {
    let locker = fx.locker.clone();
    let inner_locker = locker.clone();
    let tokens = locker
        .lock("report")
        .run(|outer| async move {
            let strict = inner_locker.lock("report").run(|_| async {}).await;
            assert!(
                matches!(strict, Err(LockError::Reentrant { .. })),
                "{strict:?}"
            );
            let inner = inner_locker
                .lock("report")
                .reentrant()
                .run(|inner| async move {
                    assert_eq!(lock_runtime::current().unwrap().token(), inner.token());
                    inner.token().to_owned()
                })
                .await
                .unwrap();
            assert!(inner_locker.is_locked("report").await.unwrap());
            (outer.token().to_owned(), inner)
        })
        .await
        .unwrap();
    assert_eq!(tokens.0, tokens.1);
    assert!(!locker.is_locked("report").await.unwrap());
}

async fn a_spawned_task_is_another_owner(fx: Fixture) {
    let locker = &fx.locker;
    let outer = locker.lock("job").acquire().await.unwrap();
    let child = locker.clone();
    let waited = tokio::spawn(async move {
        child
            .lock("job")
            .wait(Duration::from_millis(200))
            .acquire()
            .await
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(waited, LockError::WaitTimeout { .. }),
        "{waited:?}"
    );
    // A spawned task that waits gets the lock when this task releases it.
    let child = locker.clone();
    let next = tokio::spawn(async move {
        child
            .lock("job")
            .reentrant()
            .wait(Duration::from_secs(10))
            .acquire()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let outer_token = outer.token().to_owned();
    assert!(outer.release().await.unwrap());
    let next = next.await.unwrap().unwrap();
    assert_ne!(next.token(), outer_token, "its own lock, not a share");
    assert!(next.release().await.unwrap());
}

async fn a_released_or_lost_lock_is_taken_anew(fx: Fixture) {
    let locker = &fx.locker;
    let first = locker.lock("anew").acquire().await.unwrap();
    let first_token = first.token().to_owned();
    assert!(first.release().await.unwrap());
    let second = locker.lock("anew").reentrant().acquire().await.unwrap();
    assert_ne!(second.token(), first_token);
    // Lost (its lease ran out): a new request takes the lock anew.
    let short = locker
        .lock("lost")
        .ttl(Duration::from_millis(100))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(short.is_lost());
    let again = locker.lock("lost").acquire().await.unwrap();
    assert_ne!(again.token(), short.token());
    assert!(again.release().await.unwrap());
    assert!(!short.release().await.unwrap());
    assert!(second.release().await.unwrap());
}

async fn semaphores_count_each_acquire(fx: Fixture) {
    let locker = &fx.locker;
    let first = locker.semaphore("pool", 2).acquire().await.unwrap();
    let second = locker.semaphore("pool", 2).acquire().await.unwrap();
    assert_ne!(first.token(), second.token());
    let error = locker
        .semaphore("pool", 2)
        .reentrant()
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error}");
    assert!(
        error.to_string().contains("re-entry is for locks"),
        "{error}"
    );
    assert!(first.release().await.unwrap());
    assert!(second.release().await.unwrap());
}

#[test]
fn outside_any_task_the_thread_is_the_owner() {
    let locker = Locker::memory();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // `block_on`'s future is no task: the thread that drives it owns the lock.
    let outer = runtime.block_on(locker.lock("main").acquire()).unwrap();
    let again = runtime.block_on(locker.lock("main").acquire()).unwrap_err();
    assert!(matches!(again, LockError::Reentrant { .. }), "{again:?}");
    // Another thread is another owner.
    let other = locker.clone();
    let elsewhere = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(other.lock("main").try_acquire())
    })
    .join()
    .unwrap();
    assert!(matches!(elsewhere, Ok(None)), "{elsewhere:?}");
    runtime.block_on(outer.release()).unwrap();
}

#[tokio::test]
async fn redlock_detects_re_entry_before_asking_any_server() {
    // Redlock (over one server here): re-entry is decided in this process, like elsewhere.
    let servers = lock_runtime::testing::RedisServer::start().unwrap();
    let locker = Locker::redlock([servers.url()]).unwrap();
    let outer = locker.lock("quorum").acquire().await.unwrap();
    let error = locker.lock("quorum").acquire().await.unwrap_err();
    assert!(matches!(error, LockError::Reentrant { .. }), "{error:?}");
    let inner = locker.lock("quorum").reentrant().acquire().await.unwrap();
    assert_eq!(inner.token(), outer.token());
    assert!(outer.release().await.unwrap());
}

/// Found by review: a dropped guard's release is spawned, so its lock stayed "held by
/// this task" until that ran; asking again at once failed with `Reentrant` (a retry after
/// a timed-out `run`, a new campaign after dropping a leadership).
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_guard_is_no_longer_the_tasks() {
    let server = lock_runtime::testing::RedisServer::start().unwrap();
    for locker in [Locker::redis(&server.url()).unwrap(), Locker::memory()] {
        let guard = locker.lock("dropped").acquire().await.unwrap();
        drop(guard);
        let again = locker
            .lock("dropped")
            .wait(Duration::from_secs(5))
            .acquire()
            .await;
        assert!(again.is_ok(), "asking again after drop(guard): {again:?}");
        drop(again);

        let first = tokio::time::timeout(
            Duration::from_millis(100),
            locker
                .lock("job")
                .run(|_| tokio::time::sleep(Duration::from_secs(10))),
        )
        .await;
        assert!(first.is_err(), "the first run timed out");
        let retry = locker
            .lock("job")
            .wait(Duration::from_secs(5))
            .run(|_| async {})
            .await;
        assert!(retry.is_ok(), "a retry after a timed-out run: {retry:?}");

        let leadership = locker.leader("sched").await.unwrap();
        drop(leadership);
        let again = tokio::time::timeout(Duration::from_secs(5), locker.leader("sched").campaign())
            .await
            .expect("elected again");
        assert!(
            again.is_ok(),
            "a campaign after dropping the leadership: {again:?}"
        );
        assert!(locker.flush().await);
    }
}

/// Found by review: a re-entry's guard kept saying it held the lock after the guard that
/// owned it released it, even once another owner had taken it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_entry_ends_with_the_lock_it_shares() {
    let server = lock_runtime::testing::RedisServer::start().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    let outer = locker.lock("shared").acquire().await.unwrap();
    let inner = locker.lock("shared").reentrant().acquire().await.unwrap();
    let inner_lost = inner.lost();
    assert!(!inner.is_lost());
    assert!(outer.release().await.unwrap());
    let other = Locker::redis(&server.url()).unwrap();
    let theirs = tokio::spawn(async move { other.lock("shared").try_acquire().await });
    let theirs = theirs
        .await
        .unwrap()
        .unwrap()
        .expect("free for another owner");
    assert!(inner.is_lost(), "the lock it shared was released");
    tokio::time::timeout(Duration::from_secs(2), inner_lost)
        .await
        .expect("lost() fires when the shared lock is released");
    assert!(!inner.release().await.unwrap(), "no longer held");
    assert!(theirs.release().await.unwrap());
}

/// Found by review: a re-entrant request that asked for a fencing token (or durability)
/// the held lock lacks got a guard without it, silently.
#[tokio::test]
async fn re_entry_cannot_add_fencing_or_durability() {
    let server = lock_runtime::testing::RedisServer::start().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    let outer = locker.lock("plain").acquire().await.unwrap();
    let fenced = locker.lock("plain").reentrant().fencing().acquire().await;
    assert!(matches!(fenced, Err(LockError::Config(_))), "{fenced:?}");
    let durable = locker
        .lock("plain")
        .reentrant()
        .durable(1, Duration::from_secs(1))
        .acquire()
        .await;
    assert!(
        matches!(&durable, Err(LockError::Config(problem)) if problem.contains("re-entry")),
        "{durable:?}"
    );
    assert!(outer.release().await.unwrap());
    // A fenced lock re-entered with `fencing` shares its token.
    let outer = locker.lock("fenced").fencing().acquire().await.unwrap();
    let inner = locker
        .lock("fenced")
        .reentrant()
        .fencing()
        .acquire()
        .await
        .unwrap();
    assert_eq!(inner.fencing_token(), outer.fencing_token());
    assert!(outer.release().await.unwrap());
}
