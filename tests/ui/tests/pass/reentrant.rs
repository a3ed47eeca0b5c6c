//! A nested locked function with the same key: `LockError::Reentrant` at once, or, with
//! `reentrant`, the outer lock shared (and released by the outer call only).

use std::time::Duration;

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("account:<id>", fencing, locker = locker)]
async fn transfer(locker: &Locker, id: u64) -> Result<u64, LockError> {
    let outer = lock_runtime::current().unwrap().fencing_token().unwrap();
    let inner = audit(locker, id).await?;
    assert_eq!(inner, outer, "the same lock, the same fencing token");
    assert!(locker.is_locked(&format!("account:{id}")).await?);
    // Without `reentrant`, the nested call fails at once instead of waiting 60 s for itself.
    let error = audit_strict(locker, id).await.unwrap_err();
    assert!(matches!(error, LockError::Reentrant { .. }), "{error:?}");
    Ok(outer)
}

#[distributed_lock("account:<id>", reentrant, locker = locker)]
async fn audit(locker: &Locker, id: u64) -> Result<u64, LockError> {
    Ok(lock_runtime::current().unwrap().fencing_token().unwrap())
}

#[distributed_lock("account:<id>", wait = 60, locker = locker)]
async fn audit_strict(locker: &Locker, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    let started = std::time::Instant::now();
    transfer(&locker, 7).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!locker.is_locked("account:7").await.unwrap());
}
