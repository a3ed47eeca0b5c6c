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
        locker.lock("skip:option").acquire().await.unwrap(),
        locker.lock("skip:bool").acquire().await.unwrap(),
        locker.lock("skip:result").acquire().await.unwrap(),
    ];
    assert_eq!(option().await, None);
    assert!(!boolean().await);
    assert_eq!(result().await.unwrap(), Vec::<u8>::new());
}
