use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", timeout = 99999999999999999999999)]
async fn integer_overflow() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = "99999999999h", retry = 5000000000)]
async fn too_long() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
