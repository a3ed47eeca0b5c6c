use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job", auto_renew = true)]
async fn renew_true() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", auto_renew = false, fencing = false, escape = 1)]
async fn flags_false() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", on_lost = "abort")]
async fn quoted_policy() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
