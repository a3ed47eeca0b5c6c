use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", timout = 30)]
async fn misspelled() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", blocking)]
async fn unknown_flag() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", a::b = 1)]
async fn not_a_name() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
