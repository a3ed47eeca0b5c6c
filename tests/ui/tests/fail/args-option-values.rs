use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", skip = true, fencing = "yes")]
async fn flags_with_values() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", on_lost = panic)]
async fn bad_on_lost() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", crate = lock_runtime, timeout)]
async fn crate_not_a_string_and_timeout_without_value() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
