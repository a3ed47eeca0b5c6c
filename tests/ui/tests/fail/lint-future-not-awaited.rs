#![deny(unused_must_use)]

use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job")]
async fn locked() -> Result<(), LockError> {
    Ok(())
}

fn main() {
    // Calling without `.await` does nothing; the future is must-use.
    locked();
}
