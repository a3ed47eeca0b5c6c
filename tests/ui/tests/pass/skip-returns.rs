//! With `skip`, any `Default` return type (or `Result` of one) works.

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("skip:unit", skip)]
async fn unit() {}

#[distributed_lock("skip:option", skip)]
async fn option() -> Option<u32> {
    Some(1)
}

#[distributed_lock("skip:bool", skip)]
async fn boolean() -> bool {
    true
}

#[distributed_lock("skip:result", skip)]
async fn result() -> Result<Vec<u8>, LockError> {
    Ok(vec![1])
}

/// Takes `name` in another task: another owner, as another instance would be (a lock
/// this task held would be re-entry, `LockError::Reentrant`).
async fn held_elsewhere(locker: &Locker, name: &'static str) -> lock_runtime::LockGuard {
    tokio::spawn(locker.lock(name).acquire()).await.unwrap().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    lock_runtime::set_default(locker.clone());
    unit().await;
    assert_eq!(option().await, Some(1));
    assert!(boolean().await);
    assert_eq!(result().await.unwrap(), vec![1]);
    // Held elsewhere: every function skips its body and returns the default.
    let _held = [
        held_elsewhere(&locker, "skip:option").await,
        held_elsewhere(&locker, "skip:bool").await,
        held_elsewhere(&locker, "skip:result").await,
    ];
    assert_eq!(option().await, None);
    assert!(!boolean().await);
    assert_eq!(result().await.unwrap(), Vec::<u8>::new());
}
