use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", timeout = 10, auto_renew = 10)]
async fn equal() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", timeout = "1s", auto_renew = "2s")]
async fn longer() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
