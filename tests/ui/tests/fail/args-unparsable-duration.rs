use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", timeout = "5 days")]
async fn unknown_unit() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = "30")]
async fn missing_unit() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = true, wait = SOME_CONST)]
async fn not_a_duration() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
