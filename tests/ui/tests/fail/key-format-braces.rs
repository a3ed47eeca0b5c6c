use lock_runtime::{LockError, distributed_lock};

// `format!` syntax would lock the literal name `order:{order_id}` for every order.
#[distributed_lock("order:{order_id}")]
async fn format_placeholder(order_id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:{}:{0}:{order_id:?}")]
async fn format_forms(order_id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("json:<order_id>}")]
async fn single_closing_brace(order_id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("json:{<order_id>")]
async fn unclosed_brace(order_id: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
