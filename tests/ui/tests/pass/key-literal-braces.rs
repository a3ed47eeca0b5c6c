//! `{{`, `}}` and `<<` are literal characters in a key template.

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("json:{{\"id\":<id>}}:<<", locker = locker)]
async fn literal(locker: &Locker, id: u32) -> Result<String, LockError> {
    Ok(lock_runtime::current().expect("under the lock").name().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    assert_eq!(literal(&locker, 7).await.unwrap(), "json:{\"id\":7}:<");
}
