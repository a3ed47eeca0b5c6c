use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", retry = 5, wait = 2)]
async fn both() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", retry_delay = "200ms")]
async fn delay_without_retry() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", retry = "five")]
async fn retry_not_a_number() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
