//! `crate = "..."` names the runtime when it is reached under another path.

mod locks {
    pub use lock_runtime::*;
}

use locks::{LockError, Locker};

#[lock_runtime::distributed_lock("renamed:<n>", crate = "locks")]
async fn renamed(n: u8) -> Result<u8, LockError> {
    Ok(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    locks::set_default(Locker::memory());
    assert_eq!(renamed(4).await.unwrap(), 4);
}
