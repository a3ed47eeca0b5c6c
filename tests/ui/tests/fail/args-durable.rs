use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("order:<id>", durable = 0)]
async fn no_replica(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:<id>", durable = "one")]
async fn not_a_number(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:<id>", durable_wait = "500ms")]
async fn wait_without_durable(id: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
