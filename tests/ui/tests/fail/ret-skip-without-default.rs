use lock_runtime::{LockError, distributed_lock};

struct Receipt;

#[distributed_lock("job", skip)]
async fn result_of_non_default() -> Result<Receipt, LockError> {
    Ok(Receipt)
}

#[distributed_lock("job", skip)]
async fn non_default() -> Receipt {
    Receipt
}

fn main() {}
