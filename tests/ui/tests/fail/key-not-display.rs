use lock_runtime::{LockError, distributed_lock};

struct OrderId(u64);

#[distributed_lock("order:<id>")]
async fn not_display(id: OrderId) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
