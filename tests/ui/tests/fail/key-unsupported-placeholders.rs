use lock_runtime::{LockError, distributed_lock};

// Each says what is unsupported and what to write instead.
#[distributed_lock("order:<id:?>")]
async fn format_spec(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:<id()>")]
async fn call(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:< id >")]
async fn spaces(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("order:<ids[0]>:<&id>:<ids::len>")]
async fn expressions(id: u64, ids: Vec<u64>) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
