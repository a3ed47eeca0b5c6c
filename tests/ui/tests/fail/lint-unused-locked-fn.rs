#![deny(dead_code)]

use lock_runtime::{LockError, distributed_lock};

// Generated code does not reference the function, so an unused one is still reported.
#[distributed_lock("job")]
async fn never_called() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
