use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job:<id>")]
fn not_async(id: u32) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
