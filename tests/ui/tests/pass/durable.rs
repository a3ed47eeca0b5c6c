//! `durable` with and without its wait expands to the request's `durable` setter.

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("payment:<order_id>", durable = 1, locker = locker)]
async fn pay(locker: &Locker, order_id: u64) -> Result<u64, LockError> {
    Ok(order_id)
}

#[distributed_lock("payment:<order_id>", durable = 2, durable_wait = "250ms", timeout = 5, locker = locker)]
async fn refund(locker: &Locker, order_id: u64) -> Result<u64, LockError> {
    Ok(order_id)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The memory backend has no replicas: the request says so, naming the attribute.
    let locker = Locker::memory();
    let error = pay(&locker, 7).await.unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("#[distributed_lock] on `pay`"), "{error}");
    assert!(refund(&locker, 7).await.is_err());
}
