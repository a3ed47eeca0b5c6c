//! Arguments named with keywords (`r#type`) are placeholders written with or without
//! `r#`.

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("kind:<type>:<r#type>:<async>:<fn.0>", locker = locker)]
async fn keywords(locker: &Locker, r#type: &str, r#async: u8, r#fn: (u8,)) -> Result<String, LockError> {
    Ok(lock_runtime::current().expect("under the lock").name().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    assert_eq!(keywords(&locker, "t", 1, (2,)).await.unwrap(), "kind:t:t:1:2");
}
