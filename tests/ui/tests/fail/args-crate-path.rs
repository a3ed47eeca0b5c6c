use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", crate = "lock-runtime")]
async fn package_name() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", crate = "lock runtime")]
async fn not_a_path() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", crate = "deps::")]
async fn trailing_separator() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
