use lock_runtime::{LockError, distributed_lock};

// One build reports every problem of the attribute: template, options and signature.
#[distributed_lock("order:<ordr>:<>", timeout = 0, colour = "red", retry_delay = 1)]
fn everything_wrong(order: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {
    // The function is still emitted, so this call adds no "cannot find" error.
    let _ = everything_wrong(1);
}
