use lock_runtime::{LockError, distributed_lock};

#[distributed_lock]
async fn no_arguments() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(timeout = 30)]
async fn options_only() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
