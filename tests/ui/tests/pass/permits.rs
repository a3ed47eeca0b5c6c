//! `permits = N` makes the attribute's lock a semaphore: N calls run the body at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("api:<tenant>", permits = 2, wait = 10, locker = locker)]
async fn call_api(
    locker: &Locker,
    tenant: &str,
    inside: &AtomicUsize,
    most: &AtomicUsize,
) -> Result<(), LockError> {
    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    inside.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    let (inside, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let call = || call_api(&locker, "acme", &inside, &most);
    let results = tokio::join!(call(), call(), call(), call(), call(), call());
    for result in [results.0, results.1, results.2, results.3, results.4, results.5] {
        result.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}
