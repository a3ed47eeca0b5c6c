//! Values that contain the separator share a lock unless the template says `escape`.

use lock_runtime::{LockError, Locker, distributed_lock};

fn name() -> String {
    lock_runtime::current().expect("under the lock").name().to_owned()
}

#[distributed_lock("transfer:<from>:<to>", locker = locker)]
async fn verbatim(locker: &Locker, from: &str, to: &str) -> Result<String, LockError> {
    Ok(name())
}

#[distributed_lock("transfer:<from>:<to>", escape, locker = locker)]
async fn escaped(locker: &Locker, from: &str, to: &str) -> Result<String, LockError> {
    Ok(name())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    // The documented collision: two different pairs, one lock.
    assert_eq!(
        verbatim(&locker, "1:2", "3").await.unwrap(),
        verbatim(&locker, "1", "2:3").await.unwrap()
    );
    assert_eq!(escaped(&locker, "1:2", "3").await.unwrap(), "transfer:1%3A2:3");
    assert_eq!(escaped(&locker, "1", "2:3").await.unwrap(), "transfer:1:2%3A3");
    assert_eq!(escaped(&locker, "a-1", "b_2").await.unwrap(), "transfer:a-1:b_2");
}
