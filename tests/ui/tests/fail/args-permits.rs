//! `permits` takes a positive whole number, and does not go with `reentrant`.

use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("api:<tenant>", permits = 0)]
async fn none(tenant: &str) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("api:<tenant>", permits = "4")]
async fn quoted(tenant: &str) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("api:<tenant>", permits)]
async fn missing(tenant: &str) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("api:<tenant>", permits = 4, reentrant)]
async fn both(tenant: &str) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("api:<tenant>", semaphore = 4, recursive)]
async fn aliases(tenant: &str) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
