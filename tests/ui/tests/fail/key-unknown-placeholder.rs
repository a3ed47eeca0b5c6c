use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("order:<order_idd>")]
async fn typo(order_id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:<customer>:<sku>")]
async fn two_unknown(order_id: u64, amount: u32) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job:<id>")]
async fn no_arguments() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
