use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("order:<_>")]
async fn wildcard(_: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
