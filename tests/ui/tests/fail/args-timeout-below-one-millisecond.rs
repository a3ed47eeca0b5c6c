use lock_runtime::{LockError, distributed_lock};

// Would compile and then fail every call with `LockError::Config`.
#[distributed_lock("job", timeout = "0.5ms")]
async fn sub_millisecond_string() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = 0.0001)]
async fn sub_millisecond_seconds() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
