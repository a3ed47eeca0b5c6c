use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", timeout = 30, skip, timeout = 60, skip)]
async fn twice() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
