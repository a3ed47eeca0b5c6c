use lock_runtime::{LockError, distributed_lock};

// Names from other lock libraries get the option to write instead.
#[distributed_lock(key = "order:<id>", ttl = 30)]
async fn key_and_ttl(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", name = "job", lease = 10, expire = 5)]
async fn name_and_lifetimes() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", wait_timeout = 5, retry_interval = "100ms", retries = 3)]
async fn waiting_names() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
