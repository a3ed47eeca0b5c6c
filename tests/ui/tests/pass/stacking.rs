//! Stacking with `#[tracing::instrument]` (either order) and `#[tokio::test]`.

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("traced:<id>")]
#[tracing::instrument]
async fn lock_then_trace(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

#[tracing::instrument]
#[distributed_lock("traced:<id>")]
async fn trace_then_lock(id: u32) -> Result<u32, LockError> {
    Ok(id + 1)
}

// Our attribute goes above `#[tokio::test]`, which turns the fn into a sync test.
#[distributed_lock("test:job", locker = &Locker::memory())]
#[tokio::test]
async fn locked_test() -> Result<(), LockError> {
    assert!(lock_runtime::current().is_some());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lock_runtime::set_default(Locker::memory());
    assert_eq!(lock_then_trace(1).await.unwrap(), 1);
    assert_eq!(trace_then_lock(1).await.unwrap(), 2);
}
