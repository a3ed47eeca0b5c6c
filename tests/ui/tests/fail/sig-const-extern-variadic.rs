use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job")]
const async fn constant() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job")]
async extern "C" fn external() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job")]
async fn variadic(first: u32, ...) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
