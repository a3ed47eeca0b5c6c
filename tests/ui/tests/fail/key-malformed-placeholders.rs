use lock_runtime::{LockError, distributed_lock};

// Every problem of one template is reported in one build.
#[distributed_lock("order:<> <order id> <1st> <order.> <order_id")]
async fn malformed(order_id: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
