//! A `Display` that returns an error is a run-time error, not a name every such value
//! would share.

use std::fmt;

use lock_runtime::{LockError, Locker, distributed_lock};

struct Unprintable;

impl fmt::Display for Unprintable {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Err(fmt::Error)
    }
}

#[distributed_lock("order:<order>", locker = locker)]
async fn unprintable(locker: &Locker, order: Unprintable) -> Result<(), LockError> {
    unreachable!("the body ran without its lock")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    match unprintable(&locker, Unprintable).await {
        Err(LockError::Config(message)) => {
            assert!(message.starts_with("#[distributed_lock] on `unprintable`: "), "{message}");
            assert!(message.contains("`<order>`"), "{message}");
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    assert!(!locker.is_locked("order:").await.unwrap());
}
