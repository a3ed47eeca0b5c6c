use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("")]
async fn empty() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
