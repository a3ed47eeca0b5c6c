//! `#[distributed_lock]` against a real Redis: exclusion across tasks and processes,
//! every option, every exit path and every error path.
//!
//! No test in this binary sets the process-wide default locker (one checks that it is
//! missing); every function names its locker.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::{LockError, Locker, OnLost, distributed_lock};
use lock_tests_integration::{Counter, Fixture, raw_connection, until_free};

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Failed,
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        Self::Lock(error)
    }
}

#[distributed_lock("counter:<name>", wait = 60, locker = locker)]
async fn increment(locker: &Locker, name: &str, counter: &mut Counter) -> Result<(), AppError> {
    counter.unsafe_increment().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_functions_exclude_each_other_across_tasks() {
    let fx = Fixture::redis();
    let counter = fx.counter("counter:tasks").await;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let locker = if task % 2 == 0 {
                fx.locker.clone()
            } else {
                fx.another_locker()
            };
            let mut counter = counter.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    increment(&locker, "tasks", &mut counter).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(counter.clone().get().await, 1600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_functions_exclude_each_other_across_processes() {
    let fx = Fixture::redis();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(WORKER)
                .args([
                    "attr-count",
                    &fx.url(),
                    "attr-processes",
                    "counter:attr-processes",
                    "200",
                ])
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let status = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(status.status.success());
    }
    assert_eq!(
        Counter::redis(&fx.url(), "counter:attr-processes")
            .await
            .get()
            .await,
        600
    );
}

#[distributed_lock("order:<order_id>", timeout = 30, locker = locker)]
async fn pay(locker: &Locker, order_id: u64) -> Result<u64, AppError> {
    Ok(order_id)
}

#[distributed_lock("order:<order_id>", wait = "300ms", locker = locker)]
async fn pay_waiting(locker: &Locker, order_id: u64) -> Result<u64, AppError> {
    Ok(order_id)
}

#[distributed_lock("order:<order_id>", retry = 3, retry_delay = "50ms", locker = locker)]
async fn pay_retrying(locker: &Locker, order_id: u64) -> Result<u64, AppError> {
    Ok(order_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_is_an_error_per_the_wait_policy() {
    let fx = Fixture::redis();
    let locker = &fx.locker;
    assert_eq!(pay(locker, 1).await.unwrap(), 1);

    let held = fx.another_locker().lock("order:1").acquire().await.unwrap();
    match pay(locker, 1).await {
        Err(AppError::Lock(LockError::Busy { name, .. })) => assert_eq!(name, "order:1"),
        other => panic!("expected Busy, got {other:?}"),
    }
    let started = Instant::now();
    assert!(matches!(
        pay_waiting(locker, 1).await,
        Err(AppError::Lock(LockError::WaitTimeout { .. }))
    ));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        pay_retrying(locker, 1).await,
        Err(AppError::Lock(LockError::WaitTimeout { .. }))
    ));
    // Another order is not blocked by this one.
    assert_eq!(pay(locker, 2).await.unwrap(), 2);

    // A waiter gets the lock when the holder releases it.
    let waiting = tokio::spawn({
        let locker = fx.another_locker();
        async move { pay_waiting(&locker, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(held.release().await.unwrap());
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
}

static SKIP_RUNS: AtomicU32 = AtomicU32::new(0);

#[distributed_lock("job:skip-result", skip, locker = locker)]
async fn skip_result(locker: &Locker) -> Result<u32, AppError> {
    Ok(SKIP_RUNS.fetch_add(1, Ordering::SeqCst) + 1)
}

#[distributed_lock("job:skip-plain", skip, locker = locker)]
async fn skip_plain(locker: &Locker) -> Option<u32> {
    Some(SKIP_RUNS.fetch_add(1, Ordering::SeqCst) + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_returns_the_default_without_running_the_body() {
    let mut fx = Fixture::redis();
    let before = SKIP_RUNS.load(Ordering::SeqCst);
    let _held = [
        fx.another_locker()
            .lock("job:skip-result")
            .acquire()
            .await
            .unwrap(),
        fx.another_locker()
            .lock("job:skip-plain")
            .acquire()
            .await
            .unwrap(),
    ];
    assert_eq!(skip_result(&fx.locker).await.unwrap(), 0);
    assert_eq!(skip_plain(&fx.locker).await, None);
    assert_eq!(
        SKIP_RUNS.load(Ordering::SeqCst),
        before,
        "a skipped body ran"
    );
    drop(_held);
    assert!(
        until_free(&fx.locker, "job:skip-result").await
            && until_free(&fx.locker, "job:skip-plain").await
    );
    assert!(skip_result(&fx.locker).await.unwrap() > 0);
    assert!(skip_plain(&fx.locker).await.is_some());

    // Redis down: a Result function reports it; a plain one skips (and logs it).
    fx.server.as_mut().unwrap().stop();
    let dead = fx.locker.clone();
    match skip_result(&dead).await {
        Err(AppError::Lock(LockError::Backend { .. } | LockError::Connect { .. })) => {}
        other => panic!("a backend failure was not reported: {other:?}"),
    }
    assert_eq!(skip_plain(&dead).await, None);
}

static WINDOW_RUNS: AtomicU32 = AtomicU32::new(0);

#[distributed_lock("job:window", timeout = 5, skip, min_hold = "1500ms", locker = locker)]
async fn windowed_job(locker: &Locker) {
    WINDOW_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_hold_keeps_the_key_for_the_window() {
    let fx = Fixture::redis();
    let started = Instant::now();
    windowed_job(&fx.locker).await;
    // The body is done, but the key stays for the rest of the window.
    let left = fx
        .locker
        .remaining("job:window")
        .await
        .unwrap()
        .expect("the key was deleted");
    assert!(left <= Duration::from_millis(1500), "{left:?}");
    windowed_job(&fx.another_locker()).await;
    if started.elapsed() < Duration::from_millis(1400) {
        assert_eq!(
            WINDOW_RUNS.load(Ordering::SeqCst),
            1,
            "ran twice in one window"
        );
    }
    assert!(until_free(&fx.locker, "job:window").await);
    windowed_job(&fx.another_locker()).await;
    assert!(
        WINDOW_RUNS.load(Ordering::SeqCst) >= 2,
        "did not run in the next window"
    );
}

#[distributed_lock("ledger:<account>", fencing, locker = locker)]
async fn write_ledger(locker: &Locker, account: &str) -> Result<u64, AppError> {
    Ok(lock_runtime::current().unwrap().fencing_token().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_reach_the_body_and_grow() {
    let fx = Fixture::redis();
    let lockers = [fx.locker.clone(), fx.another_locker()];
    let mut last = 0;
    for round in 0..6 {
        let token = write_ledger(&lockers[round % 2], "acme").await.unwrap();
        assert!(token > last, "{token} after {last}");
        last = token;
    }
}

static AFTER_LOSS: AtomicU32 = AtomicU32::new(0);

#[distributed_lock("abort:<name>", timeout = 1, auto_renew, on_lost = abort, locker = locker)]
async fn abortable(locker: &Locker, name: &str, url: &str) -> Result<(), AppError> {
    let mut redis = raw_connection(url).await;
    let key = lock_runtime::current().unwrap().key().to_owned();
    let () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    AFTER_LOSS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[distributed_lock("ignore:<name>", timeout = 1, auto_renew, locker = locker)]
async fn ignoring(locker: &Locker, name: &str, url: &str) -> Result<bool, AppError> {
    let mut redis = raw_connection(url).await;
    let lock = lock_runtime::current().unwrap();
    let () = redis::cmd("DEL")
        .arg(lock.key())
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), lock.lost())
        .await
        .map_err(|_| AppError::Failed)?;
    Ok(lock.is_lost())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lost_abort_drops_the_body_and_returns_lost() {
    let fx = Fixture::redis();
    let started = Instant::now();
    match abortable(&fx.locker, "a", &fx.url()).await {
        Err(AppError::Lock(LockError::Lost { name })) => assert_eq!(name, "abort:a"),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the body was not aborted"
    );
    assert_eq!(AFTER_LOSS.load(Ordering::SeqCst), 0);
    // With the default policy the body runs on and sees the loss itself.
    assert!(ignoring(&fx.locker, "b", &fx.url()).await.unwrap());
}

struct Inventory {
    locker: Locker,
    shop: String,
    stock: tokio::sync::Mutex<u32>,
}

impl Inventory {
    #[distributed_lock("stock:<self.shop>:<sku>", wait = 30, locker = self.locker)]
    async fn take(&self, sku: u32) -> Result<u32, AppError> {
        let mut stock = self.stock.lock().await;
        *stock = stock.checked_sub(1).ok_or(AppError::Failed)?;
        Ok(*stock)
    }

    #[distributed_lock("stock:<self.shop>:audit", locker = self.locker)]
    async fn audit(self: Arc<Self>) -> Result<String, AppError> {
        Ok(lock_runtime::current().unwrap().key().to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_take_their_locker_and_key_from_self() {
    let fx = Fixture::redis();
    let inventory = Arc::new(Inventory {
        locker: fx.locker.clone(),
        shop: "north".into(),
        stock: tokio::sync::Mutex::new(3),
    });
    assert_eq!(inventory.take(7).await.unwrap(), 2);
    assert_eq!(
        inventory.clone().audit().await.unwrap(),
        "lock:{stock:north:audit}"
    );
    // `?` leaves the body and still releases the lock.
    inventory.take(7).await.unwrap();
    inventory.take(7).await.unwrap();
    assert!(matches!(inventory.take(7).await, Err(AppError::Failed)));
    assert!(!fx.locker.is_locked("stock:north:7").await.unwrap());
}

#[distributed_lock("exit:<name>", timeout = 60, locker = locker)]
async fn slow_or_panicking(locker: &Locker, name: &str, panics: bool) -> Result<(), AppError> {
    if panics {
        panic!("the body panicked");
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_dropped_callers_release_the_lock() {
    let fx = Fixture::redis();
    let locker = fx.locker.clone();
    let panicked =
        tokio::spawn(async move { slow_or_panicking(&locker, "panic", true).await }).await;
    assert!(panicked.unwrap_err().is_panic());
    assert!(
        until_free(&fx.locker, "exit:panic").await,
        "a panicking body kept its 60 s lock"
    );

    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        slow_or_panicking(&fx.locker, "drop", false),
    )
    .await;
    assert!(dropped.is_err());
    assert!(
        until_free(&fx.locker, "exit:drop").await,
        "a dropped call kept its 60 s lock"
    );
}

#[distributed_lock("default:<id>")]
async fn uses_the_default_locker(id: u32) -> Result<u32, AppError> {
    Ok(id)
}

#[distributed_lock("name:<name>", locker = locker)]
async fn named(locker: &Locker, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[distributed_lock("<name>", locker = locker)]
async fn bare(locker: &Locker, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_error_paths_are_typed() {
    match uses_the_default_locker(1).await {
        Err(AppError::Lock(LockError::NotConfigured)) => {}
        other => panic!("expected NotConfigured, got {other:?}"),
    }
    let fx = Fixture::redis();
    // An argument that formats to an empty lock name.
    match bare(&fx.locker, "").await {
        Err(AppError::Lock(LockError::Config(message))) => {
            assert!(message.contains("empty"), "{message}")
        }
        other => panic!("expected Config, got {other:?}"),
    }
    named(&fx.locker, "x").await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = Locker::redis(&format!("redis://127.0.0.1:{port}")).unwrap();
    assert!(matches!(
        named(&unreachable, "x").await,
        Err(AppError::Lock(LockError::Connect { .. }))
    ));
}

#[distributed_lock("renew:<name>", auto_renew = 60, locker = locker)]
async fn renews_every_minute(locker: &Locker, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[distributed_lock("hold:<name>", min_hold = "5m", skip, locker = locker)]
async fn holds_five_minutes(locker: &Locker, name: &str) -> Option<u32> {
    Some(1)
}

struct Unprintable;

impl std::fmt::Display for Unprintable {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Err(std::fmt::Error)
    }
}

#[distributed_lock("print:<value>", locker = locker)]
async fn unprintable(locker: &Locker, value: Unprintable) -> Result<(), AppError> {
    Ok(())
}

fn attributed_config_error(result: Result<(), AppError>, function: &str) -> String {
    match result {
        Err(AppError::Lock(LockError::Config(message))) => {
            let prefix = format!("#[distributed_lock] on `{function}`: ");
            assert!(message.starts_with(&prefix), "{message}");
            message
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_time_config_errors_name_the_attribute_and_function() {
    let fx = Fixture::redis();
    // The locker's default TTL (30 s) is below `auto_renew = 60`: refused on every call.
    let message = attributed_config_error(
        renews_every_minute(&fx.locker, "a").await,
        "renews_every_minute",
    );
    assert!(message.contains("renew interval"), "{message}");
    // A `Display` that fails is an error, not a name every such value would share.
    let message =
        attributed_config_error(unprintable(&fx.locker, Unprintable).await, "unprintable");
    assert!(message.contains("`<value>`"), "{message}");
    // `min_hold` beyond the default TTL: a plain `skip` function logs it and skips.
    assert_eq!(holds_five_minutes(&fx.locker, "a").await, None);
    assert!(!fx.locker.is_locked("hold:a").await.unwrap());
    // With a default TTL of ten minutes, both are fine: the rule is the locker's.
    let long = Locker::builder()
        .ttl(Duration::from_secs(600))
        .redis(&fx.url())
        .unwrap();
    renews_every_minute(&long, "b").await.unwrap();
    assert_eq!(holds_five_minutes(&long, "b").await, Some(1));
}

#[distributed_lock("alike:<name>", wait = "200ms", min_hold = "2s", locker = locker)]
async fn alike_attribute(locker: &Locker, name: &str) -> Result<u32, AppError> {
    Ok(1)
}

async fn alike_by_hand(locker: &Locker, name: &str) -> Result<u32, AppError> {
    Ok(locker
        .lock(format!("alike:{name}"))
        .wait(Duration::from_millis(200))
        .min_hold(Duration::from_secs(2))
        .run(|_| async { 1 })
        .await?)
}

#[distributed_lock("alike:<name>", skip, on_lost = abort, locker = locker)]
async fn alike_skip_attribute(locker: &Locker, name: &str) -> Result<u32, AppError> {
    Ok(1)
}

async fn alike_skip_by_hand(locker: &Locker, name: &str) -> Result<u32, AppError> {
    let run = locker
        .lock(format!("alike:{name}"))
        .on_lost(OnLost::Abort)
        .run(|_| async { 1 })
        .await;
    match run {
        Err(error) if error.is_contention() => Ok(u32::default()),
        other => Ok(other?),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_requests_and_the_attribute_behave_alike() {
    let fx = Fixture::redis();
    let locker = &fx.locker;
    let [attribute, by_hand] = [
        alike_attribute(locker, "attribute").await.unwrap(),
        alike_by_hand(locker, "by-hand").await.unwrap(),
    ];
    assert_eq!(attribute, by_hand);
    // Both keep the key for the rest of `min_hold`.
    for name in ["alike:attribute", "alike:by-hand"] {
        let left = locker
            .remaining(name)
            .await
            .unwrap()
            .expect("the key was deleted");
        assert!(left <= Duration::from_secs(2), "{name}: {left:?}");
    }
    // Held elsewhere: the same contention error after the same wait, and `skip` skips.
    let other = fx.another_locker();
    let _held = [
        other.lock("alike:a").acquire().await.unwrap(),
        other.lock("alike:h").acquire().await.unwrap(),
    ];
    match (
        alike_attribute(locker, "a").await,
        alike_by_hand(locker, "h").await,
    ) {
        (
            Err(AppError::Lock(LockError::WaitTimeout { name: a, .. })),
            Err(AppError::Lock(LockError::WaitTimeout { name: h, .. })),
        ) => assert_eq!((a.as_str(), h.as_str()), ("alike:a", "alike:h")),
        other => panic!("expected two WaitTimeouts, got {other:?}"),
    }
    assert_eq!(alike_skip_attribute(locker, "a").await.unwrap(), 0);
    assert_eq!(alike_skip_by_hand(locker, "h").await.unwrap(), 0);
}
