use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", timeout = 0)]
async fn zero() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = "0ms", min_hold = 0.0)]
async fn zero_with_units() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = -5, wait = "-1s")]
async fn negative() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
